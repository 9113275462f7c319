// libFuzzer target for the safetensors reader: any byte string goes to Safetensors::parse(), which must
// either accept it or throw a dagpt::Error (anything else escapes and is a crash). An accepted file must
// survive a round trip: every tensor reads back (get<T> for F32/F64/I64, raw bytes otherwise), and
// rewriting the tensors and metadata with SafetensorsWriter gives a file that parses to the same entries,
// bytes and metadata. A broken invariant prints what broke and traps, so libFuzzer saves the input.
#include "dagpt/io/safetensors.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace {

using dagpt::io::Dtype;
using dagpt::io::Safetensors;
using dagpt::io::SafetensorsWriter;

[[noreturn]] void broken(const char* what, const std::string& name) {
  std::fprintf(stderr, "safetensors.fuzz: %s (tensor '%s')\n", what, name.c_str());
  __builtin_trap();
}

template <typename T>
void check_get(const Safetensors& f, const dagpt::io::TensorEntry& e) {
  const auto t = f.get<T>(e.name);
  if (static_cast<std::uint64_t>(t.numel()) * sizeof(T) != e.end - e.begin) broken("get: wrong size", e.name);
  if (t.numel() > 0 && std::memcmp(t.data(), f.data(e), e.end - e.begin) != 0)
    broken("get: wrong bytes", e.name);
}

void check(const Safetensors& f) {
  SafetensorsWriter w;
  for (const auto& e : f.entries()) {
    if (e.end > f.data_size()) broken("entry outside the buffer", e.name);
    try {
      if (e.dtype == Dtype::F32) check_get<float>(f, e);
      if (e.dtype == Dtype::F64) check_get<double>(f, e);
      if (e.dtype == Dtype::I64) check_get<std::int64_t>(f, e);
    } catch (const dagpt::ShapeError&) {
      // more dimensions than a Tensor holds (kMaxDims): a clear error, not a crash
    }
    w.add_raw(e.name, e.dtype, e.shape, std::string(f.data(e), e.end - e.begin));
  }
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  const auto g = Safetensors::parse(w.serialize(), "<rewritten>");
  if (g.entries().size() != f.entries().size() || g.metadata() != f.metadata()) broken("rewrite differs", "");
  for (const auto& e : f.entries()) {
    const auto& h = g.entry(e.name);
    if (h.dtype != e.dtype || h.shape != e.shape || h.end - h.begin != e.end - e.begin ||
        std::memcmp(g.data(h), f.data(e), e.end - e.begin) != 0) {
      broken("rewritten tensor differs", e.name);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Safetensors f;
  try {
    f = Safetensors::parse(std::move(bytes), "<fuzz>");
  } catch (const dagpt::Error&) {
    return 0;  // rejected with a clear error: fine
  }
  try {
    check(f);
  } catch (const dagpt::Error& e) {
    std::fprintf(stderr, "safetensors.fuzz: an accepted file fails the round trip: %s\n", e.what());
    __builtin_trap();
  }
  return 0;
}
