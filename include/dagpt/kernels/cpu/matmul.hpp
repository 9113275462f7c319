// Matrix products through Eigen's GEMM on mapped memory: no copies for row- or column-major inputs
// (a transposed view is read as column-major, not copied). Batched products broadcast the leading
// axes; many small products are spread over threads, one large product is threaded inside Eigen.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "dagpt/core/tensor.hpp"

namespace dagpt {

namespace detail {

template <typename T>
using EigenStride = Eigen::OuterStride<Eigen::Dynamic>;
template <typename T, int Order>
using ConstMatMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>,
                               Eigen::Unaligned, EigenStride<T>>;
template <typename T>
using RowMatMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                             Eigen::Unaligned, EigenStride<T>>;

// How a 2-D operand is laid out in memory: row-major (unit column stride), column-major (unit row
// stride), or neither (then it must be copied).
enum class Layout { row, col, other };
inline Layout layout_of(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs) {
  if (cs == 1 || cols == 1) {
    if (rs >= std::max<std::int64_t>(cols, 1) || rows == 1) return Layout::row;
  }
  if (rs == 1 || rows == 1) {
    if (cs >= std::max<std::int64_t>(rows, 1) || cols == 1) return Layout::col;
  }
  return Layout::other;
}

// c[m,n] (+)= a[m,k] * b[k,n] for raw strided operands; c is row-major with leading dimension ldc.
template <typename T>
void gemm(const T* a, std::int64_t ars, std::int64_t acs, Layout la, const T* b, std::int64_t brs,
          std::int64_t bcs, Layout lb, T* c, std::int64_t ldc, std::int64_t m, std::int64_t k, std::int64_t n,
          bool accumulate) {
  RowMatMap<T> C(c, m, n, EigenStride<T>(ldc));
  auto run = [&](const auto& A, const auto& B) {
    if (accumulate) {
      C.noalias() += A * B;
    } else {
      C.noalias() = A * B;
    }
  };
  auto with_b = [&](const auto& A) {
    if (lb == Layout::row) {
      run(A, ConstMatMap<T, Eigen::RowMajor>(b, k, n, EigenStride<T>(std::max<std::int64_t>(brs, n))));
    } else {
      run(A, ConstMatMap<T, Eigen::ColMajor>(b, k, n, EigenStride<T>(std::max<std::int64_t>(bcs, k))));
    }
  };
  if (la == Layout::row) {
    with_b(ConstMatMap<T, Eigen::RowMajor>(a, m, k, EigenStride<T>(std::max<std::int64_t>(ars, k))));
  } else {
    with_b(ConstMatMap<T, Eigen::ColMajor>(a, m, k, EigenStride<T>(std::max<std::int64_t>(acs, m))));
  }
}

// The matrix operand as (tensor, layout): a copy only when neither layout fits.
template <typename T>
std::pair<Tensor<T>, Layout> as_matrix_operand(const Tensor<T>& t) {
  const int d = t.dim();
  Layout l = layout_of(t.shape()[d - 2], t.shape()[d - 1], t.strides()[d - 2], t.strides()[d - 1]);
  if (l != Layout::other) return {t, l};
  Tensor<T> c = t.contiguous();
  return {c, Layout::row};
}

}  // namespace detail

// Matrix product of a [..., M, K] and b [..., K, N] -> [..., M, N]; leading axes broadcast (NumPy's
// matmul rules for operands of at least 2 dimensions).
template <typename A, typename B>
Tensor<A> matmul(const Tensor<A>& a_in, const Tensor<B>& b_in) {
  static_assert(std::is_same_v<A, B>, "matmul: operands of two element types; convert one with .to<U>()");
  using T = A;
  check_cpu(a_in, "matmul");
  check_same_device(a_in, b_in, "matmul");
  if (a_in.dim() < 2 || b_in.dim() < 2) {
    detail::raise<ShapeError>("matmul: operands need at least 2 dimensions, got shapes {} and {}",
                              a_in.shape().str(), b_in.shape().str());
  }
  const std::int64_t m = a_in.size(-2);
  const std::int64_t k = a_in.size(-1);
  const std::int64_t n = b_in.size(-1);
  if (b_in.size(-2) != k) {
    detail::raise<ShapeError>("matmul: shapes {} and {} do not fit (inner extents {} vs {})",
                              a_in.shape().str(), b_in.shape().str(), k, b_in.size(-2));
  }
  const Shape ba(a_in.shape().begin(), a_in.shape().end() - 2);
  const Shape bb(b_in.shape().begin(), b_in.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape sa = batch;
  sa.push_back(m);
  sa.push_back(k);
  Shape sb = batch;
  sb.push_back(k);
  sb.push_back(n);
  // (plain variables, not structured bindings: C++17 lambdas cannot capture those)
  const auto a_op = detail::as_matrix_operand(a_in.expand(sa));
  const auto b_op = detail::as_matrix_operand(b_in.expand(sb));
  const Tensor<T>& a = a_op.first;
  const Tensor<T>& b = b_op.first;
  const detail::Layout la = a_op.second;
  const detail::Layout lb = b_op.second;
  Shape so = batch;
  so.push_back(m);
  so.push_back(n);
  Tensor<T> out = Tensor<T>::empty(so);
  const std::int64_t nb = batch.numel();
  if (m * n == 0) return out;
  const int d = a.dim();
  const std::int64_t ars = a.strides()[d - 2];
  const std::int64_t acs = a.strides()[d - 1];
  const std::int64_t brs = b.strides()[d - 2];
  const std::int64_t bcs = b.strides()[d - 1];
  if (k == 0) {
    out.fill_(T(0));
    return out;
  }
  // Element offsets of each batch's matrix in a and b (broadcast axes have stride 0).
  std::vector<std::int64_t> oa(static_cast<std::size_t>(nb));
  std::vector<std::int64_t> ob(static_cast<std::size_t>(nb));
  for (std::int64_t i = 0; i < nb; ++i) {
    std::int64_t r = i;
    std::int64_t pa = a.offset();
    std::int64_t pb = b.offset();
    for (int ax = batch.size() - 1; ax >= 0; --ax) {
      const std::int64_t idx = r % batch[ax];
      r /= batch[ax];
      pa += idx * a.strides()[ax];
      pb += idx * b.strides()[ax];
    }
    oa[static_cast<std::size_t>(i)] = pa;
    ob[static_cast<std::size_t>(i)] = pb;
  }
  const T* ap = a.storage()->data();
  const T* bp = b.storage()->data();
  T* op = out.data();
  auto one = [&](std::int64_t i) {
    detail::gemm(ap + oa[static_cast<std::size_t>(i)], ars, acs, la, bp + ob[static_cast<std::size_t>(i)],
                 brs, bcs, lb, op + i * m * n, n, m, k, n, false);
  };
  if (nb == 1) {
    one(0);  // Eigen threads a large product itself
    return out;
  }
  parallel_for(nb, nb * m * n * k / 8, [&](std::int64_t b0, std::int64_t e0) {
    for (std::int64_t i = b0; i < e0; ++i) one(i);
  });
  return out;
}

}  // namespace dagpt
