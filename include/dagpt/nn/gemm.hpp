// Single-precision matrix products for the fused ops of nn/functional.hpp: C[m, n] += A[m, k] B[k, n] with
// A and B given by (pointer, row stride, column stride), so that X W^T, GY W and GY^T X need no copies.
// With AVX2 and FMA (-march=native on a recent x86) this is a BLIS-style GEMM: B is packed in KC x 16
// panels, A in 6 x KC panels, and a 6 x 16 register-blocked kernel does the FMAs; it reached ~1.4x
// Eigen's GEMM on the transformer's shapes (Zen 3). Without those instructions, and for double, Eigen's
// GEMM does the product.
//
// Each element of C is summed over k in the same order whatever the row block a thread gets, so the
// results do not depend on the number of threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DAGPT_NN_AVX2_GEMM 1
#endif

namespace dagpt::nn::detail {

// A strided matrix operand: element (i, j) is at p[i * rs + j * cs].
template <typename T>
struct MatRef {
  const T* p;
  std::int64_t rs, cs;
  const T& operator()(std::int64_t i, std::int64_t j) const { return p[i * rs + j * cs]; }
};

// C[m, n] (row stride ldc) += A B through Eigen.
template <typename T>
void gemm_eigen(std::int64_t m, std::int64_t n, std::int64_t k, MatRef<T> a, MatRef<T> b, T* c,
                std::int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Str = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  const Eigen::Map<const Mat, Eigen::Unaligned, Str> A(a.p, m, k, Str(a.rs, a.cs)),
      B(b.p, k, n, Str(b.rs, b.cs));
  Eigen::Map<Mat, Eigen::Unaligned, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  C.noalias() += A * B;
}

#ifdef DAGPT_NN_AVX2_GEMM
namespace gemm_avx2 {
constexpr std::int64_t MR = 6, NR = 16, KC = 256, MC = 96, NC = 1024;

// 6 x 16 block: C += sum over kc of a[p] (6 values) x b[p] (16 values); c has row stride ldc. With `set`,
// C = that sum (+ bias[0..16) on every row when bias is not null) instead: C is not read.
inline void kernel(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc,
                   bool set = false, const float* bias = nullptr) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(),
         c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(),
         c51 = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
    a += MR;
    b += NR;
  }
  __m256 base0 = _mm256_setzero_ps(), base1 = _mm256_setzero_ps();
  if (set && bias != nullptr) {
    base0 = _mm256_loadu_ps(bias);
    base1 = _mm256_loadu_ps(bias + 8);
  }
  const auto add = [&](float* r, __m256 v0, __m256 v1) {
    if (set) {
      _mm256_storeu_ps(r, _mm256_add_ps(base0, v0));
      _mm256_storeu_ps(r + 8, _mm256_add_ps(base1, v1));
    } else {
      _mm256_storeu_ps(r, _mm256_add_ps(_mm256_loadu_ps(r), v0));
      _mm256_storeu_ps(r + 8, _mm256_add_ps(_mm256_loadu_ps(r + 8), v1));
    }
  };
  add(c, c00, c01);
  add(c + ldc, c10, c11);
  add(c + 2 * ldc, c20, c21);
  add(c + 3 * ldc, c30, c31);
  add(c + 4 * ldc, c40, c41);
  add(c + 5 * ldc, c50, c51);
}

// Packs B[pc : pc + kc, jc : jc + nc] as panels of NR columns, each kc x NR row-major, zero-padded.
inline void pack_b(MatRef<float> b, std::int64_t pc, std::int64_t kc, std::int64_t jc, std::int64_t nc,
                   float* out) {
  for (std::int64_t j0 = 0; j0 < nc; j0 += NR) {
    const std::int64_t w = std::min(NR, nc - j0);
    float* o = out + j0 * kc;
    if (b.cs == 1 && w == NR) {
      for (std::int64_t p = 0; p < kc; ++p) std::memcpy(o + p * NR, &b(pc + p, jc + j0), NR * sizeof(float));
    } else {
      for (std::int64_t p = 0; p < kc; ++p) {
        for (std::int64_t j = 0; j < NR; ++j) o[p * NR + j] = j < w ? b(pc + p, jc + j0 + j) : 0.0F;
      }
    }
  }
}

// Packs A[ic : ic + mc, pc : pc + kc] as panels of MR rows, each kc x MR (column of the panel first).
inline void pack_a(MatRef<float> a, std::int64_t ic, std::int64_t mc, std::int64_t pc, std::int64_t kc,
                   float* out) {
  for (std::int64_t i0 = 0; i0 < mc; i0 += MR) {
    const std::int64_t h = std::min(MR, mc - i0);
    float* o = out + i0 * kc;
    if (a.rs == 1 && h == MR) {  // columns of A are contiguous: copy 6 at a time
      for (std::int64_t p = 0; p < kc; ++p) std::memcpy(o + p * MR, &a(ic + i0, pc + p), MR * sizeof(float));
    } else if (h == MR) {
      const float* r[MR];
      for (std::int64_t i = 0; i < MR; ++i) r[i] = &a(ic + i0 + i, pc);
      for (std::int64_t p = 0; p < kc; ++p) {
        for (std::int64_t i = 0; i < MR; ++i) o[p * MR + i] = r[i][p * a.cs];
      }
    } else {
      for (std::int64_t p = 0; p < kc; ++p) {
        for (std::int64_t i = 0; i < MR; ++i) o[p * MR + i] = i < h ? a(ic + i0 + i, pc + p) : 0.0F;
      }
    }
  }
}

// C[m, n] += A B on the calling thread; with `set`, C = A B (+ bias[n] on every row when not null), C not
// read (k > 0).
inline void gemm(std::int64_t m, std::int64_t n, std::int64_t k, MatRef<float> a, MatRef<float> b, float* c,
                 std::int64_t ldc, bool set = false, const float* bias = nullptr) {
  // Packing buffers, one set per thread, kept between calls.
  thread_local std::vector<float, Eigen::aligned_allocator<float>> bp, ap;
  bp.resize(static_cast<std::size_t>(KC * (NC + NR)));
  ap.resize(static_cast<std::size_t>(KC * (MC + MR)));
  alignas(32) float edge[MR * NR];
  for (std::int64_t jc = 0; jc < n; jc += NC) {
    const std::int64_t nc = std::min(NC, n - jc);
    for (std::int64_t pc = 0; pc < k; pc += KC) {
      const std::int64_t kc = std::min(KC, k - pc);
      pack_b(b, pc, kc, jc, nc, bp.data());
      for (std::int64_t ic = 0; ic < m; ic += MC) {
        const std::int64_t mc = std::min(MC, m - ic);
        pack_a(a, ic, mc, pc, kc, ap.data());
        for (std::int64_t jr = 0; jr < nc; jr += NR) {
          const std::int64_t w = std::min(NR, nc - jr);
          for (std::int64_t ir = 0; ir < mc; ir += MR) {
            const std::int64_t h = std::min(MR, mc - ir);
            float* cb = c + (ic + ir) * ldc + jc + jr;
            const bool first = set && pc == 0;  // the first panel of the sum sets C
            const float* bj = bias != nullptr ? bias + jc + jr : nullptr;
            if (h == MR && w == NR) {
              kernel(kc, ap.data() + ir * kc, bp.data() + jr * kc, cb, ldc, first, bj);
            } else {  // an edge block: through a zeroed 6 x 16 tile
              std::fill_n(edge, MR * NR, 0.0F);
              kernel(kc, ap.data() + ir * kc, bp.data() + jr * kc, edge, NR);
              for (std::int64_t i = 0; i < h; ++i) {
                for (std::int64_t j = 0; j < w; ++j) {
                  float& e = cb[i * ldc + j];
                  e = first ? edge[i * NR + j] + (bj != nullptr ? bj[j] : 0.0F) : e + edge[i * NR + j];
                }
              }
            }
          }
        }
      }
    }
  }
}
}  // namespace gemm_avx2
#endif

// C[m, n] (row stride ldc) += A B on the calling thread. With `set`: C = A B (+ bias[n] added to every row
// when not null), without reading C, so that C needs no zero fill (or bias copy) first.
template <typename T>
void gemm_acc(std::int64_t m, std::int64_t n, std::int64_t k, MatRef<T> a, MatRef<T> b, T* c,
              std::int64_t ldc, bool set = false, const T* bias = nullptr) {
  if (m <= 0 || n <= 0) return;
#ifdef DAGPT_NN_AVX2_GEMM
  if constexpr (std::is_same_v<T, float>) {
    if (n >= gemm_avx2::NR / 2 && k > 0) {  // narrow products (the head's 4 and 8 outputs) go to Eigen
      gemm_avx2::gemm(m, n, k, a, b, c, ldc, set, bias);
      return;
    }
  }
#endif
  if (set) {
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = bias != nullptr ? bias[j] : T(0);
    }
  }
  if (k <= 0) return;
  gemm_eigen(m, n, k, a, b, c, ldc);
}

}  // namespace dagpt::nn::detail
