#!/usr/bin/env bash
# Runs every libFuzzer target of a `make fuzz` build, one at a time (single process, niced), each
# to RUNS executions, on a working corpus seeded from tests/fuzz/corpus/<target>/.
# usage: scripts/fuzz.sh BUILD_DIR [RUNS] [TARGET...]
# Writes BUILD_DIR/fuzz-results.tsv (target, executions, seconds, exit status) and leaves each
# target's log in BUILD_DIR/fuzz-<target>.log; a crash input is saved as
# BUILD_DIR/crash-<target>-* (add it to tests/fuzz/corpus/<target>/ once the defect is fixed).
set -uo pipefail
BUILD=$1
RUNS=${2:-1000000}
shift $(( $# >= 2 ? 2 : 1 ))
SRC=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(mrc tilt config particles method_options star checkpoint)
# LibTorch is not instrumented; what it allocates at load time and never frees is not ours.
export LSAN_OPTIONS="suppressions=$SRC/tests/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$SRC/tests/sanitize/ubsan.supp"
export OMP_NUM_THREADS=1
# Each execution writes its input to a file for the path-taking parsers: in memory when possible
# (on a disk, the writes, not the parsers, set the pace).
[[ -z ${TMPDIR:-} && -w /dev/shm ]] && export TMPDIR=/dev/shm
status=0
for t in "${targets[@]}"; do
  exe="$BUILD/tests/fuzz/fuzz_$t"
  work="$BUILD/fuzz-corpus/$t"
  mkdir -p "$work"
  dict=()
  [[ -f "$SRC/tests/fuzz/$t.dict" ]] && dict=(-dict="$SRC/tests/fuzz/$t.dict")
  maxlen=4096
  [[ $t == checkpoint ]] && maxlen=131072
  SECONDS=0
  nice -n "${FUZZ_NICE:-10}" "$exe" -runs="$RUNS" -max_len=$maxlen -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$BUILD/crash-$t-" "${dict[@]}" \
    "$work" "$SRC/tests/fuzz/corpus/$t" > "$BUILD/fuzz-$t.log" 2>&1
  rc=$?
  secs=$SECONDS
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$BUILD/fuzz-$t.log" | grep -o '[0-9]*$')
  printf '%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "$secs" "$rc" | tee -a "$BUILD/fuzz-results.tsv"
  [[ $rc -eq 0 ]] || { status=1; tail -30 "$BUILD/fuzz-$t.log"; }
done
exit $status
