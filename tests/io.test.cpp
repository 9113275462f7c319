// Tests of include/dagpt/io/safetensors.hpp: round trips (any layout, empty tensors, metadata), the exact
// bytes of a small file written by hand, every validation error with its message, and the atomic write.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "dagpt/io/safetensors.hpp"

namespace {

using Catch::Contains;
using dagpt::Tensor;
using dagpt::io::Dtype;
using dagpt::io::Safetensors;
using dagpt::io::SafetensorsWriter;

std::string u64le(std::uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}

// A file from a header text (padded with spaces to a multiple of 8 here) and a data buffer.
std::string file_of(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return u64le(header.size()) + header + data;
}

std::string zeros(std::size_t n) { return std::string(n, '\0'); }

// Parses, expecting a dagpt::ValueError whose message holds every one of `parts`, and the origin.
void expect_invalid(const std::string& bytes, const std::vector<std::string>& parts) {
  INFO("file bytes: " << bytes.substr(0, 200));
  try {
    (void)Safetensors::parse(bytes, "bad.safetensors");
    FAIL("parse accepted an invalid file");
  } catch (const dagpt::ValueError& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    CHECK_THAT(what, Contains("bad.safetensors"));
    for (const auto& p : parts) CHECK_THAT(what, Contains(p));
  }
}

template <typename T>
void check_same(const Tensor<T>& got, const Tensor<T>& want) {
  REQUIRE(got.shape() == want.shape());
  CHECK(got.is_contiguous());
  CHECK(got.to_vector() == want.to_vector());
}

std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("dagpt_io_test_" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("safetensors: float, double and int64 tensors of any layout round-trip", "[io]") {
  auto f = Tensor<float>::from({1.5F, -2.0F, 3.25F, 1e-30F, -0.0F, 7.0F}, {2, 3});
  auto d = Tensor<double>::from({0.1, -1e300, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}, {2, 2, 2});
  auto i = Tensor<std::int64_t>::from({INT64_MIN, -1, 0, INT64_MAX}, {4});
  const auto ft = f.t();                        // transposed view [3,2]
  const auto ds = d.slice(2, 1, 2).squeeze(2);  // strided view [2,2]
  const auto is = i.slice(0, 0, 4, 3);          // step 3: {INT64_MIN, INT64_MAX}
  REQUIRE_FALSE(ft.is_contiguous());
  REQUIRE_FALSE(ds.is_contiguous());

  SafetensorsWriter w;
  w.add("f", f);
  w.add("f.t", ft);
  w.add("d.slice", ds);
  w.add("i", i);
  w.add("i.step", is);
  w.add("empty", Tensor<float>::zeros({0}));
  w.add("empty2", Tensor<double>::zeros({2, 0, 3}));
  w.add("scalar", Tensor<std::int64_t>::scalar(42));
  w.set_metadata("config", "{\"n_layer\": 2}");
  w.set_metadata("note", "caf\xC3\xA9 \"quoted\"\n");
  const std::string bytes = w.serialize();

  const auto r = Safetensors::parse(bytes);
  CHECK(r.entries().size() == 8);
  check_same(r.get<float>("f"), f);
  check_same(r.get<float>("f.t"), ft.contiguous());
  check_same(r.get<double>("d.slice"), ds.contiguous());
  check_same(r.get<std::int64_t>("i"), i);
  check_same(r.get<std::int64_t>("i.step"), is.contiguous());
  CHECK(r.get<std::int64_t>("i.step").to_vector() == std::vector<std::int64_t>{INT64_MIN, INT64_MAX});
  CHECK(r.get<float>("empty").shape() == dagpt::Shape{0});
  CHECK(r.get<double>("empty2").shape() == dagpt::Shape{2, 0, 3});
  CHECK(r.get<std::int64_t>("scalar").dim() == 0);
  CHECK(r.get<std::int64_t>("scalar").item() == 42);
  CHECK(r.metadata().size() == 2);
  CHECK(r.metadata().at("config") == "{\"n_layer\": 2}");
  CHECK(r.metadata().at("note") == "caf\xC3\xA9 \"quoted\"\n");
  CHECK(r.contains("f"));
  CHECK_FALSE(r.contains("g"));
  CHECK(r.entry("d.slice").dtype == Dtype::F64);
  CHECK(r.entry("d.slice").shape == std::vector<std::int64_t>{2, 2});
  // -0.0 keeps its sign bit: the bytes are copied, not converted.
  CHECK(std::signbit(r.get<float>("f").at({1, 1})));

  // The same through a file; parse(serialize()) and read(write()) agree byte for byte.
  const auto dir = scratch_dir("roundtrip");
  const auto path = (dir / "t.safetensors").string();
  w.write(path);
  CHECK(slurp(path) == bytes);
  const auto rf = Safetensors::read(path);
  check_same(rf.get<float>("f.t"), ft.contiguous());
  CHECK(rf.origin() == path);
  std::filesystem::remove_all(dir.parent_path());
}

TEST_CASE("safetensors: other dtypes are kept as raw bytes", "[io]") {
  SafetensorsWriter w;
  w.add_raw("mask", Dtype::BOOL, {2, 2}, std::string("\x01\x00\x00\x01", 4));
  w.add_raw("ids", Dtype::I32, {2}, std::string("\x01\x00\x00\x00\xff\xff\xff\xff", 8));
  w.add_raw("half", Dtype::BF16, {1}, std::string("\x80\x3f", 2));
  const auto r = Safetensors::parse(w.serialize());
  const auto& ids = r.entry("ids");
  CHECK(ids.dtype == Dtype::I32);
  std::int32_t v[2];
  std::memcpy(v, r.data(ids), 8);
  CHECK(v[0] == 1);
  CHECK(v[1] == -1);
  CHECK(std::string(r.data(r.entry("mask")), 4) == std::string("\x01\x00\x00\x01", 4));
  CHECK(dagpt::io::dtype_size(Dtype::BF16) == 2);
  CHECK(std::string(dagpt::io::dtype_name(Dtype::BOOL)) == "BOOL");
  CHECK_THROWS_WITH(r.get<float>("ids"), Contains("'ids'") && Contains("I32") && Contains("F32"));
  CHECK_THROWS_WITH(w.add_raw("x", Dtype::F16, {3}, "abc"),
                    Contains("'x'") && Contains("needs 6 bytes") && Contains("got 3"));
}

TEST_CASE("safetensors: the bytes of a small file match the format, written out by hand", "[io]") {
  SafetensorsWriter w;
  w.add("b", Tensor<float>::from({1.0F, -2.0F}));
  w.add("a", Tensor<std::int64_t>::from({258}, {1, 1}));
  w.set_metadata("k", "v");
  // Keys sorted (nlohmann_json's object order), compact; data in the order added. 135 characters of JSON,
  // padded with 1 space to 136 = 0x88.
  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"data_offsets":[8,16],"dtype":"I64","shape":[1,1]},)"
      R"("b":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  REQUIRE(json.size() == 135);
  const std::string want = std::string("\x88\x00\x00\x00\x00\x00\x00\x00", 8) + json + std::string(1, ' ') +
                           std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8) +  // 1.0f, -2.0f
                           std::string("\x02\x01\x00\x00\x00\x00\x00\x00", 8);   // 258
  const std::string got = w.serialize();
  CHECK(got.size() == 8 + 136 + 16);
  CHECK(got == want);
  // And the reader takes the hand-written file.
  const auto r = Safetensors::parse(want);
  CHECK(r.get<std::int64_t>("a").to_vector() == std::vector<std::int64_t>{258});
  CHECK(r.get<float>("b").to_vector() == std::vector<float>{1.0F, -2.0F});
  CHECK(r.entries()[0].name == "b");  // entries are in data order
  CHECK(r.data_size() == 16);
}

TEST_CASE("safetensors: an invalid file is a ValueError naming the file, the tensor and the values", "[io]") {
  const std::string f32x2 = R"("dtype":"F32","shape":[2])";
  SECTION("size and header length") {
    expect_invalid("abc", {"3 bytes", "fewer than the 8"});
    expect_invalid(u64le(100) + "{}", {"header length 100", "exceeds the 2 bytes"});
    expect_invalid(u64le(200'000'000) + "{}", {"header length 200000000", "limit of 100000000"});
    expect_invalid(u64le(UINT64_MAX) + "{}", {"header length 18446744073709551615"});
  }
  SECTION("header JSON") {
    expect_invalid(file_of("{", ""), {"not valid UTF-8 JSON"});
    expect_invalid(file_of("", ""), {"not valid UTF-8 JSON"});
    expect_invalid(file_of("{\"a\xff\":1}", ""), {"not valid UTF-8 JSON"});
    expect_invalid(file_of("{} x", ""), {"not valid UTF-8 JSON"});
    expect_invalid(file_of("[1,2]", ""), {"not a JSON object but array"});
    expect_invalid(file_of(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"a":{)" + f32x2 +
                               R"(,"data_offsets":[0,8]}})",
                           zeros(8)),
                   {"repeats the key \"a\""});
    expect_invalid(file_of(R"({"__metadata__":{"k":"1","k":"2"}})", ""), {"repeats the key \"k\""});
  }
  SECTION("metadata") {
    expect_invalid(file_of(R"({"__metadata__":{"k":1}})", ""),
                   {"__metadata__ value of \"k\"", "not a string but 1"});
    expect_invalid(file_of(R"({"__metadata__":[]})", ""), {"__metadata__ is not an object"});
  }
  SECTION("entry fields") {
    expect_invalid(file_of(R"({"w":3})", ""), {"tensor 'w'", "not an object but 3"});
    expect_invalid(file_of(R"({"w":{"dtype":"F32","shape":[2]}})", zeros(8)),
                   {"tensor 'w'", "no field \"data_offsets\""});
    expect_invalid(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[0,8],"extra":1}})", zeros(8)),
                   {"tensor 'w'", "unknown field \"extra\""});
    expect_invalid(file_of(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                   {"tensor 'w'", "dtype \"F33\""});
    expect_invalid(file_of(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                   {"tensor 'w'", "dtype 4"});
  }
  SECTION("shape") {
    expect_invalid(file_of(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", zeros(8)),
                   {"tensor 'w'", "shape 2 is not an array"});
    expect_invalid(file_of(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", zeros(8)),
                   {"tensor 'w'", "shape [-2] holds -2"});
    expect_invalid(file_of(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", zeros(8)),
                   {"tensor 'w'", "holds 2.0"});
    expect_invalid(
        file_of(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", zeros(8)),
        {"tensor 'w'", "[4294967296,4294967296]", "overflows"});
    expect_invalid(
        file_of(R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}})", zeros(8)),
        {"tensor 'w'", "overflows"});
  }
  SECTION("data_offsets") {
    expect_invalid(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[0]}})", zeros(8)),
                   {"tensor 'w'", "data_offsets [0] is not two"});
    expect_invalid(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[-1,7]}})", zeros(8)),
                   {"tensor 'w'", "data_offsets [-1,7]"});
    expect_invalid(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[8,0]}})", zeros(8)),
                   {"tensor 'w'", "[8, 0]", "begin <= end <= 8"});
    expect_invalid(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[0,16]}})", zeros(8)),
                   {"tensor 'w'", "[0, 16]", "end <= 8"});
    expect_invalid(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[0,12]}})", zeros(12)),
                   {"tensor 'w'", "span 12 bytes", "shape [2] of F32 needs 2 * 4 = 8"});
  }
  SECTION("overlaps, holes and trailing bytes") {
    expect_invalid(file_of(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                               R"(,"data_offsets":[4,12]}})",
                           zeros(12)),
                   {"tensor 'b'", "[4, 12] overlap tensor 'a' [0, 8]"});
    expect_invalid(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                           zeros(12)),
                   {"tensor 'b'", "hole of bytes [4, 8)"});
    expect_invalid(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", zeros(8)),
                   {"cover 4 bytes of the 8-byte data buffer"});
    expect_invalid(file_of("{}", zeros(1)), {"cover 0 bytes of the 1-byte"});
  }
  SECTION("lookups") {
    const auto r = Safetensors::parse(file_of(R"({"w":{)" + f32x2 + R"(,"data_offsets":[0,8]}})", zeros(8)),
                                      "ok.safetensors");
    CHECK_THROWS_AS(r.entry("v"), dagpt::IndexError);
    CHECK_THROWS_WITH(r.entry("v"), Contains("ok.safetensors") && Contains("'v'"));
    CHECK_THROWS_AS(r.get<double>("w"), dagpt::ValueError);
    CHECK_THROWS_WITH(r.get<double>("w"), Contains("ok.safetensors") && Contains("'w'") &&
                                              Contains("stored as F32") && Contains("F64 (float64)"));
    CHECK(r.get<float>("w").to_vector() == std::vector<float>{0.0F, 0.0F});
  }
  // Empty tensors may share an offset; a file with no tensors is valid.
  CHECK(Safetensors::parse(file_of(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                   R"("b":{"dtype":"I64","shape":[3,0],"data_offsets":[0,0]}})",
                                   ""))
            .entries()
            .size() == 2);
  CHECK(Safetensors::parse(file_of("{}", "")).entries().empty());
}

TEST_CASE("safetensors: writer errors", "[io]") {
  SafetensorsWriter w;
  w.add("x", Tensor<float>::zeros({1}));
  CHECK_THROWS_AS(w.add("x", Tensor<double>::zeros({1})), dagpt::ValueError);
  CHECK_THROWS_WITH(w.add("x", Tensor<double>::zeros({1})), Contains("'x'") && Contains("already"));
  CHECK_THROWS_WITH(w.add("__metadata__", Tensor<double>::zeros({1})), Contains("__metadata__"));
  w.set_metadata("bad", "\xff");
  CHECK_THROWS_WITH(w.serialize(), Contains("UTF-8"));
  CHECK_THROWS_AS(Safetensors::read("/nonexistent/dir/x.safetensors"), dagpt::io::IoError);
  CHECK_THROWS_WITH(Safetensors::read("/nonexistent/dir/x.safetensors"),
                    Contains("/nonexistent/dir/x.safetensors"));
}

TEST_CASE("safetensors: write is atomic: a failed write leaves the old file whole and no temporary", "[io]") {
  const auto dir = scratch_dir("atomic");
  const auto path = (dir / "ckpt.safetensors").string();
  SafetensorsWriter old_w;
  old_w.add("w", Tensor<float>::full({4}, 1.0F));
  old_w.write(path);
  const std::string old_bytes = slurp(path);

  SafetensorsWriter new_w;
  new_w.add("w", Tensor<float>::full({1000}, 2.0F));
  new_w.set_metadata("iter", "2");

  SECTION("the temporary cannot be created (works as root too: it is a directory)") {
    const auto tmp = path + ".tmp." + std::to_string(::getpid());
    std::filesystem::create_directory(tmp);
    CHECK_THROWS_AS(new_w.write(path), dagpt::io::IoError);
    CHECK_THROWS_WITH(new_w.write(path), Contains(tmp) && Contains("cannot create"));
    CHECK(slurp(path) == old_bytes);
    std::filesystem::remove(tmp);
  }
  SECTION("the rename fails (the target is a non-empty directory): the temporary is removed") {
    const auto target = dir / "target";
    std::filesystem::create_directories(target / "inside");
    CHECK_THROWS_WITH(new_w.write(target.string()), Contains("rename"));
    CHECK(std::filesystem::is_directory(target / "inside"));
  }
  SECTION("a read-only directory (skipped as root, whom permissions do not stop)") {
    if (::geteuid() == 0) {
      WARN("running as root: the read-only directory case is not testable");
    } else {
      std::filesystem::permissions(dir,
                                   std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
      CHECK_THROWS_AS(new_w.write(path), dagpt::io::IoError);
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
      CHECK(slurp(path) == old_bytes);
    }
  }
  SECTION("a successful write replaces the file and leaves nothing else") {
    new_w.write(path);
    CHECK(Safetensors::read(path).get<float>("w").numel() == 1000);
  }
  // Whatever happened, the directory holds the checkpoint (and the test's own directory) only, and the
  // checkpoint is a whole, valid file.
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    CHECK((name == "ckpt.safetensors" || name == "target"));
  }
  CHECK_NOTHROW(Safetensors::read(path));
  std::filesystem::remove_all(dir.parent_path());
}
