// The DAG executor: runs a DagPlan and returns the value of every plan, as one fused autograd Function
// (forward and a hand-written backward; nothing is saved but the inputs, the backward recomputes the
// few values it needs per DAG). Computes in double over all plans; the output has the inputs' type.
//
// Step s reads slots j < n_init + s (the causal mask) and writes slot n_init + s. With g = G[s]:
//
// Default semantics (exact on encoded plans):
//   x_j = S_j * M_j for initial slots; intermediate slots hold their signed value v_j directly.
//   linear:  R = sum_j o_j x_j                      (exact sums: no tanh shrinking of small values)
//   log:     |P| = prod_j m_j ^ o_j  = exp(sum_j o_j ln m_j),  m_j = |x_j|
//            sign(P) = prod_j f_j,  f_j = 1 + (S_j - 1) * p(o_j)
//            p is the triangle wave of period 2 (p(0) = 0, p(1) = 1, p(2) = 0, linear between): for
//            S = +-1 and integer o it is the exact parity of the coefficient (-2*-2 = +4), for
//            predictions it is smooth in S and piecewise linear in o, so both get useful gradients.
//            The sign of an intermediate value enters as sign(v) (zero gradient; v's gradient flows
//            through its magnitude and through linear steps).
//   value:   v = g * clamp(R, +-1e28) + (1 - g) * sign(P) * min(|P|, 1e28)   (HEAD's upper clamps)
//   A factor that is exactly zero with o_j > 0 makes the product exactly 0 (x * 0 = 0, not 1e-12), and
//   gives no gradient through the product; a zero divisor gives 1e28.
//
// Reference semantics (REFERENCE.md §2, number for number): mixed_j = ln(max(M_j,1e-12))(1-g) + S_j M_j g,
//   R = sum_j o_j mixed_j, sign = g tanh(R/1e-4) + (1-g) tanh(prod_j (2 S_j |o_j| + 1) / 1e-4),
//   mag = g |R| + (1-g) exp(min(R, 100)); intermediate slots store (mag, sign); output = S*M of the last
//   slot, rounded to the inputs' type.
//
// Gradients reach all four inputs; masked (future) O entries and the intermediate slots of V_mag and
// V_sign get zero (they are never read).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "dagpt/autograd/function.hpp"
#include "dagpt/dag/plan.hpp"

namespace dagpt::dag {

enum class Semantics { exact, reference };

inline constexpr int kMaxDepth = 32;
inline constexpr double kMagMax = 1e28;

namespace detail {

inline constexpr int kMaxNodes = 2 * kMaxDepth + 1;
inline const double kLogMagMax = std::log(kMagMax);

// Triangle wave of period 2 on |o| (the parity weight) and its derivative in o.
inline double parity_weight(double o) {
  double a = std::abs(o);
  if (a > 2) a = std::fmod(a, 2.0);
  return a <= 1 ? a : 2 - a;
}
inline double parity_weight_grad(double o) {
  double a = std::abs(o);
  if (a > 2) a = std::fmod(a, 2.0);
  const double s = o > 0 ? 1.0 : (o < 0 ? -1.0 : 0.0);
  return a <= 1 ? s : -s;
}

// One DAG's inputs (raw rows) and its layout.
template <typename T>
struct DagView {
  const T* vmag;
  const T* vsign;
  const T* o;
  const T* g;
};
template <typename T>
struct DagGrad {
  T* vmag;  // may be null when not needed
  T* vsign;
  T* o;
  T* g;
};

// Double-double numbers (hi + lo, |lo| <= ulp(hi)/2): the exact semantics carries every node's value
// this way through the forward pass, so that an encoded plan's result is its exact value up to one
// final rounding even when a later step cancels (936k - 935.6k). The backward pass needs only hi.
struct DD {
  double hi = 0;
  double lo = 0;
};
inline DD quick_two_sum(double a, double b) {
  const double s = a + b;
  return {s, b - (s - a)};
}
inline DD dd_add(DD x, DD y) {
  const double s = x.hi + y.hi;
  const double bb = s - x.hi;
  double e = (x.hi - (s - bb)) + (y.hi - bb);
  e += x.lo + y.lo;
  return quick_two_sum(s, e);
}
inline DD dd_mul(DD x, DD y) {
  const double p = x.hi * y.hi;
  double e = std::fma(x.hi, y.hi, -p);
  e += x.hi * y.lo + x.lo * y.hi;
  return quick_two_sum(p, e);
}
inline DD dd_div(DD x, DD y) {
  const double q1 = x.hi / y.hi;
  const DD r = dd_add(x, dd_mul(DD{-q1, 0}, y));
  const double q2 = r.hi / y.hi;
  return quick_two_sum(q1, q2);
}
inline DD dd_scale(DD x, double o) { return dd_mul(x, DD{o, 0}); }

// What the exact backward pass reads from its forward pass, per DAG: the log magnitude and the value
// of every node, and the (clamped) product magnitude of every step. With these the backward pass
// recomputes the rest without a single exp or log.
inline int exact_workspace(int d, int n) { return 2 * n + d; }

// A small integer coefficient (every encoded plan has only these): its product is taken by
// multiplication, in double-double.
inline bool small_integer(double o) { return o == std::nearbyint(o) && std::abs(o) <= 16; }

template <typename T>
double exact_forward(int d, int n_init, const DagView<T>& in, double* ws) {
  const int n = n_init + d;
  std::array<DD, kMaxNodes> v;
  std::array<double, kMaxNodes> m;
  std::array<double, kMaxNodes> s;
  std::array<double, kMaxNodes> lm;
  auto set_node = [&](int j, DD val, double mag, double sign) {
    v[j] = val;
    m[j] = mag;
    s[j] = sign;
    lm[j] = mag > 0 ? std::log(mag) : 0.0;
  };
  for (int j = 0; j < n_init; ++j) {
    const double mag = static_cast<double>(in.vmag[j]);
    const double sign = static_cast<double>(in.vsign[j]);
    set_node(j, DD{sign * mag, 0}, mag, sign);
  }
  for (int st = 0; st < d; ++st) {
    const int na = n_init + st;
    const T* row = in.o + static_cast<std::ptrdiff_t>(st) * n;
    bool integral = true;
    for (int j = 0; j < na && integral; ++j) {
      const double o = static_cast<double>(row[j]);
      integral = o == 0 || small_integer(o);
    }
    double rlog = 0;
    double sigma = 1;
    bool zero_num = false;
    bool zero_den = false;
    DD rl;
    DD num{1, 0};
    DD den{1, 0};
    for (int j = 0; j < na; ++j) {
      const double o = static_cast<double>(row[j]);
      if (o == 0) continue;
      if (m[j] > 0) {
        rlog += o * lm[j];
      } else if (o > 0) {
        zero_num = true;
      } else {
        zero_den = true;
      }
      if (integral) {  // exact path: double-double sums and products
        rl = dd_add(rl, dd_scale(v[j], o));
        const DD mag = v[j].hi < 0 ? DD{-v[j].hi, -v[j].lo} : v[j];
        const int k = static_cast<int>(std::abs(o));
        for (int r = 0; r < k; ++r) (o > 0 ? num : den) = dd_mul(o > 0 ? num : den, mag);
        if (k % 2 == 1) sigma *= s[j];
      } else {  // fast path (predictions): plain double
        rl.hi += o * v[j].hi;
        sigma *= 1 + (s[j] - 1) * parity_weight(o);
      }
    }
    DD mag;
    if (zero_num) {
      mag = DD{0, 0};
    } else if (zero_den || rlog >= kLogMagMax) {
      mag = DD{kMagMax, 0};
    } else if (integral) {
      mag = dd_div(num, den);
      if (!(mag.hi < kMagMax)) mag = DD{kMagMax, 0};
    } else {
      mag = DD{std::exp(rlog), 0};
    }
    const double lin = std::clamp(rl.hi, -kMagMax, kMagMax);
    const double gate = static_cast<double>(in.g[st]);
    DD val;
    if (gate == 1) {
      val = lin == rl.hi ? rl : DD{lin, 0};
    } else if (gate == 0 && (sigma == 1 || sigma == -1)) {
      val = sigma == 1 ? mag : DD{-mag.hi, -mag.lo};
    } else {
      val = DD{gate * lin + (1 - gate) * sigma * mag.hi, 0};
    }
    set_node(na, val, std::abs(val.hi), val.hi > 0 ? 1.0 : (val.hi < 0 ? -1.0 : 0.0));
    if (ws != nullptr) ws[2 * n + st] = mag.hi;
  }
  if (ws != nullptr) {
    for (int j = 0; j < n; ++j) {
      ws[j] = lm[j];
      ws[n + j] = v[j].hi;
    }
  }
  return v[n - 1].hi + v[n - 1].lo;
}

template <typename T>
void exact_backward(int d, int n_init, const DagView<T>& in, const double* ws, double gout,
                    const DagGrad<T>& out) {
  const int n = n_init + d;
  const double* lm = ws;
  const double* vh = ws + n;
  const double* magv = ws + 2 * n;
  std::array<double, kMaxNodes> m;
  std::array<double, kMaxNodes> s;
  for (int j = 0; j < n; ++j) {
    m[j] = j < n_init ? static_cast<double>(in.vmag[j]) : std::abs(vh[j]);
    s[j] = j < n_init ? static_cast<double>(in.vsign[j]) : (vh[j] > 0 ? 1.0 : (vh[j] < 0 ? -1.0 : 0.0));
  }
  std::array<double, kMaxNodes> dv;  // through linear use (and the value itself)
  std::array<double, kMaxNodes> dm;  // through the log magnitude
  std::array<double, kMaxNodes> ds;  // through the log sign (initial slots only)
  std::array<double, kMaxNodes> f;
  std::array<double, kMaxNodes + 1> suffix;
  for (int j = 0; j < n; ++j) dv[j] = dm[j] = ds[j] = 0;
  dv[n - 1] = gout;
  for (int st = d - 1; st >= 0; --st) {
    const int na = n_init + st;
    const T* row = in.o + static_cast<std::ptrdiff_t>(st) * n;
    double rl = 0;
    bool zero_num = false;
    suffix[na] = 1;
    for (int j = na - 1; j >= 0; --j) {
      const double o = static_cast<double>(row[j]);
      rl += o * vh[j];
      zero_num = zero_num || (o > 0 && m[j] == 0);
      f[j] = o == 0 ? 1.0 : 1 + (s[j] - 1) * parity_weight(o);
      suffix[j] = suffix[j + 1] * f[j];
    }
    const double sigma = suffix[0];
    const double mag = magv[st];
    const double lin = std::clamp(rl, -kMagMax, kMagMax);
    // the total gradient of this step's value: direct uses plus its magnitude's uses
    const double dval = dv[na] + dm[na] * s[na];
    const double gate = static_cast<double>(in.g[st]);
    if (out.g) out.g[st] = static_cast<T>(dval * (lin - sigma * mag));
    const double drl = std::abs(rl) < kMagMax ? dval * gate : 0.0;
    const double dsigma = dval * (1 - gate) * mag;
    const bool mag_live = !zero_num && mag < kMagMax;
    const double drlog = mag_live ? dval * (1 - gate) * sigma * mag : 0.0;
    T* grow = out.o ? out.o + static_cast<std::ptrdiff_t>(st) * n : nullptr;
    double prefix = 1;
    for (int j = 0; j < na; ++j) {
      const double o = static_cast<double>(row[j]);
      double dO = drl * vh[j];
      if (m[j] > 0) dO += drlog * lm[j];
      if (o != 0) {
        const double df = dsigma * prefix * suffix[j + 1];
        dO += df * (s[j] - 1) * parity_weight_grad(o);
        dv[j] += drl * o;
        ds[j] += df * parity_weight(o);
        if (m[j] > 0) dm[j] += drlog * o / m[j];
      }
      if (grow) grow[j] = static_cast<T>(dO);
      prefix *= f[j];
    }
  }
  for (int j = 0; j < n_init; ++j) {
    // x = S*M; m = M; the sign factor reads S
    if (out.vmag) out.vmag[j] = static_cast<T>(dv[j] * s[j] + dm[j]);
    if (out.vsign) out.vsign[j] = static_cast<T>(dv[j] * m[j] + ds[j]);
  }
}

// ---- reference semantics: one log per node; forward saves M, S, logs and per-step values for backward
inline int reference_workspace(int d, int n) { return 3 * n + 5 * d; }

inline double tanh_sat(double x) { return std::abs(x) >= 20 ? std::copysign(1.0, x) : std::tanh(x); }

template <typename T>
double reference_forward(int d, int n_init, const DagView<T>& in, double* ws) {
  const int n = n_init + d;
  double* M = ws;
  double* S = ws + n;
  double* L = ws + 2 * n;
  double* st5 = ws + 3 * n;
  for (int j = 0; j < n_init; ++j) {
    M[j] = static_cast<double>(in.vmag[j]);
    S[j] = static_cast<double>(in.vsign[j]);
    L[j] = std::log(std::max(M[j], 1e-12));
  }
  for (int st = 0; st < d; ++st) {
    const int na = n_init + st;
    const T* row = in.o + static_cast<std::ptrdiff_t>(st) * n;
    const double g = static_cast<double>(in.g[st]);
    double R = 0;
    double P = 1;
    for (int j = 0; j < na; ++j) {
      const double o = static_cast<double>(row[j]);
      R += o * (L[j] * (1 - g) + S[j] * M[j] * g);
      P *= 2 * S[j] * std::abs(o) + 1;
    }
    double* sp = st5 + 5 * st;
    sp[0] = R;
    sp[1] = P;
    sp[2] = tanh_sat(R / 1e-4);
    sp[3] = tanh_sat(P / 1e-4);
    sp[4] = std::exp(std::min(R, 100.0));
    M[na] = g * std::abs(R) + (1 - g) * sp[4];
    S[na] = g * sp[2] + (1 - g) * sp[3];
    if (st + 1 < d) L[na] = std::log(std::max(M[na], 1e-12));
  }
  return S[n - 1] * M[n - 1];
}

template <typename T>
void reference_backward(int d, int n_init, const DagView<T>& in, const double* ws, double gout,
                        const DagGrad<T>& out) {
  const int n = n_init + d;
  const double* M = ws;
  const double* S = ws + n;
  const double* L = ws + 2 * n;
  const double* st5 = ws + 3 * n;
  std::array<double, kMaxNodes> dM;
  std::array<double, kMaxNodes> dS;
  std::array<double, kMaxNodes> w;
  std::array<double, kMaxNodes + 1> suffix;
  for (int j = 0; j < n; ++j) dM[j] = dS[j] = 0;
  dS[n - 1] = gout * M[n - 1];
  dM[n - 1] = gout * S[n - 1];
  for (int st = d - 1; st >= 0; --st) {
    const int na = n_init + st;
    const double* sp = st5 + 5 * st;
    const double R = sp[0], slin = sp[2], slog = sp[3], emag = sp[4];
    const double g = static_cast<double>(in.g[st]);
    const double dSn = dS[na];
    const double dMn = dM[na];
    double dg = dSn * (slin - slog) + dMn * (std::abs(R) - emag);
    const double dslin = dSn * g;
    const double dslog = dSn * (1 - g);
    const double sgnR = R > 0 ? 1.0 : (R < 0 ? -1.0 : 0.0);
    double dR = dMn * (g * sgnR + (1 - g) * (R <= 100.0 ? emag : 0.0));
    dR += dslin * (1 - slin * slin) / 1e-4;
    const double dP = dslog * (1 - slog * slog) / 1e-4;
    const T* row = in.o + static_cast<std::ptrdiff_t>(st) * n;
    T* grow = out.o ? out.o + static_cast<std::ptrdiff_t>(st) * n : nullptr;
    suffix[na] = 1;
    for (int j = na - 1; j >= 0; --j) {
      w[j] = 2 * S[j] * std::abs(static_cast<double>(row[j])) + 1;
      suffix[j] = suffix[j + 1] * w[j];
    }
    double prefix = 1;
    for (int j = 0; j < na; ++j) {
      const double o = static_cast<double>(row[j]);
      const double X = S[j] * M[j];
      const double mixed = L[j] * (1 - g) + X * g;
      const double dw = dP * prefix * suffix[j + 1];
      const double sgno = o > 0 ? 1.0 : (o < 0 ? -1.0 : 0.0);
      if (grow) grow[j] = static_cast<T>(dR * mixed + dw * 2 * S[j] * sgno);
      const double dmixed = dR * o;
      dg += dmixed * (X - L[j]);
      const double dX = dmixed * g;
      const double dL = dmixed * (1 - g);
      dS[j] += dw * 2 * std::abs(o) + dX * M[j];
      dM[j] += dX * S[j] + (M[j] >= 1e-12 ? dL / M[j] : 0.0);
      prefix *= w[j];
    }
    if (out.g) out.g[st] = static_cast<T>(dg);
  }
  for (int j = 0; j < n_init; ++j) {
    if (out.vmag) out.vmag[j] = static_cast<T>(dM[j]);
    if (out.vsign) out.vsign[j] = static_cast<T>(dS[j]);
  }
}

template <typename T>
DagView<T> view_at(const DagPlan<T>& p, std::int64_t i, int d, int n) {
  return {p.V_mag.data() + i * n, p.V_sign.data() + i * n, p.O.data() + i * d * n, p.G.data() + i * d};
}

}  // namespace detail

// Runs plans without recording a graph: the value of each plan, shape = the plans' batch shape.
// `workspace`, when given and defined ([count, 2N + d] doubles), receives what the exact backward needs.
template <typename T>
Tensor<T> execute_values(const DagPlan<T>& plan_in, Semantics sem = Semantics::exact,
                         Tensor<double>* workspace = nullptr) {
  plan_in.check("execute");
  const DagPlan<T> p{plan_in.V_mag.contiguous(), plan_in.V_sign.contiguous(), plan_in.O.contiguous(),
                     plan_in.G.contiguous()};
  const int d = p.depth();
  const int n = p.nodes();
  if (d > kMaxDepth)
    dagpt::detail::raise<ValueError>("execute: depth {} exceeds the maximum {}", d, kMaxDepth);
  Tensor<T> out = Tensor<T>::empty(p.batch_shape());
  T* o = out.data();
  const std::int64_t count = p.count();
  double* w = workspace != nullptr && workspace->defined() ? workspace->data() : nullptr;
  const int wn = sem == Semantics::exact ? detail::exact_workspace(d, n) : detail::reference_workspace(d, n);
  parallel_for(count, count * d * n * 8, [&](std::int64_t b, std::int64_t e) {
    std::array<double, 3 * detail::kMaxNodes + 5 * kMaxDepth> scratch;
    for (std::int64_t i = b; i < e; ++i) {
      const auto v = detail::view_at(p, i, d, n);
      o[i] = static_cast<T>(sem == Semantics::exact
                                ? detail::exact_forward(d, n - d, v, w ? w + i * wn : nullptr)
                                : detail::reference_forward(d, n - d, v, w ? w + i * wn : scratch.data()));
    }
  });
  return out;
}

// The executor as an autograd Function: inputs (V_mag, V_sign, O, G), output the values [batch].
template <typename T>
class Executor : public Function<T> {
 public:
  explicit Executor(Semantics sem) : sem_(sem) {}

  std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& in) override {
    DagPlan<T> p{in[0].contiguous(), in[1].contiguous(), in[2].contiguous(), in[3].contiguous()};
    bool any = false;
    for (std::size_t k = 0; k < 4; ++k) any = any || this->needs_input_grad(k);
    if (any) {
      workspace_ = Tensor<double>::empty(
          {p.count(), sem_ == Semantics::exact ? detail::exact_workspace(p.depth(), p.nodes())
                                               : detail::reference_workspace(p.depth(), p.nodes())});
    }
    Tensor<T> out = execute_values(p, sem_, &workspace_);
    if (any) this->save_for_backward({p.V_mag, p.V_sign, p.O, p.G});
    return {out};
  }

  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& grad) override {
    const auto& s = this->saved();
    const DagPlan<T> p{s[0], s[1], s[2], s[3]};
    const int d = p.depth();
    const int n = p.nodes();
    const Tensor<T> g = grad[0].contiguous();
    std::vector<Tensor<T>> out(4);
    for (std::size_t k = 0; k < 4; ++k) {
      if (this->needs_input_grad(k)) out[k] = Tensor<T>::zeros(s[k].shape());
    }
    auto ptr = [&out](std::size_t k) { return out[k].defined() ? out[k].data() : nullptr; };
    const std::int64_t count = p.count();
    parallel_for(count, count * d * n * 16, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const auto v = detail::view_at(p, i, d, n);
        const detail::DagGrad<T> gr{ptr(0) ? ptr(0) + i * n : nullptr, ptr(1) ? ptr(1) + i * n : nullptr,
                                    ptr(2) ? ptr(2) + i * d * n : nullptr, ptr(3) ? ptr(3) + i * d : nullptr};
        const double go = static_cast<double>(g.data()[i]);
        if (sem_ == Semantics::exact) {
          detail::exact_backward(d, n - d, v, workspace_.data() + i * detail::exact_workspace(d, n), go, gr);
        } else {
          detail::reference_backward(d, n - d, v, workspace_.data() + i * detail::reference_workspace(d, n),
                                     go, gr);
        }
      }
    });
    return out;
  }

  std::string name() const override {
    return sem_ == Semantics::exact ? "DagExecutor" : "DagExecutor(reference)";
  }
  void release() override {
    Function<T>::release();
    workspace_ = Tensor<double>();
  }

 private:
  Semantics sem_;
  Tensor<double> workspace_;  // exact semantics: per-DAG values saved by forward for backward
};

// The differentiable value of every plan: V_mag, V_sign [..., N], O [..., d, N], G [..., d] -> [...].
template <typename T>
Var<T> execute(const Var<T>& V_mag, const Var<T>& V_sign, const Var<T>& O, const Var<T>& G,
               Semantics sem = Semantics::exact) {
  DagPlan<T>{V_mag.value(), V_sign.value(), O.value(), G.value()}.check("execute");
  return apply<Executor<T>>(std::vector<Var<T>>{V_mag, V_sign, O, G}, sem)[0];
}

}  // namespace dagpt::dag
