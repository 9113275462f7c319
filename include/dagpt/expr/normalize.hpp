// The normalizer (REFERENCE.md §3.2): a parsed SymPy-shaped tree -> the Sub / Div / Neg forms the DAG
// encoder reads. Default: structure-preserving. Reference mode adds SymPy's collapse: a Sub, Div or Neg
// whose arguments are all Floats is evaluated in double into one Float literal (and this cascades).
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "dagpt/expr/ast.hpp"

namespace dagpt::expr {

struct NormalizeOptions {
  bool reference = false;  // reproduce the reference's all-Float collapse
};

namespace detail {

class Normalizer {
 public:
  Normalizer(const Expr& in, const NormalizeOptions& opt, Expr&& reuse = Expr())
      : a_(buffer(0)), b_(buffer(1)), in_(in), opt_(opt), out_(std::move(reuse)) {
    out_.clear();
    out_.reserve(in.arena_size() + 4, 64);
  }
  static std::vector<NodeId>& buffer(int i) {
    thread_local std::vector<NodeId> b[2];
    return b[i];
  }
  Expr run() {
    out_.set_root(t(in_.root()));
    return std::move(out_);
  }

 private:
  bool is_minus_one(NodeId id) const {
    return in_.op(id) == Op::Integer && in_.value(id) == -1.0 && in_.text(id) == "-1";
  }
  // A 2-argument Mul(Integer -1, x): how the parser writes "- x".
  bool is_negation(NodeId id) const {
    return in_.op(id) == Op::Mul && in_.children(id).size() == 2 && is_minus_one(in_.children(id)[0]);
  }

  NodeId literal_copy(NodeId id) {
    return out_.add_literal(in_.op(id), in_.value(id), in_.text(id), in_.node(id).offset);
  }

  // Builds op(kids) in the output, collapsing it in reference mode when every argument is a Float.
  NodeId make(Op op, const NodeId* kids, std::size_t n, std::uint32_t offset) {
    if (opt_.reference && (op == Op::Sub || op == Op::Div || op == Op::Neg)) {
      bool all_float = true;
      for (std::size_t i = 0; i < n; ++i) all_float = all_float && out_.op(kids[i]) == Op::Float;
      if (all_float) {
        double v = out_.value(kids[0]);
        if (op == Op::Neg) v = -v;
        for (std::size_t i = 1; i < n; ++i)
          v = op == Op::Sub ? v - out_.value(kids[i]) : v / out_.value(kids[i]);
        // The printed form of a collapsed value is its shortest round-trip representation.
        std::string text =
            std::isfinite(v) ? fmt::format("{}", v) : (std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
        if (text.find_first_of(".en") == std::string::npos) text += ".0";
        return out_.add_literal(Op::Float, v, text, offset);
      }
    }
    return out_.add_node(op, kids, n, offset);
  }
  NodeId make1(Op op, NodeId kid, std::uint32_t offset) { return make(op, &kid, 1, offset); }
  NodeId make2(Op op, NodeId a, NodeId b, std::uint32_t offset) {
    const NodeId k[2] = {a, b};
    return make(op, k, 2, offset);
  }
  // Scratch stacks shared by all levels of the recursion: a call pushes above the base it found and
  // truncates back to it before returning, so no node needs a vector of its own.
  std::vector<NodeId>& a_;
  std::vector<NodeId>& b_;

  NodeId t(NodeId id) {
    const Node& n = in_.node(id);
    switch (n.op) {
      case Op::Integer:
      case Op::Float:
        return literal_copy(id);
      case Op::Neg:
        return make1(Op::Neg, t(in_.children(id)[0]), n.offset);
      case Op::Recip: {  // standing alone: 1/x
        const NodeId one = out_.add_literal(Op::Integer, 1.0, "1", n.offset);
        return make2(Op::Div, one, t(in_.children(id)[0]), n.offset);
      }
      case Op::Sub:
      case Op::Div: {
        const std::size_t base = a_.size();
        for (NodeId c : in_.children(id)) {
          const NodeId tc = t(c);
          a_.push_back(tc);
        }
        const NodeId r = make(n.op, a_.data() + base, a_.size() - base, n.offset);
        a_.resize(base);
        return r;
      }
      case Op::Mul: {
        if (is_negation(id)) return make1(Op::Neg, t(in_.children(id)[1]), n.offset);
        const std::size_t nb = a_.size();  // numerators on a_, denominators on b_
        const std::size_t db = b_.size();
        for (NodeId c : in_.children(id)) {
          if (in_.op(c) == Op::Recip) {
            const NodeId tc = t(in_.children(c)[0]);
            b_.push_back(tc);
          } else {
            const NodeId tc = t(c);
            a_.push_back(tc);
          }
        }
        const std::size_t nn = a_.size() - nb;
        const std::size_t nd = b_.size() - db;
        NodeId r;
        if (nd == 0) {
          r = out_.add_node(Op::Mul, a_.data() + nb, nn, n.offset);
        } else {
          const NodeId head = out_.add_group(Op::Mul, a_.data() + nb, nn, 1, n.offset);
          a_.resize(nb);
          a_.push_back(head);
          a_.insert(a_.end(), b_.begin() + static_cast<std::ptrdiff_t>(db), b_.end());
          r = make(Op::Div, a_.data() + nb, a_.size() - nb, n.offset);
        }
        a_.resize(nb);
        b_.resize(db);
        return r;
      }
      case Op::Add: {
        // all terms on a_, negative terms on b_; the positive ones are picked out of a_ afterwards.
        const std::size_t ab = a_.size();
        const std::size_t nb = b_.size();
        std::size_t npos = 0;
        for (NodeId c : in_.children(id)) {
          const NodeId tc = t(c);
          a_.push_back(tc);
          if (out_.op(tc) == Op::Neg) {
            b_.push_back(out_.children(tc)[0]);
            a_.back() |= kNegMark;
          } else if (is_negation(c)) {
            // Only reachable in reference mode, where Neg(Float) collapsed: T(x) is the negative term.
            const NodeId x = t(in_.children(c)[1]);
            b_.push_back(x);
            a_.back() |= kNegMark;
          } else {
            ++npos;
          }
        }
        const std::size_t all = a_.size() - ab;
        NodeId r;
        if (b_.size() == nb) {
          r = out_.add_node(Op::Add, a_.data() + ab, all, n.offset);
        } else {
          std::size_t w = ab + all;  // positives appended after the terms
          for (std::size_t i = ab; i < ab + all; ++i) {
            if ((a_[i] & kNegMark) == 0) a_.push_back(a_[i]);
          }
          const NodeId head = out_.add_group(Op::Add, a_.data() + w, npos, 0, n.offset);
          a_.resize(ab);
          a_.push_back(head);
          a_.insert(a_.end(), b_.begin() + static_cast<std::ptrdiff_t>(nb), b_.end());
          r = make(Op::Sub, a_.data() + ab, a_.size() - ab, n.offset);
        }
        a_.resize(ab);
        b_.resize(nb);
        return r;
      }
    }
    return literal_copy(id);
  }
  static constexpr NodeId kNegMark = NodeId{1} << 31U;

  const Expr& in_;
  NormalizeOptions opt_;
  Expr out_;
};

}  // namespace detail

// The normalized form of a parsed tree (Sub, Div, Neg instead of Mul(-1, x) and Recip).
inline Expr normalize(const Expr& parsed, const NormalizeOptions& opt = {}) {
  return detail::Normalizer(parsed, opt).run();
}
// normalize() into `out`, reusing its storage.
inline void normalize_into(const Expr& parsed, Expr& out, const NormalizeOptions& opt = {}) {
  out = detail::Normalizer(parsed, opt, std::move(out)).run();
}

}  // namespace dagpt::expr
