// dag/: plan encoding (REFERENCE 3.3-3.4 worked examples, both modes), decode, the executor against
// finite differences and its composed twin, and the acceptance sweeps of REFERENCE 9.1.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <dagpt/dagpt.hpp>
#include <map>
#include <random>
#include <set>

using namespace dagpt;
using Catch::Matchers::Contains;
using dag::Layout;
using dag::Semantics;

namespace {
expr::Expr normalized(std::string_view text, bool reference = false) {
  return expr::normalize(expr::parse(text), {reference});
}
dag::DagPlan<double> plan_of(std::string_view text, bool reference = false, int d = 4) {
  return dag::encode(normalized(text, reference), Layout::reference(d), {reference});
}
// Nonzero entries of row s of O, as {col: coef}.
std::map<int, double> row(const dag::DagPlan<double>& p, int s) {
  std::map<int, double> r;
  for (int j = 0; j < p.nodes(); ++j) {
    if (p.O.at({s, j}) != 0) r[j] = p.O.at({s, j});
  }
  return r;
}
double run(const dag::DagPlan<double>& p, Semantics sem) { return dag::execute_values(p, sem).item(); }
using Row = std::map<int, double>;
}  // namespace

TEST_CASE("encode: the worked examples E1-E5 of REFERENCE 3.4, both modes", "[dag]") {
  for (bool ref : {false, true}) {
    const Semantics sem = ref ? Semantics::reference : Semantics::exact;
    INFO("reference mode " << ref);
    auto e1 = plan_of("2.5*3.0 + 1.0", ref);
    CHECK(e1.V_mag.to_vector() == std::vector<double>{2.5, 3.0, 1.0, 0, 0, 0, 0, 0});
    CHECK(row(e1, 0) == Row{{0, 1}, {1, 1}});
    CHECK(row(e1, 1) == Row{{2, 1}, {4, 1}});
    CHECK(row(e1, 2) == Row{{5, 1}});
    CHECK(row(e1, 3) == Row{{5, 1}});
    CHECK(e1.G.to_vector() == std::vector<double>{0, 1, 1, 1});
    CHECK(run(e1, sem) == Approx(8.5).epsilon(1e-12));

    auto e2 = plan_of("10.0 - 2.0*3.0", ref);
    CHECK(e2.V_mag.to_vector() == std::vector<double>{10, 2, 3, 0, 0, 0, 0, 0});
    CHECK(row(e2, 0) == Row{{1, 1}, {2, 1}});
    CHECK(row(e2, 1) == Row{{0, 1}, {4, -1}});
    CHECK(e2.G.to_vector() == std::vector<double>{0, 1, 1, 1});
    CHECK(run(e2, sem) == Approx(4.0).epsilon(1e-12));

    auto e3 = plan_of("7.5/(2.5*3.0)", ref);
    CHECK(row(e3, 1) == Row{{0, 1}, {4, -1}});
    CHECK(e3.G.to_vector() == std::vector<double>{0, 0, 1, 1});
    CHECK(run(e3, sem) == Approx(1.0).epsilon(1e-12));

    auto e4 = plan_of("-4.0*(1.5 - 2.0*3.0)", ref);
    CHECK(e4.V_mag.to_vector() == std::vector<double>{4, 1.5, 2, 3, 0, 0, 0, 0});
    CHECK(e4.V_sign.to_vector() == std::vector<double>{-1, 1, 1, 1, 1, 1, 1, 1});
    CHECK(row(e4, 0) == Row{{2, 1}, {3, 1}});
    CHECK(row(e4, 1) == Row{{1, 1}, {4, -1}});
    CHECK(row(e4, 2) == Row{{0, 1}, {5, 1}});
    CHECK(row(e4, 3) == Row{{6, 1}});
    CHECK(e4.G.to_vector() == std::vector<double>{0, 1, 0, 1});
    CHECK(run(e4, sem) == Approx(18.0).epsilon(1e-12));

    auto e5 = plan_of("2.0*2.0 + 2.0", ref);  // duplicates: one slot referenced, coefficient 2
    CHECK(e5.V_mag.to_vector() == std::vector<double>{2, 2, 2, 0, 0, 0, 0, 0});
    CHECK(row(e5, 0) == Row{{0, 2}});
    CHECK(row(e5, 1) == Row{{0, 1}, {4, 1}});
    CHECK(e5.G.to_vector() == std::vector<double>{0, 1, 1, 1});
    CHECK(run(e5, sem) == Approx(6.0).epsilon(1e-12));

    // short cases
    auto n = plan_of("-5.3", ref);
    CHECK(n.V_sign.at({0}) == -1);
    for (int s = 0; s < 4; ++s) CHECK(row(n, s) == Row{{0, 1}});
    CHECK(n.G.to_vector() == std::vector<double>{1, 1, 1, 1});
    CHECK(run(n, sem) == Approx(-5.3).epsilon(1e-12));
    auto s3 = plan_of("5.0 - 3", ref);
    CHECK(row(s3, 0) == Row{{0, 1}, {1, -1}});
    CHECK(row(s3, 1) == Row{{4, 1}});
    CHECK(run(s3, sem) == Approx(2.0).epsilon(1e-12));
    auto d1 = plan_of("-3301.3/522", ref);
    CHECK(row(d1, 0) == Row{{0, 1}, {1, -1}});
    CHECK(d1.G.at({0}) == 0);
    CHECK(run(d1, sem) == Approx(-3301.3 / 522).epsilon(1e-12));
    auto i1 = plan_of("1/(2.0*3.0)", ref);
    CHECK(i1.V_mag.to_vector()[0] == 1.0);
    CHECK(row(i1, 0) == Row{{1, 1}, {2, 1}});
    CHECK(row(i1, 1) == Row{{0, 1}, {4, -1}});
    CHECK(i1.G.to_vector() == std::vector<double>{0, 0, 1, 1});
    CHECK_THROWS_WITH(plan_of("1.0 + 2.0 + 3.0 + 4.0 + 5.0", ref),
                      Contains("expression has 5 numbers; depth 4 allows 4"));
  }
  // reference mode collapses literal-only steps: 8.0/2.0 is the single number 4.0
  auto c = plan_of("8.0/2.0", true);
  CHECK(c.V_mag.at({0}) == 4.0);
  CHECK(row(c, 0) == Row{{0, 1}});
  CHECK(row(plan_of("8.0/2.0"), 0) == Row{{0, 1}, {1, -1}});  // default: one real step
  CHECK_THROWS_WITH(plan_of("((1*2)*(3*4))*((1+2)*(3+4))*1", false, 4), Contains("depth 4 allows 4"));
  CHECK_THROWS_WITH(dag::encode(normalized("1+2+3*4"), Layout{1, 4}),
                    Contains("expression needs 2 operations; depth 1 allows 1"));
}

TEST_CASE("the reference's known wrong results, and the default fixes", "[dag]") {
  // -2.0*-2.0: duplicate negative operand with coefficient 2
  auto ref = plan_of("-2.0*-2.0", true);
  CHECK(ref.V_sign.at({0}) == -1);
  CHECK(row(ref, 0) == Row{{0, 2}});
  CHECK(run(ref, Semantics::reference) == Approx(-4.0));  // the reference's sign trick: wrong
  CHECK(run(ref, Semantics::exact) == 4.0);               // exact parity of the coefficient
  // top-level Neg(Integer): Mul(-1, 3) normalizes to Neg(3)
  const auto tree = expr::normalize(expr::parse("-1*3"));
  REQUIRE(expr::to_debug(tree) == "Neg(3)");
  auto r = dag::encode(tree, Layout::reference(4), {true});
  CHECK(r.V_mag.to_vector()[1] == 3);  // two slots: +3 and -3
  CHECK(r.V_sign.to_vector()[1] == -1);
  CHECK(run(r, Semantics::reference) == Approx(3.0));  // sign lost, as the reference
  auto f = dag::encode(tree, Layout::reference(4));
  CHECK(f.V_sign.to_vector()[0] == -1);  // one negative literal
  CHECK(f.V_mag.to_vector()[1] == 0);
  CHECK(run(f, Semantics::exact) == -3.0);
  // tiny results are not shrunk by tanh
  CHECK(run(plan_of("1.00001 - 1"), Semantics::exact) == Approx(1e-5).epsilon(1e-10));
  CHECK(std::abs(run(plan_of("1.00001 - 1", true), Semantics::reference) - 1e-5) > 1e-6);
  // x - x is exactly zero; a product with it too
  CHECK(run(plan_of("(2.5 - 2.5)*3.0"), Semantics::exact) == 0.0);
  // HEAD's upper clamp instead of inf
  CHECK(run(plan_of("99999.0*99999.0*99999.0*99999.0*99999.0*99999.0*99999.0", false, 8), Semantics::exact) ==
        1e28);
}

TEST_CASE("HEAD layout: d+1 initial slots", "[dag]") {
  auto p = dag::encode(normalized("1.0 + 2.0 + 3.0 + 4.0 + 5.0"), Layout::head(4));
  CHECK(p.nodes() == 9);
  CHECK(row(p, 0) == Row{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}});
  CHECK(row(p, 3) == Row{{5, 1}});
  CHECK(run(p, Semantics::exact) == 15.0);
  CHECK(expr::evaluate(dag::decode(p)).value == 15.0);
}

TEST_CASE("decode: readable trees whose value is the expression's", "[dag]") {
  CHECK(expr::to_text(dag::decode(plan_of("2.5*3.0 + 1.0"))) == "1 + 2.5*3");  // operands in slot order
  CHECK(expr::to_text(dag::decode(plan_of("10.0 - 2.0*3.0"))) == "10 - 2*3");
  CHECK(expr::to_text(dag::decode(plan_of("7.5/(2.5*3.0)"))) == "7.5/(2.5*3)");
  CHECK(expr::to_text(dag::decode(plan_of("2.0*2.0 + 2.0"))) == "2 + 2*2");
  CHECK(expr::to_text(dag::decode(plan_of("-5.3"))) == "-5.3");
  CHECK(expr::to_text(dag::decode(plan_of("-(2.5 + 1)"))) == "-(2.5 + 1)");
}

TEST_CASE("decode(encode(e)) has the value of e on 100,000 generated expressions", "[dag][slow]") {
  expr::GeneratorOptions o;
  int checked = 0;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    o.depth = 2 + static_cast<int>(i % 5);  // depths 2..6
    o.max_digits = 1 + static_cast<int>(i % 6);
    o.max_decimal_places = static_cast<int>(i % 7);
    const auto g = expr::generate(7, 0, i, o);
    const auto parsed = expr::parse(g.text);
    const auto v = expr::evaluate(parsed);
    if (!v.valid) continue;
    const auto plan = dag::encode(expr::normalize(parsed), Layout::reference(o.depth));
    const auto back = expr::evaluate(dag::decode(plan));
    INFO(g.text << " -> " << expr::to_text(dag::decode(plan)));
    REQUIRE(back.valid);
    REQUIRE(back.value == v.value);
    ++checked;
  }
  CHECK(checked > 99000);
}

namespace {
// Random plans in the region where both semantics are smooth (see the executor's header).
std::vector<Tensor<double>> random_plan(Generator& gen, Shape batch, int d, bool reference) {
  const int n = 2 * d;
  auto with = [&](std::initializer_list<std::int64_t> tail) {
    Shape s = batch;
    for (auto v : tail) s.push_back(v);
    return s;
  };
  auto sgn = [&](Shape s) {
    return where(gt(Tensor<double>::rand(s, gen), 0.5), Tensor<double>::scalar(1.0),
                 Tensor<double>::scalar(-1.0));
  };
  Tensor<double> mag = Tensor<double>::rand(with({n}), gen, 0.5, 3.0);
  Tensor<double> sign = mul(sgn(with({n})), Tensor<double>::rand(with({n}), gen, 0.5, 1.0));
  Tensor<double> o = mul(sgn(with({d, n})), Tensor<double>::rand(with({d, n}), gen, reference ? 0.05 : 0.1,
                                                                 reference ? 0.4 : 0.9));
  Tensor<double> g = Tensor<double>::rand(with({d}), gen, 0.05, 0.95);
  return {mag, sign, o, g};
}
}  // namespace

TEST_CASE("executor gradients match finite differences, both semantics", "[dag]") {
  Generator gen(31, 0);
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    for (int d : {1, 2, 4}) {
      INFO("depth " << d << " reference " << (sem == Semantics::reference));
      const auto in = random_plan(gen, {3}, d, sem == Semantics::reference);
      const auto r = grad_check(
          [sem](const std::vector<Var<double>>& v) { return dag::execute(v[0], v[1], v[2], v[3], sem); }, in,
          {1e-6, 1e-5, 1e-7});
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("the fused executor equals its composed twin: values and every gradient", "[dag]") {
  Generator gen(5, 0);
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    // depth 12: d * n = 288 > kWholeRows, O's rows and their gradients move step by step
    static_assert(12 * 24 > dag::detail::kWholeRows);
    // depths 4 and 8: the shapes compiled as constants (detail::with_shape)
    for (int d : {1, 3, 4, 6, 8, 12}) {
      INFO("depth " << d << " reference " << (sem == Semantics::reference));
      const auto in = random_plan(gen, {4, 5}, d, sem == Semantics::reference);
      std::vector<Var<double>> a;
      std::vector<Var<double>> b;
      for (const auto& t : in) {
        a.emplace_back(t.clone(), true);
        b.emplace_back(t.clone(), true);
      }
      const auto ya = dag::execute(a[0], a[1], a[2], a[3], sem);
      const auto yb = dag::execute_composed(b[0], b[1], b[2], b[3], sem);
      REQUIRE(ya.shape() == Shape{4, 5});
      CHECK(max(abs(ya.value() - yb.value())).item() <= 1e-12 * std::max(1.0, max(abs(yb.value())).item()));
      const auto w = Tensor<double>::rand({4, 5}, gen, 0.5, 1.5);
      ya.backward(w);
      yb.backward(w);
      for (std::size_t k = 0; k < 4; ++k) {
        INFO("input " << k);
        const double scale = std::max(1.0, max(abs(b[k].grad())).item());
        CHECK(max(abs(a[k].grad() - b[k].grad())).item() <= 1e-10 * scale);
      }
      // intermediate slots and masked O entries get no gradient
      CHECK(max(abs(a[0].grad().narrow(-1, d, d))).item() == 0.0);
      CHECK(max(abs(a[2].grad().select(-2, 0).narrow(-1, d, d))).item() == 0.0);
    }
  }
}

// On random plans the reference's log sign tanh(P / 1e-4) is saturated (P is a product of factors near 1),
// so its gradient is 0 there and the tests above never see it. Here step 0's P = (2 S0 |o0| + 1)(2 S1 |o1|
// + 1) = 0.1 * 0.0007 = 7e-5 (tanh(0.7)), with o's signs in all four combinations (d w / d o = 2 S sign o).
namespace {
// A batch of `count` plans of depth d and n slots from their rows back to back: V_mag, V_sign, O, G.
std::vector<Tensor<double>> plan_tensors(const std::vector<double>& vm, const std::vector<double>& vs,
                                         const std::vector<double>& o, const std::vector<double>& g,
                                         std::int64_t count, int d, int n) {
  return {Tensor<double>::from(vm, {count, n}), Tensor<double>::from(vs, {count, n}),
          Tensor<double>::from(o, {count, d, n}), Tensor<double>::from(g, {count, d})};
}
// Runs the fused reference executor and its composed twin on `in` with a ones output gradient, checks the
// values (1e-12) and the four input gradients (1e-10 of the largest) against the composed ones and the
// fused executor against finite differences; returns the fused executor's input gradients.
std::vector<Tensor<double>> checked_reference_grads(const std::vector<Tensor<double>>& in) {
  std::vector<Var<double>> a;
  std::vector<Var<double>> b;
  for (const auto& t : in) {
    a.emplace_back(t.clone(), true);
    b.emplace_back(t.clone(), true);
  }
  const auto ya = dag::execute(a[0], a[1], a[2], a[3], Semantics::reference);
  const auto yb = dag::execute_composed(b[0], b[1], b[2], b[3], Semantics::reference);
  CHECK(max(abs(ya.value() - yb.value())).item() <= 1e-12 * max(abs(yb.value())).item());
  ya.backward(Tensor<double>::ones(ya.value().shape()));
  yb.backward(Tensor<double>::ones(yb.value().shape()));
  std::vector<Tensor<double>> grads;
  for (std::size_t k = 0; k < 4; ++k) {
    INFO("input " << k);
    CHECK(max(abs(a[k].grad() - b[k].grad())).item() <= 1e-10 * max(abs(b[k].grad())).item());
    grads.push_back(a[k].grad());
  }
  const auto r = grad_check(
      [](const std::vector<Var<double>>& v) {
        return dag::execute(v[0], v[1], v[2], v[3], Semantics::reference);
      },
      in, {1e-7, 1e-5, 1e-7});
  INFO(r.report);
  CHECK(r.ok);
  return grads;
}
// O's gradient `go` at (step, slot) of DAG 0, where the sign factors' term dominates: larger than `least`,
// and of the other sign in DAG `flipped`, whose coefficient there has the other sign (d w / d o = 2 S sign
// o).
void check_sign_term(const Tensor<double>& go, std::int64_t step, std::int64_t slot, std::int64_t flipped,
                     double least) {
  INFO("O's gradient at step " << step << ", slot " << slot);
  CHECK(std::abs(go.at({0, step, slot})) > least);
  CHECK(go.at({0, step, slot}) * go.at({flipped, step, slot}) < 0);
}
// Each DAG of the batch `in`, run alone (reference semantics, a ones output gradient), gets exactly the
// input gradients `grads` gave it in the batch: its lanes' results do not depend on their neighbours.
void check_each_alone(const std::vector<Tensor<double>>& in, const std::vector<Tensor<double>>& grads) {
  for (std::int64_t i = 0; i < in[0].shape()[0]; ++i) {
    INFO("DAG " << i);
    std::vector<Var<double>> c;
    for (const auto& t : in) c.emplace_back(t.narrow(0, i, 1).clone(), true);
    dag::execute(c[0], c[1], c[2], c[3], Semantics::reference).backward(Tensor<double>::ones({1}));
    for (std::size_t k = 0; k < 4; ++k) {
      INFO("input " << k);
      CHECK(c[k].grad().to_vector() == grads[k].narrow(0, i, 1).to_vector());
    }
  }
}
}  // namespace

// The executor compiles its passes for the reference layout at depths 4 and 8 with the shape as constants
// (detail::with_shape); every other shape runs the general code. Both must give the same numbers, bit for
// bit, on one block of DAGs: values, the workspace, every gradient.
TEST_CASE("executor: the shapes compiled as constants equal the general code bit for bit", "[dag]") {
  namespace dd = dag::detail;
  Generator gen(19, 0);
  const auto same = [](const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
  };
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    const auto check = [&](auto D) {
      constexpr int d = decltype(D)::value;
      const int n = 2 * d;
      INFO("depth " << d << " reference " << (sem == Semantics::reference));
      auto in = random_plan(gen, {dd::kLanes}, d, sem == Semantics::reference);
      if (sem == Semantics::exact) {  // integral steps too (gate 0 or 1): the double-double path
        std::vector<double> o = in[2].to_vector();
        std::vector<double> g = in[3].to_vector();
        for (int i = 0; i < dd::kLanes; ++i) {
          for (int st = (i % 2); st < d; st += 2) {
            for (int j = 0; j < n; ++j) {
              double& c = o[static_cast<std::size_t>((i * d + st) * n + j)];
              c = std::round(4 * c);
            }
            g[static_cast<std::size_t>(i * d + st)] = (i + st) % 4 == 0 ? 1 : 0;
          }
        }
        in[2] = Tensor<double>::from(o, in[2].shape());
        in[3] = Tensor<double>::from(g, in[3].shape());
      }
      const dag::DagPlan<double> p{in[0], in[1], in[2], in[3]};
      const auto rows =
          dd::rows_at<const double>(p.V_mag.data(), p.V_sign.data(), p.O.data(), p.G.data(), 0, d, n);
      dd::Ahead ahead = dd::inputs_ahead(p, d, n);
      ahead.set_block(-1);  // no prefetch
      const std::vector<double> gout = Tensor<double>::rand({dd::kLanes}, gen, 0.5, 1.5).to_vector();
      // forward then backward with D, NI = (0, 0) (general) or (d, d): values, workspace, gradients
      const auto run = [&](auto fixed) {
        constexpr int kD = decltype(fixed)::value;
        std::vector<double> ws(static_cast<std::size_t>(dd::workspace_per_dag(sem, d, n) * dd::kLanes));
        const dd::vd v = sem == Semantics::exact
                             ? dd::exact_forward<double, kD, kD>(d, d, rows, ws.data(), false, ahead)
                             : dd::reference_forward<double, kD, kD>(d, d, rows, ws.data(), false, ahead);
        std::vector<double> out(ws);
        for (int l = 0; l < dd::kLanes; ++l) out.push_back(dd::lane(v, l));
        std::vector<std::vector<double>> g;
        for (const auto& t : in) g.emplace_back(static_cast<std::size_t>(t.numel()), -1.0);
        const auto grows = dd::rows_at(g[0].data(), g[1].data(), g[2].data(), g[3].data(), 0, d, n);
        const dd::vd go = dd::vload(gout.data());
        if (sem == Semantics::exact) {
          dd::exact_backward<double, kD, kD>(d, d, rows, ws.data(), go, grows, ahead, false);
        } else {
          dd::reference_backward<double, kD, kD>(d, d, rows, ws.data(), go, grows, ahead, false);
        }
        for (const auto& x : g) out.insert(out.end(), x.begin(), x.end());
        return out;
      };
      const std::vector<double> general = run(std::integral_constant<int, 0>{});
      const std::vector<double> fixed = run(std::integral_constant<int, d>{});
      CHECK(same(general, fixed));
      // and the dispatch picks the compiled shape
      int picked = -1;
      dd::with_shape(d, d, [&](auto kD, auto) { picked = decltype(kD)::value; });
      CHECK(picked == d);
    };
    check(std::integral_constant<int, 4>{});
    check(std::integral_constant<int, 8>{});
  }
  int picked = -1;
  dd::with_shape(4, 5, [&](auto kD, auto kNI) { picked = decltype(kD)::value + decltype(kNI)::value; });
  CHECK(picked == 0);  // HEAD's layout at depth 4: the general code
}

// The executor's own vector log, exp and tanh(v / 1e-4) (its header promises log and exp within 1 ulp,
// tanh within a few): lane by lane against the C library, over the whole range of each, and the lanes
// that the vector paths leave to the C library (zero, subnormals, infinities, |x| > 708) exactly.
TEST_CASE("executor: its vector log, exp and tanh agree with the C library", "[dag]") {
  namespace dd = dag::detail;
  const auto ulps = [](double got, double want) {  // |got - want| in units of want's last place
    if (got == want) return 0.0;
    if (!std::isfinite(got) || !std::isfinite(want)) return 1e300;
    const double a = std::abs(want);
    return std::abs(got - want) / (std::nextafter(a, INFINITY) - a);
  };
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mant(1, 2);
  std::uniform_int_distribution<int> expo(-1074, 1023);
  std::uniform_real_distribution<double> wide(-708, 708);
  std::uniform_real_distribution<double> narrow(-2, 2);
  std::uniform_real_distribution<double> sign_arg(-0.0025, 0.0025);
  double worst_log = 0;
  double worst_exp = 0;
  double worst_tanh = 0;
  double worst_tanh_abs = 0;
  for (int it = 0; it < 100000; ++it) {
    dd::vd x{};
    dd::vd y{};
    dd::vd z{};
    for (int l = 0; l < dd::kLanes; ++l) {
      dd::set_lane(x, l, std::ldexp(mant(rng), expo(rng)));  // subnormals included
      dd::set_lane(y, l, it % 2 == 0 ? wide(rng) : narrow(rng));
      dd::set_lane(z, l, sign_arg(rng));
    }
    const dd::vd lx = dd::vlog(x);
    const dd::vd ey = dd::vexp(y);
    const dd::vd tz = it % 2 == 0 ? dd::vtanh_scaled(z) : dd::vtanh_scaled_all(z);
    for (int l = 0; l < dd::kLanes; ++l) {
      worst_log = std::max(worst_log, ulps(dd::lane(lx, l), std::log(dd::lane(x, l))));
      worst_exp = std::max(worst_exp, ulps(dd::lane(ey, l), std::exp(dd::lane(y, l))));
      const double t = std::tanh(dd::lane(z, l) / 1e-4);
      worst_tanh = std::max(worst_tanh, ulps(dd::lane(tz, l), t));
      worst_tanh_abs = std::max(worst_tanh_abs, std::abs(dd::lane(tz, l) - t));
    }
  }
  CHECK(worst_log <= 1.0);
  CHECK(worst_exp <= 1.0);
  CHECK(worst_tanh <= 8.0);
  CHECK(worst_tanh_abs <= 0x1p-51);
  // lanes outside the vector paths (the first four: the C library's value exactly), beside ordinary ones
  const double lin[] = {0.0, 4.9e-324, 2.2e-308, INFINITY, 1.0, 0.5, 3.0, 1e300};
  const double ein[] = {709.5, -720.0, 800.0, -800.0, 0.0, 1.0, -1.0, 700.0};
  for (int first = 0; first < 8; first += dd::kLanes) {
    dd::vd a{};
    dd::vd b{};
    for (int l = 0; l < dd::kLanes; ++l) {
      dd::set_lane(a, l, lin[first + l]);
      dd::set_lane(b, l, ein[first + l]);
    }
    const dd::vd la = dd::vlog(a);
    const dd::vd eb = dd::vexp(b);
    for (int l = 0; l < dd::kLanes; ++l) {
      INFO("log(" << lin[first + l] << "), exp(" << ein[first + l] << ")");
      const double bound = first + l < 4 ? 0.0 : 1.0;
      CHECK(ulps(dd::lane(la, l), std::log(lin[first + l])) <= bound);
      CHECK(ulps(dd::lane(eb, l), std::exp(ein[first + l])) <= bound);
    }
  }
  // tanh(v / 1e-4) where it is exact: zeros keep their sign, saturation (from |v / 1e-4| = 20 on) and
  // infinities give +-1, NaN stays NaN; both entry points (with and without the all-saturated shortcut)
  const double tin[] = {0.0, -0.0, 0.002, -0.0025, INFINITY, -INFINITY, 1e300, NAN};
  for (int first = 0; first < 8; first += dd::kLanes) {
    dd::vd z{};
    for (int l = 0; l < dd::kLanes; ++l) dd::set_lane(z, l, tin[first + l]);
    const dd::vd t1 = dd::vtanh_scaled(z);
    const dd::vd t2 = dd::vtanh_scaled_all(z);
    for (int l = 0; l < dd::kLanes; ++l) {
      const double want = std::tanh(tin[first + l] / 1e-4);
      INFO("tanh(" << tin[first + l] << " / 1e-4)");
      for (const double got : {dd::lane(t1, l), dd::lane(t2, l)}) {
        if (std::isnan(want)) {
          CHECK(std::isnan(got));
        } else {
          CHECK(got == want);
          CHECK(std::signbit(got) == std::signbit(want));
        }
      }
    }
  }
}

TEST_CASE("reference executor: gradients through an unsaturated log sign", "[dag]") {
  const int d = 2;
  const int n = 4;
  const std::vector<double> signs{-1, -1, 1, -1, -1, 1, 1, 1};  // o0, o1 per DAG
  std::vector<double> vm;
  std::vector<double> vs;
  std::vector<double> o;
  std::vector<double> g;
  for (int i = 0; i < 4; ++i) {
    vm.insert(vm.end(), {1.3, 0.7, 0, 0});
    vs.insert(vs.end(), {-0.5, -0.5, 0, 0});
    o.insert(o.end(), {signs[2 * i] * 0.9, signs[2 * i + 1] * 0.9993, 0, 0, 0.4, -0.2, 0.3, 0});
    g.insert(g.end(), {0.3, 0.6});
  }
  const auto in = plan_tensors(vm, vs, o, g, 4, d, n);
  // the sign factors' gradient is there and large: d y / d o1 of step 0 differs with o1's sign
  check_sign_term(checked_reference_grads(in)[2], 0, 1, 2, 1.0);
}

// The sign factors' gradient dP * prod_{k != j} w_k is P / w_j where P is a normal number and the product of
// the other factors where a factor is exactly 0 (P = 0): lanes of both kinds, and saturated ones, share
// blocks here; every DAG must get the composed executor's gradient and the one it gets alone.
TEST_CASE("reference executor: a sign factor of exactly zero beside dividing and saturated lanes", "[dag]") {
  const int d = 2;
  const int n = 4;
  const std::int64_t count = 11;
  std::vector<double> vm;
  std::vector<double> vs;
  std::vector<double> o;
  std::vector<double> g;
  for (std::int64_t i = 0; i < count; ++i) {
    const double sgn = i % 2 == 0 ? 1.0 : -1.0;
    vm.insert(vm.end(), {1.3, 0.7, 0, 0});
    if (i % 3 == 0) {  // w_0 = 2 * -0.5 * 1 + 1 = 0: P = 0, tanh(P/1e-4) = 0
      vs.insert(vs.end(), {-0.5, 0.8, 0, 0});
      o.insert(o.end(), {sgn * 1.0, 0.6, 0, 0, 0.4, -0.2, 0.3, 0});
    } else if (i % 3 == 1) {  // P = 0.1 * 7e-4 = 7e-5: tanh(0.7), by division
      vs.insert(vs.end(), {-0.5, -0.5, 0, 0});
      o.insert(o.end(), {sgn * 0.9, -0.9993, 0, 0, 0.4, -0.2, 0.3, 0});
    } else {  // P = 2.44 * 1.96: tanh saturated, dP = 0
      vs.insert(vs.end(), {0.8, 0.8, 0, 0});
      o.insert(o.end(), {sgn * 0.9, 0.6, 0, 0, 0.4, -0.2, 0.3, 0});
    }
    g.insert(g.end(), {0.3, 0.6});
  }
  const auto in = plan_tensors(vm, vs, o, g, count, d, n);
  const auto grads = checked_reference_grads(in);
  // the zero factor's own coefficient gets dP * w_1 * 2S sign(o): large, with o's sign flipping it
  check_sign_term(grads[2], 0, 0, 3, 50.0);
  check_each_alone(in, grads);
}

// Steps that read kProductsFrom or more slots pass the sign factors' gradients by products of the other
// factors (no division), in every lane. Step 3 of these depth-5 plans reads 8 slots, all with nonzero
// coefficients, and its P is 0.1 * 0.0007 * (factors near 1) ~ 7e-5 (unsaturated), with o0, o1's signs in
// all four combinations; beside them a lane with a factor of exactly 0 and a saturated one.
TEST_CASE("reference executor: unsaturated log signs in rows of 8 or more factors", "[dag]") {
  const int d = 5;
  const int n = 10;
  static_assert(5 + 3 >= dag::detail::kProductsFrom);
  const double s0[] = {-1, 1, -1, 1, 1, 1};  // o0's and o1's signs per DAG
  const double s1[] = {-1, -1, 1, 1, 1, 1};
  const std::int64_t count = 6;
  std::vector<double> vm;
  std::vector<double> vs;
  std::vector<double> o;
  std::vector<double> g;
  for (std::int64_t i = 0; i < count; ++i) {
    vm.insert(vm.end(), {1.3, 0.7, 1.1, 0.9, 1.2, 0, 0, 0, 0, 0});
    if (i == 5) {  // saturated: w0 = 2.44, w1 = 2.6
      vs.insert(vs.end(), {0.8, 0.8, 0.8, -0.7, 0.6, 0, 0, 0, 0, 0});
    } else {
      vs.insert(vs.end(), {-0.5, -0.5, 0.8, -0.7, 0.6, 0, 0, 0, 0, 0});
    }
    const double o0 = i == 4 ? 1.0 : 0.9;  // DAG 4: w0 = 2 * -0.5 * 1 + 1 = 0, P = 0
    o.insert(o.end(), {0.4, -0.2, 0.3, 0.1, -0.3, 0, 0, 0, 0, 0});
    o.insert(o.end(), {0.2, 0.1, -0.4, 0.3, 0.2, 0.5, 0, 0, 0, 0});
    o.insert(o.end(), {-0.3, 0.2, 0.1, 0.2, -0.1, 0.3, 0.4, 0, 0, 0});
    o.insert(o.end(), {s0[i] * o0, s1[i] * 0.9993, 0.01, -0.01, 0.01, 0.01, -0.01, 0.01, 0, 0});
    o.insert(o.end(), {0.5, 0.3, -0.2, 0.1, 0.2, 0.1, -0.1, 0.3, 0.2, 0});
    g.insert(g.end(), {0.3, 0.6, 0.4, 0.5, 0.7});
  }
  const auto in = plan_tensors(vm, vs, o, g, count, d, n);
  const auto grads = checked_reference_grads(in);
  // the sign factors' gradient is there and large: d y / d o1 of step 3 differs with o1's sign
  check_sign_term(grads[2], 3, 1, 2, 1.0);
  check_each_alone(in, grads);
}

// backward reads the workspace that forward saved: a retained graph must find it intact the second time.
TEST_CASE("executor backward: a retained graph runs again, a zero output gradient gives zero rows", "[dag]") {
  Generator gen(9, 0);
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    INFO("reference " << (sem == Semantics::reference));
    const auto in = random_plan(gen, {10}, 3, sem == Semantics::reference);
    std::vector<Var<double>> a;
    for (const auto& t : in) a.emplace_back(t, true);
    const auto y = dag::execute(a[0], a[1], a[2], a[3], sem);
    std::vector<double> wv = Tensor<double>::rand({10}, gen, 0.5, 1.5).to_vector();
    wv[3] = 0;
    const auto w = Tensor<double>::from(wv, {10});
    y.backward(w, true);
    std::vector<Tensor<double>> first;
    for (auto& v : a) {
      first.push_back(v.grad().clone());
      v.zero_grad();
    }
    y.backward(mul(w, Tensor<double>::scalar(2.0)));
    for (std::size_t k = 0; k < 4; ++k) {
      INFO("input " << k);
      CHECK(max(abs(a[k].grad() - mul(first[k], Tensor<double>::scalar(2.0)))).item() == 0.0);
      CHECK(max(abs(first[k])).item() > 0.0);
      CHECK(max(abs(first[k].select(0, 3))).item() == 0.0);
    }
    CHECK_THROWS_WITH(y.backward(w), Contains("already freed"));
  }
}

// The executor runs DAGs in blocks of SIMD lanes (2 or 4; a short last block repeats its last DAG): every
// DAG of a batch must get exactly what it gets alone, whatever its neighbours take (double-double or
// plain steps, zero magnitudes, coefficients beyond 2, gates 0/1), and masked entries must stay zero.
TEST_CASE("executor blocks: each DAG of a batch as if alone, odd batch sizes", "[dag]") {
  Generator gen(77, 0);
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    for (const Layout layout : {Layout::reference(4), Layout::head(3)}) {
      for (const std::int64_t count : {1, 6, 7, 13}) {
        const int d = layout.depth;
        const int n = layout.nodes();
        INFO("reference " << (sem == Semantics::reference) << " n " << n << " count " << count);
        std::vector<double> vm = Tensor<double>::rand({count, n}, gen, 0.5, 3.0).to_vector();
        std::vector<double> vs = Tensor<double>::rand({count, n}, gen, -1.0, 1.0).to_vector();
        std::vector<double> o = Tensor<double>::rand({count, d, n}, gen, -2.5, 2.5).to_vector();
        std::vector<double> g = Tensor<double>::rand({count, d}, gen, 0.0, 1.0).to_vector();
        for (std::int64_t i = 0; i < count; ++i) {
          for (int s = 0; s < d; ++s) {
            double* row = o.data() + (i * d + s) * n;
            if ((i + s) % 3 == 0) {  // an integral step (double-double in exact mode), gate 0 or 1
              for (int j = 0; j < n; ++j) row[j] = std::round(row[j]);
              g[static_cast<std::size_t>(i * d + s)] = static_cast<double>((i + s) % 2);
            }
          }
          if (i % 4 == 1) vm[static_cast<std::size_t>(i * n)] = 0;  // a zero magnitude
          if (i % 5 == 2) vs[static_cast<std::size_t>(i * n + 1)] = 1;
        }
        const auto in = plan_tensors(vm, vs, o, g, count, d, n);
        const Tensor<double> w = Tensor<double>::rand({count}, gen, 0.5, 1.5);
        std::vector<Var<double>> a;
        for (const auto& t : in) a.emplace_back(t, true);
        const auto y = dag::execute(a[0], a[1], a[2], a[3], sem);
        y.backward(w);
        const auto values = dag::execute_values(dag::DagPlan<double>{in[0], in[1], in[2], in[3]}, sem);
        CHECK(values.to_vector() == y.value().to_vector());
        for (std::int64_t i = 0; i < count; ++i) {
          INFO("DAG " << i);
          std::vector<Var<double>> b;
          for (const auto& t : in) b.emplace_back(t.narrow(0, i, 1).clone(), true);
          const auto yi = dag::execute(b[0], b[1], b[2], b[3], sem);
          yi.backward(w.narrow(0, i, 1).clone());
          CHECK(yi.value().item() == y.value().to_vector()[static_cast<std::size_t>(i)]);
          for (std::size_t k = 0; k < 4; ++k) {
            INFO("input " << k);
            CHECK(b[k].grad().to_vector() == a[k].grad().narrow(0, i, 1).to_vector());
          }
        }
        // no gradient for the intermediate slots and the masked O entries, in every lane
        const int n_init = layout.n_init;
        CHECK(max(abs(a[0].grad().narrow(-1, n_init, d))).item() == 0.0);
        CHECK(max(abs(a[1].grad().narrow(-1, n_init, d))).item() == 0.0);
        for (int s = 0; s < d; ++s)
          CHECK(max(abs(a[2].grad().select(-2, s).narrow(-1, n_init + s, d - s))).item() == 0.0);
      }
    }
  }
}

// 32,768 DAGs of depth 8 have a workspace of over 8 MB and gradients of over 1 MB, which the executor
// writes non-temporally; pieces of 512 DAGs are written through the cache. Both must give the same numbers.
TEST_CASE("executor: a batch large enough to stream its workspace and gradients equals its pieces", "[dag]") {
  Generator gen(31, 0);
  const std::int64_t count = 32768;
  const std::int64_t piece = 512;
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    INFO("reference " << (sem == Semantics::reference));
    const auto in = random_plan(gen, {count}, 8, sem == Semantics::reference);
    const Tensor<double> w = Tensor<double>::rand({count}, gen, 0.5, 1.5);
    std::vector<Var<double>> a;
    for (const auto& t : in) a.emplace_back(t, true);
    const auto y = dag::execute(a[0], a[1], a[2], a[3], sem);
    y.backward(w);
    for (std::int64_t first = 0; first < count; first += piece) {
      INFO("DAGs from " << first);
      std::vector<Var<double>> b;
      for (const auto& t : in) b.emplace_back(t.narrow(0, first, piece).clone(), true);
      const auto yp = dag::execute(b[0], b[1], b[2], b[3], sem);
      yp.backward(w.narrow(0, first, piece).clone());
      // exact equality, as one number each (a failing comparison of whole vectors would print them)
      CHECK(max(abs(yp.value() - y.value().narrow(0, first, piece))).item() == 0.0);
      for (std::size_t k = 0; k < 4; ++k) {
        INFO("input " << k);
        CHECK(max(abs(b[k].grad() - a[k].grad().narrow(0, first, piece))).item() == 0.0);
      }
    }
  }
}

TEST_CASE("parallel_blocks (the executor's schedule): every block runs once, in runs of consecutive blocks",
          "[dag]") {
  // Threads take their own share chunk by chunk, then the rest of the others' shares: whatever the
  // interleaving, each block is passed exactly once, within [b, e) ranges that stay inside [0, n).
  for (std::int64_t n : {1, 2, 7, 64, 1000, 100003}) {
    INFO("n = " << n);
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
    std::atomic<int> calls{0};
    std::atomic<bool> bad_range{false};
    parallel_blocks(n, std::int64_t{1} << 40, [&](std::int64_t b, std::int64_t e) {
      if (!(0 <= b && b < e && e <= n)) bad_range = true;
      for (std::int64_t k = b; k < e; ++k) seen[static_cast<std::size_t>(k)].fetch_add(1);
      calls.fetch_add(1);
    });
    CHECK_FALSE(bad_range);
    int wrong = 0;
    for (const auto& c : seen) wrong += c.load() != 1;
    CHECK(wrong == 0);
    CHECK(calls.load() >= 1);
    CHECK(calls.load() <= n);
  }
}

// Float plans run in double inside: their values and gradients are exactly those of the same plans as
// double (the float inputs converted, the float upstream gradient too), rounded once to float; batches
// with full blocks and a partial last block, at two depths.
TEST_CASE("executor: float plans give the double results rounded to float, values and gradients", "[dag]") {
  Generator gen(41, 0);
  for (Semantics sem : {Semantics::exact, Semantics::reference}) {
    for (const int d : {4, 8}) {
      for (const std::int64_t count : {std::int64_t{37}, std::int64_t{1000}}) {
        INFO("reference " << (sem == Semantics::reference) << " depth " << d << " count " << count);
        const auto in = random_plan(gen, {count}, d, sem == Semantics::reference);
        const Tensor<float> w = Tensor<double>::rand({count}, gen, 0.5, 1.5).to<float>();
        std::vector<Var<float>> f;
        std::vector<Var<double>> x;
        for (const auto& t : in) {
          const Tensor<float> tf = t.to<float>();
          f.emplace_back(tf, true);
          x.emplace_back(tf.to<double>(), true);
        }
        const auto yf = dag::execute(f[0], f[1], f[2], f[3], sem);
        const auto yx = dag::execute(x[0], x[1], x[2], x[3], sem);
        yf.backward(w);
        yx.backward(w.to<double>());
        // entries that differ (a NaN, which deep reference plans can make, equals a NaN)
        const auto differing = [](const Tensor<float>& a, const Tensor<float>& b) {
          const auto u = a.to_vector();
          const auto v = b.to_vector();
          std::int64_t c = 0;
          for (std::size_t i = 0; i < u.size(); ++i)
            c += !(u[i] == v[i] || (std::isnan(u[i]) && std::isnan(v[i])));
          return c;
        };
        CHECK(differing(yf.value(), yx.value().to<float>()) == 0);
        for (std::size_t k = 0; k < 4; ++k) {
          INFO("input " << k);
          CHECK(differing(f[k].grad(), x[k].grad().to<float>()) == 0);
          const auto gk = f[k].grad().to_vector();
          const auto finite = std::count_if(gk.begin(), gk.end(), [](float v) { return std::isfinite(v); });
          CHECK(finite * 100 >= static_cast<std::int64_t>(gk.size()) * 99);  // not a comparison of NaNs
        }
      }
    }
  }
}

TEST_CASE("execute: float plans, shape errors", "[dag]") {
  auto p = plan_of("-4.0*(1.5 - 2.0*3.0)").to<float>();
  CHECK(dag::execute_values(p).item() == 18.0F);
  Var<float> m(p.V_mag), s(p.V_sign), o(p.O), g(p.G);
  CHECK(dag::execute(m, s, o, g).item() == 18.0F);
  CHECK_THROWS_WITH(dag::execute_values(dag::DagPlan<double>{
                        Tensor<double>::zeros({2, 8}), Tensor<double>::zeros({2, 8}),
                        Tensor<double>::zeros({2, 4, 7}), Tensor<double>::zeros({2, 4})}),
                    Contains("O has shape [2, 4, 7], expected [2, 4, 8]"));
  const auto z = dag::DagPlan<double>::zeros({2, 3}, Layout::reference(4));
  CHECK(dag::execute_values(z).to_vector() == std::vector<double>(6, 0.0));  // the zero plan executes to 0
}

namespace {
struct SweepResult {
  int expressions = 0;
  int failures = 0;
  double worst = 0;         // relative error against the criterion's value
  int decimal_outside = 0;  // exact mode: beyond 1e-12 of the decimal value (the inputs' rounding)
  double worst_decimal = 0;
  std::string example;
};
// Every distinct valid prefix (at every character boundary) of the generated texts.
SweepResult sweep(int depth, int digits, Semantics sem) {
  const bool ref = sem == Semantics::reference;
  expr::GeneratorOptions o;
  o.depth = depth;
  o.max_digits = digits;
  o.max_decimal_places = digits;
  std::set<std::string> seen;
  SweepResult r;
  for (std::uint64_t seed = 0; seed < 1000; ++seed) {
    const auto g = expr::generate(seed, expr::kTrainStream, 0, o);
    std::vector<std::size_t> ends;
    for (std::size_t e = 1; e <= g.text.size(); ++e) ends.push_back(e);
    for (const auto& p : expr::prefixes_at(g.text, ends)) {
      if (!p.valid || !seen.insert(p.parsed).second) continue;
      const auto plan = dag::encode(expr::normalize(p.expr, {ref}), Layout::reference(depth), {ref});
      const double got = dag::execute_values(plan, sem).item();
      // Exact mode is held to 1e-12 of the exact value of its double inputs: a double plan cannot
      // carry the decimals, and under cancellation their rounding alone can exceed 1e-12 (counted).
      const double want = ref ? p.value : expr::evaluate(p.expr, expr::Literals::binary).value;
      const double err = std::abs(got - want);
      const double rel = want == 0 ? err : err / std::abs(want);
      const bool ok = ref ? (err < 1e-3 || rel < 1e-3) : rel <= 1e-12;
      if (!ref) {
        const double dec = p.value == 0 ? std::abs(got) : std::abs(got - p.value) / std::abs(p.value);
        r.worst_decimal = std::max(r.worst_decimal, dec);
        r.decimal_outside += dec > 1e-12 ? 1 : 0;
      }
      r.worst = std::max(r.worst, rel);
      ++r.expressions;
      if (!ok) {
        ++r.failures;
        if (r.example.empty()) r.example = fmt::format("{} = {} but executed {}", p.parsed, p.value, got);
      }
    }
  }
  return r;
}
}  // namespace

TEST_CASE("acceptance sweep: depth 6, 6/6 digits, 1000 seeds, every valid prefix", "[dag][sweep]") {
  const auto exact = sweep(6, 6, Semantics::exact);
  INFO(exact.example);
  WARN("exact: " << exact.expressions << " expressions, worst relative error " << exact.worst
                 << " (vs the decimal value: worst " << exact.worst_decimal << ", " << exact.decimal_outside
                 << " beyond 1e-12)");
  CHECK(exact.expressions > 15000);
  CHECK(exact.failures == 0);
  const auto ref = sweep(6, 6, Semantics::reference);
  INFO(ref.example);
  WARN("reference: " << ref.expressions << " expressions, " << ref.failures << " outside 1e-3");
  CHECK(ref.failures == 0);
}

TEST_CASE("acceptance sweep: depth 4, 4/4 digits", "[dag][sweep]") {
  const auto exact = sweep(4, 4, Semantics::exact);
  INFO(exact.example);
  CHECK(exact.expressions > 10000);
  CHECK(exact.failures == 0);
  const auto ref = sweep(4, 4, Semantics::reference);
  INFO(ref.example);
  CHECK(ref.failures == 0);
}
