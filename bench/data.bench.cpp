// Throughput of the training data stream (data/stream.hpp) for the reference's batch: B=256 T=32, depth 4,
// digits 4/4, GPT-2's tokenizer when its files are there ($DAGPT_GPT2_DIR, else <repo>/.cache/gpt2;
// scripts/fetch-gpt2-bpe.sh), else the char tokenizer (the label says which). Counters: batches/s, and
// conversions/s = token prefixes turned into targets (decode, parse or repair, normalize, encode).
//   BM_make_batch   one batch at a time on the calling thread (what one background thread produces)
//   BM_stream       DagStream::next() with prefetch 4 and 1 or 2 background threads, the consumer idle
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "dagpt/data/stream.hpp"
#include "dagpt/text/char_tokenizer.hpp"
#include "dagpt/text/gpt2_bpe.hpp"

#ifndef DAGPT_SOURCE_DIR
#error "bench/CMakeLists.txt passes the repository root as DAGPT_SOURCE_DIR"
#endif

namespace {

namespace fs = std::filesystem;

const dagpt::text::Tokenizer& tokenizer() {
  static const std::unique_ptr<dagpt::text::Tokenizer> tok = []() -> std::unique_ptr<dagpt::text::Tokenizer> {
    fs::path dir = fs::path(DAGPT_SOURCE_DIR) / ".cache" / "gpt2";
    if (const char* env = std::getenv("DAGPT_GPT2_DIR"); env != nullptr && *env != '\0') dir = env;
    if (fs::exists(dir / "encoder.json") && fs::exists(dir / "vocab.bpe")) {
      return std::make_unique<dagpt::text::Gpt2Bpe>(dagpt::text::Gpt2Bpe::from_directory(dir));
    }
    return std::make_unique<dagpt::text::CharTokenizer>();
  }();
  return *tok;
}

dagpt::data::DagStreamOptions options() {
  dagpt::data::DagStreamOptions o;
  o.batch_size = 256;
  o.block_size = 32;
  o.depth = 4;
  o.max_digits = 4;
  o.max_decimal_places = 4;
  o.seed = 42;
  return o;
}

void report(benchmark::State& state, std::int64_t batches, std::int64_t conversions, std::int64_t valid) {
  state.counters["batches/s"] = benchmark::Counter(static_cast<double>(batches), benchmark::Counter::kIsRate);
  state.counters["conversions/s"] =
      benchmark::Counter(static_cast<double>(conversions), benchmark::Counter::kIsRate);
  state.counters["valid/conv"] = benchmark::Counter(
      conversions > 0 ? static_cast<double>(valid) / static_cast<double>(conversions) : 0.0);
  state.SetLabel(tokenizer().name());
}

void BM_make_batch(benchmark::State& state) {
  const auto o = options();
  std::uint64_t first = 0;
  std::int64_t batches = 0;
  std::int64_t conversions = 0;
  std::int64_t valid = 0;
  for (auto _ : state) {
    const dagpt::data::Batch b = dagpt::data::make_batch(o, tokenizer(), first);
    first += static_cast<std::uint64_t>(o.batch_size);
    ++batches;
    conversions += b.total_tokens;
    valid += b.valid_tokens;
    benchmark::DoNotOptimize(b.targets.O.data());
  }
  report(state, batches, conversions, valid);
}
BENCHMARK(BM_make_batch)->Unit(benchmark::kMillisecond);

void BM_stream(benchmark::State& state) {
  auto o = options();
  o.prefetch = 4;
  o.threads = static_cast<int>(state.range(0));
  dagpt::data::DagStream stream(o, tokenizer());
  std::int64_t batches = 0;
  std::int64_t conversions = 0;
  std::int64_t valid = 0;
  for (auto _ : state) {
    const dagpt::data::Batch b = stream.next();
    ++batches;
    conversions += b.total_tokens;
    valid += b.valid_tokens;
    benchmark::DoNotOptimize(b.targets.O.data());
  }
  report(state, batches, conversions, valid);
}
BENCHMARK(BM_stream)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
