// The DAG executor: runs a DagPlan and returns the value of every plan, as one fused autograd Function
// (forward and a hand-written backward; the forward saves a small per-DAG workspace that the backward
// reads). Computes in double over all plans; the output has the inputs' type.
//
// Step s reads slots j < n_init + s (the causal mask) and writes slot n_init + s. With g = G[s]:
//
// Default semantics (exact on encoded plans):
//   x_j = S_j * M_j for initial slots; intermediate slots hold their signed value v_j directly.
//   linear:  R = sum_j o_j x_j                      (exact sums: no tanh shrinking of small values)
//   log:     |P| = prod_j m_j ^ o_j  = exp(sum_j o_j ln m_j),  m_j = |x_j|
//            sign(P) = prod_j f_j,  f_j = 1 + (S_j - 1) * p(o_j)
//            p is the triangle wave of period 2 (p(0) = 0, p(1) = 1, p(2) = 0, linear between): for
//            S = +-1 and integer o it is the exact parity of the coefficient (-2*-2 = +4), for
//            predictions it is smooth in S and piecewise linear in o, so both get useful gradients.
//            The sign of an intermediate value enters as sign(v) (zero gradient; v's gradient flows
//            through its magnitude and through linear steps).
//   value:   v = g * clamp(R, +-1e28) + (1 - g) * sign(P) * min(|P|, 1e28)   (HEAD's upper clamps)
//   A factor that is exactly zero with o_j > 0 makes the product exactly 0 (x * 0 = 0, not 1e-12), and
//   gives no gradient through the product; a zero divisor gives 1e28.
//   A step whose coefficients are all small integers (every encoded plan) is computed in double-double
//   (sums, and products by repeated multiplication), so an encoded plan's result is its exact value up
//   to one final rounding; other steps (predictions) take exp/log in double.
//
// Reference semantics (REFERENCE.md §2, number for number): mixed_j = ln(max(M_j,1e-12))(1-g) + S_j M_j g
//   (computed as L_j + g (S_j M_j - L_j), the same up to rounding),
//   R = sum_j o_j mixed_j, sign = g tanh(R/1e-4) + (1-g) tanh(prod_j (2 S_j |o_j| + 1) / 1e-4),
//   mag = g |R| + (1-g) exp(min(R, 100)); intermediate slots store (mag, sign); output = S*M of the last
//   slot, rounded to the inputs' type.
//
// Gradients reach all four inputs; masked (future) O entries and the intermediate slots of V_mag and
// V_sign get zero (they are never read).
//
// Implementation: DAGs run in blocks of kLanes side by side, one DAG per SIMD lane (GCC/Clang vector
// extensions), each value in two vector registers (two independent dependency chains): 8 lanes where the
// compiler may use AVX (e.g. -march=native), else 4 (SSE2, NEON). exp and log are fdlibm's algorithms on
// vectors (error < 1 ulp; lanes outside their fast range go to std::exp/std::log); tanh saturates to +-1
// from |x| >= 20 on and is computed on vectors below (a few ulp). A batch that is not a multiple of kLanes
// runs its last block on a padded copy (the block's DAGs, then copies of the last one).
// Threads take their own share of the blocks (the same in both passes), then help with the rest of the
// others' shares (parallel_blocks). Double-double steps run lane by lane. With AVX, rows of O and of the
// gradients move four doubles at a time (transposed in registers; a block's O rows are loaded at its start
// and their gradients stored at its end where d * n <= kWholeRows), and gradients of large batches are
// stored non-temporally. The forward pass saves per block a small workspace of the values the backward
// pass needs (no copy of O, which the backward pass reads again: less memory traffic; streamed when
// large); each block prefetches the next block's inputs in slices as its steps go. The backward pass
// gathers each node's gradient as sums over its uses and converts them once. In reference mode the sign
// factors w_j of a step pass dP * P / w_j (one division each, as PyTorch's prod backward; the product of
// the other factors where P is 0 or subnormal, and in steps that read kProductsFrom slots or more), and
// none in lanes where tanh(P/1e-4) is saturated (exactly +-1, dP = 0); a step saturated in every lane skips
// those terms. The passes are compiled twice more for the reference layout at depths 4 and 8, with the
// shape as constants (with_shape; the same numbers bit for bit, less bookkeeping).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "dagpt/autograd/function.hpp"
#include "dagpt/dag/plan.hpp"

// The small vector functions must be inlined: a call spills every live vector register.
#define DAGPT_DAG_INLINE [[gnu::always_inline]] inline

namespace dagpt::dag {

enum class Semantics { exact, reference };

inline constexpr int kMaxDepth = 32;
inline constexpr double kMagMax = 1e28;

namespace detail {

inline constexpr int kMaxNodes = 2 * kMaxDepth + 1;
// The passes keep a block's per-node values in arrays of vd (64 bytes each) on the stack, one array per
// quantity. kMaxNodes entries would make arrays 4,160 bytes apart, so that entry j + 1 of one array and
// entry j of the next share their low 12 address bits, and a load that matches a recent store there can
// wait for it as if it were the same address (4K aliasing): the loops over j store to one array and load
// from others. 88 entries put neighbouring arrays 24 lines apart modulo 4 KiB, and arrays up to seven
// apart at least 8 lines apart (any padding measured alike: fwd+bwd, 8,192 DAGs, one thread, -5% at
// depths 4 and 8). The backward passes' frames come to ~100-110 KB (GCC 12, AVX2): a thread that runs
// the executor needs that much stack (glibc's default is 8 MB; musl's 128 KB leaves little room).
inline constexpr int kNodeSlots = 88;
static_assert(kNodeSlots > kMaxNodes);
inline const double kLogMagMax = std::log(kMagMax);

// ---- lanes: kLanes doubles in two vector registers ------------------------------------------------
// A vd holds two native vectors (4 doubles each with AVX, else 2: SSE2, NEON; a 32-byte vector passed by
// value without AVX would change the ABI): two independent dependency chains, so that the long latency
// of the log/exp chain of one step is hidden behind the other half's work.
#if defined(__AVX__)
inline constexpr int kHalf = 4;
#else
inline constexpr int kHalf = 2;
#endif
inline constexpr int kLanes = 2 * kHalf;
typedef double vn __attribute__((vector_size(8 * kHalf)));
typedef std::int64_t vmn __attribute__((vector_size(8 * kHalf)));
struct vd {
  vn a, b;
};
struct vi {  // lane masks: all ones (true) or zero
  vmn a, b;
};
#define DAGPT_DAG_OP(V, S, OP)                                                  \
  DAGPT_DAG_INLINE V operator OP(V x, V y) { return {x.a OP y.a, x.b OP y.b}; } \
  DAGPT_DAG_INLINE V operator OP(V x, S y) { return {x.a OP y, x.b OP y}; }     \
  DAGPT_DAG_INLINE V operator OP(S x, V y) { return {x OP y.a, x OP y.b}; }     \
  DAGPT_DAG_INLINE V& operator OP##=(V& x, V y) { return x = x OP y; }
DAGPT_DAG_OP(vd, double, +)
DAGPT_DAG_OP(vd, double, -)
DAGPT_DAG_OP(vd, double, *)
DAGPT_DAG_OP(vd, double, /)
DAGPT_DAG_OP(vi, std::int64_t, +)
DAGPT_DAG_OP(vi, std::int64_t, -)
DAGPT_DAG_OP(vi, std::int64_t, &)
DAGPT_DAG_OP(vi, std::int64_t, |)
DAGPT_DAG_OP(vi, std::int64_t, ^)
#undef DAGPT_DAG_OP
DAGPT_DAG_INLINE vd operator-(vd x) { return {-x.a, -x.b}; }
DAGPT_DAG_INLINE vi operator~(vi x) { return {~x.a, ~x.b}; }
DAGPT_DAG_INLINE vi operator<<(vi x, int k) { return {x.a << k, x.b << k}; }
typedef std::uint64_t vun __attribute__((vector_size(8 * kHalf)));
DAGPT_DAG_INLINE vi srl(vi x, int k) { return {(vmn)((vun)x.a >> k), (vmn)((vun)x.b >> k)}; }  // logical

DAGPT_DAG_INLINE vd splat(double x) { return {vn{} + x, vn{} + x}; }  // +0 + x: splat(-0.0) is +0
DAGPT_DAG_INLINE vi splati(std::int64_t x) { return {vmn{} + x, vmn{} + x}; }
DAGPT_DAG_INLINE vd as_d(vi x) { return {(vn)x.a, (vn)x.b}; }  // bit casts
DAGPT_DAG_INLINE vi as_i(vd x) { return {(vmn)x.a, (vmn)x.b}; }
DAGPT_DAG_INLINE vi lt(vd x, vd y) { return {(vmn)(x.a < y.a), (vmn)(x.b < y.b)}; }
DAGPT_DAG_INLINE vi le(vd x, vd y) { return {(vmn)(x.a <= y.a), (vmn)(x.b <= y.b)}; }
DAGPT_DAG_INLINE vi eq(vd x, vd y) { return {(vmn)(x.a == y.a), (vmn)(x.b == y.b)}; }
DAGPT_DAG_INLINE vd sel(vi m, vd a, vd b) { return as_d((as_i(a) & m) | (as_i(b) & ~m)); }  // m ? a : b
DAGPT_DAG_INLINE double lane(const vd& v, int l) { return l < kHalf ? v.a[l] : v.b[l - kHalf]; }
DAGPT_DAG_INLINE std::int64_t lane(const vi& v, int l) { return l < kHalf ? v.a[l] : v.b[l - kHalf]; }
DAGPT_DAG_INLINE void set_lane(vd& v, int l, double x) {
  if (l < kHalf) {
    v.a[l] = x;
  } else {
    v.b[l - kHalf] = x;
  }
}
// Lane masks are all ones or zero, so their sign bits decide (one movemask, not a lane-by-lane loop).
DAGPT_DAG_INLINE bool any(vi m) {
#if defined(__AVX__)
  return _mm256_movemask_pd((__m256d)(m.a | m.b)) != 0;
#elif defined(__SSE2__)
  return _mm_movemask_pd((__m128d)(m.a | m.b)) != 0;
#else
  std::int64_t r = 0;
  for (int l = 0; l < kLanes; ++l) r |= lane(m, l);
  return r != 0;
#endif
}
DAGPT_DAG_INLINE bool all(vi m) {
#if defined(__AVX__)
  return _mm256_movemask_pd((__m256d)(m.a & m.b)) == 0xF;
#elif defined(__SSE2__)
  return _mm_movemask_pd((__m128d)(m.a & m.b)) == 0x3;
#else
  std::int64_t r = -1;
  for (int l = 0; l < kLanes; ++l) r &= lane(m, l);
  return r != 0;
#endif
}
DAGPT_DAG_INLINE vd vabs(vd x) { return as_d(as_i(x) & splati(INT64_MAX)); }
DAGPT_DAG_INLINE vd vmin(vd a, vd b) { return sel(lt(b, a), b, a); }  // std::min(a, b)
DAGPT_DAG_INLINE vd vmax(vd a, vd b) { return sel(lt(a, b), b, a); }  // std::max(a, b)
// b > a ? b : a in one instruction per half with AVX (a NaN b is ignored, as in vmax(a, b)).
DAGPT_DAG_INLINE vd vmax_of(vd a, vd b) {
#if defined(__AVX__)
  return {(vn)_mm256_max_pd((__m256d)b.a, (__m256d)a.a), (vn)_mm256_max_pd((__m256d)b.b, (__m256d)a.b)};
#else
  return vmax(a, b);
#endif
}
DAGPT_DAG_INLINE vd vsign(vd x) {
  return sel(lt(splat(0), x), splat(1), sel(lt(x, splat(0)), splat(-1), splat(0)));
}
DAGPT_DAG_INLINE vd vload(const double* p) {
  vd v;
  std::memcpy(&v.a, p, sizeof v.a);
  std::memcpy(&v.b, p + kHalf, sizeof v.b);
  return v;
}
DAGPT_DAG_INLINE void vstore(double* p, vd v) {
  std::memcpy(p, &v.a, sizeof v.a);
  std::memcpy(p + kHalf, &v.b, sizeof v.b);
}
// vstore, non-temporal where `stream` (p 64-byte aligned with AVX: a whole cache line).
DAGPT_DAG_INLINE void vstore(double* p, vd v, bool stream) {
#if defined(__AVX__)
  if (stream) {
    _mm256_stream_pd(p, (__m256d)v.a);
    _mm256_stream_pd(p + kHalf, (__m256d)v.b);
    return;
  }
#elif defined(__SSE2__)
  if (stream) {
    _mm_stream_pd(p, (__m128d)v.a);
    _mm_stream_pd(p + kHalf, (__m128d)v.b);
    return;
  }
#endif
  (void)stream;
  vstore(p, v);
}

// The scalar results for the rare lanes that the vector paths do not cover: out of line, taking x and the
// mask in vector registers (as a vd they would be copied to memory on the hot path too).
enum class Libm { log, exp };
template <Libm F>
[[gnu::noinline, gnu::cold]] void fix_lanes(vn x0, vn x1, vmn ok0, vmn ok1, vd* r) {
  const vd x{x0, x1};
  const vi ok{ok0, ok1};
  for (int l = 0; l < kLanes; ++l) {
    if (lane(ok, l) == 0) set_lane(*r, l, F == Libm::log ? std::log(lane(x, l)) : std::exp(lane(x, l)));
  }
}
template <Libm F>
DAGPT_DAG_INLINE vd fixed(vd r, vd x, vi ok) {
  if (!all(ok)) {
    vd out = r;
    fix_lanes<F>(x.a, x.b, ok.a, ok.b, &out);
    return out;
  }
  return r;
}

// log(x) for positive normal x (fdlibm's e_log.c on vectors; error < 1 ulp).
DAGPT_DAG_INLINE vd vlog_normal(vd x) {
  // x = m 2^e with m in [sqrt(2)/2, sqrt(2)): adding this constant to x's bits carries into the exponent
  // field exactly where x's significand is >= sqrt(2) (then m is it halved)
  const vi bits = as_i(x);
  const vi u = bits + splati(0x3FF0000000000000 - 0x3FE6A09E667F3BCD);
  const vd m = as_d(bits - ((u & splati(-(std::int64_t{1} << 52))) - splati(0x3FF0000000000000)));
  const vd e = as_d(srl(u, 52) | splati(0x4330000000000000)) - 4503599627371519.0;  // 2^52 + 1023
  const vd f = m - 1.0;
  const vd s = f / (2.0 + f);
  const vd z = s * s;
  const vd w = z * z;
  const vd t1 =
      w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const vd t2 =
      z * (6.666666666666735130e-01 +
           w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const vd r = t2 + t1;
  const vd hfsq = 0.5 * f * f;
  return e * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + r) + e * 1.90821492927058770002e-10)) - f);
}
// The other lanes' results come from std::log (the vector path's values there are discarded).
DAGPT_DAG_INLINE vd vlog(vd x) {
  return fixed<Libm::log>(vlog_normal(x), x, le(splat(DBL_MIN), x) & le(x, splat(DBL_MAX)));
}
// log(max(x, lo)) for lo >= DBL_MIN (NaN stays NaN).
DAGPT_DAG_INLINE vd vlog_max(vd x, double lo) {
  const vd y = vmax(x, splat(lo));
  return fixed<Libm::log>(vlog_normal(y), y, le(y, splat(DBL_MAX)));
}

// fdlibm's e_exp.c kernel: c with exp(r) = 1 + r + r c / (2 - c), |r| <= ln(2)/2.
DAGPT_DAG_INLINE vd exp_c(vd r) {
  const vd tt = r * r;
  return r - tt * (1.66666666666666019037e-01 +
                   tt * (-2.77777777770155933842e-03 +
                         tt * (6.61375632143793436117e-05 +
                               tt * (-1.65339022054652515390e-06 + tt * 4.13813679705723846039e-08))));
}
// x = k ln2 + r (|r| <= ln(2)/2, r = hi - lo as e_exp.c keeps it): exp(x) = 2^k (1 + em), em = expm1(r).
struct ExpSplit {
  vd em;
  vi k;
};
DAGPT_DAG_INLINE ExpSplit exp_split(vd x) {
  const vd shift = splat(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
  const vd t = x * 1.44269504088896338700e+00 + shift;
  const vd kd = t - shift;
  const vd hi = x - kd * 6.93147180369123816490e-01;  // exact
  const vd lo = kd * 1.90821492927058770002e-10;
  const vd r = hi - lo;
  const vd c = exp_c(r);
  return {hi - (lo - (r * c) / (2.0 - c)), as_i(t) - as_i(shift)};
}
DAGPT_DAG_INLINE vd pow2(vi k) { return as_d((k + 1023) << 52); }  // 2^k, -1022 <= k <= 1023
// exp(x) for |x| <= 708 (e_exp.c on vectors; error < 1 ulp).
DAGPT_DAG_INLINE vd vexp_core(vd x) {
  const ExpSplit s = exp_split(x);
  return (1.0 + s.em) * pow2(s.k);
}
DAGPT_DAG_INLINE vd vexp(vd x) {  // the other lanes' results come from std::exp
  return fixed<Libm::exp>(vexp_core(x), x, le(vabs(x), splat(708)));
}

// tanh(x) = sign(x) * -e / (2 + e) with e = expm1(-2|x|) = 2^k (1 + expm1(r)) - 1, -2|x| = k ln2 + r
// (expm1(r) from the exp kernel: no cancellation for small |x|, and none in 2^k (1 + ...) - 1, which is at
// most -0.29 where k < 0); a few ulp. |x| is capped at 20, from where tanh rounds to +-1. No branch on x:
// a test on a step's values would be mispredicted often, and late (they end a chain of dependent work).
DAGPT_DAG_INLINE vd vtanh(vd x) {
  const ExpSplit s = exp_split(-2.0 * vmin(vabs(x), splat(20)));
  const vd two_k = pow2(s.k);  // -58 <= k <= 0
  const vd e = two_k * s.em + (two_k - 1.0);
  return as_d(as_i((0.0 - e) / (2.0 + e)) | (as_i(x) & splati(INT64_MIN)));  // 0 - e: +0 where e is -0
}

// tanh(v / 1e-4), the reference's sign. vtanh_scaled is +-1 without computing where every lane has
// |v| >= 0.0021 (so |v / 1e-4| > 20): for a value that is saturated in most steps (a linear step's R).
// v / 1e-4 is taken as v * 1e4 (within an ulp of it; here and in the backward pass's derivatives): the
// divisions kept the divider busy (depth 4, fwd+bwd: 2.7% faster without them).
DAGPT_DAG_INLINE vd vtanh_scaled_all(vd v) { return vtanh(v * 1e4); }
DAGPT_DAG_INLINE vd vtanh_scaled(vd v) {
  if (all(le(splat(0.0021), vabs(v)))) return as_d((as_i(v) & splati(INT64_MIN)) | as_i(splat(1)));
  return vtanh_scaled_all(v);
}

// |o| reduced to [0, 2] as std::fmod does (exactly). `reduce` is false when no coefficient of the row
// exceeds 2 in magnitude (over2, checked once per row), the usual case.
DAGPT_DAG_INLINE vd vperiod2(vd o, bool reduce) {
  vd a = vabs(o);
  if (reduce) {
    const vi over = lt(splat(2), a);
    const vd h = a * 0.5;  // exact
    const vd big = splat(4503599627370496.0);
    vd t = (h + big) - big;                               // nearest integer (h < 2^52) ...
    t = sel(lt(h, t), t - 1.0, t);                        // ... truncated
    const vd r = sel(le(big, h), splat(0), a - 2.0 * t);  // h >= 2^52: a is even
    a = sel(over, r, a);
  }
  return a;
}
DAGPT_DAG_INLINE bool over2(const vd* o, int na) {
  vd mx = splat(0);
  for (int j = 0; j < na; ++j) mx = vmax_of(mx, vabs(o[j]));
  return any(lt(splat(2), mx));
}
// The triangle wave of period 2 on |o| (the parity weight) and its derivative in o.
DAGPT_DAG_INLINE vd vparity_weight(vd o, bool reduce) {
  const vd a = vperiod2(o, reduce);
  return sel(le(a, splat(1)), a, 2.0 - a);
}
DAGPT_DAG_INLINE void vparity(vd o, bool reduce, vd& weight, vd& grad) {
  const vd a = vperiod2(o, reduce);
  const vi rising = le(a, splat(1));
  weight = sel(rising, a, 2.0 - a);
  // sign(o) rising, -sign(o) falling, 0 at o = 0: the bits of +-1 with o's sign, flipped where falling
  const vi sign_bit = splati(INT64_MIN);
  grad = as_d((((as_i(o) & sign_bit) ^ (~rising & sign_bit)) | as_i(splat(1))) & ~eq(o, splat(0)));
}

// One input's rows in a block of kLanes consecutive DAGs: lane l's row at p[l] (p[0] null: not wanted, for
// gradients). A batch's last block, when partial, runs on a padded copy (PaddedBlock).
template <typename P>
struct Lanes {
  P* p[kLanes];
  std::int64_t len;  // a row's elements
  DAGPT_DAG_INLINE P* operator[](int l) const { return p[l]; }
  DAGPT_DAG_INLINE P* const* from(int l) const { return p + l; }  // lanes l, l + 1, ...
  void next() {  // the next block's rows: kLanes additions as one vector of addresses
    if (p[0] == nullptr) return;
    typedef std::uintptr_t va __attribute__((vector_size(sizeof(std::uintptr_t) * kLanes)));
    va a;
    std::memcpy(&a, p, sizeof a);
    a += static_cast<std::uintptr_t>(kLanes * len) * sizeof(P);
    std::memcpy(p, &a, sizeof a);
  }
};
template <typename P>
struct Rows {
  Lanes<P> vmag, vsign, o, g;
  void next() {
    vmag.next();
    vsign.next();
    o.next();
    g.next();
  }
};
// The full block of DAGs [b, b + kLanes) of contiguous plans (or gradients; null pointers stay null).
template <typename P>
Rows<P> rows_at(P* vmag, P* vsign, P* o, P* g, std::int64_t b, int d, int n) {
  const auto at = [b](P* x, std::int64_t len) {
    Lanes<P> r{};
    r.len = len;
    if (x != nullptr) {
      for (int l = 0; l < kLanes; ++l) r.p[l] = x + (b + l) * len;
    }
    return r;
  };
  return {at(vmag, n), at(vsign, n), at(o, static_cast<std::int64_t>(d) * n), at(g, d)};
}
template <typename T>
DAGPT_DAG_INLINE vd ld(Lanes<const T> p, std::int64_t k) {
  vd v = splat(0);
  for (int l = 0; l < kLanes; ++l) set_lane(v, l, static_cast<double>(p[l][k]));
  return v;
}
template <typename T>
DAGPT_DAG_INLINE void put(Lanes<T> p, std::int64_t k, vd v) {
  if (p.p[0] == nullptr) return;
  for (int l = 0; l < kLanes; ++l) p[l][k] = static_cast<T>(lane(v, l));
}

// A batch's partial last block: its DAGs' rows copied, then copies of its last DAG up to kLanes lanes
// (computed like the others); the gradients of its real DAGs are copied back. Its buffer (`buffer`) is
// allocated before the threads start: an allocation failure inside a parallel region would end the
// program instead of raising std::bad_alloc to the caller.
template <typename T>
class PaddedBlock {
 public:
  // A buffer for the batch's partial last block (empty where there is none).
  static std::vector<T> buffer(std::int64_t count, int d, int n) {
    return std::vector<T>(count % kLanes != 0 ? 2 * static_cast<std::size_t>(kLanes) * per_dag(d, n) : 0);
  }
  PaddedBlock(const T* const* in, std::int64_t b, std::int64_t count, int d, int n, std::vector<T>& buf)
      : b_(b), real_(count - b), d_(d), n_(n), buf_(buf.data()) {
    T* q = buf_;
    for (int k = 0; k < 4; ++k) {
      const std::int64_t len = row_len(k);
      for (int l = 0; l < kLanes; ++l, q += len) {
        const T* src = in[k] + (b + std::min<std::int64_t>(l, real_ - 1)) * len;
        std::copy(src, src + len, q);
      }
    }
  }
  Rows<const T> inputs() const { return rows<const T>(buf_); }
  // Rows for the gradients of the inputs whose pointer in `out` is not null.
  Rows<T> grads(T* const* out) {
    Rows<T> r = rows(buf_ + kLanes * per_dag(d_, n_));
    Lanes<T>* x[4] = {&r.vmag, &r.vsign, &r.o, &r.g};
    for (int k = 0; k < 4; ++k) {
      if (out[k] == nullptr) *x[k] = Lanes<T>{};
    }
    return r;
  }
  void copy_grads(T* const* out) const {
    const T* q = buf_ + kLanes * per_dag(d_, n_);
    for (int k = 0; k < 4; ++k) {
      const std::int64_t len = row_len(k);
      if (out[k] != nullptr) std::copy(q, q + real_ * len, out[k] + b_ * len);
      q += kLanes * len;
    }
  }

 private:
  std::int64_t row_len(int k) const {
    return k < 2 ? n_ : (k == 2 ? static_cast<std::int64_t>(d_) * n_ : d_);
  }
  static std::int64_t per_dag(int d, int n) {
    return 2 * static_cast<std::int64_t>(n) + static_cast<std::int64_t>(d) * n + d;
  }
  template <typename P>
  Rows<P> rows(P* base) const {  // the buffer's rows are those of a batch of kLanes DAGs
    const std::int64_t on = static_cast<std::int64_t>(d_) * n_;
    return rows_at<P>(base, base + kLanes * n_, base + 2 * kLanes * n_, base + kLanes * (2 * n_ + on), 0, d_,
                      n_);
  }
  std::int64_t b_;
  std::int64_t real_;
  int d_;
  int n_;
  T* buf_;  // inputs, then gradients, each input's kLanes rows back to back
};

// The memory of the next block (its rows of the four inputs: one contiguous region each, as a block's rows
// are consecutive DAGs; and its workspace in the backward pass), which the hardware prefetchers fetch too
// late when eight rows are read side by side. Each step of a block prefetches two slices of it (at its
// start and half way): requesting it all at once (~200 lines at depth 8) fills the core's miss buffers and
// stalls its loads. Slices are whole groups of four lines, from a region's first line on: a slice may reach
// a few lines past its block, or past the array's end (a prefetch never faults), and costs no bounds.
class Ahead {
 public:
  explicit Ahead(int parts) : parts_(parts) {}
  // A region of `per_block` elements per block from p: sliced in `parts` when large, else prefetched whole
  // with slice 0 (a slice has a cost of its own).
  template <typename T>
  void add(const T* p, std::int64_t per_block) {
    Region g;
    g.base = reinterpret_cast<const char*>(p);
    g.per_block = per_block * static_cast<std::int64_t>(sizeof(T));
    // a block's lines, and one more where blocks may start mid-line
    const bool aligned = reinterpret_cast<std::uintptr_t>(p) % 64 == 0 && g.per_block % 64 == 0;
    const std::int64_t lines = (g.per_block + 63) / 64 + (aligned ? 0 : 1);
    const bool whole = g.per_block < 64 * 4 * parts_;
    g.groups = ((whole ? lines : (lines + parts_ - 1) / parts_) + 3) / 4;
    (whole ? whole_[n_whole_++] : sliced_[n_sliced_++]) = g;
  }
  // Before block k of a run of consecutive blocks from `first`, of `blocks` in all: prefetch block k + 1
  // (past the run's end too: as a rule the thread's next run), none after the last. Within a run, an
  // addition per region.
  void follow(std::int64_t k, std::int64_t first, std::int64_t blocks) {
    if (k == first || k + 1 >= blocks) {
      set_block(k + 1 < blocks ? k + 1 : -1);
      return;
    }
    for (int r = 0; r < n_sliced_; ++r) sliced_[r].at += static_cast<std::uintptr_t>(sliced_[r].per_block);
    for (int r = 0; r < n_whole_; ++r) whole_[r].at += static_cast<std::uintptr_t>(whole_[r].per_block);
  }
  // The block to prefetch (-1: none).
  void set_block(std::int64_t k) {
    on_ = k >= 0;
    for (int r = 0; r < n_sliced_; ++r) sliced_[r].set_block(k);
    for (int r = 0; r < n_whole_; ++r) whole_[r].set_block(k);
  }
  // Slice i of the block (i < parts): its groups [i * groups, (i + 1) * groups) of every sliced region, and
  // with i = 0 the whole of the others.
  DAGPT_DAG_INLINE void slice(int i) const {
    if (!on_) return;
    for (int r = 0; r < n_sliced_; ++r) sliced_[r].prefetch(i);
    if (i == 0) {
      for (int r = 0; r < n_whole_; ++r) whole_[r].prefetch(0);
    }
  }

 private:
  struct Region {
    const char* base = nullptr;
    std::int64_t per_block = 0;  // bytes
    std::int64_t groups = 0;     // of four lines, per slice
    std::uintptr_t at = 0;       // the block's first line
    void set_block(std::int64_t k) {
      at = (reinterpret_cast<std::uintptr_t>(base) +
            static_cast<std::uintptr_t>(std::max<std::int64_t>(k, 0)) *
                static_cast<std::uintptr_t>(per_block)) &
           ~std::uintptr_t{63};
    }
    DAGPT_DAG_INLINE void prefetch(int i) const {
      std::uintptr_t c = at + static_cast<std::uintptr_t>(i * groups) * 256;
      // four lines per turn: the loop would be most of the cost
      for (std::int64_t q = 0; q < groups; ++q, c += 256) {
        __builtin_prefetch(reinterpret_cast<const char*>(c));
        __builtin_prefetch(reinterpret_cast<const char*>(c + 64));
        __builtin_prefetch(reinterpret_cast<const char*>(c + 128));
        __builtin_prefetch(reinterpret_cast<const char*>(c + 192));
      }
    }
  };
  Region sliced_[5];
  Region whole_[5];
  int n_sliced_ = 0;
  int n_whole_ = 0;
  int parts_;
  bool on_ = false;
};
// The four inputs' regions, sliced in 2d parts (two per step).
template <typename T>
Ahead inputs_ahead(const DagPlan<T>& p, int d, int n) {
  Ahead a(2 * d);
  a.add(p.O.data(), kLanes * d * n);
  a.add(p.V_mag.data(), kLanes * n);
  a.add(p.V_sign.data(), kLanes * n);
  a.add(p.G.data(), kLanes * d);
  return a;
}

inline void stream_fence() {
#if defined(__AVX__) || defined(__SSE2__)
  _mm_sfence();
#endif
}

// Rows of kLanes DAGs <-> lanes: with AVX, four consecutive doubles of each of the four rows are read
// (or written) at once and transposed in registers; otherwise (and for float) element by element.
#if defined(__AVX__)
DAGPT_DAG_INLINE void transpose4(vn& a, vn& b, vn& c, vn& d) {
  const __m256d t0 = _mm256_unpacklo_pd((__m256d)a, (__m256d)b);  // a0 b0 a2 b2
  const __m256d t1 = _mm256_unpackhi_pd((__m256d)a, (__m256d)b);  // a1 b1 a3 b3
  const __m256d t2 = _mm256_unpacklo_pd((__m256d)c, (__m256d)d);
  const __m256d t3 = _mm256_unpackhi_pd((__m256d)c, (__m256d)d);
  a = (vn)_mm256_permute2f128_pd(t0, t2, 0x20);
  b = (vn)_mm256_permute2f128_pd(t1, t3, 0x20);
  c = (vn)_mm256_permute2f128_pd(t0, t2, 0x31);
  d = (vn)_mm256_permute2f128_pd(t1, t3, 0x31);
}
// Elements [j, j + 4) of rows q[0..3] -> four vectors of the four rows' elements j, j + 1, j + 2, j + 3.
DAGPT_DAG_INLINE void load4(const double* const* q, std::int64_t at, vn* out) {
  vn a = (vn)_mm256_loadu_pd(q[0] + at);
  vn b = (vn)_mm256_loadu_pd(q[1] + at);
  vn c = (vn)_mm256_loadu_pd(q[2] + at);
  vn d = (vn)_mm256_loadu_pd(q[3] + at);
  transpose4(a, b, c, d);
  out[0] = a;
  out[1] = b;
  out[2] = c;
  out[3] = d;
}
DAGPT_DAG_INLINE void store4(double* const* q, std::int64_t at, vn a, vn b, vn c, vn d) {
  transpose4(a, b, c, d);
  const vn r[4] = {a, b, c, d};
  for (int l = 0; l < 4; ++l) _mm256_storeu_pd(q[l] + at, (__m256d)r[l]);
}
#endif
// out[j] = element base + j of every lane, j < na (rows hold n >= na elements; out may receive up to three
// entries past na - 1).
template <typename T>
DAGPT_DAG_INLINE void load_row(Lanes<const T> p, std::int64_t base, int na, int n, vd* out) {
  int j = 0;
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, double>) {
    for (; j < na && j + 4 <= n; j += 4) {
      vn lo[4];
      vn hi[4];
      load4(p.p, base + j, lo);
      load4(p.from(4), base + j, hi);
      for (int k = 0; k < 4; ++k) out[j + k] = vd{lo[k], hi[k]};
    }
  }
#else
  (void)n;
#endif
  for (; j < na; ++j) out[j] = ld(p, base + j);
}
#if defined(__AVX__)
// Elements [at, at + 8) of rows q[0..3] from eight vectors (a[k], b[k]: elements at + k and at + 4 + k of
// the four rows), each row's eight doubles written back to back: a whole 64-byte line, so that a
// non-temporal store never leaves a line half written (a partial line goes to memory as a slow
// read-modify-write once the write-combining buffers run out: eight rows are written side by side).
enum class Stream { none, aligned, all };  // non-temporal stores: none, the rows that are aligned, all rows
DAGPT_DAG_INLINE void store8(double* const* q, std::int64_t at, vn a0, vn a1, vn a2, vn a3, vn b0, vn b1,
                             vn b2, vn b3, Stream stream) {
  transpose4(a0, a1, a2, a3);
  transpose4(b0, b1, b2, b3);
  const vn lo[4] = {a0, a1, a2, a3};
  const vn hi[4] = {b0, b1, b2, b3};
  for (int l = 0; l < 4; ++l) {
    double* t = q[l] + at;
    if (stream == Stream::all ||
        (stream == Stream::aligned && (reinterpret_cast<std::uintptr_t>(t) & 63U) == 0)) {
      _mm256_stream_pd(t, (__m256d)lo[l]);
      _mm256_stream_pd(t + 4, (__m256d)hi[l]);
    } else {
      _mm256_storeu_pd(t, (__m256d)lo[l]);
      _mm256_storeu_pd(t + 4, (__m256d)hi[l]);
    }
  }
}
#endif
// Element base + j of every lane = v[j], j < n; streamed (non-temporal) by whole cache lines where
// aligned when `stream`.
template <typename T>
DAGPT_DAG_INLINE void store_row(Lanes<T> p, std::int64_t base, int n, const vd* v, bool stream) {
  if (p.p[0] == nullptr) return;
  int j = 0;
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, double>) {
    // every row's line aligned (rows of a multiple of 64 bytes): no check per row
    const bool all =
        ((reinterpret_cast<std::uintptr_t>(p.p[0] + base) | static_cast<std::uintptr_t>(p.len * 8)) & 63U) ==
        0;
    const Stream how = !stream ? Stream::none : (all ? Stream::all : Stream::aligned);
    for (; j + 8 <= n; j += 8) {
      store8(p.p, base + j, v[j].a, v[j + 1].a, v[j + 2].a, v[j + 3].a, v[j + 4].a, v[j + 5].a, v[j + 6].a,
             v[j + 7].a, how);
      store8(p.from(4), base + j, v[j].b, v[j + 1].b, v[j + 2].b, v[j + 3].b, v[j + 4].b, v[j + 5].b,
             v[j + 6].b, v[j + 7].b, how);
    }
    for (; j + 4 <= n; j += 4) {
      store4(p.p, base + j, v[j].a, v[j + 1].a, v[j + 2].a, v[j + 3].a);  // a row's tail: cached stores
      store4(p.from(4), base + j, v[j].b, v[j + 1].b, v[j + 2].b, v[j + 3].b);
    }
  }
#else
  (void)stream;
#endif
  for (; j < n; ++j) put(p, base + j, v[j]);
}

// The passes load a block's O rows at its start, and the backward passes store their gradients at its end,
// where they fit: d * n <= kWholeRows (one loop over whole lines instead of one per step).
inline constexpr int kWholeRows = 256;

// ---- shapes compiled as constants ------------------------------------------------------------------
// The passes below take a block's depth d and initial slots n_init at run time, or as template arguments
// D, NI (when > 0) for the shapes most plans have, the reference layout at depths 4 and 8 (with_shape):
// there every loop bound, row length and test on them is known to the compiler, which drops their
// bookkeeping (fwd+bwd of the reference mode 8-12% faster at depth 4, 5-7% at depth 8). Their loops are not
// unrolled further: unrolling the steps' loop made depth 8 slower (more code than the core's caches of
// decoded instructions hold).
inline constexpr int fixed_or(int fixed, int run_time) { return fixed > 0 ? fixed : run_time; }
// f(D, NI), D and NI std::integral_constant: d and n_init where that shape is compiled, else 0 and 0.
template <typename F>
DAGPT_DAG_INLINE decltype(auto) with_shape(int d, int n_init, F&& f) {
  using std::integral_constant;
  if (d == 4 && n_init == 4) return f(integral_constant<int, 4>{}, integral_constant<int, 4>{});
  if (d == 8 && n_init == 8) return f(integral_constant<int, 8>{}, integral_constant<int, 8>{});
  return f(integral_constant<int, 0>{}, integral_constant<int, 0>{});
}

// ---- exact semantics ------------------------------------------------------------------------------
// Double-double numbers (hi + lo, |lo| <= ulp(hi)/2): integral steps carry every node's value this
// way through the forward pass, so that an encoded plan's result is its exact value up to one final
// rounding even when a later step cancels (936k - 935.6k). The backward pass needs only hi.
struct DD {
  double hi = 0;
  double lo = 0;
};
inline DD quick_two_sum(double a, double b) {
  const double s = a + b;
  return {s, b - (s - a)};
}
inline DD dd_add(DD x, DD y) {
  const double s = x.hi + y.hi;
  const double bb = s - x.hi;
  double e = (x.hi - (s - bb)) + (y.hi - bb);
  e += x.lo + y.lo;
  return quick_two_sum(s, e);
}
inline DD dd_mul(DD x, DD y) {
  const double p = x.hi * y.hi;
  double e = std::fma(x.hi, y.hi, -p);
  e += x.hi * y.lo + x.lo * y.hi;
  return quick_two_sum(p, e);
}
inline DD dd_div(DD x, DD y) {
  const double q1 = x.hi / y.hi;
  const DD r = dd_add(x, dd_mul(DD{-q1, 0}, y));
  const double q2 = r.hi / y.hi;
  return quick_two_sum(q1, q2);
}
inline DD dd_scale(DD x, double o) { return dd_mul(x, DD{o, 0}); }

// What the exact backward pass reads from its forward pass, per DAG: the log magnitude and the value
// of every node, and the (clamped) product magnitude of every step (kLanes doubles per entry).
inline int exact_workspace(int d, int n) { return 2 * n + d; }

// The nodes of one block in the forward pass.
struct ExactNodes {
  vd vh[kNodeSlots];   // value (hi)
  vd vlo[kNodeSlots];  // value (lo; zero outside double-double steps)
  vd m[kNodeSlots];    // |value|
  vd s[kNodeSlots];    // sign(value), or V_sign for initial slots
  vd lm[kNodeSlots];   // log m (0 where m = 0)
};

// One double-double step of lane l (all its coefficients are small integers). Returns the clamped
// product magnitude.
template <typename T>
double exact_step_dd(ExactNodes& x, int na, int l, const T* row, double gate) {
  double rlog = 0;
  double sigma = 1;
  bool zero_num = false;
  bool zero_den = false;
  DD rl;
  DD num{1, 0};
  DD den{1, 0};
  for (int j = 0; j < na; ++j) {
    const double o = static_cast<double>(row[j]);
    if (o == 0) continue;
    const double m = lane(x.m[j], l);
    if (m > 0) {
      rlog += o * lane(x.lm[j], l);
    } else if (o > 0) {
      zero_num = true;
    } else {
      zero_den = true;
    }
    const DD v{lane(x.vh[j], l), lane(x.vlo[j], l)};
    rl = dd_add(rl, dd_scale(v, o));
    const DD mag = v.hi < 0 ? DD{-v.hi, -v.lo} : v;
    const int k = static_cast<int>(std::abs(o));
    for (int r = 0; r < k; ++r) (o > 0 ? num : den) = dd_mul(o > 0 ? num : den, mag);
    if (k % 2 == 1) sigma *= lane(x.s[j], l);
  }
  DD mag;
  if (zero_num) {
    mag = DD{0, 0};
  } else if (zero_den || rlog >= kLogMagMax) {
    mag = DD{kMagMax, 0};
  } else {
    mag = dd_div(num, den);
    if (!(mag.hi < kMagMax)) mag = DD{kMagMax, 0};
  }
  const double lin = std::clamp(rl.hi, -kMagMax, kMagMax);
  DD val;
  if (gate == 1) {
    val = lin == rl.hi ? rl : DD{lin, 0};
  } else if (gate == 0 && (sigma == 1 || sigma == -1)) {
    val = sigma == 1 ? mag : DD{-mag.hi, -mag.lo};
  } else {
    val = DD{gate * lin + (1 - gate) * sigma * mag.hi, 0};
  }
  const double am = std::abs(val.hi);
  set_lane(x.vh[na], l, val.hi);
  set_lane(x.vlo[na], l, val.lo);
  set_lane(x.m[na], l, am);
  set_lane(x.s[na], l, val.hi > 0 ? 1.0 : (val.hi < 0 ? -1.0 : 0.0));
  set_lane(x.lm[na], l, am > 0 ? std::log(am) : 0.0);
  return mag.hi;
}

// A small integer coefficient (0 included), lane by lane.
DAGPT_DAG_INLINE vi small_integer(vd o) {
  const vd a = vabs(o);
  const vd big = splat(4503599627370496.0);
  return le(a, splat(16)) & eq((a + big) - big, a);
}

template <typename T, int D = 0, int NI = 0>
vd exact_forward(int d_in, int n_init_in, const Rows<const T>& in, double* ws, bool stream,
                 const Ahead& ahead) {
  const int d = fixed_or(D, d_in);
  const int n_init = fixed_or(NI, n_init_in);
  const int n = n_init + d;
  vd gates[kMaxDepth];
  load_row(in.g, 0, d, d, gates);
  ExactNodes x;
  load_row(in.vmag, 0, n_init, n, x.m);
  load_row(in.vsign, 0, n_init, n, x.s);
  // Nodes other than finite with a positive magnitude (zeros, infinities, NaN) take the general path of a
  // step that reads them; `unusual` collects them (lanes) as nodes are made.
  const auto unusual_node = [&x](int j) {
    const vd inf = splat(HUGE_VAL);
    return ~(lt(splat(0), x.m[j]) & lt(x.m[j], inf) & lt(vabs(x.vh[j]), inf));
  };
  vi unusual = splati(0);
  for (int j = 0; j < n_init; ++j) {
    const vd mag = x.m[j];
    const vd sign = x.s[j];
    x.vh[j] = sign * mag;
    x.vlo[j] = splat(0);
    x.m[j] = mag;
    x.s[j] = sign;
    x.lm[j] = sel(lt(splat(0), mag), vlog(sel(lt(splat(0), mag), mag, splat(1))), splat(0));
    unusual |= unusual_node(j);
  }
  vd orows[kWholeRows];  // O's rows: all steps' loaded at once where they fit, else step by step
  const bool whole = d * n <= kWholeRows;
  if (whole) load_row(in.o, 0, d * n, d * n, orows);
  for (int st = 0; st < d; ++st) {
    const int na = n_init + st;
    const std::int64_t base = static_cast<std::int64_t>(st) * n;
    ahead.slice(2 * st);
    const vd* orow = whole ? orows + base : orows;
    if (!whole) load_row(in.o, base, na, n, orows);
    vi integral = splati(-1);
    for (int j = 0; j < na && any(integral); ++j) {  // predictions fail at once
      integral &= small_integer(orow[j]);
    }
    ahead.slice(2 * st + 1);
    const vd gate = gates[st];
    vd magv = splat(0);
    if (!all(integral)) {  // the plain-double step (predictions), all lanes
      vd rlog = splat(0);
      vd rl = splat(0);
      vd sigma = splat(1);
      vi zero_num = splati(0);
      vi zero_den = splati(0);
      const bool reduce = over2(orow, na);
      // Both loops sum o * lm and o * vh by the same expressions (so that a compiler contracting them
      // into FMAs does so in both, and a DAG's value does not depend on its block's other lanes); the
      // general one zeroes the node's terms where o is 0 (0 * inf would be NaN).
      if (!any(unusual)) {  // every node read is finite and nonzero: no masks, no zero factors
        for (int j = 0; j < na; ++j) {
          const vd o = orow[j];
          rlog += o * x.lm[j];
          rl += o * x.vh[j];
          sigma *= 1.0 + (x.s[j] - 1.0) * vparity_weight(o, reduce);
        }
      } else {
        for (int j = 0; j < na; ++j) {
          const vd o = orow[j];
          const vi nz = ~eq(o, splat(0));
          const vi mzero = eq(x.m[j], splat(0));
          rlog += o * as_d(as_i(x.lm[j]) & nz);
          rl += o * as_d(as_i(x.vh[j]) & nz);
          zero_num |= mzero & lt(splat(0), o);
          zero_den |= mzero & lt(o, splat(0));
          sigma *= 1.0 + (x.s[j] - 1.0) * vparity_weight(o, reduce);
        }
      }
      const vi top = zero_den | le(splat(kLogMagMax), rlog);
      magv = sel(zero_num, splat(0), sel(top, splat(kMagMax), vexp(vmin(rlog, splat(kLogMagMax)))));
      const vd lin = vmin(vmax(rl, splat(-kMagMax)), splat(kMagMax));
      const vd val = gate * lin + (1.0 - gate) * sigma * magv;
      const vd am = vabs(val);
      const vi pos = lt(splat(0), am);
      x.vh[na] = val;
      x.vlo[na] = splat(0);
      x.m[na] = am;
      x.s[na] = vsign(val);
      x.lm[na] = sel(pos, vlog(sel(pos, am, splat(1))), splat(0));
    }
    if (any(integral)) {  // double-double, lane by lane
      for (int l = 0; l < kLanes; ++l) {
        if (lane(integral, l) != 0) set_lane(magv, l, exact_step_dd(x, na, l, in.o[l] + base, lane(gate, l)));
      }
    }
    unusual |= unusual_node(na);
    if (ws != nullptr) vstore(ws + (2 * n + st) * kLanes, magv, stream);
  }
  if (ws != nullptr) {
    for (int j = 0; j < n; ++j) {
      vstore(ws + j * kLanes, x.lm[j], stream);
      vstore(ws + (n + j) * kLanes, x.vh[j], stream);
    }
  }
  return x.vh[n - 1] + x.vlo[n - 1];
}

template <typename T, int D = 0, int NI = 0>
void exact_backward(int d_in, int n_init_in, const Rows<const T>& in, const double* ws, vd gout,
                    const Rows<T>& out, const Ahead& ahead, bool stream) {
  const int d = fixed_or(D, d_in);
  const int n_init = fixed_or(NI, n_init_in);
  const int n = n_init + d;
  vd gates[kMaxDepth];
  load_row(in.g, 0, d, d, gates);
  vd lm[kNodeSlots];
  vd vh[kNodeSlots];
  vd m[kNodeSlots];
  vd s[kNodeSlots];
  vd inv_m[kNodeSlots];
  vd sm1[kNodeSlots];  // s - 1
  load_row(in.vmag, 0, n_init, n, m);
  load_row(in.vsign, 0, n_init, n, s);
  for (int j = 0; j < n; ++j) {
    lm[j] = vload(ws + j * kLanes);
    vh[j] = vload(ws + (n + j) * kLanes);
    if (j >= n_init) {
      m[j] = vabs(vh[j]);
      s[j] = vsign(vh[j]);
    }
    const vi pos = lt(splat(0), m[j]);
    inv_m[j] = sel(pos, 1.0 / sel(pos, m[j], splat(1)), splat(0));
    sm1[j] = s[j] - 1.0;
  }
  vi zero_m = splati(0);
  for (int j = 0; j < n; ++j) zero_m |= eq(m[j], splat(0));
  const bool zeros = any(zero_m);  // some node is exactly 0 (its factor zeroes a product)
  vd dv[kNodeSlots];               // through linear use (and the value itself)
  vd dlm[kNodeSlots];              // through the log magnitude (w.r.t. lm: dm = dlm / m)
  vd ds[kNodeSlots];               // through the log sign (initial slots only)
  vd grows[kWholeRows];            // O's gradient rows (all steps' stored at once at the end where they fit)
  const bool whole = d * n <= kWholeRows;
  vd dgate[kMaxDepth];
  vd f[kNodeSlots];
  vd pw[kNodeSlots];   // parity weight of o
  vd pwg[kNodeSlots];  // its derivative
  vd suffix[kNodeSlots];
  vd orows[kWholeRows];  // and O's rows, loaded at once where they fit
  if (whole) load_row(in.o, 0, d * n, d * n, orows);
  for (int j = 0; j < n; ++j) {  // one store each (a chained vd assignment copies through memory)
    dv[j] = splat(0);
    dlm[j] = splat(0);
    ds[j] = splat(0);
  }
  dv[n - 1] = gout;
  for (int st = d - 1; st >= 0; --st) {
    const int na = n_init + st;
    const std::int64_t base = static_cast<std::int64_t>(st) * n;
    ahead.slice(2 * st);
    vd rl = splat(0);
    vi zero_num = splati(0);
    suffix[na] = splat(1);
    const vd* orow = whole ? orows + base : orows;
    if (!whole) load_row(in.o, base, na, n, orows);
    vd* grow = whole ? grows + base : grows;
    const bool reduce = over2(orow, na);
    for (int j = na - 1; j >= 0; --j) {
      const vd o = orow[j];
      rl += o * vh[j];
      if (zeros) zero_num |= lt(splat(0), o) & eq(m[j], splat(0));
      vparity(o, reduce, pw[j], pwg[j]);
      f[j] = 1.0 + sm1[j] * pw[j];
      suffix[j] = suffix[j + 1] * f[j];
    }
    const vd sigma = suffix[0];
    const vd mag = vload(ws + (2 * n + st) * kLanes);
    const vd lin = vmin(vmax(rl, splat(-kMagMax)), splat(kMagMax));
    // the total gradient of this step's value: direct uses plus its magnitude's uses
    const vd dval = dv[na] + dlm[na] * inv_m[na] * s[na];
    const vd gate = gates[st];
    dgate[st] = dval * (lin - sigma * mag);
    const vd drl = as_d(as_i(dval * gate) & lt(vabs(rl), splat(kMagMax)));
    const vd dsigma = dval * (1.0 - gate) * mag;
    const vi mag_live = ~zero_num & lt(mag, splat(kMagMax));
    const vd drlog = as_d(as_i(dval * (1.0 - gate) * sigma * mag) & mag_live);
    vd prefix = dsigma;  // dsigma times the factors before j
    for (int j = 0; j < na; ++j) {
      const vd o = orow[j];
      const vd df = prefix * suffix[j + 1];
      // lm is 0 where m is 0; with o = 0 the parity terms vanish
      grow[j] = drl * vh[j] + drlog * lm[j] + df * sm1[j] * pwg[j];
      dv[j] += drl * o;
      if (j < n_init) ds[j] += df * pw[j];  // the sign's gradient: initial slots only
      dlm[j] += drlog * o;
      prefix *= f[j];
    }
    for (int j = na; j < n; ++j) grow[j] = splat(0);
    ahead.slice(2 * st + 1);
    if (!whole) store_row(out.o, base, n, grow, stream);
  }
  if (whole) store_row(out.o, 0, d * n, grows, stream);
  for (int j = 0; j < n; ++j) {
    // x = S*M; m = M; the sign factor reads S
    grows[j] = j < n_init ? dv[j] * s[j] + dlm[j] * inv_m[j] : splat(0);
    f[j] = j < n_init ? dv[j] * m[j] + ds[j] : splat(0);
  }
  store_row(out.vmag, 0, n, grows, stream);
  store_row(out.vsign, 0, n, f, stream);
  store_row(out.g, 0, d, dgate, stream);
}

// ---- reference semantics: one log per node; forward saves logs and per-step values for backward
// The workspace of a block: L of every node, then per step R, tanh(R/1e-4), tanh(P/1e-4), exp(min(R, 100))
// and P (kLanes doubles each). The backward pass reads M, S of the initial slots from the inputs and makes
// those of the steps' nodes from the step's values (reference_node: the forward pass's expression).
inline constexpr int kRefStepValues = 5;
// Steps that read at least this many slots (depth 8's): their product P of sign factors is saturated
// (|P / 1e-4| > 20) in every lane of a block in at most 28% of random steps (47-74% in shorter rows), so
// the forward pass computes tanh(P / 1e-4) without the all-saturated test, whose branch would be
// mispredicted; and the backward pass passes the factors' gradients by products instead of divisions.
// Depth 8, fwd+bwd, 8,192 DAGs: 3.4% faster.
inline constexpr int kProductsFrom = 8;
inline int reference_workspace(int d, int n) { return n + kRefStepValues * d; }
inline int reference_step_at(int n, int st) { return n + kRefStepValues * st; }
DAGPT_DAG_INLINE void reference_node(vd g, vd R, vd slin, vd slog, vd emag, vd& M, vd& S) {
  const vd g1 = 1.0 - g;
  M = g * vabs(R) + g1 * emag;
  S = g * slin + g1 * slog;
}

template <typename T, int D = 0, int NI = 0>
vd reference_forward(int d_in, int n_init_in, const Rows<const T>& in, double* ws, bool stream,
                     const Ahead& ahead) {
  const int d = fixed_or(D, d_in);
  const int n_init = fixed_or(NI, n_init_in);
  const int n = n_init + d;
  vd gates[kMaxDepth];
  load_row(in.g, 0, d, d, gates);
  vd M[kNodeSlots];
  vd S[kNodeSlots];
  vd L[kNodeSlots];
  vd XmL[kNodeSlots];  // S*M - L: mixed = L + g * XmL
  vd S2[kNodeSlots];   // 2*S
  // O's rows: all steps' loaded at once where they fit (one loop), else step by step
  vd orows[kWholeRows];
  const bool whole = d * n <= kWholeRows;
  if (whole) load_row(in.o, 0, d * n, d * n, orows);
  load_row(in.vmag, 0, n_init, n, M);
  load_row(in.vsign, 0, n_init, n, S);
  for (int j = 0; j < n_init; ++j) {
    L[j] = vlog_max(M[j], 1e-12);
    XmL[j] = S[j] * M[j] - L[j];
    S2[j] = S[j] + S[j];
  }
  for (int st = 0; st < d; ++st) {
    const int na = n_init + st;
    const std::int64_t base = static_cast<std::int64_t>(st) * n;
    ahead.slice(2 * st);
    const vd g = gates[st];
    vd R = splat(0);
    vd P = splat(1);
    const vd* orow = whole ? orows + base : orows;
    if (!whole) load_row(in.o, base, na, n, orows);
#pragma GCC unroll 1
    // Loops over a step's slots stay loops (also where na is a constant): their copies would be more code
    // than the core's cache of decoded instructions holds (unrolled by the compiler: 5% slower at depth 4).
    for (int j = 0; j < na; ++j) {
      const vd o = orow[j];
      R += o * (L[j] + g * XmL[j]);
      P *= S2[j] * vabs(o) + 1.0;
    }
    ahead.slice(2 * st + 1);
    const vd slin = vtanh_scaled(R);
    const vd slog = na < kProductsFrom ? vtanh_scaled(P) : vtanh_scaled_all(P);
    const vd emag = vexp(vmin(R, splat(100)));
    reference_node(g, R, slin, slog, emag, M[na], S[na]);
    L[na] = st + 1 < d ? vlog_max(M[na], 1e-12) : splat(0);
    XmL[na] = S[na] * M[na] - L[na];
    S2[na] = S[na] + S[na];
    if (ws != nullptr) {
      double* sp = ws + reference_step_at(n, st) * kLanes;
      vstore(sp, R, stream);
      vstore(sp + kLanes, slin, stream);
      vstore(sp + 2 * kLanes, slog, stream);
      vstore(sp + 3 * kLanes, emag, stream);
      vstore(sp + 4 * kLanes, P, stream);
    }
  }
  if (ws != nullptr) {
    for (int j = 0; j < n; ++j) vstore(ws + j * kLanes, L[j], stream);
  }
  return S[n - 1] * M[n - 1];
}

// Each node's gradient is gathered per use as three sums, and turned into dM, dS once (when the backward
// pass reaches the step that made the node, all its uses are done; initial slots at the end): DX through
// its linear use X = S*M, DL through its log L, DW through the sign factors w = 2*S*|o| + 1 (dS = 2*DW +
// ...).
template <typename T, int D = 0, int NI = 0>
void reference_backward(int d_in, int n_init_in, const Rows<const T>& in, const double* ws, vd gout,
                        const Rows<T>& out, const Ahead& ahead, bool stream) {
  const int d = fixed_or(D, d_in);
  const int n_init = fixed_or(NI, n_init_in);
  const int n = n_init + d;
  vd gates[kMaxDepth];
  load_row(in.g, 0, d, d, gates);
  vd M[kNodeSlots];
  vd S[kNodeSlots];
  vd L[kNodeSlots];
  vd S2[kNodeSlots];   // 2*S
  vd XmL[kNodeSlots];  // X - L
  vd DX[kNodeSlots];
  vd DL[kNodeSlots];
  vd DW[kNodeSlots];
  load_row(in.vmag, 0, n_init, n, M);
  load_row(in.vsign, 0, n_init, n, S);
  for (int st = 0; st < d; ++st) {
    const double* sp = ws + reference_step_at(n, st) * kLanes;
    reference_node(gates[st], vload(sp), vload(sp + kLanes), vload(sp + 2 * kLanes), vload(sp + 3 * kLanes),
                   M[n_init + st], S[n_init + st]);
  }
  for (int j = 0; j < n; ++j) {
    L[j] = vload(ws + j * kLanes);
    S2[j] = S[j] + S[j];
    XmL[j] = S[j] * M[j] - L[j];  // as the forward pass
    DX[j] = splat(0);             // one store each (a chained vd assignment copies through memory)
    DL[j] = splat(0);
    DW[j] = splat(0);
  }
  // dM, dS of node j from its sums: L = log(max(M, 1e-12)) passes 1/M where M >= 1e-12
  const auto node_grads = [&](int j, vd& dM, vd& dS) {
    const vi live = le(splat(1e-12), M[j]);
    dM = DX[j] * S[j] + as_d(as_i(DL[j] / sel(live, M[j], splat(1))) & live);
    dS = 2.0 * DW[j] + DX[j] * M[j];
  };
  // The rows of O's gradient: all steps' stored at once at the end where they fit (whole lines, one loop)
  vd grows[kWholeRows];
  const bool whole = d * n <= kWholeRows;
  vd dgate[kMaxDepth];
  vd suffix[kNodeSlots];
  vd orows[kWholeRows];  // and O's rows, loaded at once where they fit
  if (whole) load_row(in.o, 0, d * n, d * n, orows);
  vd dSn = gout * M[n - 1];
  vd dMn = gout * S[n - 1];
  for (int st = d - 1; st >= 0; --st) {
    const int na = n_init + st;
    const std::int64_t base = static_cast<std::int64_t>(st) * n;
    vd* grow = whole ? grows + base : grows;
    ahead.slice(2 * st);
    if (st < d - 1) node_grads(na, dMn, dSn);
    const double* sp = ws + reference_step_at(n, st) * kLanes;
    const vd R = vload(sp);
    const vd slin = vload(sp + kLanes);
    const vd slog = vload(sp + 2 * kLanes);
    const vd emag = vload(sp + 3 * kLanes);
    const vd g = gates[st];
    const vd g1 = 1.0 - g;
    vd dg = dSn * (slin - slog) + dMn * (vabs(R) - emag);
    vd dR = dMn * (g * vsign(R) + g1 * as_d(as_i(emag) & le(R, splat(100))));
    dR += dSn * g * (1.0 - slin * slin) * 1e4;
    const vd dP = dSn * g1 * (1.0 - slog * slog) * 1e4;
    const vd* orow = whole ? orows + base : orows;
    if (!whole) load_row(in.o, base, na, n, orows);
    const vd dRg = dR * g;
    const vd dRg1 = dR * g1;
    vd sx = splat(0);
    // The row's gradient and the nodes' sums. With `sign` true, also the sign factors' terms:
    // t_j = dw_j * dw_j/do_j, where dw_of(j, w_j) gives dw_j = dP * dP/dw_j (called in the order of j).
    const auto row = [&](auto sign, auto dw_of) {
      const vi sign_bit = splati(INT64_MIN);
#pragma GCC unroll 1
      for (int j = 0; j < na; ++j) {
        const vd o = orow[j];
        // dR * mixed (+ t), mixed as the forward pass made it (it may cancel: no reassociation)
        if constexpr (decltype(sign)::value) {
          const vd a = vabs(o);
          const vd dw = dw_of(j, S2[j] * a + 1.0);
          // d w / d o = 2 S sign(o) (0 at o = 0): the sign of o flips dw * 2S
          const vd t = as_d((as_i(dw * S2[j]) ^ (as_i(o) & sign_bit)) & ~eq(o, splat(0)));
          grow[j] = dR * (L[j] + g * XmL[j]) + t;
          DW[j] += dw * a;
        } else {
          grow[j] = dR * (L[j] + g * XmL[j]);
        }
        DX[j] += o * dRg;
        DL[j] += o * dRg1;
        sx += o * XmL[j];
      }
    };
    // The sign factors w_j = 2 S_j |o_j| + 1 pass dP * prod_{k != j} w_k, in lanes where dP != 0 only
    // (where tanh(P/1e-4) is saturated, exactly +-1, they pass none). In rows of fewer than
    // kProductsFrom factors that product is P / w_j (one division per factor, as PyTorch's prod backward)
    // where P is a normal number not above 2^900: then no w_j is 0 and P / w_j is finite (|w_j| >= 2^-107
    // where not 0: 1 + an exact product of two doubles, rounded once). Elsewhere (P = 0, or subnormal; and
    // in longer rows, where the divisions would keep the divider busy) it is the product of the factors
    // before and after j.
    const vi live = ~eq(dP, splat(0));  // NaN: live
    if (!any(live)) {
      row(std::false_type{}, nullptr);
    } else {
      const vd P = vload(sp + 4 * kLanes);
      const vd aP = vabs(P);
      const vd dPP = dP * P;
      const bool short_row = na < kProductsFrom;  // may divide
      const vi by_division = short_row ? le(splat(DBL_MIN), aP) & le(aP, splat(0x1p900)) : vi{};
      if (all(by_division | ~live)) {
        row(std::true_type{}, [&](int, vd w) { return as_d(as_i(dPP / w) & live); });
      } else {
        suffix[na] = splat(1);
        for (int j = na - 1; j >= 0; --j) suffix[j] = suffix[j + 1] * (S2[j] * vabs(orow[j]) + 1.0);
        vd prefix = dP;  // dP times the factors before j
        row(std::true_type{}, [&](int j, vd w) {
          // each lane's choice depends on its own P only: a DAG's gradients do not depend on its neighbours
          // (in long rows by_division is false everywhere: no division at all)
          const vd dw =
              short_row ? sel(by_division, dPP / w, prefix * suffix[j + 1]) : prefix * suffix[j + 1];
          prefix *= w;
          return as_d(as_i(dw) & live);
        });
      }
    }
    dgate[st] = dg + dR * sx;
    for (int j = na; j < n; ++j) grow[j] = splat(0);
    ahead.slice(2 * st + 1);
    if (!whole) store_row(out.o, base, n, grow, stream);
  }
  if (whole) store_row(out.o, 0, d * n, grows, stream);
  vd dM[kNodeSlots];
  vd dS[kNodeSlots];
  for (int j = 0; j < n; ++j) {
    if (j < n_init) {
      node_grads(j, dM[j], dS[j]);
    } else {
      dM[j] = splat(0);
      dS[j] = splat(0);
    }
  }
  store_row(out.vmag, 0, n, dM, stream);
  store_row(out.vsign, 0, n, dS, stream);
  store_row(out.g, 0, d, dgate, stream);
}

// Gradients at least this large (a core's L2 cache or more) are written non-temporally: whole cache lines
// that bypass the caches (no read for ownership), since the batch's other blocks would evict them before
// they are read. The workspace, which the backward pass reads back, is streamed only from
// kStreamWorkspaceBytes on (below, the last-level cache may still hold it then: 7% faster at depth 4, 8,192
// DAGs, 2 threads).
inline constexpr std::int64_t kStreamBytes = std::int64_t{1} << 20;
inline constexpr std::int64_t kStreamWorkspaceBytes = std::int64_t{8} << 20;
inline std::int64_t blocks(std::int64_t count) { return (count + kLanes - 1) / kLanes; }
inline int workspace_per_dag(Semantics sem, int d, int n) {
  return sem == Semantics::exact ? exact_workspace(d, n) : reference_workspace(d, n);
}

template <typename T>
void check_size(const DagPlan<T>& p, const char* op) {
  if (p.depth() > kMaxDepth)
    dagpt::detail::raise<ValueError>("{}: depth {} exceeds the maximum {}", op, p.depth(), kMaxDepth);
  if (p.nodes() > kMaxNodes) {
    dagpt::detail::raise<ValueError>("{}: {} nodes (V_mag's last axis) exceed the maximum {}", op, p.nodes(),
                                     kMaxNodes);
  }
}

// Runs contiguous plans; ws (blocks(count) * kLanes * workspace_per_dag doubles) receives what the
// backward pass needs, when not null.
template <typename T>
void forward_all(const DagPlan<T>& p, Semantics sem, T* out, double* ws) {
  const int d = p.depth();
  const int n = p.nodes();
  const std::int64_t count = p.count();
  const std::int64_t wb = static_cast<std::int64_t>(workspace_per_dag(sem, d, n)) * kLanes;
  const bool stream = ws != nullptr &&
                      blocks(count) * wb * static_cast<std::int64_t>(sizeof(double)) >= kStreamWorkspaceBytes;
  const T* inputs[4] = {p.V_mag.data(), p.V_sign.data(), p.O.data(), p.G.data()};
  const std::int64_t full = count / kLanes;  // blocks without padding
  const std::int64_t nb = blocks(count);
  std::vector<T> pad_buf = PaddedBlock<T>::buffer(count, d, n);
  parallel_blocks(nb, count * d * n * 8, [&](std::int64_t b, std::int64_t e) {
    Ahead ahead = inputs_ahead(p, d, n);
    Rows<const T> rows = rows_at(inputs[0], inputs[1], inputs[2], inputs[3], b < full ? b * kLanes : 0, d, n);
    for (std::int64_t k = b; k < e; ++k) {
      ahead.follow(k, b, nb);
      const std::int64_t i = k * kLanes;
      double* w = ws != nullptr ? ws + k * wb : nullptr;
      const auto run = [&](const Rows<const T>& in) {
        return with_shape(d, n - d, [&](auto D, auto NI) {
          constexpr int kD = decltype(D)::value;
          constexpr int kNI = decltype(NI)::value;
          return sem == Semantics::exact ? exact_forward<T, kD, kNI>(d, n - d, in, w, stream, ahead)
                                         : reference_forward<T, kD, kNI>(d, n - d, in, w, stream, ahead);
        });
      };
      vd v;
      if (k < full) {
        v = run(rows);
        if (k + 1 < full) rows.next();
      } else {
        v = run(PaddedBlock<T>(inputs, i, count, d, n, pad_buf).inputs());
      }
      if (std::is_same_v<T, double> && k < full) {
        std::memcpy(out + i, &v, sizeof v);
      } else {
        for (int l = 0; l < kLanes && i + l < count; ++l) out[i + l] = static_cast<T>(lane(v, l));
      }
    }
    if (stream) stream_fence();
  });
}

}  // namespace detail

// Runs plans without recording a graph: the value of each plan, shape = the plans' batch shape.
template <typename T>
Tensor<T> execute_values(const DagPlan<T>& plan_in, Semantics sem = Semantics::exact) {
  plan_in.check("execute");
  const DagPlan<T> p{plan_in.V_mag.contiguous(), plan_in.V_sign.contiguous(), plan_in.O.contiguous(),
                     plan_in.G.contiguous()};
  detail::check_size(p, "execute");
  Tensor<T> out = Tensor<T>::empty(p.batch_shape());
  detail::forward_all(p, sem, out.data(), nullptr);
  return out;
}

// The executor as an autograd Function: inputs (V_mag, V_sign, O, G), output the values [batch].
template <typename T>
class Executor : public Function<T> {
 public:
  explicit Executor(Semantics sem) : sem_(sem) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    DagPlan<T> p{in[0].contiguous(), in[1].contiguous(), in[2].contiguous(), in[3].contiguous()};
    detail::check_size(p, "execute");
    bool any = false;
    for (std::size_t k = 0; k < 4; ++k) any = any || this->needs_input_grad(k);
    if (any) {
      workspace_ = Tensor<double>::empty({detail::blocks(p.count()) * detail::kLanes *
                                          detail::workspace_per_dag(sem_, p.depth(), p.nodes())});
    }
    Tensor<T> out = Tensor<T>::empty(p.batch_shape());
    detail::forward_all(p, sem_, out.data(), any ? workspace_.data() : nullptr);
    if (any) this->save_for_backward({p.V_mag, p.V_sign, p.O, p.G});
    return {out};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& grad) override {
    const auto& s = this->saved();
    const DagPlan<T> p{s[0], s[1], s[2], s[3]};
    const int d = p.depth();
    const int n = p.nodes();
    const Tensor<T> g = grad[0].contiguous();
    std::vector<Tensor<T>> out(4);  // every entry is written (zero where no gradient flows)
    for (std::size_t k = 0; k < 4; ++k) {
      if (this->needs_input_grad(k)) out[k] = Tensor<T>::empty(s[k].shape());
    }
    T* ptr[4];
    for (std::size_t k = 0; k < 4; ++k) ptr[k] = out[k].defined() ? out[k].data() : nullptr;
    const T* inputs[4] = {p.V_mag.data(), p.V_sign.data(), p.O.data(), p.G.data()};
    const double* ws = workspace_.data();
    const std::int64_t count = p.count();
    const std::int64_t wb = static_cast<std::int64_t>(detail::workspace_per_dag(sem_, d, n)) * detail::kLanes;
    const T* gp = g.data();
    // Large gradients bypass the cache (they are written once and read by the next step's optimizer).
    const bool stream = count * d * n * static_cast<std::int64_t>(sizeof(T)) >= detail::kStreamBytes;
    const std::int64_t full = count / detail::kLanes;  // blocks without padding
    const std::int64_t nb = detail::blocks(count);
    std::vector<T> pad_buf = detail::PaddedBlock<T>::buffer(count, d, n);
    parallel_blocks(nb, count * d * n * 16, [&](std::int64_t b, std::int64_t e) {
      detail::Ahead ahead = detail::inputs_ahead(p, d, n);
      ahead.add(ws, wb);
      const std::int64_t b0 = b < full ? b * detail::kLanes : 0;
      auto in_rows = detail::rows_at(inputs[0], inputs[1], inputs[2], inputs[3], b0, d, n);
      auto grad_rows = detail::rows_at(ptr[0], ptr[1], ptr[2], ptr[3], b0, d, n);
      for (std::int64_t k = b; k < e; ++k) {
        const std::int64_t i = k * detail::kLanes;
        ahead.follow(k, b, nb);
        detail::vd go = detail::splat(0);
        if constexpr (std::is_same_v<T, double>) {
          if (k < full) go = detail::vload(gp + i);
        }
        if (!std::is_same_v<T, double> || k >= full) {
          for (int l = 0; l < detail::kLanes; ++l)
            detail::set_lane(go, l, static_cast<double>(gp[std::min(i + l, count - 1)]));
        }
        const double* w = ws + k * wb;
        const auto run = [&](const detail::Rows<const T>& in, const detail::Rows<T>& gr, bool streamed) {
          detail::with_shape(d, n - d, [&](auto D, auto NI) {
            constexpr int kD = decltype(D)::value;
            constexpr int kNI = decltype(NI)::value;
            if (sem_ == Semantics::exact) {
              detail::exact_backward<T, kD, kNI>(d, n - d, in, w, go, gr, ahead, streamed);
            } else {
              detail::reference_backward<T, kD, kNI>(d, n - d, in, w, go, gr, ahead, streamed);
            }
          });
        };
        if (k < full) {
          run(in_rows, grad_rows, stream);
          if (k + 1 < full) {
            in_rows.next();
            grad_rows.next();
          }
        } else {
          detail::PaddedBlock<T> pad(inputs, i, count, d, n, pad_buf);
          run(pad.inputs(), pad.grads(ptr), false);
          pad.copy_grads(ptr);
        }
      }
      detail::stream_fence();
    });
    return out;
  }

  std::string name() const override {
    return sem_ == Semantics::exact ? "DagExecutor" : "DagExecutor(reference)";
  }
  void release() override {
    Function<T>::release();
    workspace_ = Tensor<double>();
  }

 private:
  Semantics sem_;
  Tensor<double> workspace_;  // per-block values saved by forward for backward (detail::forward_all)
};

// The differentiable value of every plan: V_mag, V_sign [..., N], O [..., d, N], G [..., d] -> [...].
template <typename T>
Var<T> execute(const Var<T>& V_mag, const Var<T>& V_sign, const Var<T>& O, const Var<T>& G,
               Semantics sem = Semantics::exact) {
  DagPlan<T>{V_mag.value(), V_sign.value(), O.value(), G.value()}.check("execute");
  return apply<Executor<T>>(std::vector<Var<T>>{V_mag, V_sign, O, G}, sem)[0];
}

}  // namespace dagpt::dag

#undef DAGPT_DAG_INLINE
