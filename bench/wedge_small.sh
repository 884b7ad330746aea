#!/usr/bin/env bash
# Missing-wedge bench on two `small` presets with other seeds and tilt ranges than `standard`
# (issue 14): every method with its default options, the same CPU budget each (one thread,
# --budget-clock cpu), patch 40, batch 4; scored against ground truth by `unwedge bench`.
#   bench/wedge_small.sh [UNWEDGE] [MINUTES] [OUT]
# Runs the two presets side by side (two processes on the 2-core machine).
set -euo pipefail
UNWEDGE=${1:-build/unwedge}
MIN=${2:-10}
OUT=${3:-bench_wedge_small}
METHODS=n2n,ddw,isonet,ei,cryogen-ot,cryogen-map
mkdir -p "$OUT"
"$UNWEDGE" --threads 1 simulate --preset small --seed 7 --out "$OUT/data_s7" --overwrite
"$UNWEDGE" --threads 1 simulate --preset small --seed 1404 --tilt-min -50 --tilt-max 65 --out "$OUT/data_s1404_asym" --overwrite
"$UNWEDGE" --threads 1 bench --data "$OUT/data_s7" --tilt-range -60 60 --methods $METHODS \
  --minutes "$MIN" --budget-clock cpu --patch 40 --out "$OUT/s7" --overwrite &
"$UNWEDGE" --threads 1 bench --data "$OUT/data_s1404_asym" --tilt-range -50 65 --methods $METHODS \
  --minutes "$MIN" --budget-clock cpu --patch 40 --out "$OUT/s1404_asym" --overwrite &
wait
