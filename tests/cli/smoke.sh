#!/usr/bin/env bash
# CLI smoke tests: run the real binary on tiny inputs and check exit codes and messages.
# usage: smoke.sh UNWEDGE_BINARY SOURCE_DIR [SCRIPT...]
# Runs each SCRIPT (default: every tests/cli/smoke_*.sh) in one temporary folder with check()
# defined; CTest runs one script per entry (cli_<area>). Exit 0 when every check passed, 1 when
# one failed, 77 (skip) when a script skipped all of its checks.
set -uo pipefail
BIN=$1
SRC=$2
shift 2
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

# "${DEFAULT_SIGNALS[@]}" COMMAND... runs COMMAND with SIGINT and SIGHUP at their defaults: a
# script's background commands start with SIGINT ignored (and unwedge keeps a signal ignored at
# its start, as `nohup` wants). A plain command, not a function, so that $! is COMMAND's PID.
DEFAULT_SIGNALS=(python3 -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')

scripts=("$@")
if [[ ${#scripts[@]} -eq 0 ]]; then scripts=("$SRC"/tests/cli/smoke_*.sh); fi
for t in "${scripts[@]}"; do
  [[ -e "$t" ]] || { echo "FAIL: no script $t"; exit 1; }
  # shellcheck source=/dev/null
  source "$t"
done

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]] || exit 1
[[ $passes -gt 0 ]] || exit 77  # every check skipped (a prerequisite is missing): CTest says so
