// The arithmetic parser: text -> SymPy-shaped tree (REFERENCE.md §3.1). Numbers (12, 12.5, 5., .5,
// 1e-3), + - * / with the usual precedence and left associativity, any number of unary signs,
// parentheses and whitespace. Signs directly before a literal fold into it (--9.56 is Float 9.56); an
// odd number of minus signs before '(' makes a Neg node (SymPy would evaluate it instead).
// Bad input is a ParseError with the byte offset, what was found and what was expected; nesting is
// bounded, so no input can overflow the stack.
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/expr/ast.hpp"

namespace dagpt::expr {

// A syntax error at a byte offset of the input.
class ParseError : public Error {
 public:
  ParseError(std::size_t offset, std::string found, std::string expected)
      : Error(fmt::format("expected {} at offset {}, found {}", expected, offset, found)),
        offset_(offset),
        found_(std::move(found)),
        expected_(std::move(expected)) {}
  std::size_t offset() const { return offset_; }
  const std::string& found() const { return found_; }
  const std::string& expected() const { return expected_; }

 private:
  std::size_t offset_;
  std::string found_;
  std::string expected_;
};

struct ParseOptions {
  int max_depth = 1000;  // deepest parenthesis nesting accepted
};

namespace detail {

class Parser {
 public:
  Parser(std::string_view src, const ParseOptions& opt, Expr&& reuse = Expr())
      : s_(src), opt_(opt), out_(std::move(reuse)), scratch_(scratch_buffer()), text_(text_buffer()) {
    out_.clear();
    out_.reserve(src.size() / 2 + 4, src.size() + 4);
    scratch_.clear();
  }
  static std::vector<NodeId>& scratch_buffer() {
    thread_local std::vector<NodeId> b;
    return b;
  }
  static std::string& text_buffer() {
    thread_local std::string b;
    return b;
  }

  Expr run() {
    skip();
    if (pos_ == s_.size()) fail("a number or '('");
    const NodeId root = sum();
    skip();
    if (pos_ != s_.size())
      fail(s_[pos_] == ')' ? "an operator or end of input (unbalanced ')')" : "an operator or end of input");
    out_.set_root(root);
    return std::move(out_);
  }

 private:
  static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  void skip() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }

  std::string found() const {
    if (pos_ >= s_.size()) return "end of input";
    const auto c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
    return fmt::format("byte 0x{:02x}", c);
  }
  [[noreturn]] void fail(const char* expected) const { throw ParseError(pos_, found(), expected); }

  // Appends operand `id` to the scratch list, splicing its children in when it is an `op` node
  // (SymPy flattens nested Adds and Muls).
  void push_operand(Op op, NodeId id) {
    if (out_.op(id) == op) {
      for (NodeId c : out_.children(id)) scratch_.push_back(c);
    } else {
      scratch_.push_back(id);
    }
  }

  NodeId minus_one(std::uint32_t offset) { return out_.add_literal(Op::Integer, -1.0, "-1", offset); }

  // sum := term (('+' | '-') term)*
  NodeId sum() {
    const auto start = static_cast<std::uint32_t>(pos_);
    NodeId first = term();
    skip();
    if (pos_ == s_.size() || (s_[pos_] != '+' && s_[pos_] != '-')) return first;
    const std::size_t base = scratch_.size();
    push_operand(Op::Add, first);
    while (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) {
      const bool minus = s_[pos_] == '-';
      const auto at = static_cast<std::uint32_t>(pos_);
      ++pos_;
      skip();
      const NodeId t = term();
      if (minus) {
        const NodeId m1 = minus_one(at);
        scratch_.push_back(out_.add_node(Op::Mul, {m1, t}, at));
      } else {
        push_operand(Op::Add, t);
      }
      skip();
    }
    const NodeId id = out_.add_node(Op::Add, scratch_.data() + base, scratch_.size() - base, start);
    scratch_.resize(base);
    return id;
  }

  // term := unary (('*' | '/') unary)*
  NodeId term() {
    const auto start = static_cast<std::uint32_t>(pos_);
    NodeId first = unary();
    skip();
    if (pos_ == s_.size() || (s_[pos_] != '*' && s_[pos_] != '/')) return first;
    const std::size_t base = scratch_.size();
    push_operand(Op::Mul, first);
    while (pos_ < s_.size() && (s_[pos_] == '*' || s_[pos_] == '/')) {
      const bool divide = s_[pos_] == '/';
      const auto at = static_cast<std::uint32_t>(pos_);
      ++pos_;
      skip();
      const NodeId u = unary();
      if (divide) {
        scratch_.push_back(out_.add_node(Op::Recip, {u}, at));
      } else {
        push_operand(Op::Mul, u);
      }
      skip();
    }
    const NodeId id = out_.add_node(Op::Mul, scratch_.data() + base, scratch_.size() - base, start);
    scratch_.resize(base);
    return id;
  }

  // unary := ('+' | '-')* primary
  NodeId unary() {
    const auto start = static_cast<std::uint32_t>(pos_);
    bool negative = false;
    while (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-' || is_space(s_[pos_]))) {
      if (s_[pos_] == '-') negative = !negative;
      ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '(') {
      if (++depth_ > opt_.max_depth) {
        throw ParseError(pos_, found(), fmt::format("at most {} nested parentheses", opt_.max_depth));
      }
      ++pos_;
      skip();
      if (pos_ < s_.size() && s_[pos_] == ')') fail("a number or '('");
      const NodeId inner = sum();
      skip();
      if (pos_ == s_.size() || s_[pos_] != ')') fail("an operator or ')'");
      ++pos_;
      --depth_;
      return negative ? out_.add_node(Op::Neg, {inner}, start) : inner;
    }
    return number(negative, start);
  }

  // number := digits ['.' digits] [('e'|'E') ['+'|'-'] digits], at least one mantissa digit.
  NodeId number(bool negative, std::uint32_t start) {
    const std::size_t b = pos_;
    std::size_t p = pos_;
    std::size_t digits = 0;
    while (p < s_.size() && is_digit(s_[p])) ++p, ++digits;
    bool is_float = false;
    if (p < s_.size() && s_[p] == '.') {
      is_float = true;
      ++p;
      while (p < s_.size() && is_digit(s_[p])) ++p, ++digits;
    }
    if (digits == 0) fail("a number or '('");
    if (p < s_.size() && (s_[p] == 'e' || s_[p] == 'E')) {
      std::size_t q = p + 1;
      if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
      if (q == s_.size() || !is_digit(s_[q])) {
        pos_ = q;
        fail("the digits of an exponent");
      }
      while (q < s_.size() && is_digit(s_[q])) ++q;
      is_float = true;
      p = q;
    }
    pos_ = p;
    text_.clear();
    if (negative) text_.push_back('-');
    text_.append(s_.substr(b, p - b));
    double v = 0;
    const char* tb = text_.data();
    const auto r = std::from_chars(tb, tb + text_.size(), v);
    if (r.ec == std::errc::result_out_of_range) {
      throw ParseError(b, fmt::format("'{}'", s_.substr(b, p - b)), "a number within the range of a double");
    }
    return out_.add_literal(is_float ? Op::Float : Op::Integer, v, text_, start);
  }

  std::string_view s_;
  ParseOptions opt_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  Expr out_;
  std::vector<NodeId>& scratch_;
  std::string& text_;
};

}  // namespace detail

// Parses one arithmetic expression. Throws ParseError.
inline Expr parse(std::string_view text, const ParseOptions& opt = {}) {
  return detail::Parser(text, opt).run();
}
// Parses into `out`, reusing its storage (no allocation once it is large enough). Throws ParseError.
inline void parse_into(std::string_view text, Expr& out, const ParseOptions& opt = {}) {
  out = detail::Parser(text, opt, std::move(out)).run();
}

}  // namespace dagpt::expr
