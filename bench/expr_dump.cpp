// Prints generated expression texts, one a line, for benchmarks against other tools (bench/compare) and
// for the fuzz seed corpus: the same (seed, stream, index) always gives the same text.
//   dagpt_expr_dump [N=10000] [--seed S=42] [--stream K=0] [--first I=0] [--depth D=4] [--digits M=4]
//                   [--decimals P=4] [--int-prob X=0]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dagpt/expr/expr.hpp"

int main(int argc, char** argv) {
  long long n = 10000;
  unsigned long long seed = 42;
  unsigned long long stream = dagpt::expr::kTrainStream;
  unsigned long long first = 0;
  dagpt::expr::GeneratorOptions opt;
  opt.depth = 4;
  opt.max_digits = 4;
  opt.max_decimal_places = 4;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    auto flag = [&](const char* name) {
      if (std::strcmp(a, name) != 0) return false;
      if (v == nullptr) {
        std::fprintf(stderr, "dagpt_expr_dump: %s needs a value\n", name);
        std::exit(2);
      }
      ++i;
      return true;
    };
    if (flag("--seed")) {
      seed = std::strtoull(v, nullptr, 10);
    } else if (flag("--stream")) {
      stream = std::strtoull(v, nullptr, 10);
    } else if (flag("--first")) {
      first = std::strtoull(v, nullptr, 10);
    } else if (flag("--depth")) {
      opt.depth = std::atoi(v);
    } else if (flag("--digits")) {
      opt.max_digits = std::atoi(v);
    } else if (flag("--decimals")) {
      opt.max_decimal_places = std::atoi(v);
    } else if (flag("--int-prob")) {
      opt.integer_probability = std::strtod(v, nullptr);
    } else if (a[0] != '-') {
      n = std::atoll(a);
    } else {
      std::fprintf(stderr,
                   "usage: dagpt_expr_dump [N] [--seed S] [--stream K] [--first I] [--depth D] [--digits M] "
                   "[--decimals P] [--int-prob X]\n");
      return 2;
    }
  }
  try {
    std::string out;
    for (long long i = 0; i < n; ++i) {
      out += dagpt::expr::generate(seed, stream, first + static_cast<unsigned long long>(i), opt).text;
      out += '\n';
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
  } catch (const dagpt::Error& e) {
    std::fprintf(stderr, "dagpt_expr_dump: %s\n", e.what());
    return 2;
  }
  return 0;
}
