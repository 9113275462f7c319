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
# (timed steps per run, median reported, default 5), ROUNDS (default 3), CLOCK_GHZ. The JSON lines stay in
# the folder it prints.
#
# A shared machine's speed drifts by +-15% within minutes, so the runs alternate: in each round every
# configuration runs on dagpt and right after on PyTorch. The table gives each side's median over the
# rounds, the speedup as the median of the per-round ratios (the two runs of a pair are a minute apart at
# most), and the range of those ratios.
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
rounds=${ROUNDS:-3}
for ((round = 1; round <= rounds; round++)); do
  log "round $round of $rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  for B in 256 32; do
    for cfg in "reference 0" "standard 1"; do
      read -r mode ex <<< "$cfg"
      OMP_NUM_THREADS=$threads "$bin" --batch "$B" --steps "$steps" --mode "$mode" --exec "$ex" 2>> "$out/dagpt.log" |
        sed "s/^{/{\"round\": $round, /" >> "$out/dagpt.jsonl"
      flag=$([[ $ex == 1 ]] && echo --exec || true)
      # shellcheck disable=SC2086  # $flag is empty or one flag
      OMP_NUM_THREADS=$threads "$python" "$root/bench/compare/train_step_torch.py" --batch "$B" --steps "$steps" $flag |
        sed "s/^{/{\"round\": $round, /" >> "$out/torch.jsonl"
    done
  done
done

"$python" - "$out" "$clock" "$threads" <<'EOF'
import json, statistics, sys
out, clock, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
dag = [json.loads(l) for l in open(f"{out}/dagpt.jsonl") if l.strip()]
tor = [json.loads(l) for l in open(f"{out}/torch.jsonl") if l.strip()]
rounds = max(r["round"] for r in dag)
peak = threads * 32 * clock  # GFLOP/s
print(f"train step, reference predictor config (vocab 50304, 2 layers, 4 heads, 256 wide, T=32, depth 4, fp32), "
      f"{threads} threads; roofline {peak:.0f} GFLOP/s = {threads} cores x 32 FLOP/cycle x {clock:.2f} GHz; "
      f"{rounds} alternating rounds (speedup: the median of the per-round ratios; ms: each side's median)\n")
print("| losses | B | dagpt ms | PyTorch ms | speedup | per-round speedups | dagpt tok/s | PyTorch tok/s "
      "| dagpt GFLOP/s | floor % | dagpt RSS MB | PyTorch RSS MB | RSS ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
med = statistics.median
for d0 in [d for d in dag if d["round"] == 1]:
    key = lambda r: (r["B"], r["exec"])
    ds = [d for d in dag if key(d) == key(d0) and d["mode"] == d0["mode"]]
    ts = [t for t in tor if key(t) == key(d0)]
    pairs = [(d["step_ms"], t["step_ms"]) for d in ds for t in ts if t["round"] == d["round"]]
    d_ms, t_ms = med(p[0] for p in pairs), med(p[1] for p in pairs)
    ratios = sorted(t / d for d, t in pairs)
    d_rss, t_rss = max(d["peak_rss_mb"] for d in ds), max(t["peak_rss_mb"] for t in ts)
    ex = d0["exec"]
    label = "reference" if d0["mode"] == "reference" and not ex else f"{'default' if d0['mode'] != 'reference' else d0['mode']}" + ("+exec" if ex else "")
    if label != "reference":
        label += " (PyTorch: reference+exec)"
    tokens = d0["B"] * d0["T"]
    gflops = d0["gflops"] * d0["step_ms"] / d_ms
    print(f"| {label} | {d0['B']} | {d_ms:.1f} | {t_ms:.1f} | {med(ratios):.2f}x "
          f"| {ratios[0]:.2f}-{ratios[-1]:.2f}x | {tokens / d_ms * 1e3:,.0f} | {tokens / t_ms * 1e3:,.0f} "
          f"| {gflops:.1f} | {100 * gflops / peak:.0f}% | {d_rss:.0f} | {t_rss:.0f} | {d_rss / t_rss:.2f} |")
EOF
