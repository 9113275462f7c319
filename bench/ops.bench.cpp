// Micro-benchmarks of dagpt's CPU kernels at the reference model's shapes (B=256, T=32, 256 wide, 4 heads),
// each beside a raw baseline in the same binary: Eigen on the same buffers for products, memcpy and plain
// loops for bandwidth. bench/compare/run.sh reads the JSON output; names are "<key>/<impl>".
//
// Every benchmark runs on the threads OpenMP gives it (we report OMP_NUM_THREADS=2). dagpt's kernels return
// a fresh tensor each call (there is no out-parameter form), so their times include allocating the result;
// the raw baselines write into a buffer allocated once, which is the bound dagpt could reach. The
// "<key>/loop_alloc" and "<key>/eigen_alloc" baselines take a fresh output from dagpt's allocator
// (Tensor::empty) each call, to show what allocating costs. Whether a fresh buffer costs page faults
// depends on what the allocator holds, so all inputs are made before the first benchmark and each
// benchmark starts from a trimmed heap (malloc_trim): a result should not depend on the ones before it.
#include "dagpt/kernels/cpu/ops.hpp"

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <omp.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "dagpt/core/tensor.hpp"

namespace {

using dagpt::Shape;
using Tensor = dagpt::Tensor<float>;

// run.sh adds --benchmark_enable_random_interleaving, which runs the repetitions of all benchmarks in a
// random order: a slow stretch of the machine then spreads over every benchmark instead of a few.
constexpr double kMinTime = 0.2;  // seconds per repetition
constexpr int kRepetitions = 7;   // the JSON reports the median of these

// Inputs are made once per (shape, seed), all of them before the first benchmark runs (prepare_inputs),
// so that they sit below every result buffer in the heap: with glibc malloc a large buffer freed under a
// live input would leave a hole that later results reuse without page faults, and the times would depend
// on which benchmarks ran before.
std::map<std::string, Tensor>& input_cache() {
  static std::map<std::string, Tensor> cache;
  return cache;
}
bool inputs_prepared = false;

const Tensor& input(const Shape& shape, std::uint64_t seed) {
  auto& cache = input_cache();
  const std::string key = shape.str() + "#" + std::to_string(seed);
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (inputs_prepared) std::fprintf(stderr, "ops.bench: input %s was not prepared up front\n", key.c_str());
    dagpt::Generator gen(seed);
    it = cache.emplace(key, Tensor::randn(shape, gen)).first;
  }
  return it->second;
}

void rate(benchmark::State& state, const char* name, double per_iteration) {
  state.counters[name] = benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}
void gflops(benchmark::State& state, double flops) { rate(state, "GFLOP", flops * 1e-9); }
void gbytes(benchmark::State& state, double bytes) {
  rate(state, "GB", bytes * 1e-9);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
}

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const RowMat>;
using MMap = Eigen::Map<RowMat>;

float max_abs_diff(const float* a, const float* b, std::int64_t n) {
  float m = 0;
  for (std::int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// ---- matrix products ---------------------------------------------------------------------------------
// [M,K] x [K,N] with b stored [K,N] (`nn`), or with b = W^T for W stored [N,K], as in Linear (`nt`).
enum class Form { nn, nt };

Tensor weight(std::int64_t k, std::int64_t n, Form f) {
  return f == Form::nn ? input({k, n}, 2) : input({n, k}, 3);
}

void matmul_dagpt(benchmark::State& state, std::int64_t m, std::int64_t k, std::int64_t n, Form f) {
  const Tensor& a = input({m, k}, 1);
  const Tensor w = weight(k, n, f);
  const Tensor b = f == Form::nn ? w : w.t();
  for (auto _ : state) {
    Tensor c = dagpt::matmul(a, b);
    benchmark::DoNotOptimize(c.data());
  }
  gflops(state, 2.0 * m * k * n);
}

template <bool Alloc>
void matmul_eigen(benchmark::State& state, std::int64_t m, std::int64_t k, std::int64_t n, Form f) {
  const Tensor& a = input({m, k}, 1);
  const Tensor w = weight(k, n, f);
  const CMap A(a.data(), m, k);
  Tensor c = Tensor::empty({m, n});
  auto once = [&](float* out) {
    MMap C(out, m, n);
    if (f == Form::nn) {
      C.noalias() = A * CMap(w.data(), k, n);
    } else {
      C.noalias() = A * CMap(w.data(), n, k).transpose();
    }
  };
  // Both paths must agree before either is timed.
  once(c.data());
  const Tensor ref = dagpt::matmul(a, f == Form::nn ? w : w.t());
  const float err = max_abs_diff(c.data(), ref.data(), m * n);
  if (err > 1e-3f) state.SkipWithError(("dagpt and Eigen differ by " + std::to_string(err)).c_str());
  for (auto _ : state) {
    if constexpr (Alloc) {
      Tensor fresh = Tensor::empty({m, n});
      once(fresh.data());
      benchmark::DoNotOptimize(fresh.data());
    } else {
      once(c.data());
      benchmark::DoNotOptimize(c.data());
    }
  }
  gflops(state, 2.0 * m * k * n);
}

// Attention's two batched products, with G = B*4 heads' matrices: q [G,T,hs] @ k^T (k stored [G,T,hs],
// read through a transposed view as the model does), and att [G,T,T] @ v [G,T,hs].
enum class Attn { qk, av };

struct AttnShape {
  std::int64_t g, m, k, n;
};
AttnShape attn_shape(Attn which, std::int64_t g, std::int64_t t, std::int64_t hs) {
  return which == Attn::qk ? AttnShape{g, t, hs, t} : AttnShape{g, t, t, hs};
}

void bmm_dagpt(benchmark::State& state, Attn which, std::int64_t g, std::int64_t t, std::int64_t hs) {
  const AttnShape s = attn_shape(which, g, t, hs);
  const Tensor& a = input({g, s.m, s.k}, 4);
  const Tensor b = which == Attn::qk ? input({g, t, hs}, 5).transpose(-1, -2) : input({g, t, hs}, 6);
  for (auto _ : state) {
    Tensor c = dagpt::matmul(a, b);
    benchmark::DoNotOptimize(c.data());
  }
  gflops(state, 2.0 * s.g * s.m * s.k * s.n);
}

void bmm_eigen(benchmark::State& state, Attn which, std::int64_t g, std::int64_t t, std::int64_t hs) {
  const AttnShape s = attn_shape(which, g, t, hs);
  const Tensor& a = input({g, s.m, s.k}, 4);
  const Tensor& bs = which == Attn::qk ? input({g, t, hs}, 5) : input({g, t, hs}, 6);
  Tensor c = Tensor::empty({g, s.m, s.n});
  // One matrix per loop step, the steps spread over the threads; Eigen stays single-threaded inside a
  // parallel region.
  auto once = [&] {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < g; ++i) {
      const CMap A(a.data() + i * s.m * s.k, s.m, s.k);
      MMap C(c.data() + i * s.m * s.n, s.m, s.n);
      if (which == Attn::qk) {
        C.noalias() = A * CMap(bs.data() + i * t * hs, t, hs).transpose();
      } else {
        C.noalias() = A * CMap(bs.data() + i * t * hs, t, hs);
      }
    }
  };
  once();
  const Tensor ref = dagpt::matmul(a, which == Attn::qk ? bs.transpose(-1, -2) : bs);
  const float err = max_abs_diff(c.data(), ref.data(), c.numel());
  if (err > 1e-3f) state.SkipWithError(("dagpt and Eigen differ by " + std::to_string(err)).c_str());
  for (auto _ : state) {
    once();
    benchmark::DoNotOptimize(c.data());
  }
  gflops(state, 2.0 * s.g * s.m * s.k * s.n);
}

// ---- elementwise -------------------------------------------------------------------------------------
enum class Bin { add, mul };

void binary_dagpt(benchmark::State& state, Bin op, std::int64_t n) {
  const Tensor& a = input({n}, 7);
  const Tensor& b = input({n}, 8);
  for (auto _ : state) {
    Tensor c = op == Bin::add ? dagpt::add(a, b) : dagpt::mul(a, b);
    benchmark::DoNotOptimize(c.data());
  }
  gbytes(state, 3.0 * n * sizeof(float));
}

// c[i] = a[i] op b[i] on the same threads; with Alloc the output is a fresh tensor each time, as in dagpt.
template <bool Alloc>
void binary_loop(benchmark::State& state, Bin op, std::int64_t n) {
  const float* a = input({n}, 7).data();
  const float* b = input({n}, 8).data();
  Tensor out = Tensor::empty({n});
  for (auto _ : state) {
    Tensor fresh = Alloc ? Tensor::empty({n}) : out;
    float* c = fresh.data();
    if (op == Bin::add) {
#pragma omp parallel for simd schedule(static)
      for (std::int64_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
    } else {
#pragma omp parallel for simd schedule(static)
      for (std::int64_t i = 0; i < n; ++i) c[i] = a[i] * b[i];
    }
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  gbytes(state, 3.0 * n * sizeof(float));
}

// The bandwidth ceiling: memcpy (which streams past the cache for large sizes) or a plain loop, each
// thread copying its own slice. Bytes counted are read + written, as for the kernels.
void copy_memcpy(benchmark::State& state, std::int64_t n) {
  const float* a = input({n}, 7).data();
  Tensor out = Tensor::empty({n});
  float* c = out.data();
  for (auto _ : state) {
#pragma omp parallel
    {
      const std::int64_t nt = omp_get_num_threads();
      const std::int64_t t = omp_get_thread_num();
      const std::int64_t b = n * t / nt;
      const std::int64_t e = n * (t + 1) / nt;
      std::memcpy(c + b, a + b, static_cast<std::size_t>(e - b) * sizeof(float));
    }
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  gbytes(state, 2.0 * n * sizeof(float));
}

void copy_loop(benchmark::State& state, std::int64_t n) {
  const float* a = input({n}, 7).data();
  Tensor out = Tensor::empty({n});
  float* c = out.data();
  for (auto _ : state) {
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) c[i] = a[i];
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  gbytes(state, 2.0 * n * sizeof(float));
}

void exp_dagpt(benchmark::State& state, std::int64_t n) {
  const Tensor& a = input({n}, 7);
  for (auto _ : state) {
    Tensor c = dagpt::exp(a);
    benchmark::DoNotOptimize(c.data());
  }
  gbytes(state, 2.0 * n * sizeof(float));
}

void exp_loop(benchmark::State& state, std::int64_t n) {
  const float* a = input({n}, 7).data();
  Tensor out = Tensor::empty({n});
  float* c = out.data();
  for (auto _ : state) {
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) c[i] = std::exp(a[i]);
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  gbytes(state, 2.0 * n * sizeof(float));
}

// Eigen's vectorized exp (its AVX2 polynomial), the bound for a SIMD exp on these threads.
void exp_eigen(benchmark::State& state, std::int64_t n) {
  const float* a = input({n}, 7).data();
  Tensor out = Tensor::empty({n});
  float* c = out.data();
  for (auto _ : state) {
#pragma omp parallel
    {
      const std::int64_t nt = omp_get_num_threads();
      const std::int64_t t = omp_get_thread_num();
      const std::int64_t b = n * t / nt;
      const std::int64_t e = n * (t + 1) / nt;
      Eigen::Map<Eigen::ArrayXf>(c + b, e - b) = Eigen::Map<const Eigen::ArrayXf>(a + b, e - b).exp();
    }
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  gbytes(state, 2.0 * n * sizeof(float));
}

// x [M,N] + bias [N], the bias broadcast over rows (Linear's forward).
void bias_add_dagpt(benchmark::State& state, std::int64_t m, std::int64_t n) {
  const Tensor& x = input({m, n}, 9);
  const Tensor& bias = input({n}, 10);
  for (auto _ : state) {
    Tensor c = dagpt::add(x, bias);
    benchmark::DoNotOptimize(c.data());
  }
  gbytes(state, (2.0 * m * n + n) * sizeof(float));
}

void bias_add_loop(benchmark::State& state, std::int64_t m, std::int64_t n) {
  const float* x = input({m, n}, 9).data();
  const float* bias = input({n}, 10).data();
  Tensor out = Tensor::empty({m, n});
  float* c = out.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < m; ++r) {
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) c[r * n + j] = x[r * n + j] + bias[j];
    }
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  gbytes(state, (2.0 * m * n + n) * sizeof(float));
}

// ---- reductions --------------------------------------------------------------------------------------
void sum_all_dagpt(benchmark::State& state, std::int64_t n) {
  const Tensor& a = input({n}, 7);
  for (auto _ : state) {
    Tensor s = dagpt::sum(a);
    benchmark::DoNotOptimize(s.data());
  }
  gbytes(state, 1.0 * n * sizeof(float));
}

// A plain float-accumulating reduction: the read-bandwidth bound.
void sum_all_loop(benchmark::State& state, std::int64_t n) {
  const float* a = input({n}, 7).data();
  for (auto _ : state) {
    float s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (std::int64_t i = 0; i < n; ++i) s += a[i];
    benchmark::DoNotOptimize(s);
  }
  gbytes(state, 1.0 * n * sizeof(float));
}

void sum_axis_dagpt(benchmark::State& state, std::int64_t m, std::int64_t n, int axis) {
  const Tensor& x = input({m, n}, 9);
  for (auto _ : state) {
    Tensor s = dagpt::sum(x, axis);
    benchmark::DoNotOptimize(s.data());
  }
  gbytes(state, (1.0 * m * n + (axis == 0 ? n : m)) * sizeof(float));
}

void softmax_dagpt(benchmark::State& state, std::int64_t g, std::int64_t t) {
  const Tensor& x = input({g, t, t}, 11);
  for (auto _ : state) {
    Tensor y = dagpt::softmax(x);
    benchmark::DoNotOptimize(y.data());
  }
  gbytes(state, 2.0 * g * t * t * sizeof(float));
}

// ---- registration ------------------------------------------------------------------------------------
template <typename F, typename... Args>
void reg(const std::string& name, F f, Args... args) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [=](benchmark::State& s) {
                                 malloc_trim(0);
                                 f(s, args...);
                               })
      ->UseRealTime()
      ->MinTime(kMinTime)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
}

std::string dims(std::initializer_list<std::int64_t> d) {
  std::string s;
  for (auto v : d) {
    if (!s.empty()) s += 'x';
    s += std::to_string(v);
  }
  return s;
}

const int registered = [] {
  // Eigen's own string stops at "AVX"; say which wider sets the compiler was allowed to use.
  std::string isa = "baseline x86-64";
#if defined(__AVX512F__)
  isa = "avx512f";
#elif defined(__AVX2__) && defined(__FMA__)
  isa = "avx2+fma";
#endif
  benchmark::AddCustomContext("compiled_isa", isa);
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));

  constexpr std::int64_t kRows = 8192;  // B*T tokens
  const std::int64_t linear[][2] = {{256, 768}, {256, 1024}, {1024, 256}};
  constexpr std::int64_t kHeads = 256 * 4, kT = 32, kHs = 64;
  constexpr std::int64_t k1M = std::int64_t{1} << 20, k16M = std::int64_t{1} << 24;

  // Every input of every benchmark below, by (shape, seed) as the benchmarks ask for them.
  for (auto [k, n] : linear) {
    input({kRows, k}, 1);
    weight(k, n, Form::nn);
    weight(k, n, Form::nt);
  }
  input({kHeads, kT, kHs}, 4);
  input({kHeads, kT, kT}, 4);
  input({kHeads, kT, kHs}, 5);
  input({kHeads, kT, kHs}, 6);
  for (std::int64_t n : {k1M, k16M}) {
    input({n}, 7);
    input({n}, 8);
  }
  input({kRows, 768}, 9);
  input({768}, 10);
  input({kHeads, kT, kT}, 11);
  inputs_prepared = true;

  for (auto [k, n] : linear) {
    for (Form f : {Form::nn, Form::nt}) {
      const std::string key = std::string(f == Form::nn ? "matmul_" : "linear_") + dims({kRows, k, n});
      reg(key + "/dagpt", matmul_dagpt, kRows, k, n, f);
      reg(key + "/eigen", matmul_eigen<false>, kRows, k, n, f);
      reg(key + "/eigen_alloc", matmul_eigen<true>, kRows, k, n, f);
    }
  }
  reg("bmm_qk_" + dims({kHeads, kT, kHs, kT}) + "/dagpt", bmm_dagpt, Attn::qk, kHeads, kT, kHs);
  reg("bmm_qk_" + dims({kHeads, kT, kHs, kT}) + "/eigen", bmm_eigen, Attn::qk, kHeads, kT, kHs);
  reg("bmm_av_" + dims({kHeads, kT, kT, kHs}) + "/dagpt", bmm_dagpt, Attn::av, kHeads, kT, kHs);
  reg("bmm_av_" + dims({kHeads, kT, kT, kHs}) + "/eigen", bmm_eigen, Attn::av, kHeads, kT, kHs);

  for (std::int64_t n : {k1M, k16M}) {
    const std::string size = std::to_string(n >> 20) + "M";
    reg("copy_" + size + "/memcpy", copy_memcpy, n);
    reg("copy_" + size + "/loop", copy_loop, n);
    for (Bin op : {Bin::add, Bin::mul}) {
      const std::string key = (op == Bin::add ? "add_" : "mul_") + size;
      reg(key + "/dagpt", binary_dagpt, op, n);
      reg(key + "/loop", binary_loop<false>, op, n);
      if (op == Bin::add) reg(key + "/loop_alloc", binary_loop<true>, op, n);
    }
  }
  reg("exp_16M/dagpt", exp_dagpt, k16M);
  reg("exp_16M/loop", exp_loop, k16M);
  reg("exp_16M/eigen", exp_eigen, k16M);
  reg("bias_add_8192x768/dagpt", bias_add_dagpt, kRows, 768);
  reg("bias_add_8192x768/loop", bias_add_loop, kRows, 768);

  reg("sum_all_16M/dagpt", sum_all_dagpt, k16M);
  reg("sum_all_16M/loop", sum_all_loop, k16M);
  reg("sum_last_8192x768/dagpt", sum_axis_dagpt, kRows, 768, 1);
  reg("sum_first_8192x768/dagpt", sum_axis_dagpt, kRows, 768, 0);
  reg("softmax_1024x32x32/dagpt", softmax_dagpt, kHeads, kT);
  return 0;
}();

}  // namespace
