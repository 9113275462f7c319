// softmax and log_softmax over the last axis (max-subtracted, so large inputs do not overflow), with the
// matching backward kernels.
#pragma once

#include <Eigen/Core>
#include <cmath>

#include "dagpt/core/tensor.hpp"

namespace dagpt {

namespace detail {
// Calls f(in_row, out_row, n) for each last-axis row of a contiguous tensor, rows spread over threads.
template <typename T, typename F>
Tensor<T> rowwise(const Tensor<T>& a, const char* op, F f) {
  check_cpu(a, op);
  if (a.dim() == 0) detail::raise<ShapeError>("{}: needs at least 1 dimension, got a scalar", op);
  const Tensor<T> c = a.contiguous();
  Tensor<T> out = Tensor<T>::empty(c.shape());
  const std::int64_t n = c.size(-1);
  const std::int64_t rows = n == 0 ? 0 : c.numel() / n;
  parallel_for(rows, c.numel() * 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) f(c.data() + r * n, out.data() + r * n, n);
  });
  return out;
}

}  // namespace detail

template <typename T>
Tensor<T> softmax(const Tensor<T>& a) {
  return detail::rowwise(a, "softmax", [](const T* x, T* y, std::int64_t n) {
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<const Array> xr(x, n);
    Eigen::Map<Array> yr(y, n);
    yr = (xr - xr.maxCoeff()).exp();  // vectorized exp
    yr *= static_cast<T>(1.0 / yr.template cast<double>().sum());
  });
}

template <typename T>
Tensor<T> log_softmax(const Tensor<T>& a) {
  return detail::rowwise(a, "log_softmax", [](const T* x, T* y, std::int64_t n) {
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<const Array> xr(x, n);
    Eigen::Map<Array> yr(y, n);
    const T m = xr.maxCoeff();
    yr = (xr - m).exp();
    const T lse = m + static_cast<T>(std::log(yr.template cast<double>().sum()));
    yr = xr - lse;
  });
}

// d softmax: given y = softmax(x) and g = dL/dy, returns dL/dx = y * (g - sum(g * y)).
template <typename T>
Tensor<T> softmax_backward(const Tensor<T>& y, const Tensor<T>& g) {
  detail::check_same_shape(y, g, "softmax_backward");
  const Tensor<T> yc = y.contiguous();
  const Tensor<T> gc = g.contiguous();
  const T* yp = yc.data();
  const T* base = gc.data();
  return detail::rowwise(gc, "softmax_backward", [&](const T* gr, T* dx, std::int64_t n) {
    const T* yr = yp + (gr - base);
    double dot = 0;
    for (std::int64_t i = 0; i < n; ++i) dot += static_cast<double>(gr[i]) * yr[i];
    for (std::int64_t i = 0; i < n; ++i) dx[i] = yr[i] * (gr[i] - static_cast<T>(dot));
  });
}

// d log_softmax: given y = log_softmax(x) and g = dL/dy, returns g - exp(y) * sum(g).
template <typename T>
Tensor<T> log_softmax_backward(const Tensor<T>& y, const Tensor<T>& g) {
  detail::check_same_shape(y, g, "log_softmax_backward");
  const Tensor<T> yc = y.contiguous();
  const Tensor<T> gc = g.contiguous();
  const T* yp = yc.data();
  const T* base = gc.data();
  return detail::rowwise(gc, "log_softmax_backward", [&](const T* gr, T* dx, std::int64_t n) {
    const T* yr = yp + (gr - base);
    double s = 0;
    for (std::int64_t i = 0; i < n; ++i) s += gr[i];
    for (std::int64_t i = 0; i < n; ++i) dx[i] = gr[i] - std::exp(yr[i]) * static_cast<T>(s);
  });
}

}  // namespace dagpt
