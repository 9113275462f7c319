// The DAG executor (dagpt::dag::execute) and the encoder (dagpt::dag::encode) in float64.
//
//   dag/<pass>/<semantics>/<inputs>/d<depth>/<DAGs>
//     pass:      fwd      execute() on Vars that do not require grad (no graph recorded)
//                fwd+bwd  Vars with requires_grad, execute(), backward() with a ones gradient; the Vars
//                         (and so their gradients) are dropped inside the timed region, as a training
//                         step would drop them
//     semantics: exact | reference (REFERENCE.md §2)
//     inputs:    random (bench/dag_inputs.hpp: V_mag U(0.5,3), V_sign +-U(0.5,1), O +-U(0.05,0.9), G U(0,1))
//                encoded (real plans of generated expressions)
//     DAGs:      8192 (B=256, T=32) and 1048576 (B=32768, T=32)
//   items/s = DAGs/s. GB/s counts the bytes the pass must touch: fwd reads the inputs and writes the
//   output; fwd+bwd reads the inputs twice (forward, backward), writes the output, reads the output
//   gradient and writes one gradient per input element.
//
//   encode/<what>: 10,000 normalized depth-4 trees (generated, seed 42) -> plans, one core.
//     encode_into  into preallocated buffers
//     encode       returns a fresh DagPlan (four tensors) per expression
//     text_to_plan parse + normalize + encode_into: the whole text -> tensors conversion
//
// bench/compare/executor.sh runs the 8192-DAG fwd+bwd benchmarks beside the PyTorch twin.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "dag_inputs.hpp"
#include "dagpt/autograd/var.hpp"
#include "dagpt/dag/executor.hpp"

namespace {

using dagbench::Plan;
using dagpt::Tensor;
using dagpt::Var;
using dagpt::dag::Semantics;

constexpr std::int64_t kSmall = 256 * 32;
constexpr std::int64_t kLarge = std::int64_t{1} << 20;

// Small batches are kept; only one large batch lives at a time (1M DAGs at depth 8 are 1.4 GB).
const Plan& inputs(bool encoded, int d, std::int64_t count) {
  using Key = std::tuple<bool, int, std::int64_t>;
  static std::map<Key, Plan> small;
  static std::unique_ptr<Plan> large;
  static Key large_key{};
  const Key key{encoded, d, count};
  if (count <= kSmall) {
    auto it = small.find(key);
    if (it == small.end()) {
      it = small.emplace(key, encoded ? dagbench::encoded_plans(count, d) : dagbench::random_plans(count, d))
               .first;
    }
    return it->second;
  }
  if (!large || large_key != key) {
    large.reset();
    malloc_trim(0);
    large = std::make_unique<Plan>(encoded ? dagbench::encoded_plans(count, d)
                                           : dagbench::random_plans(count, d));
    large_key = key;
  }
  return *large;
}

void rates(benchmark::State& state, std::int64_t count, double bytes) {
  state.SetItemsProcessed(state.iterations() * count);
  state.counters["GB"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
}

void forward(benchmark::State& state, Semantics sem, bool encoded, int d, std::int64_t count) {
  const Plan& p = inputs(encoded, d, count);
  const Var<double> vm(p.V_mag), vs(p.V_sign), o(p.O), g(p.G);
  for (auto _ : state) {
    Var<double> y = dagpt::dag::execute(vm, vs, o, g, sem);
    benchmark::DoNotOptimize(y.value().data());
  }
  rates(state, count, count * (dagbench::input_bytes(d) + 8.0));
}

void forward_backward(benchmark::State& state, Semantics sem, bool encoded, int d, std::int64_t count) {
  const Plan& p = inputs(encoded, d, count);
  const Tensor<double> ones = Tensor<double>::ones(dagbench::batch_shape(count));
  for (auto _ : state) {
    Var<double> vm(p.V_mag, true), vs(p.V_sign, true), o(p.O, true), g(p.G, true);
    Var<double> y = dagpt::dag::execute(vm, vs, o, g, sem);
    y.backward(ones);
    benchmark::DoNotOptimize(vm.grad().data());
    benchmark::DoNotOptimize(o.grad().data());
  }
  rates(state, count, count * (3 * dagbench::input_bytes(d) + 16.0));
}

// ---- encode ------------------------------------------------------------------------------------
constexpr int kEncodeDepth = 4;
constexpr std::uint64_t kEncodeCount = 10000;

struct EncodeSet {
  std::vector<std::string> texts;
  std::vector<dagpt::expr::Expr> trees;  // normalized
};

// The first 10,000 generated depth-4 expressions that encode (practically all of them).
const EncodeSet& encode_set() {
  static const EncodeSet s = [] {
    namespace ex = dagpt::expr;
    EncodeSet r;
    const auto opt = dagbench::generator_options(kEncodeDepth);
    const auto layout = dagpt::dag::Layout::reference(kEncodeDepth);
    for (std::uint64_t i = 0; r.trees.size() < kEncodeCount; ++i) {
      auto text = ex::generate(42, ex::kTrainStream, i, opt).text;
      auto tree = ex::normalize(ex::parse(text));
      try {
        (void)dagpt::dag::encode(tree, layout);
      } catch (const dagpt::dag::EncodeError&) {
        continue;
      }
      r.texts.push_back(std::move(text));
      r.trees.push_back(std::move(tree));
    }
    return r;
  }();
  return s;
}

void encode_into(benchmark::State& state) {
  const auto& set = encode_set();
  const auto layout = dagpt::dag::Layout::reference(kEncodeDepth);
  const auto count = static_cast<std::int64_t>(set.trees.size());
  const Plan p = dagbench::empty_plan(count, kEncodeDepth);
  const std::int64_t n = layout.nodes();
  for (auto _ : state) {
    for (std::int64_t i = 0; i < count; ++i) {
      dagpt::dag::encode_into(set.trees[static_cast<std::size_t>(i)], layout, {}, p.V_mag.data() + i * n,
                              p.V_sign.data() + i * n, p.O.data() + i * kEncodeDepth * n,
                              p.G.data() + i * kEncodeDepth);
    }
    benchmark::DoNotOptimize(p.O.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * count);
}

void encode_alloc(benchmark::State& state) {
  const auto& set = encode_set();
  const auto layout = dagpt::dag::Layout::reference(kEncodeDepth);
  for (auto _ : state) {
    for (const auto& t : set.trees) {
      auto plan = dagpt::dag::encode(t, layout);
      benchmark::DoNotOptimize(plan.O.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(set.trees.size()));
}

void text_to_plan(benchmark::State& state) {
  namespace ex = dagpt::expr;
  const auto& set = encode_set();
  const auto layout = dagpt::dag::Layout::reference(kEncodeDepth);
  const auto count = static_cast<std::int64_t>(set.texts.size());
  const Plan p = dagbench::empty_plan(count, kEncodeDepth);
  const std::int64_t n = layout.nodes();
  for (auto _ : state) {
    for (std::int64_t i = 0; i < count; ++i) {
      dagpt::dag::encode_into(ex::normalize(ex::parse(set.texts[static_cast<std::size_t>(i)])), layout, {},
                              p.V_mag.data() + i * n, p.V_sign.data() + i * n,
                              p.O.data() + i * kEncodeDepth * n, p.G.data() + i * kEncodeDepth);
    }
    benchmark::DoNotOptimize(p.O.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * count);
}

const bool registered = [] {
  for (const bool bwd : {false, true}) {
    for (const bool encoded : {false, true}) {
      for (const std::int64_t count : {kSmall, kLarge}) {
        for (const int d : {4, 8}) {
          for (const Semantics sem : {Semantics::exact, Semantics::reference}) {
            const std::string name = std::string("dag/") + (bwd ? "fwd+bwd/" : "fwd/") +
                                     (sem == Semantics::exact ? "exact/" : "reference/") +
                                     (encoded ? "encoded/" : "random/") + "d" + std::to_string(d) + "/" +
                                     std::to_string(count);
            auto* b = benchmark::RegisterBenchmark(name.c_str(), bwd ? forward_backward : forward, sem,
                                                   encoded, d, count);
            b->Unit(benchmark::kMillisecond)->UseRealTime();
            if (count == kLarge) b->MinTime(1.0);
          }
        }
      }
    }
  }
  benchmark::RegisterBenchmark("encode/encode_into", encode_into)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("encode/encode", encode_alloc)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("encode/text_to_plan", text_to_plan)->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
