#!/usr/bin/env bash
# Posterior bench (issue 7): cryowgen-mc and cryowgen-langevin on a simulated preset, trained
# with the same CPU budget, calibrated on one half of the tomogram along Y (y < Y/2, region A)
# and scored on the other (y >= Y/2, region B), next to cryogen-ot with the same budget.
#
#   bash bench/posterior.sh [OUT]        (default OUT: posterior-run)
#
# Calibration (held out: only region A's ground truth is used to choose, region B's to score):
#   cryowgen-mc:       the temperature gamma from GAMMAS whose 90 % coverage on A is nearest 0.9
#                      (each gamma is one `unwedge sample --gamma` run); then, as for Langevin,
#                      a std scale on A for what gamma could not fix ("then_std_scale").
#   cryowgen-langevin: a std scale s (the posterior std times s, what a noise level scaled by s
#                      gives where the likelihood dominates): s = q90(|mean - (c gt + d)| / std)
#                      / 1.645 on A, with c, d the least-squares fit mean = c gt + d on A (the
#                      fit `unwedge eval --std` inverts), so 90 % coverage on A is 0.9 by
#                      construction; B then tells whether it transfers.
# Scores on B come from `unwedge eval --in MEAN --truth GT --std STD --mask B`: CC, PSNR,
# wedge-band CC, coverage of the Gaussian 50 % and 90 % intervals, corr(std, |error|); both the
# calibrated and the uncalibrated figures are written. Time per sample from summary.json.
#
# Environment (defaults in brackets): UNWEDGE [build/unwedge], PRESET [standard], SEED [1],
# MINUTES [10] (CPU minutes per training, --budget-clock cpu), STEPS [] (if set: --steps
# instead of a budget, for tests), THREADS [2], PATCH [32], BATCH [4], TRAIN_OPTS []
# (extra train flags, e.g. "--opt depth=1"), N [16] (draws), GAMMAS ["1 16 256 4096 65536"]
# (the wedge cost grows with the tile's measured coefficients, so gamma spans decades),
# LANGEVIN_OPTS [] (extra sample flags for cryowgen-langevin, e.g. "--steps 50 --mala"),
# TILE [0] (0: patch + overlap), OVERLAP [16], WITH_OT [1], DEVICE [cpu] (training, sampling
# and restoring device, e.g. cuda), BUDGET_CLOCK [cpu] (clock of MINUTES: cpu or wall),
# PY [/usr/bin/python3] (a python3 with numpy and mrcfile),
# RESULT [bench/results/posterior_<preset>.json].
set -euo pipefail
OUT=${1:-posterior-run}
UNWEDGE=${UNWEDGE:-build/unwedge}
PRESET=${PRESET:-standard}
SEED=${SEED:-1}
MINUTES=${MINUTES:-10}
STEPS=${STEPS:-}
THREADS=${THREADS:-2}
PATCH=${PATCH:-32}
BATCH=${BATCH:-4}
TRAIN_OPTS=${TRAIN_OPTS:-}
N=${N:-16}
GAMMAS=${GAMMAS:-1 16 256 4096 65536}
LANGEVIN_OPTS=${LANGEVIN_OPTS:-}
TILE=${TILE:-0}
OVERLAP=${OVERLAP:-16}
WITH_OT=${WITH_OT:-1}
DEVICE=${DEVICE:-cpu}
BUDGET_CLOCK=${BUDGET_CLOCK:-cpu}
RESULT=${RESULT:-bench/results/posterior_$PRESET.json}
PY=${PY:-/usr/bin/python3}
UNWEDGE=$(realpath "$UNWEDGE")
U=("$UNWEDGE" -q --threads "$THREADS")
mkdir -p "$OUT" "$(dirname "$RESULT")"
D="$OUT/data"
if [[ ! -f $D/even.mrc ]]; then
  "${U[@]}" simulate --preset "$PRESET" --seed "$SEED" --out "$D"
fi

# Region masks A (y < Y/2) and B (y >= Y/2), with the data's header.
"$PY" - "$D/gt.mrc" "$OUT/mask_A.mrc" "$OUT/mask_B.mrc" <<'EOF'
import sys, mrcfile, numpy as np
with mrcfile.open(sys.argv[1], permissive=True) as f:
    shape, vs = f.data.shape, f.voxel_size
for path, first in ((sys.argv[2], True), (sys.argv[3], False)):
    m = np.zeros(shape, np.float32)
    half = shape[1] // 2
    if first: m[:, :half, :] = 1
    else: m[:, half:, :] = 1
    with mrcfile.new(path, overwrite=True) as f:
        f.set_data(m)
        f.voxel_size = vs
EOF

budget=(--minutes "$MINUTES" --budget-clock "$BUDGET_CLOCK")
[[ -n $STEPS ]] && budget=(--steps "$STEPS")
# shellcheck disable=SC2206
train_extra=($TRAIN_OPTS)
train() {  # train METHOD OUT.uwm
  if [[ ! -f $2 ]]; then
    "${U[@]}" train --method "$1" --even "$D/even.mrc" --odd "$D/odd.mrc" --out "$2" \
      --patch "$PATCH" --batch "$BATCH" --seed "$SEED" --device "$DEVICE" --no-progress \
      "${budget[@]}" \
      "${train_extra[@]}"
  fi
}
sample() {  # sample MODEL DIR [extra flags]
  local model=$1 dir=$2
  shift 2
  "${U[@]}" sample --model "$model" --even "$D/even.mrc" --odd "$D/odd.mrc" --out-dir "$dir" \
    --n "$N" --seed "$SEED" --tile "$TILE" --overlap "$OVERLAP" --device "$DEVICE" --no-progress \
    --overwrite "$@"
}
evaluate() {  # evaluate MEAN STD MASK JSON
  "${U[@]}" eval --in "$1" --truth "$D/gt.mrc" --std "$2" --mask "$3" --json "$4" --overwrite \
    > /dev/null
}

# calibrate_std DIR: std scale s on A (see the header), DIR/std_calibrated.mrc, eval on A and B.
calibrate_std() {
  local dir=$1
  "$PY" - "$dir/mean.mrc" "$dir/std.mrc" "$D/gt.mrc" "$OUT/mask_A.mrc" \
    "$dir/std_calibrated.mrc" "$dir/std_scale.json" <<'EOF'
import sys, json, mrcfile, numpy as np
mean, std, gt, mask = (mrcfile.read(p).astype(np.float64) for p in sys.argv[1:5])
a = mask > 0.5
c, d = np.polyfit(gt[a], mean[a], 1)          # mean = c gt + d on A
z = np.abs(mean[a] - (c * gt[a] + d)) / np.maximum(std[a], 1e-30)
s = float(np.quantile(z, 0.9) / 1.6448536269514722)
with mrcfile.open(sys.argv[2], permissive=True) as f:
    vs = f.voxel_size
with mrcfile.new(sys.argv[5], overwrite=True) as f:
    f.set_data((std * s).astype(np.float32))
    f.voxel_size = vs
json.dump({"std_scale": s, "fit_c": c, "fit_d": d}, open(sys.argv[6], "w"))
EOF
  for m in A B; do
    [[ -f $dir/eval_$m.json ]] || evaluate "$dir/mean.mrc" "$dir/std.mrc" "$OUT/mask_$m.mrc" "$dir/eval_$m.json"
    evaluate "$dir/mean.mrc" "$dir/std_calibrated.mrc" "$OUT/mask_$m.mrc" "$dir/eval_cal_$m.json"
  done
}

# cryowgen-mc: one sample run per gamma, coverage on A (sample's default --ess-min 0.25 raises a
# gamma that is too cold for a tile until a quarter of the candidates carry the weight).
train cryowgen-mc "$OUT/mc.uwm"
for g in $GAMMAS; do
  sample "$OUT/mc.uwm" "$OUT/mc_g$g" --gamma "$g" --no-report
  evaluate "$OUT/mc_g$g/mean.mrc" "$OUT/mc_g$g/std.mrc" "$OUT/mask_A.mrc" "$OUT/mc_g$g/eval_A.json"
  evaluate "$OUT/mc_g$g/mean.mrc" "$OUT/mc_g$g/std.mrc" "$OUT/mask_B.mrc" "$OUT/mc_g$g/eval_B.json"
done
best_gamma=$("$PY" -c '
import json, sys
out, gs = sys.argv[1], sys.argv[2].split()
cov = {g: json.load(open(f"{out}/mc_g{g}/eval_A.json"))["metrics"]["coverage_90"] for g in gs}
print(min(gs, key=lambda g: abs(cov[g] - 0.9)))' "$OUT" "$GAMMAS")
# If no gamma of the grid reaches 90 % on A, the std scale calibrates what is left.
calibrate_std "$OUT/mc_g$best_gamma"

# cryowgen-langevin: one sample run, std scale calibrated on A.
train cryowgen-langevin "$OUT/langevin.uwm"
# shellcheck disable=SC2206
lopts=($LANGEVIN_OPTS)
rm -f "$OUT"/langevin/eval_*.json
sample "$OUT/langevin.uwm" "$OUT/langevin" "${lopts[@]}" --truth "$D/gt.mrc"
calibrate_std "$OUT/langevin"

# cryogen-ot with the same budget: the deterministic reference (no std).
if [[ $WITH_OT == 1 ]]; then
  train cryogen-ot "$OUT/ot.uwm"
  "${U[@]}" restore --model "$OUT/ot.uwm" --even "$D/even.mrc" --odd "$D/odd.mrc" \
    --out "$OUT/ot.mrc" --tile "$TILE" --overlap "$OVERLAP" --device "$DEVICE" --no-progress \
    --overwrite
  "${U[@]}" eval --in "$OUT/ot.mrc" --truth "$D/gt.mrc" --mask "$OUT/mask_B.mrc" \
    --json "$OUT/ot_eval_B.json" --overwrite > /dev/null
fi

"$PY" - "$OUT" "$RESULT" "$PRESET" "$SEED" "$MINUTES" "$STEPS" "$THREADS" "$N" "$WITH_OT" \
  "$GAMMAS" "$DEVICE" "$BUDGET_CLOCK" <<'EOF'
import json, os, sys, platform
out, result, preset, seed, minutes, steps, threads, n, with_ot, gammas, device, clock = sys.argv[1:13]
keys = ["cc", "psnr_db", "cc_wedge_band", "cc_deep_wedge_band", "coverage_50", "coverage_90",
        "std_error_cc"]
def metrics(path):
    m = json.load(open(path))["metrics"]
    return {k: m.get(k) for k in keys}
def summary(d):
    s = json.load(open(os.path.join(d, "summary.json")))
    return {k: s.get(k) for k in ("seconds", "seconds_per_sample", "ess_min", "ess_mean",
                                  "acceptance", "draws", "tiles")}
def train_info(uwm):
    log = uwm[:-4] + ".train.jsonl"
    rows = [json.loads(l) for l in open(log) if l.strip()] if os.path.exists(log) else []
    last = rows[-1] if rows else {}
    return {"steps": last.get("step"), "elapsed_s": last.get("elapsed_s")}
mc_grid = []
for g in gammas.split():
    d = os.path.join(out, "mc_g" + g)
    mc_grid.append({"gamma": float(g), "A": metrics(os.path.join(d, "eval_A.json")),
                    "B": metrics(os.path.join(d, "eval_B.json")), "sampling": summary(d)})
best = min(mc_grid, key=lambda r: abs(r["A"]["coverage_90"] - 0.9))
gbest = next(g for g in gammas.split() if float(g) == best["gamma"])
lv = os.path.join(out, "langevin")
res = {
    "bench": "posterior", "preset": preset, "seed": int(seed),
    "budget": ({"steps": int(steps)} if steps else
               {("cpu_minutes" if clock == "cpu" else "wall_minutes"): float(minutes)}),
    "device": device,
    "threads": int(threads), "draws": int(n), "host": platform.node(), "cpus": os.cpu_count(),
    "regions": {"calibrate": "A: y < Y/2", "score": "B: y >= Y/2"},
    "cryowgen-mc": {"train": train_info(os.path.join(out, "mc.uwm")),
                    "calibration": "gamma nearest 90 % coverage on A",
                    "gamma": best["gamma"], "A": best["A"], "B": best["B"],
                    "sampling": best["sampling"], "grid": mc_grid,
                    "then_std_scale": {
                        "std_scale": json.load(open(os.path.join(out, "mc_g%s" % gbest, "std_scale.json")))["std_scale"],
                        "A": metrics(os.path.join(out, "mc_g%s" % gbest, "eval_cal_A.json")),
                        "B": metrics(os.path.join(out, "mc_g%s" % gbest, "eval_cal_B.json"))}},
    "cryowgen-langevin": {"train": train_info(os.path.join(out, "langevin.uwm")),
                          "calibration": "std scale for 90 % coverage on A",
                          "std_scale": json.load(open(os.path.join(lv, "std_scale.json")))["std_scale"],
                          "A": metrics(os.path.join(lv, "eval_cal_A.json")),
                          "B": metrics(os.path.join(lv, "eval_cal_B.json")),
                          "B_uncalibrated": metrics(os.path.join(lv, "eval_B.json")),
                          "sampling": summary(lv)},
    "conventions": "coverage: Gaussian intervals mean -/+ z std after the affine map to gt "
                   "(unwedge eval --std); metrics restricted to the region's mask",
}
if with_ot == "1":
    res["cryogen-ot"] = {"train": train_info(os.path.join(out, "ot.uwm")),
                         "B": metrics(os.path.join(out, "ot_eval_B.json"))}
tmp = result + ".tmp"
json.dump(res, open(tmp, "w"), indent=1)
os.replace(tmp, result)
print("posterior.sh: wrote", result)
print(f"  cryowgen-mc: gamma {res['cryowgen-mc']['gamma']} (coverage 90 % on A "
      f"{res['cryowgen-mc']['A']['coverage_90']:.3f}), then std scale "
      f"{res['cryowgen-mc']['then_std_scale']['std_scale']:.3g}: B coverage 90 % "
      f"{res['cryowgen-mc']['then_std_scale']['B']['coverage_90']:.3f}")
print(f"  cryowgen-langevin: std scale {res['cryowgen-langevin']['std_scale']:.3g}")
for name in ("cryowgen-mc", "cryowgen-langevin", "cryogen-ot"):
    if name in res:
        b = res[name]["B"]
        print(f"  {name:18s} B: CC {b['cc']:.4f}  PSNR {b['psnr_db']:.2f}  wedge CC "
              f"{b['cc_wedge_band']:.4f}  cov50 {b['coverage_50']}  cov90 {b['coverage_90']}  "
              f"corr(std,|err|) {b['std_error_cc']}")
EOF
