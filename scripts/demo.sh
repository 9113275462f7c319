#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing (scripts/install-deps.sh, apt-get), builds the
# example trainer and dagcalc (Release, -march=native), trains the `demo` predictor (configs/demo.toml: a
# small GPT on the character tokenizer, a few minutes on a 2-core CPU), evaluates it, prints the evaluation
# table and a table of example expressions with predicted and exact values, and says where the loss and
# accuracy curves are (runs/demo/curves.svg).
#   bash scripts/demo.sh                      train from scratch
#   bash scripts/demo.sh --max_iters=500      any config key can be overridden
#   bash scripts/demo.sh --init_from=resume   continue an interrupted run (Ctrl-C saves a checkpoint)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
build=build/demo
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDAGPT_BUILD_TESTS=OFF -DDAGPT_BUILD_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="-march=native"
fi
cmake --build "$build" --target train_predictor dagcalc -j "$(nproc)"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
"$build/examples/train_predictor/train_predictor" examples/train_predictor/configs/demo.toml "$@"

latest=$(ls runs/demo/ckpt_*.safetensors 2> /dev/null | tail -1 || true)
if [[ -n $latest ]]; then
  echo
  echo "Ask the trained predictor yourself:"
  echo "  $build/examples/dagcalc/dagcalc --model $latest '2.5*3.0 + 1.0'"
fi
