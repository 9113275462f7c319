// The DAG executor written with the foundation's differentiable ops, step by step: a readable
// specification of dag/executor.hpp's math (both semantics) and the twin its fused forward and backward
// are tested against. Slow (dozens of small ops per step); use dag::execute for real work.
// Exact semantics here assume nonzero magnitudes and |O| < 2 (the fused version handles the rest).
#pragma once

#include <limits>

#include "dagpt/autograd/ops.hpp"
#include "dagpt/dag/executor.hpp"

namespace dagpt::dag {

template <typename T>
Var<T> execute_composed(const Var<T>& V_mag, const Var<T>& V_sign, const Var<T>& O, const Var<T>& G,
                        Semantics sem = Semantics::exact) {
  DagPlan<T>{V_mag.value(), V_sign.value(), O.value(), G.value()}.check("execute_composed");
  const int d = static_cast<int>(G.size(-1));
  const int n_init = static_cast<int>(V_mag.size(-1)) - d;
  const T big = std::numeric_limits<T>::max();
  Var<T> M = V_mag.narrow(-1, 0, n_init);
  Var<T> S = V_sign.narrow(-1, 0, n_init);
  Var<T> X = S * M;  // exact semantics: the signed value of every node so far
  Var<T> last;
  for (int s = 0; s < d; ++s) {
    const Var<T> o = O.select(-2, s).narrow(-1, 0, n_init + s);  // the causal mask: earlier slots only
    const Var<T> g = G.select(-1, s);
    const Var<T> gu = g.unsqueeze(-1);
    if (sem == Semantics::exact) {
      const Var<T> R = sum(o * X, -1);            // linear: sum of o_j x_j
      const Var<T> logmag = sum(o * log(M), -1);  // log: sum of o_j ln|x_j|
      const Var<T> a = abs(o);                    // parity weight: triangle wave, |o| < 2
      const Tensor<T> low = le(a.value(), T(1));
      const Var<T> p = where(low, a, T(2) - a);
      const Var<T> sigma = prod(T(1) + (S - T(1)) * p, -1);
      const Var<T> mag = exp(clamp(logmag, -big, static_cast<T>(detail::kLogMagMax)));
      const Var<T> lin = clamp(R, static_cast<T>(-kMagMax), static_cast<T>(kMagMax));
      last = g * lin + (T(1) - g) * sigma * mag;
      const Var<T> v = last.unsqueeze(-1);
      X = concat<T>({X, v}, -1);
      M = concat<T>({M, abs(v)}, -1);
      S = concat<T>({S, sign(v)}, -1);  // a constant: sign(v) has zero gradient
    } else {
      const Var<T> L = log(clamp(M, T(1e-12), big));
      const Var<T> mixed = L * (T(1) - gu) + S * M * gu;
      const Var<T> R = sum(o * mixed, -1);
      const Var<T> slin = tanh(R / T(1e-4));
      const Var<T> P = prod(T(2) * S.narrow(-1, 0, n_init + s) * abs(o) + T(1), -1);
      const Var<T> slog = tanh(P / T(1e-4));
      const Var<T> sign_new = g * slin + (T(1) - g) * slog;
      const Var<T> mag_new = g * abs(R) + (T(1) - g) * exp(clamp(R, -big, T(100)));
      M = concat<T>({M, mag_new.unsqueeze(-1)}, -1);
      S = concat<T>({S, sign_new.unsqueeze(-1)}, -1);
      last = sign_new * mag_new;
    }
  }
  return last;
}

}  // namespace dagpt::dag
