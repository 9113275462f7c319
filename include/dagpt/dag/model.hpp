// The DAG predictor head (REFERENCE.md §5.2) and the predictor model: GPT backbone + head + executor.
//
//   dag::ModelConfig cfg;                      // backbone settings, dag_depth, semantics, ...
//   dag::PredictorModel<float> model(cfg, 42); // nanoGPT init from seed 42
//   auto out = model(ids);                     // ids [B, T] -> out.plan (V_mag, V_sign, O, G), out.exec [B,
//   T] auto loss = dag::plan_loss(out.plan.V_mag, ..., out.exec, targets, values, mask, opts);
//
// Head, on every position's hidden state h: V_mag = |W_m h + b_m|, V_sign = tanh(W_s h + b_s),
// O = W_o h + b_o as [d, N] row-major, G = sigmoid(W_g h + b_g). With `ste` (off by default, HEAD's
// option) the forward pass sharpens V_sign to +-1 (>= 0 -> +1), O to round(O) and G to [G > 0.5] while the
// backward pass uses the soft values' gradient (straight-through). With `sharpen_eval` (on by default) the
// same sharpening is applied in eval mode only, so that evaluation and prediction execute the discrete plan
// the metrics judge (a right plan then executes to the exact value); training stays smooth.
//
// Magnitude heads: MagHead::direct is the reference's |W_m h + b_m| (parameters V_mag_predictor.*);
// MagHead::digits is HEAD's digit logits (digit_predictor.*, [B, T, n_init, D, 10], dag/digits.hpp): V_mag is
// the decimal number of the argmax digits, with a straight-through gradient, and the magnitude loss becomes
// a cross-entropy on the digits (dag/loss.hpp).
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include "dagpt/dag/digits.hpp"
#include "dagpt/dag/executor.hpp"
#include "dagpt/dag/plan.hpp"
#include "dagpt/nn/layers.hpp"

namespace dagpt::dag {

enum class MagHead { direct, digits };

struct ModelConfig {
  nn::GPTConfig gpt;
  MagHead mag_head = MagHead::direct;
  DigitFormat digits;  // the digits head's format
  int dag_depth = 4;
  bool head_layout = false;  // HEAD's d + 1 initial slots instead of d
  Semantics semantics = Semantics::exact;
  bool ste = false;
  bool sharpen_eval = true;

  Layout layout() const { return head_layout ? Layout::head(dag_depth) : Layout::reference(dag_depth); }
  void validate() const {
    gpt.validate();
    if (dag_depth < 1 || dag_depth > kMaxDepth) {
      dagpt::detail::raise<ValueError>("ModelConfig: dag_depth = {} must be in [1, {}]", dag_depth,
                                       kMaxDepth);
    }
    if (mag_head == MagHead::digits &&
        (digits.max_digits < 1 || digits.max_decimal_places < 0 || digits.digits() > 18)) {
      dagpt::detail::raise<ValueError>(
          "ModelConfig: the digits head needs max_digits >= 1 and max_digits + "
          "max_decimal_places <= 18, got {} and {}",
          digits.max_digits, digits.max_decimal_places);
    }
  }
};

template <typename T>
struct PlanVars {
  Var<T> V_mag, V_sign, O, G;
  Var<T> digit_logits;  // [B, T, n_init, D, 10] with the digits head, else undefined
  DagPlan<T> values() const { return {V_mag.value(), V_sign.value(), O.value(), G.value()}; }
};

namespace detail {

// Straight-through sharpening: forward as described in the header, backward the identity.
enum class Sharpen { sign, round, gate };
template <typename T>
class SteFn : public Function<T> {
 public:
  explicit SteFn(Sharpen kind) : kind_(kind) {}
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    Tensor<T> y = Tensor<T>::empty(x.shape());
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const T v = x.data()[i];
      y.data()[i] = kind_ == Sharpen::sign    ? (v >= T(0) ? T(1) : T(-1))
                    : kind_ == Sharpen::round ? std::nearbyint(v)
                                              : (v > T(0.5) ? T(1) : T(0));
    }
    return {y};
  }
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override { return {g[0]}; }
  std::string name() const override { return "StraightThrough"; }

 private:
  Sharpen kind_;
};

}  // namespace detail

template <typename T>
class Predictor : public nn::Module<T> {
 public:
  Predictor(std::int64_t n_embd, Layout layout, bool ste = false, MagHead head = MagHead::direct,
            DigitFormat digits = {}, bool sharpen_eval = false)
      : V_sign_predictor(n_embd, layout.nodes()),
        O_predictor(n_embd, static_cast<std::int64_t>(layout.depth) * layout.nodes()),
        G_predictor(n_embd, layout.depth),
        layout_(layout),
        ste_(ste),
        sharpen_eval_(sharpen_eval),
        head_(head),
        digits_(digits) {
    if (head == MagHead::direct) {
      V_mag_predictor = std::make_unique<nn::Linear<T>>(n_embd, layout.nodes());
      this->register_module("V_mag_predictor", *V_mag_predictor);
    } else {
      digit_predictor = std::make_unique<nn::Linear<T>>(n_embd, layout.n_init * digits.digits() * 10);
      this->register_module("digit_predictor", *digit_predictor);
    }
    this->register_module("V_sign_predictor", V_sign_predictor);
    this->register_module("O_predictor", O_predictor);
    this->register_module("G_predictor", G_predictor);
  }

  // h [B, T, C] -> the plan [B, T, ...].
  PlanVars<T> operator()(const Var<T>& h) const {
    return finish(h.shape(), mag_linear()(h), V_sign_predictor(h), O_predictor(h), G_predictor(h));
  }
  // The plan of ln(x): the LayerNorm and the four linears in one op (nn::layer_norm_linears), which keeps x
  // rather than ln(x) and runs one product instead of four. Same values as operator()(ln(x)).
  PlanVars<T> normed(const Var<T>& x, const nn::LayerNorm<T>& ln) const {
    const nn::Linear<T>& mag = mag_linear();
    const auto y = nn::layer_norm_linears(x, ln.weight, ln.bias,
                                          {{mag.weight, mag.bias},
                                           {V_sign_predictor.weight, V_sign_predictor.bias},
                                           {O_predictor.weight, O_predictor.bias},
                                           {G_predictor.weight, G_predictor.bias}},
                                          ln.eps);
    return finish(x.shape(), y[0], y[1], y[2], y[3]);
  }

  std::unique_ptr<nn::Linear<T>> V_mag_predictor;  // MagHead::direct
  std::unique_ptr<nn::Linear<T>> digit_predictor;  // MagHead::digits
  nn::Linear<T> V_sign_predictor, O_predictor, G_predictor;

 private:
  const nn::Linear<T>& mag_linear() const {
    return head_ == MagHead::direct ? *V_mag_predictor : *digit_predictor;
  }
  // The plan from the four linears' outputs (mag: V_mag's or the digit logits' linear).
  PlanVars<T> finish(const Shape& hs, const Var<T>& mag, const Var<T>& sign, const Var<T>& o,
                     const Var<T>& g) const {
    Shape o_shape(hs.begin(), hs.end() - 1);
    o_shape.push_back(layout_.depth);
    o_shape.push_back(layout_.nodes());
    PlanVars<T> p{Var<T>(), tanh(sign), o.reshape(o_shape), sigmoid(g), Var<T>()};
    if (head_ == MagHead::direct) {
      p.V_mag = abs(mag);
    } else {
      Shape l_shape(hs.begin(), hs.end() - 1);
      for (std::int64_t v : {std::int64_t{layout_.n_init}, std::int64_t{digits_.digits()}, std::int64_t{10}})
        l_shape.push_back(v);
      p.digit_logits = mag.reshape(l_shape);
      p.V_mag = apply<DigitMagnitudeFn<T>, T>({p.digit_logits}, layout_.nodes(), digits_)[0];
    }
    if (ste_ || (sharpen_eval_ && !this->is_training())) {
      p.V_sign = apply<detail::SteFn<T>, T>({p.V_sign}, detail::Sharpen::sign)[0];
      p.O = apply<detail::SteFn<T>, T>({p.O}, detail::Sharpen::round)[0];
      p.G = apply<detail::SteFn<T>, T>({p.G}, detail::Sharpen::gate)[0];
    }
    return p;
  }

  Layout layout_;
  bool ste_;
  bool sharpen_eval_;
  MagHead head_;
  DigitFormat digits_;
};

template <typename T>
struct ModelOutput {
  PlanVars<T> plan;
  Var<T> exec;    // [B, T]
  Var<T> hidden;  // [B, T, C]: the residual stream before ln_f (ln_f is fused into the head's products)
};

// Backbone ("transformer.*") + head ("dag_predictor.*") + executor (no parameters).
template <typename T>
class PredictorModel : public nn::Module<T> {
 public:
  explicit PredictorModel(const ModelConfig& cfg, std::uint64_t seed = 42)
      : transformer(checked(cfg).gpt, dropout_source),
        dag_predictor(cfg.gpt.n_embd, cfg.layout(), cfg.ste, cfg.mag_head, cfg.digits, cfg.sharpen_eval),
        config_(cfg) {
    this->register_module("transformer", transformer);
    this->register_module("dag_predictor", dag_predictor);
    nn::gpt_init<T>(*this, cfg.gpt.n_layer, seed);
    dropout_source.gen = Generator(seed, nn::kInitStream - 1);
  }

  ModelOutput<T> operator()(const Tensor<std::int64_t>& idx) const {
    ModelOutput<T> out;
    out.hidden = transformer.features(idx);
    out.plan = dag_predictor.normed(out.hidden, transformer.ln_f);  // = dag_predictor(transformer(idx))
    out.exec = execute(out.plan.V_mag, out.plan.V_sign, out.plan.O, out.plan.G, config_.semantics);
    return out;
  }

  const ModelConfig& config() const { return config_; }

  nn::DropoutSource dropout_source;  // declared first: the layers keep its address
  nn::Transformer<T> transformer;
  Predictor<T> dag_predictor;

 private:
  static const ModelConfig& checked(const ModelConfig& c) {
    c.validate();
    return c;
  }
  ModelConfig config_;
};

}  // namespace dagpt::dag
