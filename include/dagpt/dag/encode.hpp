// encode: a normalized expression tree -> its DagPlan (REFERENCE.md §3.3). Two post-order phases:
// literals fill the initial slots in first-encounter order (each occurrence its own slot), then every
// operation becomes one step whose operands resolve to the FIRST structurally equal entry, with
// coefficients accumulating (x*x gives 2, x - x gives 0). Unused steps copy the last result forward.
// Default mode fixes the reference's Neg(literal) handling: it is one negative literal in one slot (so
// a top-level -3 keeps its sign). Reference mode reproduces the reference exactly, mistakes included.
#pragma once

#include <cmath>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/dag/plan.hpp"
#include "dagpt/expr/ast.hpp"

namespace dagpt::dag {

// An expression that does not fit the plan, or a tree the encoder cannot read.
class EncodeError : public ValueError {
 public:
  using ValueError::ValueError;
};

struct EncodeOptions {
  bool reference = false;  // the reference's Neg(literal) handling (two slots, top-level sign lost)
};

namespace detail {

using expr::Expr;
using expr::NodeId;
using expr::Op;

class Encoder {
 public:
  Encoder(const Expr& e, Layout layout, bool reference) : e_(e), L_(layout), ref_(reference) {}

  // Counts first, so that the error can say how many slots or steps the expression needs.
  template <typename T>
  void run(T* vmag, T* vsign, T* o, T* g) {
    const int d = L_.depth;
    const int n = L_.nodes();
    int lits = 0;
    int ops = 0;
    count(e_.root(), lits, ops);
    if (lits > L_.n_init) {
      dagpt::detail::raise<EncodeError>("expression has {} numbers; depth {} allows {}", lits, d, L_.n_init);
    }
    if (ops > d)
      dagpt::detail::raise<EncodeError>("expression needs {} operations; depth {} allows {}", ops, d, d);
    std::fill(vmag, vmag + n, T(0));
    std::fill(vsign, vsign + n, T(1));
    std::fill(o, o + static_cast<std::ptrdiff_t>(d) * n, T(0));
    std::fill(g, g + d, T(1));
    values_.clear();
    phase1(e_.root(), vmag, vsign);
    values_.resize(static_cast<std::size_t>(L_.n_init), Entry{Entry::Kind::unused, 0});
    int s = 0;
    phase2(e_.root(), o, g, s);
    for (int r = s; r < d; ++r)
      o[static_cast<std::ptrdiff_t>(r) * n + (s > 0 ? L_.n_init + s - 1 : 0)] = T(1);
  }

 private:
  struct Entry {
    enum class Kind { unused, node, neg_literal } kind;
    NodeId id;  // the node, or the literal that a neg_literal negates
  };

  bool is_neg_literal(NodeId id) const {
    return e_.op(id) == Op::Neg && expr::is_literal(e_.op(e_.children(id)[0]));
  }

  void count(NodeId id, int& lits, int& ops) const {
    const Op op = e_.op(id);
    if (expr::is_literal(op)) {
      ++lits;
      return;
    }
    if (is_neg_literal(id)) {
      lits += ref_ ? 2 : 1;
      return;
    }
    for (NodeId c : e_.children(id)) count(c, lits, ops);
    ++ops;
  }

  template <typename T>
  void put_literal(double v, T* vmag, T* vsign, Entry entry) {
    if (!std::isfinite(v)) dagpt::detail::raise<EncodeError>("expression has a non-finite number ({})", v);
    const std::size_t k = values_.size();
    vmag[k] = static_cast<T>(std::abs(v));
    vsign[k] = v >= 0 ? T(1) : T(-1);
    values_.push_back(entry);
  }

  template <typename T>
  void phase1(NodeId id, T* vmag, T* vsign) {
    const Op op = e_.op(id);
    if (expr::is_literal(op)) {
      put_literal(e_.value(id), vmag, vsign, Entry{Entry::Kind::node, id});
      return;
    }
    if (is_neg_literal(id)) {
      const NodeId lit = e_.children(id)[0];
      if (ref_) put_literal(e_.value(lit), vmag, vsign, Entry{Entry::Kind::node, lit});
      put_literal(-e_.value(lit), vmag, vsign, Entry{Entry::Kind::neg_literal, lit});
      return;
    }
    for (NodeId c : e_.children(id)) phase1(c, vmag, vsign);
  }

  // Literal equality of two entries as SymPy's: kind and value.
  bool literal_equal(Op ka, double va, Op kb, double vb) const { return ka == kb && va == vb; }

  bool entry_equal(const Entry& a, const Entry& key) const {
    if (a.kind == Entry::Kind::unused) return false;
    const bool a_lit = a.kind == Entry::Kind::neg_literal || expr::is_literal(e_.op(a.id));
    const bool k_lit = key.kind == Entry::Kind::neg_literal || expr::is_literal(e_.op(key.id));
    if (a_lit != k_lit) return false;
    if (!a_lit) return expr::same(e_, a.id, e_, key.id);
    auto val = [this](const Entry& x) {
      return x.kind == Entry::Kind::neg_literal ? -e_.value(x.id) : e_.value(x.id);
    };
    if (a.kind == Entry::Kind::node && key.kind == Entry::Kind::node) return expr::same(e_, a.id, e_, key.id);
    return literal_equal(e_.op(a.id), val(a), e_.op(key.id), val(key));
  }

  int lookup(NodeId arg) const {
    const Entry key = is_neg_literal(arg) ? Entry{Entry::Kind::neg_literal, e_.children(arg)[0]}
                                          : Entry{Entry::Kind::node, arg};
    for (std::size_t j = 0; j < values_.size(); ++j) {
      if (entry_equal(values_[j], key)) return static_cast<int>(j);
    }
    dagpt::detail::raise<EncodeError>("internal: operand {} was not found among the plan's values",
                                      expr::op_name(e_.op(arg)));
  }

  template <typename T>
  void phase2(NodeId id, T* o, T* g, int& s) {
    const Op op = e_.op(id);
    if (expr::is_literal(op) || is_neg_literal(id)) return;
    for (NodeId c : e_.children(id)) phase2(c, o, g, s);
    T gate = T(1);
    switch (op) {
      case Op::Mul:
      case Op::Div:
        gate = T(0);
        break;
      case Op::Add:
      case Op::Sub:
      case Op::Neg:
        break;
      default:
        dagpt::detail::raise<EncodeError>("unexpected node type {} (encode reads normalized trees)",
                                          expr::op_name(op));
    }
    g[s] = gate;
    const auto kids = e_.children(id);
    T* row = o + static_cast<std::ptrdiff_t>(s) * L_.nodes();
    for (std::size_t i = 0; i < kids.size(); ++i) {
      T coeff = T(1);
      if (op == Op::Neg) coeff = T(-1);
      if ((op == Op::Sub || op == Op::Div) && i > 0) coeff = T(-1);
      row[lookup(kids[i])] += coeff;
    }
    values_.push_back(Entry{Entry::Kind::node, id});
    ++s;
  }

  const Expr& e_;
  Layout L_;
  bool ref_;
  std::vector<Entry> values_;
};

}  // namespace detail

// Writes the plan of a normalized tree into one plan's storage: vmag[N], vsign[N], o[d*N], g[d].
template <typename T>
void encode_into(const expr::Expr& normalized, Layout layout, const EncodeOptions& opt, T* vmag, T* vsign,
                 T* o, T* g) {
  detail::Encoder(normalized, layout, opt.reference).run(vmag, vsign, o, g);
}

// The plan of a normalized tree, shapes [N], [N], [d, N], [d]. Throws EncodeError when it does not fit.
template <typename T = double>
DagPlan<T> encode(const expr::Expr& normalized, Layout layout, const EncodeOptions& opt = {}) {
  auto p = DagPlan<T>::zeros(Shape{}, layout);
  encode_into(normalized, layout, opt, p.V_mag.data(), p.V_sign.data(), p.O.data(), p.G.data());
  return p;
}

}  // namespace dagpt::dag
