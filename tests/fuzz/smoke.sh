#!/usr/bin/env bash
# A short libFuzzer run of the expression front-end and the safetensors reader: configures a clang++ build
# of tests/fuzz (dagpt's tests, benchmarks and examples off), builds dagpt_parse_fuzz and
# dagpt_safetensors_fuzz, replays the known reproducers in tests/fuzz/regressions, then fuzzes a copy of
# the seed corpus (tests/fuzz/corpus) for SECONDS and one of tests/fuzz/corpus_safetensors for
# ST_SECONDS. Any crash, sanitizer report, timeout (10 s per input) or out-of-memory fails the script; a
# new reproducer is left in BUILD_DIR/artifacts/ (artifacts_safetensors/) and printed.
#   tests/fuzz/smoke.sh BUILD_DIR [SECONDS=60] [ST_SECONDS=30]
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 ]]; then
  echo "usage: $0 BUILD_DIR [SECONDS=60] [ST_SECONDS=30]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$1
seconds=${2:-60}
st_seconds=${3:-30}

cmake -S "$here" -B "$build" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDAGPT_BUILD_FUZZ=ON -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_BENCH=OFF -DDAGPT_BUILD_EXAMPLES=OFF
cmake --build "$build" --target dagpt_parse_fuzz dagpt_safetensors_fuzz -j 2

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
echo "smoke.sh: ${seconds}s of fuzzing the parser, no crash"

# The safetensors reader: parse() must accept a file or throw a dagpt::Error, and what it accepts must
# round-trip (tests/fuzz/safetensors.fuzz.cpp).
st_corpus=$build/corpus_safetensors
st_artifacts=$build/artifacts_safetensors
rm -rf "$st_corpus" "$st_artifacts"
mkdir -p "$st_corpus" "$st_artifacts"
cp "$here"/corpus_safetensors/* "$st_corpus"/
"$build/dagpt_safetensors_fuzz" -max_total_time="$st_seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict="$here/safetensors.dict" -print_final_stats=1 -artifact_prefix="$st_artifacts/" "$st_corpus" || status=$?
if [[ $status -ne 0 ]]; then
  echo "smoke.sh: dagpt_safetensors_fuzz failed (exit $status); reproducers:" >&2
  for f in "$st_artifacts"/*; do
    [[ -e $f ]] || continue
    echo "  $f: $(head -c 300 "$f" | od -An -c | tr -s ' ' | head -5)" >&2
  done
  echo "  rerun one with: $build/dagpt_safetensors_fuzz <file>" >&2
  exit "$status"
fi
echo "smoke.sh: ${st_seconds}s of fuzzing the safetensors reader, no crash"
