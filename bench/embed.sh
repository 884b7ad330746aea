#!/usr/bin/env bash
# k-NN benchmark of the learned representations (issue 8): simulate a preset, train mae and
# contrastive under the same CPU-time budget, embed every particle, and score the embeddings and
# the raw-voxel baseline (PCA of the boxes) by cross-validated k-NN accuracy and a linear probe.
#
#   bash bench/embed.sh [OUT]          (default OUT: embed-run)
#
# Environment (defaults in brackets): UNWEDGE [build/unwedge], PRESET [standard], SEED [1],
# MINUTES [10] CPU minutes per method (--budget-clock cpu: fair on a shared machine),
# THREADS [1], BOX [32] (training patch), EMBED_BOX [0: embed's default, from the particles'
# measured size] (box embedded around each particle, also the raw baseline's box), K [5],
# FOLDS [5], MAE_OPTS, CON_OPTS (extra --opt KEY=VALUE for each method), MAE_BATCH [8],
# CON_BATCH [16], MAE_POOL [auto] (mae's embedding: mean or concat of its patch tokens,
# `unwedge embed --pool`; auto: concat), FLIPS [true] (`unwedge embed --flips`),
# PARALLEL [1] (train both methods at once), TRAIN [1] (0: reuse OUT's mae.uwm and
# contrastive.uwm and their logs, e.g. to embed with another EMBED_BOX),
# RESULT [OUT/embed_<preset>.json].
#
# Training sees the tomogram and the particles' positions (a picked-particle mask: patches are
# centred on particle centres), never their classes; the classes in particles.csv are read only
# by eval-embed.
set -euo pipefail
OUT=${1:-embed-run}
UNWEDGE=${UNWEDGE:-build/unwedge}
PRESET=${PRESET:-standard}
SEED=${SEED:-1}
MINUTES=${MINUTES:-10}
THREADS=${THREADS:-1}
BOX=${BOX:-32}
EMBED_BOX=${EMBED_BOX:-0}
FLIPS=${FLIPS:-true}
K=${K:-5}
FOLDS=${FOLDS:-5}
MAE_BATCH=${MAE_BATCH:-8}
MAE_POOL=${MAE_POOL:-auto}
CON_BATCH=${CON_BATCH:-16}
MAE_OPTS=${MAE_OPTS:-}
CON_OPTS=${CON_OPTS:-}
PARALLEL=${PARALLEL:-1}
RESULT=${RESULT:-$OUT/embed_$PRESET.json}
PY=/usr/bin/python3
UNWEDGE=$(realpath "$UNWEDGE")
mkdir -p "$OUT"
cd "$OUT"

if [[ ! -f data/particles.csv ]]; then
  "$UNWEDGE" --threads "$THREADS" simulate --preset "$PRESET" --seed "$SEED" --out data
fi

# Picked-particle mask: a 3^3 block of ones at each particle centre (positions only).
if [[ ! -f data/picked_mask.mrc ]]; then
  "$PY" - <<'EOF'
import csv, mrcfile, numpy as np
with mrcfile.open("data/tomo.mrc", permissive=True) as f:
    shape, voxel = f.data.shape, f.voxel_size
m = np.zeros(shape, np.float32)
for r in csv.DictReader(open("data/particles.csv")):
    x, y, z = (int(round(float(r[k]))) for k in ("x_vox", "y_vox", "z_vox"))
    m[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 1
with mrcfile.new("data/picked_mask.mrc.tmp", overwrite=True) as f:
    f.set_data(m)
    f.voxel_size = voxel
import os
os.replace("data/picked_mask.mrc.tmp", "data/picked_mask.mrc")
EOF
fi

train() {  # method batch opts...
  local method=$1 batch=$2
  shift 2
  local extra=()
  for o in "$@"; do extra+=(--opt "$o"); done
  /usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KB" -o "$method.time" \
    "$UNWEDGE" --threads "$THREADS" train --method "$method" --in data/tomo.mrc \
    --mask data/picked_mask.mrc --out "$method.uwm" --patch "$BOX" --batch "$batch" \
    --minutes "$MINUTES" --budget-clock cpu --val-fraction 0 --val-every 0 --seed 0 \
    --no-progress --overwrite "${extra[@]}" > "$method.log" 2>&1
}
# shellcheck disable=SC2086
if [[ "${TRAIN:-1}" != 1 ]]; then
  echo "TRAIN=${TRAIN:-1}: reusing mae.uwm and contrastive.uwm in $OUT"
elif [[ "$PARALLEL" == 1 ]]; then
  train mae "$MAE_BATCH" $MAE_OPTS &
  train contrastive "$CON_BATCH" $CON_OPTS &
  wait %1 && wait %2
else
  train mae "$MAE_BATCH" $MAE_OPTS
  train contrastive "$CON_BATCH" $CON_OPTS
fi

for m in mae contrastive; do
  pool=mean
  [[ $m == mae ]] && pool=$MAE_POOL
  "$UNWEDGE" --threads "$THREADS" embed --model "$m.uwm" --in data/tomo.mrc \
    --coords data/particles.csv --out "$m.emb.csv" --box "$EMBED_BOX" --pool "$pool" \
    --flips "$FLIPS" --overwrite 2>&1 | tee "$m.embed.log"
  "$UNWEDGE" --threads "$THREADS" eval-embed --emb "$m.emb.csv" --labels data/particles.csv \
    --k "$K" --folds "$FOLDS" --json "$m.eval.json" --svg "$m.pca.svg" --overwrite | tee "$m.eval.txt"
done
# The raw baseline in the box the embeddings used (embed's log says which when it chose).
if [[ "$EMBED_BOX" == 0 ]]; then
  EMBED_BOX=$(sed -n 's/.*(mae model, box \([0-9]*\),.*/\1/p' mae.embed.log | tail -1)
fi
"$UNWEDGE" --threads "$THREADS" eval-embed --labels data/particles.csv --raw data/tomo.mrc \
  --coords data/particles.csv --box "$EMBED_BOX" --k "$K" --folds "$FOLDS" --json raw.eval.json \
  --overwrite | tee raw.eval.txt

FLIPS=$FLIPS MAE_POOL=$MAE_POOL PRESET=$PRESET MINUTES=$MINUTES THREADS=$THREADS BOX=$BOX EMBED_BOX=$EMBED_BOX MAE_OPTS="$MAE_OPTS" \
  CON_OPTS="$CON_OPTS" MAE_BATCH=$MAE_BATCH CON_BATCH=$CON_BATCH RESULT=$RESULT "$PY" - <<'EOF'
import json, os, re
env = os.environ
def steps(log):
    s = re.findall(r"(\d+) steps in", open(log).read())
    return int(s[-1]) if s else None
meta = json.load(open("data/meta.json"))
raw = json.load(open("raw.eval.json"))
out = {"bench": "embed", "preset": env["PRESET"], "cpu_minutes_per_method": float(env["MINUTES"]),
       "threads": int(env["THREADS"]), "box": int(env["BOX"]), "embed_box": int(env["EMBED_BOX"]), "mae_pool": env["MAE_POOL"], "flips": env["FLIPS"], "k": raw["k"], "folds": raw["folds"],
       "particles": raw["raw_voxels"]["n"], "classes": len(raw["classes"]),
       "chance_majority": raw["chance"], "simulation": {k: meta.get(k) for k in ("seed", "cc_tomo_gt") if k in meta},
       "raw_voxels": raw["raw_voxels"], "methods": {}}
for m, batch, opts in (("mae", env["MAE_BATCH"], env["MAE_OPTS"]), ("contrastive", env["CON_BATCH"], env["CON_OPTS"])):
    e = json.load(open(f"{m}.eval.json"))["embedding"]
    e.update({"batch": int(batch), "opts": opts.split(), "steps": steps(f"{m}.log"),
              "time": open(f"{m}.time").read().strip(),
              "knn_gain_over_raw": e["knn_accuracy"] - raw["raw_voxels"]["knn_accuracy"]})
    out["methods"][m] = e
tmp = env["RESULT"] + ".tmp"
json.dump(out, open(tmp, "w"), indent=2)
os.replace(tmp, env["RESULT"])
print(json.dumps({m: round(v["knn_accuracy"], 3) for m, v in out["methods"].items()} |
                 {"raw": round(raw["raw_voxels"]["knn_accuracy"], 3)}))
EOF
