// Device tags and element types. A tensor lives on one device and holds one element type; ops never
// convert either silently.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <type_traits>

namespace dagpt {

// Where a tensor's storage lives. Only the CPU has a backend until the CUDA backend arrives.
struct Device {
  enum class Kind : std::uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static constexpr Device cpu() { return Device{Kind::cpu, 0}; }
  static constexpr Device cuda(int i = 0) { return Device{Kind::cuda, i}; }
  constexpr bool is_cpu() const { return kind == Kind::cpu; }
  constexpr bool is_cuda() const { return kind == Kind::cuda; }
  friend constexpr bool operator==(Device a, Device b) { return a.kind == b.kind && a.index == b.index; }
  friend constexpr bool operator!=(Device a, Device b) { return !(a == b); }
  std::string str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }
};

// Element types a Tensor may hold: float and double for values, int64 for indices.
template <typename T>
inline constexpr bool is_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t>;

template <typename T>
inline constexpr bool is_floating_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <typename T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) {
    return "float32";
  } else if constexpr (std::is_same_v<T, double>) {
    return "float64";
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return "int64";
  } else {
    return "unsupported";
  }
}

}  // namespace dagpt

template <>
struct fmt::formatter<dagpt::Device> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(dagpt::Device d, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
