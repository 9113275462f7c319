// The fused ops of the transformer, each an autograd Function with a hand-written backward (as llm.c
// does): linear (x W^T + b on Eigen's GEMM), embedding lookup (backward scatter-adds into the used rows
// only), LayerNorm, exact erf GELU, causal self-attention (softmax, optional dropout on the
// probabilities) and dropout. All work on contiguous row-major data of float or double; every one is
// gradient-checked in double in tests/nn.test.cpp.
//
// Dropout masks come from the counter-based Philox generator (core/random.hpp): element e of a call that
// reserved counters starting at `first` keeps its value when uniform(first + e/4, word e%4) >= p, so a
// mask depends only on (seed, stream, first), never on threads or on the backend.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#include "dagpt/autograd/function.hpp"
#include "dagpt/core/random.hpp"
#include "dagpt/core/strided.hpp"

namespace dagpt::nn {

namespace detail {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MapRM = Eigen::Map<RowMat<T>>;
template <typename T>
using CMapRM = Eigen::Map<const RowMat<T>>;
template <typename T>
using StridedRM = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using CStridedRM = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ArrayX = Eigen::Array<T, Eigen::Dynamic, 1>;

// Rows of a [..., C] tensor.
template <typename T>
std::int64_t rows_of(const Tensor<T>& x) {
  const std::int64_t c = x.shape()[x.dim() - 1];
  return c == 0 ? 0 : x.numel() / c;
}

template <typename T>
void require_last_dim(const Tensor<T>& x, std::int64_t c, const char* op, const char* what) {
  if (x.dim() < 1 || x.shape()[x.dim() - 1] != c) {
    dagpt::detail::raise<ShapeError>("{}: {} has shape {}, its last axis must be {}", op, what, x.shape().str(),
                                     c);
  }
}

// Keep-flags for n elements: keep[e] = 1 when the uniform for e is >= p. Counters first, first+1, ... each
// give four uniforms (24 bits each).
inline void dropout_keep(const Generator& gen, std::uint64_t first, std::int64_t n, double p,
                         std::uint8_t* keep) {
  const auto threshold = static_cast<std::uint32_t>(std::ceil(p * 16777216.0));  // 2^24
  const std::int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, n * 16, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const auto w = gen.block(first + static_cast<std::uint64_t>(b));
      for (std::int64_t k = 0; k < 4; ++k) {
        const std::int64_t e = 4 * b + k;
        if (e < n) keep[e] = (w[static_cast<std::size_t>(k)] >> 8U) >= threshold ? 1 : 0;
      }
    }
  });
}

// Splits [0, n) into `parts` chunks for per-chunk partial sums (deterministic, unlike per-thread ones).
inline std::int64_t chunk_begin(std::int64_t n, std::int64_t parts, std::int64_t i) { return n * i / parts; }

}  // namespace detail

// A dropout draw: where its mask comes from. `first` is the first Philox counter it owns.
struct DropoutDraw {
  double p = 0;
  Generator gen;
  std::uint64_t first = 0;
  // Counters a tensor of n elements needs.
  static std::uint64_t counters(std::int64_t n) { return static_cast<std::uint64_t>((n + 3) / 4); }
};

// y = x W^T + b over the last axis of x. Inputs {x [..., in], W [out, in]} or {x, W, b [out]}.
template <typename T>
class LinearFn : public Function<T> {
 public:
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    const Tensor<T> w = in[1].contiguous();
    if (w.dim() != 2) dagpt::detail::raise<ShapeError>("linear: weight must be 2-D, got {}", w.shape().str());
    const std::int64_t out = w.size(0), k = w.size(1);
    detail::require_last_dim(x, k, "linear", "input");
    Shape ys = x.shape();
    ys[ys.size() - 1] = out;
    Tensor<T> y = Tensor<T>::empty(ys);
    const std::int64_t m = detail::rows_of(x);
    detail::MapRM<T> Y(y.data(), m, out);
    const detail::CMapRM<T> X(x.data(), m, k), W(w.data(), out, k);
    if (in.size() > 2) {
      const Tensor<T> b = in[2].contiguous();
      if (b.dim() != 1 || b.size(0) != out) {
        dagpt::detail::raise<ShapeError>("linear: bias has shape {}, expected [{}]", b.shape().str(), out);
      }
      Y.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b.data(), out);
      Y.noalias() += X * W.transpose();
    } else {
      Y.noalias() = X * W.transpose();
    }
    this->save_for_backward({x, w});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& w = this->saved()[1];
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t out = w.size(0), k = w.size(1), m = detail::rows_of(x);
    const detail::CMapRM<T> GY(gy.data(), m, out), X(x.data(), m, k), W(w.data(), out, k);
    std::vector<Tensor<T>> grads(this->inputs.size());
    if (this->needs_input_grad(0)) {
      grads[0] = Tensor<T>::empty(x.shape());
      detail::MapRM<T>(grads[0].data(), m, k).noalias() = GY * W;
    }
    if (this->needs_input_grad(1)) {
      grads[1] = Tensor<T>::empty(w.shape());
      detail::MapRM<T>(grads[1].data(), out, k).noalias() = GY.transpose() * X;
    }
    if (grads.size() > 2 && this->needs_input_grad(2)) {
      grads[2] = Tensor<T>::empty({out});
      Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(grads[2].data(), out) = GY.colwise().sum();
    }
    return grads;
  }
  std::string name() const override { return "Linear"; }
};

// out[..., :] = weight[idx[...], :]. Input {weight [V, C]}; the indices are fixed. Backward adds each
// output row's gradient into the row it came from (the unused rows get zero, no V x C product).
template <typename T>
class EmbeddingFn : public Function<T> {
 public:
  explicit EmbeddingFn(Tensor<std::int64_t> idx) : idx_(idx.contiguous()) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> w = in[0].contiguous();
    if (w.dim() != 2) dagpt::detail::raise<ShapeError>("embedding: weight must be 2-D, got {}", w.shape().str());
    const std::int64_t v = w.size(0), c = w.size(1), n = idx_.numel();
    const std::int64_t* id = idx_.data();
    for (std::int64_t i = 0; i < n; ++i) {
      if (id[i] < 0 || id[i] >= v) {
        dagpt::detail::raise<IndexError>("embedding: index {} at flat position {} of the ids {} is outside [0, {})",
                                         id[i], i, idx_.shape().str(), v);
      }
    }
    Shape os = idx_.shape();
    std::vector<std::int64_t> dims(os.begin(), os.end());
    dims.push_back(c);
    Tensor<T> y = Tensor<T>::empty(Shape(dims));
    T* out = y.data();
    const T* src = w.data();
    parallel_for(n, n * c, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) std::copy_n(src + id[i] * c, c, out + i * c);
    });
    shape_ = w.shape();
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t c = shape_[1], n = idx_.numel();
    Tensor<T> gw = Tensor<T>::zeros(shape_);
    T* dst = gw.data();
    const T* src = gy.data();
    const std::int64_t* id = idx_.data();
    // Split the columns between threads: each thread owns a column range, so no two write one element.
    parallel_for(c, n * c, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t i = 0; i < n; ++i) {
        T* row = dst + id[i] * c;
        const T* gr = src + i * c;
        for (std::int64_t j = c0; j < c1; ++j) row[j] += gr[j];
      }
    });
    return {gw};
  }
  std::string name() const override { return "Embedding"; }

 private:
  Tensor<std::int64_t> idx_;
  Shape shape_;
};

// LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * w (+ b), biased variance. Inputs {x, w}
// or {x, w, b}. Statistics are accumulated in double.
template <typename T>
class LayerNormFn : public Function<T> {
 public:
  explicit LayerNormFn(double eps = 1e-5) : eps_(eps) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    const Tensor<T> w = in[1].contiguous();
    const std::int64_t c = w.numel();
    detail::require_last_dim(x, c, "layer_norm", "input");
    const bool has_b = in.size() > 2;
    const Tensor<T> b = has_b ? in[2].contiguous() : Tensor<T>();
    if (has_b && b.numel() != c) {
      dagpt::detail::raise<ShapeError>("layer_norm: bias has {} elements, weight has {}", b.numel(), c);
    }
    const std::int64_t m = detail::rows_of(x);
    Tensor<T> y = Tensor<T>::empty(x.shape());
    Tensor<T> mean = Tensor<T>::empty({m}), rstd = Tensor<T>::empty({m});
    const T* xp = x.data();
    const T* wp = w.data();
    const T* bp = has_b ? b.data() : nullptr;
    T* yp = y.data();
    parallel_for(m, m * c * 4, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * c;
        double s = 0;
        for (std::int64_t j = 0; j < c; ++j) s += xr[j];
        const double mu = s / static_cast<double>(c);
        double v = 0;
        for (std::int64_t j = 0; j < c; ++j) v += (xr[j] - mu) * (xr[j] - mu);
        const double rs = 1.0 / std::sqrt(v / static_cast<double>(c) + eps_);
        mean.data()[r] = static_cast<T>(mu);
        rstd.data()[r] = static_cast<T>(rs);
        const T muT = static_cast<T>(mu), rsT = static_cast<T>(rs);
        T* yr = yp + r * c;
        for (std::int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - muT) * rsT * wp[j] + (bp ? bp[j] : T(0));
      }
    });
    this->save_for_backward({x, w, mean, rstd});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T>& w = this->saved()[1];
    const T* mean = this->saved()[2].data();
    const T* rstd = this->saved()[3].data();
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t c = w.numel(), m = detail::rows_of(x);
    const bool want_x = this->needs_input_grad(0);
    const bool want_w = this->needs_input_grad(1);
    const bool want_b = this->inputs.size() > 2 && this->needs_input_grad(2);
    Tensor<T> gx = want_x ? Tensor<T>::empty(x.shape()) : Tensor<T>();
    // Per-chunk partial sums of dw and db, added in chunk order (deterministic).
    const std::int64_t parts = std::clamp<std::int64_t>(m / 64, 1, 16);
    std::vector<double> pw(static_cast<std::size_t>(parts * c), 0.0), pb(static_cast<std::size_t>(parts * c), 0.0);
    const T* xp = x.data();
    const T* gp = gy.data();
    const T* wp = w.data();
    parallel_for(parts, m * c * 8, [&](std::int64_t p0, std::int64_t p1) {
      std::vector<double> xhat(static_cast<std::size_t>(c));
      for (std::int64_t p = p0; p < p1; ++p) {
        double* dw = pw.data() + p * c;
        double* db = pb.data() + p * c;
        for (std::int64_t r = detail::chunk_begin(m, parts, p); r < detail::chunk_begin(m, parts, p + 1); ++r) {
          const T* xr = xp + r * c;
          const T* gr = gp + r * c;
          const double mu = mean[r], rs = rstd[r];
          double s1 = 0, s2 = 0;  // mean of dxhat and of dxhat * xhat
          for (std::int64_t j = 0; j < c; ++j) {
            const double xh = (xr[j] - mu) * rs;
            xhat[static_cast<std::size_t>(j)] = xh;
            const double dxh = static_cast<double>(gr[j]) * wp[j];
            s1 += dxh;
            s2 += dxh * xh;
            dw[j] += static_cast<double>(gr[j]) * xh;
            db[j] += gr[j];
          }
          if (want_x) {
            s1 /= static_cast<double>(c);
            s2 /= static_cast<double>(c);
            T* gxr = gx.data() + r * c;
            for (std::int64_t j = 0; j < c; ++j) {
              const double xh = xhat[static_cast<std::size_t>(j)];
              gxr[j] = static_cast<T>(rs * (static_cast<double>(gr[j]) * wp[j] - s1 - xh * s2));
            }
          }
        }
      }
    });
    std::vector<Tensor<T>> grads(this->inputs.size());
    grads[0] = gx;
    if (want_w || want_b) {
      Tensor<T> gw = Tensor<T>::empty({c}), gb = Tensor<T>::empty({c});
      for (std::int64_t j = 0; j < c; ++j) {
        double sw = 0, sb = 0;
        for (std::int64_t p = 0; p < parts; ++p) {
          sw += pw[static_cast<std::size_t>(p * c + j)];
          sb += pb[static_cast<std::size_t>(p * c + j)];
        }
        gw.data()[j] = static_cast<T>(sw);
        gb.data()[j] = static_cast<T>(sb);
      }
      if (want_w) grads[1] = gw.reshape(w.shape());
      if (want_b) grads[2] = gb.reshape(this->inputs[2]->value.shape());
    }
    return grads;
  }
  std::string name() const override { return "LayerNorm"; }

 private:
  double eps_;
};

// Exact GELU: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (Eigen's vectorized erf and exp).
template <typename T>
class GeluFn : public Function<T> {
 public:
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    Tensor<T> y = Tensor<T>::empty(x.shape());
    const std::int64_t n = x.numel();
    parallel_for(n, n * 8, [&](std::int64_t b, std::int64_t e) {
      const Eigen::Map<const detail::ArrayX<T>> X(x.data() + b, e - b);
      Eigen::Map<detail::ArrayX<T>> Y(y.data() + b, e - b);
      Y = T(0.5) * X * (T(1) + (X * T(M_SQRT1_2)).erf());
    });
    this->save_for_backward({x});
    return {y};
  }
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& x = this->saved()[0];
    const Tensor<T> gy = g[0].contiguous();
    Tensor<T> gx = Tensor<T>::empty(x.shape());
    const std::int64_t n = x.numel();
    const T inv_sqrt_2pi = T(0.39894228040143267794);
    parallel_for(n, n * 12, [&](std::int64_t b, std::int64_t e) {
      const Eigen::Map<const detail::ArrayX<T>> X(x.data() + b, e - b), G(gy.data() + b, e - b);
      Eigen::Map<detail::ArrayX<T>> D(gx.data() + b, e - b);
      D = G * (T(0.5) * (T(1) + (X * T(M_SQRT1_2)).erf()) + X * inv_sqrt_2pi * (T(-0.5) * X.square()).exp());
    });
    return {gx};
  }
  std::string name() const override { return "GELU"; }
};

// y = x * keep / (1 - p). Input {x}. p = 0 or eval mode should not build this op at all.
template <typename T>
class DropoutFn : public Function<T> {
 public:
  explicit DropoutFn(DropoutDraw draw) : draw_(draw) {}
  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> x = in[0].contiguous();
    const std::int64_t n = x.numel();
    keep_.resize(static_cast<std::size_t>(n));
    detail::dropout_keep(draw_.gen, draw_.first, n, draw_.p, keep_.data());
    const T scale = static_cast<T>(1.0 / (1.0 - draw_.p));
    Tensor<T> y = Tensor<T>::empty(x.shape());
    for (std::int64_t i = 0; i < n; ++i) y.data()[i] = keep_[static_cast<std::size_t>(i)] ? x.data()[i] * scale : T(0);
    return {y};
  }
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T> gy = g[0].contiguous();
    const T scale = static_cast<T>(1.0 / (1.0 - draw_.p));
    Tensor<T> gx = Tensor<T>::empty(gy.shape());
    for (std::int64_t i = 0; i < gy.numel(); ++i) {
      gx.data()[i] = keep_[static_cast<std::size_t>(i)] ? gy.data()[i] * scale : T(0);
    }
    return {gx};
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
  }
  std::string name() const override { return "Dropout"; }

 private:
  DropoutDraw draw_;
  std::vector<std::uint8_t> keep_;
};

// Causal multi-head self-attention on a fused qkv tensor [B, T, 3C] (q, k, v in that order, heads of
// C / n_head): y[b, t, h] = sum_{u <= t} softmax_u(q_t . k_u / sqrt(hs)) v_u, heads merged -> [B, T, C].
// With a dropout draw of p > 0, dropout acts on the probabilities. Saves the probabilities (and the
// dropped ones) for backward: 4 B H T^2 bytes per copy in float.
template <typename T>
class CausalAttentionFn : public Function<T> {
 public:
  CausalAttentionFn(std::int64_t n_head, DropoutDraw draw = {}) : n_head_(n_head), draw_(draw) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> qkv = in[0].contiguous();
    if (qkv.dim() != 3 || qkv.size(2) % (3 * n_head_) != 0) {
      dagpt::detail::raise<ShapeError>("attention: qkv has shape {}, expected [B, T, 3C] with C divisible by {} heads",
                                       qkv.shape().str(), n_head_);
    }
    const std::int64_t B = qkv.size(0), Tn = qkv.size(1), C = qkv.size(2) / 3, H = n_head_, hs = C / H;
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
    Tensor<T> y = Tensor<T>::empty({B, Tn, C});
    Tensor<T> att = Tensor<T>::empty({B, H, Tn, Tn});
    const bool drop = draw_.p > 0;
    Tensor<T> att_d = drop ? Tensor<T>::empty({B, H, Tn, Tn}) : att;
    if (drop) {
      keep_.resize(static_cast<std::size_t>(B * H * Tn * Tn));
      detail::dropout_keep(draw_.gen, draw_.first, B * H * Tn * Tn, draw_.p, keep_.data());
    }
    const T dscale = static_cast<T>(drop ? 1.0 / (1.0 - draw_.p) : 1.0);
    parallel_for(B * H, B * H * Tn * Tn * hs * 4, [&](std::int64_t p0, std::int64_t p1) {
      for (std::int64_t bh = p0; bh < p1; ++bh) {
        const std::int64_t b = bh / H, h = bh % H;
        const T* base = qkv.data() + b * Tn * 3 * C + h * hs;
        const detail::CStridedRM<T> Q(base, Tn, hs, Eigen::OuterStride<>(3 * C));
        const detail::CStridedRM<T> K(base + C, Tn, hs, Eigen::OuterStride<>(3 * C));
        const detail::CStridedRM<T> V(base + 2 * C, Tn, hs, Eigen::OuterStride<>(3 * C));
        detail::MapRM<T> P(att.data() + bh * Tn * Tn, Tn, Tn);
        P.noalias() = (Q * K.transpose()) * scale;
        for (std::int64_t t = 0; t < Tn; ++t) {  // softmax of row t over u <= t; zero above the diagonal
          auto row = P.row(t).head(t + 1);
          const T mx = row.maxCoeff();
          row = (row.array() - mx).exp().matrix();
          row /= row.sum();
          P.row(t).tail(Tn - t - 1).setZero();
        }
        detail::MapRM<T> PD(att_d.data() + bh * Tn * Tn, Tn, Tn);
        if (drop) {
          const std::uint8_t* kp = keep_.data() + bh * Tn * Tn;
          for (std::int64_t i = 0; i < Tn * Tn; ++i) PD.data()[i] = kp[i] ? P.data()[i] * dscale : T(0);
        }
        detail::StridedRM<T> Y(y.data() + b * Tn * C + h * hs, Tn, hs, Eigen::OuterStride<>(C));
        Y.noalias() = PD * V;
      }
    });
    this->save_for_backward({qkv, att, att_d});
    return {y};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& qkv = this->saved()[0];
    const Tensor<T>& att = this->saved()[1];
    const Tensor<T>& att_d = this->saved()[2];
    const Tensor<T> gy = g[0].contiguous();
    const std::int64_t B = qkv.size(0), Tn = qkv.size(1), C = qkv.size(2) / 3, H = n_head_, hs = C / H;
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
    const bool drop = draw_.p > 0;
    const T dscale = static_cast<T>(drop ? 1.0 / (1.0 - draw_.p) : 1.0);
    Tensor<T> gqkv = Tensor<T>::empty(qkv.shape());
    parallel_for(B * H, B * H * Tn * Tn * hs * 8, [&](std::int64_t p0, std::int64_t p1) {
      detail::RowMat<T> dP(Tn, Tn);
      for (std::int64_t bh = p0; bh < p1; ++bh) {
        const std::int64_t b = bh / H, h = bh % H;
        const std::int64_t off = b * Tn * 3 * C + h * hs;
        const Eigen::OuterStride<> s3(3 * C);
        const detail::CStridedRM<T> Q(qkv.data() + off, Tn, hs, s3), K(qkv.data() + off + C, Tn, hs, s3),
            V(qkv.data() + off + 2 * C, Tn, hs, s3);
        detail::StridedRM<T> dQ(gqkv.data() + off, Tn, hs, s3), dK(gqkv.data() + off + C, Tn, hs, s3),
            dV(gqkv.data() + off + 2 * C, Tn, hs, s3);
        const detail::CStridedRM<T> dY(gy.data() + b * Tn * C + h * hs, Tn, hs, Eigen::OuterStride<>(C));
        const detail::CMapRM<T> P(att.data() + bh * Tn * Tn, Tn, Tn), PD(att_d.data() + bh * Tn * Tn, Tn, Tn);
        dV.noalias() = PD.transpose() * dY;  // PD is zero above the diagonal
        dP.noalias() = dY * V.transpose();
        if (drop) {
          const std::uint8_t* kp = keep_.data() + bh * Tn * Tn;
          for (std::int64_t i = 0; i < Tn * Tn; ++i) dP.data()[i] = kp[i] ? dP.data()[i] * dscale : T(0);
        }
        // Softmax backward row by row over u <= t, then the scale: dS = P (dP - <P, dP>) / sqrt(hs).
        for (std::int64_t t = 0; t < Tn; ++t) {
          auto pr = P.row(t).head(t + 1);
          auto dr = dP.row(t).head(t + 1);
          const T dot = pr.dot(dr);
          dr = (pr.array() * (dr.array() - dot) * scale).matrix();
          dP.row(t).tail(Tn - t - 1).setZero();
        }
        dQ.noalias() = dP * K;
        dK.noalias() = dP.transpose() * Q;
      }
    });
    return {gqkv};
  }
  void release() override {
    Function<T>::release();
    keep_ = {};
  }
  std::string name() const override { return "CausalSelfAttention"; }

 private:
  std::int64_t n_head_;
  DropoutDraw draw_;
  std::vector<std::uint8_t> keep_;
};

// Var-level wrappers.
template <typename T>
Var<T> linear(const Var<T>& x, const Var<T>& w, const Var<T>& b = {}) {
  return b.defined() ? apply<LinearFn<T>, T>({x, w, b})[0] : apply<LinearFn<T>, T>({x, w})[0];
}
template <typename T>
Var<T> embedding(const Var<T>& weight, const Tensor<std::int64_t>& idx) {
  return apply<EmbeddingFn<T>, T>({weight}, idx)[0];
}
template <typename T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& w, const Var<T>& b = {}, double eps = 1e-5) {
  return b.defined() ? apply<LayerNormFn<T>, T>({x, w, b}, eps)[0] : apply<LayerNormFn<T>, T>({x, w}, eps)[0];
}
template <typename T>
Var<T> gelu(const Var<T>& x) {
  return apply<GeluFn<T>, T>({x})[0];
}
template <typename T>
Var<T> dropout(const Var<T>& x, const DropoutDraw& draw) {
  if (draw.p <= 0) return x;
  if (draw.p >= 1) dagpt::detail::raise<ValueError>("dropout: p = {} must be in [0, 1)", draw.p);
  return apply<DropoutFn<T>, T>({x}, draw)[0];
}
template <typename T>
Var<T> causal_self_attention(const Var<T>& qkv, std::int64_t n_head, const DropoutDraw& draw = {}) {
  return apply<CausalAttentionFn<T>, T>({qkv}, n_head, draw)[0];
}

}  // namespace dagpt::nn
