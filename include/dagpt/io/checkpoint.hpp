// Checkpoints: a safetensors file of named float tensors plus string metadata, written atomically and
// verified on load.
//
// Layout: tensors as given (the trainer uses "model/<param>", "adam/m/<param>", "adam/v/<param>"), metadata
// "format" = "dagpt checkpoint v1", the caller's fields, and "checksum" = FNV-1a 64 over every tensor's name
// and bytes in name order. Writing goes to "<path>.tmp.<pid>" in the same directory, fsync, rename over
// <path>, fsync of the directory: <path> is always either the old complete file or the new complete one.
// A load re-validates every offset (io/safetensors.hpp) and the checksum; errors are CheckpointErrors that
// name the file and the field.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dagpt/io/safetensors.hpp"

namespace dagpt::io {

class CheckpointError : public ValueError {
 public:
  using ValueError::ValueError;
};

inline constexpr const char* kCheckpointFormat = "dagpt checkpoint v1";

struct Checkpoint {
  std::map<std::string, std::string> meta;
  std::map<std::string, Tensor<float>> tensors;

  // A metadata field; a CheckpointError naming the file and the field when it is missing.
  const std::string& field(const std::string& key, const std::string& file) const {
    auto it = meta.find(key);
    if (it == meta.end())
      dagpt::detail::raise<CheckpointError>("checkpoint {}: field '{}' is missing", file, key);
    return it->second;
  }
  const Tensor<float>& tensor(const std::string& key, const std::string& file) const {
    auto it = tensors.find(key);
    if (it == tensors.end())
      dagpt::detail::raise<CheckpointError>("checkpoint {}: tensor '{}' is missing", file, key);
    return it->second;
  }
};

namespace detail {

inline std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

inline std::string checksum_of(const std::map<std::string, Tensor<float>>& tensors) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const auto& [name, t] : tensors) {
    h = fnv1a(h, name.data(), name.size() + 0);
    const Tensor<float> c = t.contiguous();
    h = fnv1a(h, c.data(), static_cast<std::size_t>(c.numel()) * sizeof(float));
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

inline void write_all(int fd, const char* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      dagpt::detail::raise<IoError>("checkpoint: cannot write {}: {}", path, std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace detail

// Writes the checkpoint atomically. DAGPT_CHECKPOINT_STALL_MS (tests only) pauses halfway through the
// temporary file, so that a test can kill the writer mid-write.
inline void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  SafetensorsWriter w;
  for (const auto& [name, t] : ck.tensors) w.add(name, t);
  for (const auto& [k, v] : ck.meta) w.set_metadata(k, v);
  w.set_metadata("format", kCheckpointFormat);
  w.set_metadata("checksum", detail::checksum_of(ck.tensors));
  const std::string bytes = w.serialize();

  const std::filesystem::path target(path);
  const std::filesystem::path dir =
      target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) dagpt::detail::raise<IoError>("checkpoint: cannot create {}: {}", tmp, std::strerror(errno));
  try {
    const std::size_t half = bytes.size() / 2;
    detail::write_all(fd, bytes.data(), half, tmp);
    if (const char* stall = std::getenv("DAGPT_CHECKPOINT_STALL_MS")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atol(stall)));
    }
    detail::write_all(fd, bytes.data() + half, bytes.size() - half, tmp);
    if (::fsync(fd) != 0)
      dagpt::detail::raise<IoError>("checkpoint: fsync of {} failed: {}", tmp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    dagpt::detail::raise<IoError>("checkpoint: cannot rename {} to {}: {}", tmp, path, std::strerror(err));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

inline Checkpoint load_checkpoint(const std::string& path) {
  Safetensors f = [&] {
    try {
      return Safetensors::read(path);
    } catch (const IoError&) {
      throw;
    } catch (const Error& e) {
      dagpt::detail::raise<CheckpointError>("checkpoint {} is corrupt or truncated: {}", path, e.what());
    }
  }();
  Checkpoint ck;
  ck.meta = f.metadata();
  const std::string format = ck.field("format", path);
  if (format != kCheckpointFormat) {
    dagpt::detail::raise<CheckpointError>("checkpoint {}: field 'format' is '{}', expected '{}'", path,
                                          format, kCheckpointFormat);
  }
  for (const auto& e : f.entries()) {
    if (e.dtype != Dtype::F32) {
      dagpt::detail::raise<CheckpointError>("checkpoint {}: tensor '{}' is {}, expected F32", path, e.name,
                                            dtype_name(e.dtype));
    }
    ck.tensors.emplace(e.name, f.get<float>(e.name));
  }
  const std::string want = ck.field("checksum", path), have = detail::checksum_of(ck.tensors);
  if (want != have) {
    dagpt::detail::raise<CheckpointError>(
        "checkpoint {}: field 'checksum' is {}, but the tensors give {} (corrupt file)", path, want, have);
  }
  ck.meta.erase("checksum");
  ck.meta.erase("format");
  return ck;
}

}  // namespace dagpt::io
