// A downstream program: builds tensors, runs an elementwise op, a reduction and a backward pass through
// dagpt::dagpt as installed (or added as a subdirectory). Exits non-zero on a wrong value.
#include <cstdint>
#include <cstdio>
#include <dagpt/dagpt.hpp>

int main() {
  auto a = dagpt::Tensor<float>::ones({2, 3});
  auto b = dagpt::Tensor<float>::arange(6).reshape({2, 3});
  auto c = a + b;                  // elementwise: 1..6
  float s = dagpt::sum(c).item();  // 1+2+...+6 = 21

  dagpt::Var<double> x(dagpt::Tensor<double>::full({3}, 2.0), /*requires_grad=*/true);
  auto y = dagpt::sum(x * x);
  y.backward();  // dy/dx = 2x = 4

  fmt::print("{}\n", c);

  int failures = 0;
  if (s != 21.0F) {
    fmt::print(stderr, "consumer: sum(ones + arange) = {}, expected 21\n", s);
    ++failures;
  }
  auto grad = x.grad();  // Tensor<double> [3]
  for (std::int64_t i = 0; i < 3; ++i) {
    double g = grad.at({i});
    if (g != 4.0) {
      fmt::print(stderr, "consumer: grad[{}] = {}, expected 4\n", i, g);
      ++failures;
    }
  }
  if (failures == 0) fmt::print("consumer: ok\n");
  return failures == 0 ? 0 : 1;
}
