#!/usr/bin/env bash
# dagpt's CPU kernels beside PyTorch 1.13 (Debian's python3-torch) on the same machine, same shapes, in one
# command: builds bench/ops.bench.cpp (Release) if needed, runs it, runs bench/compare/torch_ops.py with
# PyTorch in its best profile (OpenBLAS pthread build, jemalloc, 2 threads) and prints a markdown table.
#
#   bench/compare/run.sh [--filter REGEX]
#   flock /tmp/dagpt-build.lock bench/compare/run.sh   # on a shared machine: no build or timing alongside
#
# Environment: BUILD (build folder, default /tmp/dagpt-bench-build), OMP_NUM_THREADS (default 2),
# TORCH_MALLOC_CONF (jemalloc options for both jemalloc runs; default: never return freed pages to the OS,
# so that a large fresh tensor is not page-faulted in on every call), DAGPT_JEMALLOC=0 to skip the dagpt
# run under jemalloc. Needs scripts/install-deps.sh --bench. The JSON files stay in the folder it prints.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-/tmp/dagpt-bench-build}
threads=${OMP_NUM_THREADS:-2}
filter=""
if [[ "${1:-}" == "--filter" ]]; then filter=${2:?--filter needs a regex}; fi

python=/usr/bin/python3  # Debian's; a pyenv python3 earlier on PATH has no torch
openblas_dir=/usr/lib/x86_64-linux-gnu/openblas-pthread
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
malloc_conf=${TORCH_MALLOC_CONF-oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1}

for f in "$python" "$openblas_dir/libblas.so.3" "$jemalloc"; do
  [[ -e $f ]] || { echo "run.sh: $f is missing; run scripts/install-deps.sh --bench" >&2; exit 1; }
done
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "run.sh: $python has no torch; run scripts/install-deps.sh --bench" >&2
  exit 1
fi

log() { echo "run.sh: $*" >&2; }

# (a) build, incrementally.
if [[ ! -f $build/CMakeCache.txt ]]; then
  log "configuring $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDAGPT_BUILD_BENCH=ON \
    -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_EXAMPLES=OFF -DDAGPT_INSTALL=OFF >&2
fi
cmake --build "$build" --target dagpt_bench -j 2 >&2
bench=$build/bench/dagpt_bench

out=$(mktemp -d /tmp/bench-compare.XXXXXX)

# Other work on the machine during a timed phase skews it (an OpenMP region waits for its slowest
# thread), so each phase reports the CPU time that processes other than ours used meanwhile.
hz=$(getconf CLK_TCK)
ncpu=$(nproc)
interference=()
cpu_jiffies() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }  # busy, steal
# CPU seconds of this shell's finished children, from a `times` report that must be made in this shell
# (in a $(...) subshell it would count none of them).
children_cpu() {
  awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] } print s }' "$1"
}
phase_start() {
  read -r busy0 steal0 < <(cpu_jiffies)
  times > "$out/.times0"
  wall0=$(date +%s.%N)
}
phase_end() {  # phase_end NAME
  local busy1 steal1 own0 own1 wall1 stats line wall other share steal
  read -r busy1 steal1 < <(cpu_jiffies)
  times > "$out/.times1"
  wall1=$(date +%s.%N)
  own0=$(children_cpu "$out/.times0")
  own1=$(children_cpu "$out/.times1")
  # wall seconds, other processes' CPU seconds, their share of the machine in %, steal seconds
  stats=$(awk -v b="$((busy1 - busy0))" -v st="$((steal1 - steal0))" -v hz="$hz" -v c="$ncpu" \
    -v o0="$own0" -v o1="$own1" -v w0="$wall0" -v w1="$wall1" \
    'BEGIN { w = w1 - w0; other = b / hz - (o1 - o0); if (other < 0) other = 0;
             printf "%.0f %.1f %.0f %.1f", w, other, 100 * other / (w * c), st / hz }')
  read -r wall other share steal <<<"$stats"
  line="$1: ${wall} s, other processes ${other} CPU-s (${share}% of the machine), steal ${steal} s"
  interference+=("$line")
  log "$line"
  if ((share > 5)); then
    log "WARNING: other work ran during the $1; its timings are disturbed (rerun on a quiet machine)"
  fi
}

# (b) dagpt as shipped (its buffer cache over glibc malloc), then the dagpt rows again under the same
# jemalloc as PyTorch, so that an allocator difference shows as a difference between the two columns.
bench_args=(--benchmark_format=json --benchmark_enable_random_interleaving=true)
[[ -n $filter ]] && bench_args+=("--benchmark_filter=$filter")
log "dagpt benchmarks ($threads threads) -> $out/dagpt.json"
phase_start
OMP_NUM_THREADS=$threads "$bench" "${bench_args[@]}" > "$out/dagpt.json"
phase_end "dagpt run"
jemalloc_args=()
if [[ ${DAGPT_JEMALLOC:-1} != 0 ]]; then
  log "dagpt benchmarks under jemalloc ($malloc_conf) -> $out/dagpt-jemalloc.json"
  phase_start
  OMP_NUM_THREADS=$threads LD_PRELOAD=$jemalloc MALLOC_CONF=$malloc_conf \
    "$bench" --benchmark_format=json --benchmark_enable_random_interleaving=true \
    "--benchmark_filter=${filter:-/dagpt/}" > "$out/dagpt-jemalloc.all.json"
  phase_end "dagpt jemalloc run"
  # keep only the dagpt rows (the filter above may not say it when the user gives one)
  "$python" - "$out/dagpt-jemalloc.all.json" "$out/dagpt-jemalloc.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["benchmarks"] = [b for b in d["benchmarks"] if b["run_name"].split("/")[1:2] == ["dagpt"]]
json.dump(d, open(sys.argv[2], "w"), indent=1)
EOF
  jemalloc_args=(--dagpt-jemalloc "$out/dagpt-jemalloc.json")
fi

# (c) PyTorch in its best profile. Debian's torch links libblas.so.3, which update-alternatives may point
# at the reference BLAS (~20x slower); the OpenBLAS pthread folder first on the search path settles it,
# and torch_ops.py prints the BLAS it found mapped in its own process.
log "PyTorch (OpenBLAS pthread, jemalloc, $threads threads) -> $out/torch.json"
torch_args=()
[[ -n $filter ]] && torch_args+=(--filter "$filter")
phase_start
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
  LD_LIBRARY_PATH=$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} LD_PRELOAD=$jemalloc MALLOC_CONF=$malloc_conf \
  "$python" "$root/bench/compare/torch_ops.py" "$out/torch.json" "${torch_args[@]}" 2> >(tee "$out/torch.log" >&2)
phase_end "PyTorch run"

# (d) the table.
meta=$("$python" - "$out/torch.json" "$out/dagpt.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))["meta"]
c = json.load(open(sys.argv[2]))["context"]
blas = ", ".join(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in t["blas_loaded"] if "blas" in p)
print(f"PyTorch {t['torch']}, {t['threads']} threads, BLAS mapped: {blas or 'none found'}; "
      f"2048^3 sgemm {t['sgemm_2048_gflops']} GFLOP/s; {t['cpu_capability']}")
print(f"dagpt_bench: {c.get('num_cpus')} CPUs at {c.get('mhz_per_cpu')} MHz, {c.get('compiled_isa')}, "
      f"OpenMP threads {c.get('omp_max_threads')}")
EOF
)
"$python" "$root/bench/compare/table.py" --dagpt "$out/dagpt.json" "${jemalloc_args[@]}" --torch "$out/torch.json" \
  --context "dagpt vs PyTorch, $(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
  --context "$(head -1 <<<"$meta")" --context "$(tail -1 <<<"$meta")" \
  --context "jemalloc MALLOC_CONF=${malloc_conf:-(default)}" \
  --context "Interference: $(IFS=';'; echo "${interference[*]}")" \
  --context "Times are medians. PyTorch / dagpt > 1: dagpt is faster. dagpt / raw > 1: dagpt is slower than the raw baseline in the same binary (Eigen on the same buffers for products, a plain loop into a preallocated output otherwise)."
log "JSON and logs in $out"
