// Printing trees: to_text gives parseable infix text (REFERENCE.md §4.3's deterministic printer:
// operands in stored order, "A + B", "A - B", "A*B", "A/B", negative literals as they are, parentheses
// only where needed), with parse(to_text(t)) == t for every parsed tree t. to_debug shows the tree
// itself: Sub(10.0, Mul(2.0, 3.0)).
#pragma once

#include <string>

#include "dagpt/expr/ast.hpp"

namespace dagpt::expr {

namespace detail {

inline bool is_raw_negation(const Expr& e, NodeId id) {
  if (e.op(id) != Op::Mul || e.children(id).size() != 2) return false;
  const NodeId m = e.children(id)[0];
  // Mul(-1, Pow(x, -1)) is "-1/x": printed as "- 1/x" it would come back as Mul(-1, Mul(1, Pow(x, -1))).
  return e.op(m) == Op::Integer && e.text(m) == "-1" && e.op(e.children(id)[1]) != Op::Recip;
}

inline void print_text(const Expr& e, NodeId id, std::string& out);

// Prints an operand, in parentheses when `wrap` says its kind would bind wrongly there.
inline void print_operand(const Expr& e, NodeId id, bool wrap, std::string& out) {
  if (wrap) out += '(';
  print_text(e, id, out);
  if (wrap) out += ')';
}
inline bool is_sum(const Expr& e, NodeId id) {
  const Op op = e.op(id);
  return op == Op::Add || op == Op::Sub || is_raw_negation(e, id);
}

inline void print_text(const Expr& e, NodeId id, std::string& out) {
  const auto kids = e.children(id);
  switch (e.op(id)) {
    case Op::Integer:
    case Op::Float:
      out += e.text(id);
      return;
    case Op::Neg:
      out += "-(";
      print_text(e, kids[0], out);
      out += ')';
      return;
    case Op::Recip:
      out += "1/";
      print_operand(e, kids[0], !is_literal(e.op(kids[0])), out);
      return;
    case Op::Add:
      for (std::size_t i = 0; i < kids.size(); ++i) {
        const NodeId k = kids[i];
        if (i > 0 && is_raw_negation(e, k)) {
          out += " - ";
          const NodeId x = e.children(k)[1];
          print_operand(e, x, is_sum(e, x), out);
        } else {
          if (i > 0) out += " + ";
          print_operand(e, k, e.op(k) == Op::Add || (i > 0 && e.op(k) == Op::Sub), out);
        }
      }
      return;
    case Op::Sub:
      for (std::size_t i = 0; i < kids.size(); ++i) {
        if (i > 0) out += " - ";
        print_operand(e, kids[i], i > 0 && is_sum(e, kids[i]), out);
      }
      return;
    case Op::Mul:
      for (std::size_t i = 0; i < kids.size(); ++i) {
        const NodeId k = kids[i];
        if (e.op(k) == Op::Recip) {
          if (i == 0) out += '1';
          out += '/';
          const NodeId x = e.children(k)[0];
          print_operand(e, x, !is_literal(e.op(x)), out);
          continue;
        }
        if (i > 0) out += '*';
        print_operand(e, k, is_sum(e, k) || e.op(k) == Op::Div || (i > 0 && e.op(k) == Op::Mul), out);
      }
      return;
    case Op::Div:
      for (std::size_t i = 0; i < kids.size(); ++i) {
        if (i > 0) out += '/';
        const NodeId k = kids[i];
        print_operand(e, k, i == 0 ? is_sum(e, k) : !is_literal(e.op(k)), out);
      }
      return;
  }
}

inline void print_debug(const Expr& e, NodeId id, std::string& out) {
  const Op op = e.op(id);
  if (is_literal(op)) {
    out += e.text(id);
    return;
  }
  if (op == Op::Recip) {
    out += "Pow(";
    print_debug(e, e.children(id)[0], out);
    out += ", -1)";
    return;
  }
  out += op_name(op);
  out += '(';
  bool first = true;
  for (NodeId k : e.children(id)) {
    if (!first) out += ", ";
    first = false;
    print_debug(e, k, out);
  }
  out += ')';
}

}  // namespace detail

// Infix text that parses back to the same tree.
inline std::string to_text(const Expr& e) {
  std::string out;
  if (!e.empty()) detail::print_text(e, e.root(), out);
  return out;
}
inline std::string to_text(const Expr& e, NodeId id) {
  std::string out;
  detail::print_text(e, id, out);
  return out;
}

// The tree itself, for debugging and tests: Add(3.34, Mul(-1, 5.0)), Sub(10.0, Mul(2.0, 3.0)).
inline std::string to_debug(const Expr& e) {
  std::string out;
  if (!e.empty()) detail::print_debug(e, e.root(), out);
  return out;
}

}  // namespace dagpt::expr
