#!/usr/bin/env bash
# dagpt's DAG executor beside a PyTorch 1.13 twin of the reference executor, float64, forward+backward, in
# one command: builds dagpt_dag_bench and dagpt_dag_dump (Release) if needed, dumps one batch of random
# plans per depth with dagpt's reference-mode outputs and gradients, runs the dagpt benchmarks, then
# bench/compare/executor_torch.py (which first checks its own outputs and gradients against the dump,
# rtol 1e-9, then times itself on the same inputs) and prints a markdown table.
#
#   bench/compare/executor.sh
#   flock /tmp/dagpt-build.lock bench/compare/executor.sh   # on a shared machine (the script takes no lock)
#
# Environment: BUILD (build folder, default /tmp/dagpt-bench-build), OMP_NUM_THREADS (default 2),
# LARGE=1 to add 1,048,576-DAG rows (dagpt at depths 4 and 8, PyTorch at depth 4 only: its depth-8 graph
# needs ~10 GB), REPS (dagpt repetitions, default 5), MIN_TIME (seconds per PyTorch measurement, default 1),
# ROUNDS (alternating dagpt / PyTorch rounds, default 3; the table gives medians and ratio ranges).
# PyTorch gets the profile of bench/compare/run.sh: OpenBLAS pthread, jemalloc (never returning pages),
# 2 threads. Needs scripts/install-deps.sh --bench. Results stay in the folder it prints.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-/tmp/dagpt-bench-build}
threads=${OMP_NUM_THREADS:-2}
reps=${REPS:-5}
rounds=${ROUNDS:-3}
min_time=${MIN_TIME:-1}
large=${LARGE:-0}

python=/usr/bin/python3  # Debian's; a pyenv python3 earlier on PATH has no torch
openblas_dir=/usr/lib/x86_64-linux-gnu/openblas-pthread
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
malloc_conf=${TORCH_MALLOC_CONF-oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1}

for f in "$python" "$openblas_dir/libblas.so.3" "$jemalloc"; do
  [[ -e $f ]] || { echo "executor.sh: $f is missing; run scripts/install-deps.sh --bench" >&2; exit 1; }
done
"$python" -c "import torch, numpy" 2>/dev/null ||
  { echo "executor.sh: $python has no torch/numpy; run scripts/install-deps.sh --bench" >&2; exit 1; }

log() { echo "executor.sh: $*" >&2; }

# (a) build, incrementally.
if [[ ! -f $build/CMakeCache.txt ]]; then
  log "configuring $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDAGPT_BUILD_BENCH=ON \
    -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_EXAMPLES=OFF -DDAGPT_INSTALL=OFF >&2
fi
cmake --build "$build" --target dagpt_dag_bench dagpt_dag_dump -j 2 >&2

out=$(mktemp -d /tmp/executor-compare.XXXXXX)

# Other processes' CPU time during a phase (an OpenMP region waits for its slowest thread, so a busy
# machine skews both sides): busy jiffies of the machine minus this shell's children. `times` runs in this
# shell (a function, never inside $(...), where it would report the subshell's own zero times).
hz=$(getconf CLK_TCK)
ncpu=$(nproc)
interference=()
cpu_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
times_seconds() { awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] } print s }' "$1"; }
phase_start() { busy0=$(cpu_busy); times >"$out/.times0"; wall0=$(date +%s.%N); }
phase_end() {
  local busy1 wall1 line share
  times >"$out/.times1"
  busy1=$(cpu_busy); wall1=$(date +%s.%N)
  line=$(awk -v b="$((busy1 - busy0))" -v hz="$hz" -v c="$ncpu" -v o0="$(times_seconds "$out/.times0")" \
    -v o1="$(times_seconds "$out/.times1")" -v w0="$wall0" -v w1="$wall1" -v name="$1" 'BEGIN { w = w1 - w0;
    o = b / hz - (o1 - o0); if (o < 0) o = 0;
    printf "%s: %.0f s, own %.1f CPU-s, other processes %.1f CPU-s (%.0f%% of the machine)", name, w, o1 - o0, o,
    100 * o / (w * c) }')
  interference+=("$line")
  log "$line"
  share=${line##*(}; share=${share%%%*}
  if ((share > 5)); then log "WARNING: other work ran during the $1; its timings are disturbed"; fi
}

# (b) the same inputs for both sides: 8,192 random plans per depth, with dagpt's reference-mode results.
for d in 4 8; do "$build/bench/dagpt_dag_dump" "$out/d$d.bin" --depth "$d" --count 8192; done

# (c), (d): dagpt, then PyTorch (which first checks itself against the dumps), ROUNDS times in alternation:
# the shared machine's speed drifts within minutes, so each ratio pairs runs a few seconds apart.
filter='^dag/fwd\+bwd/(exact|reference)/random/d[48]/8192/'
[[ $large == 1 ]] && filter='^dag/fwd\+bwd/(exact|reference)/random/d[48]/(8192|1048576)/'
large_args=()
[[ $large == 1 ]] && large_args=(--large 4)
status=0
for ((round = 1; round <= rounds; round++)); do
  log "round $round of $rounds: dagpt_dag_bench ($threads threads, $reps repetitions) -> $out/dagpt.$round.json"
  phase_start
  OMP_NUM_THREADS=$threads "$build/bench/dagpt_dag_bench" "--benchmark_filter=$filter" \
    --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/dagpt.$round.json" --benchmark_out_format=json >&2
  phase_end "dagpt run $round"
  log "round $round of $rounds: PyTorch (OpenBLAS pthread, jemalloc, $threads threads) -> $out/torch.$round.json"
  phase_start
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    LD_LIBRARY_PATH=$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} LD_PRELOAD=$jemalloc MALLOC_CONF=$malloc_conf \
    "$python" "$root/bench/compare/executor_torch.py" "$out/torch.$round.json" "$out/d4.bin" "$out/d8.bin" \
    "${large_args[@]}" --min-time "$min_time" 2> >(tee -a "$out/torch.log" >&2) || status=$?
  phase_end "PyTorch run $round"
done

# (e) the table: medians over the rounds; a ratio is the median of the per-round ratios [their range].
"$python" - "$out" "$rounds" "$(IFS=';'; echo "${interference[*]}")" "$threads" <<'EOF' | tee "$out/table.md"
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
dagpt, torch, meta, cpus = [], [], None, None
for r in range(1, rounds + 1):
    bench = json.load(open(f"{out}/dagpt.{r}.json"))
    cpus = bench["context"].get("num_cpus")
    runs = {}
    for b in bench["benchmarks"]:
        # the median of the repetitions; with one repetition there is no aggregate, only the run itself
        if b.get("aggregate_name", "median") != "median":
            continue
        parts = b["run_name"].split("/")  # dag/fwd+bwd/<sem>/random/d<D>/<DAGs>/...
        key = (parts[2], int(parts[4][1:]), int(parts[5]))
        if b.get("run_type") == "aggregate" or key not in runs:
            runs[key] = b["real_time"]  # ms
    dagpt.append(runs)
    t = json.load(open(f"{out}/torch.{r}.json"))
    meta = t["meta"]
    torch.append({(x["depth"], x["dags"]): x for x in t["results"]})
med = statistics.median
print(f"DAG executor, float64, forward+backward (ones output gradient), random plans, batch [DAGs/32, 32]; "
      f"{rounds} alternating rounds. dagpt: {cpus} CPUs, OMP_NUM_THREADS={sys.argv[4]}; PyTorch "
      f"{meta['torch']}, {meta['threads']} threads, mapped: {', '.join(p.rsplit('/', 1)[-1] for p in meta['libs'])}")
print("PyTorch twin = the reference's structure (O sliced per step); unbound = O and G unbound once (faster "
      "for PyTorch). ms: medians over the rounds. Ratios: PyTorch ms / dagpt ms (> 1: dagpt faster), the median "
      "of the per-round ratios [lowest-highest]. check: PyTorch's outputs and input gradients equal dagpt's "
      "reference mode on the same inputs (rtol 1e-9), in every round.")
print()
print("| depth | DAGs | dagpt exact ms | dagpt reference ms | PyTorch twin ms | PyTorch unbound ms "
      "| twin / dagpt ref | twin / dagpt exact | unbound / dagpt ref | check |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
sizes = sorted({(d, n) for (_, d, n) in dagpt[0]}, key=lambda k: (k[1], k[0]))
for d, n in sizes:
    def side(get):
        v = [get(r) for r in range(rounds)]
        return v if all(x is not None for x in v) else None
    ex = side(lambda r: dagpt[r].get(("exact", d, n)))
    ref = side(lambda r: dagpt[r].get(("reference", d, n)))
    tw = side(lambda r: torch[r][(d, n)]["twin"]["fwd_bwd_ms"] if (d, n) in torch[r] else None)
    ub = side(lambda r: torch[r][(d, n)]["unbound"]["fwd_bwd_ms"] if (d, n) in torch[r] else None)
    oks = [torch[r][(d, n)]["twin"]["check_ok"] for r in range(rounds) if (d, n) in torch[r]]
    chk = "-" if not oks or None in oks else (
        "OK" if all(oks) and all(torch[r][(d, n)]["unbound"]["check_ok"] for r in range(rounds)) else "MISMATCH")
    f = lambda v: "-" if v is None else f"{med(v):,.3f}"
    def ratio(a, b):
        if a is None or b is None:
            return "-"
        rs = sorted(x / y for x, y in zip(a, b))
        return f"{med(rs):,.1f}x [{rs[0]:,.1f}-{rs[-1]:,.1f}]"
    print(f"| {d} | {n:,} | {f(ex)} | {f(ref)} | {f(tw)} | {f(ub)} | {ratio(tw, ref)} | {ratio(tw, ex)} "
          f"| {ratio(ub, ref)} | {chk} |")
print()
# Each round's own times: PyTorch's, in a fresh process each round, can differ by a third between rounds.
for d, n in sizes:
    pairs = [(dagpt[r].get(("reference", d, n)), torch[r][(d, n)]["twin"]["fwd_bwd_ms"] if (d, n) in torch[r]
              else None) for r in range(rounds)]
    print(f"Rounds, depth {d}, {n:,} DAGs, dagpt reference ms / PyTorch twin ms: " + ", ".join(
        "-" if a is None or b is None else f"{a:.3f} / {b:.2f}" for a, b in pairs))
print()
print("Interference: " + "; ".join(sys.argv[3].split(";")))
EOF
log "JSON, dumps and logs in $out"
exit "$status"
