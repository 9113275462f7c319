#!/usr/bin/env bash
# Installs the Debian packages dagpt needs to build, test and benchmark. Idempotent: packages that are
# already installed are skipped, and the script says what it installs. Run as root (apt-get).
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the side-by-side peers (PyTorch, OpenBLAS, jemalloc, SymPy) and
#                                    valgrind (bench/compare/executor_instructions.sh counts instructions)
set -euo pipefail

# clang + libclang-rt-14-dev + libomp-dev: the asan preset builds with clang++ (sanitizer runtimes, OpenMP).
# libtomlplusplus-dev: the trainer's TOML configs (dagpt::train, include/dagpt/train/config.hpp).
packages=(cmake ninja-build g++ clang libclang-rt-14-dev libomp-dev libeigen3-dev libfmt-dev catch2
          libbenchmark-dev nlohmann-json3-dev libutf8proc-dev libtomlplusplus-dev)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(python3-torch python3-numpy libopenblas0-pthread libjemalloc2 python3-sympy valgrind)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
