// grad_check: compares the analytic gradients of a function of Vars with central finite differences, in
// double. A non-scalar output is projected onto fixed random weights first, so every output element
// contributes to what is checked.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "dagpt/autograd/ops.hpp"

namespace dagpt {

struct GradCheckOptions {
  double eps = 1e-6;   // finite-difference step
  double rtol = 1e-5;  // |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)
  double atol = 1e-7;
  std::uint64_t seed = 1234;  // for the output projection weights
  int max_reports = 8;        // mismatches listed in the report
};

struct GradCheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::int64_t checked = 0;  // number of input elements checked
  std::string report;        // the mismatches, with input index, element and both values
};

// Checks d f / d inputs for every element of every input. f must be deterministic.
inline GradCheckResult grad_check(const std::function<Var<double>(const std::vector<Var<double>>&)>& f,
                                  const std::vector<Tensor<double>>& inputs,
                                  const GradCheckOptions& opt = {}) {
  GradCheckResult res;
  std::vector<Tensor<double>> xs;
  for (const auto& x : inputs) xs.push_back(x.clone());

  // The projected scalar L = sum(w * f(x)), evaluated without a graph.
  Tensor<double> w;
  auto loss = [&](const std::vector<Tensor<double>>& vals) {
    NoGradGuard guard;
    std::vector<Var<double>> vs;
    for (const auto& v : vals) vs.emplace_back(v, false);
    const Tensor<double> y = f(vs).value();
    return sum(mul(y, w)).item();
  };

  std::vector<Var<double>> vars;
  for (const auto& x : xs) vars.emplace_back(x.clone(), true);
  const Var<double> y = f(vars);
  Generator gen(opt.seed, 7);
  w = Tensor<double>::rand(y.shape(), gen, 0.5, 1.5);
  if (!y.requires_grad()) {
    res.ok = false;
    res.report = "the output does not require grad: no gradient reaches the inputs";
    return res;
  }
  y.backward(w);

  for (std::size_t k = 0; k < xs.size(); ++k) {
    const Tensor<double> analytic =
        vars[k].grad().defined() ? vars[k].grad().contiguous() : Tensor<double>::zeros(xs[k].shape());
    double* p = xs[k].data();
    for (std::int64_t i = 0; i < xs[k].numel(); ++i) {
      const double orig = p[i];
      p[i] = orig + opt.eps;
      const double up = loss(xs);
      p[i] = orig - opt.eps;
      const double down = loss(xs);
      p[i] = orig;
      const double numeric = (up - down) / (2 * opt.eps);
      const double a = analytic.data()[i];
      const double err = std::abs(a - numeric);
      res.max_abs_error = std::max(res.max_abs_error, err);
      ++res.checked;
      if (!(err <= opt.atol + opt.rtol * std::max(std::abs(a), std::abs(numeric)))) {
        if (res.ok ||
            static_cast<int>(std::count(res.report.begin(), res.report.end(), '\n')) < opt.max_reports) {
          res.report += fmt::format("input {} element {}: analytic {:.10g}, numeric {:.10g}, error {:.3g}\n",
                                    k, i, a, numeric, err);
        }
        res.ok = false;
      }
    }
  }
  return res;
}

}  // namespace dagpt
