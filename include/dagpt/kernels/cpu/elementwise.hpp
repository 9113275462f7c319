// Elementwise CPU kernels with NumPy broadcasting: unary maps, binary zips, where, comparisons. Every
// result is a new contiguous tensor. Mixing element types is a compile-time error (convert with
// .to<U>()); mixing devices is a DeviceError naming both.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "dagpt/core/tensor.hpp"

namespace dagpt {

namespace detail {
// Scalars adopt the tensor's element type: `t * 2.0` works for Tensor<float> (the scalar parameter is
// not used for deduction).
template <typename T>
struct nondeduced {
  using type = T;
};
template <typename T>
using nondeduced_t = typename nondeduced<T>::type;

template <typename A, typename B>
constexpr void same_dtype() {
  static_assert(std::is_same_v<A, B>,
                "dagpt: an op got tensors of two element types (for example Tensor<float> and "
                "Tensor<double>); convert one explicitly with .to<U>()");
}
}  // namespace detail

// out[i] = f(a[i]) for every element; the result is contiguous.
template <typename T, typename F>
Tensor<T> map(const Tensor<T>& a, F f) {
  check_cpu(a, "map");
  Tensor<T> out = Tensor<T>::empty(a.shape());
  T* o = out.data();
  const T* x = a.storage()->data();
  for_each_row<2>(a.shape(), {out.strides(), a.strides()}, {0, a.offset()},
                  [&](const Offsets<2>& off, std::int64_t n, const Offsets<2>& st) {
                    T* op = o + off[0];
                    const T* xp = x + off[1];
                    if (st[0] == 1 && st[1] == 1) {
#pragma omp simd
                      for (std::int64_t i = 0; i < n; ++i) op[i] = f(xp[i]);
                    } else {
                      for (std::int64_t i = 0; i < n; ++i) op[i * st[0]] = f(xp[i * st[1]]);
                    }
                  });
  return out;
}

// out = array_fn(a) for a contiguous input, computed with Eigen's vectorized array functions (exp, log,
// tanh, ...: several times faster than calling std::exp per element), in parallel chunks; strided
// inputs fall back to map() with the scalar function.
template <typename T, typename ArrayFn, typename ScalarFn>
Tensor<T> map_vectorized(const Tensor<T>& a, ArrayFn array_fn, ScalarFn scalar_fn) {
  if (!a.is_contiguous()) return map(a, scalar_fn);
  check_cpu(a, "map");
  Tensor<T> out = Tensor<T>::empty(a.shape());
  const std::int64_t n = a.numel();
  constexpr std::int64_t kChunk = 16384;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  parallel_for(chunks, n * 8, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t lo = b * kChunk;
    const std::int64_t hi = std::min(n, e * kChunk);
    Eigen::Map<const Array> x(a.data() + lo, hi - lo);
    Eigen::Map<Array> y(out.data() + lo, hi - lo);
    y = array_fn(x);
  });
  return out;
}

// out = f(a, b) with a and b broadcast to a common shape; `op` names the caller in errors.
template <typename T, typename F>
Tensor<T> zip(const Tensor<T>& a, const Tensor<T>& b, F f, const char* op) {
  check_cpu(a, op);
  check_same_device(a, b, op);
  const Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op);
  const Tensor<T> ea = a.shape() == shape ? a : a.expand(shape);
  const Tensor<T> eb = b.shape() == shape ? b : b.expand(shape);
  Tensor<T> out = Tensor<T>::empty(shape);
  T* o = out.data();
  const T* x = ea.storage()->data();
  const T* y = eb.storage()->data();
  for_each_row<3>(shape, {out.strides(), ea.strides(), eb.strides()}, {0, ea.offset(), eb.offset()},
                  [&](const Offsets<3>& off, std::int64_t n, const Offsets<3>& st) {
                    T* op_ = o + off[0];
                    const T* xp = x + off[1];
                    const T* yp = y + off[2];
                    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
#pragma omp simd
                      for (std::int64_t i = 0; i < n; ++i) op_[i] = f(xp[i], yp[i]);
                    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
                      const T yv = *yp;
#pragma omp simd
                      for (std::int64_t i = 0; i < n; ++i) op_[i] = f(xp[i], yv);
                    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
                      const T xv = *xp;
#pragma omp simd
                      for (std::int64_t i = 0; i < n; ++i) op_[i] = f(xv, yp[i]);
                    } else {
                      for (std::int64_t i = 0; i < n; ++i) op_[i * st[0]] = f(xp[i * st[1]], yp[i * st[2]]);
                    }
                  });
  return out;
}

// cond ? a : b elementwise (cond is nonzero = true), all three broadcast together.
template <typename T>
Tensor<T> where(const Tensor<T>& cond, const Tensor<T>& a, const Tensor<T>& b) {
  check_cpu(cond, "where");
  check_same_device(cond, a, "where");
  check_same_device(a, b, "where");
  const Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  const Tensor<T> ec = cond.expand(shape);
  const Tensor<T> ea = a.expand(shape);
  const Tensor<T> eb = b.expand(shape);
  Tensor<T> out = Tensor<T>::empty(shape);
  T* o = out.data();
  const T* c = ec.storage()->data();
  const T* x = ea.storage()->data();
  const T* y = eb.storage()->data();
  for_each_row<4>(shape, {out.strides(), ec.strides(), ea.strides(), eb.strides()},
                  {0, ec.offset(), ea.offset(), eb.offset()},
                  [&](const Offsets<4>& off, std::int64_t n, const Offsets<4>& st) {
                    for (std::int64_t i = 0; i < n; ++i) {
                      o[off[0] + i * st[0]] =
                          c[off[1] + i * st[1]] != T(0) ? x[off[2] + i * st[2]] : y[off[3] + i * st[3]];
                    }
                  });
  return out;
}

// ---- binary arithmetic (broadcasting) ------------------------------------------------------------
#define DAGPT_BINARY_OP(name, expr)                               \
  template <typename A, typename B>                               \
  Tensor<A> name(const Tensor<A>& a, const Tensor<B>& b) {        \
    detail::same_dtype<A, B>();                                   \
    using T = A;                                                  \
    return zip(                                                   \
        a, b, [](T x, T y) { return expr; }, #name);              \
  }                                                               \
  template <typename T>                                           \
  Tensor<T> name(const Tensor<T>& a, detail::nondeduced_t<T> s) { \
    return map(a, [s](T x) {                                      \
      T y = s;                                                    \
      return expr;                                                \
    });                                                           \
  }                                                               \
  template <typename T>                                           \
  Tensor<T> name(detail::nondeduced_t<T> s, const Tensor<T>& b) { \
    return map(b, [s](T y) {                                      \
      T x = s;                                                    \
      return expr;                                                \
    });                                                           \
  }

DAGPT_BINARY_OP(add, x + y)
DAGPT_BINARY_OP(sub, x - y)
DAGPT_BINARY_OP(mul, x* y)
DAGPT_BINARY_OP(div, x / y)
DAGPT_BINARY_OP(maximum, (x > y || x != x) ? x : y)
DAGPT_BINARY_OP(minimum, (x < y || x != x) ? x : y)
// Comparisons give 1 where true and 0 where false, in the operands' element type. Not differentiable.
DAGPT_BINARY_OP(eq, static_cast<T>(x == y))
DAGPT_BINARY_OP(ne, static_cast<T>(x != y))
DAGPT_BINARY_OP(lt, static_cast<T>(x < y))
DAGPT_BINARY_OP(le, static_cast<T>(x <= y))
DAGPT_BINARY_OP(gt, static_cast<T>(x > y))
DAGPT_BINARY_OP(ge, static_cast<T>(x >= y))
#undef DAGPT_BINARY_OP

// ---- unary ---------------------------------------------------------------------------------------
template <typename T>
Tensor<T> neg(const Tensor<T>& a) {
  return map(a, [](T x) { return -x; });
}
template <typename T>
Tensor<T> exp(const Tensor<T>& a) {
  return map_vectorized(
      a, [](const auto& x) { return x.exp(); }, [](T x) { return std::exp(x); });
}
template <typename T>
Tensor<T> log(const Tensor<T>& a) {
  return map_vectorized(
      a, [](const auto& x) { return x.log(); }, [](T x) { return std::log(x); });
}
template <typename T>
Tensor<T> tanh(const Tensor<T>& a) {
  return map_vectorized(
      a, [](const auto& x) { return x.tanh(); }, [](T x) { return std::tanh(x); });
}
template <typename T>
Tensor<T> sigmoid(const Tensor<T>& a) {
  // Written so that neither branch overflows: exp of a non-positive number only.
  return map(a, [](T x) {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  });
}
template <typename T>
Tensor<T> abs(const Tensor<T>& a) {
  return map(a, [](T x) { return x < T(0) ? -x : x; });
}
// -1, 0 or +1 (NaN stays NaN).
template <typename T>
Tensor<T> sign(const Tensor<T>& a) {
  return map(a, [](T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x); });
}
template <typename T>
Tensor<T> square(const Tensor<T>& a) {
  return map(a, [](T x) { return x * x; });
}
template <typename T>
Tensor<T> sqrt(const Tensor<T>& a) {
  return map(a, [](T x) { return std::sqrt(x); });
}
// x^p for a scalar exponent p (squares and integer powers are exact).
template <typename T>
Tensor<T> pow(const Tensor<T>& a, detail::nondeduced_t<T> p) {
  if (p == T(2)) return square(a);
  if (p == T(1)) return map(a, [](T x) { return x; });
  return map(a, [p](T x) { return static_cast<T>(std::pow(x, p)); });
}
// Limits every element to [lo, hi] (NaN stays NaN).
template <typename T>
Tensor<T> clamp(const Tensor<T>& a, detail::nondeduced_t<T> lo, detail::nondeduced_t<T> hi) {
  if (lo > hi) detail::raise<ValueError>("clamp: lo {} is greater than hi {}", lo, hi);
  return map(a, [lo, hi](T x) { return x < lo ? lo : (x > hi ? hi : x); });
}

// ---- operators -----------------------------------------------------------------------------------
template <typename A, typename B>
Tensor<A> operator+(const Tensor<A>& a, const Tensor<B>& b) {
  return add(a, b);
}
template <typename A, typename B>
Tensor<A> operator-(const Tensor<A>& a, const Tensor<B>& b) {
  return sub(a, b);
}
template <typename A, typename B>
Tensor<A> operator*(const Tensor<A>& a, const Tensor<B>& b) {
  return mul(a, b);
}
template <typename A, typename B>
Tensor<A> operator/(const Tensor<A>& a, const Tensor<B>& b) {
  return div(a, b);
}
template <typename T>
Tensor<T> operator-(const Tensor<T>& a) {
  return neg(a);
}
#define DAGPT_SCALAR_OPERATOR(sym, name)                                  \
  template <typename T>                                                   \
  Tensor<T> operator sym(const Tensor<T>& a, detail::nondeduced_t<T> s) { \
    return name(a, s);                                                    \
  }                                                                       \
  template <typename T>                                                   \
  Tensor<T> operator sym(detail::nondeduced_t<T> s, const Tensor<T>& a) { \
    return name(s, a);                                                    \
  }
DAGPT_SCALAR_OPERATOR(+, add)
DAGPT_SCALAR_OPERATOR(-, sub)
DAGPT_SCALAR_OPERATOR(*, mul)
DAGPT_SCALAR_OPERATOR(/, div)
#undef DAGPT_SCALAR_OPERATOR

}  // namespace dagpt
