// Tests of include/dagpt/text: CharTokenizer, and Gpt2Bpe against GPT-2's own ids (REFERENCE.md §3.5, and
// ids computed with openai/gpt-2's encoder.py). Tests tagged [gpt2] need encoder.json and vocab.bpe from
// $DAGPT_GPT2_DIR, else <repo>/.cache/gpt2 (scripts/fetch-gpt2-bpe.sh): without them they fail when $CI is
// set, and are skipped with a warning otherwise. The other BPE tests write small vocabularies of their own.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "dagpt/text/char_tokenizer.hpp"
#include "dagpt/text/gpt2_bpe.hpp"
#include "dagpt/text/tokenizer.hpp"

#ifndef DAGPT_SOURCE_DIR
#error "tests/CMakeLists.txt passes the repository root as DAGPT_SOURCE_DIR"
#endif

namespace {

namespace fs = std::filesystem;
using dagpt::text::CharTokenizer;
using dagpt::text::Gpt2Bpe;
using dagpt::text::Tokenizer;
using dagpt::text::TokenizerError;
using Ids = std::vector<std::int64_t>;

// ---------------------------------------------------------------------------------------------------------
// Helpers

fs::path gpt2_dir() {
  if (const char* env = std::getenv("DAGPT_GPT2_DIR"); env != nullptr && *env != '\0') return env;
  return fs::path(DAGPT_SOURCE_DIR) / ".cache" / "gpt2";
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0' && std::string_view(ci) != "0" && std::string_view(ci) != "false";
}

// GPT-2's tokenizer from the fetched files, loaded once. Null when the files are absent (after a WARN, or a
// FAIL under CI); a malformed file fails the test through the exception.
const Gpt2Bpe* gpt2() {
  static const std::optional<Gpt2Bpe> bpe = []() -> std::optional<Gpt2Bpe> {
    if (!fs::exists(gpt2_dir() / "encoder.json") || !fs::exists(gpt2_dir() / "vocab.bpe"))
      return std::nullopt;
    return Gpt2Bpe::from_directory(gpt2_dir());
  }();
  if (!bpe) {
    const std::string why =
        fmt::format("GPT-2 BPE files not found in {} (run scripts/fetch-gpt2-bpe.sh, or set DAGPT_GPT2_DIR)",
                    gpt2_dir().string());
    if (in_ci()) FAIL(why << "; CI is set, so this is a failure");
    WARN(why << "; test skipped");
  }
  return bpe ? &*bpe : nullptr;
}

// A fresh directory under the system temp directory, removed with everything in it at the end of the scope.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    for (;;) {
      path_ = fs::temp_directory_path() / fmt::format("dagpt-text-test-{:08x}", rd());
      if (fs::create_directory(path_)) break;
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

// GPT-2's bytes_to_unicode, written out again here so the tests do not trust the code under test: the UTF-8
// text of the character that stands for each byte in encoder.json and vocab.bpe.
std::string byte_char(unsigned char b) {
  unsigned cp = b;
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  if (!printable) {
    unsigned n = 0;
    for (unsigned c = 0; c < b; ++c) {
      if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) ++n;
    }
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6U)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3FU)));
  }
  return s;
}
std::string in_byte_alphabet(std::string_view bytes) {
  std::string s;
  for (const char c : bytes) s += byte_char(static_cast<unsigned char>(c));
  return s;
}

// A small GPT-2-style vocabulary in dir: the 256 byte tokens (id = byte), then `tokens` (raw bytes, ids 256,
// 257, ...), then <|endoftext|>; vocab.bpe holds `merges` (raw bytes, "left right" pairs) in rank order.
void write_vocab(const fs::path& dir, const std::vector<std::string>& tokens,
                 const std::vector<std::pair<std::string, std::string>>& merges) {
  nlohmann::json encoder = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) encoder[byte_char(static_cast<unsigned char>(b))] = b;
  int id = 256;
  for (const auto& t : tokens) encoder[in_byte_alphabet(t)] = id++;
  encoder["<|endoftext|>"] = id;
  write_file(dir / "encoder.json", encoder.dump());
  std::string bpe = "#version: 0.2\n";
  for (const auto& [left, right] : merges)
    bpe += in_byte_alphabet(left) + " " + in_byte_alphabet(right) + "\n";
  write_file(dir / "vocab.bpe", bpe);
}

// What a call throws, as text ("" if it does not throw a TokenizerError).
template <typename F>
std::string tokenizer_error(F&& f) {
  try {
    f();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "";
}

// openai/gpt-2 encoder.py's bpe(), written the slow, obvious way on raw byte strings: find the adjacent pair
// of lowest rank, merge all its occurrences left to right, repeat. The reference for Gpt2Bpe's heap version.
class NaiveBpe {
 public:
  explicit NaiveBpe(const fs::path& dir) {
    std::map<std::string, std::string> raw_of;  // byte-alphabet text -> raw bytes
    for (int b = 0; b < 256; ++b) {
      raw_of[byte_char(static_cast<unsigned char>(b))] = std::string(1, static_cast<char>(b));
    }
    const auto to_raw = [&](const std::string& s) {
      std::string raw;
      for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = static_cast<unsigned char>(s[i]) < 0x80 ? 1 : 2;
        raw += raw_of.at(s.substr(i, n));
        i += n;
      }
      return raw;
    };
    std::ifstream enc(dir / "encoder.json");
    const nlohmann::json encoder = nlohmann::json::parse(enc);
    for (const auto& item : encoder.items()) {
      ids_[to_raw(item.key())] = item.value().get<std::int64_t>();
    }
    std::ifstream merges(dir / "vocab.bpe");
    std::string line;
    std::getline(merges, line);  // #version
    int rank = 0;
    while (std::getline(merges, line)) {
      if (line.empty()) continue;
      const auto space = line.find(' ');
      ranks_[{to_raw(line.substr(0, space)), to_raw(line.substr(space + 1))}] = rank++;
    }
  }

  Ids encode_piece(std::string_view piece) const {
    std::vector<std::string> word;
    for (const char c : piece) word.emplace_back(1, c);
    for (;;) {
      int best = -1;
      std::pair<std::string, std::string> bigram;
      for (std::size_t i = 0; i + 1 < word.size(); ++i) {
        const auto it = ranks_.find({word[i], word[i + 1]});
        if (it != ranks_.end() && (best < 0 || it->second < best)) {
          best = it->second;
          bigram = it->first;
        }
      }
      if (best < 0) break;
      std::vector<std::string> merged;
      for (std::size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == bigram.first && word[i + 1] == bigram.second) {
          merged.push_back(word[i] + word[i + 1]);
          i += 2;
        } else {
          merged.push_back(word[i]);
          i += 1;
        }
      }
      word = std::move(merged);
    }
    Ids out;
    for (const auto& w : word) out.push_back(ids_.at(w));
    return out;
  }

 private:
  std::map<std::string, std::int64_t> ids_;
  std::map<std::pair<std::string, std::string>, int> ranks_;
};

// Random text that exercises the pre-tokenizer: letters, digits, spaces of several kinds, punctuation,
// apostrophes, multi-byte characters, combining marks, emoji and (when with_bad_bytes) invalid UTF-8.
std::string random_text(std::mt19937& rng, bool with_bad_bytes) {
  static const std::vector<std::string> atoms = {"a",
                                                 "b",
                                                 "Z",
                                                 "q",
                                                 "e",
                                                 "0",
                                                 "7",
                                                 "3",
                                                 " ",
                                                 " ",
                                                 " ",
                                                 "\n",
                                                 "\t",
                                                 "\r",
                                                 ".",
                                                 "+",
                                                 "-",
                                                 "*",
                                                 "(",
                                                 ")",
                                                 "'",
                                                 "s",
                                                 "t",
                                                 "ll",
                                                 "!",
                                                 "?",
                                                 "\xC3\xA9" /* é */,
                                                 "\xCC\x81" /* combining acute */,
                                                 "\xE6\x97\xA5" /* 日 */,
                                                 "\xF0\x9F\xA4\x96" /* 🤖 */,
                                                 "\xC2\xA0" /* no-break space */,
                                                 "\xE2\x80\x83" /* em space */,
                                                 "\xC2\xBD" /* ½ */,
                                                 "\x1C",
                                                 "\xC2\x85" /* NEL */};
  std::uniform_int_distribution<std::size_t> len(0, 40);
  std::uniform_int_distribution<std::size_t> pick(0, atoms.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> coin(0, 9);
  std::string s;
  for (std::size_t n = len(rng); n > 0; --n) {
    if (with_bad_bytes && coin(rng) == 0) {
      s.push_back(static_cast<char>(byte(rng)));
    } else {
      s += atoms[pick(rng)];
    }
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// CharTokenizer

TEST_CASE("CharTokenizer: id table, round trip", "[text][char]") {
  const CharTokenizer tok;
  CHECK(tok.vocab_size() == 21);
  CHECK(tok.pad_id() == 0);
  CHECK(tok.name() == "char");
  CHECK(tok.encode("0123456789.+-*/() eE") ==
        Ids{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
  CHECK(tok.encode("").empty());

  const std::string text = "-5.3 + 85.0*(3.34 - 5145.0)/1e-3 - 2E5";
  const Ids ids = tok.encode(text);
  REQUIRE(ids.size() == text.size());
  CHECK(tok.decode(ids) == text);
  CHECK(tok.decode(ids.data(), ids.size()) == text);
  const std::vector<int> narrow(ids.begin(), ids.end());
  CHECK(tok.decode(narrow.begin(), narrow.end()) == text);

  // Through the interface; padding decodes to nothing.
  const Tokenizer& base = tok;
  CHECK(base.decode(Ids{2, 12, 3, 0, 0, 0}) == "1+2");
  CHECK(base.decode(Ids{}).empty());
}

TEST_CASE("CharTokenizer: errors name the character or id and where it is", "[text][char]") {
  const CharTokenizer tok;
  CHECK_THROWS_AS(tok.encode("1 + x"), dagpt::ValueError);
  CHECK_THROWS_WITH(tok.encode("1 + x"), Catch::Contains("'x'") && Catch::Contains("byte 4"));
  CHECK_THROWS_WITH(tok.encode(std::string_view("12\0", 3)),
                    Catch::Contains("\\x00") && Catch::Contains("byte 2"));
  CHECK_THROWS_WITH(tok.encode("1\t2"), Catch::Contains("\\x09") && Catch::Contains("byte 1"));
  CHECK_THROWS_WITH(tok.encode("caf\xC3\xA9"), Catch::Contains("'c'") && Catch::Contains("byte 0"));
  CHECK_THROWS_WITH(tok.encode("1\xC3\xA9"), Catch::Contains("\\xC3") && Catch::Contains("byte 1"));

  CHECK_THROWS_AS(tok.decode(Ids{1, 21}), dagpt::IndexError);
  CHECK_THROWS_WITH(tok.decode(Ids{1, 2, 99}), Catch::Contains("id 99") && Catch::Contains("position 2"));
  CHECK_THROWS_WITH(tok.decode(Ids{-1}), Catch::Contains("id -1") && Catch::Contains("position 0"));
  // Every error is a dagpt::Error.
  CHECK_THROWS_AS(tok.encode("?"), dagpt::Error);
}

// ---------------------------------------------------------------------------------------------------------
// Gpt2Bpe on GPT-2's files

TEST_CASE("Gpt2Bpe: GPT-2's ids", "[text][gpt2]") {
  const Gpt2Bpe* bpe = gpt2();
  if (bpe == nullptr) return;
  CHECK(bpe->vocab_size() == 50257);
  CHECK(bpe->pad_id() == 50256);
  CHECK(bpe->eot_id() == 50256);
  CHECK(bpe->name() == "gpt2");

  CHECK(bpe->encode("Hello world") == Ids{15496, 995});
  // REFERENCE.md §3.5: seed 42's expression, 19 tokens.
  const std::string expr = "-5.3 + 85.0*(3.34 - 5145.0)";
  CHECK(bpe->encode(expr) ==
        Ids{12, 20, 13, 18, 1343, 7600, 13, 15, 9, 7, 18, 13, 2682, 532, 642, 18781, 13, 15, 8});
  CHECK(bpe->decode(bpe->encode(expr)) == expr);
  CHECK(bpe->encode("--88.77/(34.0/-8.4863)") ==
        Ids{438, 3459, 13, 3324, 29006, 2682, 13, 15, 16327, 23, 13, 2780, 5066, 8});
  CHECK(bpe->encode("1e-3*2E5") == Ids{16, 68, 12, 18, 9, 17, 36, 20});
  CHECK(bpe->encode("").empty());
}

TEST_CASE("Gpt2Bpe: contractions and whitespace runs split as GPT-2's pattern does", "[text][gpt2]") {
  using Pieces = std::vector<std::string_view>;
  // The pre-tokenizer needs no files.
  CHECK(Gpt2Bpe::pre_tokenize("I'll don't") == Pieces{"I", "'ll", " don", "'t"});
  CHECK(Gpt2Bpe::pre_tokenize("a  b\n\n c") == Pieces{"a", " ", " b", "\n\n", " c"});  // \s+(?!\S)
  CHECK(Gpt2Bpe::pre_tokenize("line\r\nbreak") == Pieces{"line", "\r", "\n", "break"});
  CHECK(Gpt2Bpe::pre_tokenize("trailing   ") == Pieces{"trailing", "   "});
  CHECK(Gpt2Bpe::pre_tokenize("'S 'll ?'s") == Pieces{"'", "S", " '", "ll", " ?'", "s"});
  CHECK(Gpt2Bpe::pre_tokenize("x\x1Cy") == Pieces{"x", "\x1C", "y"});  // U+001C is not \s for GPT-2
  CHECK(Gpt2Bpe::pre_tokenize("e\xCC\x81"
                              "cole") == Pieces{"e", "\xCC\x81", "cole"});     // a mark is not \p{L}
  CHECK(Gpt2Bpe::pre_tokenize("x\xFF\xFEy") == Pieces{"x", "\xFF\xFE", "y"});  // invalid bytes: "other"
  CHECK(Gpt2Bpe::pre_tokenize("").empty());

  const Gpt2Bpe* bpe = gpt2();
  if (bpe == nullptr) return;
  CHECK(bpe->encode("I'll don't") == Ids{40, 1183, 836, 470});
  CHECK(bpe->encode("a  b\n\n c") == Ids{64, 220, 275, 628, 269});
  CHECK(bpe->encode("   leading") == Ids{220, 220, 3756});
  CHECK(bpe->encode("trailing   ") == Ids{9535, 4386, 220, 220, 220});
  CHECK(bpe->encode("  x") == Ids{220, 2124});
  CHECK(bpe->encode("line\r\nbreak\t\ttab") == Ids{1370, 201, 198, 9032, 197, 197, 8658});
  CHECK(bpe->encode("x\xC2\xA0\xC2\xA0y") == Ids{87, 1849, 1849, 88});  // no-break spaces are \s
  CHECK(bpe->encode("x\x1Cy\x1F") == Ids{87, 216, 88, 219});
  CHECK(bpe->encode("\xC2\x85 a") == Ids{126, 227, 257});  // U+0085 is \s
  CHECK(bpe->encode("'S 'll ?'s") == Ids{6, 50, 705, 297, 5633, 6, 82});
  CHECK(bpe->encode("<|endoftext|>") ==
        Ids{27, 91, 437, 1659, 5239, 91, 29});  // plain text, not the special id
}

TEST_CASE("Gpt2Bpe: Unicode text and arbitrary bytes round-trip exactly", "[text][gpt2]") {
  const Gpt2Bpe* bpe = gpt2();
  if (bpe == nullptr) return;
  // Mixed scripts, combining marks, emoji (ids from encoder.py).
  CHECK(bpe->encode("e\xCC\x81"
                    "cole na\xC3\xAFve caf\xC3\xA9") == Ids{68, 136, 223, 1073, 293, 41492, 40304});
  CHECK(bpe->encode("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3"
                    "\x83\x88") ==
        Ids{33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302});  // 日本語のテキスト
  CHECK(bpe->encode("\xF0\x9F\xA4\x96\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD") ==
        Ids{8582, 97, 244, 41840, 235, 8582, 237, 121});  // 🤖👍🏽
  CHECK(bpe->encode("\xE2\x85\xAB \xC2\xBD \xC2\xB2") == Ids{158, 227, 104, 25208, 1587, 110});  // Ⅻ ½ ²

  for (const std::string text :
       {"\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80",  // Привет мир
        "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 "
        "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87",
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 family, a\xCC\x8A\xCC\x81 "
        "marks",
        "\xEF\xBB\xBF"
        "BOM and \xE2\x80\x83 em space\xE2\x80\xA8line sep"}) {
    CHECK(bpe->decode(bpe->encode(text)) == text);
  }

  // Random byte strings (mostly invalid UTF-8), every id in range, decode gives the bytes back.
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> len(0, 64);
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes;
    for (int n = len(rng); n > 0; --n) bytes.push_back(static_cast<char>(byte(rng)));
    const Ids ids = bpe->encode(bytes);
    for (const auto id : ids) REQUIRE((id >= 0 && id < bpe->vocab_size()));
    REQUIRE(bpe->decode(ids) == bytes);
  }
}

TEST_CASE("Gpt2Bpe: same ids as encoder.py's rescanning BPE on random text", "[text][gpt2]") {
  const Gpt2Bpe* bpe = gpt2();
  if (bpe == nullptr) return;
  const NaiveBpe naive(gpt2_dir());
  const auto expected_ids = [&](const std::string& text) {
    Ids ids;
    std::string joined;
    for (const auto piece : Gpt2Bpe::pre_tokenize(text)) {
      REQUIRE(!piece.empty());
      joined += piece;
      const Ids piece_ids = naive.encode_piece(piece);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    REQUIRE(joined == text);
    return ids;
  };
  std::mt19937 rng(99);
  for (int trial = 0; trial < 400; ++trial) {
    const std::string text = random_text(rng, trial % 2 == 1);
    INFO("text: " << nlohmann::json(text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace));
    const Ids expected = expected_ids(text);
    REQUIRE(bpe->encode(text) == expected);
    REQUIRE(bpe->decode(expected) == text);
  }
  // Long pieces, where a rescanning BPE is quadratic; and the cache serves the second call.
  for (const std::string& text :
       {std::string(3000, 'a'), std::string(2000, '7'), std::string(1000, ' ') + "x",
        "antidisestablishmentarianism " + std::string(500, '!')}) {
    CHECK(bpe->encode(text) == expected_ids(text));
    CHECK(bpe->encode(text) == expected_ids(text));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Gpt2Bpe on small vocabularies of our own (no downloaded files needed)

TEST_CASE("Gpt2Bpe: lowest rank first, all occurrences per round", "[text][bpe]") {
  const TempDir dir;
  // ids: bytes 0..255, then "bc" 256, "abc" 257, "aa" 258, "aaaa" 259, <|endoftext|> 260.
  write_vocab(dir.path(), {"bc", "abc", "aa", "aaaa"}, {{"b", "c"}, {"aa", "aa"}, {"a", "bc"}, {"a", "a"}});
  const Gpt2Bpe bpe = Gpt2Bpe::from_directory(dir.path());
  CHECK(bpe.vocab_size() == 261);
  CHECK(bpe.pad_id() == 260);
  CHECK(bpe.token_bytes(257) == "abc");
  CHECK(bpe.encode("abc") == Ids{257});  // b+c (rank 0) before a+bc (rank 2)
  CHECK(bpe.encode("abcbc") == Ids{257, 256});
  CHECK(bpe.encode("aaa") == Ids{258, 'a'});  // a+a left to right, no overlap
  CHECK(bpe.encode("aaaa") == Ids{259});      // both a+a in one round, then aa+aa
  CHECK(bpe.encode("aaaaa") == Ids{259, 'a'});
  CHECK(bpe.encode("ab c") == Ids{'a', 'b', ' ', 'c'});  // no merge across pieces
  CHECK(bpe.decode(Ids{259, 256, 260}) == "aaaabc<|endoftext|>");
  CHECK_THROWS_AS(bpe.decode(Ids{261}), dagpt::IndexError);
  CHECK_THROWS_WITH(bpe.decode(Ids{1, -5}), Catch::Contains("id -5") && Catch::Contains("position 1"));

  // A merge may create a pair of lower rank than the round's: it waits for the next round, as in encoder.py
  // (merging it at once would give "aaa" + "a" for "aaaa").
  const TempDir dir2;
  write_vocab(dir2.path(), {"aa", "aaa"}, {{"aa", "a"}, {"a", "a"}});
  const Gpt2Bpe rounds = Gpt2Bpe::from_directory(dir2.path());
  CHECK(rounds.encode("aaaa") == Ids{256, 256});
  CHECK(rounds.encode("aaa") == Ids{257});

  // Copies share the tables and the cache; both stay usable.
  const Gpt2Bpe copy = bpe;  // NOLINT(performance-unnecessary-copy-initialization)
  CHECK(copy.encode("abcaaaa") == Ids{257, 259});
  CHECK(bpe.encode("abcaaaa") == Ids{257, 259});
}

TEST_CASE("Gpt2Bpe: concurrent encode on one object gives the single-threaded ids", "[text][bpe]") {
  const TempDir dir;
  write_vocab(dir.path(), {"ab", "bc", "abc", "ca", "abca", "cc"},
              {{"a", "b"}, {"b", "c"}, {"ab", "c"}, {"c", "a"}, {"abc", "a"}, {"c", "c"}});
  const Gpt2Bpe shared = Gpt2Bpe::from_directory(dir.path());
  const Gpt2Bpe reference = Gpt2Bpe::from_directory(dir.path());  // a cache of its own
  // Enough distinct words (up to 3^12) that the shared cache fills and is emptied while threads use it.
  const auto words = [](unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> letter(0, 2);
    std::uniform_int_distribution<int> len(1, 12);
    std::string text;
    for (int w = 0; w < 5000; ++w) {
      for (int n = len(rng); n > 0; --n) text.push_back(static_cast<char>('a' + letter(rng)));
      text.push_back(' ');
    }
    return text;
  };
  constexpr int kThreads = 4;
  std::vector<std::string> texts;
  std::vector<Ids> expected;
  for (int t = 0; t < kThreads; ++t) {
    for (int r = 0; r < 4; ++r) {
      texts.push_back(words(static_cast<unsigned>(t * 10 + r)));
      expected.push_back(reference.encode(texts.back()));
    }
  }
  std::vector<int> ok(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int good = 0;
      for (int r = 0; r < 4; ++r) {
        const auto k = static_cast<std::size_t>(t * 4 + r);
        good += static_cast<int>(shared.encode(texts[k]) == expected[k]);
      }
      ok[static_cast<std::size_t>(t)] = good;
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>(kThreads, 4));
}

TEST_CASE("Gpt2Bpe: missing or malformed files are TokenizerErrors naming the file", "[text][bpe]") {
  const TempDir dir;
  const std::string missing = tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path() / "nowhere"); });
  CHECK_THAT(missing, Catch::Contains("encoder.json") && Catch::Contains("nowhere") &&
                          Catch::Contains("does not exist") && Catch::Contains("fetch-gpt2-bpe.sh"));

  write_vocab(dir.path(), {"ab"}, {{"a", "b"}});
  REQUIRE_NOTHROW(Gpt2Bpe::from_directory(dir.path()));

  // Truncated encoder.json.
  std::string json;
  {
    std::ifstream in(dir.path() / "encoder.json", std::ios::binary);
    json.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  write_file(dir.path() / "encoder.json", json.substr(0, 100));
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("not valid JSON at byte 101"));
  write_file(dir.path() / "encoder.json", "");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("not valid JSON at byte"));
  write_file(dir.path() / "encoder.json", "[1, 2]");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("JSON object"));
  write_file(dir.path() / "encoder.json", R"({"a": 0, "b": 0})");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("id 0 is given twice"));
  write_file(dir.path() / "encoder.json", R"({"a": 0, "b": 2})");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("\"b\" has id 2"));
  write_file(dir.path() / "encoder.json", R"({"a": 0, "b": "1"})");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("\"b\" has id \"1\""));
  write_file(dir.path() / "encoder.json", R"({"a": 0, "b": 1})");  // no token for most bytes
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("no token for the byte 0x00"));
  write_file(dir.path() / "encoder.json", R"({"a": 0, " ": 1})");  // U+0020 stands for no byte
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("encoder.json") && Catch::Contains("U+0020"));

  // Bad vocab.bpe lines.
  write_vocab(dir.path(), {"ab"}, {{"a", "b"}});
  write_file(dir.path() / "vocab.bpe", "#version: 0.2\na b\nab\n");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("vocab.bpe line 3") && Catch::Contains("two tokens"));
  write_file(dir.path() / "vocab.bpe", "#version: 0.2\na b\nb c\n");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("vocab.bpe line 3") && Catch::Contains("'bc' is not a token"));
  write_file(dir.path() / "vocab.bpe", "a b\n");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("vocab.bpe line 1") && Catch::Contains("#version"));
  write_file(dir.path() / "vocab.bpe", "");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("vocab.bpe") && Catch::Contains("empty"));
  fs::remove(dir.path() / "vocab.bpe");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("vocab.bpe") && Catch::Contains("does not exist"));
  fs::create_directory(dir.path() / "vocab.bpe");
  CHECK_THAT(tokenizer_error([&] { (void)Gpt2Bpe::from_directory(dir.path()); }),
             Catch::Contains("vocab.bpe") && Catch::Contains("is a directory"));
}
