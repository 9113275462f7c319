// autograd/: every differentiable op against finite differences (grad_check, double), broadcasting in
// both directions, reductions over every axis, the engine's accumulation and modes, the Function API.
#include <catch2/catch.hpp>
#include <cmath>
#include <dagpt/dagpt.hpp>

using Catch::Matchers::Contains;
using dagpt::Shape;
using dagpt::Tensor;
using dagpt::Var;
using V = std::vector<Var<double>>;

namespace {
dagpt::Generator& gen() {
  static dagpt::Generator g(99, 0);
  return g;
}
Tensor<double> randn(const Shape& s) { return Tensor<double>::randn(s, gen()); }
// Values in [lo, hi): keeps log/sqrt/div inputs away from their singular points.
Tensor<double> uniform(const Shape& s, double lo, double hi) {
  return Tensor<double>::rand(s, gen(), lo, hi);
}

void check(const std::function<Var<double>(const V&)>& f, const std::vector<Tensor<double>>& inputs) {
  const auto r = dagpt::grad_check(f, inputs);
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked > 0);
}
}  // namespace

TEST_CASE("grad_check: binary ops with broadcasting in both directions", "[autograd]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 4}, {3, 4}}, {{3, 4}, {4}},       {{4}, {3, 4}},
                                                       {{3, 1}, {1, 4}}, {{2, 1, 3}, {4, 1}}, {{}, {2, 3}}};
  for (const auto& [sa, sb] : shapes) {
    INFO(sa.str() << " with " << sb.str());
    check([](const V& v) { return v[0] + v[1]; }, {randn(sa), randn(sb)});
    check([](const V& v) { return v[0] - v[1]; }, {randn(sa), randn(sb)});
    check([](const V& v) { return v[0] * v[1]; }, {randn(sa), randn(sb)});
    check([](const V& v) { return v[0] / v[1]; }, {randn(sa), uniform(sb, 0.5, 2.0)});
  }
}

TEST_CASE("grad_check: scalar operands", "[autograd]") {
  check([](const V& v) { return v[0] * 3.0 + 1.5; }, {randn({5})});
  check([](const V& v) { return 2.0 - v[0] / 4.0; }, {randn({5})});
  check([](const V& v) { return 2.0 / v[0]; }, {uniform({5}, 0.5, 2.0)});
  check([](const V& v) { return -v[0] - 1.0; }, {randn({2, 2})});
}

TEST_CASE("grad_check: unary ops", "[autograd]") {
  check([](const V& v) { return dagpt::exp(v[0]); }, {randn({3, 4})});
  check([](const V& v) { return dagpt::log(v[0]); }, {uniform({3, 4}, 0.5, 3.0)});
  check([](const V& v) { return dagpt::tanh(v[0]); }, {randn({3, 4})});
  check([](const V& v) { return dagpt::sigmoid(v[0]); }, {randn({3, 4})});
  check([](const V& v) { return dagpt::abs(v[0]); }, {uniform({3, 4}, 0.1, 2.0) * -1.0});
  check([](const V& v) { return dagpt::abs(v[0]); }, {uniform({3, 4}, 0.1, 2.0)});
  check([](const V& v) { return dagpt::sign(v[0]) * v[0]; }, {uniform({6}, -2.0, 2.0)});
  check([](const V& v) { return dagpt::square(v[0]); }, {randn({3, 4})});
  check([](const V& v) { return dagpt::sqrt(v[0]); }, {uniform({3, 4}, 0.5, 3.0)});
  check([](const V& v) { return dagpt::pow(v[0], 3.0); }, {randn({3, 4})});
  check([](const V& v) { return dagpt::pow(v[0], -1.5); }, {uniform({3, 4}, 0.5, 3.0)});
  // clamp: inputs kept away from the two corners
  auto x = Tensor<double>::from({-3.0, -0.5, 0.2, 0.7, 2.5});
  check([](const V& v) { return dagpt::clamp(v[0], -1.0, 1.0); }, {x});
  auto cond = Tensor<double>::from({1, 0, 1}, {3, 1});
  check([cond](const V& v) { return dagpt::where(cond, v[0], v[1]); }, {randn({3, 4}), randn({4})});
}

TEST_CASE("grad_check: reductions over every axis and all", "[autograd]") {
  const Shape s{2, 3, 4};
  for (int axis = -3; axis < 3; ++axis) {
    for (bool keep : {false, true}) {
      INFO("axis " << axis << " keepdim " << keep);
      check([=](const V& v) { return dagpt::sum(v[0], axis, keep); }, {randn(s)});
      check([=](const V& v) { return dagpt::mean(v[0], axis, keep); }, {randn(s)});
      check([=](const V& v) { return dagpt::max(v[0], axis, keep); }, {randn(s)});
      check([=](const V& v) { return dagpt::prod(v[0], axis, keep); }, {randn(s)});
    }
  }
  check([](const V& v) { return dagpt::sum(v[0]); }, {randn(s)});
  check([](const V& v) { return dagpt::mean(v[0]); }, {randn(s)});
  check([](const V& v) { return dagpt::max(v[0]); }, {randn(s)});
  check([](const V& v) { return dagpt::prod(v[0]); }, {uniform(s, 0.5, 1.5)});
  check([](const V& v) { return dagpt::sum(v[0], {0, 2}); }, {randn(s)});
  check([](const V& v) { return dagpt::sum(v[0], {-1, 1}, true); }, {randn(s)});
}

TEST_CASE("prod's gradient is exact when the line holds zeros", "[autograd]") {
  Var<double> x(Tensor<double>::from({2.0, 0.0, 3.0, 0.0, 5.0, 4.0}, {2, 3}), true);
  dagpt::sum(dagpt::prod(x, 1)).backward();
  // row 0 has one zero: only it gets a gradient (2*3); row 1 has one zero too: 5*4
  CHECK(x.grad().to_vector() == std::vector<double>{0.0, 6.0, 0.0, 20.0, 0.0, 0.0});
}

TEST_CASE("grad_check: matmul, batched and broadcast", "[autograd]") {
  check([](const V& v) { return dagpt::matmul(v[0], v[1]); }, {randn({3, 4}), randn({4, 2})});
  check([](const V& v) { return dagpt::matmul(v[0], v[1]); }, {randn({2, 3, 4}), randn({4, 5})});
  check([](const V& v) { return dagpt::matmul(v[0], v[1]); }, {randn({3, 4}), randn({2, 4, 5})});
  check([](const V& v) { return dagpt::matmul(v[0], v[1].transpose(-1, -2)); },
        {randn({2, 1, 3, 4}), randn({3, 5, 4})});
}

TEST_CASE("grad_check: softmax, log_softmax", "[autograd]") {
  check([](const V& v) { return dagpt::softmax(v[0]); }, {randn({3, 5})});
  check([](const V& v) { return dagpt::log_softmax(v[0]); }, {randn({2, 3, 5})});
  check([](const V& v) { return dagpt::softmax(v[0].transpose(0, 1)); }, {randn({5, 3})});
}

TEST_CASE("grad_check: indexing ops", "[autograd]") {
  const auto idx = Tensor<std::int64_t>::from({0, 3, 3, 1, 2, 2}, {3, 2});
  check([idx](const V& v) { return dagpt::gather(v[0], 1, idx); }, {randn({3, 4})});
  const auto sel = Tensor<std::int64_t>::from({2, 0, 2, 1});
  check([sel](const V& v) { return dagpt::index_select(v[0], 0, sel); }, {randn({3, 4})});
  check([sel](const V& v) { return dagpt::index_select(v[0], 1, sel); }, {randn({2, 3, 5})});
  check([idx](const V& v) { return dagpt::scatter_add(v[0], 1, idx, v[1]); }, {randn({3, 4}), randn({3, 2})});
  check(
      [](const V& v) {
        return dagpt::concat<double>({v[0], v[1], v[0]}, 1);
      },
      {randn({2, 3}), randn({2, 1})});
  check([](const V& v) { return dagpt::stack<double>({v[0], v[1]}, 1); }, {randn({2, 3}), randn({2, 3})});
}

TEST_CASE("grad_check: views", "[autograd]") {
  check([](const V& v) { return v[0].reshape({4, 3}) * v[1]; }, {randn({2, 6}), randn({4, 3})});
  check([](const V& v) { return v[0].view({-1}); }, {randn({2, 6})});
  check([](const V& v) { return v[0].transpose(0, 2) * v[1]; }, {randn({2, 3, 4}), randn({4, 3, 2})});
  check([](const V& v) { return v[0].permute({2, 0, 1}).contiguous(); }, {randn({2, 3, 4})});
  check([](const V& v) { return v[0].narrow(1, 1, 2); }, {randn({2, 4})});
  check([](const V& v) { return v[0].select(0, -1); }, {randn({3, 4})});
  check([](const V& v) { return v[0].unsqueeze(1).expand({3, 5, 4}); }, {randn({3, 4})});
  check([](const V& v) { return v[0].squeeze(1).flatten(); }, {randn({3, 1, 4})});
  check([](const V& v) { return v[0].t(); }, {randn({3, 4})});
}

TEST_CASE("a composed expression (softmax attention) passes grad_check", "[autograd]") {
  check(
      [](const V& v) {
        auto scores = dagpt::matmul(v[0], v[1].transpose(-1, -2)) / 2.0;
        return dagpt::matmul(dagpt::softmax(scores), v[2]);
      },
      {randn({2, 4, 3}), randn({2, 4, 3}), randn({2, 4, 3})});
}

TEST_CASE("gradients accumulate across uses and across backward calls", "[autograd]") {
  Var<double> x(Tensor<double>::from({1.0, 2.0}), true);
  auto y = dagpt::sum(x * x + x * 3.0);  // dy/dx = 2x + 3
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{5.0, 7.0});
  dagpt::sum(x).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{6.0, 8.0});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  // diamond: one node feeds two paths that join again
  auto a = x * 2.0;
  auto b = dagpt::exp(a) + a;
  dagpt::sum(b).backward();
  CHECK(x.grad().to_vector()[0] == Approx(2 * std::exp(2.0) + 2));
  // Sums are added to in place only when nothing else holds them: a gradient the caller keeps, and the
  // output gradient given to backward (passed through by the additions), stay as they were.
  x.zero_grad();
  auto h = x * 2.0;  // used three times: its gradient is a sum of three
  const Tensor<double> gout = Tensor<double>::from({1.0, 10.0});
  (h * h + h * 3.0 + h).backward(gout, /*retain_graph=*/true);  // dy/dx = 2 (2h + 4) gout
  CHECK(x.grad().to_vector() == std::vector<double>{16.0, 240.0});
  CHECK(gout.to_vector() == std::vector<double>{1.0, 10.0});
  const Tensor<double> held = x.grad();
  (h + h).backward(gout);  // through the retained graph of h: adds 4 gout
  CHECK(held.to_vector() == std::vector<double>{16.0, 240.0});
  CHECK(x.grad().to_vector() == std::vector<double>{20.0, 280.0});
}

TEST_CASE("backward with a given gradient, retain_graph and retain_grad", "[autograd]") {
  Var<double> x(Tensor<double>::from({1.0, 2.0, 3.0}), true);
  auto h = (x * x).retain_grad();
  auto y = h * 2.0;
  y.backward(Tensor<double>::from({1.0, 0.0, -1.0}), /*retain_graph=*/true);
  CHECK(x.grad().to_vector() == std::vector<double>{4.0, 0.0, -12.0});
  CHECK(h.grad().to_vector() == std::vector<double>{2.0, 0.0, -2.0});
  y.backward(Tensor<double>::ones({3}));  // graph was retained
  CHECK(x.grad().to_vector() == std::vector<double>{8.0, 8.0, 0.0});
  CHECK_THROWS_WITH(y.backward(Tensor<double>::ones({3})), Contains("freed") && Contains("retain_graph"));
  CHECK_THROWS_WITH(y.backward(), Contains("[3]") && Contains("scalar"));
  CHECK_THROWS_WITH(dagpt::sum(x).backward(Tensor<double>::ones({2})), Contains("[2]"));
}

TEST_CASE("no_grad, detach and requires_grad", "[autograd]") {
  Var<double> x(Tensor<double>::ones({2}), true);
  {
    dagpt::NoGradGuard guard;
    CHECK_FALSE(dagpt::grad_enabled());
    auto y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
  }
  CHECK(dagpt::grad_enabled());
  auto d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.value().shares_storage_with(x.value()));
  auto y = dagpt::sum(d * 2.0);
  CHECK_THROWS_WITH(y.backward(), Contains("does not require grad"));
  auto z = x * 2.0;
  CHECK(z.requires_grad());
  CHECK(z.grad_fn_name() == "mul_scalar");
  CHECK_THROWS_AS(z.set_requires_grad(false), dagpt::AutogradError);
  // an input that does not require grad gets no gradient
  Var<double> c(Tensor<double>::ones({2}), false);
  dagpt::sum(x * c).backward();
  CHECK_FALSE(c.grad().defined());
  CHECK(x.grad().defined());
}

TEST_CASE("comparisons and argmax are not differentiable and say so", "[autograd]") {
  Var<double> x(Tensor<double>::from({1.0, 3.0, 2.0}), true);
  auto m = dagpt::gt(x, 1.5);
  CHECK_FALSE(m.requires_grad());
  CHECK(m.value().to_vector() == std::vector<double>{0, 1, 1});
  CHECK(dagpt::argmax(x).item() == 1);
  // a mask still works as a constant factor
  dagpt::sum(x * m).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 1});
}

TEST_CASE("a long chain does not overflow the stack", "[autograd]") {
  Var<double> x(Tensor<double>::scalar(1.0), true);
  Var<double> y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;
  y.backward();
  CHECK(x.grad().item() == 1.0);
}

namespace {
// A fused op written against the Function API: y = a * exp(b), two outputs (y, and b doubled).
struct ScaledExp : dagpt::Function<double> {
  std::vector<Tensor<double>> forward(const std::vector<Tensor<double>>& in) override {
    Tensor<double> e = dagpt::exp(in[1]);
    save_for_backward({in[0], e});
    return {in[0] * e, in[1] * 2.0};
  }
  std::vector<Tensor<double>> backward(const std::vector<Tensor<double>>& g) override {
    const auto& s = saved();
    Tensor<double> ga;
    Tensor<double> gb;
    if (needs_input_grad(0)) ga = g[0] * s[1];
    if (needs_input_grad(1)) gb = g[0] * s[0] * s[1] + g[1] * 2.0;
    return {ga, gb};
  }
  std::string name() const override { return "ScaledExp"; }
};
}  // namespace

TEST_CASE("Function API: a fused multi-output op with a hand-written backward", "[autograd]") {
  check(
      [](const V& v) {
        auto out = dagpt::apply<ScaledExp>(v);
        return out[0] + out[1];
      },
      {randn({3}), randn({3})});
  // only the first output used: the second output's gradient is zero
  check([](const V& v) { return dagpt::apply<ScaledExp>(v)[0]; }, {randn({3}), randn({3})});
  Var<double> a(Tensor<double>::ones({2}), true);
  Var<double> b(Tensor<double>::zeros({2}), false);
  auto out = dagpt::apply<ScaledExp>(V{a, b});
  CHECK(out[0].grad_fn_name() == "ScaledExp");
  dagpt::sum(out[0]).backward();
  CHECK(a.grad().to_vector() == std::vector<double>{1.0, 1.0});
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("grad_check finds a wrong backward", "[autograd]") {
  struct Wrong : dagpt::Function<double> {
    std::vector<Tensor<double>> forward(const std::vector<Tensor<double>>& in) override {
      return {in[0] * in[0]};
    }
    std::vector<Tensor<double>> backward(const std::vector<Tensor<double>>& g) override { return {g[0]}; }
    std::string name() const override { return "Wrong"; }
  };
  const auto r = dagpt::grad_check([](const V& v) { return dagpt::apply<Wrong>(v)[0]; }, {randn({4})});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.report, Contains("input 0 element"));
}

TEST_CASE("float ops record the same graph as double", "[autograd]") {
  Var<float> x(Tensor<float>::from({1.0F, 2.0F}), true);
  dagpt::sum(dagpt::tanh(x) * x).backward();
  const double t1 = std::tanh(1.0);
  CHECK(x.grad().to_vector()[0] == Approx(t1 + (1 - t1 * t1)).epsilon(1e-6));
}
