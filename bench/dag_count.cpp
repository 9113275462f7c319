// The DAG executor's work in instructions, which the host's load does not change (its timings on a shared
// machine swing by 2x): run under callgrind by bench/compare/executor_instructions.sh, which counts only
// inside run_once.
//   dagpt_dag_count [--depth D=4] [--count C=8192] [--reference] [--forward-only] [--repeat R=3]
// Each call of run_once runs the executor on C random plans (bench/dag_inputs.hpp), forward and, unless
// --forward-only, backward with a ones output gradient: the bench's fwd and fwd+bwd passes.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "dag_inputs.hpp"
#include "dagpt/autograd/var.hpp"
#include "dagpt/dag/executor.hpp"

namespace {

[[gnu::noinline]] double run_once(const dagbench::Plan& p, const dagpt::Tensor<double>& ones,
                                  dagpt::dag::Semantics sem, bool backward) {
  dagpt::Var<double> vm(p.V_mag, backward), vs(p.V_sign, backward), o(p.O, backward), g(p.G, backward);
  dagpt::Var<double> y = dagpt::dag::execute(vm, vs, o, g, sem);
  if (!backward) return y.value().data()[0];
  y.backward(ones);
  return o.grad().data()[0];
}

}  // namespace

int main(int argc, char** argv) {
  int d = 4;
  long long count = 8192;
  int repeat = 3;
  bool reference = false;
  bool backward = true;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (dagbench::size_option(argc, argv, i, d, count)) {
      continue;
    } else if (std::strcmp(a, "--repeat") == 0 && v) {
      repeat = std::atoi(v);
      ++i;
    } else if (std::strcmp(a, "--reference") == 0) {
      reference = true;
    } else if (std::strcmp(a, "--forward-only") == 0) {
      backward = false;
    } else {
      std::fprintf(stderr,
                   "dagpt_dag_count: unknown argument '%s'\nusage: dagpt_dag_count [--depth D] [--count C] "
                   "[--reference] [--forward-only] [--repeat R]\n",
                   a);
      return 2;
    }
  }
  if (!dagbench::valid_size(d, count) || d > dagpt::dag::kMaxDepth || repeat < 1) {
    std::fprintf(stderr,
                 "dagpt_dag_count: need 1 <= depth <= %d, a count that is a multiple of 32, repeat >= 1\n",
                 dagpt::dag::kMaxDepth);
    return 2;
  }
  const dagbench::Plan p = dagbench::random_plans(count, d);
  const auto ones = dagpt::Tensor<double>::ones(dagbench::batch_shape(count));
  const auto sem = reference ? dagpt::dag::Semantics::reference : dagpt::dag::Semantics::exact;
  double sink = 0;
  for (int r = 0; r < repeat; ++r) sink += run_once(p, ones, sem, backward);
  std::printf("%d %lld %d %.17g\n", d, count, repeat, sink);
  return 0;
}
