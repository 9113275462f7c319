#!/usr/bin/env bash
# A short libFuzzer run of the expression front-end: configures a clang++ build of tests/fuzz (dagpt's
# tests, benchmarks and examples off), builds dagpt_parse_fuzz, replays the known reproducers in
# tests/fuzz/regressions, then fuzzes a copy of the seed corpus (tests/fuzz/corpus) for SECONDS. Any
# crash, sanitizer report, timeout (10 s per input) or out-of-memory fails the script; a new reproducer is
# left in BUILD_DIR/artifacts/ and printed.
#   tests/fuzz/smoke.sh BUILD_DIR [SECONDS=60]
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 BUILD_DIR [SECONDS=60]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$1
seconds=${2:-60}

cmake -S "$here" -B "$build" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDAGPT_BUILD_FUZZ=ON -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_BENCH=OFF -DDAGPT_BUILD_EXAMPLES=OFF
cmake --build "$build" --target dagpt_parse_fuzz -j 2

# libFuzzer adds what it finds to the first corpus folder: a scratch copy, never the checked-in seeds.
corpus=$build/corpus
artifacts=$build/artifacts
rm -rf "$corpus" "$artifacts"
mkdir -p "$corpus" "$artifacts"
cp "$here"/corpus/* "$corpus"/

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
status=0
# Past crashes and timeouts first (tests/fuzz/regressions, one reproducer per bug, named after it): they
# are checked on every run, whatever the random search happens to find.
"$build/dagpt_parse_fuzz" -timeout=10 -rss_limit_mb=2048 "$here"/regressions/* || status=$?
if [[ $status -ne 0 ]]; then
  echo "smoke.sh: a reproducer in $here/regressions fails again (exit $status; the last 'Running:' line" \
    "above names it)" >&2
  exit "$status"
fi
if [[ $status -eq 0 ]]; then
  "$build/dagpt_parse_fuzz" -max_total_time="$seconds" -max_len=256 -timeout=10 -rss_limit_mb=2048 \
    -dict="$here/expr.dict" -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" || status=$?
fi

if [[ $status -ne 0 ]]; then
  echo "smoke.sh: dagpt_parse_fuzz failed (exit $status); reproducers:" >&2
  for f in "$artifacts"/*; do
    [[ -e $f ]] || continue
    echo "  $f: $(head -c 300 "$f" | od -An -c | tr -s ' ' | head -5)" >&2
  done
  echo "  rerun one with: $build/dagpt_parse_fuzz <file>" >&2
  exit "$status"
fi
echo "smoke.sh: ${seconds}s of fuzzing, no crash"
