// One side of bench/compare/executor_ab.sh: compiled twice, each time against another version of dagpt's
// headers, with the namespace renamed (-Ddagpt=dagpt_ab_a, -Ddagpt=dagpt_ab_b) so that both versions link
// into one program, and with DAGPT_AB_SIDE naming the two entry points (dagpt_ab_setup_a, dagpt_ab_run_a
// ...).
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "dagpt/autograd/var.hpp"
#include "dagpt/dag/executor.hpp"

#ifndef DAGPT_AB_SIDE
#error "compile with -DDAGPT_AB_SIDE=a (or b)"
#endif
#define DAGPT_AB_CAT2(x, y) x##y
#define DAGPT_AB_CAT(x, y) DAGPT_AB_CAT2(x, y)

namespace {

struct Batch {
  dagpt::Tensor<double> vm, vs, o, g, ones;
};
std::unique_ptr<Batch> batches[2];  // one per slot (the driver's depths)

dagpt::Tensor<double> copy_of(dagpt::Shape shape, const double* src) {
  dagpt::Tensor<double> t = dagpt::Tensor<double>::empty(std::move(shape));
  std::memcpy(t.data(), src, static_cast<std::size_t>(t.numel()) * sizeof(double));
  return t;
}

}  // namespace

// Copies a batch of `count` plans of depth d into slot `slot` (0 or 1).
extern "C" void DAGPT_AB_CAT(dagpt_ab_setup_, DAGPT_AB_SIDE)(int slot, int d, std::int64_t count,
                                                             const double* vm, const double* vs,
                                                             const double* o, const double* g) {
  const std::int64_t n = 2 * static_cast<std::int64_t>(d);
  auto b = std::make_unique<Batch>();
  b->vm = copy_of({count, n}, vm);
  b->vs = copy_of({count, n}, vs);
  b->o = copy_of({count, static_cast<std::int64_t>(d), n}, o);
  b->g = copy_of({count, static_cast<std::int64_t>(d)}, g);
  b->ones = dagpt::Tensor<double>::ones({count});
  batches[slot] = std::move(b);
}

// One call on slot `slot`, as the benchmarks time it: forward and (unless forward_only) backward with a ones
// output gradient; `reference` picks the semantics. Returns an element of the result, so that nothing is
// optimized away (and the driver can check that both sides agree).
extern "C" double DAGPT_AB_CAT(dagpt_ab_run_, DAGPT_AB_SIDE)(int slot, int reference, int forward_only) {
  const Batch& b = *batches[slot];
  const auto sem = reference != 0 ? dagpt::dag::Semantics::reference : dagpt::dag::Semantics::exact;
  const bool grad = forward_only == 0;
  dagpt::Var<double> vm(b.vm, grad), vs(b.vs, grad), o(b.o, grad), g(b.g, grad);
  dagpt::Var<double> y = dagpt::dag::execute(vm, vs, o, g, sem);
  if (!grad) return y.value().data()[0];
  y.backward(b.ones);
  return o.grad().data()[0] + vm.grad().data()[0];
}
