// safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian header length L,
// L bytes of JSON naming every tensor's dtype, shape and byte range, then the raw little-endian data.
// Safetensors holds a parsed file whose every offset and size was validated; SafetensorsWriter builds one
// and writes it atomically. Needs nlohmann_json: link dagpt::io.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/core/tensor.hpp"

namespace dagpt::io {

// An operating-system failure (open, write, fsync, rename), with the path and strerror(errno).
class IoError : public Error {
 public:
  using Error::Error;
};

// The element types of the format that dagpt names; the data of any of them can be read raw (data()),
// F32, F64 and I64 also as Tensor<float|double|int64_t> (get<T>).
enum class Dtype { F32, F64, I64, I32, I16, I8, U8, U16, U32, U64, BOOL, F16, BF16 };

inline const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::F32:
      return "F32";
    case Dtype::F64:
      return "F64";
    case Dtype::I64:
      return "I64";
    case Dtype::I32:
      return "I32";
    case Dtype::I16:
      return "I16";
    case Dtype::I8:
      return "I8";
    case Dtype::U8:
      return "U8";
    case Dtype::U16:
      return "U16";
    case Dtype::U32:
      return "U32";
    case Dtype::U64:
      return "U64";
    case Dtype::BOOL:
      return "BOOL";
    case Dtype::F16:
      return "F16";
    case Dtype::BF16:
      return "BF16";
  }
  return "?";
}

// Bytes per element.
inline std::uint64_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::F64:
    case Dtype::I64:
    case Dtype::U64:
      return 8;
    case Dtype::F32:
    case Dtype::I32:
    case Dtype::U32:
      return 4;
    case Dtype::I16:
    case Dtype::U16:
    case Dtype::F16:
    case Dtype::BF16:
      return 2;
    case Dtype::I8:
    case Dtype::U8:
    case Dtype::BOOL:
      return 1;
  }
  return 0;
}

// The Dtype of a dagpt element type (float, double, int64_t).
template <typename T>
constexpr Dtype dtype_of() {
  static_assert(is_element_v<T>, "safetensors: Tensor<T> needs T = float, double or std::int64_t");
  if constexpr (std::is_same_v<T, float>) {
    return Dtype::F32;
  } else if constexpr (std::is_same_v<T, double>) {
    return Dtype::F64;
  } else {
    return Dtype::I64;
  }
}

// One tensor of a file: [begin, end) is its byte range in the data buffer (after the header).
struct TensorEntry {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// The largest header this reader accepts (the format's own reference implementation uses 100 MB too).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

namespace detail {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "safetensors: IEEE float and double expected");

inline bool little_endian_host() {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

inline void require_little_endian() {
  if (!little_endian_host()) {
    dagpt::detail::raise<ValueError>(
        "safetensors: a big-endian host is not supported (the format is little-endian)");
  }
}

inline bool parse_dtype(const std::string& s, Dtype& out) {
  static const std::pair<const char*, Dtype> table[] = {
      {"F32", Dtype::F32},  {"F64", Dtype::F64}, {"I64", Dtype::I64},   {"I32", Dtype::I32},
      {"I16", Dtype::I16},  {"I8", Dtype::I8},   {"U8", Dtype::U8},     {"U16", Dtype::U16},
      {"U32", Dtype::U32},  {"U64", Dtype::U64}, {"BOOL", Dtype::BOOL}, {"F16", Dtype::F16},
      {"BF16", Dtype::BF16}};
  for (const auto& [name, d] : table) {
    if (s == name) {
      out = d;
      return true;
    }
  }
  return false;
}

// A JSON value, shortened for an error message.
inline std::string show(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

inline std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

inline void write_u64_le(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

inline std::uint64_t read_u64_le(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace detail

// A safetensors file held in memory, validated in full when it was parsed: every later access is safe.
class Safetensors {
 public:
  // Reads and parses a file. Throws IoError when it cannot be read, ValueError (naming the file) when it is
  // not a valid safetensors file.
  static Safetensors read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) dagpt::detail::raise<IoError>("safetensors: cannot open {}: {}", path, std::strerror(errno));
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad())
      dagpt::detail::raise<IoError>("safetensors: cannot read {}: {}", path, std::strerror(errno));
    return parse(std::move(buf).str(), path);
  }

  // Parses the bytes of a file; `origin` names it in error messages. Every check of the format is made
  // here (see the header comment of this file); a violation is a ValueError naming origin, the tensor, the
  // field and the values.
  static Safetensors parse(std::string bytes, std::string origin = "<memory>") {
    detail::require_little_endian();
    Safetensors f;
    f.bytes_ = std::move(bytes);
    f.origin_ = std::move(origin);
    f.validate();
    return f;
  }

  // The tensors, in the order of their data in the file.
  const std::vector<TensorEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // The entry of `name`; IndexError naming the file and the tensor if there is none.
  const TensorEntry& entry(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) {
      dagpt::detail::raise<IndexError>("safetensors {}: no tensor named '{}' ({} tensors in the file)",
                                       origin_, name, entries_.size());
    }
    return entries_[it->second];
  }
  // A copy of tensor `name` as a contiguous Tensor<T> (T = float, double, int64_t). The stored dtype must be
  // T's (F32, F64, I64), else ValueError naming the file, the tensor and both dtypes.
  template <typename T>
  Tensor<T> get(const std::string& name) const {
    const TensorEntry& e = entry(name);
    constexpr Dtype want = dtype_of<T>();
    if (e.dtype != want) {
      dagpt::detail::raise<ValueError>(
          "safetensors {}: tensor '{}' is stored as {}, but {} ({}) was requested", origin_, name,
          dtype_name(e.dtype), dtype_name(want), dagpt::dtype_name<T>());
    }
    Tensor<T> t = Tensor<T>::empty(Shape(e.shape));
    if (e.end > e.begin) std::memcpy(t.data(), data(e), static_cast<std::size_t>(e.end - e.begin));
    return t;
  }
  // The raw little-endian bytes of an entry of this file (end - begin of them; not aligned).
  const char* data(const TensorEntry& e) const { return bytes_.data() + data_start_ + e.begin; }
  // The __metadata__ strings (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& origin() const { return origin_; }
  // The size of the data buffer in bytes.
  std::uint64_t data_size() const { return bytes_.size() - data_start_; }

 private:
  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    dagpt::detail::raise<ValueError>("safetensors {}: {}", origin_,
                                     fmt::format(f, std::forward<Args>(args)...));
  }

  void validate() {
    const std::uint64_t size = bytes_.size();
    if (size < 8) fail("the file has {} bytes, fewer than the 8 of the header length", size);
    const std::uint64_t hlen = detail::read_u64_le(bytes_.data());
    if (hlen > kMaxHeaderBytes) fail("header length {} exceeds the limit of {} bytes", hlen, kMaxHeaderBytes);
    if (hlen > size - 8) fail("header length {} exceeds the {} bytes that follow it", hlen, size - 8);
    data_start_ = 8 + hlen;
    const std::uint64_t buffer = size - data_start_;

    // Duplicate keys are invisible after parsing (the last one wins), so the parser callback records them.
    std::vector<std::set<std::string>> keys;
    std::string duplicate;
    const auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
      using E = nlohmann::json::parse_event_t;
      if (ev == E::object_start) {
        keys.emplace_back();
      } else if (ev == E::object_end) {
        if (!keys.empty()) keys.pop_back();
      } else if (ev == E::key && !keys.empty() && parsed.is_string()) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
      }
      return true;
    };
    const char* hbegin = bytes_.data() + 8;
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(hbegin, hbegin + hlen, callback);
    } catch (const nlohmann::json::exception& ex) {
      fail("the header is not valid UTF-8 JSON: {}", ex.what());
    }
    if (!duplicate.empty()) fail("the header repeats the key \"{}\"", duplicate);
    if (!header.is_object()) fail("the header is not a JSON object but {}", header.type_name());

    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        if (!value.is_object()) fail("__metadata__ is not an object but {}", detail::show(value));
        for (const auto& [k, v] : value.items()) {
          if (!v.is_string()) fail("__metadata__ value of \"{}\" is not a string but {}", k, detail::show(v));
          metadata_.emplace(k, v.get<std::string>());
        }
        continue;
      }
      entries_.push_back(parse_entry(name, value, buffer));
    }

    // The data must tile the buffer exactly: no overlaps, no holes, nothing after the last tensor.
    std::sort(entries_.begin(), entries_.end(), [](const TensorEntry& a, const TensorEntry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t at = 0;
    const TensorEntry* prev = nullptr;
    for (const auto& e : entries_) {
      if (e.begin < at) {
        fail("tensor '{}' data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", e.name, e.begin, e.end,
             prev->name, prev->begin, prev->end);
      }
      if (e.begin > at) {
        fail("tensor '{}' data_offsets [{}, {}] leave a hole of bytes [{}, {}) in the data buffer", e.name,
             e.begin, e.end, at, e.begin);
      }
      at = e.end;
      prev = &e;
    }
    if (at != buffer)
      fail("the tensors cover {} bytes of the {}-byte data buffer (bytes after the last)", at, buffer);
    for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
  }

  TensorEntry parse_entry(const std::string& name, const nlohmann::json& v, std::uint64_t buffer) const {
    if (!v.is_object()) fail("tensor '{}' is not an object but {}", name, detail::show(v));
    for (const auto& [k, x] : v.items()) {
      if (k != "dtype" && k != "shape" && k != "data_offsets") {
        fail("tensor '{}' has the unknown field \"{}\" (allowed: dtype, shape, data_offsets)", name, k);
      }
      (void)x;
    }
    for (const char* k : {"dtype", "shape", "data_offsets"}) {
      if (!v.contains(k)) fail("tensor '{}' has no field \"{}\"", name, k);
    }
    TensorEntry e;
    e.name = name;
    const auto& dt = v.at("dtype");
    if (!dt.is_string() || !detail::parse_dtype(dt.get<std::string>(), e.dtype)) {
      fail("tensor '{}' dtype {} is not one of F32 F64 I64 I32 I16 I8 U8 U16 U32 U64 BOOL F16 BF16", name,
           detail::show(dt));
    }
    const auto& sh = v.at("shape");
    if (!sh.is_array()) fail("tensor '{}' shape {} is not an array", name, detail::show(sh));
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<std::int64_t>() >= 0)) {
        fail("tensor '{}' shape {} holds {}, not a non-negative integer", name, detail::show(sh),
             detail::show(d));
      }
      const std::uint64_t x = d.get<std::uint64_t>();
      if (x > static_cast<std::uint64_t>(INT64_MAX)) overflow = true;
      e.shape.push_back(static_cast<std::int64_t>(x));
      if (x != 0 && numel > UINT64_MAX / x) overflow = true;
      numel *= x;
    }
    const std::uint64_t esize = dtype_size(e.dtype);
    if (overflow || numel > static_cast<std::uint64_t>(INT64_MAX) / esize) {
      fail("tensor '{}' shape {} has too many elements (numel * {} bytes overflows)", name, detail::show(sh),
           esize);
    }
    const auto& off = v.at("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      fail("tensor '{}' data_offsets {} is not two non-negative integers [begin, end]", name,
           detail::show(off));
    }
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (e.begin > e.end || e.end > buffer) {
      fail("tensor '{}' data_offsets [{}, {}] are not within 0 <= begin <= end <= {} (the data buffer size)",
           name, e.begin, e.end, buffer);
    }
    if (e.end - e.begin != numel * esize) {
      fail("tensor '{}' data_offsets [{}, {}] span {} bytes, but shape {} of {} needs {} * {} = {}", name,
           e.begin, e.end, e.end - e.begin, detail::show(sh), dtype_name(e.dtype), numel, esize,
           numel * esize);
    }
    return e;
  }

  std::string bytes_;
  std::string origin_;
  std::uint64_t data_start_ = 8;
  std::vector<TensorEntry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Builds a safetensors file: tensors (any layout; stored contiguous, in the order added) and metadata.
class SafetensorsWriter {
 public:
  // Adds a copy of t. Throws ValueError for a duplicate name or the reserved name "__metadata__".
  template <typename T>
  void add(const std::string& name, const Tensor<T>& t) {
    if (!t.device().is_cpu()) {
      dagpt::detail::raise<DeviceError>("safetensors: tensor '{}' is on {}, not the CPU", name,
                                        t.device().str());
    }
    const Tensor<T> c = t.contiguous();
    std::string raw(static_cast<std::size_t>(c.numel()) * sizeof(T), '\0');
    if (!raw.empty()) std::memcpy(raw.data(), c.data(), raw.size());
    add_raw(name, dtype_of<T>(), std::vector<std::int64_t>(t.shape().begin(), t.shape().end()),
            std::move(raw));
  }
  // Adds a tensor given as raw little-endian bytes (any dtype of the format); their count must be
  // numel(shape) * dtype_size(dtype).
  void add_raw(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, std::string raw) {
    if (name == "__metadata__")
      dagpt::detail::raise<ValueError>("safetensors: \"__metadata__\" is not a tensor name");
    for (const auto& p : pending_) {
      if (p.entry.name == name)
        dagpt::detail::raise<ValueError>("safetensors: tensor '{}' was already added", name);
    }
    Pending p;
    p.entry.name = name;
    p.entry.dtype = dtype;
    p.entry.shape = std::move(shape);
    for (auto d : p.entry.shape) {
      if (d < 0) {
        dagpt::detail::raise<ValueError>("safetensors: tensor '{}' shape {} has a negative extent", name,
                                         detail::shape_str(p.entry.shape));
      }
    }
    const auto need = static_cast<std::uint64_t>(p.entry.numel()) * dtype_size(dtype);
    if (raw.size() != need) {
      dagpt::detail::raise<ValueError>(
          "safetensors: tensor '{}' of shape {} and dtype {} needs {} bytes, got {}", name,
          detail::shape_str(p.entry.shape), dtype_name(dtype), need, raw.size());
    }
    p.raw = std::move(raw);
    pending_.push_back(std::move(p));
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // The bytes of the file: the header JSON (keys sorted, compact), padded with spaces to a multiple of 8,
  // then the data of the tensors in the order they were added.
  std::string serialize() const {
    detail::require_little_endian();
    nlohmann::json header = nlohmann::json::object();
    std::uint64_t at = 0;
    for (const auto& p : pending_) {
      nlohmann::json shape = nlohmann::json::array();
      for (auto d : p.entry.shape) shape.push_back(d);
      header[p.entry.name] = {
          {"dtype", dtype_name(p.entry.dtype)}, {"shape", shape}, {"data_offsets", {at, at + p.raw.size()}}};
      at += p.raw.size();
    }
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& ex) {
      dagpt::detail::raise<ValueError>("safetensors: a tensor name or metadata string is not valid UTF-8: {}",
                                       ex.what());
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out;
    out.reserve(8 + text.size() + at);
    detail::write_u64_le(out, text.size());
    out += text;
    for (const auto& p : pending_) out += p.raw;
    return out;
  }

  // Writes the file atomically: <path>.tmp.<pid> in the same directory, fsync, rename over path, fsync
  // the directory. On any failure the temporary file is removed, whatever was at path is left untouched,
  // and IoError names the path, the step and the OS error.
  void write(const std::string& path) const {
    const std::string bytes = serialize();
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) dagpt::detail::raise<IoError>("safetensors: cannot create {}: {}", tmp, std::strerror(errno));
    auto give_up = [&](const char* step) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      dagpt::detail::raise<IoError>("safetensors: writing {} failed at {} of {}: {}", path, step, tmp,
                                    std::strerror(err));
    };
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) give_up("write");
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) give_up("fsync");
    if (::close(fd) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      dagpt::detail::raise<IoError>("safetensors: writing {} failed at close of {}: {}", path, tmp,
                                    std::strerror(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      dagpt::detail::raise<IoError>("safetensors: cannot rename {} to {}: {}", tmp, path, std::strerror(err));
    }
    // The rename is durable only once the directory entry is: fsync the directory (best effort on file
    // systems that refuse it).
    const auto slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  struct Pending {
    TensorEntry entry;
    std::string raw;
  };
  std::vector<Pending> pending_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace dagpt::io
