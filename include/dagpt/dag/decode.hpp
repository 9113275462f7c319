// decode: a plan -> a readable expression tree (REFERENCE.md §3.6's recommended inverse). Each slot
// referenced by a row becomes the literal sign*mag; a step is linear when G >= 0.5 (sum of c_j*x_j, a
// coefficient of -1 as subtraction) and log otherwise (product of x_j^c_j, -1 as division), with the
// coefficients rounded to integers; the result is the tree of slot N - 1, so padding steps that copy
// one slot are the identity. Works on targets and on (rounded) predictions alike.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <vector>

#include "dagpt/dag/plan.hpp"
#include "dagpt/expr/ast.hpp"

namespace dagpt::dag {

namespace detail {
// A literal for a double: its shortest round-trip text, an Integer when it is integral.
inline expr::NodeId decode_literal(expr::Expr& e, double v) {
  std::string t = fmt::format("{}", v);
  const bool integral = std::isfinite(v) && std::floor(v) == v && std::abs(v) < 1e15;
  if (integral) {
    t = fmt::format("{:.0f}", v);
    if (t == "-0") t = "0";
  }
  return e.add_literal(integral ? expr::Op::Integer : expr::Op::Float, v, t);
}
}  // namespace detail

// Decodes one plan given as raw rows: vmag[N], vsign[N], o[d*N], g[d].
template <typename T>
expr::Expr decode_one(Layout L, const T* vmag, const T* vsign, const T* o, const T* g) {
  using expr::NodeId;
  using expr::Op;
  const int n = L.nodes();
  expr::Expr e;
  std::vector<std::optional<NodeId>> slot(static_cast<std::size_t>(n));
  auto value_of = [&](int j) -> NodeId {
    auto& s = slot[static_cast<std::size_t>(j)];
    if (!s) {  // an initial slot, materialized when first referenced
      const double v = (vsign[j] < 0 ? -1.0 : 1.0) * static_cast<double>(vmag[j]);
      s = detail::decode_literal(e, v);
    }
    return *s;
  };
  for (int st = 0; st < L.depth; ++st) {
    const T* row = o + static_cast<std::ptrdiff_t>(st) * n;
    std::vector<std::pair<int, long>> terms;  // (slot, rounded coefficient)
    for (int j = 0; j < L.n_init + st; ++j) {
      const long c = std::lround(static_cast<double>(row[j]));
      if (c != 0) terms.emplace_back(j, c);
    }
    const bool linear = g[st] >= T(0.5);
    NodeId result = 0;
    if (terms.size() == 1 && terms[0].second == 1) {
      result = value_of(terms[0].first);  // a copy: padding, or a lone operand
    } else if (linear) {
      std::vector<NodeId> pos;
      std::vector<NodeId> neg;
      for (auto [j, c] : terms) {
        NodeId x = value_of(j);
        if (std::labs(c) != 1)
          x = e.add_node(Op::Mul, {detail::decode_literal(e, static_cast<double>(std::labs(c))), x});
        (c > 0 ? pos : neg).push_back(x);
      }
      const NodeId head = e.add_group(Op::Add, pos.data(), pos.size(), 0);
      if (neg.empty()) {
        result = head;
      } else if (pos.empty() && neg.size() == 1) {
        result = e.add_node(Op::Neg, {neg[0]});
      } else {
        std::vector<NodeId> k{head};
        k.insert(k.end(), neg.begin(), neg.end());
        result = e.add_node(Op::Sub, k.data(), k.size());
      }
    } else {
      std::vector<NodeId> num;
      std::vector<NodeId> den;
      for (auto [j, c] : terms) {
        for (long r = 0; r < std::labs(c); ++r) (c > 0 ? num : den).push_back(value_of(j));
      }
      const NodeId head = e.add_group(Op::Mul, num.data(), num.size(), 1);
      if (den.empty()) {
        result = head;
      } else {
        std::vector<NodeId> k{head};
        k.insert(k.end(), den.begin(), den.end());
        result = e.add_node(Op::Div, k.data(), k.size());
      }
    }
    slot[static_cast<std::size_t>(L.n_init + st)] = result;
  }
  e.set_root(*slot[static_cast<std::size_t>(n - 1)]);
  return e;
}

// Decodes a single plan (no batch axes).
template <typename T>
expr::Expr decode(const DagPlan<T>& plan) {
  plan.check("decode");
  if (plan.count() != 1) {
    dagpt::detail::raise<ShapeError>("decode: expects one plan, got batch shape {}",
                                     plan.batch_shape().str());
  }
  const DagPlan<T> c{plan.V_mag.contiguous(), plan.V_sign.contiguous(), plan.O.contiguous(),
                     plan.G.contiguous()};
  return decode_one(plan.layout(), c.V_mag.data(), c.V_sign.data(), c.O.data(), c.G.data());
}

}  // namespace dagpt::dag
