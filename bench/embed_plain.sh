#!/usr/bin/env bash
# The k-NN check of the representations *as a user runs them* (issue 18): on each seed of the
# `standard` preset, the plain commands with every default,
#
#   unwedge train --method M --in tomo.mrc --out M.uwm --minutes 5 --budget-clock cpu
#   unwedge embed --model M.uwm --in tomo.mrc --coords particles.csv --out M.emb.csv
#
# for M = mae and contrastive (trained side by side, one thread each), scored by 5-fold k-NN
# (k = 5) and a linear probe against the simulator's classes, with the raw-voxel baseline (PCA)
# in 16³ and 32³ boxes. A step whose output exists is skipped (rerun into the same OUT).
#
#   bash bench/embed_plain.sh OUT SEED...        (e.g. bench/embed_plain.sh plain 11 12 13)
#
# Environment: UNWEDGE [build/unwedge], MINUTES [5], RESULT [OUT/embed_plain.json].
set -euo pipefail
OUT=${1:?usage: embed_plain.sh OUT SEED...}
shift
[[ $# -ge 1 ]] || { echo "embed_plain.sh: give at least one seed" >&2; exit 2; }
UNWEDGE=$(realpath "${UNWEDGE:-build/unwedge}")
MINUTES=${MINUTES:-5}
RESULT=$(realpath -m "${RESULT:-$OUT/embed_plain.json}")
PY=/usr/bin/python3
mkdir -p "$OUT"
cd "$OUT"
for s in "$@"; do
  d=s$s
  mkdir -p "$d"
  [[ -f $d/data/particles.csv ]] ||
    "$UNWEDGE" --threads 1 simulate --preset standard --seed "$s" --out "$d/data" > "$d/simulate.log" 2>&1
  for m in mae contrastive; do
    [[ -f $d/$m.uwm ]] || "$UNWEDGE" --threads 1 train --method "$m" --in "$d/data/tomo.mrc" \
      --out "$d/$m.uwm" --minutes "$MINUTES" --budget-clock cpu --no-progress > "$d/$m.log" 2>&1 &
  done
  wait
  for m in mae contrastive; do
    [[ -f $d/$m.emb.csv ]] || "$UNWEDGE" --threads 1 embed --model "$d/$m.uwm" \
      --in "$d/data/tomo.mrc" --coords "$d/data/particles.csv" --out "$d/$m.emb.csv" \
      > "$d/$m.embed.log" 2>&1
    [[ -f $d/$m.eval.json ]] || "$UNWEDGE" --threads 1 eval-embed --emb "$d/$m.emb.csv" \
      --labels "$d/data/particles.csv" --k 5 --folds 5 --json "$d/$m.eval.json" > /dev/null
  done
  for b in 16 32; do
    [[ -f $d/raw$b.eval.json ]] || "$UNWEDGE" --threads 1 eval-embed \
      --labels "$d/data/particles.csv" --raw "$d/data/tomo.mrc" --coords "$d/data/particles.csv" \
      --box "$b" --k 5 --folds 5 --json "$d/raw$b.eval.json" > /dev/null
  done
done

RESULT=$RESULT MINUTES=$MINUTES "$PY" - "$@" <<'PYEOF'
import json, os, re, sys
out = {"bench": "embed_plain", "preset": "standard", "cpu_minutes_per_method": float(os.environ["MINUTES"]),
       "commands": ["unwedge train --method M --in tomo.mrc --out M.uwm --minutes 5 --budget-clock cpu",
                    "unwedge embed --model M.uwm --in tomo.mrc --coords particles.csv --out M.emb.csv"],
       "k": 5, "folds": 5, "seeds": {}}
for s in sys.argv[1:]:
    d = f"s{s}"
    row = {}
    for b in (16, 32):
        row[f"raw_box{b}"] = json.load(open(f"{d}/raw{b}.eval.json"))["raw_voxels"]
    best_raw = max(row["raw_box16"]["knn_accuracy"], row["raw_box32"]["knn_accuracy"])
    for m in ("mae", "contrastive"):
        e = json.load(open(f"{d}/{m}.eval.json"))["embedding"]
        log, elog = open(f"{d}/{m}.log").read(), open(f"{d}/{m}.embed.log").read()
        e["steps"] = int(re.findall(r"(\d+) steps in", log)[-1])
        e["train_settings"] = re.findall(r"\] (patch \d+, batch \d+[^;]*)", log)[-1]
        e["embed_settings"] = re.findall(r"embeddings of dimension \d+ \(([^)]*)\)", elog)[-1]
        e["knn_gain_over_best_raw"] = e["knn_accuracy"] - best_raw
        row[m] = e
    out["seeds"][s] = row
    print(s, {m: round(row[m]["knn_accuracy"], 3) for m in ("mae", "contrastive")},
          "raw16", round(row["raw_box16"]["knn_accuracy"], 3), "raw32", round(row["raw_box32"]["knn_accuracy"], 3))
tmp = os.environ["RESULT"] + ".tmp"
json.dump(out, open(tmp, "w"), indent=2)
os.replace(tmp, os.environ["RESULT"])
PYEOF
