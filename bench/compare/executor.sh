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
# needs ~10 GB), REPS (dagpt repetitions, default 5), MIN_TIME (seconds per PyTorch measurement, default 1).
# PyTorch gets the profile of bench/compare/run.sh: OpenBLAS pthread, jemalloc (never returning pages),
# 2 threads. Needs scripts/install-deps.sh --bench. Results stay in the folder it prints.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-/tmp/dagpt-bench-build}
threads=${OMP_NUM_THREADS:-2}
reps=${REPS:-5}
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

# (c) dagpt.
filter='^dag/fwd\+bwd/(exact|reference)/random/d[48]/8192/'
[[ $large == 1 ]] && filter='^dag/fwd\+bwd/(exact|reference)/random/d[48]/(8192|1048576)/'
log "dagpt_dag_bench ($threads threads, $reps repetitions) -> $out/dagpt.json"
phase_start
OMP_NUM_THREADS=$threads "$build/bench/dagpt_dag_bench" "--benchmark_filter=$filter" \
  --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/dagpt.json" --benchmark_out_format=json >&2
phase_end "dagpt run"

# (d) PyTorch: check against the dumps, then time.
large_args=()
[[ $large == 1 ]] && large_args=(--large 4)
log "PyTorch (OpenBLAS pthread, jemalloc, $threads threads) -> $out/torch.json"
phase_start
status=0
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
  LD_LIBRARY_PATH=$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} LD_PRELOAD=$jemalloc MALLOC_CONF=$malloc_conf \
  "$python" "$root/bench/compare/executor_torch.py" "$out/torch.json" "$out/d4.bin" "$out/d8.bin" \
  "${large_args[@]}" --min-time "$min_time" 2> >(tee "$out/torch.log" >&2) || status=$?
phase_end "PyTorch run"

# (e) the table.
"$python" - "$out/dagpt.json" "$out/torch.json" "$(IFS=';'; echo "${interference[*]}")" "$threads" <<'EOF' | tee "$out/table.md"
import json, sys
bench = json.load(open(sys.argv[1]))
dagpt = {}
for b in bench["benchmarks"]:
    # the median of the repetitions; with one repetition there is no aggregate, only the run itself
    if b.get("aggregate_name", "median") != "median":
        continue
    parts = b["run_name"].split("/")  # dag/fwd+bwd/<sem>/random/d<D>/<DAGs>/...
    key = (parts[2], int(parts[4][1:]), int(parts[5]))
    if b.get("run_type") == "aggregate" or key not in dagpt:
        dagpt[key] = b["real_time"]  # ms
torch_out = json.load(open(sys.argv[2]))
torch = {(r["depth"], r["dags"]): r for r in torch_out["results"]}
meta = torch_out["meta"]
print(f"DAG executor, float64, forward+backward (ones output gradient), random plans, batch [DAGs/32, 32]; "
      f"medians. dagpt: {bench['context'].get('num_cpus')} CPUs, OMP_NUM_THREADS={sys.argv[4]}; PyTorch "
      f"{meta['torch']}, {meta['threads']} threads, mapped: {', '.join(p.rsplit('/', 1)[-1] for p in meta['libs'])}")
print("PyTorch twin = the reference's structure (O sliced per step); unbound = O and G unbound once (faster "
      "for PyTorch). Ratios are PyTorch ms / dagpt ms (> 1: dagpt faster). check: PyTorch's outputs and input "
      "gradients equal dagpt's reference mode on the same inputs (rtol 1e-9).")
print()
print("| depth | DAGs | dagpt exact ms | dagpt reference ms | PyTorch twin ms | PyTorch unbound ms "
      "| twin / dagpt ref | twin / dagpt exact | unbound / dagpt ref | check |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for d, n in sorted({(d, n) for (_, d, n) in dagpt}, key=lambda k: (k[1], k[0])):
    ex, ref = dagpt.get(("exact", d, n)), dagpt.get(("reference", d, n))
    t = torch.get((d, n))
    tw = t["twin"]["fwd_bwd_ms"] if t else None
    ub = t["unbound"]["fwd_bwd_ms"] if t else None
    chk = "-" if not t or t["twin"]["check_ok"] is None else (
        "OK" if t["twin"]["check_ok"] and t["unbound"]["check_ok"] else "MISMATCH")
    f = lambda v: "-" if v is None else f"{v:,.3f}"
    r = lambda a, b: "-" if a is None or b is None else f"{a / b:,.1f}x"
    print(f"| {d} | {n:,} | {f(ex)} | {f(ref)} | {f(tw)} | {f(ub)} | {r(tw, ref)} | {r(tw, ex)} | {r(ub, ref)} | {chk} |")
print()
print("Interference: " + "; ".join(sys.argv[3].split(";")))
EOF
log "JSON, dumps and logs in $out"
exit "$status"
