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
  Normalizer(const Expr& in, const NormalizeOptions& opt) : in_(in), opt_(opt) {
    out_.reserve(in.arena_size() + 4, 64);
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
  NodeId make(Op op, const std::vector<NodeId>& kids, std::uint32_t offset) {
    if (opt_.reference && (op == Op::Sub || op == Op::Div || op == Op::Neg)) {
      bool all_float = true;
      for (NodeId k : kids) all_float = all_float && out_.op(k) == Op::Float;
      if (all_float) {
        double v = out_.value(kids[0]);
        if (op == Op::Neg) v = -v;
        for (std::size_t i = 1; i < kids.size(); ++i)
          v = op == Op::Sub ? v - out_.value(kids[i]) : v / out_.value(kids[i]);
        // The printed form of a collapsed value is its shortest round-trip representation.
        std::string text =
            std::isfinite(v) ? fmt::format("{}", v) : (std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
        if (text.find_first_of(".en") == std::string::npos) text += ".0";
        return out_.add_literal(Op::Float, v, text, offset);
      }
    }
    return out_.add_node(op, kids.data(), kids.size(), offset);
  }

  NodeId t(NodeId id) {
    const Node& n = in_.node(id);
    switch (n.op) {
      case Op::Integer:
      case Op::Float:
        return literal_copy(id);
      case Op::Neg:
        return make(Op::Neg, {t(in_.children(id)[0])}, n.offset);
      case Op::Recip:  // standing alone: 1/x
        return make(Op::Div, {out_.add_literal(Op::Integer, 1.0, "1", n.offset), t(in_.children(id)[0])},
                    n.offset);
      case Op::Sub:
      case Op::Div: {
        std::vector<NodeId> k;
        for (NodeId c : in_.children(id)) k.push_back(t(c));
        return make(n.op, k, n.offset);
      }
      case Op::Mul: {
        if (is_negation(id)) return make(Op::Neg, {t(in_.children(id)[1])}, n.offset);
        std::vector<NodeId> num;
        std::vector<NodeId> den;
        for (NodeId c : in_.children(id)) {
          if (in_.op(c) == Op::Recip) {
            den.push_back(t(in_.children(c)[0]));
          } else {
            num.push_back(t(c));
          }
        }
        if (den.empty()) return out_.add_node(Op::Mul, num.data(), num.size(), n.offset);
        std::vector<NodeId> k;
        if (num.size() == 1) {
          k.push_back(num[0]);
        } else if (num.empty()) {
          k.push_back(out_.add_literal(Op::Integer, 1.0, "1", n.offset));
        } else {
          k.push_back(out_.add_node(Op::Mul, num.data(), num.size(), n.offset));
        }
        k.insert(k.end(), den.begin(), den.end());
        return make(Op::Div, k, n.offset);
      }
      case Op::Add: {
        std::vector<NodeId> all;
        std::vector<NodeId> pos;
        std::vector<NodeId> neg;
        for (NodeId c : in_.children(id)) {
          const NodeId tc = t(c);
          all.push_back(tc);
          if (out_.op(tc) == Op::Neg) {
            neg.push_back(out_.children(tc)[0]);
          } else if (is_negation(c)) {
            // Only reachable in reference mode, where Neg(Float) collapsed: T(x) is the negative term.
            neg.push_back(t(in_.children(c)[1]));
          } else {
            pos.push_back(tc);
          }
        }
        if (neg.empty()) return out_.add_node(Op::Add, all.data(), all.size(), n.offset);
        std::vector<NodeId> k;
        if (pos.size() == 1) {
          k.push_back(pos[0]);
        } else if (pos.empty()) {
          k.push_back(out_.add_literal(Op::Integer, 0.0, "0", n.offset));
        } else {
          k.push_back(out_.add_node(Op::Add, pos.data(), pos.size(), n.offset));
        }
        k.insert(k.end(), neg.begin(), neg.end());
        return make(Op::Sub, k, n.offset);
      }
    }
    return literal_copy(id);
  }

  const Expr& in_;
  NormalizeOptions opt_;
  Expr out_;
};

}  // namespace detail

// The normalized form of a parsed tree (Sub, Div, Neg instead of Mul(-1, x) and Recip).
inline Expr normalize(const Expr& parsed, const NormalizeOptions& opt = {}) {
  return detail::Normalizer(parsed, opt).run();
}

}  // namespace dagpt::expr
