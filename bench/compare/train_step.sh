#!/usr/bin/env bash
# The training step of the reference predictor (issue #5 §6), dagpt beside PyTorch 1.13 on the same machine:
# builds bench/train_step.cpp (Release), runs it and bench/compare/train_step_torch.py (OpenBLAS pthread +
# jemalloc + 2 threads) for B=256 and B=32, each run in its own process so that its peak RSS is its own,
# and prints a markdown table.
#
#   bench/compare/train_step.sh
#   flock /tmp/dagpt-build.lock bench/compare/train_step.sh   # on a shared machine: no build alongside
#
# Rows: "reference" is the seed's run (REFERENCE §6 losses, no exec loss) on both sides; "default+exec"
# (dagpt's exact semantics and default losses with the exec loss) sits beside PyTorch with the reference
# executor's exec loss (--exec), as extra rows.
# The roofline floor is the step's FLOPs (bench/train_step.cpp counts 9.4 MFLOP per token, ~77 GFLOP at
# B=256) over 2 cores x 32 FLOP/cycle (AVX2: two 8-wide FMA units) x the clock (CLOCK_GHZ, default the
# "cpu MHz" of /proc/cpuinfo); "floor %" is that floor's share of dagpt's step time.
#
# Environment: BUILD (build folder, default /tmp/dagpt-bench-build), OMP_NUM_THREADS (default 2), STEPS
# (timed steps per run, median reported, default 5), CLOCK_GHZ. The JSON lines stay in the folder it prints.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-/tmp/dagpt-bench-build}
threads=${OMP_NUM_THREADS:-2}
steps=${STEPS:-5}
python=/usr/bin/python3  # Debian's; a pyenv python3 earlier on PATH has no torch
log() { echo "train_step.sh: $*" >&2; }

if ! "$python" -c "import torch" 2>/dev/null; then
  log "$python has no torch; run scripts/install-deps.sh --bench"
  exit 1
fi
clock=${CLOCK_GHZ:-$(awk -F: '/^cpu MHz/ { printf "%.3f", $2 / 1000; exit }' /proc/cpuinfo)}
[[ -n $clock ]] || { log "no clock in /proc/cpuinfo; set CLOCK_GHZ"; exit 1; }

if [[ ! -f $build/CMakeCache.txt ]]; then
  log "configuring $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDAGPT_BUILD_BENCH=ON \
    -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_EXAMPLES=OFF -DDAGPT_INSTALL=OFF >&2
fi
cmake --build "$build" --target dagpt_train_step -j 2 >&2
bin=$build/bench/dagpt_train_step

out=$(mktemp -d /tmp/train-step.XXXXXX)
log "results in $out (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
for B in 256 32; do
  OMP_NUM_THREADS=$threads "$bin" --batch "$B" --steps "$steps" --mode reference --exec 0 >> "$out/dagpt.jsonl" 2>> "$out/dagpt.log"
  OMP_NUM_THREADS=$threads "$bin" --batch "$B" --steps "$steps" --mode standard --exec 1 >> "$out/dagpt.jsonl" 2>> "$out/dagpt.log"
done
OMP_NUM_THREADS=$threads "$python" "$root/bench/compare/train_step_torch.py" --batch 256 32 --steps "$steps" > "$out/torch.jsonl"
OMP_NUM_THREADS=$threads "$python" "$root/bench/compare/train_step_torch.py" --batch 256 32 --steps "$steps" --exec >> "$out/torch.jsonl"

"$python" - "$out" "$clock" "$threads" <<'EOF'
import json, sys
out, clock, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
dag = [json.loads(l) for l in open(f"{out}/dagpt.jsonl") if l.strip()]
tor = [json.loads(l) for l in open(f"{out}/torch.jsonl") if l.strip()]
peak = threads * 32 * clock  # GFLOP/s
print(f"train step, reference predictor config (vocab 50304, 2 layers, 4 heads, 256 wide, T=32, depth 4, fp32), "
      f"{threads} threads; roofline {peak:.0f} GFLOP/s = {threads} cores x 32 FLOP/cycle x {clock:.2f} GHz\n")
print("| losses | B | dagpt ms | PyTorch ms | speedup | dagpt tok/s | PyTorch tok/s | dagpt GFLOP/s | floor % "
      "| dagpt RSS MB | PyTorch RSS MB | RSS ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for d in dag:
    ex = d["exec"]
    t = next(r for r in tor if r["B"] == d["B"] and r["exec"] == ex)
    label = "reference" if d["mode"] == "reference" and not ex else f"{'default' if d['mode'] != 'reference' else d['mode']}" + ("+exec" if ex else "")
    if label != "reference":
        label += " (PyTorch: reference+exec)"
    print(f"| {label} | {d['B']} | {d['step_ms']:.1f} | {t['step_ms']:.1f} | {t['step_ms'] / d['step_ms']:.2f}x "
          f"| {d['tokens_per_s']:,.0f} | {t['tokens_per_s']:,.0f} | {d['gflops']:.1f} | {100 * d['gflops'] / peak:.0f}% "
          f"| {d['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} | {d['peak_rss_mb'] / t['peak_rss_mb']:.2f} |")
EOF
