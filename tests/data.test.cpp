// Tests of include/dagpt/data: make_batch (alignment of tokens and targets, padding, truncation, the mask,
// exact values) and DagStream (determinism whatever the prefetching, seek/position, disjoint train and
// validation streams, worker exceptions). GPT-2 cases use $DAGPT_GPT2_DIR or <repo>/.cache/gpt2 and are
// skipped with a warning when the files are absent.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/executor.hpp"
#include "dagpt/data/stream.hpp"
#include "dagpt/expr/expr.hpp"
#include "dagpt/text/char_tokenizer.hpp"
#include "dagpt/text/gpt2_bpe.hpp"

#ifndef DAGPT_SOURCE_DIR
#error "tests/CMakeLists.txt passes the repository root as DAGPT_SOURCE_DIR"
#endif

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using dagpt::data::Batch;
using dagpt::data::DagStream;
using dagpt::data::DagStreamOptions;
using dagpt::data::make_batch;
using dagpt::text::CharTokenizer;
using dagpt::text::Tokenizer;

const dagpt::text::Gpt2Bpe* gpt2() {
  static const std::unique_ptr<dagpt::text::Gpt2Bpe> bpe = []() -> std::unique_ptr<dagpt::text::Gpt2Bpe> {
    fs::path dir = fs::path(DAGPT_SOURCE_DIR) / ".cache" / "gpt2";
    if (const char* env = std::getenv("DAGPT_GPT2_DIR"); env != nullptr && *env != '\0') dir = env;
    if (!fs::exists(dir / "encoder.json") || !fs::exists(dir / "vocab.bpe")) return nullptr;
    return std::make_unique<dagpt::text::Gpt2Bpe>(dagpt::text::Gpt2Bpe::from_directory(dir));
  }();
  if (!bpe) WARN("GPT-2 BPE files not found (scripts/fetch-gpt2-bpe.sh): GPT-2 case skipped");
  return bpe.get();
}

template <typename T>
bool same_tensor(const dagpt::Tensor<T>& a, const dagpt::Tensor<T>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(T)) == 0;
}

// Bit-identical batches.
bool same_batch(const Batch& a, const Batch& b) {
  return same_tensor(a.tokens, b.tokens) && same_tensor(a.targets.V_mag, b.targets.V_mag) &&
         same_tensor(a.targets.V_sign, b.targets.V_sign) && same_tensor(a.targets.O, b.targets.O) &&
         same_tensor(a.targets.G, b.targets.G) && same_tensor(a.values, b.values) &&
         same_tensor(a.mask, b.mask) && a.valid_tokens == b.valid_tokens &&
         a.total_tokens == b.total_tokens && a.unfit == b.unfit && a.truncated == b.truncated &&
         a.lengths == b.lengths && a.texts == b.texts && a.first_index == b.first_index;
}

DagStreamOptions small(std::int64_t B, std::int64_t T) {
  DagStreamOptions o;
  o.batch_size = B;
  o.block_size = T;
  o.seed = 7;
  return o;
}

// The plan of one position (b, t) as a double plan of batch shape [] (for re-encoding comparisons).
dagpt::dag::DagPlan<float> plan_at(const Batch& batch, std::int64_t b, std::int64_t t) {
  const auto& p = batch.targets;
  return {p.V_mag.select(0, b).select(0, t).contiguous(), p.V_sign.select(0, b).select(0, t).contiguous(),
          p.O.select(0, b).select(0, t).contiguous(), p.G.select(0, b).select(0, t).contiguous()};
}

// Checks every position of every row: tokens are the text's ids (cut to T, then pad_id), and the target at
// (b, t) is exactly the plan of the decoded prefix tokens[b, 0..t] (or the zero plan with mask 0).
void check_alignment(const Batch& batch, const DagStreamOptions& o, const Tokenizer& tok) {
  const std::int64_t B = o.batch_size;
  const std::int64_t T = o.block_size;
  const auto layout = o.plan_layout();
  const auto zero = dagpt::dag::DagPlan<float>::zeros({}, layout);
  std::int64_t valid = 0;
  std::int64_t total = 0;
  std::int64_t truncated = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::string& text = batch.texts[static_cast<std::size_t>(b)];
    CHECK(text == dagpt::expr::generate(o.seed, o.stream, batch.first_index + static_cast<std::uint64_t>(b),
                                        o.generator())
                      .text);
    const auto ids = tok.encode(text);
    const auto len = std::min<std::int64_t>(static_cast<std::int64_t>(ids.size()), T);
    truncated += static_cast<std::int64_t>(ids.size()) > T ? 1 : 0;
    REQUIRE(batch.lengths[static_cast<std::size_t>(b)] == len);
    total += len;
    const std::int64_t* row = batch.tokens.data() + b * T;
    for (std::int64_t t = 0; t < T; ++t) {
      const auto target = plan_at(batch, b, t);
      const float m = batch.mask.at({b, t});
      if (t >= len) {  // padding
        CHECK(row[t] == tok.pad_id());
        CHECK(m == 0.0F);
        CHECK(batch.values.at({b, t}) == 0.0);
        CHECK(same_tensor(target.O, zero.O));
        CHECK(same_tensor(target.V_mag, zero.V_mag));
        continue;
      }
      CHECK(row[t] == ids[static_cast<std::size_t>(t)]);
      const std::string prefix = tok.decode(row, static_cast<std::size_t>(t + 1));
      CHECK(text.compare(0, prefix.size(), prefix) == 0);  // the decoded tokens are a prefix of the text
      const dagpt::expr::Prefix p = dagpt::expr::parse_prefix(prefix);
      std::optional<dagpt::dag::DagPlan<float>> expected;
      if (p.valid) {
        try {
          expected = dagpt::dag::encode<float>(dagpt::expr::normalize(p.expr), layout);
        } catch (const dagpt::dag::EncodeError&) {
        }
      }
      if (expected) {
        INFO("text " << text << ", prefix " << prefix);
        REQUIRE(m == 1.0F);
        CHECK(batch.values.at({b, t}) == p.value);
        CHECK(same_tensor(target.V_mag, expected->V_mag));
        CHECK(same_tensor(target.V_sign, expected->V_sign));
        CHECK(same_tensor(target.O, expected->O));
        CHECK(same_tensor(target.G, expected->G));
        ++valid;
      } else {
        CHECK(m == 0.0F);
        CHECK(batch.values.at({b, t}) == 0.0);
        CHECK(same_tensor(target.O, zero.O));
        CHECK(same_tensor(target.V_sign, zero.V_sign));
        CHECK(same_tensor(target.G, zero.G));
      }
    }
  }
  CHECK(batch.valid_tokens == valid);
  CHECK(batch.total_tokens == total);
  CHECK(batch.truncated == truncated);
}

// A tokenizer that refuses texts starting with '-' (so some examples fail, deterministically).
class PickyTokenizer final : public Tokenizer {
 public:
  std::vector<std::int64_t> encode(std::string_view text) const override {
    if (!text.empty() && text[0] == '-') {
      dagpt::detail::raise<dagpt::ValueError>("PickyTokenizer: refusing '{}'", text);
    }
    return inner_.encode(text);
  }
  std::int64_t vocab_size() const override { return inner_.vocab_size(); }
  std::int64_t pad_id() const override { return inner_.pad_id(); }
  std::string name() const override { return "picky"; }

 protected:
  std::string decode_ids(const std::int64_t* ids, std::size_t count) const override {
    return inner_.decode(ids, count);
  }

 private:
  CharTokenizer inner_;
};

}  // namespace

TEST_CASE("make_batch: tokens, per-token targets, values, mask and padding line up (char)", "[data]") {
  const CharTokenizer tok;
  DagStreamOptions o = small(16, 48);
  const Batch batch = make_batch(o, tok, 100);
  CHECK(batch.tokens.shape() == dagpt::Shape{16, 48});
  CHECK(batch.targets.O.shape() == dagpt::Shape{16, 48, 4, 8});
  CHECK(batch.targets.G.shape() == dagpt::Shape{16, 48, 4});
  CHECK(batch.values.shape() == dagpt::Shape{16, 48});
  CHECK(batch.mask.shape() == dagpt::Shape{16, 48});
  CHECK(batch.first_index == 100);
  CHECK(batch.valid_tokens > batch.total_tokens / 2);  // most prefixes are valid
  check_alignment(batch, o, tok);

  SECTION("HEAD layout (d + 1 initial slots) and reference semantics") {
    o.layout = dagpt::data::PlanLayout::head;
    o.depth = 3;
    const Batch head = make_batch(o, tok, 5);
    CHECK(head.targets.V_mag.shape() == dagpt::Shape{16, 48, 7});
    check_alignment(head, o, tok);
  }
}

TEST_CASE("make_batch: long texts are cut to block_size and still aligned", "[data]") {
  const CharTokenizer tok;
  const DagStreamOptions o = small(32, 8);
  const Batch batch = make_batch(o, tok, 0);
  CHECK(batch.truncated > 0);
  check_alignment(batch, o, tok);
  for (auto len : batch.lengths) CHECK(len <= 8);
}

TEST_CASE("make_batch: GPT-2 token boundaries", "[data][gpt2]") {
  const auto* tok = gpt2();
  if (tok == nullptr) return;
  const DagStreamOptions o = small(24, 32);
  const Batch batch = make_batch(o, *tok, 3);
  check_alignment(batch, o, *tok);
  CHECK(batch.tokens.at({0, 31}) == tok->pad_id());  // GPT-2 texts are < 32 tokens at 4/4 digits
}

TEST_CASE("make_batch: the last token's target executes to the value of the whole text", "[data]") {
  const CharTokenizer tok;
  const DagStreamOptions o = small(64, 64);
  const Batch batch = make_batch(o, tok, 1000);
  REQUIRE(batch.truncated == 0);
  int checked = 0;
  for (std::int64_t b = 0; b < o.batch_size; ++b) {
    const std::string& text = batch.texts[static_cast<std::size_t>(b)];
    const std::int64_t last = batch.lengths[static_cast<std::size_t>(b)] - 1;
    const dagpt::expr::Expr parsed = dagpt::expr::parse(text);
    const dagpt::expr::Value v = dagpt::expr::evaluate(parsed);
    INFO(text);
    CHECK((batch.mask.at({b, last}) == 1.0F) == v.valid);  // invalid only for a zero denominator
    if (!v.valid) continue;
    CHECK(batch.values.at({b, last}) == v.value);
    // The target is the float copy of the text's exact plan, and that plan executes to the exact value.
    const auto exact = dagpt::dag::encode<double>(dagpt::expr::normalize(parsed), o.plan_layout());
    const auto target = plan_at(batch, b, last);
    CHECK(same_tensor(target.V_mag, exact.V_mag.to<float>()));
    CHECK(same_tensor(target.O, exact.O.to<float>()));
    CHECK(same_tensor(target.G, exact.G.to<float>()));
    CHECK(same_tensor(target.V_sign, exact.V_sign.to<float>()));
    const double executed = dagpt::dag::execute_values(exact, dagpt::dag::Semantics::exact).item();
    CHECK(std::abs(executed - v.value) <= 1e-12 * std::abs(v.value));
    // Executing the float target itself: its magnitudes are rounded to float, so only close.
    const double from_float = dagpt::dag::execute_values(target.to<double>()).item();
    CHECK(std::isfinite(from_float));
    ++checked;
  }
  CHECK(checked > 55);
}

TEST_CASE("make_batch: its prefix parsing is expr::parse_prefix without the exceptions", "[data]") {
  // cannot_parse has no false positives, and parse_prefix_into agrees with parse_prefix, on every character
  // prefix of varied texts (and on odd strings).
  dagpt::expr::GeneratorOptions g;
  g.depth = 6;
  g.integer_probability = 0.5;
  int skipped = 0;
  int checked = 0;
  auto check = [&](const std::string& s) {
    if (dagpt::data::detail::cannot_parse(s)) {
      ++skipped;
      CHECK_THROWS_AS(dagpt::expr::parse(s), dagpt::expr::ParseError);
    }
    if (const auto r = dagpt::expr::repair(s); r && dagpt::data::detail::cannot_parse(*r)) {
      CHECK_THROWS_AS(dagpt::expr::parse(*r), dagpt::expr::ParseError);
    }
    const dagpt::expr::Prefix p = dagpt::expr::parse_prefix(s);
    dagpt::expr::Expr parsed;
    double value = -1;
    INFO(s);
    REQUIRE(dagpt::data::detail::parse_prefix_into(s, parsed, value) == p.valid);
    if (p.valid) {
      CHECK(value == p.value);
      CHECK(dagpt::expr::to_debug(parsed) == dagpt::expr::to_debug(p.expr));
    }
    ++checked;
  };
  for (std::uint64_t k = 0; k < 300; ++k) {
    const std::string text = dagpt::expr::generate(3, k % 2, k, g).text;
    for (std::size_t n = 1; n <= text.size(); ++n) check(text.substr(0, n));
  }
  for (const char* s : {"", " ", "()", "(", ")", "-", "5.", " (3.0 + 4.0", "2.0 * (3.0 + 4.0))", "(2.0 +",
                        "3.0/(2.0 - 2.0)", "1e", "1e5", "((1))", "*5.0", "5.0 +-", "81.9258/(-"}) {
    check(s);
  }
  CHECK(skipped > checked / 10);
}

TEST_CASE("DagStream: same seed, same batches, whatever the prefetching", "[data]") {
  const CharTokenizer tok;
  DagStreamOptions o = small(8, 24);
  o.prefetch = 3;
  o.threads = 2;
  DagStreamOptions sync = o;
  sync.prefetch = 0;
  DagStream a(o, tok);
  DagStream b(o, tok);
  DagStream c(sync, tok);
  for (int k = 0; k < 6; ++k) {
    const Batch ba = a.next();
    const Batch bb = b.next();
    const Batch bc = c.next();
    const Batch direct = make_batch(o, tok, static_cast<std::uint64_t>(k) * 8);
    CHECK(ba.first_index == static_cast<std::uint64_t>(k) * 8);
    CHECK(same_batch(ba, direct));
    CHECK(same_batch(bb, direct));
    CHECK(same_batch(bc, direct));
  }
  CHECK(a.position() == 48);
  CHECK(c.position() == 48);
  DagStreamOptions other = o;
  other.seed = 8;
  CHECK_FALSE(same_batch(make_batch(other, tok, 0), make_batch(o, tok, 0)));
}

TEST_CASE("DagStream: seek and position round trip equal a straight read", "[data]") {
  const CharTokenizer tok;
  DagStreamOptions o = small(4, 16);
  o.prefetch = 2;
  std::vector<Batch> straight;
  {
    DagStream s(o, tok);
    for (int k = 0; k < 5; ++k) straight.push_back(s.next());
  }
  std::uint64_t saved = 0;
  {
    DagStream s(o, tok);
    s.next();
    s.next();
    saved = s.position();
    CHECK(saved == 8);
  }
  DagStream resumed(o, tok);  // as after a restart from a checkpoint
  resumed.next();             // its own prefetched work is discarded by seek
  resumed.seek(saved);
  CHECK(resumed.position() == saved);
  for (int k = 2; k < 5; ++k) CHECK(same_batch(resumed.next(), straight[static_cast<std::size_t>(k)]));
  resumed.seek(1);  // any index, not only a multiple of B
  const Batch odd = resumed.next();
  CHECK(odd.first_index == 1);
  CHECK(same_batch(odd, make_batch(o, tok, 1)));
  CHECK(resumed.position() == 5);
}

TEST_CASE("DagStream: train and validation streams are disjoint", "[data]") {
  const CharTokenizer tok;
  DagStreamOptions o = small(250, 4);
  o.prefetch = 0;
  DagStreamOptions v = o;
  v.stream = dagpt::expr::kValStream;
  DagStream train(o, tok);
  DagStream val(v, tok);
  // Texts of one number can coincide by chance ("4.0" is 1 of 18 such texts); texts with an operation are
  // (in practice) unique, so a shared one would mean shared examples (the reference's val k = train k+10000).
  auto with_ops = [](const Batch& batch, const DagStreamOptions& opt) {
    std::vector<std::string> out;
    for (std::size_t b = 0; b < batch.texts.size(); ++b) {
      if (dagpt::expr::generate(opt.seed, opt.stream, batch.first_index + b, opt.generator()).num_ops > 0)
        out.push_back(batch.texts[b]);
    }
    return out;
  };
  std::set<std::string> train_texts;
  std::vector<std::string> val_texts;
  for (int k = 0; k < 4; ++k) {
    for (auto& t : with_ops(train.next(), o)) train_texts.insert(t);
    for (auto& t : with_ops(val.next(), v)) val_texts.push_back(t);
  }
  CHECK(train_texts.size() > 850);
  CHECK(val_texts.size() > 850);
  int shared = 0;
  for (const auto& t : val_texts) shared += train_texts.count(t) > 0 ? 1 : 0;
  CHECK(shared == 0);
}

TEST_CASE("DagStream: an exception of a worker surfaces in next() and the position stays", "[data]") {
  const PickyTokenizer tok;
  DagStreamOptions o = small(1, 16);
  o.prefetch = 3;
  o.threads = 2;
  // The first example whose text starts with '-'.
  std::uint64_t bad = 0;
  while (dagpt::expr::generate(o.seed, o.stream, bad, o.generator()).text[0] != '-') ++bad;
  REQUIRE(bad < 50);
  DagStream s(o, tok);
  for (std::uint64_t k = 0; k < bad; ++k) CHECK(s.next().first_index == k);
  CHECK_THROWS_WITH(s.next(), Contains("PickyTokenizer: refusing '-"));
  CHECK(s.position() == bad);
  CHECK_THROWS_AS(s.next(), dagpt::ValueError);  // the same batch again
  std::uint64_t good = bad + 1;
  while (dagpt::expr::generate(o.seed, o.stream, good, o.generator()).text[0] == '-') ++good;
  s.seek(good);
  CHECK(s.next().first_index == good);
  DagStreamOptions sync = o;
  sync.prefetch = 0;
  DagStream t(sync, tok);
  t.seek(bad);
  CHECK_THROWS_WITH(t.next(), Contains("refusing"));
  CHECK(t.position() == bad);
}

TEST_CASE("DagStream: bad options name the option", "[data]") {
  const CharTokenizer tok;
  DagStreamOptions o = small(0, 8);
  CHECK_THROWS_WITH(DagStream(o, tok), Contains("batch_size = 0") && Contains(">= 1"));
  o = small(2, 8);
  o.depth = 33;
  CHECK_THROWS_WITH(make_batch(o, tok, 0), Contains("depth = 33"));
  o = small(2, 8);
  o.max_digits = 0;
  CHECK_THROWS_WITH(make_batch(o, tok, 0), Contains("max_digits"));
  o = small(2, 8);
  o.stream = 5;
  CHECK_THROWS_WITH(make_batch(o, tok, 0), Contains("stream = 5"));
}
