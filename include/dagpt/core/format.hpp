// Printing tensors through fmt: `fmt::format("{}", t)` gives the dtype, device, shape and the values,
// with each axis elided to its first and last 3 entries when the tensor has more than 1000 elements.
#pragma once

#include <fmt/format.h>

#include <string>

#include "dagpt/core/tensor.hpp"

namespace dagpt {

namespace detail {
template <typename T>
void format_values(std::string& out, const Tensor<T>& t, int axis, const T* base, std::int64_t off,
                   bool elide, int indent) {
  const std::int64_t n = t.shape()[axis];
  const std::int64_t st = t.strides()[axis];
  constexpr std::int64_t kEdge = 3;
  out += '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (elide && n > 2 * kEdge && i == kEdge) {
      out += axis + 1 == t.dim() ? "..., " : fmt::format("...,\n{:{}}", "", indent + 1);
      i = n - kEdge - 1;
      continue;
    }
    if (axis + 1 == t.dim()) {
      if constexpr (std::is_same_v<T, std::int64_t>) {
        out += fmt::format("{}", base[off + i * st]);
      } else {
        out += fmt::format("{:.6g}", base[off + i * st]);
      }
    } else {
      format_values(out, t, axis + 1, base, off + i * st, elide, indent + 1);
    }
    if (i + 1 < n) out += axis + 1 == t.dim() ? ", " : fmt::format(",\n{:{}}", "", indent + 1);
  }
  out += ']';
}
}  // namespace detail

// The text of a tensor: a header line, then its values.
template <typename T>
std::string to_string(const Tensor<T>& t) {
  std::string out = fmt::format("Tensor({}, {}, shape={})", dtype_name<T>(), t.device(), t.shape().str());
  if (!t.defined()) return out + " undefined";
  out += '\n';
  if (!t.device().is_cpu()) return out + "<values on device>";
  if (t.dim() == 0) return out + fmt::format("{}", *t.data());
  detail::format_values(out, t, 0, t.storage()->data(), t.offset(), t.numel() > 1000, 0);
  return out;
}

}  // namespace dagpt

template <typename T>
struct fmt::formatter<dagpt::Tensor<T>> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const dagpt::Tensor<T>& t, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(dagpt::to_string(t), ctx);
  }
};
