// The value of an expression tree, computed exactly on the decimal literals (rational arithmetic) and
// rounded once to the nearest double. Division by zero and results outside the double range are
// reported as invalid, never returned as inf or nan.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <string>

#include "dagpt/expr/ast.hpp"
#include "dagpt/expr/rational.hpp"

namespace dagpt::expr {

struct Value {
  bool valid = false;
  double value = 0;    // correctly rounded, when valid
  std::string reason;  // why not, when invalid ("division by zero at offset 7")
  explicit operator bool() const { return valid; }
};

// How literals enter the exact evaluation: as the decimals they were written as (the value of the
// expression), or as the doubles they were rounded to (the value a double computation can reach at
// best; for testing double arithmetic such as the DAG executor without the inputs' rounding).
enum class Literals { decimal, binary };

namespace detail {
inline std::optional<Rational> exact(const Expr& e, NodeId id, std::string& reason, Literals lit) {
  const auto kids = e.children(id);
  switch (e.op(id)) {
    case Op::Integer:
    case Op::Float: {
      if (!std::isfinite(e.value(id))) {
        reason = fmt::format("non-finite literal {} at offset {}", e.text(id), e.node(id).offset);
        return std::nullopt;
      }
      return lit == Literals::decimal ? Rational::from_decimal(e.text(id))
                                      : Rational::from_double(e.value(id));
    }
    case Op::Neg: {
      auto v = exact(e, kids[0], reason, lit);
      if (!v) return v;
      return -*v;
    }
    case Op::Recip: {
      auto v = exact(e, kids[0], reason, lit);
      if (!v) return v;
      if (v->is_zero()) {
        reason = fmt::format("division by zero at offset {}", e.node(id).offset);
        return std::nullopt;
      }
      return Rational::from_decimal("1") / *v;
    }
    case Op::Add:
    case Op::Mul:
    case Op::Sub:
    case Op::Div: {
      auto acc = exact(e, kids[0], reason, lit);
      if (!acc) return acc;
      for (std::size_t i = 1; i < kids.size(); ++i) {
        auto v = exact(e, kids[i], reason, lit);
        if (!v) return v;
        switch (e.op(id)) {
          case Op::Add:
            *acc = *acc + *v;
            break;
          case Op::Sub:
            *acc = *acc - *v;
            break;
          case Op::Mul:
            *acc = *acc * *v;
            break;
          default:
            if (v->is_zero()) {
              reason = fmt::format("division by zero at offset {}", e.node(kids[i]).offset);
              return std::nullopt;
            }
            *acc = *acc / *v;
        }
      }
      return acc;
    }
  }
  return std::nullopt;
}
}  // namespace detail

// The correctly rounded double value of a subtree, or invalid with a reason.
inline Value evaluate(const Expr& e, NodeId id, Literals lit = Literals::decimal) {
  Value r;
  auto v = detail::exact(e, id, r.reason, lit);
  if (!v) return r;
  r.value = v->to_double();
  if (!std::isfinite(r.value)) {
    r.reason = "the value is outside the range of a double";
    return r;
  }
  r.valid = true;
  return r;
}
inline Value evaluate(const Expr& e, Literals lit = Literals::decimal) {
  if (e.empty()) return Value{false, 0, "empty expression"};
  return evaluate(e, e.root(), lit);
}

}  // namespace dagpt::expr
