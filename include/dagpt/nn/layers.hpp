// The layers of nanoGPT (REFERENCE.md §5.1) on the fused ops of nn/functional.hpp: Linear, Embedding,
// LayerNorm, Dropout, CausalSelfAttention, MLP, Block (pre-LN), and the GPT backbone.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "dagpt/autograd/ops.hpp"
#include "dagpt/core/random.hpp"
#include "dagpt/nn/functional.hpp"
#include "dagpt/nn/module.hpp"

namespace dagpt::nn {

// Where dropout masks come from: one Philox stream, every draw reserving the counters it uses. Its
// offset is part of a checkpoint, so a resumed run draws the same masks.
struct DropoutSource {
  Generator gen{0, 0};
  DropoutDraw draw(double p, std::int64_t n) {
    DropoutDraw d;
    d.p = p;
    d.gen = gen;
    d.first = gen.advance(DropoutDraw::counters(n));
    return d;
  }
};

template <typename T>
class Linear : public Module<T> {
 public:
  Linear(std::int64_t in, std::int64_t out, bool bias = true)
      : weight(this->register_parameter("weight", Tensor<T>::zeros({out, in}))),
        bias(bias ? this->register_parameter("bias", Tensor<T>::zeros({out})) : Var<T>()) {}
  Var<T> operator()(const Var<T>& x) const { return linear(x, weight, bias); }
  Var<T> weight, bias;
};

template <typename T>
class Embedding : public Module<T> {
 public:
  Embedding(std::int64_t num, std::int64_t dim)
      : weight(this->register_parameter("weight", Tensor<T>::zeros({num, dim}))) {}
  Var<T> operator()(const Tensor<std::int64_t>& idx) const { return embedding(weight, idx); }
  Var<T> weight;
};

template <typename T>
class LayerNorm : public Module<T> {
 public:
  explicit LayerNorm(std::int64_t dim, bool bias = true, double eps = 1e-5)
      : weight(this->register_parameter("weight", Tensor<T>::ones({dim}))),
        bias(bias ? this->register_parameter("bias", Tensor<T>::zeros({dim})) : Var<T>()),
        eps(eps) {}
  Var<T> operator()(const Var<T>& x) const { return layer_norm(x, weight, bias, eps); }
  Var<T> weight, bias;
  double eps;
};

// The backbone's settings (REFERENCE.md §5.1). validate() names the offending field.
struct GPTConfig {
  std::int64_t vocab_size = 50304;
  std::int64_t block_size = 1024;
  std::int64_t n_layer = 12;
  std::int64_t n_head = 12;
  std::int64_t n_embd = 768;
  double dropout = 0.0;
  bool bias = true;

  void validate() const {
    auto positive = [](const char* key, std::int64_t v) {
      if (v < 1) dagpt::detail::raise<ValueError>("GPTConfig: {} = {} must be >= 1", key, v);
    };
    positive("vocab_size", vocab_size);
    positive("block_size", block_size);
    positive("n_layer", n_layer);
    positive("n_head", n_head);
    positive("n_embd", n_embd);
    if (n_embd % n_head != 0) {
      dagpt::detail::raise<ValueError>("GPTConfig: n_embd = {} is not divisible by n_head = {}", n_embd,
                                       n_head);
    }
    if (!(dropout >= 0.0 && dropout < 1.0)) {
      dagpt::detail::raise<ValueError>("GPTConfig: dropout = {} must be in [0, 1)", dropout);
    }
  }
};

template <typename T>
class CausalSelfAttention : public Module<T> {
 public:
  CausalSelfAttention(const GPTConfig& c, DropoutSource& drop)
      : c_attn(c.n_embd, 3 * c.n_embd, c.bias),
        c_proj(c.n_embd, c.n_embd, c.bias),
        n_head(c.n_head),
        p(c.dropout),
        drop_(&drop) {
    this->register_module("c_attn", c_attn);
    this->register_module("c_proj", c_proj);
  }
  Var<T> operator()(const Var<T>& x) const {
    const Var<T> qkv = c_attn(x);
    const bool on = this->is_training() && p > 0;
    const DropoutDraw d =
        on ? drop_->draw(p, qkv.size(0) * n_head * qkv.size(1) * qkv.size(1)) : DropoutDraw{};
    const Var<T> y = c_proj(causal_self_attention(qkv, n_head, d));
    return on ? dropout(y, drop_->draw(p, y.numel())) : y;
  }
  // r + this(x), with c_proj, its dropout and the residual add fused into one op (same masks as above).
  Var<T> residual(const Var<T>& r, const Var<T>& x) const { return residual_from(r, c_attn(x)); }
  // x + this(ln(x)), with ln and c_attn fused as well (nn::layer_norm_linear: the LayerNorm output is not
  // kept for the backward pass).
  Var<T> residual_normed(const Var<T>& x, const LayerNorm<T>& ln) const {
    return residual_from(x, layer_norm_linear(x, ln.weight, ln.bias, c_attn.weight, c_attn.bias, ln.eps));
  }
  Linear<T> c_attn, c_proj;
  std::int64_t n_head;
  double p;

 private:
  Var<T> residual_from(const Var<T>& r, const Var<T>& qkv) const {
    const bool on = this->is_training() && p > 0;
    const DropoutDraw d =
        on ? drop_->draw(p, qkv.size(0) * n_head * qkv.size(1) * qkv.size(1)) : DropoutDraw{};
    const Var<T> a = causal_self_attention(qkv, n_head, d);
    Shape ys = a.shape();
    ys[ys.size() - 1] = c_proj.weight.size(0);
    const DropoutDraw d2 = on ? drop_->draw(p, ys.numel()) : DropoutDraw{};
    return residual_linear(r, a, c_proj.weight, c_proj.bias, d2);
  }
  DropoutSource* drop_;
};

template <typename T>
class MLP : public Module<T> {
 public:
  MLP(const GPTConfig& c, DropoutSource& drop)
      : c_fc(c.n_embd, 4 * c.n_embd, c.bias),
        c_proj(4 * c.n_embd, c.n_embd, c.bias),
        p(c.dropout),
        drop_(&drop) {
    this->register_module("c_fc", c_fc);
    this->register_module("c_proj", c_proj);
  }
  // dropout(c_proj(gelu(c_fc(x)))) [+ r], one fused op (nn::mlp).
  Var<T> operator()(const Var<T>& x, const Var<T>& r = {}) const {
    const DropoutDraw d = draw(x);
    return nn::mlp(x, c_fc.weight, c_fc.bias, c_proj.weight, c_proj.bias, d, r);
  }
  // x + this(ln(x)) as one op (nn::layer_norm_mlp: the LayerNorm output is not kept for the backward pass).
  Var<T> normed(const Var<T>& x, const LayerNorm<T>& ln) const {
    return nn::layer_norm_mlp(x, ln.weight, ln.bias, c_fc.weight, c_fc.bias, c_proj.weight, c_proj.bias,
                              draw(x), true, ln.eps);
  }
  Linear<T> c_fc, c_proj;
  double p;

 private:
  // The output dropout's draw for input x (none in evaluation).
  DropoutDraw draw(const Var<T>& x) const {
    if (!this->is_training() || p <= 0) return {};
    Shape ys = x.shape();
    ys[ys.size() - 1] = c_proj.weight.size(0);
    return drop_->draw(p, ys.numel());
  }
  DropoutSource* drop_;
};

template <typename T>
class Block : public Module<T> {
 public:
  Block(const GPTConfig& c, DropoutSource& drop)
      : ln_1(c.n_embd, c.bias), attn(c, drop), ln_2(c.n_embd, c.bias), mlp(c, drop) {
    this->register_module("ln_1", ln_1);
    this->register_module("attn", attn);
    this->register_module("ln_2", ln_2);
    this->register_module("mlp", mlp);
  }
  Var<T> operator()(const Var<T>& x) const {
    // Each LayerNorm is fused into the op after it, so its [B, T, C] output is not kept for backward.
    const Var<T> h = attn.residual_normed(x, ln_1);  // x + attn(ln_1(x))
    return mlp.normed(h, ln_2);                      // h + mlp(ln_2(h))
  }
  LayerNorm<T> ln_1;
  CausalSelfAttention<T> attn;
  LayerNorm<T> ln_2;
  MLP<T> mlp;
};

// The "transformer" part of nanoGPT: wte, wpe, dropout, the blocks, ln_f. forward(idx [B, T]) gives the
// hidden states [B, T, C].
template <typename T>
class Transformer : public Module<T> {
 public:
  Transformer(const GPTConfig& c, DropoutSource& drop)
      : wte(c.vocab_size, c.n_embd),
        wpe(c.block_size, c.n_embd),
        ln_f(c.n_embd, c.bias),
        config_(c),
        drop_(&drop) {
    this->register_module("wte", wte);
    this->register_module("wpe", wpe);
    for (std::int64_t i = 0; i < c.n_layer; ++i) h.push_back(std::make_unique<Block<T>>(c, drop));
    hlist_.reset(new HList(h));
    this->register_module("h", *hlist_);
    this->register_module("ln_f", ln_f);
  }

  // ln_f(features(idx)): nanoGPT's transformer output [B, T, C].
  Var<T> operator()(const Tensor<std::int64_t>& idx) const { return ln_f(features(idx)); }
  // The residual stream after the last block, before ln_f (for a head that fuses ln_f into its products).
  Var<T> features(const Tensor<std::int64_t>& idx) const {
    if (idx.dim() != 2)
      dagpt::detail::raise<ShapeError>("GPT: token ids have shape {}, expected [B, T]", idx.shape().str());
    const std::int64_t Tn = idx.size(1);
    if (Tn > config_.block_size) {
      dagpt::detail::raise<ShapeError>("GPT: sequence length T = {} exceeds block_size = {}", Tn,
                                       config_.block_size);
    }
    // dropout(wte(idx) + wpe[:T]) in one op.
    const bool on = this->is_training() && config_.dropout > 0;
    const DropoutDraw d = on ? drop_->draw(config_.dropout, idx.numel() * config_.n_embd) : DropoutDraw{};
    Var<T> x = token_position_embedding(wte.weight, wpe.weight, idx, d);
    for (const auto& block : h) x = (*block)(x);
    return x;
  }

  Embedding<T> wte, wpe;
  std::vector<std::unique_ptr<Block<T>>> h;
  LayerNorm<T> ln_f;

 private:
  // The "h" level of the names: blocks 0, 1, ... as children.
  struct HList : Module<T> {
    explicit HList(std::vector<std::unique_ptr<Block<T>>>& blocks) {
      for (std::size_t i = 0; i < blocks.size(); ++i) this->register_module(std::to_string(i), *blocks[i]);
    }
  };
  std::unique_ptr<HList> hlist_;
  GPTConfig config_;
  DropoutSource* drop_;
};

// nanoGPT's init (REFERENCE.md §5.1): every Linear weight and embedding ~ N(0, 0.02), biases 0, LayerNorm
// weights 1; then every `c_proj.weight` ~ N(0, 0.02 / sqrt(2 n_layer)). Parameter k (in named order) draws
// from Philox stream (seed, kInitStream + k). `is_norm(name)` tells LayerNorm weights apart.
inline constexpr std::uint64_t kInitStream = 0x1D17'0000ULL;

template <typename T>
void init_normal(Var<T>& p, double stddev, std::uint64_t seed, std::uint64_t stream) {
  const Generator gen(seed, stream);
  T* d = p.value().data();
  for (std::int64_t i = 0; i < p.numel(); ++i)
    d[i] = static_cast<T>(stddev * gen.template normal_at<double>(static_cast<std::uint64_t>(i)));
}

template <typename T>
void gpt_init(const Module<T>& m, std::int64_t n_layer, std::uint64_t seed) {
  std::uint64_t k = 0;
  for (auto& [name, p] : m.named_parameters()) {
    Var<T> v = p;
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_ln = name.find(".ln_") != std::string::npos || name.rfind("ln_", 0) == 0;
    if (is_bias) {
      std::fill_n(v.value().data(), v.numel(), T(0));
    } else if (is_ln) {
      std::fill_n(v.value().data(), v.numel(), T(1));
    } else {
      const bool proj = name.size() >= 13 && name.compare(name.size() - 13, 13, "c_proj.weight") == 0;
      init_normal(v, proj ? 0.02 / std::sqrt(2.0 * static_cast<double>(n_layer)) : 0.02, seed,
                  kInitStream + k);
    }
    ++k;
  }
}

}  // namespace dagpt::nn
