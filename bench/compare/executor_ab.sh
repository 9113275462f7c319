#!/usr/bin/env bash
# Two versions of the DAG executor timed against each other in one process (bench/ab/executor_ab.cpp): each
# version's headers are compiled into their own namespace (-Ddagpt=dagpt_ab_a / dagpt_ab_b), and the driver
# alternates their calls on the same plans, so the shared machine's drift (10-30% between separate runs a
# few minutes apart) falls on both alike: the ratio of two identical versions comes out within 1%.
# A version is a git revision (its include/ folder, via git archive) or WORK (the working tree's).
#
#   bench/compare/executor_ab.sh HEAD WORK                      # the uncommitted change against HEAD
#   bench/compare/executor_ab.sh HEAD~3 HEAD --pairs 800 --exact --depths 4
#   flock /tmp/dagpt-build.lock bench/compare/executor_ab.sh ...   # on a shared machine
#
# Further arguments go to the driver: --pairs N (default 400), --count C (8192), --depths 4,8, --exact,
# --forward-only. Environment: CXX (default c++), OMP_NUM_THREADS (default 2). Compiles with -O3
# -march=native -fopenmp against Eigen (pkg-config eigen3) and fmt; the two headers' compiles run in
# parallel (about a minute on two cores).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $# -ge 2 ]] || { sed -n '2,16p' "${BASH_SOURCE[0]}" >&2; exit 2; }
rev_a=$1
rev_b=$2
shift 2
cxx=${CXX:-c++}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

out=$(mktemp -d /tmp/executor-ab.XXXXXX)
trap 'rm -rf "$out"' EXIT

headers() {  # headers <rev> <side>: prints the include folder of that version
  if [[ $1 == WORK ]]; then
    echo "$root/include"
  else
    mkdir -p "$out/$2"
    git -C "$root" archive "$1" include | tar -x -C "$out/$2" ||
      { echo "executor_ab.sh: no include/ at revision '$1'" >&2; exit 1; }
    echo "$out/$2/include"
  fi
}
inc_a=$(headers "$rev_a" a)
inc_b=$(headers "$rev_b" b)

read -r -a eigen <<<"$(pkg-config --cflags eigen3)"
flags=(-std=gnu++17 -O3 -DNDEBUG -march=native -fopenmp -DFMT_SHARED "${eigen[@]}")
echo "executor_ab.sh: A = $rev_a, B = $rev_b; compiling" >&2
"$cxx" "${flags[@]}" -I"$inc_a" -Ddagpt=dagpt_ab_a -DDAGPT_AB_SIDE=a -c "$root/bench/ab/executor_variant.cpp" \
  -o "$out/a.o" &
pid=$!
"$cxx" "${flags[@]}" -I"$inc_b" -Ddagpt=dagpt_ab_b -DDAGPT_AB_SIDE=b -c "$root/bench/ab/executor_variant.cpp" \
  -o "$out/b.o"
wait "$pid"
"$cxx" "${flags[@]}" -I"$root/include" "$root/bench/ab/executor_ab.cpp" "$out/a.o" "$out/b.o" -lfmt \
  -o "$out/executor_ab"
echo "executor_ab.sh: running, $OMP_NUM_THREADS threads" >&2
"$out/executor_ab" "$@"
