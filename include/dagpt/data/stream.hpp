// DagStream: deterministic streaming training batches (REFERENCE.md §4.3, §4.5): for every example a
// generated expression text, its token ids [B,T], and at every token the plan of the repaired prefix ending
// there, its exact value and a valid mask. A background thread builds batches ahead of the trainer.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/core/tensor.hpp"
#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/executor.hpp"
#include "dagpt/dag/plan.hpp"
#include "dagpt/expr/evaluate.hpp"
#include "dagpt/expr/generator.hpp"
#include "dagpt/expr/normalize.hpp"
#include "dagpt/expr/parser.hpp"
#include "dagpt/expr/prefix.hpp"
#include "dagpt/text/tokenizer.hpp"

namespace dagpt::data {

// How many initial (literal) slots a plan has: the reference's d, or HEAD's d + 1.
enum class PlanLayout { reference, head };

struct DagStreamOptions {
  std::int64_t batch_size = 32;  // B: examples per batch
  std::int64_t block_size = 32;  // T: tokens per example (longer texts are cut, shorter ones padded)
  int depth = 4;                 // plan depth d; the generator draws 0 .. d-1 operations
  PlanLayout layout = PlanLayout::reference;
  int max_digits = 4;
  int max_decimal_places = 4;
  bool uniform_num_ops = false;      // generator option (HEAD): op count uniform in [0, d-1]
  double integer_probability = 0.0;  // generator option (HEAD's 0.5): some numbers printed as integers
  bool reference = false;            // the reference's normalizer collapse and Neg(literal) encoding
  std::uint64_t seed = 42;
  std::uint64_t stream = expr::kTrainStream;  // expr::kTrainStream or expr::kValStream: disjoint examples
  int prefetch = 4;  // batches built ahead on background threads; 0 builds in next() on the caller's thread
  int threads = 1;   // background threads (each builds whole batches); used when prefetch > 0

  dag::Layout plan_layout() const {
    return layout == PlanLayout::head ? dag::Layout::head(depth) : dag::Layout::reference(depth);
  }
  expr::GeneratorOptions generator() const {
    expr::GeneratorOptions g;
    g.depth = depth;
    g.max_digits = max_digits;
    g.max_decimal_places = max_decimal_places;
    g.uniform_num_ops = uniform_num_ops;
    g.integer_probability = integer_probability;
    return g;
  }
};

// One batch. Position (b, t) holds the target of the text's first t+1 tokens: valid (mask 1) when that
// prefix, or its repair (REFERENCE §4.4), parses, evaluates and fits the depth; otherwise the zero plan,
// value 0 and mask 0. Padding positions (t >= lengths[b]) hold tokenizer.pad_id(), the zero plan, mask 0.
// (The reference right-pads with id 0, '!' in GPT-2; pad_id() is 0 for the char tokenizer and
// <|endoftext|> for GPT-2. Causal attention keeps padding from affecting real positions either way.)
struct Batch {
  Tensor<std::int64_t> tokens;    // [B,T] the ids of texts[b], cut to T, padded with the tokenizer's pad_id()
  dag::DagPlan<float> targets;    // [B,T,N], [B,T,N], [B,T,d,N], [B,T,d]
  Tensor<double> values;          // [B,T] the exact value of the prefix (0 where mask is 0)
  Tensor<float> mask;             // [B,T] 1 where the target is valid
  std::int64_t valid_tokens = 0;  // sum of mask
  std::int64_t total_tokens = 0;  // real (non-padding) tokens: sum of lengths
  std::int64_t unfit = 0;         // positions whose prefix is valid but needs more than the depth allows
  std::int64_t truncated = 0;     // rows whose text has more than T tokens
  std::vector<std::int64_t> lengths;  // [B] real tokens per row (<= T)
  std::vector<std::string> texts;     // [B] the full generated text of each row (what the model reads)
  std::uint64_t first_index = 0;      // row b is example first_index + b of the options' stream
};

namespace detail {

inline void check_stream_options(const DagStreamOptions& o) {
  auto bad = [](const char* key, auto value, const char* allowed) {
    dagpt::detail::raise<ValueError>("DagStream: {} = {} is out of range; allowed: {}", key, value, allowed);
  };
  if (o.batch_size < 1) bad("batch_size", o.batch_size, ">= 1");
  if (o.block_size < 1) bad("block_size", o.block_size, ">= 1");
  if (o.depth < 1 || o.depth > dag::kMaxDepth) bad("depth", o.depth, "1 .. 32");
  if (o.prefetch < 0) bad("prefetch", o.prefetch, ">= 0");
  if (o.threads < 1) bad("threads", o.threads, ">= 1");
  if (o.stream != expr::kTrainStream && o.stream != expr::kValStream) {
    bad("stream", o.stream, "0 (expr::kTrainStream) or 1 (expr::kValStream)");
  }
  expr::detail::check_generator_options(o.generator());  // max_digits, max_decimal_places, ...
}

// True when the parser must reject `s`: empty, ending with an operator or '(', ')' right after an
// operator or '(', or unbalanced parentheses.
// A shortcut only (no false positives): most invalid prefixes skip the parser's exception, which costs
// more than the parse itself.
inline bool cannot_parse(std::string_view s) {
  s = expr::detail::strip(s);
  if (s.empty()) return true;
  const char last = s.back();
  if (expr::detail::is_op_char(last) || last == '(') return true;
  long depth = 0;
  char before = '(';  // the last non-space character: an operator or '(' needs an operand after it
  for (char c : s) {
    if (c == '(') {
      ++depth;
    } else if (c == ')' && (--depth < 0 || expr::detail::is_op_char(before) || before == '(')) {
      return true;
    }
    if (!expr::detail::is_ws(c)) before = c;
  }
  return depth != 0;
}

// expr::parse_prefix's result (the stripped text, else its repair, parsed and evaluated to a finite
// value), into reused storage: true and the tree and value when valid.
inline bool parse_prefix_into(std::string_view text, expr::Expr& parsed, double& value) {
  auto attempt = [&](std::string_view s) {
    if (cannot_parse(s)) return false;
    try {
      expr::parse_into(s, parsed);
    } catch (const expr::ParseError&) {
      return false;
    }
    const expr::Value v = expr::evaluate(parsed);
    value = v.value;
    return v.valid;
  };
  if (attempt(expr::detail::strip(text))) return true;
  const std::optional<std::string> repaired = expr::repair(text);
  return repaired && attempt(*repaired);
}

// Fills row b of `out` with example `index`. `parsed` and `normalized` are scratch storage.
inline void build_row(const DagStreamOptions& o, const text::Tokenizer& tokenizer, std::uint64_t index,
                      std::int64_t b, Batch& out, expr::Expr& parsed, expr::Expr& normalized) {
  const std::int64_t T = o.block_size;
  const dag::Layout layout = o.plan_layout();
  const std::int64_t n = layout.nodes();
  const std::int64_t d = layout.depth;
  expr::Generated g = expr::generate(o.seed, o.stream, index, o.generator());
  const std::vector<std::int64_t> ids = tokenizer.encode(g.text);
  const std::int64_t len = std::min<std::int64_t>(static_cast<std::int64_t>(ids.size()), T);
  if (static_cast<std::int64_t>(ids.size()) > T) ++out.truncated;
  std::copy(ids.begin(), ids.begin() + len, out.tokens.data() + b * T);
  for (std::int64_t t = 0; t < len; ++t) {
    // The decoded token prefix, as the reference does (for ASCII text: the bytes up to the boundary).
    double value = 0;
    if (!parse_prefix_into(tokenizer.decode(ids.data(), static_cast<std::size_t>(t + 1)), parsed, value))
      continue;
    const std::int64_t at = b * T + t;
    float* vmag = out.targets.V_mag.data() + at * n;
    float* vsign = out.targets.V_sign.data() + at * n;
    float* o_row = out.targets.O.data() + at * d * n;
    float* gate = out.targets.G.data() + at * d;
    expr::normalize_into(parsed, normalized, {o.reference});
    try {
      dag::encode_into(normalized, layout, dag::EncodeOptions{o.reference}, vmag, vsign, o_row, gate);
    } catch (const dag::EncodeError&) {  // does not fit the depth: back to the zero plan, mask 0
      std::fill(vmag, vmag + n, 0.0F);
      std::fill(vsign, vsign + n, 1.0F);
      std::fill(o_row, o_row + d * n, 0.0F);
      std::fill(gate, gate + d, 1.0F);
      ++out.unfit;
      continue;
    }
    out.values.data()[at] = value;
    out.mask.data()[at] = 1.0F;
    ++out.valid_tokens;
  }
  out.lengths[static_cast<std::size_t>(b)] = len;
  out.total_tokens += len;
  out.texts[static_cast<std::size_t>(b)] = std::move(g.text);
}

}  // namespace detail

// The batch of examples first_index .. first_index + B - 1 of the options' stream, built on the calling
// thread. A pure function of (options, tokenizer, first_index). Throws ValueError for bad options; an
// exception of the tokenizer passes through.
inline Batch make_batch(const DagStreamOptions& o, const text::Tokenizer& tokenizer,
                        std::uint64_t first_index) {
  detail::check_stream_options(o);
  const std::int64_t B = o.batch_size;
  const std::int64_t T = o.block_size;
  Batch out;
  out.tokens = Tensor<std::int64_t>::full({B, T}, tokenizer.pad_id());
  out.targets = dag::DagPlan<float>::zeros({B, T}, o.plan_layout());
  out.values = Tensor<double>::zeros({B, T});
  out.mask = Tensor<float>::zeros({B, T});
  out.lengths.assign(static_cast<std::size_t>(B), 0);
  out.texts.resize(static_cast<std::size_t>(B));
  out.first_index = first_index;
  expr::Expr parsed;
  expr::Expr normalized;
  for (std::int64_t b = 0; b < B; ++b) {
    detail::build_row(o, tokenizer, first_index + static_cast<std::uint64_t>(b), b, out, parsed, normalized);
  }
  return out;
}

// Consecutive batches of one stream: next() returns examples position() .. position() + B - 1 and moves
// on by B. With prefetch > 0, `threads` background threads build up to `prefetch` batches ahead; the
// batches are the same as make_batch's whatever the timing. The tokenizer must outlive the stream.
// Not for use by several threads at once.
class DagStream {
 public:
  DagStream(DagStreamOptions options, const text::Tokenizer& tokenizer) : opt_(options), tok_(tokenizer) {
    detail::check_stream_options(opt_);
    if (opt_.prefetch > 0) {
      workers_.reserve(static_cast<std::size_t>(opt_.threads));
      for (int i = 0; i < opt_.threads; ++i) workers_.emplace_back([this] { work(); });
    }
  }
  DagStream(const DagStream&) = delete;
  DagStream& operator=(const DagStream&) = delete;
  ~DagStream() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // The next batch. Rethrows an exception raised while building it; the position then stays where it
  // was (the next call builds that batch again).
  Batch next() {
    if (workers_.empty()) {
      Batch b = make_batch(opt_, tok_, position());
      ++consumed_;
      return b;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_ready_.wait(lock, [this] { return ready_.count(consumed_) > 0; });
    auto node = ready_.extract(consumed_);
    if (node.mapped().error) {
      const std::exception_ptr error = node.mapped().error;
      restart(position_locked());
      lock.unlock();
      cv_work_.notify_all();
      std::rethrow_exception(error);
    }
    ++consumed_;
    lock.unlock();
    cv_work_.notify_all();
    return std::move(*node.mapped().batch);
  }

  // The stream index of the example the next batch starts with (save it in a checkpoint).
  std::uint64_t position() const {
    std::lock_guard<std::mutex> lock(mu_);
    return position_locked();
  }

  // Continues from example `index` (a saved position()); batches built ahead are discarded.
  void seek(std::uint64_t index) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      restart(index);
    }
    cv_work_.notify_all();
  }

  const DagStreamOptions& options() const { return opt_; }

 private:
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };

  std::uint64_t position_locked() const {
    return base_ + consumed_ * static_cast<std::uint64_t>(opt_.batch_size);
  }

  // Starts a new generation at `index`: work in flight for the old one is dropped when it lands.
  void restart(std::uint64_t index) {
    ++generation_;
    base_ = index;
    claimed_ = 0;
    consumed_ = 0;
    ready_.clear();
  }

  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_work_.wait(
          lock, [this] { return stop_ || claimed_ < consumed_ + static_cast<std::uint64_t>(opt_.prefetch); });
      if (stop_) return;
      const std::uint64_t generation = generation_;
      const std::uint64_t seq = claimed_++;
      const std::uint64_t first = base_ + seq * static_cast<std::uint64_t>(opt_.batch_size);
      lock.unlock();
      Slot slot;
      try {
        slot.batch = make_batch(opt_, tok_, first);
      } catch (...) {
        slot.error = std::current_exception();
      }
      lock.lock();
      if (generation != generation_) continue;  // seek() or an error restarted the stream meanwhile
      ready_.emplace(seq, std::move(slot));
      cv_ready_.notify_all();
    }
  }

  const DagStreamOptions opt_;
  const text::Tokenizer& tok_;
  mutable std::mutex mu_;
  std::condition_variable cv_work_;   // workers wait for room ahead of the consumer
  std::condition_variable cv_ready_;  // next() waits for its batch
  std::uint64_t generation_ = 0;
  std::uint64_t base_ = 0;      // the first example of batch 0 of this generation
  std::uint64_t claimed_ = 0;   // batches of this generation handed to workers
  std::uint64_t consumed_ = 0;  // batches of this generation returned by next()
  std::map<std::uint64_t, Slot> ready_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace dagpt::data
