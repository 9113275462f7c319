// Reductions over one axis, several axes or all elements, with keepdim: sum, mean, max, argmax, prod,
// plus sum_to (the reduction that undoes broadcasting, used by every broadcasting backward pass).
// Floating-point sums and products accumulate in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dagpt/core/tensor.hpp"

namespace dagpt {

namespace detail {

template <typename T>
using acc_t = std::conditional_t<is_floating_v<T>, double, T>;

// The shape left after reducing `axis`.
inline Shape reduced_shape(const Shape& s, int axis, bool keepdim) {
  Shape out = s;
  if (keepdim) {
    out[axis] = 1;
  } else {
    out.erase(axis);
  }
  return out;
}

// A contiguous tensor seen as [outer, n, inner] around one axis.
struct AxisSplit {
  std::int64_t outer = 1;
  std::int64_t n = 1;
  std::int64_t inner = 1;
};
inline AxisSplit split_axis(const Shape& s, int axis) {
  AxisSplit r;
  for (int i = 0; i < axis; ++i) r.outer *= s[i];
  r.n = s[axis];
  for (int i = axis + 1; i < s.size(); ++i) r.inner *= s[i];
  return r;
}

// Calls f(line, first, stride, n) for every line of a contiguous tensor along `axis`: line is the index
// of the line (= its output index in a reduction), first the offset of its first element. Lines are
// independent and may run on different threads.
template <typename F>
void for_each_line(const Shape& s, int axis, F&& f) {
  const AxisSplit sp = split_axis(s, axis);
  const std::int64_t lines = sp.outer * sp.inner;
  parallel_for(lines, lines * sp.n, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t l = b; l < e; ++l) {
      const std::int64_t o = l / sp.inner;
      const std::int64_t i = l % sp.inner;
      f(l, o * sp.n * sp.inner + i, sp.inner, sp.n);
    }
  });
}

template <typename T>
acc_t<T> sum_contiguous(const T* x, std::int64_t n) {
  acc_t<T> acc = 0;
#pragma omp simd reduction(+ : acc)
  for (std::int64_t i = 0; i < n; ++i) acc += static_cast<acc_t<T>>(x[i]);
  return acc;
}

}  // namespace detail

// Sum along one axis (negative axes count from the end).
template <typename T>
Tensor<T> sum(const Tensor<T>& a, std::int64_t axis, bool keepdim = false) {
  check_cpu(a, "sum");
  const int ax = wrap_axis(axis, a.dim(), "sum");
  const Tensor<T> c = a.contiguous();
  const detail::AxisSplit sp = detail::split_axis(c.shape(), ax);
  Tensor<T> out = Tensor<T>::empty(detail::reduced_shape(c.shape(), ax, keepdim));
  const T* x = c.data();
  T* o = out.data();
  if (sp.inner == 1) {
    parallel_for(sp.outer, c.numel(), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t r = b; r < e; ++r) o[r] = static_cast<T>(detail::sum_contiguous(x + r * sp.n, sp.n));
    });
    return out;
  }
  // Rows of the reduced axis are added as whole vectors: unit-stride, vectorizable.
  parallel_for(sp.outer * sp.inner, c.numel(), [&](std::int64_t b, std::int64_t e) {
    std::vector<detail::acc_t<T>> acc;
    for (std::int64_t l = b; l < e;) {
      const std::int64_t outer = l / sp.inner;
      const std::int64_t i0 = l % sp.inner;
      const std::int64_t len = std::min(sp.inner - i0, e - l);
      acc.assign(static_cast<std::size_t>(len), 0);
      auto* ap = acc.data();
      for (std::int64_t r = 0; r < sp.n; ++r) {
        const T* row = x + (outer * sp.n + r) * sp.inner + i0;
#pragma omp simd
        for (std::int64_t i = 0; i < len; ++i) ap[i] += static_cast<detail::acc_t<T>>(row[i]);
      }
      for (std::int64_t i = 0; i < len; ++i) o[l + i] = static_cast<T>(ap[i]);
      l += len;
    }
  });
  return out;
}

// Sum of all elements, as a 0-dimensional tensor.
template <typename T>
Tensor<T> sum(const Tensor<T>& a) {
  check_cpu(a, "sum");
  const Tensor<T> c = a.contiguous();
  const std::int64_t n = c.numel();
  constexpr std::int64_t kBlock = 1 << 16;
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<detail::acc_t<T>> part(static_cast<std::size_t>(std::max<std::int64_t>(blocks, 1)), 0);
  parallel_for(blocks, n, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      part[static_cast<std::size_t>(k)] =
          detail::sum_contiguous(c.data() + k * kBlock, std::min(kBlock, n - k * kBlock));
    }
  });
  detail::acc_t<T> total = 0;
  for (auto v : part) total += v;
  return Tensor<T>::scalar(static_cast<T>(total));
}

// Sum over several axes (each at most once).
template <typename T>
Tensor<T> sum(const Tensor<T>& a, std::vector<std::int64_t> axes, bool keepdim = false) {
  std::vector<int> ax;
  for (auto v : axes) ax.push_back(wrap_axis(v, a.dim(), "sum"));
  std::sort(ax.begin(), ax.end());
  if (std::adjacent_find(ax.begin(), ax.end()) != ax.end()) {
    detail::raise<ValueError>("sum: an axis is repeated in [{}]", fmt::join(axes, ", "));
  }
  Tensor<T> out = a;
  for (int v : ax) out = sum(out, v, true);
  if (!keepdim) {
    for (auto it = ax.rbegin(); it != ax.rend(); ++it) out = out.squeeze(*it);
  }
  return out;
}

// Sums a broadcast result back to `shape` (which must broadcast to a's shape).
template <typename T>
Tensor<T> sum_to(const Tensor<T>& a, const Shape& shape) {
  if (a.shape() == shape) return a;
  const int lead = a.dim() - shape.size();
  if (lead < 0) {
    detail::raise<ShapeError>("sum_to: shape {} has fewer dimensions than target {}", a.shape().str(),
                              shape.str());
  }
  std::vector<std::int64_t> axes;
  for (int i = 0; i < a.dim(); ++i) {
    if (i < lead) {
      axes.push_back(i);
    } else if (shape[i - lead] == 1 && a.shape()[i] != 1) {
      axes.push_back(i);
    } else if (shape[i - lead] != a.shape()[i]) {
      detail::raise<ShapeError>("sum_to: shape {} does not broadcast from {}", a.shape().str(), shape.str());
    }
  }
  return sum(a, axes, true).reshape(shape);
}

// Mean along one axis, or of everything.
template <typename T>
Tensor<T> mean(const Tensor<T>& a, std::int64_t axis, bool keepdim = false) {
  static_assert(is_floating_v<T>, "mean: floating-point tensors only");
  const int ax = wrap_axis(axis, a.dim(), "mean");
  Tensor<T> s = sum(a, ax, keepdim);
  const T inv = T(1) / static_cast<T>(a.shape()[ax]);
  T* p = s.data();
  for (std::int64_t i = 0; i < s.numel(); ++i) p[i] *= inv;
  return s;
}
template <typename T>
Tensor<T> mean(const Tensor<T>& a) {
  static_assert(is_floating_v<T>, "mean: floating-point tensors only");
  if (a.numel() == 0) detail::raise<ShapeError>("mean: the tensor of shape {} is empty", a.shape().str());
  return Tensor<T>::scalar(sum(a).item() / static_cast<T>(a.numel()));
}

namespace detail {
// Index of the largest element on a strided line (the first one; NaN counts as largest).
template <typename T>
std::int64_t argmax_line(const T* x, std::int64_t stride, std::int64_t n) {
  std::int64_t best = 0;
  T bv = x[0];
  for (std::int64_t i = 1; i < n; ++i) {
    const T v = x[i * stride];
    if constexpr (is_floating_v<T>) {
      if (std::isnan(bv)) break;
      if (v > bv || std::isnan(v)) {
        bv = v;
        best = i;
      }
    } else if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}
}  // namespace detail

// Index of the largest element along an axis (first on ties; NaN wins). Not differentiable.
template <typename T>
Tensor<std::int64_t> argmax(const Tensor<T>& a, std::int64_t axis, bool keepdim = false) {
  check_cpu(a, "argmax");
  const int ax = wrap_axis(axis, a.dim(), "argmax");
  if (a.shape()[ax] == 0)
    detail::raise<ShapeError>("argmax: axis {} of shape {} is empty", ax, a.shape().str());
  const Tensor<T> c = a.contiguous();
  auto out = Tensor<std::int64_t>::empty(detail::reduced_shape(c.shape(), ax, keepdim));
  std::int64_t* o = out.data();
  const T* x = c.data();
  detail::for_each_line(c.shape(), ax,
                        [&](std::int64_t l, std::int64_t first, std::int64_t st, std::int64_t n) {
                          o[l] = detail::argmax_line(x + first, st, n);
                        });
  return out;
}
// Flat (row-major) index of the largest element, as a 0-dimensional tensor.
template <typename T>
Tensor<std::int64_t> argmax(const Tensor<T>& a) {
  if (a.numel() == 0) detail::raise<ShapeError>("argmax: the tensor of shape {} is empty", a.shape().str());
  const Tensor<T> c = a.contiguous();
  return Tensor<std::int64_t>::scalar(detail::argmax_line(c.data(), 1, c.numel()));
}

// Largest element along an axis, or of everything.
template <typename T>
Tensor<T> max(const Tensor<T>& a, std::int64_t axis, bool keepdim = false) {
  check_cpu(a, "max");
  const int ax = wrap_axis(axis, a.dim(), "max");
  if (a.shape()[ax] == 0) detail::raise<ShapeError>("max: axis {} of shape {} is empty", ax, a.shape().str());
  const Tensor<T> c = a.contiguous();
  Tensor<T> out = Tensor<T>::empty(detail::reduced_shape(c.shape(), ax, keepdim));
  T* o = out.data();
  const T* x = c.data();
  detail::for_each_line(c.shape(), ax,
                        [&](std::int64_t l, std::int64_t first, std::int64_t st, std::int64_t n) {
                          o[l] = x[first + detail::argmax_line(x + first, st, n) * st];
                        });
  return out;
}
template <typename T>
Tensor<T> max(const Tensor<T>& a) {
  if (a.numel() == 0) detail::raise<ShapeError>("max: the tensor of shape {} is empty", a.shape().str());
  const Tensor<T> c = a.contiguous();
  return Tensor<T>::scalar(c.data()[detail::argmax_line(c.data(), 1, c.numel())]);
}

// Product along an axis, or of everything.
template <typename T>
Tensor<T> prod(const Tensor<T>& a, std::int64_t axis, bool keepdim = false) {
  check_cpu(a, "prod");
  const int ax = wrap_axis(axis, a.dim(), "prod");
  const Tensor<T> c = a.contiguous();
  Tensor<T> out = Tensor<T>::empty(detail::reduced_shape(c.shape(), ax, keepdim));
  T* o = out.data();
  const T* x = c.data();
  detail::for_each_line(c.shape(), ax,
                        [&](std::int64_t l, std::int64_t first, std::int64_t st, std::int64_t n) {
                          detail::acc_t<T> p = 1;
                          for (std::int64_t i = 0; i < n; ++i)
                            p *= static_cast<detail::acc_t<T>>(x[first + i * st]);
                          o[l] = static_cast<T>(p);
                        });
  return out;
}
template <typename T>
Tensor<T> prod(const Tensor<T>& a) {
  return prod(a.flatten(), 0, false);
}

// The gradient of prod along an axis: g * (product of the other elements of the line), computed from
// prefix and suffix products so that zeros are handled exactly (no division).
template <typename T>
Tensor<T> prod_backward(const Tensor<T>& a, int axis, const Tensor<T>& grad_keepdim) {
  const Tensor<T> c = a.contiguous();
  const Tensor<T> g = grad_keepdim.contiguous();
  Tensor<T> out = Tensor<T>::empty(c.shape());
  const T* x = c.data();
  const T* gp = g.data();
  T* o = out.data();
  detail::for_each_line(c.shape(), axis,
                        [&](std::int64_t l, std::int64_t first, std::int64_t st, std::int64_t n) {
                          detail::acc_t<T> prefix = 1;
                          for (std::int64_t i = 0; i < n; ++i) {  // o[i] = product of x[0..i)
                            o[first + i * st] = static_cast<T>(prefix);
                            prefix *= static_cast<detail::acc_t<T>>(x[first + i * st]);
                          }
                          detail::acc_t<T> suffix = 1;
                          for (std::int64_t i = n - 1; i >= 0; --i) {
                            const std::int64_t k = first + i * st;
                            o[k] = static_cast<T>(static_cast<detail::acc_t<T>>(o[k]) * suffix *
                                                  static_cast<detail::acc_t<T>>(gp[l]));
                            suffix *= static_cast<detail::acc_t<T>>(x[k]);
                          }
                        });
  return out;
}

}  // namespace dagpt
