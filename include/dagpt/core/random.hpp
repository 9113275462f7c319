// Counter-based random numbers (Philox 4x32-10, Salmon et al. 2011). Element i of a draw depends only on
// (seed, stream, offset + i), never on the thread count or the order of evaluation, so a CUDA kernel can
// reproduce the same numbers later.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace dagpt {

// One Philox 4x32-10 block: four 32-bit words from a 128-bit counter and a 64-bit key.
inline std::array<std::uint32_t, 4> philox4x32(std::array<std::uint32_t, 4> ctr,
                                               std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t kM0 = 0xD2511F53U;
  constexpr std::uint32_t kM1 = 0xCD9E8D57U;
  constexpr std::uint32_t kW0 = 0x9E3779B9U;
  constexpr std::uint32_t kW1 = 0xBB67AE85U;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kW0;
      key[1] += kW1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * ctr[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32U);
    const auto lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32U);
    const auto lo1 = static_cast<std::uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

// A random stream keyed by (seed, stream). Each draw of n numbers uses counters offset .. offset+n-1
// and then advances offset by n; the state is three integers, cheap to save in a checkpoint.
struct Generator {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  std::uint64_t offset = 0;

  Generator() = default;
  explicit Generator(std::uint64_t seed_, std::uint64_t stream_ = 0) : seed(seed_), stream(stream_) {}

  // The four words for counter value `i` (absolute, not relative to offset).
  std::array<std::uint32_t, 4> block(std::uint64_t i) const {
    return philox4x32({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i >> 32U),
                       static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32U)},
                      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32U)});
  }

  // Uniform in [0, 1) for counter i: 24 random bits for float, 53 for double.
  template <typename T>
  T uniform_at(std::uint64_t i) const {
    const auto w = block(i);
    if constexpr (std::is_same_v<T, float>) {
      return static_cast<float>(w[0] >> 8U) * 0x1.0p-24F;
    } else {
      const std::uint64_t bits = (static_cast<std::uint64_t>(w[0]) << 32U) | w[1];
      return static_cast<T>(static_cast<double>(bits >> 11U) * 0x1.0p-53);
    }
  }

  // Standard normal for counter i (Box-Muller on two 53-bit uniforms, computed in double).
  template <typename T>
  T normal_at(std::uint64_t i) const {
    const auto w = block(i);
    const std::uint64_t a = (static_cast<std::uint64_t>(w[0]) << 32U) | w[1];
    const std::uint64_t b = (static_cast<std::uint64_t>(w[2]) << 32U) | w[3];
    const double u1 = 1.0 - static_cast<double>(a >> 11U) * 0x1.0p-53;  // (0, 1]: log stays finite
    const double u2 = static_cast<double>(b >> 11U) * 0x1.0p-53;
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    return static_cast<T>(std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2));
  }

  // Reserves n counters and returns the first one.
  std::uint64_t advance(std::uint64_t n) {
    const std::uint64_t first = offset;
    offset += n;
    return first;
  }
};

}  // namespace dagpt
