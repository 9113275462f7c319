// Inputs of the DAG executor benchmarks (dag.bench.cpp) and of the dump tool that feeds the PyTorch twin
// (dag_dump.cpp, bench/compare/executor_torch.py): batches of plans [B, T, ...] in float64.
//
//   random:  V_mag ~ U(0.5, 3), V_sign ~ +-U(0.5, 1), O ~ +-U(0.05, 0.9), G ~ U(0, 1), on every slot
//            (also the intermediate slots and the masked O entries, which the executor must ignore).
//            Never all zeros, so that neither semantics takes a shortcut.
//   encoded: real targets: expr::generate (depth d, digits 4, decimals 4, seed 42, train stream), parsed,
//            normalized and encoded (Layout::reference(d)); a pool of distinct plans tiled over the batch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/plan.hpp"
#include "dagpt/expr/expr.hpp"

namespace dagbench {

using Plan = dagpt::dag::DagPlan<double>;

// The batch shape of `count` DAGs: [B, T] with T = 32, or [count] when count is not a multiple of 32.
inline dagpt::Shape batch_shape(std::int64_t count) {
  if (count % 32 == 0) return {count / 32, 32};
  return {count};
}

// The bench tools' shared options (dag_dump.cpp, dag_count.cpp): `--depth D` or `--count C` at argv[i], which
// then moves i past the value; false when argv[i] is neither (or has no value).
inline bool size_option(int argc, char** argv, int& i, int& d, long long& count) {
  if (i + 1 >= argc) return false;
  const char* v = argv[i + 1];
  if (std::strcmp(argv[i], "--depth") == 0) {
    d = std::atoi(v);
  } else if (std::strcmp(argv[i], "--count") == 0) {
    count = std::atoll(v);
  } else {
    return false;
  }
  ++i;
  return true;
}
// A size those tools take: depth >= 1 and a count that is a positive multiple of 32 (batch [count/32, 32]).
inline bool valid_size(int d, long long count) { return d >= 1 && count >= 32 && count % 32 == 0; }

// Uninitialized plans, batch shape batch_shape(count), reference layout (N = 2d).
inline Plan empty_plan(std::int64_t count, int d) {
  auto with = [count](std::initializer_list<std::int64_t> tail) {
    dagpt::Shape s = batch_shape(count);
    for (auto v : tail) s.push_back(v);
    return s;
  };
  const std::int64_t n = 2 * d;
  return {dagpt::Tensor<double>::empty(with({n})), dagpt::Tensor<double>::empty(with({n})),
          dagpt::Tensor<double>::empty(with({d, n})), dagpt::Tensor<double>::empty(with({d}))};
}

inline Plan random_plans(std::int64_t count, int d, std::uint64_t seed = 1) {
  Plan p = empty_plan(count, d);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  auto uni = [&](double a, double b) { return a + (b - a) * u01(rng); };
  auto sgn = [&] { return (rng() >> 63U) != 0 ? -1.0 : 1.0; };
  double* vm = p.V_mag.data();
  double* vs = p.V_sign.data();
  double* o = p.O.data();
  double* g = p.G.data();
  for (std::int64_t i = 0, e = p.V_mag.numel(); i < e; ++i) vm[i] = uni(0.5, 3.0);
  for (std::int64_t i = 0, e = p.V_sign.numel(); i < e; ++i) vs[i] = sgn() * uni(0.5, 1.0);
  for (std::int64_t i = 0, e = p.O.numel(); i < e; ++i) o[i] = sgn() * uni(0.05, 0.9);
  for (std::int64_t i = 0, e = p.G.numel(); i < e; ++i) g[i] = u01(rng);
  return p;
}

inline dagpt::expr::GeneratorOptions generator_options(int d) {
  dagpt::expr::GeneratorOptions o;
  o.depth = d;
  o.max_digits = 4;
  o.max_decimal_places = 4;
  return o;
}

// `pool` distinct encoded plans (generated from index 0 on; the rare text that does not encode is
// skipped), repeated over `count` DAGs.
inline Plan encoded_plans(std::int64_t count, int d, std::int64_t pool = 65536) {
  namespace ex = dagpt::expr;
  pool = std::min(pool, count);
  Plan p = empty_plan(count, d);
  const std::int64_t n = 2 * d;
  const auto opt = generator_options(d);
  const auto layout = dagpt::dag::Layout::reference(d);
  double* vm = p.V_mag.data();
  double* vs = p.V_sign.data();
  double* o = p.O.data();
  double* g = p.G.data();
  std::int64_t made = 0;
  for (std::uint64_t idx = 0; made < pool; ++idx) {
    try {
      const auto gen = ex::generate(42, ex::kTrainStream, idx, opt);
      dagpt::dag::encode_into(ex::normalize(ex::parse(gen.text)), layout, {}, vm + made * n, vs + made * n,
                              o + made * d * n, g + made * d);
      ++made;
    } catch (const dagpt::Error&) {
    }
  }
  for (std::int64_t i = pool; i < count; ++i) {
    const std::int64_t k = i % pool;
    std::copy(vm + k * n, vm + (k + 1) * n, vm + i * n);
    std::copy(vs + k * n, vs + (k + 1) * n, vs + i * n);
    std::copy(o + k * d * n, o + (k + 1) * d * n, o + i * d * n);
    std::copy(g + k * d, g + (k + 1) * d, g + i * d);
  }
  return p;
}

// Bytes of one DAG's inputs (V_mag, V_sign, O, G) in float64.
inline double input_bytes(int d) { return 8.0 * (2 * (2 * d) + d * (2 * d) + d); }

}  // namespace dagbench
