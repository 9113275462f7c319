#!/usr/bin/env bash
# The DAG executor's instructions per DAG (forward, backward, both), counted by callgrind on one thread:
# a measure of its work that the shared machine's load does not change (timings here swing by 2x within
# minutes), for comparing versions. Builds dagpt_dag_count (Release, -march=native) if needed; runs each
# configuration REPEAT times (default 3) on COUNT random plans (default 8192) and prints a markdown table.
#
#   bench/compare/executor_instructions.sh
#   BUILD=build/release DEPTHS="4 8" bench/compare/executor_instructions.sh
#
# Needs valgrind (scripts/install-deps.sh --bench). Instructions, not time: the same count can run at
# different speeds (cache misses, divisions), so timings stay the measure of speed (executor.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-/tmp/dagpt-bench-build}
count=${COUNT:-8192}
repeat=${REPEAT:-3}
depths=${DEPTHS:-4 8}

command -v valgrind >/dev/null ||
  { echo "executor_instructions.sh: valgrind is missing; run scripts/install-deps.sh --bench" >&2; exit 1; }
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDAGPT_BUILD_BENCH=ON \
    -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_EXAMPLES=OFF -DDAGPT_INSTALL=OFF >&2
fi
cmake --build "$build" --target dagpt_dag_count -j 2 >&2

out=$(mktemp -d /tmp/executor-instructions.XXXXXX)
# Instructions inside run_once (one forward, or forward + backward, per call) per DAG.
per_dag() {  # per_dag <name> <args...>
  local name=$1
  shift
  OMP_NUM_THREADS=1 valgrind --tool=callgrind --toggle-collect='*run_once*' \
    --callgrind-out-file="$out/$name.cg" "$build/bench/dagpt_dag_count" --count "$count" --repeat "$repeat" \
    "$@" >"$out/$name.log" 2>&1 || { cat "$out/$name.log" >&2; exit 1; }
  awk -v c="$count" -v r="$repeat" '/^totals:/ { printf "%.1f", $2 / (c * r) }' "$out/$name.cg"
}

echo "DAG executor, instructions per DAG (callgrind, one thread, $count random plans, $repeat runs each)"
echo
echo "| depth | semantics | forward | backward | forward + backward |"
echo "|---:|---|---:|---:|---:|"
for d in $depths; do
  for sem in exact reference; do
    flag=()
    [[ $sem == reference ]] && flag=(--reference)
    f=$(per_dag "d$d-$sem-fwd" --depth "$d" "${flag[@]}" --forward-only)
    fb=$(per_dag "d$d-$sem-fwdbwd" --depth "$d" "${flag[@]}")
    awk -v d="$d" -v s="$sem" -v f="$f" -v fb="$fb" 'BEGIN { printf "| %d | %s | %.0f | %.0f | %.0f |\n", d, s, f, fb - f, fb }'
  done
done
echo
echo "executor_instructions.sh: callgrind files in $out" >&2
