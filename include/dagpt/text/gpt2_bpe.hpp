// Gpt2Bpe: GPT-2's byte-level BPE tokenizer (the reference's tokenizer), loaded from encoder.json and
// vocab.bpe. Needs the dagpt::text target (nlohmann_json + utf8proc); scripts/fetch-gpt2-bpe.sh fetches the
// files.
#pragma once

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/text/tokenizer.hpp"

namespace dagpt::text {

namespace bpe_detail {

// GPT-2's bytes_to_unicode(): every byte gets a printable code point, so that a token is a plain string in
// encoder.json. Printable Latin-1 bytes keep their own code point; the other 68 bytes get 256, 257, ... in
// byte order.
struct ByteAlphabet {
  static constexpr std::uint32_t kCodePoints = 256 + 68;
  std::array<std::uint32_t, 256> code_point_of{};  // byte -> code point
  std::array<int, kCodePoints> byte_of{};          // code point -> byte, -1 where none

  ByteAlphabet() {
    byte_of.fill(-1);
    std::uint32_t extra = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      code_point_of[b] = printable ? b : extra++;
      byte_of[code_point_of[b]] = static_cast<int>(b);
    }
  }
};

inline const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// The classes GPT-2's pre-tokenizer pattern tells apart: \p{L}, \p{N}, \s and everything else.
enum class CharClass : std::uint8_t { kLetter, kNumber, kSpace, kOther };

// \s as GPT-2 and tiktoken match it (Python's `regex` module, Rust's `regex`): the Unicode White_Space
// property, i.e. \t \n \v \f \r, U+0085 and the Zs/Zl/Zp separators. Not str.isspace(): U+001C..U+001F
// are not \s there, so they are "other" characters here too.
inline CharClass classify(std::int32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return CharClass::kSpace;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::kNumber;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return CharClass::kSpace;
    default:
      return CharClass::kOther;
  }
}

struct Char {
  CharClass cls;
  std::size_t size;  // bytes
};

// The character that starts at byte i of s (i < s.size()). A byte that does not start valid UTF-8 is a
// one-byte "other" character, so any byte string splits into pieces.
inline Char char_at(std::string_view s, std::size_t i) {
  static const std::array<CharClass, 128> ascii = [] {
    std::array<CharClass, 128> t{};
    for (std::int32_t c = 0; c < 128; ++c) t[static_cast<std::size_t>(c)] = classify(c);
    return t;
  }();
  const auto byte = static_cast<unsigned char>(s[i]);
  if (byte < 0x80) return {ascii[byte], 1};
  utf8proc_int32_t cp = 0;
  const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                              static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0) return {CharClass::kOther, 1};
  return {classify(cp), static_cast<std::size_t>(n)};
}

// The end of the run of characters of class cls that starts at byte i.
inline std::size_t run_end(std::string_view s, std::size_t i, CharClass cls) {
  while (i < s.size()) {
    const Char c = char_at(s, i);
    if (c.cls != cls) break;
    i += c.size;
  }
  return i;
}

// The end of the piece that starts at byte i (i < s.size()): the match of GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// at i, its alternatives tried in order as a backtracking regex engine does.
inline std::size_t piece_end(std::string_view s, std::size_t i) {
  if (s[i] == '\'') {
    const std::string_view rest = s.substr(i + 1);
    for (const std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      if (rest.substr(0, suffix.size()) == suffix) return i + 1 + suffix.size();
    }
  }
  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": one optional U+0020, then a run of one class.
  if (s[i] == ' ' && i + 1 < s.size()) {
    const Char next = char_at(s, i + 1);
    if (next.cls != CharClass::kSpace) return run_end(s, i + 1 + next.size, next.cls);
  }
  const Char c = char_at(s, i);
  if (c.cls != CharClass::kSpace) return run_end(s, i + c.size, c.cls);
  // "\s+(?!\S)": a whitespace run up to the end of the text, or all of it but its last character when a
  // non-space follows (that character then starts the next piece, e.g. " world"); "\s+" when the run is
  // a single character.
  std::size_t end = i + c.size;
  std::size_t last = i;  // where the run's last character starts
  while (end < s.size()) {
    const Char d = char_at(s, end);
    if (d.cls != CharClass::kSpace) break;
    last = end;
    end += d.size;
  }
  return (end == s.size() || last == i) ? end : last;
}

// The data of one loaded BPE, shared (read-only) between copies of a Gpt2Bpe.
struct Tables {
  struct Merge {
    std::int32_t rank;  // line order in vocab.bpe: a lower rank merges first
    std::int32_t id;    // the merged token
  };
  std::vector<std::string> token_bytes;             // id -> raw bytes
  std::array<std::int32_t, 256> byte_token{};       // byte -> id of its one-byte token
  std::unordered_map<std::uint64_t, Merge> merges;  // pair_key(left, right) -> merge
  std::int64_t eot_id = 0;                          // <|endoftext|>

  static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32U) |
           static_cast<std::uint32_t>(right);
  }
};

// GPT-2's bpe(token) on the bytes of one piece, appending the ids to out. Same result as encoder.py: while
// some adjacent pair has a merge, take the pair of lowest rank and merge all its occurrences left to right;
// done with a heap of (rank, position) instead of rescanning, so a long piece costs O(n log n), not O(n^2).
inline void bpe_piece(const Tables& tables, std::string_view piece, std::vector<std::int32_t>& out) {
  const std::size_t n = piece.size();
  std::vector<std::int32_t> id(n);  // symbols by the byte where they start; -1 once merged into the left one
  std::vector<std::size_t> next(n);
  std::vector<std::size_t> prev(n);
  for (std::size_t k = 0; k < n; ++k) {
    id[k] = tables.byte_token[static_cast<unsigned char>(piece[k])];
    next[k] = k + 1;               // n = none
    prev[k] = k == 0 ? n : k - 1;  // n = none
  }
  struct Candidate {
    std::int32_t rank;
    std::size_t pos;  // the left symbol
    std::int32_t left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Candidate> heap;
  const auto consider = [&](std::size_t pos) {  // the pair that starts at symbol pos, if it merges
    if (pos >= n || next[pos] >= n) return;
    const auto it = tables.merges.find(Tables::pair_key(id[pos], id[next[pos]]));
    if (it == tables.merges.end()) return;
    heap.push_back({it->second.rank, pos, id[pos], id[next[pos]], it->second.id});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (std::size_t k = 0; k + 1 < n; ++k) consider(k);

  std::vector<std::size_t> merged_at;
  while (!heap.empty()) {
    // One round = every occurrence of the lowest-rank pair, left to right (the heap yields them by position).
    const std::int32_t rank = heap.front().rank;
    merged_at.clear();
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      const Candidate c = heap.back();
      heap.pop_back();
      // Stale when an earlier merge of this round (or of an earlier one) changed either symbol.
      if (id[c.pos] != c.left || next[c.pos] >= n || id[next[c.pos]] != c.right) continue;
      const std::size_t gone = next[c.pos];
      id[c.pos] = c.merged;
      id[gone] = -1;
      next[c.pos] = next[gone];
      if (next[gone] < n) prev[next[gone]] = c.pos;
      merged_at.push_back(c.pos);
    }
    // New pairs enter only after the round, as in encoder.py, which rescans once per round.
    for (const std::size_t pos : merged_at) {
      if (id[pos] < 0) continue;
      if (prev[pos] < n) consider(prev[pos]);
      consider(pos);
    }
  }
  for (std::size_t k = 0; k < n; k = next[k]) out.push_back(id[k]);
}

// Reads a whole file; TokenizerError naming it when it is missing or unreadable.
inline std::string read_file(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    detail::raise<TokenizerError>(
        "Gpt2Bpe: '{}' does not exist (scripts/fetch-gpt2-bpe.sh in the dagpt repository fetches "
        "encoder.json "
        "and vocab.bpe)",
        path.string());
  }
  if (std::filesystem::is_directory(status)) {
    detail::raise<TokenizerError>("Gpt2Bpe: '{}' is a directory, not a file", path.string());
  }
  std::ifstream in(path, std::ios::binary);
  std::string text;
  if (in) text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (!in.is_open() || in.bad()) detail::raise<TokenizerError>("Gpt2Bpe: cannot read '{}'", path.string());
  return text;
}

// UTF-8 text of one code point (for messages).
inline std::string utf8_of(std::uint32_t cp) {
  std::array<utf8proc_uint8_t, 4> buf{};
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf.data());
  return {reinterpret_cast<const char*>(buf.data()), static_cast<std::size_t>(n)};
}

// The raw bytes of a token written in the byte alphabet (valid UTF-8, as nlohmann::json checked);
// TokenizerError for a character outside the alphabet.
inline std::string token_to_bytes(const std::string& token, const std::filesystem::path& file,
                                  std::int64_t id) {
  const ByteAlphabet& alphabet = byte_alphabet();
  std::string bytes;
  for (std::size_t i = 0; i < token.size();) {
    utf8proc_int32_t cp = -1;
    const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(token.data() + i),
                                                static_cast<utf8proc_ssize_t>(token.size() - i), &cp);
    if (n <= 0 || cp < 0 || static_cast<std::uint32_t>(cp) >= ByteAlphabet::kCodePoints ||
        alphabet.byte_of[static_cast<std::size_t>(cp)] < 0) {
      detail::raise<TokenizerError>(
          "Gpt2Bpe: {}: token {} (id {}) has the character U+{:04X}, which is not in GPT-2's byte alphabet",
          file.string(), nlohmann::json(token).dump(), id, n <= 0 ? 0 : cp);
    }
    bytes.push_back(static_cast<char>(alphabet.byte_of[static_cast<std::size_t>(cp)]));
    i += static_cast<std::size_t>(n);
  }
  return bytes;
}

// encoder.json: one JSON object {token: id}, the ids exactly 0 .. size-1. Fills token_bytes, byte_token and
// eot_id; returns token -> id for the merges.
inline std::unordered_map<std::string, std::int32_t> load_encoder(const std::filesystem::path& file,
                                                                  Tables& tables) {
  const std::string text = read_file(file);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    detail::raise<TokenizerError>("Gpt2Bpe: {}: not valid JSON at byte {} ({})", file.string(), e.byte,
                                  e.what());
  }
  if (!json.is_object() || json.empty()) {
    detail::raise<TokenizerError>("Gpt2Bpe: {}: expected a non-empty JSON object {{token: id, ...}}, got {}",
                                  file.string(), json.type_name());
  }
  if (json.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    detail::raise<TokenizerError>("Gpt2Bpe: {}: {} tokens is too many", file.string(), json.size());
  }
  const auto size = static_cast<std::int64_t>(json.size());
  std::unordered_map<std::string, std::int32_t> ids;
  ids.reserve(json.size());
  tables.token_bytes.assign(json.size(), std::string());
  std::vector<bool> seen(json.size(), false);
  for (const auto& item : json.items()) {
    const std::string& token = item.key();
    const nlohmann::json& value = item.value();
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 || value.get<std::int64_t>() >= size) {
      detail::raise<TokenizerError>("Gpt2Bpe: {}: token {} has id {}; ids must be integers from 0 to {}",
                                    file.string(), nlohmann::json(token).dump(), value.dump(), size - 1);
    }
    const auto id = value.get<std::int32_t>();
    if (seen[static_cast<std::size_t>(id)]) {
      detail::raise<TokenizerError>("Gpt2Bpe: {}: id {} is given twice (again for token {})", file.string(),
                                    id, nlohmann::json(token).dump());
    }
    if (token.empty()) {
      detail::raise<TokenizerError>("Gpt2Bpe: {}: id {} has an empty token", file.string(), id);
    }
    seen[static_cast<std::size_t>(id)] = true;
    tables.token_bytes[static_cast<std::size_t>(id)] = token_to_bytes(token, file, id);
    ids.emplace(token, id);
  }
  const ByteAlphabet& alphabet = byte_alphabet();
  for (std::size_t b = 0; b < 256; ++b) {
    const auto it = ids.find(utf8_of(alphabet.code_point_of[b]));
    if (it == ids.end()) {
      detail::raise<TokenizerError>("Gpt2Bpe: {}: no token for the byte 0x{:02X} (written \"{}\")",
                                    file.string(), b, utf8_of(alphabet.code_point_of[b]));
    }
    tables.byte_token[b] = it->second;
  }
  const auto eot = ids.find("<|endoftext|>");
  if (eot == ids.end()) {
    detail::raise<TokenizerError>("Gpt2Bpe: {}: no <|endoftext|> token (the padding id)", file.string());
  }
  tables.eot_id = eot->second;
  return ids;
}

// vocab.bpe: a "#version" line, then one merge per line, "left right" in the byte alphabet; a line's
// position is its rank. Every left, right and left+right must be a token of encoder.json.
inline void load_merges(const std::filesystem::path& file,
                        const std::unordered_map<std::string, std::int32_t>& ids, Tables& tables) {
  const std::string text = read_file(file);
  std::size_t line_no = 0;
  std::int32_t rank = 0;
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1) {
      if (line.substr(0, 8) != "#version") {
        detail::raise<TokenizerError>("Gpt2Bpe: {} line 1: expected the '#version' header, got '{}'",
                                      file.string(), line);
      }
      continue;
    }
    // Split on spaces and tabs, as Python's str.split() does for this alphabet (it has no other spaces).
    std::vector<std::string_view> parts;
    for (std::size_t i = 0; i < line.size();) {
      const std::size_t j = line.find_first_of(" \t", i);
      const std::size_t stop = j == std::string_view::npos ? line.size() : j;
      if (stop > i) parts.push_back(line.substr(i, stop - i));
      i = stop + 1;
    }
    if (parts.size() != 2) {
      detail::raise<TokenizerError>("Gpt2Bpe: {} line {}: expected two tokens separated by a space, got '{}'",
                                    file.string(), line_no, line);
    }
    std::array<std::int32_t, 3> merge{};  // left, right, merged
    const std::array<std::string, 3> tokens = {std::string(parts[0]), std::string(parts[1]),
                                               std::string(parts[0]) + std::string(parts[1])};
    for (std::size_t k = 0; k < 3; ++k) {
      const auto it = ids.find(tokens[k]);
      if (it == ids.end()) {
        detail::raise<TokenizerError>("Gpt2Bpe: {} line {}: '{}' is not a token of encoder.json",
                                      file.string(), line_no, tokens[k]);
      }
      merge[k] = it->second;
    }
    // A repeated pair keeps its last rank, as dict(zip(merges, range(len(merges)))) does in encoder.py.
    tables.merges[Tables::pair_key(merge[0], merge[1])] = {rank++, merge[2]};
  }
  if (line_no == 0) detail::raise<TokenizerError>("Gpt2Bpe: {} is empty", file.string());
}

}  // namespace bpe_detail

// GPT-2's tokenizer, id for id (openai/gpt-2 encoder.py, tiktoken "gpt2"): the text is split into pieces by
// GPT-2's pre-tokenizer pattern (matched by hand with utf8proc's Unicode categories), each piece's bytes are
// mapped to byte tokens and merged by vocab.bpe's ranks. Any byte string encodes, and decode gives the bytes
// back exactly: encode(text) then decode is the identity, also for invalid UTF-8 (each byte that does not
// start valid UTF-8 counts as a punctuation-like character when splitting).
//
// Thread safety: all methods are const and may run concurrently. encode keeps a cache of the ids of recent
// pieces (at most kCacheSize entries, emptied when full) behind a shared mutex; copies share the tables and
// the cache. A moved-from Gpt2Bpe may only be destroyed or assigned to.
class Gpt2Bpe final : public Tokenizer {
 public:
  static constexpr std::size_t kCacheSize = 1U << 16U;

  // Loads dir/encoder.json and dir/vocab.bpe. Throws TokenizerError naming the file when one is missing or
  // malformed (with "not valid JSON at byte N" for encoder.json and the line number for vocab.bpe).
  static Gpt2Bpe from_directory(const std::filesystem::path& dir) {
    return from_files(dir / "encoder.json", dir / "vocab.bpe");
  }
  static Gpt2Bpe from_files(const std::filesystem::path& encoder_json,
                            const std::filesystem::path& vocab_bpe) {
    auto tables = std::make_shared<bpe_detail::Tables>();
    const auto ids = bpe_detail::load_encoder(encoder_json, *tables);
    bpe_detail::load_merges(vocab_bpe, ids, *tables);
    return Gpt2Bpe(std::move(tables));
  }

  // Never throws for bad text: every byte string has an encoding. "<|endoftext|>" in the text is ordinary
  // text (as tiktoken's encode_ordinary), not the special token.
  std::vector<std::int64_t> encode(std::string_view text) const override {
    std::vector<std::int64_t> ids;
    ids.reserve(text.size() / 3 + 1);
    std::vector<std::int32_t> piece_ids;
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t end = bpe_detail::piece_end(text, i);
      const std::string_view piece = text.substr(i, end - i);
      i = end;
      if (piece.size() == 1) {
        ids.push_back(tables_->byte_token[static_cast<unsigned char>(piece[0])]);
        continue;
      }
      piece_ids.clear();
      if (!cache_lookup(piece, piece_ids)) {
        bpe_detail::bpe_piece(*tables_, piece, piece_ids);
        cache_store(piece, piece_ids);
      }
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    return ids;
  }

  // The pieces GPT-2's pre-tokenizer cuts text into (views into text; they concatenate to text). Each piece
  // is encoded on its own, so no token spans two pieces.
  static std::vector<std::string_view> pre_tokenize(std::string_view text) {
    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t end = bpe_detail::piece_end(text, i);
      pieces.push_back(text.substr(i, end - i));
      i = end;
    }
    return pieces;
  }

  // The raw bytes of one token; IndexError outside [0, vocab_size()).
  const std::string& token_bytes(std::int64_t id) const {
    check_id(id, 0);
    return tables_->token_bytes[static_cast<std::size_t>(id)];
  }

  // 50257 for GPT-2.
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(tables_->token_bytes.size()); }
  // <|endoftext|> (50256 for GPT-2): GPT-2 has no padding token, and the reference pads with this one.
  std::int64_t pad_id() const override { return tables_->eot_id; }
  std::int64_t eot_id() const { return tables_->eot_id; }
  std::string name() const override { return "gpt2"; }

 protected:
  // The raw bytes of the tokens, concatenated: a prefix of a text's ids may end inside a UTF-8 character
  // (the reference's decode would show U+FFFD there).
  std::string decode_ids(const std::int64_t* ids, std::size_t count) const override {
    std::string text;
    for (std::size_t i = 0; i < count; ++i) {
      check_id(ids[i], i);
      text += tables_->token_bytes[static_cast<std::size_t>(ids[i])];
    }
    return text;
  }

 private:
  struct Cache {
    std::shared_mutex mutex;
    std::unordered_map<std::string, std::vector<std::int32_t>> ids;  // piece bytes -> its ids
  };

  explicit Gpt2Bpe(std::shared_ptr<const bpe_detail::Tables> tables)
      : tables_(std::move(tables)), cache_(std::make_shared<Cache>()) {}

  void check_id(std::int64_t id, std::size_t position) const {
    if (id < 0 || id >= vocab_size()) {
      detail::raise<IndexError>("Gpt2Bpe: cannot decode id {} at position {}; ids are 0 to {}", id, position,
                                vocab_size() - 1);
    }
  }

  bool cache_lookup(std::string_view piece, std::vector<std::int32_t>& out) const {
    const std::shared_lock lock(cache_->mutex);
    const auto it = cache_->ids.find(std::string(piece));
    if (it == cache_->ids.end()) return false;
    out = it->second;
    return true;
  }
  void cache_store(std::string_view piece, const std::vector<std::int32_t>& ids) const {
    const std::unique_lock lock(cache_->mutex);
    if (cache_->ids.size() >= kCacheSize) cache_->ids.clear();
    cache_->ids.emplace(piece, ids);
  }

  std::shared_ptr<const bpe_detail::Tables> tables_;
  std::shared_ptr<Cache> cache_;
};

}  // namespace dagpt::text
