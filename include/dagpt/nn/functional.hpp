// The fused ops of the transformer, each an autograd Function with a hand-written backward (as llm.c
// does): linear (x W^T + b on nn/gemm.hpp), embedding lookup (backward scatter-adds into the used rows
// only), LayerNorm, exact erf GELU, causal self-attention (softmax, optional dropout on the
// probabilities) and dropout; and the larger fusions the model uses: the MLP with its dropout and residual
// (MlpFn), the attention's projection with its dropout and residual (ResidualLinearFn), token + position
// embedding with dropout, and each LayerNorm fused into the op after it (LayerNormLinearsFn: one linear or
// the predictor head's four; MlpFn with a LayerNorm), which keep the LayerNorm's input and row
// statistics instead of its output. All work on contiguous row-major data of float or double; every one is
// gradient-checked in double and compared with the unfused ops in tests/nn.test.cpp.
//
// Dropout masks come from the counter-based Philox generator (core/random.hpp): element e of a call that
// reserved counters starting at `first` keeps its value when uniform(first + e/4, word e%4) >= p, so a
// mask depends only on (seed, stream, first), never on threads or on the backend.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unsupported/Eigen/SpecialFunctions>
#include <utility>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "dagpt/autograd/function.hpp"
#include "dagpt/core/random.hpp"
#include "dagpt/core/strided.hpp"
#include "dagpt/nn/gemm.hpp"

namespace dagpt::nn {

namespace detail {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MapRM = Eigen::Map<RowMat<T>>;
template <typename T>
using CMapRM = Eigen::Map<const RowMat<T>>;
template <typename T>
using StridedRM = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using CStridedRM = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ArrayX = Eigen::Array<T, Eigen::Dynamic, 1>;

// Rows of a [..., C] tensor.
template <typename T>
std::int64_t rows_of(const Tensor<T>& x) {
  const std::int64_t c = x.shape()[x.dim() - 1];
  return c == 0 ? 0 : x.numel() / c;
}

template <typename T>
void require_last_dim(const Tensor<T>& x, std::int64_t c, const char* op, const char* what) {
  if (x.dim() < 1 || x.shape()[x.dim() - 1] != c) {
    dagpt::detail::raise<ShapeError>("{}: {} has shape {}, its last axis must be {}", op, what,
                                     x.shape().str(), c);
  }
}

// Keep-flags for n elements: keep[e] = 1 when the uniform for e is >= p. Counters first, first+1, ... each
// give four uniforms (24 bits each).
inline std::uint32_t dropout_threshold(double p) {
  return static_cast<std::uint32_t>(std::ceil(p * 16777216.0));  // 2^24
}
#if defined(__AVX2__)
// Philox 4x32-10 (as Generator::block) for the counters c .. c + 3 at once, one per 64-bit lane: out[k]
// holds word k of the four blocks.
inline void philox_x4(std::uint64_t c, const Generator& gen, __m256i out[4]) {
  const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFF);
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
  const __m256i ctr =
      _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(c)), _mm256_setr_epi64x(0, 1, 2, 3));
  __m256i x0 = _mm256_and_si256(ctr, lo32), x1 = _mm256_srli_epi64(ctr, 32);
  __m256i x2 = _mm256_set1_epi64x(static_cast<std::uint32_t>(gen.stream));
  __m256i x3 = _mm256_set1_epi64x(static_cast<std::uint32_t>(gen.stream >> 32U));
  auto k0 = static_cast<std::uint32_t>(gen.seed), k1 = static_cast<std::uint32_t>(gen.seed >> 32U);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9U;
      k1 += 0xBB67AE85U;
    }
    const __m256i p0 = _mm256_mul_epu32(x0, m0), p1 = _mm256_mul_epu32(x2, m1);
    const __m256i n0 =
        _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), x1), _mm256_set1_epi64x(k0));
    const __m256i n2 =
        _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), x3), _mm256_set1_epi64x(k1));
    x1 = _mm256_and_si256(p1, lo32);
    x3 = _mm256_and_si256(p0, lo32);
    x0 = n0;
    x2 = n2;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}
#endif
// keep[e] for e in [e0, e1) of an n-element draw, on the calling thread (e0 a multiple of 4). With AVX2,
// four Philox blocks (16 flags) at a time.
inline void dropout_keep_range(const Generator& gen, std::uint64_t first, std::int64_t e0, std::int64_t e1,
                               std::uint32_t threshold, std::uint8_t* keep) {
  std::int64_t b = e0 / 4;
#if defined(__AVX2__)
  const __m256i below = _mm256_set1_epi64x(static_cast<long long>(threshold) - 1);
  for (; 4 * (b + 4) <= e1; b += 4) {
    __m256i w[4];
    philox_x4(first + static_cast<std::uint64_t>(b), gen, w);
    int bits[4];
    for (int k = 0; k < 4; ++k) {  // lane j of word k: keep when (w >> 8) >= threshold
      const __m256i kept = _mm256_cmpgt_epi64(_mm256_srli_epi64(w[k], 8), below);
      bits[k] = _mm256_movemask_pd(_mm256_castsi256_pd(kept));
    }
    for (int j = 0; j < 4; ++j) {
      std::uint8_t* o = keep + 4 * (b + j);
      for (int k = 0; k < 4; ++k) o[k] = static_cast<std::uint8_t>((bits[k] >> j) & 1);
    }
  }
#endif
  for (; 4 * b < e1; ++b) {
    const auto w = gen.block(first + static_cast<std::uint64_t>(b));
    for (std::int64_t k = 0; k < 4; ++k) {
      const std::int64_t e = 4 * b + k;
      if (e < e1) keep[e] = (w[static_cast<std::size_t>(k)] >> 8U) >= threshold ? 1 : 0;
    }
  }
}
inline void dropout_keep(const Generator& gen, std::uint64_t first, std::int64_t n, double p,
                         std::uint8_t* keep) {
  const std::uint32_t threshold = dropout_threshold(p);
  const std::int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, n * 16, [&](std::int64_t b0, std::int64_t b1) {
    dropout_keep_range(gen, first, 4 * b0, std::min(n, 4 * b1), threshold, keep);
  });
}

// y = keep ? x * scale : 0, elementwise (on the calling thread; apply_keep splits it between threads).
template <typename T>
void apply_keep_serial(const T* x, const std::uint8_t* keep, T scale, T* y, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) y[i] = keep[i] != 0 ? x[i] * scale : T(0);
}
template <typename T>
void apply_keep(const T* x, const std::uint8_t* keep, T scale, T* y, std::int64_t n) {
  parallel_for(n, n * 2, [&](std::int64_t b, std::int64_t e) {
#pragma omp simd
    for (std::int64_t i = b; i < e; ++i) y[i] = keep[i] != 0 ? x[i] * scale : T(0);
  });
}

// Row chunks of a matrix product's summed axis that keep its sums exact: gemm_acc sums that axis in panels
// of kGemmRows, so chunks of a multiple of it add up in the same order as one product over all rows.
inline constexpr std::int64_t kGemmRows = 256;
#ifdef DAGPT_NN_AVX2_GEMM
static_assert(kGemmRows % gemm_avx2::KC == 0, "row chunks must be whole panels of the GEMM's summed axis");
#endif
// Rows per chunk for [rows, width] scratch of about 2 MB (a multiple of kGemmRows; m when m is smaller).
inline std::int64_t chunk_rows(std::int64_t m, std::int64_t width) {
  const std::int64_t r =
      std::max<std::int64_t>(1, (std::int64_t{1} << 19) / std::max<std::int64_t>(width, 1));
  return std::min(m, std::max(kGemmRows, r / kGemmRows * kGemmRows));
}

// Splits [0, n) into `parts` chunks for per-chunk partial sums (deterministic, unlike per-thread ones).
inline std::int64_t chunk_begin(std::int64_t n, std::int64_t parts, std::int64_t i) { return n * i / parts; }

// The large products are split between the threads here by rows of the result, each thread running
// gemm_acc (nn/gemm.hpp) alone on its block: Eigen's own parallel GEMM, which synchronizes its threads on
// every packed panel, ran 3-4x slower on these shapes. Every output element is computed by one thread in
// a fixed order, so the results do not depend on the number of threads.

// Y[m, out] = X[m, k] W[out, k]^T (+ b[out]).
template <typename T>
void linear_forward(const T* x, const T* w, const T* b, T* y, std::int64_t m, std::int64_t k,
                    std::int64_t out) {
  parallel_for(m, m * k * out, [&](std::int64_t r0, std::int64_t r1) {
    gemm_acc<T>(r1 - r0, out, k, {x + r0 * k, k, 1}, {w, 1, k}, y + r0 * out, out, true, b);
  });
}

// GX[m, k] = GY[m, out] W[out, k].
template <typename T>
void linear_backward_input(const T* gy, const T* w, T* gx, std::int64_t m, std::int64_t k, std::int64_t out) {
  parallel_for(m, m * k * out, [&](std::int64_t r0, std::int64_t r1) {
    gemm_acc<T>(r1 - r0, k, out, {gy + r0 * out, out, 1}, {w, k, 1}, gx + r0 * k, k, true);
  });
}

// GW[out, k] = GY[m, out]^T X[m, k] and gb[out] = sum over rows of GY (either may be null), split by
// output rows; each gb[j] sums the rows in order. With `accumulate`, GW and gb are added to instead: rows
// given in consecutive chunks of a multiple of kGemmRows sum exactly as when given at once.
template <typename T>
void linear_backward_params(const T* gy, const T* x, T* gw, T* gb, std::int64_t m, std::int64_t k,
                            std::int64_t out, bool accumulate = false) {
  parallel_for(out, m * k * out, [&](std::int64_t o0, std::int64_t o1) {
    const std::int64_t n = o1 - o0;
    if (gw != nullptr) gemm_acc<T>(n, k, m, {gy + o0, 1, out}, {x, k, 1}, gw + o0 * k, k, !accumulate);
    if (gb != nullptr) {
      T* bj = gb + o0;
      if (!accumulate) std::fill_n(bj, n, T(0));
      for (std::int64_t r = 0; r < m; ++r) {
        const T* g = gy + r * out + o0;
#pragma omp simd
        for (std::int64_t j = 0; j < n; ++j) bj[j] += g[j];
      }
    }
  });
}

}  // namespace detail

// A dropout draw: where its mask comes from. `first` is the first Philox counter it owns.
struct DropoutDraw {
  double p = 0;
  Generator gen;
  std::uint64_t first = 0;
  // Counters a tensor of n elements needs.
  static std::uint64_t counters(std::int64_t n) { return static_cast<std::uint64_t>((n + 3) / 4); }
};

namespace detail {
// In place: y = [r +] dropout(y) for the draw (keep-flags into keep); no dropout when draw.p is 0. One pass
// over y: the flags of each 4096-element chunk are drawn and applied while the chunk is in cache.
template <typename T>
void dropout_residual(const DropoutDraw& draw, std::vector<std::uint8_t>& keep, const Tensor<T>* r,
                      Tensor<T>& y, const char* op) {
  const std::int64_t n = y.numel();
  if (draw.p >= 1) dagpt::detail::raise<ValueError>("{}: dropout p = {} must be in [0, 1)", op, draw.p);
  const bool drop = draw.p > 0;
  if (!drop && r == nullptr) return;
  Tensor<T> rc;
  if (r != nullptr) {
    if (r->shape() != y.shape()) {
      dagpt::detail::raise<ShapeError>("{}: residual has shape {}, the output {}", op, r->shape().str(),
                                       y.shape().str());
    }
    rc = r->contiguous();
  }
  if (drop) keep.resize(static_cast<std::size_t>(n));
  const std::uint32_t threshold = dropout_threshold(draw.p);
  const T scale = static_cast<T>(1.0 / (1.0 - draw.p));
  const T* rp = rc.defined() ? rc.data() : nullptr;
  T* yp = y.data();
  std::uint8_t* kp = keep.data();
  constexpr std::int64_t kChunk = 4096;
  parallel_for((n + kChunk - 1) / kChunk, n * 16, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t e0 = c * kChunk, e1 = std::min(n, e0 + kChunk);
      if (drop) {
        dropout_keep_range(draw.gen, draw.first, e0, e1, threshold, kp);
        if (rp != nullptr) {
#pragma omp simd
          for (std::int64_t i = e0; i < e1; ++i) yp[i] = rp[i] + (kp[i] != 0 ? yp[i] * scale : T(0));
        } else {
#pragma omp simd
          for (std::int64_t i = e0; i < e1; ++i) yp[i] = kp[i] != 0 ? yp[i] * scale : T(0);
        }
      } else {
#pragma omp simd
        for (std::int64_t i = e0; i < e1; ++i) yp[i] = rp[i] + yp[i];
      }
    }
  });
}

// The gradient through that dropout: gy itself when there was none.
template <typename T>
Tensor<T> dropout_grad(const DropoutDraw& draw, const std::vector<std::uint8_t>& keep, const Tensor<T>& gy) {
  if (draw.p <= 0) return gy;
  Tensor<T> gx = Tensor<T>::empty(gy.shape());
  apply_keep(gy.data(), keep.data(), static_cast<T>(1.0 / (1.0 - draw.p)), gx.data(), gy.numel());
  return gx;
}
}  // namespace detail

// y = x W^T + b over the last axis of x. Inputs {x [..., in], W [out, in]} or {x, W, b [out]}.
template <typename T>
class LinearFn : public Function<T> {
 public:
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    const Tensor<T> w = in[1].contiguous();
    if (w.dim() != 2) dagpt::detail::raise<ShapeError>("linear: weight must be 2-D, got {}", w.shape().str());
    const std::int64_t out = w.size(0), k = w.size(1);
    detail::require_last_dim(x, k, "linear", "input");
    Shape ys = x.shape();
    ys[ys.size() - 1] = out;
    Tensor<T> y = Tensor<T>::empty(ys);
    const std::int64_t m = detail::rows_of(x);
    Tensor<T> b;
    if (in.size() > 2) {
      b = in[2].contiguous();
      if (b.dim() != 1 || b.size(0) != out) {
        dagpt::detail::raise<ShapeError>("linear: bias has shape {}, expected [{}]", b.shape().str(), out);
      }
    }
    detail::linear_forward(x.data(), w.data(), b.data(), y.data(), m, k, out);
    this->save_for_backward({x, w});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& w = this->saved()[1];
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t out = w.size(0), k = w.size(1), m = detail::rows_of(x);
    std::vector<Tensor<T>> grads(this->inputs.size());
    if (this->needs_input_grad(0)) {
      grads[0] = Tensor<T>::empty(x.shape());
      detail::linear_backward_input(gy.data(), w.data(), grads[0].data(), m, k, out);
    }
    if (this->needs_input_grad(1)) grads[1] = Tensor<T>::empty(w.shape());
    if (grads.size() > 2 && this->needs_input_grad(2)) grads[2] = Tensor<T>::empty({out});
    if (grads[1].defined() || (grads.size() > 2 && grads[2].defined())) {
      detail::linear_backward_params(gy.data(), x.data(), grads[1].data(),
                                     grads.size() > 2 ? grads[2].data() : nullptr, m, k, out);
    }
    return grads;
  }
  std::string name() const override { return "Linear"; }
};

// out[..., :] = weight[idx[...], :]. Input {weight [V, C]}; the indices are fixed. Backward adds each
// output row's gradient into the row it came from (the unused rows get zero, no V x C product).
template <typename T>
class EmbeddingFn : public Function<T> {
 public:
  explicit EmbeddingFn(Tensor<std::int64_t> idx) : idx_(idx.contiguous()) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> w = in[0].contiguous();
    if (w.dim() != 2)
      dagpt::detail::raise<ShapeError>("embedding: weight must be 2-D, got {}", w.shape().str());
    const std::int64_t v = w.size(0), c = w.size(1), n = idx_.numel();
    const std::int64_t* id = idx_.data();
    for (std::int64_t i = 0; i < n; ++i) {
      if (id[i] < 0 || id[i] >= v) {
        dagpt::detail::raise<IndexError>(
            "embedding: index {} at flat position {} of the ids {} is outside [0, {})", id[i], i,
            idx_.shape().str(), v);
      }
    }
    Shape os = idx_.shape();
    std::vector<std::int64_t> dims(os.begin(), os.end());
    dims.push_back(c);
    Tensor<T> y = Tensor<T>::empty(Shape(dims));
    T* out = y.data();
    const T* src = w.data();
    parallel_for(n, n * c, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) std::copy_n(src + id[i] * c, c, out + i * c);
    });
    shape_ = w.shape();
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t c = shape_[1], n = idx_.numel();
    Tensor<T> gw = Tensor<T>::zeros(shape_);
    T* dst = gw.data();
    const T* src = gy.data();
    const std::int64_t* id = idx_.data();
    // Split the columns between threads: each thread owns a column range, so no two write one element.
    parallel_for(c, n * c, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t i = 0; i < n; ++i) {
        T* row = dst + id[i] * c;
        const T* gr = src + i * c;
        for (std::int64_t j = c0; j < c1; ++j) row[j] += gr[j];
      }
    });
    return {gw};
  }
  std::string name() const override { return "Embedding"; }

 private:
  Tensor<std::int64_t> idx_;
  Shape shape_;
};

namespace detail {
// LayerNorm of rows [r0, r1) of x [m, c]: y = (x - mean) * rstd * w (+ b), statistics in double, stored in T
// (mean and rstd may be null: recomputing y from saved statistics is done by layer_norm_apply).
template <typename T>
void layer_norm_rows(const T* x, const T* w, const T* b, double eps, std::int64_t c, std::int64_t r0,
                     std::int64_t r1, T* y, T* mean, T* rstd) {
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * c;
    // (the row sums are vectorized: a fixed association for a given build, whatever the thread count)
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = 0; j < c; ++j) s += xr[j];
    const double mu = s / static_cast<double>(c);
    double v = 0;
#pragma omp simd reduction(+ : v)
    for (std::int64_t j = 0; j < c; ++j) v += (xr[j] - mu) * (xr[j] - mu);
    const double rs = 1.0 / std::sqrt(v / static_cast<double>(c) + eps);
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
    const T muT = static_cast<T>(mu), rsT = static_cast<T>(rs);
    T* yr = y + (r - r0) * c;
    for (std::int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - muT) * rsT * w[j] + (b ? b[j] : T(0));
  }
}
// LayerNorm of the m rows of x [m, c] into y [m, c], mean and rstd [m], split between threads.
template <typename T>
void layer_norm_forward(const T* x, const T* w, const T* b, double eps, std::int64_t m, std::int64_t c, T* y,
                        T* mean, T* rstd) {
  parallel_for(m, m * c * 4, [&](std::int64_t r0, std::int64_t r1) {
    layer_norm_rows(x, w, b, eps, c, r0, r1, y + r0 * c, mean, rstd);
  });
}
// Rows [r0, r0 + n) of the LayerNorm output again, from the saved statistics (bit for bit the forward's),
// into y [n, c]: what a fused op computes instead of keeping the [m, c] output from forward to backward.
template <typename T>
void layer_norm_apply(const T* x, const T* w, const T* b, const T* mean, const T* rstd, std::int64_t c,
                      std::int64_t r0, std::int64_t n, T* y) {
  parallel_for(n, n * c * 2, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t r = r0 + i;
      const T* xr = x + r * c;
      T* yr = y + i * c;
      const T mu = mean[r], rs = rstd[r];
      for (std::int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - mu) * rs * w[j] + (b ? b[j] : T(0));
    }
  });
}
// The LayerNorm backward over m rows: gx [m, c] (may be gy: each row is read before it is written; null
// when not wanted) and the weight and bias gradients gw, gb [c] (either may be null). The parameter sums
// run in double per fixed chunk of rows, added in chunk order (deterministic).
template <typename T>
void layer_norm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* gy, std::int64_t m,
                         std::int64_t c, T* gx, T* gw, T* gb) {
  const std::int64_t parts = std::clamp<std::int64_t>(m / 64, 1, 16);
  std::vector<double> pw(static_cast<std::size_t>(parts * c), 0.0),
      pb(static_cast<std::size_t>(parts * c), 0.0);
  parallel_for(parts, m * c * 8, [&](std::int64_t p0, std::int64_t p1) {
    std::vector<double> xhat(static_cast<std::size_t>(c));
    for (std::int64_t p = p0; p < p1; ++p) {
      double* dw = pw.data() + p * c;
      double* db = pb.data() + p * c;
      for (std::int64_t r = chunk_begin(m, parts, p); r < chunk_begin(m, parts, p + 1); ++r) {
        const T* xr = x + r * c;
        const T* gr = gy + r * c;
        const double mu = mean[r], rs = rstd[r];
        double s1 = 0, s2 = 0;  // mean of dxhat and of dxhat * xhat
        double* xh_row = xhat.data();
#pragma omp simd reduction(+ : s1, s2)
        for (std::int64_t j = 0; j < c; ++j) {
          const double xh = (xr[j] - mu) * rs;
          xh_row[j] = xh;
          const double dxh = static_cast<double>(gr[j]) * w[j];
          s1 += dxh;
          s2 += dxh * xh;
          dw[j] += static_cast<double>(gr[j]) * xh;
          db[j] += gr[j];
        }
        if (gx != nullptr) {
          s1 /= static_cast<double>(c);
          s2 /= static_cast<double>(c);
          T* gxr = gx + r * c;
          for (std::int64_t j = 0; j < c; ++j) {
            const double xh = xhat[static_cast<std::size_t>(j)];
            gxr[j] = static_cast<T>(rs * (static_cast<double>(gr[j]) * w[j] - s1 - xh * s2));
          }
        }
      }
    }
  });
  for (std::int64_t j = 0; j < c; ++j) {
    double sw = 0, sb = 0;
    for (std::int64_t p = 0; p < parts; ++p) {
      sw += pw[static_cast<std::size_t>(p * c + j)];
      sb += pb[static_cast<std::size_t>(p * c + j)];
    }
    if (gw != nullptr) gw[j] = static_cast<T>(sw);
    if (gb != nullptr) gb[j] = static_cast<T>(sb);
  }
}
// grads[i]'s data, null when it is absent or undefined (a gradient that is not wanted).
template <typename T>
T* data_or_null(const std::vector<Tensor<T>>& grads, std::size_t i) {
  return i < grads.size() && grads[i].defined() ? grads[i].data() : nullptr;
}
// The LayerNorm part of a fused op: weight (and bias) given, eps; the statistics of the last forward.
template <typename T>
struct LayerNormPart {
  Tensor<T> w, b;  // b undefined without bias
  Tensor<T> mean, rstd;
  double eps = 1e-5;

  void check(const Tensor<T>& x, const char* op) const {
    const std::int64_t c = w.numel();
    require_last_dim(x, c, op, "input");
    if (b.defined() && b.numel() != c) {
      dagpt::detail::raise<ShapeError>("{}: LayerNorm bias has {} elements, its weight has {}", op, b.numel(),
                                       c);
    }
  }
  // y [m, c] = LayerNorm(x), keeping the statistics.
  void forward(const Tensor<T>& x, T* y) {
    const std::int64_t m = rows_of(x);
    mean = Tensor<T>::empty({m});
    rstd = Tensor<T>::empty({m});
    layer_norm_forward(x.data(), w.data(), b.defined() ? b.data() : nullptr, eps, m, w.numel(), y,
                       mean.data(), rstd.data());
  }
  void apply(const Tensor<T>& x, std::int64_t r0, std::int64_t n, T* y) const {
    layer_norm_apply(x.data(), w.data(), b.defined() ? b.data() : nullptr, mean.data(), rstd.data(),
                     w.numel(), r0, n, y);
  }
};
}  // namespace detail

// LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * w (+ b), biased variance. Inputs {x, w}
// or {x, w, b}. Statistics are accumulated in double.
template <typename T>
class LayerNormFn : public Function<T> {
 public:
  explicit LayerNormFn(double eps = 1e-5) : eps_(eps) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    detail::LayerNormPart<T> ln{
        in[1].contiguous(), in.size() > 2 ? in[2].contiguous() : Tensor<T>(), {}, {}, eps_};
    ln.check(x, "layer_norm");
    Tensor<T> y = Tensor<T>::empty(x.shape());
    ln.forward(x, y.data());
    this->save_for_backward({x, ln.w, ln.mean, ln.rstd});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& w = this->saved()[1];
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t c = w.numel(), m = detail::rows_of(x);
    std::vector<Tensor<T>> grads(this->inputs.size());
    if (this->needs_input_grad(0)) grads[0] = Tensor<T>::empty(x.shape());
    if (this->needs_input_grad(1)) grads[1] = Tensor<T>::empty(w.shape());
    if (grads.size() > 2 && this->needs_input_grad(2))
      grads[2] = Tensor<T>::empty(this->inputs[2]->value.shape());
    const auto data = [&grads](std::size_t i) { return detail::data_or_null(grads, i); };
    detail::layer_norm_backward(x.data(), w.data(), this->saved()[2].data(), this->saved()[3].data(),
                                gy.data(), m, c, data(0), data(1), data(2));
    return grads;
  }
  std::string name() const override { return "LayerNorm"; }

 private:
  double eps_;
};

// y_k = linear(layer_norm(x, ln_w, ln_b), W_k, b_k) for k = 0 .. K-1 as one op with K outputs (a
// predictor head's linears on the backbone's final LayerNorm): the weights go side by side into one
// product, so x is normalized and read once, the head's narrow products become one wide one, and the
// backward pass sums the K gradients at the LayerNorm output inside one product instead of adding K
// [m, C] tensors. Keeps x and the row statistics, not the LayerNorm output. Inputs {x, ln_w, [ln_b],
// W_0, [b_0], W_1, [b_1], ...}; `biases[k]` says whether b_k is given.
template <typename T>
class LayerNormLinearsFn : public Function<T> {
 public:
  LayerNormLinearsFn(double eps, bool ln_bias, std::vector<bool> biases)
      : eps_(eps), ln_bias_(ln_bias), biases_(std::move(biases)) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    std::size_t at = ln_bias_ ? 3 : 2;
    std::size_t want = at;
    for (const bool b : biases_) want += b ? 2 : 1;
    if (in.size() != want) {
      dagpt::detail::raise<ValueError>("layer_norm_linears: expected {} inputs, got {}", want, in.size());
    }
    const Tensor<T> x = in[0].contiguous();
    detail::LayerNormPart<T> ln{
        in[1].contiguous(), ln_bias_ ? in[2].contiguous() : Tensor<T>(), {}, {}, eps_};
    ln.check(x, "layer_norm_linears");
    const std::int64_t c = ln.w.numel(), m = detail::rows_of(x);
    // The weights [sum of outs, C] and biases side by side.
    std::vector<Tensor<T>> ws, bs;
    offsets_ = {0};
    slots_.clear();
    for (const bool has_b : biases_) {
      const Tensor<T> w = in[at].contiguous();
      if (w.dim() != 2 || w.size(1) != c) {
        dagpt::detail::raise<ShapeError>("layer_norm_linears: weight {} has shape {}, expected [out, {}]",
                                         ws.size(), w.shape().str(), c);
      }
      Tensor<T> b;
      if (has_b) {
        b = in[at + 1].contiguous();
        if (b.dim() != 1 || b.size(0) != w.size(0)) {
          dagpt::detail::raise<ShapeError>("layer_norm_linears: bias {} has shape {}, expected [{}]",
                                           bs.size(), b.shape().str(), w.size(0));
        }
      }
      slots_.push_back(at);
      at += has_b ? 2 : 1;
      offsets_.push_back(offsets_.back() + w.size(0));
      ws.push_back(w);
      bs.push_back(b);
    }
    const std::int64_t total = offsets_.back();
    Tensor<T> wc = Tensor<T>::empty({total, c}), bc = Tensor<T>::zeros({total});
    for (std::size_t k = 0; k < ws.size(); ++k) {
      std::copy_n(ws[k].data(), ws[k].numel(), wc.data() + offsets_[k] * c);
      if (bs[k].defined()) std::copy_n(bs[k].data(), bs[k].numel(), bc.data() + offsets_[k]);
    }
    Tensor<T> y = Tensor<T>::empty({m, total});
    {
      Tensor<T> h = Tensor<T>::empty(x.shape());  // the LayerNorm output, freed here
      ln.forward(x, h.data());
      detail::linear_forward(h.data(), wc.data(), bc.data(), y.data(), m, c, total);
    }
    std::vector<Tensor<T>> outs;
    for (std::size_t k = 0; k < ws.size(); ++k) {
      Shape s = x.shape();
      s[s.size() - 1] = offsets_[k + 1] - offsets_[k];
      outs.push_back(y.narrow(1, offsets_[k], offsets_[k + 1] - offsets_[k]).contiguous().reshape(s));
    }
    ln_ = ln;
    this->save_for_backward({x, wc});
    return outs;
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& wc = this->saved()[1];
    const std::int64_t c = wc.size(1), total = wc.size(0), m = detail::rows_of(x);
    const std::size_t K = biases_.size();
    // The output gradients side by side [m, total] (one output: its gradient as it is).
    Tensor<T> gy = K == 1 ? g[0].contiguous() : Tensor<T>::empty({m, total});
    for (std::size_t k = 0; k < K && K > 1; ++k) {
      const Tensor<T> gk = g[k].contiguous();
      const std::int64_t w = offsets_[k + 1] - offsets_[k];
      const T* src = gk.data();
      T* dst = gy.data() + offsets_[k];
      parallel_for(m, m * w, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) std::copy_n(src + r * w, w, dst + r * total);
      });
    }
    std::vector<Tensor<T>> grads(this->inputs.size());
    const auto want = [&](std::size_t i) { return this->needs_input_grad(i); };
    bool params = false;
    for (std::size_t k = 0; k < K; ++k)
      params = params || want(slots_[k]) || (biases_[k] && want(slots_[k] + 1));
    const bool ln_grads = want(0) || want(1) || (ln_bias_ && want(2));
    Tensor<T> h = Tensor<T>::empty(x.shape());  // the LayerNorm output again, then its gradient
    ln_.apply(x, 0, m, h.data());
    if (params) {
      Tensor<T> gw = Tensor<T>::empty({total, c}), gb = Tensor<T>::empty({total});
      detail::linear_backward_params(gy.data(), h.data(), gw.data(), gb.data(), m, c, total);
      for (std::size_t k = 0; k < K; ++k) {
        const std::int64_t w = offsets_[k + 1] - offsets_[k];
        const auto part = [&](const Tensor<T>& t) {
          return K == 1 ? t : t.narrow(0, offsets_[k], w).clone();
        };
        if (want(slots_[k])) grads[slots_[k]] = part(gw);
        if (biases_[k] && want(slots_[k] + 1)) grads[slots_[k] + 1] = part(gb);
      }
    }
    if (ln_grads) {
      detail::linear_backward_input(gy.data(), wc.data(), h.data(), m, c, total);
      if (want(0)) grads[0] = h;  // the LayerNorm backward runs in place
      if (want(1)) grads[1] = Tensor<T>::empty(ln_.w.shape());
      if (ln_bias_ && want(2)) grads[2] = Tensor<T>::empty(ln_.b.shape());
      const auto data = [&grads](std::size_t i) { return detail::data_or_null(grads, i); };
      detail::layer_norm_backward(x.data(), ln_.w.data(), ln_.mean.data(), ln_.rstd.data(), h.data(), m, c,
                                  data(0), data(1), ln_bias_ ? data(2) : nullptr);
    }
    return grads;
  }
  void release() override {
    Function<T>::release();
    ln_ = {};
  }
  std::string name() const override { return "LayerNormLinears"; }

 private:
  double eps_;
  bool ln_bias_;
  std::vector<bool> biases_;
  std::vector<std::int64_t> offsets_;  // output k is columns [offsets_[k], offsets_[k + 1])
  std::vector<std::size_t> slots_;     // input position of W_k
  detail::LayerNormPart<T> ln_;
};

namespace detail {
// y = gelu(x) over n elements (y may be x).
template <typename T>
void gelu_forward(const T* x, T* y, std::int64_t n) {
  parallel_for(n, n * 8, [&](std::int64_t b, std::int64_t e) {
    const Eigen::Map<const ArrayX<T>> X(x + b, e - b);
    Eigen::Map<ArrayX<T>> Y(y + b, e - b);
    Y = T(0.5) * X * (T(1) + (X * T(M_SQRT1_2)).erf());
  });
}
// gx = gy * gelu'(x) over n elements (gx may be gy).
template <typename T>
void gelu_backward(const T* x, const T* gy, T* gx, std::int64_t n) {
  const T inv_sqrt_2pi = T(0.39894228040143267794);
  parallel_for(n, n * 12, [&](std::int64_t b, std::int64_t e) {
    const Eigen::Map<const ArrayX<T>> X(x + b, e - b), G(gy + b, e - b);
    Eigen::Map<ArrayX<T>> D(gx + b, e - b);
    D = G * (T(0.5) * (T(1) + (X * T(M_SQRT1_2)).erf()) + X * inv_sqrt_2pi * (T(-0.5) * X.square()).exp());
  });
}
}  // namespace detail

// Exact GELU: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (Eigen's vectorized erf and exp).
template <typename T>
class GeluFn : public Function<T> {
 public:
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    Tensor<T> y = Tensor<T>::empty(x.shape());
    detail::gelu_forward(x.data(), y.data(), x.numel());
    this->save_for_backward({x});
    return {y};
  }
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T> gy = g[0].contiguous();
    Tensor<T> gx = Tensor<T>::empty(x.shape());
    detail::gelu_backward(x.data(), gy.data(), gx.data(), x.numel());
    return {gx};
  }
  std::string name() const override { return "GELU"; }
};

// The transformer's MLP in one op: y = [r +] dropout(gelu(x W1^T + b1) W2^T + b2). Inputs {x, W1, W2} or
// {x, W1, b1, W2, b2}, with the residual r first when `residual`. Saves only x and the pre-activation
// u = x W1^T + b1 (and the dropout's keep-flags); backward recomputes gelu(u) for W2's gradient, so the
// 4C-wide activation is never kept (the unfused ops keep both u and gelu(u)), and neither are the
// product before dropout and the dropped one (the unfused graph keeps both alive as op inputs).
// With a LayerNorm in front (`ln` = 1: weight, 2: weight and bias), the op is y = [x +] dropout(mlp(ln(x)))
// on inputs {x, ln_w, [ln_b], W1, [b1], W2, [b2]} (the residual is x itself): it keeps x and the row
// statistics instead of the LayerNorm output, which the backward computes again row chunk by row chunk.
template <typename T>
class MlpFn : public Function<T> {
 public:
  explicit MlpFn(DropoutDraw draw = {}, bool residual = false, int ln = 0, double eps = 1e-5)
      : draw_(draw), res_(residual), ln_kind_(ln), eps_(eps) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const bool sep_r = res_ && ln_kind_ == 0;  // a separate residual input
    const std::size_t base = ln_kind_ > 0 ? 1 + static_cast<std::size_t>(ln_kind_) : (sep_r ? 2 : 1);
    const bool has_b = in.size() == base + 4;
    if (in.size() != base + 2 && !has_b) {
      dagpt::detail::raise<ValueError>("mlp: expected {} or {} inputs, got {}", base + 2, base + 4,
                                       in.size());
    }
    set_slots(has_b);
    const Tensor<T> x = in[ix_].contiguous();
    const Tensor<T> w1 = in[iw1_].contiguous();
    const Tensor<T> w2 = in[iw2_].contiguous();
    if (w1.dim() != 2 || w2.dim() != 2 || w2.size(1) != w1.size(0)) {
      dagpt::detail::raise<ShapeError>("mlp: weights have shapes {} and {}, expected [H, C] and [C2, H]",
                                       w1.shape().str(), w2.shape().str());
    }
    const std::int64_t hid = w1.size(0), c = w1.size(1), out = w2.size(0), m = detail::rows_of(x);
    detail::require_last_dim(x, c, "mlp", "input");
    Tensor<T> b1, b2;
    if (has_b) {
      b1 = in[ib1_].contiguous();
      b2 = in[ib2_].contiguous();
      if (b1.numel() != hid || b2.numel() != out) {
        dagpt::detail::raise<ShapeError>("mlp: biases have {} and {} elements, expected {} and {}",
                                         b1.numel(), b2.numel(), hid, out);
      }
    }
    Shape us = x.shape(), ys = x.shape();
    us[us.size() - 1] = hid;
    ys[ys.size() - 1] = out;
    Tensor<T> u = Tensor<T>::empty(us), y = Tensor<T>::empty(ys);
    if (ln_kind_ > 0) {
      ln_ = {in[1].contiguous(), ln_kind_ > 1 ? in[2].contiguous() : Tensor<T>(), {}, {}, eps_};
      ln_.check(x, "mlp");
      Tensor<T> h = Tensor<T>::empty(x.shape());  // the LayerNorm output, freed here
      ln_.forward(x, h.data());
      detail::linear_forward(h.data(), w1.data(), b1.data(), u.data(), m, c, hid);
    } else {
      detail::linear_forward(x.data(), w1.data(), b1.data(), u.data(), m, c, hid);
    }
    {
      Tensor<T> a = Tensor<T>::empty(us);
      detail::gelu_forward(u.data(), a.data(), u.numel());
      detail::linear_forward(a.data(), w2.data(), b2.data(), y.data(), m, hid, out);
    }
    const Tensor<T>* r = res_ ? &in[sep_r ? 0 : ix_] : nullptr;
    if (r != nullptr && r->shape() != y.shape()) {
      dagpt::detail::raise<ShapeError>("mlp: residual has shape {}, the output {}", r->shape().str(),
                                       y.shape().str());
    }
    detail::dropout_residual(draw_, keep_, r, y, "mlp");
    this->save_for_backward({x, w1, w2, u});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& w1 = this->saved()[1];
    const Tensor<T>& w2 = this->saved()[2];
    const Tensor<T>& u = this->saved()[3];
    const std::int64_t hid = w1.size(0), c = w1.size(1), out = w2.size(0), m = detail::rows_of(x);
    std::vector<Tensor<T>> grads(this->inputs.size());
    const auto want = [&](std::size_t i) { return i != kNone && this->needs_input_grad(i); };
    const auto data = [&grads](std::size_t i) { return detail::data_or_null(grads, i); };
    const bool sep_r = res_ && ln_kind_ == 0;
    if (sep_r && want(0)) grads[0] = g[0];
    const Tensor<T> gy = detail::dropout_grad(draw_, keep_, g[0].contiguous());
    const bool w2_grads = want(iw2_) || want(ib2_);
    const bool ln_grads = want(ilnw_) || want(ilnb_);
    const bool x_grad = want(ix_) || ln_grads;  // the gradient at the first product's input
    const bool u_grad = x_grad || want(iw1_) || want(ib1_);
    const auto zeros = [](const Shape& s) { return Tensor<T>::zeros(s); };
    if (want(iw2_)) grads[iw2_] = zeros(w2.shape());
    if (want(ib2_)) grads[ib2_] = zeros({out});
    if (want(iw1_)) grads[iw1_] = zeros(w1.shape());
    if (want(ib1_)) grads[ib1_] = zeros({hid});
    Tensor<T> gx = x_grad ? Tensor<T>::empty(x.shape()) : Tensor<T>();
    // Rows go in chunks, so that the [rows, hid] intermediates (gelu(u), then the gradient of u) are never
    // whole: 2 MB of scratch instead of m x hid. The chunks are multiples of detail::kGemmRows, so every
    // result is bit for bit the unchunked one.
    const std::int64_t rows = detail::chunk_rows(m, hid);
    Tensor<T> t = Tensor<T>::empty({rows, hid});  // gelu(u), then the gradient of u
    const bool w1_grads = data(iw1_) != nullptr || data(ib1_) != nullptr;
    Tensor<T> h = ln_kind_ > 0 && w1_grads ? Tensor<T>::empty({rows, c}) : Tensor<T>();  // LayerNorm output
    for (std::int64_t r0 = 0; r0 < m; r0 += rows) {
      const std::int64_t n = std::min(rows, m - r0);
      const T* ur = u.data() + r0 * hid;
      const T* gyr = gy.data() + r0 * out;
      if (w2_grads) {
        detail::gelu_forward(ur, t.data(), n * hid);
        detail::linear_backward_params(gyr, t.data(), data(iw2_), data(ib2_), n, hid, out, true);
      }
      if (u_grad) {
        detail::linear_backward_input(gyr, w2.data(), t.data(), n, hid, out);
        detail::gelu_backward(ur, t.data(), t.data(), n * hid);
        if (w1_grads) {
          const T* xr = x.data() + r0 * c;
          if (ln_kind_ > 0) {
            ln_.apply(x, r0, n, h.data());
            xr = h.data();
          }
          detail::linear_backward_params(t.data(), xr, data(iw1_), data(ib1_), n, c, hid, true);
        }
        if (x_grad) detail::linear_backward_input(t.data(), w1.data(), gx.data() + r0 * c, n, c, hid);
      }
    }
    if (ln_kind_ > 0 && x_grad) {
      if (want(ilnw_)) grads[ilnw_] = Tensor<T>::empty(ln_.w.shape());
      if (want(ilnb_)) grads[ilnb_] = Tensor<T>::empty(ln_.b.shape());
      detail::layer_norm_backward(x.data(), ln_.w.data(), ln_.mean.data(), ln_.rstd.data(), gx.data(), m, c,
                                  want(ix_) ? gx.data() : nullptr, data(ilnw_), data(ilnb_));
      if (res_ && want(ix_)) {  // y = x + ...: the residual's gradient too
        const Tensor<T> g0 = g[0].contiguous();
        const T* gp = g0.data();
        T* xp = gx.data();
        parallel_for(gx.numel(), gx.numel() * 2, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i) xp[i] += gp[i];
        });
      }
    }
    if (want(ix_)) grads[ix_] = gx;
    return grads;
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
    ln_ = {};
  }
  std::string name() const override { return ln_kind_ > 0 ? "LayerNormMLP" : "MLP"; }

 private:
  static constexpr std::size_t kNone = ~std::size_t{0};
  // Input positions (kNone: not given).
  void set_slots(bool has_b) {
    if (ln_kind_ > 0) {
      ix_ = 0;
      ilnw_ = 1;
      ilnb_ = ln_kind_ > 1 ? 2 : kNone;
    } else {
      ix_ = res_ ? 1 : 0;
    }
    const std::size_t w = ln_kind_ > 0 ? 1 + static_cast<std::size_t>(ln_kind_) : ix_ + 1;
    iw1_ = w;
    ib1_ = has_b ? w + 1 : kNone;
    iw2_ = has_b ? w + 2 : w + 1;
    ib2_ = has_b ? w + 3 : kNone;
  }
  DropoutDraw draw_;
  bool res_;
  int ln_kind_;
  double eps_;
  std::size_t ix_ = 0, ilnw_ = kNone, ilnb_ = kNone, iw1_ = 0, ib1_ = kNone, iw2_ = 0, ib2_ = kNone;
  detail::LayerNormPart<T> ln_;
  std::vector<std::uint8_t> keep_;
};

// y = r + dropout(x W^T + b): a projection, its dropout and the residual add in one op (the attention's
// c_proj). Inputs {r, x, W} or {r, x, W, b}. Keeps x and the keep-flags only.
template <typename T>
class ResidualLinearFn : public Function<T> {
 public:
  explicit ResidualLinearFn(DropoutDraw draw = {}) : draw_(draw) {}
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[1].contiguous();
    const Tensor<T> w = in[2].contiguous();
    if (w.dim() != 2) dagpt::detail::raise<ShapeError>("linear: weight must be 2-D, got {}", w.shape().str());
    const std::int64_t out = w.size(0), k = w.size(1);
    detail::require_last_dim(x, k, "linear", "input");
    Tensor<T> b;
    if (in.size() > 3) {
      b = in[3].contiguous();
      if (b.dim() != 1 || b.size(0) != out) {
        dagpt::detail::raise<ShapeError>("linear: bias has shape {}, expected [{}]", b.shape().str(), out);
      }
    }
    Shape ys = x.shape();
    ys[ys.size() - 1] = out;
    Tensor<T> y = Tensor<T>::empty(ys);
    detail::linear_forward(x.data(), w.data(), b.data(), y.data(), detail::rows_of(x), k, out);
    detail::dropout_residual(draw_, keep_, &in[0], y, "linear");
    this->save_for_backward({x, w});
    return {y};
  }
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& w = this->saved()[1];
    const std::int64_t out = w.size(0), k = w.size(1), m = detail::rows_of(x);
    std::vector<Tensor<T>> grads(this->inputs.size());
    if (this->needs_input_grad(0)) grads[0] = g[0];
    const Tensor<T> gy = detail::dropout_grad(draw_, keep_, g[0].contiguous());
    if (this->needs_input_grad(1)) {
      grads[1] = Tensor<T>::empty(x.shape());
      detail::linear_backward_input(gy.data(), w.data(), grads[1].data(), m, k, out);
    }
    if (this->needs_input_grad(2)) grads[2] = Tensor<T>::empty(w.shape());
    if (grads.size() > 3 && this->needs_input_grad(3)) grads[3] = Tensor<T>::empty({out});
    if (grads[2].defined() || (grads.size() > 3 && grads[3].defined())) {
      detail::linear_backward_params(gy.data(), x.data(), grads[2].data(),
                                     grads.size() > 3 ? grads[3].data() : nullptr, m, k, out);
    }
    return grads;
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
  }
  std::string name() const override { return "ResidualLinear"; }

 private:
  DropoutDraw draw_;
  std::vector<std::uint8_t> keep_;
};

// y[b, t, :] = dropout(wte[idx[b, t], :] + wpe[t, :]): token and position embeddings and the dropout in one
// op. Inputs {wte [V, C], wpe [>= T, C]}; idx [B, T] is fixed. Keeps only the keep-flags.
template <typename T>
class TokenPositionEmbeddingFn : public Function<T> {
 public:
  TokenPositionEmbeddingFn(Tensor<std::int64_t> idx, DropoutDraw draw = {})
      : idx_(idx.contiguous()), draw_(draw) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> wte = in[0].contiguous();
    const Tensor<T> wpe = in[1].contiguous();
    if (idx_.dim() != 2)
      dagpt::detail::raise<ShapeError>("embedding: token ids have shape {}, expected [B, T]",
                                       idx_.shape().str());
    if (wte.dim() != 2 || wpe.dim() != 2 || wpe.size(1) != wte.size(1) || wpe.size(0) < idx_.size(1)) {
      dagpt::detail::raise<ShapeError>(
          "embedding: tables have shapes {} and {}, expected [V, C] and [>= {}, C]", wte.shape().str(),
          wpe.shape().str(), idx_.size(1));
    }
    const std::int64_t v = wte.size(0), c = wte.size(1), Tn = idx_.size(1), n = idx_.numel();
    const std::int64_t* id = idx_.data();
    for (std::int64_t i = 0; i < n; ++i) {
      if (id[i] < 0 || id[i] >= v) {
        dagpt::detail::raise<IndexError>(
            "embedding: index {} at flat position {} of the ids {} is outside [0, {})", id[i], i,
            idx_.shape().str(), v);
      }
    }
    Tensor<T> y = Tensor<T>::empty({idx_.size(0), Tn, c});
    T* out = y.data();
    const T* te = wte.data();
    const T* pe = wpe.data();
    parallel_for(n, n * c, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const T* a = te + id[i] * c;
        const T* p = pe + (i % Tn) * c;
        T* r = out + i * c;
#pragma omp simd
        for (std::int64_t j = 0; j < c; ++j) r[j] = a[j] + p[j];
      }
    });
    detail::dropout_residual<T>(draw_, keep_, nullptr, y, "embedding");
    vshape_ = wte.shape();
    pshape_ = wpe.shape();
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T> gy = detail::dropout_grad(draw_, keep_, g[0].contiguous());
    const std::int64_t c = vshape_[1], Tn = idx_.size(1), n = idx_.numel(), B = idx_.size(0);
    std::vector<Tensor<T>> grads(2);
    const T* src = gy.data();
    if (this->needs_input_grad(0)) {
      grads[0] = Tensor<T>::zeros(vshape_);
      T* dst = grads[0].data();
      const std::int64_t* id = idx_.data();
      // Each thread owns a column range, so no two write one element; rows are added in order.
      parallel_for(c, n * c, [&](std::int64_t c0, std::int64_t c1) {
        for (std::int64_t i = 0; i < n; ++i) {
          T* row = dst + id[i] * c;
          const T* gr = src + i * c;
          for (std::int64_t j = c0; j < c1; ++j) row[j] += gr[j];
        }
      });
    }
    if (this->needs_input_grad(1)) {
      grads[1] = Tensor<T>::zeros(pshape_);
      T* dst = grads[1].data();
      parallel_for(Tn, n * c, [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t t = t0; t < t1; ++t) {
          T* row = dst + t * c;
          for (std::int64_t b = 0; b < B; ++b) {
            const T* gr = src + (b * Tn + t) * c;
#pragma omp simd
            for (std::int64_t j = 0; j < c; ++j) row[j] += gr[j];
          }
        }
      });
    }
    return grads;
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
  }
  std::string name() const override { return "TokenPositionEmbedding"; }

 private:
  Tensor<std::int64_t> idx_;
  DropoutDraw draw_;
  std::vector<std::uint8_t> keep_;
  Shape vshape_, pshape_;
};

// y = x * keep / (1 - p). Input {x}. p = 0 or eval mode should not build this op at all.
template <typename T>
class DropoutFn : public Function<T> {
 public:
  explicit DropoutFn(DropoutDraw draw) : draw_(draw) {}
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    const std::int64_t n = x.numel();
    keep_.resize(static_cast<std::size_t>(n));
    detail::dropout_keep(draw_.gen, draw_.first, n, draw_.p, keep_.data());
    const T scale = static_cast<T>(1.0 / (1.0 - draw_.p));
    Tensor<T> y = Tensor<T>::empty(x.shape());
    detail::apply_keep(x.data(), keep_.data(), scale, y.data(), n);
    return {y};
  }
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T> gy = g[0].contiguous();
    const T scale = static_cast<T>(1.0 / (1.0 - draw_.p));
    Tensor<T> gx = Tensor<T>::empty(gy.shape());
    detail::apply_keep(gy.data(), keep_.data(), scale, gx.data(), gy.numel());
    return {gx};
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
  }
  std::string name() const override { return "Dropout"; }

 private:
  DropoutDraw draw_;
  std::vector<std::uint8_t> keep_;
};

// Causal multi-head self-attention on a fused qkv tensor [B, T, 3C] (q, k, v in that order, heads of
// C / n_head): y[b, t, h] = sum_{u <= t} softmax_u(q_t . k_u / sqrt(hs)) v_u, heads merged -> [B, T, C].
// With a dropout draw of p > 0, dropout acts on the probabilities. Saves the probabilities for backward
// (4 B H T^2 bytes in float) and the keep-flags (B H T^2 bytes); the dropped probabilities are recomputed.
template <typename T>
class CausalAttentionFn : public Function<T> {
 public:
  CausalAttentionFn(std::int64_t n_head, DropoutDraw draw = {}) : n_head_(n_head), draw_(draw) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> qkv = in[0].contiguous();
    if (qkv.dim() != 3 || qkv.size(2) % (3 * n_head_) != 0) {
      dagpt::detail::raise<ShapeError>(
          "attention: qkv has shape {}, expected [B, T, 3C] with C divisible by {} heads", qkv.shape().str(),
          n_head_);
    }
    const std::int64_t B = qkv.size(0), Tn = qkv.size(1), C = qkv.size(2) / 3, H = n_head_, hs = C / H;
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
    Tensor<T> y = Tensor<T>::empty({B, Tn, C});
    Tensor<T> att = Tensor<T>::empty({B, H, Tn, Tn});
    const bool drop = draw_.p > 0;
    if (drop) {
      keep_.resize(static_cast<std::size_t>(B * H * Tn * Tn));
      detail::dropout_keep(draw_.gen, draw_.first, B * H * Tn * Tn, draw_.p, keep_.data());
    }
    const T dscale = static_cast<T>(drop ? 1.0 / (1.0 - draw_.p) : 1.0);
    parallel_for(B * H, B * H * Tn * Tn * hs * 4, [&](std::int64_t p0, std::int64_t p1) {
      detail::RowMat<T> pd(drop ? Tn : 0, drop ? Tn : 0);
      for (std::int64_t bh = p0; bh < p1; ++bh) {
        const std::int64_t b = bh / H, h = bh % H;
        const T* base = qkv.data() + b * Tn * 3 * C + h * hs;
        const detail::CStridedRM<T> Q(base, Tn, hs, Eigen::OuterStride<>(3 * C));
        const detail::CStridedRM<T> K(base + C, Tn, hs, Eigen::OuterStride<>(3 * C));
        const detail::CStridedRM<T> V(base + 2 * C, Tn, hs, Eigen::OuterStride<>(3 * C));
        detail::MapRM<T> P(att.data() + bh * Tn * Tn, Tn, Tn);
        P.noalias() = (Q * K.transpose()) * scale;
        for (std::int64_t t = 0; t < Tn; ++t) {  // softmax of row t over u <= t; zero above the diagonal
          auto row = P.row(t).head(t + 1);
          const T mx = row.maxCoeff();
          row = (row.array() - mx).exp().matrix();
          row /= row.sum();
          P.row(t).tail(Tn - t - 1).setZero();
        }
        detail::StridedRM<T> Y(y.data() + b * Tn * C + h * hs, Tn, hs, Eigen::OuterStride<>(C));
        if (drop) {
          detail::apply_keep_serial(P.data(), keep_.data() + bh * Tn * Tn, dscale, pd.data(), Tn * Tn);
          Y.noalias() = pd * V;
        } else {
          Y.noalias() = P * V;
        }
      }
    });
    this->save_for_backward({qkv, att});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& qkv = this->saved()[0];
    const Tensor<T>& att = this->saved()[1];
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t B = qkv.size(0), Tn = qkv.size(1), C = qkv.size(2) / 3, H = n_head_, hs = C / H;
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
    const bool drop = draw_.p > 0;
    const T dscale = static_cast<T>(drop ? 1.0 / (1.0 - draw_.p) : 1.0);
    Tensor<T> gqkv = Tensor<T>::empty(qkv.shape());
    parallel_for(B * H, B * H * Tn * Tn * hs * 8, [&](std::int64_t p0, std::int64_t p1) {
      detail::RowMat<T> dP(Tn, Tn), pd(drop ? Tn : 0, drop ? Tn : 0);
      for (std::int64_t bh = p0; bh < p1; ++bh) {
        const std::int64_t b = bh / H, h = bh % H;
        const std::int64_t off = b * Tn * 3 * C + h * hs;
        const Eigen::OuterStride<> s3(3 * C);
        const detail::CStridedRM<T> Q(qkv.data() + off, Tn, hs, s3), K(qkv.data() + off + C, Tn, hs, s3),
            V(qkv.data() + off + 2 * C, Tn, hs, s3);
        detail::StridedRM<T> dQ(gqkv.data() + off, Tn, hs, s3), dK(gqkv.data() + off + C, Tn, hs, s3),
            dV(gqkv.data() + off + 2 * C, Tn, hs, s3);
        const detail::CStridedRM<T> dY(gy.data() + b * Tn * C + h * hs, Tn, hs, Eigen::OuterStride<>(C));
        const detail::CMapRM<T> P(att.data() + bh * Tn * Tn, Tn, Tn);
        if (drop) {  // the dropped probabilities, as in forward
          detail::apply_keep_serial(P.data(), keep_.data() + bh * Tn * Tn, dscale, pd.data(), Tn * Tn);
          dV.noalias() = pd.transpose() * dY;
        } else {
          dV.noalias() = P.transpose() * dY;
        }
        dP.noalias() = dY * V.transpose();
        if (drop) {
          const std::uint8_t* kp = keep_.data() + bh * Tn * Tn;
          for (std::int64_t i = 0; i < Tn * Tn; ++i) dP.data()[i] = kp[i] ? dP.data()[i] * dscale : T(0);
        }
        // Softmax backward row by row over u <= t, then the scale: dS = P (dP - <P, dP>) / sqrt(hs).
        for (std::int64_t t = 0; t < Tn; ++t) {
          auto pr = P.row(t).head(t + 1);
          auto dr = dP.row(t).head(t + 1);
          const T dot = pr.dot(dr);
          dr = (pr.array() * (dr.array() - dot) * scale).matrix();
          dP.row(t).tail(Tn - t - 1).setZero();
        }
        dQ.noalias() = dP * K;
        dK.noalias() = dP.transpose() * Q;
      }
    });
    return {gqkv};
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
  }
  std::string name() const override { return "CausalSelfAttention"; }

 private:
  std::int64_t n_head_;
  DropoutDraw draw_;
  std::vector<std::uint8_t> keep_;
};

// Var-level wrappers.
template <typename T>
Var<T> linear(const Var<T>& x, const Var<T>& w, const Var<T>& b = {}) {
  return b.defined() ? apply<LinearFn<T>, T>({x, w, b})[0] : apply<LinearFn<T>, T>({x, w})[0];
}
template <typename T>
Var<T> embedding(const Var<T>& weight, const Tensor<std::int64_t>& idx) {
  return apply<EmbeddingFn<T>, T>({weight}, idx)[0];
}
template <typename T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& w, const Var<T>& b = {}, double eps = 1e-5) {
  return b.defined() ? apply<LayerNormFn<T>, T>({x, w, b}, eps)[0] : apply<LayerNormFn<T>, T>({x, w}, eps)[0];
}
template <typename T>
Var<T> gelu(const Var<T>& x) {
  return apply<GeluFn<T>, T>({x})[0];
}
// [r +] dropout(gelu(x W1^T + b1) W2^T + b2) as one op (MlpFn); the biases are both given or both left
// out; r may be left undefined.
template <typename T>
Var<T> mlp(const Var<T>& x, const Var<T>& w1, const Var<T>& b1, const Var<T>& w2, const Var<T>& b2,
           const DropoutDraw& draw = {}, const Var<T>& r = {}) {
  if (b1.defined() != b2.defined()) dagpt::detail::raise<ValueError>("mlp: give both biases or neither");
  std::vector<Var<T>> in;
  if (r.defined()) in.push_back(r);
  in.push_back(x);
  in.push_back(w1);
  if (b1.defined()) in.push_back(b1);
  in.push_back(w2);
  if (b2.defined()) in.push_back(b2);
  return apply<MlpFn<T>, T>(in, draw, r.defined())[0];
}
// [x +] dropout(mlp(layer_norm(x, ln_w, ln_b))) as one op (MlpFn with its LayerNorm): keeps x, not the
// LayerNorm output. The residual is x itself.
template <typename T>
Var<T> layer_norm_mlp(const Var<T>& x, const Var<T>& ln_w, const Var<T>& ln_b, const Var<T>& w1,
                      const Var<T>& b1, const Var<T>& w2, const Var<T>& b2, const DropoutDraw& draw = {},
                      bool residual = true, double eps = 1e-5) {
  if (b1.defined() != b2.defined()) dagpt::detail::raise<ValueError>("mlp: give both biases or neither");
  std::vector<Var<T>> in;  // (not a braced list: GCC 12 then warns of bounds on the later push_backs)
  in.reserve(7);
  const Var<T>* all[] = {&x, &ln_w, &ln_b, &w1, &b1, &w2, &b2};
  const bool optional[] = {false, false, true, false, true, false, true};  // left out when undefined
  for (int i = 0; i < 7; ++i) {
    if (!optional[i] || all[i]->defined()) in.push_back(*all[i]);
  }
  return apply<MlpFn<T>, T>(in, draw, residual, ln_b.defined() ? 2 : 1, eps)[0];
}
// linear(layer_norm(x, ln_w, ln_b), w_k, b_k) for each given (w_k, b_k) as one op (LayerNormLinearsFn);
// b_k may be undefined.
template <typename T>
std::vector<Var<T>> layer_norm_linears(const Var<T>& x, const Var<T>& ln_w, const Var<T>& ln_b,
                                       const std::vector<std::pair<Var<T>, Var<T>>>& linears,
                                       double eps = 1e-5) {
  std::vector<Var<T>> in;
  in.reserve(3 + 2 * linears.size());
  in.push_back(x);
  in.push_back(ln_w);
  if (ln_b.defined()) in.push_back(ln_b);
  std::vector<bool> biases;
  for (const auto& [w, b] : linears) {
    in.push_back(w);
    if (b.defined()) in.push_back(b);
    biases.push_back(b.defined());
  }
  return apply<LayerNormLinearsFn<T>, T>(in, eps, ln_b.defined(), biases);
}
// linear(layer_norm(x, ln_w, ln_b), w, b) as one op (LayerNormLinearsFn with one linear): keeps x, not the
// LayerNorm output.
template <typename T>
Var<T> layer_norm_linear(const Var<T>& x, const Var<T>& ln_w, const Var<T>& ln_b, const Var<T>& w,
                         const Var<T>& b = {}, double eps = 1e-5) {
  return layer_norm_linears(x, ln_w, ln_b, {{w, b}}, eps)[0];
}
// r + dropout(x W^T + b) as one op (ResidualLinearFn).
template <typename T>
Var<T> residual_linear(const Var<T>& r, const Var<T>& x, const Var<T>& w, const Var<T>& b = {},
                       const DropoutDraw& draw = {}) {
  return b.defined() ? apply<ResidualLinearFn<T>, T>({r, x, w, b}, draw)[0]
                     : apply<ResidualLinearFn<T>, T>({r, x, w}, draw)[0];
}
// dropout(wte[idx] + wpe[:T]) as one op (TokenPositionEmbeddingFn).
template <typename T>
Var<T> token_position_embedding(const Var<T>& wte, const Var<T>& wpe, const Tensor<std::int64_t>& idx,
                                const DropoutDraw& draw = {}) {
  return apply<TokenPositionEmbeddingFn<T>, T>({wte, wpe}, idx, draw)[0];
}
template <typename T>
Var<T> dropout(const Var<T>& x, const DropoutDraw& draw) {
  if (draw.p <= 0) return x;
  if (draw.p >= 1) dagpt::detail::raise<ValueError>("dropout: p = {} must be in [0, 1)", draw.p);
  return apply<DropoutFn<T>, T>({x}, draw)[0];
}
template <typename T>
Var<T> causal_self_attention(const Var<T>& qkv, std::int64_t n_head, const DropoutDraw& draw = {}) {
  return apply<CausalAttentionFn<T>, T>({qkv}, n_head, draw)[0];
}

}  // namespace dagpt::nn
