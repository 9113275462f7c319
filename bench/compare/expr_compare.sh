#!/usr/bin/env bash
# dagpt's expression front-end beside SymPy's (the reference's sympify + normalize_expression), on the same
# N generated texts, one core each: dagpt_expr_dump writes the texts, dagpt_expr_bench times parse and
# parse + normalize on that file, bench/compare/expr_sympy.py times SymPy on it, and a table of
# expressions/s and the ratio is printed (and kept, with the raw JSON, in bench/compare/out/).
#   bench/compare/expr_compare.sh [BUILD_DIR=build/release] [N=10000]
# BUILD_DIR is a configured dagpt build with DAGPT_BUILD_BENCH=ON; the two targets are (re)built in it.
# Needs /usr/bin/python3 with python3-sympy (scripts/install-deps.sh --bench).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build/release}
n=${2:-10000}
out=$root/bench/compare/out
mkdir -p "$out"

cmake --build "$build" --target dagpt_expr_bench dagpt_expr_dump -j 2

texts=$out/expr_texts.txt
"$build/bench/dagpt_expr_dump" "$n" >"$texts"
echo "expr_compare: $(wc -l <"$texts") texts in $texts"

# One core: the dagpt side is single-threaded code, and SymPy is one Python thread.
DAGPT_EXPR_BENCH_TEXTS=$texts OMP_NUM_THREADS=1 taskset -c 0 "$build/bench/dagpt_expr_bench" \
  --benchmark_filter='^expr/(parse|parse\+normalize|parse\+normalize_reference)$' \
  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/expr_dagpt.json" --benchmark_out_format=json >/dev/null 2>"$out/expr_dagpt.log" ||
  { cat "$out/expr_dagpt.log" >&2; exit 1; }
taskset -c 0 /usr/bin/python3 "$root/bench/compare/expr_sympy.py" "$texts" >"$out/expr_sympy.json"

/usr/bin/python3 - "$out/expr_dagpt.json" "$out/expr_sympy.json" <<'EOF' | tee "$out/expr_compare.txt"
import json, sys
dagpt = {b["run_name"]: b["items_per_second"] for b in json.load(open(sys.argv[1]))["benchmarks"]
         if b.get("aggregate_name") == "median"}
sympy = json.load(open(sys.argv[2]))
rows = [("parse", "expr/parse", "parse_per_s"),
        ("parse + normalize", "expr/parse+normalize", "parse_normalize_per_s"),
        ("parse + normalize (reference mode)", "expr/parse+normalize_reference", "parse_normalize_per_s")]
print(f"{sympy['count']} texts, one core; dagpt: median of 5 runs; SymPy {sympy['sympy_version']} "
      f"(Python {sympy['python_version']}): one pass")
print(f"| {'stage':<36} | {'dagpt expr/s':>14} | {'SymPy expr/s':>12} | {'ratio':>9} |")
print(f"|{'-' * 38}|{'-' * 16}|{'-' * 14}|{'-' * 11}|")
for label, key, skey in rows:
    d, s = dagpt[key], sympy[skey]
    print(f"| {label:<36} | {d:>14,.0f} | {s:>12,.0f} | {d / s:>8,.0f}x |")
EOF
