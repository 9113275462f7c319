// core/: Shape, Tensor views and factories, the Philox generator, printing and errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <dagpt/dagpt.hpp>
#include <numeric>

using Catch::Matchers::Contains;
using dagpt::Shape;
using dagpt::Tensor;

TEST_CASE("Shape: numel, strides, broadcasting and limits", "[core]") {
  const Shape s{2, 3, 4};
  CHECK(s.numel() == 24);
  CHECK(dagpt::contiguous_strides(s) == Shape{12, 4, 1});
  CHECK(Shape{}.numel() == 1);
  CHECK(dagpt::broadcast_shapes({4, 1, 3}, {5, 1}, "op") == Shape{4, 5, 3});
  CHECK(dagpt::broadcast_shapes({}, {2, 2}, "op") == Shape{2, 2});
  CHECK_THROWS_WITH(dagpt::broadcast_shapes({2, 3}, {4, 3}, "add"),
                    Contains("add") && Contains("[2, 3]") && Contains("[4, 3]"));
  CHECK_THROWS_AS((Shape{1, 1, 1, 1, 1, 1, 1, 1, 1}), dagpt::ShapeError);
  CHECK(dagpt::wrap_axis(-1, 3, "op") == 2);
  CHECK_THROWS_AS(dagpt::wrap_axis(3, 3, "op"), dagpt::IndexError);
}

TEST_CASE("Tensor factories", "[core]") {
  auto z = Tensor<double>::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  CHECK(Tensor<float>::ones({4}).to_vector() == std::vector<float>(4, 1.0F));
  CHECK(Tensor<double>::full({2}, 2.5).to_vector() == std::vector<double>{2.5, 2.5});
  CHECK(Tensor<std::int64_t>::arange(4).to_vector() == std::vector<std::int64_t>{0, 1, 2, 3});
  CHECK(Tensor<double>::arange(1.0, 2.0, 0.25).to_vector() == std::vector<double>{1.0, 1.25, 1.5, 1.75});
  auto f = Tensor<float>::from({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(f.at({1, 2}) == 6.0F);
  CHECK(Tensor<double>::scalar(3.0).dim() == 0);
  CHECK(Tensor<double>::scalar(3.0).item() == 3.0);
  CHECK_THROWS_WITH(Tensor<float>::from({1, 2, 3}, {2, 2}), Contains("3 values") && Contains("[2, 2]"));
  CHECK_THROWS_AS(Tensor<double>::arange(0.0, 1.0, 0.0), dagpt::ValueError);
  CHECK_THROWS_WITH(f.item(), Contains("[2, 3]"));
  CHECK_THROWS_AS(f.at({2, 0}), dagpt::IndexError);
  CHECK(Tensor<double>::from({1.5, 2.5}).to<std::int64_t>().to_vector() == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("Tensor copies are shallow, clone is deep", "[core]") {
  auto a = Tensor<double>::zeros({3});
  auto b = a;
  b.data()[0] = 7;
  CHECK(a.data()[0] == 7);
  auto c = a.clone();
  c.data()[1] = 9;
  CHECK(a.data()[1] == 0);
  CHECK(a.shares_storage_with(b));
  CHECK_FALSE(a.shares_storage_with(c));
}

TEST_CASE("Tensor views share storage and index correctly", "[core]") {
  auto a = Tensor<double>::arange(24).reshape({2, 3, 4});
  REQUIRE(a.is_contiguous());

  auto t = a.transpose(0, 2);  // [4,3,2]
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.at({3, 1, 1}) == a.at({1, 1, 3}));
  CHECK(t.shares_storage_with(a));
  CHECK_FALSE(t.is_contiguous());

  auto p = a.permute({1, 2, 0});  // [3,4,2]
  CHECK(p.at({2, 3, 1}) == a.at({1, 2, 3}));
  CHECK_THROWS_AS(a.permute({0, 0, 1}), dagpt::ValueError);

  auto n = a.narrow(2, 1, 2);  // [2,3,2]
  CHECK(n.at({1, 2, 0}) == a.at({1, 2, 1}));
  CHECK_THROWS_WITH(a.narrow(2, 3, 2), Contains("[3, 5)") && Contains("extent 4"));

  auto s = a.slice(2, 0, 4, 2);  // [2,3,2]: columns 0 and 2
  CHECK(s.at({0, 1, 1}) == a.at({0, 1, 2}));
  CHECK(a.slice(1, -2, 100).shape() == Shape{2, 2, 4});

  auto sel = a.select(1, -1);  // [2,4]
  CHECK(sel.shape() == Shape{2, 4});
  CHECK(sel.at({1, 3}) == a.at({1, 2, 3}));

  auto u = a.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.squeeze(1).shape() == a.shape());
  CHECK_THROWS_AS(a.squeeze(0), dagpt::ShapeError);
  CHECK(Tensor<double>::zeros({1, 3, 1}).squeeze().shape() == Shape{3});

  auto e = Tensor<double>::from({1, 2, 3}, {3, 1}).expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.at({1, 2, 3}) == 3.0);
  CHECK(e.strides()[0] == 0);
  CHECK_THROWS_AS(a.expand({2, 5, 4}), dagpt::ShapeError);

  // contiguous() of a non-contiguous view copies in row-major order
  auto tc = a.transpose(0, 1).contiguous();
  CHECK(tc.is_contiguous());
  CHECK(tc.at({2, 1, 3}) == a.at({1, 2, 3}));
  CHECK_FALSE(tc.shares_storage_with(a));
}

TEST_CASE("Tensor reshape and view", "[core]") {
  auto a = Tensor<float>::arange(12);
  auto v = a.view({3, -1});
  CHECK(v.shape() == Shape{3, 4});
  CHECK(v.shares_storage_with(a));
  CHECK_THROWS_WITH(a.view({5, -1}), Contains("cannot hold 12"));
  CHECK_THROWS_WITH(a.reshape({5, 2}), Contains("does not match"));

  // A transposed tensor cannot be viewed flat, but reshape copies.
  auto t = v.t();
  CHECK_THROWS_WITH(t.view({12}), Contains("reshape"));
  auto r = t.reshape({12});
  CHECK_FALSE(r.shares_storage_with(a));
  CHECK(r.to_vector() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});

  // Splitting one axis of a non-contiguous tensor is still a view.
  auto b = Tensor<float>::arange(24).reshape({4, 6}).narrow(1, 0, 4);  // [4,4], row stride 6
  auto bv = b.view({2, 2, 4});
  CHECK(bv.shares_storage_with(b));
  CHECK(bv.at({1, 1, 2}) == b.at({3, 2}));
}

TEST_CASE("Philox 4x32-10 matches the Random123 known-answer vectors", "[core][random]") {
  auto r = dagpt::philox4x32({0, 0, 0, 0}, {0, 0});
  CHECK(r == std::array<std::uint32_t, 4>{0x6627e8d5U, 0xe169c58dU, 0xbc57ac4cU, 0x9b00dbd8U});
  auto r2 =
      dagpt::philox4x32({0xffffffffU, 0xffffffffU, 0xffffffffU, 0xffffffffU}, {0xffffffffU, 0xffffffffU});
  CHECK(r2 == std::array<std::uint32_t, 4>{0x408f276dU, 0x41c83b0eU, 0xa20bc7c6U, 0x6d5451fdU});
  auto r3 =
      dagpt::philox4x32({0x243f6a88U, 0x85a308d3U, 0x13198a2eU, 0x03707344U}, {0xa4093822U, 0x299f31d0U});
  CHECK(r3 == std::array<std::uint32_t, 4>{0xd16cfe09U, 0x94fdccebU, 0x5001e420U, 0x24126ea1U});
}

TEST_CASE("rand and randn are deterministic, stream-separated and well distributed", "[core][random]") {
  dagpt::Generator g1(42, 0);
  dagpt::Generator g2(42, 0);
  dagpt::Generator g3(42, 1);
  auto a = Tensor<double>::randn({100000}, g1);
  auto b = Tensor<double>::randn({100000}, g2);
  auto c = Tensor<double>::randn({100000}, g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  CHECK(g1.offset == 100000);

  // A draw of n then m equals one draw of n+m (counter-based: no hidden state but the offset).
  dagpt::Generator gs(7, 3);
  auto first = Tensor<float>::rand({1000}, gs);
  auto second = Tensor<float>::rand({500}, gs);
  dagpt::Generator gw(7, 3);
  auto whole = Tensor<float>::rand({1500}, gw);
  CHECK(first.to_vector() == whole.narrow(0, 0, 1000).to_vector());
  CHECK(second.to_vector() == whole.narrow(0, 1000, 500).to_vector());

  const double mean = dagpt::mean(a).item();
  const double var = dagpt::mean(dagpt::square(a - mean)).item();
  CHECK(std::abs(mean) < 0.02);
  CHECK(std::abs(var - 1.0) < 0.02);
  dagpt::Generator gu(1);
  auto u = Tensor<double>::rand({100000}, gu, -1.0, 3.0);
  CHECK(dagpt::max(u).item() < 3.0);
  CHECK(-dagpt::max(-u).item() >= -1.0);
  CHECK(std::abs(dagpt::mean(u).item() - 1.0) < 0.03);
}

TEST_CASE("Printing through fmt shows dtype, device, shape and values", "[core]") {
  auto a = Tensor<float>::from({1, 2.5F, 3, 4}, {2, 2});
  const std::string s = fmt::format("{}", a);
  CHECK_THAT(s, Contains("float32") && Contains("cpu") && Contains("shape=[2, 2]") && Contains("[[1, 2.5],"));
  const std::string big = fmt::format("{}", Tensor<std::int64_t>::arange(5000));
  CHECK_THAT(big, Contains("int64") && Contains("0, 1, 2, ..., 4997, 4998, 4999]"));
  CHECK(big.size() < 200);
  CHECK(fmt::format("{}", Shape{2, 3}) == "[2, 3]");
}

TEST_CASE("Devices: CUDA is an error in a CPU-only build, never a silent fallback", "[core]") {
  CHECK_THROWS_AS(Tensor<float>::zeros({2}, dagpt::Device::cuda(0)), dagpt::DeviceError);
  CHECK_THROWS_WITH(Tensor<float>::zeros({2}).to(dagpt::Device::cuda(1)),
                    Contains("cpu") && Contains("cuda:1"));
  CHECK(Tensor<float>::zeros({2}).device() == dagpt::Device::cpu());
  // Every dagpt exception derives from dagpt::Error.
  CHECK_THROWS_AS(Tensor<float>::zeros({2}).to(dagpt::Device::cuda(0)), dagpt::Error);
}
