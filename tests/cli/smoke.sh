#!/usr/bin/env bash
# CLI smoke tests: run the real binary on tiny inputs and check exit codes and messages.
# usage: smoke.sh UNWEDGE_BINARY SOURCE_DIR
set -uo pipefail
BIN=$1
SRC=$2
SHARED="$SRC/../shared/data"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fails=0
passes=0
check() {  # check NAME EXPECTED_RC GREP_PATTERN -- command...
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc -ne $want ]] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: rc=$rc (want $want), output:"
    echo "$out" | head -20
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}

check help 0 "info" -- "$BIN" --help
check version 0 "unwedge [0-9]+\.[0-9]+" -- "$BIN" --version
check no-command 106 "subcommand" -- "$BIN"
check unknown-command 1 "unknown command .frobnicate.*known: simulate" -- "$BIN" frobnicate
if [[ -d "$SHARED" ]]; then
  check info-sample 0 "20 x 20 x 20" -- "$BIN" info --permissive "$SHARED/mrc_samples/EMD-3197.map"
  check info-sample-strict 1 "nversion 0.*--permissive" -- "$BIN" info "$SHARED/mrc_samples/EMD-3197.map"
else
  echo "skip: $SHARED absent, sample-file smoke tests not run"
fi
check info-missing 1 "nope.mrc" -- "$BIN" info "$WORK/nope.mrc"

for t in "$SRC"/tests/cli/smoke_*.sh; do
  [[ -e "$t" ]] || continue
  # shellcheck source=/dev/null
  source "$t"
done

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
