// AdamW with decoupled weight decay and decay groups, the learning-rate schedule of REFERENCE.md §7.3 and
// global-norm gradient clipping (torch.nn.utils.clip_grad_norm_).
//
// One step, per parameter p with gradient g (as torch.optim.AdamW): p -= lr * wd * p (decay group only);
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) +
// eps). Decay groups: DecayRule::matrices (default) decays parameters with dim >= 2 (weights and embeddings),
// DecayRule::all (the reference's single group) decays every parameter.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "dagpt/autograd/var.hpp"
#include "dagpt/core/strided.hpp"

namespace dagpt::optim {

enum class DecayRule { matrices, all };

struct AdamWOptions {
  double lr = 3e-4;
  double beta1 = 0.9, beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  DecayRule decay = DecayRule::matrices;
};

template <typename T>
class AdamW {
 public:
  struct Slot {
    std::string name;
    Var<T> param;
    bool decay;
    Tensor<T> m, v;  // first and second moments, same shape as the parameter
  };

  AdamW(const std::vector<std::pair<std::string, Var<T>>>& params, AdamWOptions opt = {}) : opt_(opt) {
    for (const auto& [name, p] : params) {
      const bool decay = opt.decay == DecayRule::all || p.dim() >= 2;
      slots_.push_back({name, p, decay, Tensor<T>::zeros(p.shape()), Tensor<T>::zeros(p.shape())});
    }
  }

  // One update with learning rate lr; parameters without a gradient are skipped (as torch does).
  void step(double lr) {
    ++t_;
    const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(t_));
    const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(t_));
    const double step_size = lr / bc1, sqrt_bc2 = std::sqrt(bc2);
    const T b1 = static_cast<T>(opt_.beta1), b2 = static_cast<T>(opt_.beta2);
    for (auto& s : slots_) {
      const Tensor<T>& g = s.param.grad();
      if (!g.defined()) continue;
      const Tensor<T> gc = g.contiguous();
      T* p = s.param.value().data();
      T* m = s.m.data();
      T* v = s.v.data();
      const T* gp = gc.data();
      const T decay = static_cast<T>(s.decay ? 1 - lr * opt_.weight_decay : 1.0);
      const T ss = static_cast<T>(step_size), sb = static_cast<T>(sqrt_bc2), eps = static_cast<T>(opt_.eps);
      const std::int64_t n = s.param.numel();
      const T ob1 = T(1) - b1, ob2 = T(1) - b2;
      parallel_for(n, n * 8, [&](std::int64_t b, std::int64_t e) {
        T* __restrict pp = p + b;
        T* __restrict mp = m + b;
        T* __restrict vp = v + b;
        const T* __restrict gq = gp + b;
#ifdef _OPENMP
#pragma omp simd
#endif
        for (std::int64_t i = 0; i < e - b; ++i) {
          const T gi = gq[i];
          const T mi = b1 * mp[i] + ob1 * gi;
          const T vi = b2 * vp[i] + ob2 * gi * gi;
          mp[i] = mi;
          vp[i] = vi;
          pp[i] = pp[i] * decay - ss * mi / (std::sqrt(vi) / sb + eps);
        }
      });
    }
  }

  void zero_grad() {
    for (auto& s : slots_) s.param.zero_grad();
  }

  // State for checkpoints: the step count and the moments of every parameter (by name).
  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }
  std::vector<Slot>& slots() { return slots_; }
  const std::vector<Slot>& slots() const { return slots_; }
  const AdamWOptions& options() const { return opt_; }

 private:
  AdamWOptions opt_;
  std::vector<Slot> slots_;
  std::int64_t t_ = 0;
};

// Global L2 norm of all gradients (accumulated in double); if it exceeds max_norm, every gradient is
// scaled by max_norm / (norm + 1e-6) when that is below 1 (as torch 1.13). Returns the norm before clipping.
// max_norm <= 0 only measures.
template <typename T>
double clip_grad_norm(const std::vector<Var<T>>& params, double max_norm) {
  // Sums of squares over fixed chunks of 16384 elements, added in order: the same result for any number
  // of threads (an OpenMP reduction adds the threads' partial sums in arrival order).
  constexpr std::int64_t kChunk = 16384;
  double ss = 0;
  std::vector<double> part;
  for (const auto& p : params) {
    const Tensor<T>& g = p.grad();
    if (!g.defined()) continue;
    const Tensor<T> gc = g.contiguous();
    const T* d = gc.data();
    const std::int64_t n = gc.numel(), chunks = (n + kChunk - 1) / kChunk;
    part.assign(static_cast<std::size_t>(chunks), 0.0);
    parallel_for(chunks, n, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t c = c0; c < c1; ++c) {
        double acc[4] = {0, 0, 0, 0};
        const std::int64_t e = std::min(n, (c + 1) * kChunk);
        std::int64_t i = c * kChunk;
        for (; i + 4 <= e; i += 4) {
          for (int l = 0; l < 4; ++l) acc[l] += static_cast<double>(d[i + l]) * d[i + l];
        }
        for (; i < e; ++i) acc[0] += static_cast<double>(d[i]) * d[i];
        part[static_cast<std::size_t>(c)] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      }
    });
    for (const double x : part) ss += x;
  }
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && max_norm / (norm + 1e-6) < 1) {
    const T scale = static_cast<T>(max_norm / (norm + 1e-6));
    for (const auto& p : params) {
      const Tensor<T>& g = p.grad();
      if (!g.defined()) continue;
      T* d = g.data();  // leaf gradients are owned by the Var (autograd/var.hpp), contiguous
      parallel_for(g.numel(), g.numel(), [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) d[i] *= scale;
      });
    }
  }
  return norm;
}

// The learning-rate schedule of REFERENCE.md §7.3: linear warmup, cosine decay to min_lr, optional
// cyclical modulation, never below min_lr after warmup.
struct LrSchedule {
  double lr = 3e-4, min_lr = 3e-5;
  double warmup_iters = 0;
  double lr_decay_iters = 10000;
  bool decay_lr = true;
  bool cyclical = false;
  double cycle_period = 1000, cycle_amplitude = 0.1;

  double operator()(std::int64_t it_) const {
    const auto it = static_cast<double>(it_);
    if (it < warmup_iters) return warmup_iters > 0 ? lr * (it + 1) / warmup_iters : lr;
    double v;
    if (it > lr_decay_iters) {
      v = min_lr;
    } else if (decay_lr) {
      const double span = lr_decay_iters - warmup_iters;
      const double ratio = span > 0 ? (it - warmup_iters) / span : 1.0;
      v = min_lr + 0.5 * (1 + std::cos(M_PI * ratio)) * (lr - min_lr);
    } else {
      v = lr;
    }
    if (cyclical) {
      const double phase = std::fmod(it - warmup_iters, cycle_period) / cycle_period;
      v *= 1 + cycle_amplitude * std::sin(2 * M_PI * phase);
    }
    return std::max(min_lr, v);
  }
};

}  // namespace dagpt::optim
