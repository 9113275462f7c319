// nn/, optim/ and the model side of dag/: every fused op against finite differences in double (grad_check),
// values against direct formulas, module names and shapes, the plan losses in both modes, the whole model's
// parameter gradients against finite differences, AdamW, the LR schedule and clipping.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "dagpt/autograd/grad_check.hpp"
#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/loss.hpp"
#include "dagpt/dag/model.hpp"
#include "dagpt/expr/normalize.hpp"
#include "dagpt/expr/parser.hpp"
#include "dagpt/nn/layers.hpp"
#include "dagpt/optim/adamw.hpp"

using dagpt::Generator;
using dagpt::Shape;
using dagpt::Tensor;
using dagpt::Var;
using TD = Tensor<double>;
using VD = Var<double>;

namespace {

TD randn(const Shape& s, std::uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return TD::randn(s, g, 0.0, scale);
}

void require_grads(const std::function<VD(const std::vector<VD>&)>& f, const std::vector<TD>& in,
                   double rtol = 1e-5) {
  dagpt::GradCheckOptions o;
  o.rtol = rtol;
  const auto r = dagpt::grad_check(f, in, o);
  INFO(r.report);
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

dagpt::nn::DropoutDraw draw(double p, std::uint64_t first = 0) {
  dagpt::nn::DropoutDraw d;
  d.p = p;
  d.gen = Generator(7, 3);
  d.first = first;
  return d;
}

}  // namespace

TEST_CASE("linear: values and gradients, with and without bias", "[nn]") {
  const TD x = randn({2, 3, 4}, 1), w = randn({5, 4}, 2), b = randn({5}, 3);
  const VD y = dagpt::nn::linear(VD(x), VD(w), VD(b));
  REQUIRE(y.shape() == Shape({2, 3, 5}));
  for (int i = 0; i < 6; ++i) {
    for (int o = 0; o < 5; ++o) {
      double want = b.data()[o];
      for (int k = 0; k < 4; ++k) want += x.data()[i * 4 + k] * w.data()[o * 4 + k];
      REQUIRE(y.value().data()[i * 5 + o] == Approx(want).epsilon(1e-12));
    }
  }
  require_grads([](const std::vector<VD>& v) { return dagpt::nn::linear(v[0], v[1], v[2]); }, {x, w, b});
  require_grads([](const std::vector<VD>& v) { return dagpt::nn::linear(v[0], v[1]); }, {x, w});
  REQUIRE_THROWS_WITH(dagpt::nn::linear(VD(x), VD(randn({5, 3}, 4))),
                      Catch::Contains("input has shape [2, 3, 4], its last axis must be 3"));
}

TEST_CASE("embedding: rows, scatter-add gradient into the used rows, index errors", "[nn]") {
  const TD w = randn({6, 3}, 5);
  const auto idx = Tensor<std::int64_t>::from({1, 4, 1, 0}, {2, 2});
  const VD y = dagpt::nn::embedding(VD(w), idx);
  REQUIRE(y.shape() == Shape({2, 2, 3}));
  REQUIRE(y.value().data()[3 * 1 + 2] == w.data()[4 * 3 + 2]);
  require_grads([&](const std::vector<VD>& v) { return dagpt::nn::embedding(v[0], idx); }, {w});
  VD wv(w, true);
  dagpt::sum(dagpt::nn::embedding(wv, idx)).backward();
  REQUIRE(wv.grad().data()[1 * 3] == 2.0);  // row 1 used twice
  REQUIRE(wv.grad().data()[5 * 3] == 0.0);  // row 5 unused
  const auto bad = Tensor<std::int64_t>::from({1, 6}, {1, 2});
  REQUIRE_THROWS_WITH(dagpt::nn::embedding(VD(w), bad),
                      Catch::Contains("index 6 at flat position 1") && Catch::Contains("outside [0, 6)"));
}

TEST_CASE("layer_norm: normalised rows and gradients", "[nn]") {
  const TD x = randn({3, 2, 7}, 6, 3.0), w = randn({7}, 7), b = randn({7}, 8);
  const VD y = dagpt::nn::layer_norm(VD(x), VD(TD::ones({7})));
  for (int r = 0; r < 6; ++r) {
    double mu = 0, var = 0;
    for (int j = 0; j < 7; ++j) mu += x.data()[r * 7 + j] / 7;
    for (int j = 0; j < 7; ++j) var += (x.data()[r * 7 + j] - mu) * (x.data()[r * 7 + j] - mu) / 7;
    for (int j = 0; j < 7; ++j) {
      REQUIRE(y.value().data()[r * 7 + j] ==
              Approx((x.data()[r * 7 + j] - mu) / std::sqrt(var + 1e-5)).epsilon(1e-12));
    }
  }
  require_grads([](const std::vector<VD>& v) { return dagpt::nn::layer_norm(v[0], v[1], v[2]); }, {x, w, b});
  require_grads([](const std::vector<VD>& v) { return dagpt::nn::layer_norm(v[0], v[1]); }, {x, w});
}

TEST_CASE("gelu: exact erf formula and gradient", "[nn]") {
  const TD x = randn({50}, 9, 2.5);
  const VD y = dagpt::nn::gelu(VD(x));
  for (int i = 0; i < 50; ++i) {
    const double v = x.data()[i];
    REQUIRE(y.value().data()[i] ==
            Approx(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))).epsilon(1e-13).margin(1e-15));
  }
  require_grads([](const std::vector<VD>& v) { return dagpt::nn::gelu(v[0]); }, {x});
}

TEST_CASE("dropout: keeps about 1 - p, scales by 1 / (1 - p), same mask for the same counters", "[nn]") {
  const TD x = TD::ones({4000});
  const VD y = dagpt::nn::dropout(VD(x), draw(0.25));
  std::int64_t kept = 0;
  for (int i = 0; i < 4000; ++i) {
    const double v = y.value().data()[i];
    REQUIRE((v == 0.0 || v == Approx(1 / 0.75).epsilon(1e-15)));
    kept += v != 0.0;
  }
  REQUIRE(kept > 2850);
  REQUIRE(kept < 3150);
  const VD y2 = dagpt::nn::dropout(VD(x), draw(0.25));
  REQUIRE(y2.value().to_vector() == y.value().to_vector());
  const VD y3 = dagpt::nn::dropout(VD(x), draw(0.25, 1000));
  REQUIRE(y3.value().to_vector() != y.value().to_vector());
  require_grads([](const std::vector<VD>& v) { return dagpt::nn::dropout(v[0], draw(0.3)); },
                {randn({3, 5}, 10)});
  REQUIRE_THROWS_WITH(dagpt::nn::dropout(VD(x), draw(1.0)), Catch::Contains("p = 1 must be in [0, 1)"));
}

TEST_CASE("causal self-attention: values against a direct computation, gradients with and without dropout",
          "[nn]") {
  const std::int64_t B = 2, T = 5, C = 8, H = 2, hs = C / H;
  const TD qkv = randn({B, T, 3 * C}, 11);
  const VD y = dagpt::nn::causal_self_attention(VD(qkv), H);
  REQUIRE(y.shape() == Shape({B, T, C}));
  auto at = [&](std::int64_t b, std::int64_t t, std::int64_t c) {
    return qkv.data()[(b * T + t) * 3 * C + c];
  };
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t t = 0; t < T; ++t) {
        std::vector<double> s(static_cast<std::size_t>(t + 1));
        double mx = -1e300, z = 0;
        for (std::int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (std::int64_t i = 0; i < hs; ++i) dot += at(b, t, h * hs + i) * at(b, u, C + h * hs + i);
          s[static_cast<std::size_t>(u)] = dot / std::sqrt(static_cast<double>(hs));
          mx = std::max(mx, s[static_cast<std::size_t>(u)]);
        }
        for (auto& v : s) z += (v = std::exp(v - mx));
        for (std::int64_t i = 0; i < hs; ++i) {
          double want = 0;
          for (std::int64_t u = 0; u <= t; ++u)
            want += s[static_cast<std::size_t>(u)] / z * at(b, u, 2 * C + h * hs + i);
          REQUIRE(y.value().data()[(b * T + t) * C + h * hs + i] == Approx(want).epsilon(1e-12));
        }
      }
    }
  }
  require_grads([&](const std::vector<VD>& v) { return dagpt::nn::causal_self_attention(v[0], H); }, {qkv});
  require_grads(
      [&](const std::vector<VD>& v) { return dagpt::nn::causal_self_attention(v[0], H, draw(0.2)); }, {qkv});
  REQUIRE_THROWS_WITH(dagpt::nn::causal_self_attention(VD(randn({1, 2, 9}, 1)), 2),
                      Catch::Contains("C divisible by 2 heads"));
}

TEST_CASE("GPT backbone: nanoGPT parameter names, counts, shapes and config errors", "[nn]") {
  dagpt::dag::ModelConfig cfg;
  cfg.gpt = {64, 16, 2, 4, 32, 0.0, true};
  cfg.dag_depth = 4;
  dagpt::dag::PredictorModel<float> model(cfg, 1);
  std::vector<std::string> names;
  for (auto& [n, p] : model.named_parameters()) names.push_back(n);
  REQUIRE(names.front() == "transformer.wte.weight");
  REQUIRE(names[1] == "transformer.wpe.weight");
  REQUIRE(names[2] == "transformer.h.0.ln_1.weight");
  REQUIRE(std::find(names.begin(), names.end(), "transformer.h.1.attn.c_attn.weight") != names.end());
  REQUIRE(std::find(names.begin(), names.end(), "transformer.h.1.mlp.c_proj.bias") != names.end());
  REQUIRE(std::find(names.begin(), names.end(), "transformer.ln_f.bias") != names.end());
  REQUIRE(names.back() == "dag_predictor.G_predictor.bias");
  const std::int64_t C = 32, per_block = 2 * 2 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) +
                                         (4 * C * C + C);
  const std::int64_t head = (8 + 8 + 32 + 4) * (C + 1);
  REQUIRE(model.num_parameters() == 64 * C + 16 * C + 2 * per_block + 2 * C + head);
  // Init: c_proj weights have the smaller std, LayerNorm weights are 1, biases 0.
  auto stddev = [](const Var<float>& p) {
    double s = 0;
    for (std::int64_t i = 0; i < p.numel(); ++i)
      s += static_cast<double>(p.value().data()[i]) * p.value().data()[i];
    return std::sqrt(s / static_cast<double>(p.numel()));
  };
  REQUIRE(stddev(model.transformer.wte.weight) == Approx(0.02).epsilon(0.05));
  REQUIRE(stddev(model.transformer.h[0]->mlp.c_proj.weight) == Approx(0.01).epsilon(0.05));
  REQUIRE(model.transformer.ln_f.weight.value().data()[3] == 1.0f);
  REQUIRE(model.transformer.h[1]->attn.c_attn.bias.value().data()[5] == 0.0f);

  const auto ids = Tensor<std::int64_t>::from(std::vector<std::int64_t>(2 * 16, 3), {2, 16});
  const auto out = model(ids);
  REQUIRE(out.plan.V_mag.shape() == Shape({2, 16, 8}));
  REQUIRE(out.plan.O.shape() == Shape({2, 16, 4, 8}));
  REQUIRE(out.plan.G.shape() == Shape({2, 16, 4}));
  REQUIRE(out.exec.shape() == Shape({2, 16}));
  const auto long_ids = Tensor<std::int64_t>::zeros({1, 17});
  REQUIRE_THROWS_WITH(model(long_ids), Catch::Contains("T = 17 exceeds block_size = 16"));

  dagpt::dag::ModelConfig bad = cfg;
  bad.gpt.n_head = 5;
  REQUIRE_THROWS_WITH(dagpt::dag::PredictorModel<float>(bad),
                      Catch::Contains("n_embd = 32 is not divisible by n_head = 5"));
  bad = cfg;
  bad.dag_depth = 0;
  REQUIRE_THROWS_WITH(dagpt::dag::PredictorModel<float>(bad),
                      Catch::Contains("dag_depth = 0 must be in [1, 32]"));
  bad = cfg;
  bad.gpt.dropout = 1.0;
  REQUIRE_THROWS_WITH(dagpt::dag::PredictorModel<float>(bad),
                      Catch::Contains("dropout = 1 must be in [0, 1)"));

  // State dict round trip and its errors.
  dagpt::dag::PredictorModel<float> other(cfg, 2);
  std::map<std::string, Tensor<float>> sd;
  for (auto& [n, t] : model.state_dict()) sd[n] = t.clone();
  other.load_state_dict(sd);
  REQUIRE(other.transformer.wte.weight.value().to_vector() ==
          model.transformer.wte.weight.value().to_vector());
  sd.erase("transformer.ln_f.bias");
  REQUIRE_THROWS_WITH(other.load_state_dict(sd), Catch::Contains("'transformer.ln_f.bias' is missing"));
  sd["transformer.ln_f.bias"] = Tensor<float>::zeros({31});
  REQUIRE_THROWS_WITH(other.load_state_dict(sd),
                      Catch::Contains("has shape [31] in the state dict, [32] in the model"));
}

namespace {

// A batch of targets for depth 2 (N = 4): real encoded plans of small expressions at some positions.
struct Targets {
  dagpt::dag::DagPlan<double> plan;
  TD values, mask;
};

Targets make_targets(std::int64_t B, std::int64_t T, int d, std::uint64_t seed) {
  const auto layout = dagpt::dag::Layout::reference(d);
  Targets t{dagpt::dag::DagPlan<double>::zeros({B, T}, layout), TD::zeros({B, T}), TD::zeros({B, T})};
  const char* exprs[] = {"2.5*3", "1.5+2", "-4/2", "7", "0.000001*0.5", "3000*4000"};
  Generator g(seed);
  const int n = layout.nodes();
  for (std::int64_t i = 0; i < B * T; ++i) {
    if (g.uniform_at<double>(static_cast<std::uint64_t>(i)) < 0.3) continue;
    const char* text = exprs[i % 6];
    const auto e = dagpt::expr::normalize(dagpt::expr::parse(text));
    const auto p = dagpt::dag::encode<double>(e, layout);
    std::copy_n(p.V_mag.data(), n, t.plan.V_mag.data() + i * n);
    std::copy_n(p.V_sign.data(), n, t.plan.V_sign.data() + i * n);
    std::copy_n(p.O.data(), d * n, t.plan.O.data() + i * d * n);
    std::copy_n(p.G.data(), d, t.plan.G.data() + i * d);
    t.values.data()[i] = dagpt::dag::execute_values(p).item();
    t.mask.data()[i] = 1;
  }
  return t;
}

}  // namespace

TEST_CASE("plan_loss: gradients of every component in both modes, against finite differences", "[nn][loss]") {
  const std::int64_t B = 2, T = 3;
  const int d = 2, n = 4;
  const Targets t = make_targets(B, T, d, 5);
  const TD vmag = dagpt::abs(randn({B, T, n}, 21)) + 0.5, vsign = randn({B, T, n}, 22, 0.5),
           O = randn({B, T, d, n}, 23), G = randn({B, T, d}, 24, 0.3) + 0.5, exec = randn({B, T}, 25, 5.0);
  for (auto mode : {dagpt::dag::LossMode::standard, dagpt::dag::LossMode::reference}) {
    const auto opt = mode == dagpt::dag::LossMode::standard ? dagpt::dag::LossOptions{}
                                                            : dagpt::dag::LossOptions::reference();
    for (int k = 0; k < 6; ++k) {
      INFO("mode " << static_cast<int>(mode) << " component "
                   << dagpt::dag::kLossNames[static_cast<std::size_t>(k)]);
      require_grads(
          [&](const std::vector<VD>& v) {
            auto r = dagpt::dag::plan_loss(v[0], v[1], v[2], v[3], v[4], t.plan, t.values, t.mask, opt);
            const VD parts[6] = {r.total, r.V_mag, r.V_sign, r.O, r.G, r.exec};
            return parts[k];
          },
          {vmag, vsign, O, G, exec}, 1e-4);
    }
  }
}

TEST_CASE("plan_loss: formulas on a hand-checked case, masking, no valid position, non-finite exec",
          "[nn][loss]") {
  const int d = 1;
  auto plan = dagpt::dag::DagPlan<double>::zeros({2}, dagpt::dag::Layout::reference(d));
  plan.V_mag.data()[0] = 4.0;  // position 0: initial slot target 4
  plan.V_sign.data()[0] = -1;
  plan.O.data()[0] = 1;
  const TD values = TD::from({4.0, 0.0}), mask = TD::from({1.0, 0.0});
  const VD vmag(TD::from({5.0, 3.0, 100, 100}, {2, 2})), vsign(TD::from({-0.5, 0.2, 9, 9}, {2, 2}));
  const VD O(TD::from({0.5, 0.0, 7, 7}, {2, 1, 2})), G(TD::from({0.75, 0.0}, {2, 1})),
      exec(TD::from({4.0, 1e30}));
  const auto r = dagpt::dag::plan_loss(vmag, vsign, O, G, exec, plan, values, mask);
  // V_mag: initial slot only: e = 1/4.00000001 -> 0.5 e^2.
  REQUIRE(r.V_mag.item() == Approx(0.5 / (4.00000001 * 4.00000001)).epsilon(1e-12));
  REQUIRE(r.V_sign.item() == Approx(0.25));
  REQUIRE(r.O.item() == Approx((0.25 + 0.0) / 2));
  REQUIRE(r.G.item() == Approx(0.0625));
  REQUIRE(r.exec.item() == 0.0);
  REQUIRE(r.total.item() == Approx(r.V_mag.item() + 0.25 + 0.125 + 0.0625));
  REQUIRE(!r.exec_nonfinite);

  const auto ref = dagpt::dag::plan_loss(vmag, vsign, O, G, exec, plan, values, mask,
                                         dagpt::dag::LossOptions::reference());
  // All N slots: slot 1 target 0 -> |3 - 0| = 3 >= 1 -> 2.5; mean of the two slots.
  REQUIRE(ref.V_mag.item() == Approx((0.5 / (4.00000001 * 4.00000001) + 2.5) / 2).epsilon(1e-12));
  REQUIRE(ref.G.item() == Approx(std::pow(1 / (1 + std::exp(-0.75)) - 1, 2)));

  const auto none = dagpt::dag::plan_loss(vmag, vsign, O, G, exec, plan, values, TD::zeros({2}));
  for (double v : none.values()) REQUIRE(v == 0.0);

  const VD bad_exec(TD::from({std::nan(""), 0.0}));
  const auto nf = dagpt::dag::plan_loss(vmag, vsign, O, G, bad_exec, plan, values, mask);
  REQUIRE(nf.exec_nonfinite);
  REQUIRE(nf.exec.item() == Approx(1.0));  // 100 x the weight 0.01
  REQUIRE(std::isfinite(nf.total.item()));
}

TEST_CASE("predictor model: every parameter gradient against finite differences (double, both loss modes)",
          "[nn][model]") {
  dagpt::dag::ModelConfig cfg;
  cfg.gpt = {10, 4, 1, 2, 8, 0.0, true};
  cfg.dag_depth = 2;
  const Targets t = make_targets(2, 4, 2, 9);
  const auto ids = Tensor<std::int64_t>::from({1, 5, 2, 9, 0, 3, 3, 7}, {2, 4});
  for (auto mode : {dagpt::dag::LossMode::standard, dagpt::dag::LossMode::reference}) {
    cfg.semantics = mode == dagpt::dag::LossMode::standard ? dagpt::dag::Semantics::exact
                                                           : dagpt::dag::Semantics::reference;
    const auto opt = mode == dagpt::dag::LossMode::standard ? dagpt::dag::LossOptions{}
                                                            : dagpt::dag::LossOptions::reference();
    dagpt::dag::PredictorModel<double> model(cfg, 3);
    // Larger weights than the init, so that every path carries a visible gradient.
    for (auto& [name, p] : model.named_parameters()) {
      const TD r = randn(p.shape(), std::hash<std::string>{}(name), 0.3);
      std::copy_n(r.data(), r.numel(), p.value().data());
    }
    auto loss = [&] {
      const auto out = model(ids);
      return dagpt::dag::plan_loss(out.plan.V_mag, out.plan.V_sign, out.plan.O, out.plan.G, out.exec, t.plan,
                                   t.values, t.mask, opt)
          .total;
    };
    model.zero_grad();
    loss().backward();
    int checked = 0;
    for (auto& [name, p] : model.named_parameters()) {
      double* v = p.value().data();
      const std::int64_t step = std::max<std::int64_t>(1, p.numel() / 5);
      for (std::int64_t i = 0; i < p.numel(); i += step) {
        const double keep = v[i], h = 1e-6;
        double lp = 0, lm = 0;
        {
          dagpt::NoGradGuard no_grad;
          v[i] = keep + h;
          lp = loss().item();
          v[i] = keep - h;
          lm = loss().item();
          v[i] = keep;
        }
        const double fd = (lp - lm) / (2 * h), an = p.grad().data()[i];
        INFO(name << "[" << i << "] analytic " << an << " numeric " << fd);
        REQUIRE(an == Approx(fd).epsilon(1e-4).margin(1e-7));
        ++checked;
      }
    }
    REQUIRE(checked > 60);
  }
}

TEST_CASE("AdamW: one step by hand, decay groups, skipped parameters", "[optim]") {
  Var<double> w(TD::from({1.0, -2.0, 3.0, 4.0}, {2, 2}), true), b(TD::from({0.5}), true),
      unused(TD::from({1.0}), true);
  dagpt::optim::AdamWOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.5;
  dagpt::optim::AdamW<double> opt({{"w", w}, {"b", b}, {"unused", unused}}, o);
  dagpt::sum(w * w + b * 3.0).backward();  // dw = 2w, db = 3 (broadcast over 4)
  opt.step(0.1);
  // t = 1: m = 0.1 g, v = 0.05 g^2 -> m_hat = g, v_hat = g^2: update = lr * g / (|g| + eps).
  const double g0 = 2.0, upd0 = 0.1 * g0 / (g0 + 1e-8);
  REQUIRE(w.value().data()[0] == Approx(1.0 * (1 - 0.1 * 0.5) - upd0).epsilon(1e-12));
  REQUIRE(b.value().data()[0] == Approx(0.5 - 0.1 * 12 / (12 + 1e-8)).epsilon(1e-12));  // no decay on 1-D
  REQUIRE(unused.value().data()[0] == 1.0);
  o.decay = dagpt::optim::DecayRule::all;
  Var<double> b2(TD::from({0.5}), true);
  dagpt::optim::AdamW<double> opt2({{"b", b2}}, o);
  dagpt::sum(b2 * 3.0).backward();
  opt2.step(0.1);
  REQUIRE(b2.value().data()[0] == Approx(0.5 * 0.95 - 0.1).epsilon(1e-9));
}

TEST_CASE("LR schedule (REFERENCE 7.3) and global-norm clipping", "[optim]") {
  dagpt::optim::LrSchedule s;
  s.lr = 1e-3;
  s.min_lr = 1e-4;
  s.warmup_iters = 10;
  s.lr_decay_iters = 110;
  REQUIRE(s(0) == Approx(1e-4));
  REQUIRE(s(4) == Approx(5e-4));
  REQUIRE(s(10) == Approx(1e-3));
  REQUIRE(s(60) == Approx(1e-4 + 0.5 * 9e-4));
  REQUIRE(s(110) == Approx(1e-4));
  REQUIRE(s(500) == Approx(1e-4));
  s.cyclical = true;
  s.cycle_period = 40;
  REQUIRE(s(20) == Approx((1e-4 + 0.5 * (1 + std::cos(M_PI * 0.1)) * 9e-4) * 1.1));

  Var<double> a(TD::from({3.0}), true), b(TD::from({0.0, 4.0}), true);
  dagpt::sum(a * 1.0).backward();
  dagpt::sum(b * b * 0.5).backward();  // grads 1 and (0, 4)
  const double norm = dagpt::optim::clip_grad_norm<double>({a, b}, 1.0);
  REQUIRE(norm == Approx(std::sqrt(17.0)));
  REQUIRE(b.grad().data()[1] == Approx(4.0 / (std::sqrt(17.0) + 1e-6)));
  REQUIRE(dagpt::optim::clip_grad_norm<double>({a, b}, 10.0) == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("plan metrics: perfect predictions score 1, real steps exclude padding", "[nn][metrics]") {
  const Targets t = make_targets(3, 4, 2, 11);
  const auto exec = t.values;
  const auto m = dagpt::dag::plan_metrics(t.plan, exec, t.plan, t.values, t.mask);
  REQUIRE(m.positions > 0);
  REQUIRE(m.sign_accuracy == 1.0);
  REQUIRE(m.op_accuracy == 1.0);
  REQUIRE(m.gate_accuracy == 1.0);
  REQUIRE(m.exec_within == 1.0);
  REQUIRE(m.plan_exact == 1.0);
  // "7" has no real step; "2.5*3" one; "1.5+2" one.
  auto steps = [&](const char* text, int d) {
    const auto layout = dagpt::dag::Layout::reference(d);
    const auto p = dagpt::dag::encode<double>(dagpt::expr::normalize(dagpt::expr::parse(text)), layout);
    return dagpt::dag::real_steps(p.O.data(), p.G.data(), d, layout.nodes());
  };
  REQUIRE(steps("7", 2) == 0);
  REQUIRE(steps("2.5*3", 2) == 1);
  REQUIRE(steps("(1+2)*3", 3) == 2);
  REQUIRE(steps("(1+2)*3", 4) == 2);
  auto wrong = t.plan;
  wrong.G = t.plan.G.clone();
  for (std::int64_t i = 0; i < wrong.G.numel(); ++i) wrong.G.data()[i] = 1 - wrong.G.data()[i];
  const auto m2 = dagpt::dag::plan_metrics(wrong, exec, t.plan, t.values, t.mask);
  REQUIRE(m2.gate_accuracy == 0.0);
  REQUIRE(m2.plan_exact < 1.0);
}

TEST_CASE("digits head: digit decomposition, straight-through magnitudes, digit cross-entropy",
          "[nn][digits]") {
  const dagpt::dag::DigitFormat f{4, 2};
  REQUIRE(*dagpt::dag::magnitude_digits(12.34, f) == std::vector<int>{0, 0, 1, 2, 3, 4});
  REQUIRE(*dagpt::dag::magnitude_digits(9999.99, f) == std::vector<int>{9, 9, 9, 9, 9, 9});
  REQUIRE(*dagpt::dag::magnitude_digits(static_cast<float>(0.07), f) == std::vector<int>{0, 0, 0, 0, 0, 7});
  REQUIRE(!dagpt::dag::magnitude_digits(10000.0, f));
  REQUIRE(!dagpt::dag::magnitude_digits(-1.0, f));

  // Forward: the argmax digits as a decimal; intermediate slots 0.
  const std::int64_t n_init = 2, N = 4, D = f.digits();
  TD logits = randn({3, n_init, D, 10}, 31);
  const VD vmag = dagpt::apply<dagpt::dag::DigitMagnitudeFn<double>, double>({VD(logits)}, 4, f)[0];
  REQUIRE(vmag.shape() == Shape({3, N}));
  for (std::int64_t i = 0; i < 3; ++i) {
    for (std::int64_t j = 0; j < n_init; ++j) {
      double want = 0;
      for (std::int64_t k = 0; k < D; ++k) {
        const double* row = logits.data() + ((i * n_init + j) * D + k) * 10;
        want += static_cast<double>(std::max_element(row, row + 10) - row) * f.place(static_cast<int>(k));
      }
      REQUIRE(vmag.value().data()[i * N + j] == Approx(want).epsilon(1e-15));
    }
    REQUIRE(vmag.value().data()[i * N + 3] == 0.0);
  }
  // Backward: the gradient of the expected digits' value (a composed version through softmax).
  const TD w = randn({3, N}, 32);
  VD l1(logits, true), l2(logits, true);
  dagpt::sum(dagpt::apply<dagpt::dag::DigitMagnitudeFn<double>, double>({l1}, 4, f)[0] * VD(w)).backward();
  const VD expected = dagpt::sum(dagpt::softmax(l2) * VD(TD::arange(10.0)), -1);  // [3, n_init, D]
  TD places = TD::empty({D});
  for (std::int64_t k = 0; k < D; ++k) places.data()[k] = f.place(static_cast<int>(k));
  dagpt::sum(dagpt::sum(expected * VD(places), -1) * VD(w.narrow(1, 0, n_init).contiguous())).backward();
  for (std::int64_t i = 0; i < logits.numel(); ++i)
    REQUIRE(l1.grad().data()[i] == Approx(l2.grad().data()[i]).margin(1e-12));

  // The digit cross-entropy replaces the magnitude loss: gradient-checked, zero gradient to V_mag.
  const Targets t = make_targets(2, 3, 2, 5);
  const TD vsign = randn({2, 3, 4}, 22, 0.5), O = randn({2, 3, 2, 4}, 23),
           G = randn({2, 3, 2}, 24, 0.3) + 0.5, exec = randn({2, 3}, 25, 5.0),
           dl = randn({2, 3, 2, D, 10}, 26);
  dagpt::dag::LossOptions opt;
  opt.digit_format = f;
  require_grads(
      [&](const std::vector<VD>& v) {
        return dagpt::dag::plan_loss(v[0], v[1], v[2], v[3], v[4], t.plan, t.values, t.mask, opt, v[5]).V_mag;
      },
      {TD::ones({2, 3, 4}), vsign, O, G, exec, dl}, 1e-4);
  // Perfect digit logits: a tiny loss, and digit accuracy 1.
  TD good = TD::zeros({2, 3, 2, D, 10});
  for (std::int64_t i = 0; i < 6; ++i) {
    for (std::int64_t j = 0; j < 2; ++j) {
      const auto dg = dagpt::dag::magnitude_digits(t.plan.V_mag.data()[i * 4 + j], f);
      for (std::int64_t k = 0; k < D; ++k)
        good.data()[((i * 2 + j) * D + k) * 10 + (dg ? (*dg)[static_cast<std::size_t>(k)] : 0)] = 30;
    }
  }
  const auto r = dagpt::dag::plan_loss(VD(TD::ones({2, 3, 4})), VD(vsign), VD(O), VD(G), VD(exec), t.plan,
                                       t.values, t.mask, opt, VD(good));
  REQUIRE(r.V_mag.item() < 1e-10);
  const auto m = dagpt::dag::plan_metrics(t.plan, t.values, t.plan, t.values, t.mask, 1e-3, 4, &good, f);
  REQUIRE(m.digit_accuracy == 1.0);

  // A model with the digits head: digit_predictor instead of V_mag_predictor, exact decimal magnitudes.
  dagpt::dag::ModelConfig cfg;
  cfg.gpt = {10, 4, 1, 2, 8, 0.0, true};
  cfg.dag_depth = 2;
  cfg.mag_head = dagpt::dag::MagHead::digits;
  cfg.digits = f;
  dagpt::dag::PredictorModel<double> model(cfg, 3);
  bool has_digits = false, has_vmag = false;
  for (auto& [name, p] : model.named_parameters()) {
    has_digits = has_digits || name == "dag_predictor.digit_predictor.weight";
    has_vmag = has_vmag || name.find("V_mag_predictor") != std::string::npos;
  }
  REQUIRE(has_digits);
  REQUIRE(!has_vmag);
  const auto out = model(Tensor<std::int64_t>::from({1, 2, 3, 4}, {1, 4}));
  REQUIRE(out.plan.digit_logits.shape() == Shape({1, 4, 2, D, 10}));
  for (std::int64_t i = 0; i < 4; ++i) {
    const double v = out.plan.V_mag.value().data()[i * 4] * 100;
    REQUIRE(v == Approx(std::round(v)).margin(1e-6));
  }
}

// The dropout flags drawn four Philox blocks at a time (AVX2) are those of Generator::block, element by
// element, also across a 2^32 boundary of the counter and on ranges that start and end anywhere.
TEST_CASE("dropout keep-flags: the vectorized draw matches Generator::block", "[nn]") {
  const dagpt::Generator gen(0x1234567890ABCDEFULL, 0xFEDCBA0987654321ULL);
  for (const double p : {0.1, 0.5, 0.9}) {
    const std::uint32_t threshold = dagpt::nn::detail::dropout_threshold(p);
    for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{7}, (std::uint64_t{1} << 32) - 5}) {
      for (const auto& [e0, e1] : {std::pair<std::int64_t, std::int64_t>{0, 1003}, {64, 67}, {4096, 8193}}) {
        std::vector<std::uint8_t> keep(static_cast<std::size_t>(e1), 2);
        dagpt::nn::detail::dropout_keep_range(gen, first, e0, e1, threshold, keep.data());
        std::int64_t bad = 0, kept = 0;
        for (std::int64_t e = 0; e < e1; ++e) {
          const auto w = gen.block(first + static_cast<std::uint64_t>(e / 4));
          const std::uint8_t want =
              e < e0 ? 2 : ((w[static_cast<std::size_t>(e % 4)] >> 8U) >= threshold ? 1 : 0);
          bad += keep[static_cast<std::size_t>(e)] != want ? 1 : 0;
          kept += e >= e0 && want == 1 ? 1 : 0;
        }
        INFO("p " << p << ", first " << first << ", [" << e0 << ", " << e1 << ")");
        REQUIRE(bad == 0);
        if (e1 - e0 > 1000)
          REQUIRE(std::abs(static_cast<double>(kept) / static_cast<double>(e1 - e0) - (1 - p)) < 0.06);
      }
    }
  }
}

// The fused MLP's backward runs in row chunks (2 MB of [rows, hidden] scratch at a time): with 1100 rows and
// 1024 hidden units that is chunks of 512, 512 and 76 rows, which must give the unfused ops' gradients.
TEST_CASE("fused MLP backward in row chunks equals the unfused ops", "[nn]") {
  using namespace dagpt::nn;
  const std::int64_t m = 1100, c = 16, h = 1024;
  REQUIRE(detail::chunk_rows(m, h) == 512);
  REQUIRE(detail::chunk_rows(100, h) == 100);
  const TD x = randn({m, c}, 31), r = randn({m, c}, 32), w1 = randn({h, c}, 33), b1 = randn({h}, 34),
           w2 = randn({c, h}, 35), b2 = randn({c}, 36), gy = randn({m, c}, 37);
  const TD lw = randn({c}, 38), lb = randn({c}, 39);
  // ln: with the LayerNorm in front (layer_norm_mlp, whose residual is x itself), recomputed per chunk
  auto grads = [&](bool fused, bool ln) {
    const std::vector<VD> v{VD(x, true),  VD(w1, true), VD(b1, true), VD(w2, true),
                            VD(b2, true), VD(r, true),  VD(lw, true), VD(lb, true)};
    VD y;
    if (ln) {
      y = fused ? layer_norm_mlp(v[0], v[6], v[7], v[1], v[2], v[3], v[4], draw(0.3))
                : v[0] + dropout(linear(gelu(linear(layer_norm(v[0], v[6], v[7]), v[1], v[2])), v[3], v[4]),
                                 draw(0.3));
    } else {
      y = fused ? mlp(v[0], v[1], v[2], v[3], v[4], draw(0.3), v[5])
                : v[5] + dropout(linear(gelu(linear(v[0], v[1], v[2])), v[3], v[4]), draw(0.3));
    }
    y.backward(gy);
    std::vector<TD> g;
    for (const auto& q : v) {
      if (q.grad().defined()) g.push_back(q.grad());
    }
    return g;
  };
  for (const bool ln : {false, true}) {
    const auto a = grads(true, ln), b = grads(false, ln);
    REQUIRE(a.size() == (ln ? 7U : 6U));
    REQUIRE(b.size() == a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      INFO("layer norm " << ln << ", input " << i);
      const double scale = dagpt::max(dagpt::abs(b[i])).item();
      REQUIRE(scale > 0);
      REQUIRE(dagpt::max(dagpt::abs(a[i] - b[i])).item() <= 1e-12 * scale * static_cast<double>(m));
    }
  }
}

// The fused ops of nn/functional.hpp against the unfused ops they replace (values) and finite differences
// in double (gradients), with dropout on.
TEST_CASE("fused MLP, residual projection and token+position embedding: values and gradients", "[nn]") {
  using namespace dagpt::nn;
  const TD x = randn({2, 3, 4}, 11), r = randn({2, 3, 4}, 12), w1 = randn({8, 4}, 13), b1 = randn({8}, 14),
           w2 = randn({4, 8}, 15), b2 = randn({4}, 16);
  // MLP: r + dropout(c_proj(gelu(c_fc(x)))) equals the unfused ops with the same mask.
  const VD fused = mlp(VD(x), VD(w1), VD(b1), VD(w2), VD(b2), draw(0.3), VD(r));
  const VD plain = VD(r) + dropout(linear(gelu(linear(VD(x), VD(w1), VD(b1))), VD(w2), VD(b2)), draw(0.3));
  REQUIRE(dagpt::max(dagpt::abs(fused.value() - plain.value())).item() < 1e-12);
  require_grads([](const std::vector<VD>& v) { return mlp(v[0], v[1], v[2], v[3], v[4], draw(0.3), v[5]); },
                {x, w1, b1, w2, b2, r});
  require_grads([](const std::vector<VD>& v) { return mlp(v[0], v[1], VD(), v[2], VD()); }, {x, w1, w2});
  // The LayerNorm fused into the op after it: layer_norm_linear and layer_norm_mlp (residual x).
  const TD lw = randn({4}, 21), lb = randn({4}, 22);
  const VD ll = layer_norm_linear(VD(x), VD(lw), VD(lb), VD(w1), VD(b1));
  const VD lp = linear(layer_norm(VD(x), VD(lw), VD(lb)), VD(w1), VD(b1));
  REQUIRE(dagpt::max(dagpt::abs(ll.value() - lp.value())).item() < 1e-12);
  require_grads([](const std::vector<VD>& v) { return layer_norm_linear(v[0], v[1], v[2], v[3], v[4]); },
                {x, lw, lb, w1, b1});
  require_grads([](const std::vector<VD>& v) { return layer_norm_linear(v[0], v[1], VD(), v[2]); },
                {x, lw, w1});
  const VD lm = layer_norm_mlp(VD(x), VD(lw), VD(lb), VD(w1), VD(b1), VD(w2), VD(b2), draw(0.3));
  const VD lmp =
      VD(x) + dropout(linear(gelu(linear(layer_norm(VD(x), VD(lw), VD(lb)), VD(w1), VD(b1))), VD(w2), VD(b2)),
                      draw(0.3));
  REQUIRE(dagpt::max(dagpt::abs(lm.value() - lmp.value())).item() < 1e-12);
  require_grads(
      [](const std::vector<VD>& v) {
        return layer_norm_mlp(v[0], v[1], v[2], v[3], v[4], v[5], v[6], draw(0.3));
      },
      {x, lw, lb, w1, b1, w2, b2});
  require_grads(
      [](const std::vector<VD>& v) {
        return layer_norm_mlp(v[0], v[1], VD(), v[2], VD(), v[3], VD(), DropoutDraw{}, false);
      },
      {x, lw, w1, w2});
  // Several linears on one LayerNorm (the predictor head): each output as the unfused ops, and the
  // gradients of a mix of all outputs (one without a bias, one output unused).
  {
    const TD wa = randn({3, 4}, 23), ba = randn({3}, 24), wb = randn({6, 4}, 25), wc = randn({2, 4}, 26),
             bc = randn({2}, 27);
    const auto ys =
        layer_norm_linears(VD(x), VD(lw), VD(lb), {{VD(wa), VD(ba)}, {VD(wb), VD()}, {VD(wc), VD(bc)}});
    REQUIRE(ys.size() == 3U);
    const VD ln = layer_norm(VD(x), VD(lw), VD(lb));
    const VD plain[] = {linear(ln, VD(wa), VD(ba)), linear(ln, VD(wb)), linear(ln, VD(wc), VD(bc))};
    for (std::size_t k = 0; k < 3; ++k) {
      REQUIRE(ys[k].shape() == plain[k].shape());
      REQUIRE(dagpt::max(dagpt::abs(ys[k].value() - plain[k].value())).item() < 1e-12);
    }
    require_grads(
        [](const std::vector<VD>& v) {
          const auto y = layer_norm_linears(v[0], v[1], v[2], {{v[3], v[4]}, {v[5], VD()}, {v[6], v[7]}});
          return dagpt::sum(y[0] * y[0]) + dagpt::sum(dagpt::tanh(y[1]));  // y[2] unused: zero gradient
        },
        {x, lw, lb, wa, ba, wb, wc, bc});
  }
  // r + dropout(x W^T + b)
  const TD w = randn({4, 4}, 17), b = randn({4}, 18);
  const VD rl = residual_linear(VD(r), VD(x), VD(w), VD(b), draw(0.25, 40));
  const VD rp = VD(r) + dropout(linear(VD(x), VD(w), VD(b)), draw(0.25, 40));
  REQUIRE(dagpt::max(dagpt::abs(rl.value() - rp.value())).item() < 1e-12);
  require_grads(
      [](const std::vector<VD>& v) { return residual_linear(v[0], v[1], v[2], v[3], draw(0.25, 40)); },
      {r, x, w, b});
  // dropout(wte[idx] + wpe[:T])
  auto idx = Tensor<std::int64_t>::from({0, 2, 2, 4, 1, 0}, Shape({2, 3}));
  const TD wte = randn({5, 4}, 19), wpe = randn({6, 4}, 20);
  const VD e = token_position_embedding(VD(wte), VD(wpe), idx, draw(0.2, 80));
  const VD ep = dropout(embedding(VD(wte), idx) + VD(wpe).narrow(0, 0, 3), draw(0.2, 80));
  REQUIRE(dagpt::max(dagpt::abs(e.value() - ep.value())).item() < 1e-12);
  require_grads(
      [&](const std::vector<VD>& v) { return token_position_embedding(v[0], v[1], idx, draw(0.2, 80)); },
      {wte, wpe});
  REQUIRE_THROWS_WITH(token_position_embedding(VD(wte), VD(randn({2, 4}, 21)), idx),
                      Catch::Contains("expected [V, C] and [>= 3, C]"));
}
