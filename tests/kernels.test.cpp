// kernels/cpu/: values of every op against plain loops, broadcasting, strided inputs, threading, errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <dagpt/dagpt.hpp>
#include <limits>

using Catch::Matchers::Contains;
using dagpt::Shape;
using dagpt::Tensor;

namespace {
dagpt::Generator& gen() {
  static dagpt::Generator g(2024, 0);
  return g;
}
Tensor<double> randn(const Shape& s) { return Tensor<double>::randn(s, gen()); }

// Visits every multi-index of a shape in row-major order.
template <typename F>
void for_each_index(const Shape& s, F f) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(s.size()), 0);
  for (std::int64_t n = 0; n < s.numel(); ++n) {
    f(idx);
    for (int d = s.size() - 1; d >= 0; --d) {
      if (++idx[static_cast<std::size_t>(d)] < s[d]) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
}
// Element at a multi-index given as a vector.
template <typename T>
T at(const Tensor<T>& t, const std::vector<std::int64_t>& idx) {
  std::int64_t off = 0;
  for (int d = 0; d < t.dim(); ++d) off += idx[static_cast<std::size_t>(d)] * t.strides()[d];
  return t.data()[off];
}
// Index into a broadcast operand: axes of extent 1 read index 0.
template <typename T>
T at_broadcast(const Tensor<T>& t, const std::vector<std::int64_t>& idx) {
  std::vector<std::int64_t> j(static_cast<std::size_t>(t.dim()));
  const std::size_t lead = idx.size() - static_cast<std::size_t>(t.dim());
  for (int d = 0; d < t.dim(); ++d)
    j[static_cast<std::size_t>(d)] = t.shape()[d] == 1 ? 0 : idx[lead + static_cast<std::size_t>(d)];
  return at(t, j);
}
}  // namespace

TEST_CASE("binary ops broadcast like NumPy, in both directions", "[kernels]") {
  const std::vector<std::pair<Shape, Shape>> cases = {{{3, 4}, {3, 4}}, {{3, 4}, {4}},       {{4}, {3, 4}},
                                                      {{3, 1}, {1, 4}}, {{2, 1, 4}, {3, 1}}, {{}, {2, 3}},
                                                      {{2, 3}, {}}};
  for (const auto& [sa, sb] : cases) {
    const auto a = randn(sa);
    const auto b = dagpt::add(randn(sb), 3.0);  // away from 0 for div
    const Shape so = dagpt::broadcast_shapes(sa, sb, "test");
    const auto s = a + b;
    const auto d = a - b;
    const auto m = a * b;
    const auto q = a / b;
    REQUIRE(s.shape() == so);
    for_each_index(so, [&](const std::vector<std::int64_t>& i) {
      const double x = at_broadcast(a, i);
      const double y = at_broadcast(b, i);
      CHECK(at(s, i) == x + y);
      CHECK(at(d, i) == x - y);
      CHECK(at(m, i) == x * y);
      CHECK(at(q, i) == x / y);
    });
  }
  CHECK_THROWS_WITH(Tensor<float>::zeros({2, 3}) + Tensor<float>::zeros({3, 2}),
                    Contains("add") && Contains("[2, 3]") && Contains("[3, 2]"));
}

TEST_CASE("elementwise ops on non-contiguous inputs", "[kernels]") {
  const auto a = randn({5, 7}).t();  // [7,5], strided
  const auto b = randn({7, 5});
  const auto c = a * b;
  for_each_index(c.shape(),
                 [&](const std::vector<std::int64_t>& i) { CHECK(at(c, i) == at(a, i) * at(b, i)); });
  const auto e = dagpt::exp(a.narrow(0, 1, 3));
  CHECK(e.at({2, 4}) == std::exp(a.at({3, 4})));
}

TEST_CASE("unary ops and scalars", "[kernels]") {
  const auto x = Tensor<double>::from({-2.0, -0.5, 0.0, 0.5, 3.0});
  auto v = [](const Tensor<double>& t) { return t.to_vector(); };
  CHECK(v(-x) == std::vector<double>{2.0, 0.5, 0.0, -0.5, -3.0});
  CHECK(v(dagpt::abs(x)) == std::vector<double>{2.0, 0.5, 0.0, 0.5, 3.0});
  CHECK(v(dagpt::sign(x)) == std::vector<double>{-1, -1, 0, 1, 1});
  CHECK(v(dagpt::square(x)) == std::vector<double>{4.0, 0.25, 0.0, 0.25, 9.0});
  CHECK(v(dagpt::clamp(x, -1.0, 1.0)) == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0});
  CHECK_THROWS_AS(dagpt::clamp(x, 1.0, -1.0), dagpt::ValueError);
  CHECK(v(dagpt::pow(dagpt::abs(x), 3.0))[4] == Approx(27.0));
  CHECK(v(dagpt::sqrt(dagpt::abs(x)))[4] == std::sqrt(3.0));
  CHECK(v(dagpt::exp(x))[0] == Approx(std::exp(-2.0)).epsilon(1e-15));  // Eigen's vectorized exp
  CHECK(v(dagpt::log(dagpt::abs(x)))[1] == Approx(std::log(0.5)).epsilon(1e-15));
  CHECK(v(dagpt::tanh(x))[3] == Approx(std::tanh(0.5)).epsilon(1e-15));
  // sigmoid stays finite at the extremes
  const auto s = dagpt::sigmoid(Tensor<double>::from({-1000.0, 0.0, 1000.0})).to_vector();
  CHECK(s == std::vector<double>{0.0, 0.5, 1.0});
  CHECK(v(x * 2.0) == std::vector<double>{-4.0, -1.0, 0.0, 1.0, 6.0});
  CHECK(v(1.0 - x) == std::vector<double>{3.0, 1.5, 1.0, 0.5, -2.0});
  CHECK(v(dagpt::div(1.0, Tensor<double>::from({2.0, 4.0}))) == std::vector<double>{0.5, 0.25});
  // a double literal works with float tensors
  CHECK((Tensor<float>::ones({2}) * 2.0).to_vector() == std::vector<float>{2.0F, 2.0F});
}

TEST_CASE("comparisons and where", "[kernels]") {
  const auto a = Tensor<double>::from({1, 2, 3});
  const auto b = Tensor<double>::from({3, 2, 1});
  CHECK(dagpt::lt(a, b).to_vector() == std::vector<double>{1, 0, 0});
  CHECK(dagpt::le(a, b).to_vector() == std::vector<double>{1, 1, 0});
  CHECK(dagpt::eq(a, b).to_vector() == std::vector<double>{0, 1, 0});
  CHECK(dagpt::ne(a, b).to_vector() == std::vector<double>{1, 0, 1});
  CHECK(dagpt::gt(a, 1.5).to_vector() == std::vector<double>{0, 1, 1});
  CHECK(dagpt::ge(a, b).to_vector() == std::vector<double>{0, 1, 1});
  const auto w = dagpt::where(dagpt::gt(a, b), a, Tensor<double>::scalar(-1.0));
  CHECK(w.to_vector() == std::vector<double>{-1, -1, 3});
  // broadcast of all three
  const auto cond = Tensor<double>::from({1, 0}, {2, 1});
  const auto r = dagpt::where(cond, a, b);
  CHECK(r.shape() == Shape{2, 3});
  CHECK(r.to_vector() == std::vector<double>{1, 2, 3, 3, 2, 1});
}

TEST_CASE("vectorized exp, log and tanh agree with the C library on large float and double inputs",
          "[kernels]") {
  dagpt::Generator g(3);
  const auto xd = Tensor<double>::rand({100003}, g, -20.0, 20.0);
  const auto xf = xd.to<float>();
  const auto ed = dagpt::exp(xd);
  const auto ld = dagpt::log(dagpt::abs(xd));
  const auto td = dagpt::tanh(xd);
  const auto ef = dagpt::exp(xf);
  double worst_d = 0;
  double worst_f = 0;
  for (std::int64_t i = 0; i < xd.numel(); ++i) {
    const double x = xd.data()[i];
    worst_d = std::max(worst_d, std::abs(ed.data()[i] / std::exp(x) - 1));
    worst_d = std::max(worst_d, std::abs(ld.data()[i] - std::log(std::abs(x))) /
                                    std::max(1.0, std::abs(std::log(std::abs(x)))));
    worst_d = std::max(worst_d, std::abs(td.data()[i] - std::tanh(x)));
    worst_f = std::max(
        worst_f,
        std::abs(static_cast<double>(ef.data()[i]) / std::exp(static_cast<double>(xf.data()[i])) - 1));
  }
  CHECK(worst_d < 4e-16);
  CHECK(worst_f < 3e-7);
  // the strided path (scalar) and the contiguous path (vectorized) agree
  CHECK(dagpt::max(dagpt::abs(dagpt::exp(xd.slice(0, 0, 100003, 2)) - ed.slice(0, 0, 100003, 2))).item() <=
        1e-15 * std::exp(20.0));
}

TEST_CASE("the CPU buffer cache reuses large buffers and can be emptied", "[kernels]") {
  dagpt::empty_cpu_cache();
  const double* first = nullptr;
  {
    auto a = Tensor<double>::zeros({1 << 18});  // 2 MB: cached when freed
    first = a.data();
  }
  CHECK(dagpt::cpu_cache_bytes() >= (std::size_t{1} << 21));
  auto b = Tensor<double>::ones({1 << 18});
  CHECK(b.data() == first);  // the same buffer, no new page faults
  CHECK(dagpt::sum(b).item() == static_cast<double>(1 << 18));
  dagpt::empty_cpu_cache();
  CHECK(dagpt::cpu_cache_bytes() == 0);
#if defined(__linux__)
  // Buffers of 2 MB and more start on a 2 MB boundary (whole transparent huge pages), and every byte of
  // an odd-sized one is usable.
  for (const std::int64_t n : {std::int64_t{1} << 18, (std::int64_t{3} << 18) + 5}) {
    auto c = Tensor<double>::full({n}, 2.0);
    CHECK(reinterpret_cast<std::uintptr_t>(c.data()) % (std::uintptr_t{2} << 20) == 0);
    CHECK(dagpt::sum(c).item() == 2.0 * static_cast<double>(n));
  }
  dagpt::empty_cpu_cache();
#endif
}

TEST_CASE("large elementwise work is split over threads with the same result", "[kernels]") {
  const std::int64_t n = 1 << 20;
  const auto a = Tensor<float>::arange(n);
  const auto b = a * 2.0F + 1.0F;
  bool ok = true;
  for (std::int64_t i = 0; i < n; ++i) ok = ok && b.data()[i] == 2.0F * static_cast<float>(i) + 1.0F;
  CHECK(ok);
  // exact integer sums (double accumulation) on a large input
  CHECK(dagpt::sum(a).item() == Approx(static_cast<double>(n) * (n - 1) / 2).epsilon(1e-7));
  CHECK(dagpt::sum(Tensor<std::int64_t>::arange(n)).item() == n * (n - 1) / 2);
}

TEST_CASE("reductions over every axis, with and without keepdim", "[kernels]") {
  const auto a = randn({3, 4, 5});
  for (int axis = 0; axis < 3; ++axis) {
    for (bool keep : {false, true}) {
      const auto s = dagpt::sum(a, axis, keep);
      const auto m = dagpt::mean(a, axis, keep);
      const auto mx = dagpt::max(a, axis, keep);
      const auto am = dagpt::argmax(a, axis, keep);
      const auto p = dagpt::prod(a, axis, keep);
      Shape want = a.shape();
      if (keep) {
        want[axis] = 1;
      } else {
        want.erase(axis);
      }
      REQUIRE(s.shape() == want);
      REQUIRE(am.shape() == want);
      for_each_index(a.shape(), [&](const std::vector<std::int64_t>& i) {
        if (i[static_cast<std::size_t>(axis)] != 0) return;
        double es = 0;
        double ep = 1;
        double best = -1e300;
        std::int64_t arg = -1;
        auto j = i;
        for (std::int64_t k = 0; k < a.shape()[axis]; ++k) {
          j[static_cast<std::size_t>(axis)] = k;
          const double v = at(a, j);
          es += v;
          ep *= v;
          if (v > best) {
            best = v;
            arg = k;
          }
        }
        auto o = i;
        if (!keep) o.erase(o.begin() + axis);
        CHECK(at(s, o) == Approx(es).margin(1e-12));
        CHECK(at(m, o) == Approx(es / static_cast<double>(a.shape()[axis])).margin(1e-12));
        CHECK(at(mx, o) == best);
        CHECK(at(am, o) == arg);
        CHECK(at(p, o) == Approx(ep).margin(1e-12));
      });
    }
  }
  CHECK(dagpt::sum(a).item() == Approx(dagpt::sum(dagpt::sum(dagpt::sum(a, 0), 0), 0).item()).margin(1e-12));
  CHECK(dagpt::sum(a, {0, 2}).shape() == Shape{4});
  CHECK(dagpt::sum(a, {0, 2}, true).shape() == Shape{1, 4, 1});
  CHECK_THROWS_AS(dagpt::sum(a, {1, -2}), dagpt::ValueError);
  CHECK_THROWS_AS(dagpt::sum(a, 3), dagpt::IndexError);
  CHECK(dagpt::prod(Tensor<double>::from({2, 3, 4})).item() == 24.0);
  CHECK(dagpt::sum_to(Tensor<double>::ones({2, 3, 4}), {3, 1}).to_vector() == std::vector<double>{8, 8, 8});
}

TEST_CASE("max and argmax: first of ties, NaN wins, empty is an error", "[kernels]") {
  const auto t = Tensor<double>::from({1, 5, 5, 2});
  CHECK(dagpt::argmax(t).item() == 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto n = Tensor<double>::from({1, nan, 7});
  CHECK(dagpt::argmax(n).item() == 1);
  CHECK(std::isnan(dagpt::max(n).item()));
  CHECK_THROWS_AS(dagpt::max(Tensor<double>::zeros({0})), dagpt::ShapeError);
}

TEST_CASE("matmul equals the naive product, for every layout and batch broadcast", "[kernels]") {
  auto naive = [](const Tensor<double>& a, const Tensor<double>& b) {
    const std::int64_t m = a.size(0);
    const std::int64_t k = a.size(1);
    const std::int64_t n = b.size(1);
    auto c = Tensor<double>::zeros({m, n});
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t p = 0; p < k; ++p) s += a.at({i, p}) * b.at({p, j});
        c.at({i, j}) = s;
      }
    }
    return c;
  };
  auto close = [](const Tensor<double>& x, const Tensor<double>& y) {
    REQUIRE(x.shape() == y.shape());
    return dagpt::max(dagpt::abs(x - y)).item() < 1e-12;
  };
  const auto a = randn({7, 5});
  const auto b = randn({5, 3});
  CHECK(close(dagpt::matmul(a, b), naive(a, b)));
  const auto at_ = randn({5, 7}).t();  // column-major view
  const auto bt = randn({3, 5}).t();
  CHECK(close(dagpt::matmul(at_, bt), naive(at_, bt)));
  CHECK(close(dagpt::matmul(a, bt), naive(a, bt)));
  const auto as = randn({7, 10}).slice(1, 0, 10, 2);  // neither layout: copied
  CHECK(close(dagpt::matmul(as, b), naive(as, b)));
  const auto ar = randn({9, 5}).narrow(0, 2, 7);  // row-major with an offset
  CHECK(close(dagpt::matmul(ar, b), naive(ar, b)));

  // batched, with broadcasting of the batch axes
  const auto A = randn({2, 1, 4, 3});
  const auto B = randn({5, 3, 6});
  const auto C = dagpt::matmul(A, B);
  REQUIRE(C.shape() == Shape{2, 5, 4, 6});
  for (std::int64_t i = 0; i < 2; ++i) {
    for (std::int64_t j = 0; j < 5; ++j) {
      CHECK(close(C.select(0, i).select(0, j).contiguous(),
                  naive(A.select(0, i).select(0, 0), B.select(0, j))));
    }
  }
  // many small products (threaded over the batch) at the attention shape
  const auto Q = randn({64, 32, 16});
  const auto K = randn({64, 32, 16});
  const auto S = dagpt::matmul(Q, K.transpose(-1, -2));
  CHECK(close(S.select(0, 63).contiguous(), naive(Q.select(0, 63), K.select(0, 63).t())));
  CHECK_THROWS_WITH(dagpt::matmul(a, a), Contains("[7, 5]") && Contains("inner"));
  CHECK_THROWS_AS(dagpt::matmul(Tensor<double>::zeros({3}), a), dagpt::ShapeError);
  // float product agrees with double
  const auto af = a.to<float>();
  const auto bf = b.to<float>();
  CHECK(dagpt::max(dagpt::abs(dagpt::matmul(af, bf).to<double>() - naive(a, b))).item() < 1e-5);
}

TEST_CASE("softmax and log_softmax: rows sum to one, stable for large inputs", "[kernels]") {
  const auto x = Tensor<double>::from({1, 2, 3, 1000, 1001, 1002}, {2, 3});
  const auto s = dagpt::softmax(x);
  const auto l = dagpt::log_softmax(x);
  const double e = std::exp(1.0);
  const double z = 1 + e + e * e;
  CHECK(s.at({0, 0}) == Approx(1 / z));
  CHECK(s.at({1, 2}) == Approx(e * e / z));
  CHECK(l.at({1, 0}) == Approx(-std::log(z)));
  CHECK(dagpt::sum(s, 1).to_vector()[1] == Approx(1.0));
  // on a non-contiguous view (softmax over what is axis 0 in memory)
  const auto t = x.t().contiguous().t();
  CHECK(dagpt::softmax(t).to_vector() == s.to_vector());
}

TEST_CASE("gather, scatter_add, index_select, index_add", "[kernels]") {
  const auto a = Tensor<double>::arange(12).reshape({3, 4});
  const auto idx = Tensor<std::int64_t>::from({0, 3, 2, 1, 0, 0}, {3, 2});
  const auto g = dagpt::gather(a, 1, idx);
  CHECK(g.to_vector() == std::vector<double>{0, 3, 6, 5, 8, 8});
  const auto i0 = Tensor<std::int64_t>::from({2, 0, 1, 1}, {1, 4});
  CHECK(dagpt::gather(a, 0, i0).to_vector() == std::vector<double>{8, 1, 6, 7});

  const auto sc = dagpt::scatter_add(Tensor<double>::zeros({3, 4}), 1, idx, Tensor<double>::ones({3, 2}));
  CHECK(sc.to_vector() == std::vector<double>{1, 0, 0, 1, 0, 1, 1, 0, 2, 0, 0, 0});

  const auto sel = Tensor<std::int64_t>::from({2, 0, 2});
  const auto is = dagpt::index_select(a, 0, sel);
  CHECK(is.shape() == Shape{3, 4});
  CHECK(is.to_vector() == std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  CHECK(dagpt::index_select(a, 1, sel).to_vector() == std::vector<double>{2, 0, 2, 6, 4, 6, 10, 8, 10});
  const auto ia = dagpt::index_add(Tensor<double>::zeros({3, 4}), 0, sel, Tensor<double>::ones({3, 4}));
  CHECK(ia.to_vector() == std::vector<double>{1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2});

  CHECK_THROWS_WITH(dagpt::gather(a, 1, Tensor<std::int64_t>::from({0, 4}, {1, 2})),
                    Contains("index 4") && Contains("position 1") && Contains("[0, 4)"));
  CHECK_THROWS_WITH(dagpt::index_select(a, 0, Tensor<std::int64_t>::from({-1})), Contains("index -1"));
  CHECK_THROWS_AS(dagpt::gather(a, 1, Tensor<std::int64_t>::zeros({4, 1})), dagpt::ShapeError);
}

TEST_CASE("concat and stack", "[kernels]") {
  const auto a = Tensor<double>::arange(6).reshape({2, 3});
  const auto b = Tensor<double>::arange(4).reshape({2, 2});
  const auto c = dagpt::concat<double>({a, b}, 1);
  CHECK(c.shape() == Shape{2, 5});
  CHECK(c.to_vector() == std::vector<double>{0, 1, 2, 0, 1, 3, 4, 5, 2, 3});
  CHECK(dagpt::concat<double>({a, a}, 0).shape() == Shape{4, 3});
  CHECK_THROWS_WITH(dagpt::concat<double>({a, b}, 0), Contains("tensor 1") && Contains("[2, 2]"));
  const auto s = dagpt::stack<double>({a, a * 2.0}, 1);
  CHECK(s.shape() == Shape{2, 2, 3});
  CHECK(s.at({1, 1, 2}) == 10.0);
  CHECK_THROWS_AS(dagpt::stack<double>({a, b}, 0), dagpt::ShapeError);
}
