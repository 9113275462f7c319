// HEAD's digit representation of the initial magnitudes (REFERENCE.md §1 "HEAD difference"), behind the
// predictor's `digits` magnitude head: each initial slot's magnitude is D = max_digits + max_decimal_places
// decimal digits, integer digits left-padded with zeros, fraction digits truncated; the head predicts 10
// logits per digit.
//
// DigitMagnitudeFn turns the logits [..., n_init, D, 10] into V_mag [..., N] with a straight-through
// estimator: the forward pass uses each digit's argmax (so the executor sees an exact decimal), the backward
// pass the gradient of the expected digit sum_j softmax_j * j (dE/dl_j = p_j (j - E)). Intermediate slots
// are 0 (the executor never reads them).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "dagpt/autograd/function.hpp"

namespace dagpt::dag {

struct DigitFormat {
  int max_digits = 4;
  int max_decimal_places = 4;
  int digits() const { return max_digits + max_decimal_places; }
  // Place value of digit k (k = 0 is the most significant integer digit).
  double place(int k) const { return std::pow(10.0, max_digits - 1 - k); }
};

// The D digits of magnitude m (rounded to max_decimal_places first, then truncated digit by digit), or
// nothing when m is negative, not finite, or at least 10^max_digits.
inline std::optional<std::vector<int>> magnitude_digits(double m, const DigitFormat& f) {
  if (!(m >= 0) || !std::isfinite(m)) return std::nullopt;
  const double scaled = std::nearbyint(m * std::pow(10.0, f.max_decimal_places));
  if (scaled >= std::pow(10.0, f.digits())) return std::nullopt;
  auto q = static_cast<std::uint64_t>(scaled);
  std::vector<int> d(static_cast<std::size_t>(f.digits()));
  for (int k = f.digits() - 1; k >= 0; --k) {
    d[static_cast<std::size_t>(k)] = static_cast<int>(q % 10);
    q /= 10;
  }
  return d;
}

// Initial slot j of a target plan is used when some step reads it (a nonzero O entry in its column).
template <typename T>
bool slot_used(const T* O, int d, int n, int j) {
  for (int s = 0; s < d; ++s) {
    if (O[s * n + j] != T(0)) return true;
  }
  return false;
}

template <typename T>
class DigitMagnitudeFn : public Function<T> {
 public:
  DigitMagnitudeFn(int nodes, DigitFormat f) : nodes_(nodes), f_(f) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    const Tensor<T> l = in[0].contiguous();
    const int D = f_.digits();
    if (l.dim() < 3 || l.size(-1) != 10 || l.size(-2) != D || l.size(-3) >= nodes_) {
      dagpt::detail::raise<ShapeError>(
          "digit magnitudes: logits have shape {}, expected [..., n_init < {}, {}, 10]", l.shape().str(),
          nodes_, D);
    }
    const std::int64_t n_init = l.size(-3), count = l.numel() / (n_init * D * 10);
    Shape os(l.shape().begin(), l.shape().end() - 3);
    os.push_back(nodes_);
    Tensor<T> out = Tensor<T>::zeros(os);
    for (std::int64_t i = 0; i < count; ++i) {
      for (std::int64_t j = 0; j < n_init; ++j) {
        double v = 0;
        for (int k = 0; k < D; ++k) {
          const T* row = l.data() + ((i * n_init + j) * D + k) * 10;
          int best = 0;
          for (int c = 1; c < 10; ++c) best = row[c] > row[best] ? c : best;
          v += best * f_.place(k);
        }
        out.data()[i * nodes_ + j] = static_cast<T>(v);
      }
    }
    this->save_for_backward({l});
    return {out};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override {
    const Tensor<T>& l = this->saved()[0];
    const Tensor<T> go = g[0].contiguous();
    const int D = f_.digits();
    const std::int64_t n_init = l.size(-3), count = l.numel() / (n_init * D * 10);
    Tensor<T> gl = Tensor<T>::empty(l.shape());
    for (std::int64_t i = 0; i < count; ++i) {
      for (std::int64_t j = 0; j < n_init; ++j) {
        const double gs = go.data()[i * nodes_ + j];
        for (int k = 0; k < D; ++k) {
          const std::int64_t at = ((i * n_init + j) * D + k) * 10;
          const T* row = l.data() + at;
          double mx = row[0], z = 0, e = 0;
          for (int c = 1; c < 10; ++c) mx = std::max(mx, static_cast<double>(row[c]));
          double p[10];
          for (int c = 0; c < 10; ++c) z += (p[c] = std::exp(row[c] - mx));
          for (int c = 0; c < 10; ++c) e += (p[c] /= z) * c;
          for (int c = 0; c < 10; ++c) gl.data()[at + c] = static_cast<T>(gs * f_.place(k) * p[c] * (c - e));
        }
      }
    }
    return {gl};
  }
  std::string name() const override { return "DigitMagnitude"; }

 private:
  int nodes_;
  DigitFormat f_;
};

}  // namespace dagpt::dag
