// Tokenizer: the interface between text and token ids that the model, the data stream and the examples
// share. Implementations: CharTokenizer (built in) and Gpt2Bpe (GPT-2's byte-level BPE, needs dagpt::text).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dagpt/core/error.hpp"

namespace dagpt::text {

// A tokenizer's data files are missing, unreadable or malformed (the message names the file and the
// problem). Text a tokenizer cannot encode is a ValueError; an id outside the vocabulary an IndexError.
class TokenizerError : public Error {
 public:
  using Error::Error;
};

// Text -> ids -> text. Every implementation is immutable after construction, so one object may be used
// from several threads at once (const methods only).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids of `text`, in [0, vocab_size()). Throws ValueError when the text holds something the
  // vocabulary cannot express (the message names it and its byte offset).
  virtual std::vector<std::int64_t> encode(std::string_view text) const = 0;

  // The text of `ids`. Throws IndexError for an id outside the vocabulary (the message gives the id and
  // its position). The overloads all do the same; derived classes implement decode_ids.
  std::string decode(const std::vector<std::int64_t>& ids) const {
    return decode_ids(ids.data(), ids.size());
  }
  std::string decode(const std::int64_t* ids, std::size_t count) const { return decode_ids(ids, count); }
  // Any input range of integers (ids are converted to std::int64_t).
  template <typename It>
  std::string decode(It first, It last) const {
    const std::vector<std::int64_t> ids(first, last);
    return decode_ids(ids.data(), ids.size());
  }

  // Number of ids: every id is in [0, vocab_size()).
  virtual std::int64_t vocab_size() const = 0;
  // The id that fills a sequence up to its length (it need not be a real token of the vocabulary).
  virtual std::int64_t pad_id() const = 0;
  // Short name for logs and checkpoints: "char", "gpt2".
  virtual std::string name() const = 0;

 protected:
  Tokenizer() = default;
  Tokenizer(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer& operator=(Tokenizer&&) = default;

  // ids[0 .. count) -> text; see decode.
  virtual std::string decode_ids(const std::int64_t* ids, std::size_t count) const = 0;
};

}  // namespace dagpt::text
