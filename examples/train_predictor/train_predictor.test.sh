#!/usr/bin/env bash
# End-to-end checks of train_predictor on the `tiny` config (a few seconds each):
#  1. a run trains, evaluates, writes metrics.jsonl, curves.svg, config.toml and checkpoints;
#  2. exact resume: 20 iterations straight == 10 + resume + 10, parameters bit for bit (checksum);
#  3. SIGKILL during a checkpoint write leaves the previous checkpoint intact and no partial file under a
#     checkpoint name; resume from the last good checkpoint completes and equals the straight run;
#  4. clear errors: truncated and corrupt checkpoints, a mismatched width, init_from=gpt2, a bad key;
#  5. --eval-only prints the evaluation table of a checkpoint; dagcalc --model answers with it.
#   train_predictor.test.sh PATH/TO/train_predictor CONFIG_DIR [PATH/TO/dagcalc]
set -euo pipefail

bin=$1
configs=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=2
fail() { echo "FAIL: $*" >&2; exit 1; }
checksum() { grep -o 'parameter checksum: fnv1a64:[0-9a-f]*' "$1" | tail -1; }
tiny=(--max_iters=20 --eval_interval=5 --keep_last=3 --prefetch=2 --dropout=0.1)

# 1. A straight run.
"$bin" "$configs/tiny.toml" "${tiny[@]}" --out_dir="$work/a" > "$work/a.log" 2>&1 || { cat "$work/a.log"; fail "straight run"; }
for f in metrics.jsonl curves.svg config.toml ckpt_00000020.safetensors; do
  [[ -s $work/a/$f ]] || fail "missing $f"
done
grep -q '"split": "val", "iter": 20' "$work/a/metrics.jsonl" || fail "no final eval line in metrics.jsonl"
grep -q '| held-out segments within 1e-3 |' "$work/a.log" || fail "no evaluation table"
grep -q '| expression | predicted | exact |' "$work/a.log" || fail "no example table"
ref=$(checksum "$work/a.log")
[[ -n $ref ]] || fail "no checksum in the log"
echo "ok: straight run ($ref)"

# 1b. The digits magnitude head and the reference loss mode run too.
"$bin" "$configs/tiny.toml" --max_iters=4 --eval_interval=2 --mag_head=digits --out_dir="$work/digits" > "$work/d.log" 2>&1 ||
  { cat "$work/d.log"; fail "digits head run"; }
grep -q '| digit accuracy |' "$work/d.log" || fail "no digit accuracy with the digits head"
"$bin" "$configs/tiny.toml" --max_iters=4 --eval_interval=2 --loss_mode=reference --out_dir="$work/ref" > "$work/r.log" 2>&1 ||
  { cat "$work/r.log"; fail "reference loss mode run"; }
echo "ok: digits head, reference mode"

# 2. 10 + resume + 10.
"$bin" "$configs/tiny.toml" "${tiny[@]}" --max_iters=10 --out_dir="$work/b" > "$work/b1.log" 2>&1 || fail "first half"
"$bin" "$configs/tiny.toml" "${tiny[@]}" --out_dir="$work/b" --init_from=resume > "$work/b2.log" 2>&1 || { cat "$work/b2.log"; fail "resume"; }
grep -q 'loaded .*ckpt_00000010.safetensors (iteration 10)' "$work/b2.log" || fail "resume did not load iteration 10"
[[ $(checksum "$work/b2.log") == "$ref" ]] || fail "resume is not exact: $(checksum "$work/b2.log") vs $ref"
echo "ok: exact resume"

# 3. SIGKILL while the checkpoint of iteration 15 is being written (the writer stalls halfway).
"$bin" "$configs/tiny.toml" "${tiny[@]}" --max_iters=10 --out_dir="$work/c" > /dev/null 2>&1 || fail "kill setup"
DAGPT_CHECKPOINT_STALL_MS=20000 "$bin" "$configs/tiny.toml" "${tiny[@]}" --out_dir="$work/c" --init_from=resume \
  > "$work/c2.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  compgen -G "$work/c/ckpt_00000015.safetensors.tmp.*" > /dev/null && break
  sleep 0.05
done
compgen -G "$work/c/ckpt_00000015.safetensors.tmp.*" > /dev/null || { kill -9 $pid; fail "no temporary checkpoint appeared"; }
kill -9 $pid
wait $pid 2> /dev/null || true
[[ ! -e $work/c/ckpt_00000015.safetensors ]] || fail "a partial checkpoint has a final name"
[[ -s $work/c/ckpt_00000010.safetensors ]] || fail "the previous checkpoint is gone"
"$bin" "$configs/tiny.toml" "${tiny[@]}" --out_dir="$work/c" --init_from=resume > "$work/c3.log" 2>&1 || { cat "$work/c3.log"; fail "resume after kill"; }
grep -q 'loaded .*ckpt_00000010.safetensors' "$work/c3.log" || fail "did not resume from the last good checkpoint"
[[ $(checksum "$work/c3.log") == "$ref" ]] || fail "resume after kill differs from the straight run"
echo "ok: SIGKILL during a checkpoint write, resume from the last good one"

# 4. Errors.
expect_error() {  # expect_error <pattern> <args...>
  local pattern=$1
  shift
  if "$bin" "$configs/tiny.toml" "$@" > "$work/err.log" 2>&1; then fail "expected an error for: $*"; fi
  grep -q -- "$pattern" "$work/err.log" || { cat "$work/err.log"; fail "error message lacks '$pattern'"; }
}
good=$work/a/ckpt_00000020.safetensors
head -c 1000 "$good" > "$work/truncated.safetensors"
expect_error "truncated.safetensors" --eval-only --init_from="$work/truncated.safetensors"
cp "$good" "$work/corrupt.safetensors"
size=$(stat -c %s "$good")
printf '\x55' | dd of="$work/corrupt.safetensors" bs=1 seek=$((size - 100)) conv=notrunc status=none
expect_error "field 'checksum'" --eval-only --init_from="$work/corrupt.safetensors"
expect_error "n_embd is 32 in the checkpoint but 64 in this run" --eval-only --init_from="$good" --n_embd=64
expect_error "GPT-2 weight import is not available yet" --init_from=gpt2
expect_error "no checkpoint" --init_from=resume --out_dir="$work/empty"
expect_error "unknown key 'n_layers'" --n_layers=2
echo "ok: errors"

# 5. --eval-only.
"$bin" "$configs/tiny.toml" --eval-only --init_from="$good" > "$work/e.log" 2>&1 || fail "eval-only"
grep -q '## evaluation at iteration 20' "$work/e.log" || fail "eval-only did not evaluate iteration 20"
echo "ok: eval-only"
if [[ $# -ge 3 ]]; then
  dagcalc=$3
  out=$("$dagcalc" --model "$good" '1.5+2' '2*3')
  [[ $(grep -c '  predicted: .*  relative error: ' <<< "$out") == 2 ]] || fail "dagcalc --model: $out"
  "$dagcalc" --model "$good" --json --plan '1.5+2' | grep -q '"predicted_plan":' || fail "dagcalc --model --json --plan"
  if "$dagcalc" --model "$work/corrupt.safetensors" '1' 2> "$work/dc.err"; then fail "dagcalc accepted a corrupt model"; fi
  grep -q "field 'checksum'" "$work/dc.err" || fail "dagcalc --model error: $(cat "$work/dc.err")"
  echo "ok: dagcalc --model"
fi
echo "PASS"
