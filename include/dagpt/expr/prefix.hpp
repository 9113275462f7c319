// Per-token prefixes (REFERENCE.md §4.3 steps 7-8, §4.4): the text up to every token boundary, parsed
// when it can be, else repaired by the reference's exact rules (close or drop parentheses, drop a
// trailing operator, complete "5." to "5.0"), else marked invalid.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dagpt/expr/evaluate.hpp"
#include "dagpt/expr/parser.hpp"

namespace dagpt::expr {

namespace detail {
inline bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
inline std::string_view strip(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}
inline bool is_op_char(char c) { return c == '+' || c == '-' || c == '*' || c == '/'; }
}  // namespace detail

// The reference's preprocess_invalid_expression: a repaired text, or nothing when no rule applies
// (the result is returned only if it differs from the stripped input).
inline std::optional<std::string> repair(std::string_view s) {
  using detail::strip;
  const std::string_view stripped = strip(s);
  if (stripped.empty()) return std::nullopt;  // 1
  std::string t(stripped);
  if (t.back() == '.') t += '0';  // 2
  auto count = [&t](char c) { return static_cast<long>(std::count(t.begin(), t.end(), c)); };
  long o = count('(');
  long c = count(')');
  if (o > c) {  // 3
    if (t.find_first_not_of('(') == std::string::npos) return std::nullopt;
    while (!t.empty() && t.back() == '(' && o > c) {
      while (!t.empty() && (t.back() == '(' || detail::is_ws(t.back()))) t.pop_back();
      if (t.empty()) return std::nullopt;
      o = count('(');
      c = count(')');
    }
    if (o > c) t.append(static_cast<std::size_t>(o - c), ')');
  } else if (c > o) {
    for (long k = 0; k < c - o; ++k) t.erase(t.rfind(')'), 1);
  }
  if (t.size() > 1 && (t[0] == '+' || t[0] == '*' || t[0] == '/'))
    t = std::string(strip(std::string_view(t).substr(1)));  // 4
  if (!t.empty() && t.back() == '(') {                      // 5
    std::vector<std::string> parts;
    std::string cur;
    for (char ch : t) {
      if (detail::is_ws(ch)) {
        if (!cur.empty()) parts.push_back(cur);
        cur.clear();
      } else {
        cur += ch;
      }
    }
    if (!cur.empty()) parts.push_back(cur);
    if (parts.size() >= 3 && parts.back() == "(" && parts[parts.size() - 2].size() == 1 &&
        detail::is_op_char(parts[parts.size() - 2][0])) {
      parts.resize(parts.size() - 2);
      t.clear();
      for (std::size_t i = 0; i < parts.size(); ++i) t += (i ? " " : "") + parts[i];
    }
  }
  while (!t.empty() && detail::is_op_char(t.back())) {  // 6
    long depth = 0;
    for (std::size_t i = 0; i + 1 < t.size(); ++i) depth += t[i] == '(' ? 1 : (t[i] == ')' ? -1 : 0);
    if (depth > 0) break;
    t.pop_back();
    t = std::string(strip(t));
    if (t.empty()) return std::nullopt;
  }
  t = std::string(strip(t));  // 7
  if (!t.empty() && t.back() == '.') t += '0';
  if (t.empty()) return std::nullopt;  // 8
  const bool has_num = t.find_first_of("0123456789.") != std::string::npos;
  const bool has_pair = t.find('(') != std::string::npos && t.find(')') != std::string::npos;
  if (!has_num && !has_pair) return std::nullopt;
  if (t == stripped) return std::nullopt;  // 9
  return t;
}

// One token position: the prefix, the text actually parsed, and the result.
struct Prefix {
  std::string prefix;  // the text up to and including this token
  std::string parsed;  // what was parsed: the stripped prefix, or its repair (empty when invalid)
  bool valid = false;  // parsed and evaluated to a finite value
  bool repaired = false;
  Expr expr;         // the parsed tree (when valid)
  double value = 0;  // its value (when valid)
};

// Parses `text` (stripped) or its repair; the Prefix for one position.
inline Prefix parse_prefix(std::string_view text) {
  Prefix p;
  p.prefix = std::string(text);
  auto attempt = [&p](std::string_view s) {
    try {
      Expr e = parse(s);
      const Value v = evaluate(e);
      if (!v.valid) return false;
      p.expr = std::move(e);
      p.value = v.value;
      p.parsed = std::string(s);
      p.valid = true;
      return true;
    } catch (const ParseError&) {
      return false;
    }
  };
  if (attempt(detail::strip(text))) return p;
  if (auto r = repair(text)) {
    p.repaired = attempt(*r);
  }
  return p;
}

// Prefixes ending at the given byte offsets of text (one per token).
inline std::vector<Prefix> prefixes_at(std::string_view text, const std::vector<std::size_t>& ends) {
  std::vector<Prefix> out;
  out.reserve(ends.size());
  for (std::size_t e : ends) out.push_back(parse_prefix(text.substr(0, std::min(e, text.size()))));
  return out;
}

// Prefixes at every token boundary of `tokenizer` (anything with encode(text) -> ids and decode(ids)).
template <typename Tokenizer>
std::vector<Prefix> prefixes(std::string_view text, const Tokenizer& tokenizer) {
  const auto ids = tokenizer.encode(text);
  std::vector<Prefix> out;
  out.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::vector<std::int64_t> head(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i + 1));
    out.push_back(parse_prefix(tokenizer.decode(head)));
  }
  return out;
}

}  // namespace dagpt::expr
