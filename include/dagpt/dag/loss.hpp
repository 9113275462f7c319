// The plan losses as one fused autograd Function, and the metrics (no gradient).
//
// Inputs: the head's activated predictions V_mag, V_sign [B,T,N], O [B,T,d,N], G [B,T,d] and the executed
// values exec [B,T]; targets: a DagPlan, the exact values [B,T] (double) and the valid mask [B,T] (0/1).
// Everything is computed in double over the n valid positions; no valid position gives zeros, never NaN.
//
// robust(p, t): a = |t| + 1e-8, e = |p - t| / a if a > 1 else |p - t|, l = e^2 / 2 if e < 1 else e - 1/2.
//
// LossMode::standard (the default; DESIGN.md, REFERENCE.md §6 "recommendation for the port"):
//   V_mag  mean robust(V_mag, t) over the initial slots      V_sign mean (V_sign - t)^2 over the initial
//   slots O      mean (O - t)^2 over all d x N entries              G      mean (G - t)^2 over the d steps
//   exec   mean huber_delta(asinh(exec) - asinh(value)), delta 10; any non-finite exec at a valid position
//          gives the constant 100 instead (no gradient) and sets LossResult::exec_nonfinite.
//   Each component is multiplied by its weight (exec 0.01, the others 1) and can be switched off; the
//   returned components are the weighted ones and total is their sum.
// LossMode::reference (REFERENCE.md §6, the seed's formulas exactly): V_mag over all N slots, V_sign on
//   tanh(V_sign) and G on sigmoid(G) (the double activations), exec on float32(value) split by |t| into
//   small (< 1e-6: MSE), large (> 1e6: MSE of ln(|.| + 1e-12) plus MSE of the signs) and moderate (mean
//   relative error |p - t| / (|t| + 1e-8)), the group means summed; unweighted total.
// With the digits head (a sixth input, the digit logits [B,T,n_init,D,10]), the magnitude component is the
//   mean cross-entropy of the digits of the used initial slots (a slot some step reads) whose target
//   magnitude is representable (dag/digits.hpp); V_mag itself then gets no gradient from this component.
#pragma once

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "dagpt/autograd/function.hpp"
#include "dagpt/dag/digits.hpp"
#include "dagpt/dag/plan.hpp"

namespace dagpt::dag {

enum class LossMode { standard, reference };

struct LossOptions {
  LossMode mode = LossMode::standard;
  bool enable_vmag = true, enable_vsign = true, enable_o = true, enable_g = true, enable_exec = true;
  double w_vmag = 1, w_vsign = 1, w_o = 1, w_g = 1, w_exec = 0.01;
  double huber_delta = 10;
  DigitFormat digit_format;  // for the digit cross-entropy (digits head)
  double nonfinite_exec_loss = 100;

  // The seed's compute_dag_loss with an executor passed: every component on, all weights 1.
  static LossOptions reference() {
    LossOptions o;
    o.mode = LossMode::reference;
    o.w_exec = 1;
    return o;
  }
};

// The components in output order.
inline constexpr std::array<const char*, 6> kLossNames = {"total", "V_mag", "V_sign", "O", "G", "exec"};

namespace detail {

inline double sgn(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

// Value and derivative in p of the seed's robust value loss.
inline std::pair<double, double> robust_loss(double p, double t) {
  const double a = std::abs(t) + 1e-8;
  const double diff = p - t;
  const double e = a > 1 ? std::abs(diff) / a : std::abs(diff);
  const double de = a > 1 ? sgn(diff) / a : sgn(diff);
  return e < 1 ? std::pair{0.5 * e * e, e * de} : std::pair{e - 0.5, de};
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace detail

// Inputs {V_mag, V_sign, O, G, exec}; outputs six scalars in kLossNames order.
template <typename T>
class PlanLoss : public Function<T> {
 public:
  PlanLoss(DagPlan<T> targets, Tensor<double> values, Tensor<T> mask, LossOptions opt)
      : tgt_{targets.V_mag.contiguous(), targets.V_sign.contiguous(), targets.O.contiguous(),
             targets.G.contiguous()},
        values_(values.contiguous()),
        mask_(mask.contiguous()),
        opt_(opt) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    std::vector<Tensor<T>> x;
    for (const auto& t : in) x.push_back(t.contiguous());
    check(x);
    std::array<double, 6> parts{};
    run(x, parts, nullptr, {});
    this->save_for_backward(x);
    std::vector<Tensor<T>> out;
    for (double v : parts) out.push_back(Tensor<T>::scalar(static_cast<T>(v)));
    return out;
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const auto& x = this->saved();
    std::array<double, 6> coef{};  // d out / d component k = g_total + g_k
    for (std::size_t k = 1; k < 6; ++k)
      coef[k] = static_cast<double>(g[0].item()) + static_cast<double>(g[k].item());
    std::vector<Tensor<T>> grads(x.size());
    for (std::size_t k = 0; k < x.size(); ++k) grads[k] = Tensor<T>::zeros(x[k].shape());
    std::array<double, 6> parts{};
    run(x, parts, &grads, coef);
    return grads;
  }

  std::string name() const override { return "PlanLoss"; }
  bool exec_nonfinite() const { return nonfinite_; }

 private:
  void check(const std::vector<Tensor<T>>& x) const {
    if (x.size() != 5 && x.size() != 6) {
      dagpt::detail::raise<ValueError>("PlanLoss: expected 5 or 6 inputs, got {}", x.size());
    }
    if (x.size() == 6) {
      Shape ls = tgt_.batch_shape();
      for (std::int64_t v : {std::int64_t{tgt_.nodes() - tgt_.depth()},
                             std::int64_t{opt_.digit_format.digits()}, std::int64_t{10}})
        ls.push_back(v);
      if (x[5].shape() != ls) {
        dagpt::detail::raise<ShapeError>("PlanLoss: digit logits have shape {}, expected {}",
                                         x[5].shape().str(), ls.str());
      }
    }
    const char* names[4] = {"V_mag", "V_sign", "O", "G"};
    const Tensor<T>* t[4] = {&tgt_.V_mag, &tgt_.V_sign, &tgt_.O, &tgt_.G};
    for (std::size_t k = 0; k < 4; ++k) {
      if (x[k].shape() != t[k]->shape()) {
        dagpt::detail::raise<ShapeError>("PlanLoss: predicted {} has shape {}, target {}", names[k],
                                         x[k].shape().str(), t[k]->shape().str());
      }
    }
    const Shape b = tgt_.batch_shape();
    if (x[4].shape() != b || values_.shape() != b || mask_.shape() != b) {
      dagpt::detail::raise<ShapeError>("PlanLoss: exec {}, values {} and mask {} must all be {}",
                                       x[4].shape().str(), values_.shape().str(), mask_.shape().str(),
                                       b.str());
    }
  }

  // Computes the (weighted) components; with grads, adds coef[k] * w_k * d component_k / d input.
  void run(const std::vector<Tensor<T>>& x, std::array<double, 6>& parts, std::vector<Tensor<T>>* grads,
           const std::array<double, 6>& coef) {
    const bool ref = opt_.mode == LossMode::reference;
    const std::int64_t count = tgt_.count();
    const int d = tgt_.depth(), n = tgt_.nodes(), n_init = n - d;
    const T* mask = mask_.data();
    std::vector<std::int64_t> valid;
    for (std::int64_t i = 0; i < count; ++i) {
      if (mask[i] != T(0)) valid.push_back(i);
    }
    parts.fill(0);
    nonfinite_ = false;
    if (valid.empty()) return;
    const auto nv = static_cast<double>(valid.size());
    auto gp = [&](std::size_t k) -> T* { return grads ? (*grads)[k].data() : nullptr; };

    // V_mag, V_sign: per-slot terms over the first `slots` slots.
    const int slots = ref ? n : n_init;
    if (opt_.enable_vmag && x.size() == 6) {
      parts[1] = digit_loss(x[5].data(), valid, gp(5), coef[1]);
    } else if (opt_.enable_vmag) {
      const double scale = (ref ? 1.0 : opt_.w_vmag) / (nv * slots);
      double s = 0;
      for (auto i : valid) {
        for (int j = 0; j < slots; ++j) {
          const auto [l, dl] = detail::robust_loss(x[0].data()[i * n + j], tgt_.V_mag.data()[i * n + j]);
          s += l;
          if (grads) gp(0)[i * n + j] += static_cast<T>(coef[1] * scale * dl);
        }
      }
      parts[1] = s * scale;
    }
    if (opt_.enable_vsign) {
      const double scale = (ref ? 1.0 : opt_.w_vsign) / (nv * slots);
      double s = 0;
      for (auto i : valid) {
        for (int j = 0; j < slots; ++j) {
          const double p = x[1].data()[i * n + j];
          const double u = ref ? std::tanh(p) : p;
          const double r = u - tgt_.V_sign.data()[i * n + j];
          s += r * r;
          if (grads) gp(1)[i * n + j] += static_cast<T>(coef[2] * scale * 2 * r * (ref ? 1 - u * u : 1.0));
        }
      }
      parts[2] = s * scale;
    }
    if (opt_.enable_o) {
      const std::int64_t per = static_cast<std::int64_t>(d) * n;
      const double scale = (ref ? 1.0 : opt_.w_o) / (nv * static_cast<double>(per));
      double s = 0;
      for (auto i : valid) {
        for (std::int64_t e = i * per; e < (i + 1) * per; ++e) {
          const double r = static_cast<double>(x[2].data()[e]) - tgt_.O.data()[e];
          s += r * r;
          if (grads) gp(2)[e] += static_cast<T>(coef[3] * scale * 2 * r);
        }
      }
      parts[3] = s * scale;
    }
    if (opt_.enable_g) {
      const double scale = (ref ? 1.0 : opt_.w_g) / (nv * d);
      double s = 0;
      for (auto i : valid) {
        for (std::int64_t e = i * d; e < (i + 1) * d; ++e) {
          const double p = x[3].data()[e];
          const double u = ref ? detail::sigmoid(p) : p;
          const double r = u - tgt_.G.data()[e];
          s += r * r;
          if (grads) gp(3)[e] += static_cast<T>(coef[4] * scale * 2 * r * (ref ? u * (1 - u) : 1.0));
        }
      }
      parts[4] = s * scale;
    }
    if (opt_.enable_exec) parts[5] = exec_loss(x[4].data(), valid, gp(4), coef[5]);
    for (std::size_t k = 1; k < 6; ++k) parts[0] += parts[k];
  }

  // Mean cross-entropy of the digits of the used, representable initial slots of the valid positions.
  double digit_loss(const T* logits, const std::vector<std::int64_t>& valid, T* g, double coef) const {
    const int d = tgt_.depth(), n = tgt_.nodes(), n_init = n - d, D = opt_.digit_format.digits();
    struct Row {
      std::int64_t at;
      std::vector<int> digits;
    };
    std::vector<Row> rows;
    for (auto i : valid) {
      for (int j = 0; j < n_init; ++j) {
        if (!slot_used(tgt_.O.data() + i * d * n, d, n, j)) continue;
        auto dg = magnitude_digits(static_cast<double>(tgt_.V_mag.data()[i * n + j]), opt_.digit_format);
        if (dg) rows.push_back({(i * n_init + j) * D * 10, std::move(*dg)});
      }
    }
    if (rows.empty()) return 0;
    const double w = opt_.mode == LossMode::reference ? 1.0 : opt_.w_vmag;
    const double scale = w / (static_cast<double>(rows.size()) * D);
    double s = 0;
    for (const auto& r : rows) {
      for (int k = 0; k < D; ++k) {
        const T* l = logits + r.at + k * 10;
        double mx = l[0], z = 0;
        for (int c = 1; c < 10; ++c) mx = std::max(mx, static_cast<double>(l[c]));
        for (int c = 0; c < 10; ++c) z += std::exp(l[c] - mx);
        const int t = r.digits[static_cast<std::size_t>(k)];
        s += std::log(z) + mx - l[t];
        if (g) {
          for (int c = 0; c < 10; ++c) {
            const double p = std::exp(l[c] - mx) / z;
            g[r.at + k * 10 + c] += static_cast<T>(coef * scale * (p - (c == t ? 1.0 : 0.0)));
          }
        }
      }
    }
    return s * scale;
  }

  double exec_loss(const T* p, const std::vector<std::int64_t>& valid, T* g, double coef) {
    for (auto i : valid) {
      if (!std::isfinite(static_cast<double>(p[i]))) {
        nonfinite_ = true;
        return (opt_.mode == LossMode::reference ? 1.0 : opt_.w_exec) * opt_.nonfinite_exec_loss;
      }
    }
    const auto nv = static_cast<double>(valid.size());
    if (opt_.mode == LossMode::standard) {
      const double delta = opt_.huber_delta, w = opt_.w_exec;
      double s = 0;
      for (auto i : valid) {
        const double pi = p[i];
        const double r = std::asinh(pi) - std::asinh(values_.data()[i]);
        const bool quad = std::abs(r) <= delta;
        s += quad ? 0.5 * r * r : delta * (std::abs(r) - 0.5 * delta);
        if (g)
          g[i] +=
              static_cast<T>(coef * w / nv * (quad ? r : delta * detail::sgn(r)) / std::sqrt(1 + pi * pi));
      }
      return w * s / nv;
    }
    // Reference: group means over |t| < 1e-6, > 1e6 and the rest, summed.
    std::vector<std::int64_t> small, large, moderate;
    auto target = [&](std::int64_t i) { return static_cast<double>(static_cast<float>(values_.data()[i])); };
    for (auto i : valid) {
      const double a = std::abs(target(i));
      (a < 1e-6 ? small : (a > 1e6 ? large : moderate)).push_back(i);
    }
    double total = 0;
    if (!small.empty()) {
      const auto m = static_cast<double>(small.size());
      double s = 0;
      for (auto i : small) {
        const double r = static_cast<double>(p[i]) - target(i);
        s += r * r;
        if (g) g[i] += static_cast<T>(coef * 2 * r / m);
      }
      total += s / m;
    }
    if (!large.empty()) {
      const auto m = static_cast<double>(large.size());
      double s1 = 0, s2 = 0;
      for (auto i : large) {
        const double pi = p[i], t = target(i);
        const double r = std::log(std::abs(pi) + 1e-12) - std::log(std::abs(t) + 1e-12);
        const double sr = detail::sgn(pi) - detail::sgn(t);
        s1 += r * r;
        s2 += sr * sr;
        if (g) g[i] += static_cast<T>(coef * 2 * r / m * detail::sgn(pi) / (std::abs(pi) + 1e-12));
      }
      total += s1 / m + s2 / m;
    }
    if (!moderate.empty()) {
      const auto m = static_cast<double>(moderate.size());
      double s = 0;
      for (auto i : moderate) {
        const double t = target(i), a = std::abs(t) + 1e-8;
        const double r = static_cast<double>(p[i]) - t;
        s += std::abs(r) / a;
        if (g) g[i] += static_cast<T>(coef * detail::sgn(r) / a / m);
      }
      total += s / m;
    }
    return total;
  }

  DagPlan<T> tgt_;
  Tensor<double> values_;
  Tensor<T> mask_;
  LossOptions opt_;
  bool nonfinite_ = false;
};

template <typename T>
struct LossResult {
  Var<T> total, V_mag, V_sign, O, G, exec;
  bool exec_nonfinite = false;
  // The components as numbers, in kLossNames order.
  std::array<double, 6> values() const {
    return {static_cast<double>(total.item()),  static_cast<double>(V_mag.item()),
            static_cast<double>(V_sign.item()), static_cast<double>(O.item()),
            static_cast<double>(G.item()),      static_cast<double>(exec.item())};
  }
};

template <typename T>
LossResult<T> plan_loss(const Var<T>& V_mag, const Var<T>& V_sign, const Var<T>& O, const Var<T>& G,
                        const Var<T>& exec, const DagPlan<T>& targets, const Tensor<double>& values,
                        const Tensor<T>& mask, const LossOptions& opt = {}, const Var<T>& digit_logits = {}) {
  targets.check("plan_loss");
  bool nonfinite = false;
  if (opt.enable_exec) {
    const Tensor<T> e = exec.value().contiguous(), m = mask.contiguous();
    for (std::int64_t i = 0; i < e.numel() && i < m.numel(); ++i) {
      nonfinite = nonfinite || (m.data()[i] != T(0) && !std::isfinite(static_cast<double>(e.data()[i])));
    }
  }
  std::vector<Var<T>> in{V_mag, V_sign, O, G, exec};
  if (digit_logits.defined()) in.push_back(digit_logits);
  auto out = apply<PlanLoss<T>>(in, targets, values, mask, opt);
  return {out[0], out[1], out[2], out[3], out[4], out[5], nonfinite};
}

// Metrics without gradient (REFERENCE.md §8.2 recommendation), over the positions where mask != 0.
struct PlanMetrics {
  std::int64_t positions = 0;
  double sign_accuracy = 0;   // (pred > 0) == (target > 0) over the initial slots
  double op_accuracy = 0;     // round(O) == target over every O entry
  double gate_accuracy = 0;   // (G > 0.5) == target over the real steps only
  double exec_within = 0;     // |p - t| < tol or |p - t| / max(|t|, 1e-8) < tol
  double plan_exact = 0;      // rounded O, gates on real steps, signs and magnitudes (to the digit) of the
                              // slots the steps read: all right
  double digit_accuracy = 0;  // digits head: argmax == target digit over the used, representable slots
};

// The number of real (non-padding) steps of a target plan: padding steps s >= k are G = 1 rows with a
// single 1 at the last real result's slot (slot 0 when k = 0).
template <typename T>
int real_steps(const T* O, const T* G, int d, int n) {
  const int n_init = n - d;
  for (int k = 0; k <= d; ++k) {
    const int col = k > 0 ? n_init + k - 1 : 0;
    bool padding = true;
    for (int s = k; s < d && padding; ++s) {
      padding = G[s] == T(1);
      for (int j = 0; j < n && padding; ++j) padding = O[s * n + j] == (j == col ? T(1) : T(0));
    }
    if (padding) return k;
  }
  return d;
}

template <typename T>
PlanMetrics plan_metrics(const DagPlan<T>& pred, const Tensor<T>& exec, const DagPlan<T>& targets,
                         const Tensor<double>& values, const Tensor<T>& mask, double tol = 1e-3,
                         int decimal_places = 4, const Tensor<T>* digit_logits = nullptr,
                         DigitFormat format = {}) {
  const DagPlan<T> p{pred.V_mag.contiguous(), pred.V_sign.contiguous(), pred.O.contiguous(),
                     pred.G.contiguous()};
  const DagPlan<T> t{targets.V_mag.contiguous(), targets.V_sign.contiguous(), targets.O.contiguous(),
                     targets.G.contiguous()};
  const Tensor<T> e = exec.contiguous(), m = mask.contiguous();
  const Tensor<double> v = values.contiguous();
  const int d = t.depth(), n = t.nodes(), n_init = n - d;
  const double unit = std::pow(10.0, -decimal_places);
  PlanMetrics out;
  std::int64_t sign_ok = 0, sign_n = 0, op_ok = 0, op_n = 0, gate_ok = 0, gate_n = 0, exec_ok = 0, exact = 0;
  std::int64_t digit_ok = 0, digit_n = 0;
  const Tensor<T> logits = digit_logits ? digit_logits->contiguous() : Tensor<T>();
  const int D = format.digits();
  for (std::int64_t i = 0; i < t.count(); ++i) {
    if (m.data()[i] == T(0)) continue;
    ++out.positions;
    bool all = true;
    for (int j = 0; j < n_init; ++j) {
      const bool ok = (p.V_sign.data()[i * n + j] > 0) == (t.V_sign.data()[i * n + j] > 0);
      sign_ok += ok;
      // The plan matches when every slot a step reads has the right sign and magnitude (the others are
      // never read, whatever they hold).
      if (!slot_used(t.O.data() + i * d * n, d, n, j)) continue;
      const bool mag =
          std::abs(static_cast<double>(p.V_mag.data()[i * n + j]) - t.V_mag.data()[i * n + j]) < 0.5 * unit;
      all = all && ok && mag;
    }
    sign_n += n_init;
    for (std::int64_t k = i * d * n; k < (i + 1) * d * n; ++k) {
      const bool ok =
          std::nearbyint(static_cast<double>(p.O.data()[k])) == static_cast<double>(t.O.data()[k]);
      op_ok += ok;
      all = all && ok;
    }
    op_n += static_cast<std::int64_t>(d) * n;
    const int k_real = real_steps(t.O.data() + i * d * n, t.G.data() + i * d, d, n);
    for (int s = 0; s < k_real; ++s) {
      const bool ok = (p.G.data()[i * d + s] > T(0.5)) == (t.G.data()[i * d + s] > T(0.5));
      gate_ok += ok;
      all = all && ok;
    }
    gate_n += k_real;
    const double pe = e.data()[i], te = v.data()[i];
    const double err = std::abs(pe - te);
    exec_ok += std::isfinite(pe) && (err < tol || err / std::max(std::abs(te), 1e-8) < tol);
    exact += all;
    if (logits.defined()) {
      for (int j = 0; j < n_init; ++j) {
        if (!slot_used(t.O.data() + i * d * n, d, n, j)) continue;
        const auto dg = magnitude_digits(static_cast<double>(t.V_mag.data()[i * n + j]), format);
        if (!dg) continue;
        for (int k = 0; k < D; ++k) {
          const T* l = logits.data() + ((i * n_init + j) * D + k) * 10;
          int best = 0;
          for (int c = 1; c < 10; ++c) best = l[c] > l[best] ? c : best;
          digit_ok += best == (*dg)[static_cast<std::size_t>(k)];
          ++digit_n;
        }
      }
    }
  }
  auto frac = [](std::int64_t a, std::int64_t b) {
    return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
  };
  out.sign_accuracy = frac(sign_ok, sign_n);
  out.op_accuracy = frac(op_ok, op_n);
  out.gate_accuracy = frac(gate_ok, gate_n);
  out.exec_within = frac(exec_ok, out.positions);
  out.plan_exact = frac(exact, out.positions);
  out.digit_accuracy = frac(digit_ok, digit_n);
  return out;
}

}  // namespace dagpt::dag
