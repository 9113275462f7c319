// libFuzzer target for the expression front-end: any byte string goes to parse(); what parses must
// survive the printer round trip, both normalizer modes and the evaluator, and repair() must never crash.
// A broken invariant prints what broke (and the trees involved) and traps, so libFuzzer saves the input.
//
// Invariants, for an input s that parses to t:
//   * parse(to_text(t)) == t, and to_text is a fixed point: to_text(parse(to_text(t))) == to_text(t);
//   * parsing with a small nesting limit either fails with a ParseError or gives the same tree;
//   * normalize(t) and normalize(t, {reference}) do not throw, nor does evaluating or printing them;
//   * evaluate(t) is valid iff evaluate(normalize(t)) is, and then the two doubles are identical
//     (default mode keeps the exact value: the evaluator is exact, the normalizer only regroups), with
//     literals read as decimals and as doubles (Literals::decimal, Literals::binary);
// and for every input: a ParseError's offset() is <= the input size; repair(s), when it returns a text,
// differs from the stripped input and parses or fails with a ParseError (its offset inside that text);
// parse_prefix(s) does not throw. Any exception other than ParseError escapes and is a crash.
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "dagpt/expr/expr.hpp"

namespace {

using namespace dagpt::expr;

// Prints the broken invariant with the input and traps (libFuzzer saves the input as a crash).
[[noreturn]] void broken(const char* what, std::string_view input, const std::string& detail = {}) {
  std::fprintf(stderr, "\n*** dagpt_parse_fuzz: %s\n    input (%zu bytes): \"", what, input.size());
  for (const char c : input) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
      std::fputc(c, stderr);
    } else {
      std::fprintf(stderr, "\\x%02x", u);
    }
  }
  std::fprintf(stderr, "\"\n%s\n", detail.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

std::string trees(const Expr& a, const Expr& b) { return "    " + to_debug(a) + "\n vs " + to_debug(b); }

bool same_double(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Parses `s`, which must either parse or fail with a ParseError whose offset lies inside `s`.
bool parses(std::string_view s, std::string_view input, Expr& out, const ParseOptions& opt = {}) {
  try {
    out = parse(s, opt);
    return true;
  } catch (const ParseError& e) {
    if (e.offset() > s.size()) {
      broken("ParseError offset beyond the end of the text", input,
             "    text: \"" + std::string(s) + "\"\n    error: " + e.what());
    }
    return false;
  }
}

void check_repair(std::string_view input) {
  const auto fixed = repair(input);
  if (fixed) {
    if (*fixed == detail::strip(input)) broken("repair() returned its input unchanged", input);
    Expr e;
    if (parses(*fixed, input, e)) {
      (void)evaluate(e);
      (void)normalize(e);
    }
  }
  (void)parse_prefix(input);
}

// evaluate(t) is valid iff evaluate(norm) is, and then both give the same double.
void same_value(const Expr& t, const Expr& norm, Literals lit, std::string_view input) {
  const char* mode = lit == Literals::decimal ? " (decimal literals)" : " (binary literals)";
  const Value v = evaluate(t, lit);
  const Value vn = evaluate(norm, lit);
  if (v.valid != vn.valid) {
    broken((std::string("evaluate(t) and evaluate(normalize(t)) disagree on validity") + mode).c_str(), input,
           "    parsed: " + std::string(v.valid ? "valid" : "invalid (" + v.reason + ")") +
               "\n    normalized: " + (vn.valid ? "valid" : "invalid (" + vn.reason + ")") + "\n" +
               trees(t, norm));
  }
  if (v.valid && !same_double(v.value, vn.value)) {
    broken((std::string("evaluate(t) != evaluate(normalize(t))") + mode).c_str(), input,
           fmt::format("    {} vs {}\n", v.value, vn.value) + trees(t, norm));
  }
}

void check_tree(const Expr& t, std::string_view input) {
  // Printer round trip.
  const std::string text = to_text(t);
  Expr back;
  try {
    back = parse(text);
  } catch (const ParseError& e) {
    broken("to_text(t) does not parse", input, "    to_text: \"" + text + "\"\n    error: " + e.what());
  }
  if (back != t) broken("parse(to_text(t)) != t", input, "    to_text: \"" + text + "\"\n" + trees(t, back));
  const std::string again = to_text(back);
  if (again != text) broken("to_text is not a fixed point", input, "    " + text + "\n vs " + again);

  // A smaller nesting limit may only turn success into a ParseError, never change the tree.
  Expr shallow;
  if (parses(input, input, shallow, ParseOptions{4}) && shallow != t) {
    broken("parse with max_depth=4 gave a different tree", input, trees(t, shallow));
  }

  // Both normalizer modes; printing and evaluating their output must not throw either.
  const Expr norm = normalize(t);
  const Expr norm_ref = normalize(t, NormalizeOptions{true});
  (void)to_debug(norm);
  (void)to_debug(norm_ref);
  (void)to_text(norm);
  (void)to_text(norm_ref);
  (void)evaluate(norm_ref);
  (void)evaluate(norm_ref, Literals::binary);

  // Default-mode normalization keeps the exact value, with literals read as decimals or as doubles.
  same_value(t, norm, Literals::decimal, input);
  same_value(t, norm, Literals::binary, input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_repair(input);
  Expr t;
  if (!parses(input, input, t)) return 0;
  check_tree(t, input);
  return 0;
}
