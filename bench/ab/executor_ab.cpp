// The driver of bench/compare/executor_ab.sh: two versions of the DAG executor (A and B, linked into this one
// program) timed in alternation on the same random plans, so that the shared machine's drift, which moves
// separate runs by 10-30% within minutes, falls on both alike. Each turn runs one side 5 times (a warm-up
// call, whose caches the other side has just used, then 4 timed calls, of which the middle two are kept),
// and the sides take turns A B, B A, A B, ... A pair is two neighbouring turns; its ratio is B's time over
// A's. Prints per depth the medians, the median of the pair ratios and its spread over blocks of 100 pairs.
//
//   dagpt_executor_ab [--pairs N=400] [--count C=8192] [--depths 4,8] [--exact] [--forward-only]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../dag_inputs.hpp"

extern "C" void dagpt_ab_setup_a(int, int, std::int64_t, const double*, const double*, const double*,
                                 const double*);
extern "C" void dagpt_ab_setup_b(int, int, std::int64_t, const double*, const double*, const double*,
                                 const double*);
extern "C" double dagpt_ab_run_a(int, int, int);
extern "C" double dagpt_ab_run_b(int, int, int);

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "dagpt_executor_ab: %s\nusage: dagpt_executor_ab [--pairs N] [--count C] [--depths D1,D2] "
               "[--exact] [--forward-only]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int pairs = 400;
  std::int64_t count = 8192;
  std::vector<int> depths{4, 8};
  int reference = 1;
  int forward_only = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--pairs" && v != nullptr) {
      pairs = std::atoi(v);
      ++i;
    } else if (a == "--count" && v != nullptr) {
      count = std::atoll(v);
      ++i;
    } else if (a == "--depths" && v != nullptr) {
      depths.clear();
      for (const char* p = v; *p != '\0';) {
        char* end = nullptr;
        depths.push_back(static_cast<int>(std::strtol(p, &end, 10)));
        if (end == p) usage("--depths takes numbers separated by commas");
        p = *end == ',' ? end + 1 : end;
      }
      ++i;
    } else if (a == "--exact") {
      reference = 0;
    } else if (a == "--forward-only") {
      forward_only = 1;
    } else {
      usage(("unknown argument '" + a + "'").c_str());
    }
  }
  if (pairs < 100 || count < 1 || depths.empty() || depths.size() > 2)
    usage("need --pairs >= 100, --count >= 1, one or two depths");
  for (const int d : depths) {
    if (d < 1 || d > 32) usage("a depth must be 1..32");
  }

  // The benchmarks' random plans (bench/dag_inputs.hpp), the same for both sides.
  for (std::size_t slot = 0; slot < depths.size(); ++slot) {
    const int d = depths[slot];
    const dagbench::Plan p = dagbench::random_plans(count, d);
    dagpt_ab_setup_a(static_cast<int>(slot), d, count, p.V_mag.data(), p.V_sign.data(), p.O.data(),
                     p.G.data());
    dagpt_ab_setup_b(static_cast<int>(slot), d, count, p.V_mag.data(), p.V_sign.data(), p.O.data(),
                     p.G.data());
  }

  std::printf("DAG executor A/B: %s, %s, %lld DAGs, %d pairs per depth (B/A < 1: B faster)\n\n",
              reference != 0 ? "reference" : "exact", forward_only != 0 ? "forward" : "forward+backward",
              static_cast<long long>(count), pairs);
  std::printf("| depth | A ms | B ms | B/A (pairs) | B/A (medians) | B/A per 100 pairs |\n");
  std::printf("|---:|---:|---:|---:|---:|---|\n");
  for (std::size_t slot = 0; slot < depths.size(); ++slot) {
    const int s = static_cast<int>(slot);
    const auto call = [&](bool a) {
      return a ? dagpt_ab_run_a(s, reference, forward_only) : dagpt_ab_run_b(s, reference, forward_only);
    };
    const double va = call(true);
    const double vb = call(false);
    if (!(va == vb || (std::isnan(va) && std::isnan(vb)))) {  // a change of rounding, or a bug: say so
      std::fprintf(stderr, "dagpt_executor_ab: depth %d: the sides' results differ: A %.17g, B %.17g\n",
                   depths[slot], va, vb);
    }
    for (int w = 0; w < 20; ++w) {
      call(true);
      call(false);
    }
    std::vector<double> ta, tb;
    for (int i = 0; i < pairs; ++i) {
      for (int k = 0; k < 2; ++k) {
        const bool a = (k == 0) == (i % 2 == 0);
        call(a);
        double t[4];
        for (double& x : t) {
          const auto t0 = std::chrono::steady_clock::now();
          call(a);
          x = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        }
        std::sort(t, t + 4);
        (a ? ta : tb).push_back(0.5 * (t[1] + t[2]));
      }
    }
    std::vector<double> r(ta.size());
    for (std::size_t i = 0; i < ta.size(); ++i) r[i] = tb[i] / ta[i];
    double lo = 1e300;
    double hi = 0;
    for (std::size_t c = 0; c + 100 <= ta.size(); c += 100) {
      const double q = median({r.begin() + c, r.begin() + c + 100});
      lo = std::min(lo, q);
      hi = std::max(hi, q);
    }
    std::printf("| %d | %.4f | %.4f | %.4f | %.4f | %.3f-%.3f |\n", depths[slot], median(ta), median(tb),
                median(r), median(tb) / median(ta), lo, hi);
  }
  return 0;
}
