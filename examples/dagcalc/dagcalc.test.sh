#!/usr/bin/env bash
# Runs dagcalc on real inputs and checks what it prints, line for line, and its exit status.
#   bash dagcalc.test.sh DAGCALC              the command-line tests
#   bash dagcalc.test.sh DAGCALC gpt2 [DIR]   --tokenizer gpt2 with $DAGPT_GPT2_DIR, else DIR (exit 77 = skip)
set -uo pipefail

calc=$1
mode=${2:-cli}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# run STDIN ARGS...: runs dagcalc; sets out (stdout), err (stderr), both (2>&1, in order) and status.
run() {
  local input=$1
  shift
  printf '%s' "$input" | "$calc" "$@" >"$tmp/out" 2>"$tmp/err"
  status=$?
  printf '%s' "$input" | "$calc" "$@" >"$tmp/both" 2>&1
  out=$(<"$tmp/out")
  err=$(<"$tmp/err")
  both=$(<"$tmp/both")
}

# same NAME WANT GOT: exact comparison, with a diff on failure.
same() {
  if [[ "$2" == "$3" ]]; then
    echo "ok    $1"
  else
    echo "FAIL  $1"
    diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/      /'
    failures=$((failures + 1))
  fi
}

# has NAME NEEDLE HAYSTACK: substring check.
has() {
  if [[ "$3" == *"$2"* ]]; then
    echo "ok    $1"
  else
    printf 'FAIL  %s: %q not in\n%s\n' "$1" "$2" "$3"
    failures=$((failures + 1))
  fi
}

# json_lines NAME TEXT: every line of TEXT is one JSON value.
json_lines() {
  if ! command -v python3 >/dev/null; then
    echo "skip  $1 (no python3)"
    return
  fi
  if printf '%s\n' "$2" | python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]'; then
    echo "ok    $1"
  else
    echo "FAIL  $1: not one JSON value per line:"
    printf '%s\n' "$2"
    failures=$((failures + 1))
  fi
}

if [[ $mode == gpt2 ]]; then
  dir=${DAGPT_GPT2_DIR:-${3:-}}
  if [[ -z $dir || ! -f $dir/encoder.json || ! -f $dir/vocab.bpe ]]; then
    echo "skipped: no encoder.json + vocab.bpe in '${dir}' (set DAGPT_GPT2_DIR or run scripts/fetch-gpt2-bpe.sh)"
    exit 77
  fi
  run '' --prefixes --tokenizer gpt2 --bpe-dir "$dir" '2.5*(3.0 + 1)'
  same "gpt2 prefixes: one row per BPE token (' +' and ' 1' are single tokens)" "$(
    cat <<'EOF'
10
   #   id token prefix          status   parsed        value
   0   17 "2"   "2"             ok       2             2
   1   13 "."   "2."            ok       2.            2
   2   20 "5"   "2.5"           ok       2.5           2.5
   3    9 "*"   "2.5*"          repaired 2.5           2.5
   4    7 "("   "2.5*("         repaired 2.5           2.5
   5   18 "3"   "2.5*(3"        repaired 2.5*(3)       7.5
   6   13 "."   "2.5*(3."       repaired 2.5*(3.0)     7.5
   7   15 "0"   "2.5*(3.0"      repaired 2.5*(3.0)     7.5
   8 1343 " +"  "2.5*(3.0 +"    invalid
   9  352 " 1"  "2.5*(3.0 + 1"  repaired 2.5*(3.0 + 1) 10
  10    8 ")"   "2.5*(3.0 + 1)" ok       2.5*(3.0 + 1) 10
EOF
  )" "$out"
  same "gpt2 prefixes: exit 0" 0 "$status"
  run '' --prefixes --json --tokenizer=gpt2 "--bpe-dir=$dir" '1 + 2'
  json_lines "gpt2 prefixes --json" "$out"
  has "gpt2 prefixes --json: ' +' token" '"token":" +"' "$out"
  run '' --prefixes --tokenizer gpt2 --bpe-dir "$tmp" '1'
  same "gpt2 without its files: exit 1" 1 "$status"
  has "gpt2 without its files: names the file" "encoder.json" "$err"
  [[ $failures -eq 0 ]] && echo "all passed" || echo "$failures failed"
  exit $((failures > 0))
fi

# --- values -----------------------------------------------------------------------------------------------
run '' '2.5*3.0 + 1.0'
same "value of 2.5*3.0 + 1.0" "8.5" "$out"
same "value: exit 0" 0 "$status"
run '' '0.1 + 0.2'
same "0.1 + 0.2 is exact: 0.3" "0.3" "$out"
run '' '2.5*3.0 + 1.0' '7/2' '-(1.5)'
same "several EXPR arguments, one line each" $'8.5\n3.5\n-1.5' "$out"

# --- errors -----------------------------------------------------------------------------------------------
run '' '1 + *2'
same "parse error: exit 2" 2 "$status"
same "parse error: nothing on stdout" "" "$out"
same "parse error: message, input, caret" "$(
  cat <<'EOF'
error: expected a number or '(' at offset 4, found '*'
1 + *2
    ^
EOF
)" "$err"
run '' '1/(2 - 2)'
same "division by zero: exit 2" 2 "$status"
same "division by zero: message and input, no caret" $'error: division by zero at offset 1\n1/(2 - 2)' "$err"

# --- stdin ------------------------------------------------------------------------------------------------
run $'1 + 2\n1 + *2\n3*4\n'
same "stdin: 3 answers in order, the bad one in the middle" "$(
  cat <<'EOF'
3
error: expected a number or '(' at offset 4, found '*'
1 + *2
    ^
12
EOF
)" "$both"
same "stdin: exit 2 when a line failed" 2 "$status"
run $'1 + 2\r\n3*4'
same "stdin: CRLF lines, last line without newline" $'3\n12' "$out"
same "stdin: exit 0 when every line answered" 0 "$status"

# --- JSON -------------------------------------------------------------------------------------------------
run $'2.5*3.0 + 1.0\n1 + *2\n1/0\n"quoted"\n' --json
json_lines "--json: one JSON value per line" "$out"
same "--json: exit 2" 2 "$status"
same "--json: objects" "$(
  cat <<'EOF'
{"input":"2.5*3.0 + 1.0","value":8.5,"normalized":"Add(Mul(2.5, 3.0), 1.0)"}
{"input":"1 + *2","error":{"kind":"parse","message":"expected a number or '(' at offset 4, found '*'","offset":4}}
{"input":"1/0","error":{"kind":"evaluate","message":"division by zero at offset 1","offset":null}}
{"input":"\"quoted\"","error":{"kind":"parse","message":"expected a number or '(' at offset 0, found '\"'","offset":0}}
EOF
)" "$out"
same "--json: errors stay on stdout" "" "$err"
run $'\xff\xfe\n' --json
json_lines "--json: invalid UTF-8 input still gives JSON" "$out"
run '' --json --plan --execute --dot '10.0 - 2.0*3.0'
json_lines "--json --plan --execute --dot" "$out"
has "--json --plan: the plan object" \
  '"plan":{"V_mag":[10.0,2.0,3.0,0.0,0.0,0.0,0.0,0.0],"V_sign":[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0],"O":[[0.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0],[1.0,0.0,0.0,0.0,-1.0,0.0,0.0,0.0],[0.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0],[0.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0]],"G":[0.0,1.0,1.0,1.0],"decoded":"10 - 2*3"}' \
  "$out"
has "--json --execute: executed" '"executed":4.0' "$out"
has "--json --dot: dot" '"dot":"digraph dag {' "$out"

# --- plan, execute, reference -----------------------------------------------------------------------------
run '' --plan --depth 4 '10.0 - 2.0*3.0'
same "--plan (REFERENCE.md 3.4 E2)" "$(
  cat <<'EOF'
4
  V_mag   [10, 2, 3, 0 | 0, 0, 0, 0]
  V_sign  [1, 1, 1, 1 | 1, 1, 1, 1]
  O0      {1:1, 2:1}
  O1      {0:1, 4:-1}
  O2      {5:1}
  O3      {5:1}
  G       [0, 1, 1, 1]
  decoded 10 - 2*3
EOF
)" "$out"
plan_out=$out
run '' --plan --depth=4 '10.0 - 2.0*3.0'
same "--depth=4 reads as --depth 4" "$plan_out" "$out"
run '' --execute '10.0 - 2.0*3.0'
same "--execute" "4  executed: 4" "$out"
run '' --normalized '10.0 - 2.0*3.0' '1.0 - 2.0'
same "--normalized" $'4  normalized: Sub(10.0, Mul(2.0, 3.0))\n-1  normalized: Sub(1.0, 2.0)' "$out"
run '' --normalized --reference '1.0 - 2.0'
same "--reference: the normalizer collapses all-Float Sub" "-1  normalized: -1.0" "$out"
run '' --execute '-2.0*-2.0'
same "--execute -2.0*-2.0: 4 (default semantics)" "4  executed: 4" "$out"
run '' --reference --execute '-2.0*-2.0'
same "--reference --execute -2.0*-2.0: -4 (the reference's sign bug)" "4  executed: -4" "$out"
run '' --plan '-2.0*-2.0'
has "-2.0*-2.0 uses one slot twice" "O0      {0:2}" "$out"
run '' --execute '1 + 2 + 3 + 4 + 5'
same "too many numbers: exit 2" 2 "$status"
same "too many numbers: the encoder's reason" $'error: expression has 5 numbers; depth 4 allows 4\n1 + 2 + 3 + 4 + 5' "$err"
run '' --execute --depth 5 '1 + 2 + 3 + 4 + 5'
same "--depth 5 fits 5 numbers" "15  executed: 15" "$out"
run '' --json --plan --depth 2 '1*2*3'
has "--json encode error" '"error":{"kind":"encode","message":"expression has 3 numbers; depth 2 allows 2","offset":null}' "$out"

# --- generator --------------------------------------------------------------------------------------------
run '' --generate 3 --seed 1 --depth 4
same "--generate 3: exit 0" 0 "$status"
same "--generate 3: three lines" 3 "$(printf '%s\n' "$out" | wc -l)"
generated=$out
run "$generated"$'\n'
same "--generate: every line parses and evaluates" 0 "$status"
same "--generate: one answer per line" 3 "$(printf '%s\n' "$out" | wc -l)"
run '' --generate=3 --seed=1 --depth=4
same "--generate: deterministic" "$generated" "$out"
run '' --generate 3 --seed 1 --depth 4 --val
[[ "$out" != "$generated" ]] && echo "ok    --val: another stream" || {
  echo "FAIL  --val gives the training stream"
  failures=$((failures + 1))
}
run '' --generate 20 --seed 7 --depth 3 --max-digits 1 --max-decimal-places 0
if printf '%s\n' "$out" | grep -Eq '[0-9]{2}|\.[1-9]'; then
  echo "FAIL  --max-digits/--max-decimal-places not honoured:"
  printf '%s\n' "$out"
  failures=$((failures + 1))
else
  echo "ok    --max-digits 1 --max-decimal-places 0: one-digit numbers"
fi
# End to end: the exact executor on the encoded plan gives the exact value (DESIGN.md: relative error <= 1e-12).
if command -v python3 >/dev/null; then
  run "$("$calc" --generate 300 --seed 11 --depth 6)"$'\n' --json --execute --depth 6
  if printf '%s\n' "$out" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
bad = [r for r in rows if "error" not in r and abs(r["executed"] - r["value"]) > 1e-12 * abs(r["value"])]
ok = sum("error" not in r for r in rows)
print(f"      {ok} of {len(rows)} evaluate; {len(bad)} executed values off by more than 1e-12")
sys.exit(1 if bad or ok < 250 else 0)'; then
    echo "ok    --execute matches the exact value on 300 generated expressions"
  else
    echo "FAIL  --execute differs from the exact value"
    failures=$((failures + 1))
  fi
fi
run '' --generate 2 --json
json_lines "--generate --json" "$out"

# --- DOT --------------------------------------------------------------------------------------------------
run '' --dot '10.0 - 2.0*3.0'
same "--dot: starts with digraph" "digraph dag {" "$(printf '%s\n' "$out" | head -n 1)"
same "--dot: ends with }" "}" "$(printf '%s\n' "$out" | tail -n 1)"
has "--dot: step with its value" 'n5 [label="step 1: linear\n4"];' "$out"
has "--dot: edge with its coefficient" 'n4 -> n5 [label="-1"];' "$out"
has "--dot: the output node" 'peripheries=2' "$out"
if command -v dot >/dev/null; then
  printf '%s\n' "$out" | dot -Tsvg >/dev/null && echo "ok    --dot: Graphviz reads it" || {
    echo "FAIL  --dot: Graphviz rejects it"
    failures=$((failures + 1))
  }
fi

# --- prefixes (character tokenizer) -----------------------------------------------------------------------
run '' --prefixes '2.5*3'
same "--prefixes: the value, then the table" "$(
  cat <<'EOF'
7.5
  # id token prefix  status   parsed value
  0  3 "2"   "2"     ok       2      2
  1 11 "."   "2."    ok       2.     2
  2  6 "5"   "2.5"   ok       2.5    2.5
  3 14 "*"   "2.5*"  repaired 2.5    2.5
  4  4 "3"   "2.5*3" ok       2.5*3  7.5
EOF
)" "$out"
run '' --prefixes '2.5*(3'
same "--prefixes: an unfinished input fails" 2 "$status"
has "--prefixes: ... with its error on stderr" "error: expected an operator or ')' at offset 6, found end of input" "$err"
same "--prefixes: ... and its table on stdout" "$(
  cat <<'EOF'
  # id token prefix   status   parsed  value
  0  3 "2"   "2"      ok       2       2
  1 11 "."   "2."     ok       2.      2
  2  6 "5"   "2.5"    ok       2.5     2.5
  3 14 "*"   "2.5*"   repaired 2.5     2.5
  4 16 "("   "2.5*("  repaired 2.5     2.5
  5  4 "3"   "2.5*(3" repaired 2.5*(3) 7.5
EOF
)" "$out"
run '' --prefixes --json '1 +'
json_lines "--prefixes --json" "$out"
has "--prefixes --json: rows come with the error" '"prefixes":[{"id":2,"token":"1","prefix":"1","valid":true' "$out"
run '' --prefixes 'x'
same "--prefixes: a character outside the alphabet fails" 2 "$status"

# --- the command line -------------------------------------------------------------------------------------
run '' --frobnicate '1'
same "unknown option: exit 1" 1 "$status"
has "unknown option: named" "unknown option '--frobnicate'" "$err"
has "unknown option: usage" "usage: dagcalc" "$err"
run '' --depth 0 '1'
same "--depth 0: exit 1" 1 "$status"
run '' --depth=x '1'
has "--depth=x: says what it needs" "option --depth needs an integer in [1, 32], got 'x'" "$err"
run '' '1' --depth
has "--depth without a value" "option --depth needs a value" "$err"
run '' --json=yes '1'
has "a flag with a value" "option --json takes no value" "$err"
run '' --seed 3 '1'
has "--seed without --generate" "option --seed is only used with --generate" "$err"
run '' --generate 2 '1'
same "--generate with an expression: exit 1" 1 "$status"
run '' --tokenizer bpe --prefixes '1'
has "--tokenizer bpe" "option --tokenizer is char or gpt2, got 'bpe'" "$err"
run '' --dot --plan '1'
same "--dot --plan without --json: exit 1" 1 "$status"
run '' -- '-2.0*-2.0' '--3'
same "-- and expressions that start with -" $'4\n3' "$out"
run '' '-2.0*-2.0' '--3'
same "expressions that start with - need no --" $'4\n3' "$out"
run '' --help
same "--help: exit 0" 0 "$status"
has "--help: usage" "usage: dagcalc [options] [EXPR ...]" "$out"

if [[ $failures -eq 0 ]]; then
  echo "all passed"
else
  echo "$failures failed"
fi
exit $((failures > 0))
