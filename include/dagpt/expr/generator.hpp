// Random expressions (REFERENCE.md §4.1, §4.3), deterministic from (seed, stream, index): every example
// draws from its own Philox counter space, so train (stream 0) and validation (stream 1) never overlap
// and neighbouring examples share no numbers (the reference's bug 7). Numbers are written from their
// digits, so the text never carries binary noise such as 6.3100000000000005.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/core/random.hpp"
#include "dagpt/expr/ast.hpp"
#include "dagpt/expr/printer.hpp"

namespace dagpt::expr {

struct GeneratorOptions {
  int depth = 4;                     // the number of operations is in [0, depth - 1]
  int max_digits = 4;                // integer digits per number: 1 .. max_digits
  int max_decimal_places = 4;        // decimal digits per number: 0 .. max_decimal_places
  bool uniform_num_ops = false;      // HEAD: uniform op count; default: weights 1, 2, ..., depth
  double integer_probability = 0.0;  // HEAD's 0.5: a number without decimals is printed as an Integer
};

inline constexpr std::uint64_t kTrainStream = 0;
inline constexpr std::uint64_t kValStream = 1;

// A sequential stream of random words for one example: Philox keyed by the seed, with the counter
// (draw, index, stream).
class ExampleRng {
 public:
  ExampleRng(std::uint64_t seed, std::uint64_t stream, std::uint64_t index)
      : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32U)},
        index_(index),
        stream_(stream) {}

  std::uint32_t next_u32() {
    if (used_ == 4) {
      block_ = philox4x32({static_cast<std::uint32_t>(draw_), static_cast<std::uint32_t>(index_),
                           static_cast<std::uint32_t>(index_ >> 32U), static_cast<std::uint32_t>(stream_)},
                          key_);
      ++draw_;
      used_ = 0;
    }
    return block_[used_++];
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() {
    const std::uint64_t a = next_u32();
    const std::uint64_t b = next_u32();
    return static_cast<double>(((a << 32U) | b) >> 11U) * 0x1.0p-53;
  }
  // Uniform integer in [lo, hi] (rejection sampling, no modulo bias).
  int randint(int lo, int hi) {
    const auto n = static_cast<std::uint32_t>(hi - lo + 1);
    const std::uint32_t limit = UINT32_MAX - UINT32_MAX % n;
    std::uint32_t x = next_u32();
    while (x >= limit) x = next_u32();
    return lo + static_cast<int>(x % n);
  }

 private:
  std::array<std::uint32_t, 2> key_;
  std::uint64_t index_;
  std::uint64_t stream_;
  std::uint64_t draw_ = 0;
  std::array<std::uint32_t, 4> block_{};
  int used_ = 4;
};

namespace detail {
inline void check_generator_options(const GeneratorOptions& o) {
  if (o.depth < 1) dagpt::detail::raise<ValueError>("generator: depth must be >= 1, got {}", o.depth);
  if (o.max_digits < 1 || o.max_digits > 15) {
    dagpt::detail::raise<ValueError>("generator: max_digits must be in [1, 15], got {}", o.max_digits);
  }
  if (o.max_decimal_places < 0 || o.max_decimal_places > 15) {
    dagpt::detail::raise<ValueError>("generator: max_decimal_places must be in [0, 15], got {}",
                                     o.max_decimal_places);
  }
  if (!(o.integer_probability >= 0.0 && o.integer_probability <= 1.0)) {
    dagpt::detail::raise<ValueError>("generator: integer_probability must be in [0, 1], got {}",
                                     o.integer_probability);
  }
}
}  // namespace detail

// One random number as text (REFERENCE §4.1 draw order): sign, integer digits (no leading zero),
// decimals; "-907.0", "69.919"; with integer_probability, a number without decimals may be "907".
inline std::string random_number(ExampleRng& rng, const GeneratorOptions& o) {
  std::string s;
  if (rng.uniform() >= 0.5) s.push_back('-');
  const int n_int = rng.randint(1, o.max_digits);
  s.push_back(static_cast<char>('0' + rng.randint(1, 9)));
  for (int i = 1; i < n_int; ++i) s.push_back(static_cast<char>('0' + rng.randint(0, 9)));
  const int n_dec = rng.randint(0, o.max_decimal_places);
  std::string dec;
  for (int i = 0; i < n_dec; ++i) dec.push_back(static_cast<char>('0' + rng.randint(0, 9)));
  while (!dec.empty() && dec.back() == '0') dec.pop_back();  // 3.40 is written 3.4, as Python would
  if (n_dec == 0 && o.integer_probability > 0 && rng.uniform() < o.integer_probability) return s;
  s.push_back('.');
  s += dec.empty() ? "0" : dec;
  return s;
}

// A generated expression: its tree (Add/Sub/Mul/Div, right-nested: v0 op0 (v1 op1 (v2 ...))) and text.
struct Generated {
  Expr tree;
  std::string text;
  int num_ops = 0;
};

inline Generated generate(std::uint64_t seed, std::uint64_t stream, std::uint64_t index,
                          const GeneratorOptions& o = {}) {
  detail::check_generator_options(o);
  ExampleRng rng(seed, stream, index);
  int num_ops = 0;
  if (o.uniform_num_ops) {
    num_ops = rng.randint(0, o.depth - 1);
  } else {  // weights 1, 2, ..., depth for 0 .. depth-1 operations
    const int total = o.depth * (o.depth + 1) / 2;
    int r = rng.randint(0, total - 1);
    while (r >= num_ops + 1) {
      r -= num_ops + 1;
      ++num_ops;
    }
  }
  std::array<Op, 4> kinds{Op::Add, Op::Sub, Op::Mul, Op::Div};
  std::vector<Op> ops(static_cast<std::size_t>(num_ops));
  for (auto& op : ops) op = kinds[static_cast<std::size_t>(rng.randint(0, 3))];
  Generated g;
  g.num_ops = num_ops;
  std::vector<NodeId> stack;
  for (int i = 0; i <= num_ops; ++i) {
    const std::string num = random_number(rng, o);
    const bool is_int = num.find('.') == std::string::npos;
    double v = 0;
    std::from_chars(num.data(), num.data() + num.size(), v);
    stack.push_back(g.tree.add_literal(is_int ? Op::Integer : Op::Float, v, num));
  }
  for (auto it = ops.rbegin(); it != ops.rend(); ++it) {
    const NodeId top = stack.back();
    stack.pop_back();
    const NodeId second = stack.back();
    stack.pop_back();
    stack.push_back(g.tree.add_node(*it, {second, top}));
  }
  g.tree.set_root(stack.back());
  g.text = to_text(g.tree);
  return g;
}

}  // namespace dagpt::expr
