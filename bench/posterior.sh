#!/usr/bin/env bash
# Posterior bench (issue 15): uncertainty calibrated from the data alone, scored against the
# ground truth of a simulated preset.
#
#   bash bench/posterior.sh [OUT]        (default OUT: posterior-run)
#
# Trained with the same budget each (MINUTES CPU-minutes, --budget-clock cpu, THREADS threads,
# every other train flag at its default): ENSEMBLE cryogen-ot models (seeds 0..ENSEMBLE-1),
# cryowgen-mc on top of the seed-0 one (`--init-from`, the recipe docs/posterior.md gives: so it
# has twice the training of the bootstrap's model) and cryowgen-langevin the same way (from
# scratch before 2026-12-06; the fine-tunes need ~100 steps before cryowgen-mc's draws differ, and
# at MINUTES 10 with today's wider cryogen-ot they made 35-75: bench/RESULTS.md, "Data-only
# calibration on several cubes"). Then, on
# the scored box (BOX, default the whole volume):
#   cryowgen-mc, cryowgen-langevin: `unwedge sample --calibrate` (their own posteriors);
#   bootstrap:  `unwedge sample --uq bootstrap --calibrate` of the cryogen-ot seed-0 model;
#   ensemble:   the ENSEMBLE cryogen-ot restorations, their mean and population std (the
#               reference baseline: ENSEMBLE times the training budget; no data-only calibration,
#               the spread as it comes).
# Every sample run is as a user types it plus --truth (scoring only: the calibration never sees
# the truth) and --save-samples (for the per-band figures). Point estimates: `unwedge restore` of
# each model (G(y) for the cryowgen methods). Scores from summary.json's eval (sample --truth)
# and `unwedge eval --std --samples` for the ensemble: CC, PSNR, wedge-band CC; coverage at
# 50/80/90/95 % overall, in the measured band and in the wedge; Pearson and Spearman
# corr(std, |error|) overall and per band; AUSE; ESS; acceptance; seconds per draw.
# Writes RESULT (JSON) and prints a markdown table.
#
# Environment (defaults in brackets): UNWEDGE [build/unwedge], PRESET [standard], SEED [1],
# SIM_OPTS [] (extra simulate flags, e.g. "--tilt-min -50 --tilt-max 65 --particles 60"),
# TILT ["-60 60"] (the data's tilt range, given to train), MINUTES [10], STEPS [] (if set:
# --steps instead of a budget, for tests), THREADS [1] (training), SAMPLE_THREADS [2], N [16]
# (draws), ENSEMBLE [4], BOX [] ("z0 z1 y0 y1 x0 x1": score a crop, for time), SAMPLE_OPTS []
# (extra flags for every sample run), LANGEVIN_OPTS [] (extra flags for cryowgen-langevin's),
# TRAIN_OPTS [] (extra flags for every train run; the figures in bench/RESULTS.md up to
# 2026-12-06 had 16-channel cryogen-ot models: TRAIN_OPTS="--opt base_channels=16" reproduces them
# now that cryogen-ot trains 32 wide from 8 CPU-minutes), DEVICE [cpu] (training, sampling and restoring, e.g. cuda), BUDGET_CLOCK [cpu] (clock of
# MINUTES: cpu or wall), POOL [1.5] (the ensemble's std pooled like sample --std-pool; pass
# SAMPLE_OPTS="--std-pool P" too when changing it), PY [/usr/bin/python3] (numpy, scipy, mrcfile),
# RESULT [bench/results/posterior_<preset>_s<seed>.json].
set -euo pipefail
OUT=${1:-posterior-run}
UNWEDGE=${UNWEDGE:-build/unwedge}
PRESET=${PRESET:-standard}
SEED=${SEED:-1}
SIM_OPTS=${SIM_OPTS:-}
TILT=${TILT:--60 60}
MINUTES=${MINUTES:-10}
STEPS=${STEPS:-}
THREADS=${THREADS:-1}
SAMPLE_THREADS=${SAMPLE_THREADS:-2}
N=${N:-16}
ENSEMBLE=${ENSEMBLE:-4}
BOX=${BOX:-}
SAMPLE_OPTS=${SAMPLE_OPTS:-}
POOL=${POOL:-1.5}
LANGEVIN_OPTS=${LANGEVIN_OPTS:-}
TRAIN_OPTS=${TRAIN_OPTS:-}
DEVICE=${DEVICE:-cpu}
BUDGET_CLOCK=${BUDGET_CLOCK:-cpu}
PY=${PY:-/usr/bin/python3}
RESULT=${RESULT:-bench/results/posterior_${PRESET}_s${SEED}.json}
UNWEDGE=$(realpath "$UNWEDGE")
mkdir -p "$OUT/models" "$(dirname "$RESULT")"
D="$OUT/data"
# shellcheck disable=SC2206
sim_extra=($SIM_OPTS) tilt=($TILT) sample_extra=($SAMPLE_OPTS) langevin_extra=($LANGEVIN_OPTS) train_extra=($TRAIN_OPTS)
if [[ ! -f $D/even.mrc ]]; then
  "$UNWEDGE" -q simulate --preset "$PRESET" --seed "$SEED" "${sim_extra[@]}" --out "$D"
fi

budget=(--minutes "$MINUTES" --budget-clock "$BUDGET_CLOCK")
[[ -n $STEPS ]] && budget=(--steps "$STEPS")
train() {  # train METHOD SEED OUT.uwm [flags]
  [[ -f $3 ]] && return 0
  "$UNWEDGE" -q --threads "$THREADS" train --method "$1" --even "$D/even.mrc" --odd "$D/odd.mrc" \
    --tilt-range "${tilt[@]}" --seed "$2" --device "$DEVICE" --no-progress "${budget[@]}" --out "$3" "${train_extra[@]}" "${@:4}"
}
for ((k = 0; k < ENSEMBLE; k++)); do train cryogen-ot "$k" "$OUT/models/ot_s$k.uwm"; done
train cryowgen-mc 0 "$OUT/models/mc.uwm" --init-from "$OUT/models/ot_s0.uwm"
train cryowgen-langevin 0 "$OUT/models/langevin.uwm" --init-from "$OUT/models/ot_s0.uwm"

# The scored volumes: the halves and the truth, cropped to BOX when given.
S="$OUT/scored"
mkdir -p "$S"
for f in even odd gt; do
  if [[ -n $BOX ]]; then
    # shellcheck disable=SC2206
    box=($BOX)
    "$UNWEDGE" -q convert --in "$D/$f.mrc" --out "$S/$f.mrc" --box "${box[@]}" --overwrite
  else
    cp "$D/$f.mrc" "$S/$f.mrc"
  fi
done

U=("$UNWEDGE" -q --threads "$SAMPLE_THREADS")
restore() {  # restore MODEL OUT.mrc
  "${U[@]}" restore --model "$1" --even "$S/even.mrc" --odd "$S/odd.mrc" --out "$2" \
    --device "$DEVICE" --no-progress --overwrite
  "${U[@]}" eval --in "$2" --truth "$S/gt.mrc" --tilt-range "${tilt[@]}" --json "${2%.mrc}.json" \
    --overwrite > /dev/null
}
sample() {  # sample MODEL DIR [flags]
  local model=$1 dir=$2
  shift 2
  "${U[@]}" sample --model "$model" --even "$S/even.mrc" --odd "$S/odd.mrc" --out-dir "$dir" \
    --n "$N" --seed "$SEED" --device "$DEVICE" --calibrate --save-samples --truth "$S/gt.mrc" --no-progress \
    --overwrite "${sample_extra[@]}" "$@"
}
restore "$OUT/models/mc.uwm" "$OUT/mc_point.mrc"
sample "$OUT/models/mc.uwm" "$OUT/mc"
members=()
for ((k = 0; k < ENSEMBLE; k++)); do
  restore "$OUT/models/ot_s$k.uwm" "$OUT/ot_s$k.mrc"
  members+=("$OUT/ot_s$k.mrc")
done
sample "$OUT/models/ot_s0.uwm" "$OUT/bootstrap" --uq bootstrap

# The ensemble: mean and population std of the members, with the data's header; the variance
# averaged over the sampler's Gaussian neighbourhood (sample --std-pool, 1.5 voxels: scipy's
# filter with zero padding over its filter of ones, radius int(3 sigma + 0.5), as
# gaussian_average), so the ensemble's std is pooled as the samplers' are. It is the members'
# spread alone (no structure term: eval --std-structure 0), the reference as it comes.
mkdir -p "$OUT/ensemble"
"$PY" - "$OUT/ensemble" "$POOL" "${members[@]}" <<'EOF'
import sys, mrcfile, numpy as np
from scipy.ndimage import gaussian_filter
out, pool, paths = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
x = np.stack([mrcfile.read(p).astype(np.float64) for p in paths])
with mrcfile.open(paths[0], permissive=True) as f:
    vs = f.voxel_size
var = x.var(0)
if pool > 0:
    g = lambda v: gaussian_filter(v, pool, mode="constant", cval=0.0, truncate=3.0)
    var = g(var) / g(np.ones_like(var))
for name, v in (("mean", x.mean(0)), ("std", np.sqrt(var))):
    with mrcfile.new(f"{out}/{name}.mrc", overwrite=True) as f:
        f.set_data(v.astype(np.float32))
        f.voxel_size = vs
EOF
"${U[@]}" eval --in "$OUT/ensemble/mean.mrc" --truth "$S/gt.mrc" --std "$OUT/ensemble/std.mrc" \
  --samples "${members[@]}" --std-pool "$POOL" --std-structure 0 --tilt-range "${tilt[@]}" --json "$OUT/ensemble/eval.json" \
  --overwrite > /dev/null
# Langevin last: the slowest (burn-in + steps network evaluations per chain and tile).
restore "$OUT/models/langevin.uwm" "$OUT/langevin_point.mrc"
sample "$OUT/models/langevin.uwm" "$OUT/langevin" "${langevin_extra[@]}"

"$PY" "$(dirname "$0")/posterior_table.py" "$OUT" "$RESULT" "$PRESET" "$SEED" "$SIM_OPTS" "$TILT" \
  "$MINUTES" "$STEPS" "$THREADS" "$N" "$ENSEMBLE" "$BOX" "$DEVICE" "$BUDGET_CLOCK"
