// Writes a batch of plans and what dagpt's executor makes of them, for bench/compare/executor_torch.py to
// check PyTorch against, value for value:
//   dagpt_dag_dump OUT.bin [--depth D=4] [--count C=8192] [--encoded] [--seed S=1]
// Plans: bench/dag_inputs.hpp (random, or --encoded real targets), batch [C/32, 32]. The file is
//   "DAGDUMP1", then int64 d, B, T, then float64 arrays, C order:
//   V_mag [B,T,N], V_sign [B,T,N], O [B,T,d,N], G [B,T,d],
//   reference-semantics output [B,T] and the gradients of V_mag, V_sign, O, G for a ones output gradient,
//   exact-semantics output [B,T].
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dag_inputs.hpp"
#include "dagpt/autograd/var.hpp"
#include "dagpt/dag/executor.hpp"

namespace {

bool write_all(std::FILE* f, const void* p, std::size_t bytes) {
  return std::fwrite(p, 1, bytes, f) == bytes;
}

bool write_tensor(std::FILE* f, const dagpt::Tensor<double>& t) {
  const auto c = t.contiguous();
  return write_all(f, c.data(), static_cast<std::size_t>(c.numel()) * sizeof(double));
}

}  // namespace

int main(int argc, char** argv) {
  const char* out = nullptr;
  int d = 4;
  long long count = 8192;
  bool encoded = false;
  unsigned long long seed = 1;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (dagbench::size_option(argc, argv, i, d, count)) {
      continue;
    } else if (std::strcmp(a, "--seed") == 0 && v) {
      seed = std::strtoull(v, nullptr, 10);
      ++i;
    } else if (std::strcmp(a, "--encoded") == 0) {
      encoded = true;
    } else if (a[0] != '-' && out == nullptr) {
      out = a;
    } else {
      out = nullptr;
      break;
    }
  }
  if (out == nullptr || !dagbench::valid_size(d, count)) {
    std::fprintf(
        stderr,
        "usage: dagpt_dag_dump OUT.bin [--depth D] [--count C (a multiple of 32)] [--encoded] [--seed S]\n");
    return 2;
  }
  try {
    using dagpt::Var;
    using dagpt::dag::Semantics;
    const dagbench::Plan p =
        encoded ? dagbench::encoded_plans(count, d) : dagbench::random_plans(count, d, seed);
    Var<double> vm(p.V_mag, true), vs(p.V_sign, true), o(p.O, true), g(p.G, true);
    Var<double> y = dagpt::dag::execute(vm, vs, o, g, Semantics::reference);
    y.backward(dagpt::Tensor<double>::ones(y.shape()));
    const auto exact = dagpt::dag::execute_values(p, Semantics::exact);

    std::FILE* f = std::fopen(out, "wb");
    if (f == nullptr) {
      std::fprintf(stderr, "dagpt_dag_dump: cannot write %s\n", out);
      return 1;
    }
    const long long head[3] = {d, count / 32, 32};
    bool ok = write_all(f, "DAGDUMP1", 8) && write_all(f, head, sizeof head);
    for (const auto* t : {&p.V_mag, &p.V_sign, &p.O, &p.G, &y.value(), &vm.grad(), &vs.grad(), &o.grad(),
                          &g.grad(), &exact}) {
      ok = ok && write_tensor(f, *t);
    }
    ok = std::fclose(f) == 0 && ok;
    if (!ok) {
      std::fprintf(stderr, "dagpt_dag_dump: writing %s failed\n", out);
      return 1;
    }
  } catch (const dagpt::Error& e) {
    std::fprintf(stderr, "dagpt_dag_dump: %s\n", e.what());
    return 2;
  }
  return 0;
}
