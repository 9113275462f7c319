// One full training step of the predictor model (forward, plan losses, backward, clipping, AdamW), timed:
// the C++ side of bench/compare/train_step.sh. Prints one JSON line:
//   {"impl": "dagpt", "B": 256, "T": 32, "mode": "reference", "exec": false, "step_ms": ..., "tokens_per_s":
//   ...,
//    "gflops": ..., "peak_rss_mb": ...}
// step_ms is the median over --steps timed steps after 2 warm-up steps. The default config is the reference
// predictor (vocab 50304, 2 layers, 4 heads, 256 wide, block 32, dropout 0.1, depth 4), float32.
//   dagpt_train_step [--batch 256] [--steps 5] [--mode reference|standard] [--exec 0|1]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dagpt/dag/loss.hpp"
#include "dagpt/dag/model.hpp"
#include "dagpt/optim/adamw.hpp"

namespace {

using dagpt::Tensor;

// Forward FLOPs per token of the matrix products (backward is twice that): 2 * (params in the blocks'
// and head's Linears) + attention 2 * 2 * T * C per layer (QK^T and PV, causal half counted whole).
double flops_per_token(const dagpt::dag::ModelConfig& c, std::int64_t T) {
  const double C = static_cast<double>(c.gpt.n_embd), L = static_cast<double>(c.gpt.n_layer);
  const double n = c.layout().nodes(), d = c.dag_depth;
  const double linear = L * (12 * C * C) + C * (2 * n + d * n + d);
  const double attn = L * 2 * 2 * static_cast<double>(T) * C;
  return 3 * 2 * (linear + attn / 2);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t B = 256, steps = 5;
  std::string mode = "reference";
  bool exec = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch")
      B = std::stoll(v);
    else if (k == "--steps")
      steps = std::stoll(v);
    else if (k == "--mode")
      mode = v;
    else if (k == "--exec")
      exec = v == "1";
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  dagpt::dag::ModelConfig cfg;
  cfg.gpt = {50304, 32, 2, 4, 256, 0.1, true};
  cfg.dag_depth = 4;
  const bool ref = mode == "reference";
  cfg.semantics = ref ? dagpt::dag::Semantics::reference : dagpt::dag::Semantics::exact;
  dagpt::dag::LossOptions lo = ref ? dagpt::dag::LossOptions::reference() : dagpt::dag::LossOptions{};
  lo.enable_exec = exec;
  const std::int64_t T = cfg.gpt.block_size;

  dagpt::dag::PredictorModel<float> model(cfg, 42);
  model.train();
  dagpt::optim::AdamWOptions ao;
  ao.lr = 3e-4;
  ao.weight_decay = 0.01;
  ao.decay = ref ? dagpt::optim::DecayRule::all : dagpt::optim::DecayRule::matrices;
  dagpt::optim::AdamW<float> opt(model.named_parameters(), ao);
  const auto params = model.parameters();

  // Random ids and plausible random targets.
  dagpt::Generator g(7);
  auto ids = Tensor<std::int64_t>::empty({B, T});
  for (std::int64_t i = 0; i < ids.numel(); ++i)
    ids.data()[i] = static_cast<std::int64_t>(g.uniform_at<double>(i) * 50257);
  const auto layout = cfg.layout();
  auto targets = dagpt::dag::DagPlan<float>::zeros({B, T}, layout);
  dagpt::Generator tg(8);
  for (std::int64_t i = 0; i < targets.V_mag.numel(); ++i)
    targets.V_mag.data()[i] = 10 * tg.uniform_at<float>(i);
  for (std::int64_t i = 0; i < targets.O.numel(); ++i)
    targets.O.data()[i] = std::round(2 * tg.uniform_at<float>(i + (1 << 24)) - 1);
  auto values = Tensor<double>::empty({B, T});
  for (std::int64_t i = 0; i < values.numel(); ++i)
    values.data()[i] = 100 * tg.uniform_at<double>(i + (2 << 24)) - 50;
  const auto mask = Tensor<float>::ones({B, T});

  std::vector<double> ms;
  using clock = std::chrono::steady_clock;
  const auto since = [](clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  for (std::int64_t s = 0; s < steps + 2; ++s) {
    const auto t0 = clock::now();
    opt.zero_grad();
    const auto out = model(ids);
    const auto loss = dagpt::dag::plan_loss(out.plan.V_mag, out.plan.V_sign, out.plan.O, out.plan.G, out.exec,
                                            targets, values, mask, lo);
    const auto t1 = clock::now();
    loss.total.backward();
    const auto t2 = clock::now();
    dagpt::optim::clip_grad_norm(params, 1.0);
    const auto t3 = clock::now();
    opt.step(3e-4);
    const auto t4 = clock::now();
    if (s >= 2) ms.push_back(since(t0, t4));
    // On stderr: the step's phases (forward with losses, backward, clipping, AdamW).
    std::fprintf(stderr,
                 "step %lld: %.1f ms (forward %.1f, backward %.1f, clip %.1f, adamw %.1f), loss %.4f\n",
                 static_cast<long long>(s), since(t0, t4), since(t0, t1), since(t1, t2), since(t2, t3),
                 since(t3, t4), static_cast<double>(loss.total.item()));
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double tokens = static_cast<double>(B * T);
  std::printf(
      "{\"impl\": \"dagpt\", \"B\": %lld, \"T\": %lld, \"mode\": \"%s\", \"exec\": %s, \"step_ms\": %.2f, "
      "\"tokens_per_s\": %.0f, \"gflops\": %.1f, \"peak_rss_mb\": %.0f}\n",
      static_cast<long long>(B), static_cast<long long>(T), mode.c_str(), exec ? "true" : "false", med,
      tokens / (med / 1000), flops_per_token(cfg, T) * tokens / (med / 1000) / 1e9,
      static_cast<double>(ru.ru_maxrss) / 1024);
  return 0;
}
