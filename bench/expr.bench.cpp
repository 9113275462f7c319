// Throughput of the expression front-end on one core: parse + normalize (what the data pipeline does for
// every token prefix), and each stage alone, over 10,000 generated depth-4 texts (digits 4, decimals 4,
// seed 42, train stream). items/s = expressions/s. bench/compare/expr_compare.sh sets SymPy beside it.
//
// The texts come from expr::generate unless DAGPT_EXPR_BENCH_TEXTS names a file of texts, one a line
// (dagpt_expr_dump writes such a file), so that the comparison times both tools on the same bytes.
#include "dagpt/expr/expr.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace dagpt::expr;

constexpr std::uint64_t kCount = 10000;
constexpr std::uint64_t kSeed = 42;

GeneratorOptions bench_options() {
  GeneratorOptions o;
  o.depth = 4;
  o.max_digits = 4;
  o.max_decimal_places = 4;
  return o;
}

const std::vector<std::string>& texts() {
  static const std::vector<std::string> t = [] {
    std::vector<std::string> v;
    if (const char* path = std::getenv("DAGPT_EXPR_BENCH_TEXTS")) {
      std::ifstream in(path);
      if (!in) throw std::runtime_error(std::string("expr.bench: cannot read ") + path);
      for (std::string line; std::getline(in, line);) {
        if (!line.empty()) v.push_back(line);
      }
    } else {
      v.reserve(kCount);
      for (std::uint64_t i = 0; i < kCount; ++i)
        v.push_back(generate(kSeed, kTrainStream, i, bench_options()).text);
    }
    return v;
  }();
  return t;
}

const std::vector<Expr>& parsed() {
  static const std::vector<Expr> p = [] {
    std::vector<Expr> v;
    v.reserve(texts().size());
    for (const auto& s : texts()) v.push_back(parse(s));
    return v;
  }();
  return p;
}

// One iteration = the whole set; items = expressions.
void items(benchmark::State& state, std::size_t per_iteration) {
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(per_iteration));
}

void parse_normalize(benchmark::State& state, bool reference) {
  const auto& in = texts();
  const NormalizeOptions opt{reference};
  for (auto _ : state) {
    for (const auto& s : in) {
      Expr n = normalize(parse(s), opt);
      benchmark::DoNotOptimize(n);
    }
  }
  items(state, in.size());
}

void parse_only(benchmark::State& state) {
  const auto& in = texts();
  for (auto _ : state) {
    for (const auto& s : in) {
      Expr e = parse(s);
      benchmark::DoNotOptimize(e);
    }
  }
  items(state, in.size());
}

void normalize_only(benchmark::State& state) {
  const auto& in = parsed();
  for (auto _ : state) {
    for (const auto& e : in) {
      Expr n = normalize(e);
      benchmark::DoNotOptimize(n);
    }
  }
  items(state, in.size());
}

// The value the targets use: the exact value of the parsed (un-normalized) tree.
void evaluate_only(benchmark::State& state) {
  const auto& in = parsed();
  for (auto _ : state) {
    for (const auto& e : in) {
      Value v = evaluate(e);
      benchmark::DoNotOptimize(v);
    }
  }
  items(state, in.size());
}

void generate_only(benchmark::State& state) {
  const GeneratorOptions o = bench_options();
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kCount; ++i) {
      Generated g = generate(kSeed, kTrainStream, i, o);
      benchmark::DoNotOptimize(g);
    }
  }
  items(state, kCount);
}

void to_text_only(benchmark::State& state) {
  const auto& in = parsed();
  for (auto _ : state) {
    for (const auto& e : in) {
      std::string s = to_text(e);
      benchmark::DoNotOptimize(s);
    }
  }
  items(state, in.size());
}

const bool registered = [] {
  benchmark::RegisterBenchmark("expr/parse+normalize", parse_normalize, false)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("expr/parse+normalize_reference", parse_normalize, true)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("expr/parse", parse_only)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("expr/normalize", normalize_only)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("expr/evaluate", evaluate_only)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("expr/generate", generate_only)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("expr/to_text", to_text_only)->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
