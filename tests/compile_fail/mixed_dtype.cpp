// Must NOT compile: dagpt never converts element types silently. The ctest
// "compile_fail.mixed_dtype" builds this file and expects the static_assert's message.
#include <dagpt/dagpt.hpp>

int main() {
  auto a = dagpt::Tensor<float>::ones({2});
  auto b = dagpt::Tensor<double>::ones({2});
  auto c = a + b;
  return static_cast<int>(c.numel());
}
