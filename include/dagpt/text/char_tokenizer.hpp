// CharTokenizer: one id per character of an arithmetic expression, built in (no files). Small and
// exact, for models that only ever read expressions; GPT-2's BPE (gpt2_bpe.hpp) is the reference's choice.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/text/tokenizer.hpp"

namespace dagpt::text {

// The id table (vocab_size() = 21):
//
//   id  | 0       | 1 … 10    | 11 | 12 | 13 | 14 | 15 | 16 | 17 | 18    | 19 | 20
//   char| padding | '0' … '9' | .  | +  | -  | *  | /  | (  | )  | space | e  | E
//
// Padding (id 0) is no character: encode never produces it and decode skips it, so a padded row decodes
// to its text. Any other byte is an error (ValueError naming the character and its byte offset).
class CharTokenizer final : public Tokenizer {
 public:
  static constexpr std::int64_t kPadId = 0;
  // The characters of ids 1, 2, …, in order.
  static constexpr std::string_view kAlphabet = "0123456789.+-*/() eE";

  std::vector<std::int64_t> encode(std::string_view text) const override {
    std::vector<std::int64_t> ids;
    ids.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto byte = static_cast<unsigned char>(text[i]);
      const std::int64_t id = table().id_of[byte];
      if (id == kPadId) {
        detail::raise<ValueError>(
            "CharTokenizer: cannot encode {} at byte {}; the alphabet is 0-9 . + - * / ( ) "
            "space e E",
            describe(byte), i);
      }
      ids.push_back(id);
    }
    return ids;
  }

  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(kAlphabet.size()) + 1; }
  std::int64_t pad_id() const override { return kPadId; }
  std::string name() const override { return "char"; }

 protected:
  std::string decode_ids(const std::int64_t* ids, std::size_t count) const override {
    std::string text;
    text.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::int64_t id = ids[i];
      if (id < 0 || id >= vocab_size()) {
        detail::raise<IndexError>(
            "CharTokenizer: cannot decode id {} at position {}; ids are 0 (padding) to {}", id, i,
            vocab_size() - 1);
      }
      if (id != kPadId) text.push_back(kAlphabet[static_cast<std::size_t>(id - 1)]);
    }
    return text;
  }

 private:
  struct Table {
    std::array<std::int64_t, 256> id_of{};  // byte -> id; kPadId marks a byte outside the alphabet
  };

  static constexpr Table make_table() {
    Table t;
    for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
      t.id_of[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int64_t>(i) + 1;
    }
    return t;
  }
  static const Table& table() {
    static constexpr Table t = make_table();
    return t;
  }

  // 'x' for a printable ASCII character, \xNN for any other byte.
  static std::string describe(unsigned char byte) {
    if (byte >= 0x20 && byte < 0x7f) return fmt::format("'{}'", static_cast<char>(byte));
    return fmt::format("\\x{:02X}", byte);
  }
};

}  // namespace dagpt::text
