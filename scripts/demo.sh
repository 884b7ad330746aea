#!/usr/bin/env bash
# `make demo`: simulate the `small` preset, train Noise2Noise on the CPU for a few minutes,
# restore, report CC and PSNR against the ground truth before and after, and write the HTML
# report (slices, Fourier planes, FSC and loss curves), and the masked-autoencoding demo
# (`unwedge demo-mask`: two small mae U-Nets trained on crops of a simulated specimen, shown on
# held-out structures: a particle-rich crop, a filament, a vesicle and a shipped protein map),
# whose interactive page demo_mask.html is written beside report.html.
# usage: scripts/demo.sh path/to/unwedge
# environment: DEMO_OUT (default demo-out), DEMO_MINUTES (training budget, default 4),
#              DEMO_THREADS (default 2), DEMO_PATCH (default 32),
#              DEMO_MASK_MINUTES (CPU minutes of each demo-mask model, default 2)
set -euo pipefail
BIN=${1:?usage: demo.sh path/to/unwedge}
OUT=${DEMO_OUT:-demo-out}
MINUTES=${DEMO_MINUTES:-4}
THREADS=${DEMO_THREADS:-2}
PATCH=${DEMO_PATCH:-32}
MASK_MINUTES=${DEMO_MASK_MINUTES:-2}
mkdir -p "$OUT"
start=$(date +%s)
say() { echo "== $*"; }

say "1/4 simulate (preset small) -> $OUT/data"
if [[ -f "$OUT/data/gt.mrc" && -f "$OUT/data/even.mrc" && -f "$OUT/data/odd.mrc" ]]; then
  echo "   (reusing $OUT/data)"
else
  "$BIN" --threads "$THREADS" simulate --preset small --out "$OUT/data"
fi
D="$OUT/data"

say "2/4 train n2n for $MINUTES min on the CPU -> $OUT/n2n.uwm"
"$BIN" --threads "$THREADS" train --method n2n --even "$D/even.mrc" --odd "$D/odd.mrc" \
  --out "$OUT/n2n.uwm" --minutes "$MINUTES" --patch "$PATCH" --batch 4 --device cpu \
  --seed 1 --overwrite

say "3/4 restore -> $OUT/restored.mrc"
"$BIN" --threads "$THREADS" restore --model "$OUT/n2n.uwm" --even "$D/even.mrc" \
  --odd "$D/odd.mrc" --out "$OUT/restored.mrc" --overwrite

say "4/4 evaluate against gt"
# The even/odd average ("before" for a method trained on halves), written with python3-mrcfile.
avg="$OUT/even_odd_avg.mrc"
if /usr/bin/python3 - "$D/even.mrc" "$D/odd.mrc" "$avg" <<'PY' 2>/dev/null; then :; else avg=""; fi
import sys, mrcfile, numpy as np
with mrcfile.open(sys.argv[1], permissive=True) as e, mrcfile.open(sys.argv[2], permissive=True) as o:
    a = ((e.data.astype(np.float32) + o.data.astype(np.float32)) / 2).astype(np.float32)
    vs = e.voxel_size
with mrcfile.new(sys.argv[3], overwrite=True) as m:
    m.set_data(a)
    m.voxel_size = vs
PY
[[ -z "$avg" ]] && echo "   (python3-mrcfile missing: even/odd average not evaluated)"
names=(tomo restored)
files=("$D/tomo.mrc" "$OUT/restored.mrc")
if [[ -n "$avg" ]]; then names=(tomo even_odd_avg restored); files=("$D/tomo.mrc" "$avg" "$OUT/restored.mrc"); fi
for i in "${!names[@]}"; do
  "$BIN" -q eval --in "${files[$i]}" --truth "$D/gt.mrc" --json "$OUT/eval_${names[$i]}.json" \
    --overwrite > /dev/null
done
python3 - "$OUT" "$(( $(date +%s) - start ))" "${names[@]}" <<'PY'
import json, sys
out, seconds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {}
for n in names:
    m = json.load(open(f"{out}/eval_{n}.json"))["metrics"]
    rows[n] = {"cc": m["cc"], "psnr_db": m["psnr_db"]}
hist = [json.loads(l) for l in open(f"{out}/n2n.train.jsonl")]
result = {"preset": "small", "method": "n2n", "steps": hist[-1]["step"] if hist else 0,
          "final_loss": hist[-1]["loss"] if hist else None,
          "against_gt": rows, "cc_gain_over_tomo": rows["restored"]["cc"] - rows["tomo"]["cc"],
          "demo_seconds": seconds}
json.dump(result, open(f"{out}/demo.json", "w"), indent=1)
print(f"{'volume':<14}{'CC':>8}{'PSNR dB':>10}")
for n, r in rows.items():
    print(f"{n:<14}{r['cc']:>8.3f}{r['psnr_db']:>10.2f}")
print(f"n2n: {result['steps']} steps; CC gain over the tomogram {result['cc_gain_over_tomo']:+.3f}; "
      f"demo took {seconds} s; wrote {out}/demo.json")
PY

say "masking demo (mae U-Nets, $MASK_MINUTES CPU min per model) -> $OUT/demo_mask"
# Simulated ground truths: a training specimen (the small preset with another seed and more
# vesicles and filaments) and three held-out structures; the protein map is a shipped template.
MD="$OUT/demo_mask_data"
mkdir -p "$MD"
sim() {  # sim NAME ARGS...: simulate into $MD/NAME unless it is there
  local name=$1
  shift
  [[ -f "$MD/$name/gt.mrc" ]] && return 0
  "$BIN" -q --threads "$THREADS" simulate "$@" --out "$MD/$name" --overwrite > /dev/null
}
sim train --preset small --seed 21 --vesicles 8 --actin 4
sim particles --preset tiny --seed 101 --particles 40 --vesicles 0 --actin 0 \
  --microtubules 0 --gold 0
sim filament --preset tiny --seed 102 --particles 0 --vesicles 0 --actin 1 --microtubules 0 --gold 0
sim vesicle --preset tiny --seed 103 --particles 0 --vesicles 1 --vesicle-radius-min 100 \
  --vesicle-radius-max 140 --actin 0 --microtubules 0 --gold 0
MAP="$(cd "$(dirname "$0")/.." && pwd)/data/templates_10A/4v4r.mrc"
# The two models train in parallel, one thread each, each for MASK_MINUTES of its CPU time.
pids=()
for mode in patch wedge; do
  "$BIN" -q --threads 1 demo-mask --in "$MD/train/gt.mrc" --out "$OUT/demo_mask" \
    --minutes "$MASK_MINUTES" --train-only "$mode" --overwrite &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"$BIN" -q --threads 1 demo-mask --in "$MD/train/gt.mrc" --out "$OUT/demo_mask" \
  --model "$OUT/demo_mask/mae_patch.uwm" --wedge-model "$OUT/demo_mask/mae_wedge.uwm" \
  --view "particles=$MD/particles/gt.mrc" \
  --view "filament=$MD/filament/gt.mrc" --view "vesicle=$MD/vesicle/gt.mrc" \
  --map "ribosome 4v4r=$MAP" --overwrite
cp "$OUT/demo_mask/demo_mask.html" "$OUT/demo_mask.html.tmp" && mv "$OUT/demo_mask.html.tmp" "$OUT/demo_mask.html"

say "report -> $OUT/report.html"
cat > "$OUT/report.json" <<JSON
{
  "title": "unwedge demo: Noise2Noise on the simulated small preset",
  "gt": "data/gt.mrc",
  "input": "data/tomo.mrc",
  "tilt_range_deg": [-60, 60],
  "methods": [
    {"name": "n2n", "restored": "restored.mrc", "loss_log": "n2n.train.jsonl"}
  ],
  "sections": [
    {"title": "Masked autoencoding: hidden patches", "image": "demo_mask/mask_patches.png",
     "caption": "mae (a small U-Net trained on crops of another simulated specimen) on a particle-rich 32^3 crop; rows: structure, then masked input | reconstruction for 15, 30, 50, 75 and 90 % of the 4^3 patches hidden (XY | XZ slices). All structures, with a slider: demo_mask.html."},
    {"title": "Reconstruction error vs mask ratio", "image": "demo_mask/error_vs_ratio.svg",
     "caption": "MSE on the hidden patches over the variance, per structure: more hidden, less context, blurrier."},
    {"title": "Masked autoencoding: hidden Fourier wedge", "image": "demo_mask/mask_wedge.png",
     "caption": "mae (mask_mode=wedge); rows: structure, then wedged input | reconstruction for hidden double wedges of 30, 45, 60 and 75 degrees about kz."},
    {"title": "Wedge-band CC vs hidden wedge width", "image": "demo_mask/error_vs_wedge.svg",
     "caption": "Correlation with the structure inside the hidden wedge, per structure (the wedged input has no power there)."}
  ]
}
JSON
"$BIN" -q report --json "$OUT/report.json" --out "$OUT/report.html" --overwrite
echo "report: $(cd "$OUT" && pwd)/report.html"
echo "masking demo page: $(cd "$OUT" && pwd)/demo_mask.html"
