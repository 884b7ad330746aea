#!/usr/bin/env bash
# Runs every benchmark program of the build and collects their JSON in bench-out/.
# usage: scripts/bench.sh BUILD_DIR
set -euo pipefail
BUILD=${1:-build}
OUT=${BENCH_OUT:-bench-out}
mkdir -p "$OUT"
shopt -s nullglob
ran=0
for prog in "$BUILD"/bench/bench_*; do
  [[ -x "$prog" && -f "$prog" ]] || continue
  name=$(basename "$prog")
  echo "== $name"
  "$prog" > "$OUT/$name.json"
  cat "$OUT/$name.json"
  ran=$((ran + 1))
done
echo "bench: $ran program(s), results in $OUT/"
