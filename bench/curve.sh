#!/usr/bin/env bash
# Time-to-quality curves (issue 20): CC, wedge-band CC and FSC 0.143 against the ground truth at
# minute marks along one training run, for n2n, ddw, ei and cryogen-ot at two network widths.
# Each run trains on one thread for the largest mark of CPU time (--budget-clock cpu) and writes
# a snapshot of its model at every mark (`train --snapshots`); every snapshot is restored and
# scored by `unwedge eval --truth`. Two runs at a time (the 2-core machine). Defaults otherwise
# (patch auto, bf16 where the CPU has it).
#   bench/curve.sh [UNWEDGE] [OUT]
# environment: MARKS (CPU-minutes, default "1 2 4 8 16"),
#              RUNS (METHOD:CHANNELS[:BATCH] each, default the four methods at 16 and 32
#              channels and the default batch), SEED (simulation seed, default 1404),
#              JOBS (runs at a time, default 2)
# writes OUT/curve.json (one row per method, width and mark), OUT/curve.md (the table) and
# OUT/curve.svg (CC and wedge-band CC against CPU-minutes). A run already scored at every mark is
# not run again (a second call with more RUNS adds to the same table).
set -euo pipefail
UNWEDGE=$(realpath "${1:-build/unwedge}")
OUT=${2:-bench_curve}
MARKS=${MARKS:-1 2 4 8 16}
RUNS=${RUNS:-n2n:16 n2n:32 ddw:16 ddw:32 ei:16 ei:32 cryogen-ot:16 cryogen-ot:32}
SEED=${SEED:-1404}
JOBS=${JOBS:-2}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
D="$OUT/data"
if [[ ! -f "$D/gt.mrc" ]]; then
  "$UNWEDGE" --threads 1 simulate --preset small --seed "$SEED" --out "$D" --overwrite > /dev/null
fi
last=$(tr ' ' '\n' <<<"$MARKS" | sort -g | tail -1)
marks_csv=$(tr ' ' ',' <<<"$MARKS")

# One run: train with snapshots, then restore and score every snapshot.
one() {
  local method width batch dir
  IFS=: read -r method width batch <<<"$1"
  dir="$OUT/$(tr ':' '_' <<<"$1")"
  local have=1
  for m in $MARKS; do [[ -f "$dir/eval$m.json" ]] || have=0; done
  if (( have )); then echo "$1: scored already (rm -r $dir to redo)"; return; fi
  mkdir -p "$dir"
  "$UNWEDGE" --threads 1 train --method "$method" --even "$D/even.mrc" --odd "$D/odd.mrc" \
    --out "$dir/model.uwm" --minutes "$last" --budget-clock cpu --snapshots "$marks_csv" \
    --opt base_channels="$width" ${batch:+--batch $batch} --tilt-range -60 60 --no-progress \
    --overwrite > "$dir/train.log" 2>&1
  for m in $MARKS; do
    "$UNWEDGE" --threads 1 restore --model "$dir/model.at${m}min.uwm" --even "$D/even.mrc" \
      --odd "$D/odd.mrc" --out "$dir/r$m.mrc" --no-progress --overwrite > /dev/null 2>&1
    "$UNWEDGE" -q eval --in "$dir/r$m.mrc" --truth "$D/gt.mrc" --tilt-range -60 60 \
      --json "$dir/eval$m.json" --overwrite > /dev/null
    rm -f "$dir/r$m.mrc"
  done
  echo "$1 done"
}
export -f one
export UNWEDGE OUT D MARKS last marks_csv
tr ' ' '\n' <<<"$RUNS" | xargs -P "$JOBS" -I{} bash -c 'one {}'

"$UNWEDGE" -q eval --in "$D/tomo.mrc" --truth "$D/gt.mrc" --tilt-range -60 60 \
  --json "$OUT/eval_tomo.json" --overwrite > /dev/null
python3 - "$OUT" "$MARKS" "$RUNS" <<'PY'
import json, math, re, sys
out, marks, runs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
tomo = json.load(open(f"{out}/eval_tomo.json"))["metrics"]
rows = []
for run in runs:
    m, w, *b = run.split(":")
    d = f"{out}/{run.replace(':', '_')}"
    log = open(f"{d}/train.log").read()
    batch = re.search(r"batch (\d+),", log).group(1)
    for t in marks:
        e = json.load(open(f"{d}/eval{t}.json"))["metrics"]
        hit = re.search(rf"snapshot at {t} min \((\d+) steps\)", log)
        rows.append({"run": run, "method": m, "channels": int(w), "batch": int(batch),
                     "cpu_minutes": float(t), "steps": int(hit.group(1)) if hit else None,
                     "cc": e["cc"], "cc_wedge_band": e["cc_wedge_band"],
                     "fsc_0.143_A": e.get("fsc_0.143_A")})
json.dump({"tomogram": {"cc": tomo["cc"], "cc_wedge_band": tomo["cc_wedge_band"]}, "rows": rows},
          open(f"{out}/curve.json", "w"), indent=1)
with open(f"{out}/curve.md", "w") as f:
    f.write("| method | channels | batch | " + " | ".join(f"{t} min" for t in marks) + " |\n")
    f.write("|---|---|---|" + "---|" * len(marks) + "\n")
    for run in runs:
        r = [x for x in rows if x["run"] == run]
        f.write(f"| {r[0]['method']} | {r[0]['channels']} | {r[0]['batch']} | " + " | ".join(
            f"{x['cc']:.3f} / {x['cc_wedge_band']:.3f} ({x['steps']})" for x in r) + " |\n")
    f.write(f"\nCC / wedge-band CC against the ground truth (steps); the tomogram: "
            f"{tomo['cc']:.3f} / {tomo['cc_wedge_band']:.3f}.\n")
# SVG: two panels (CC, wedge-band CC) against log2 CPU-minutes.
W, H, pad = 420, 300, 48  # the legend sits right of the second panel
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
xs = [math.log2(float(t)) for t in marks]
x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W + 130}" height="{H + 40}" font-family="sans-serif" font-size="11">']
for p, key in enumerate(["cc", "cc_wedge_band"]):
    vals = [x[key] for x in rows] + [tomo[key]]
    y0, y1 = min(vals) - 0.02, max(vals) + 0.02
    X = lambda v: p * W + pad + (v - x0) / (x1 - x0) * (W - 2 * pad)
    Y = lambda v: H - pad + 10 - (v - y0) / (y1 - y0) * (H - 2 * pad)
    svg.append(f'<text x="{p * W + W / 2}" y="16" text-anchor="middle">{"CC" if key == "cc" else "wedge-band CC"} vs CPU-minutes (one thread)</text>')
    svg.append(f'<line x1="{X(x0)}" y1="{Y(y0)}" x2="{X(x1)}" y2="{Y(y0)}" stroke="black"/><line x1="{X(x0)}" y1="{Y(y0)}" x2="{X(x0)}" y2="{Y(y1)}" stroke="black"/>')
    for t, xv in zip(marks, xs):
        svg.append(f'<text x="{X(xv)}" y="{Y(y0) + 14}" text-anchor="middle">{t}</text>')
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        svg.append(f'<text x="{X(x0) - 4}" y="{Y(v) + 4}" text-anchor="end">{v:.2f}</text>')
    svg.append(f'<line x1="{X(x0)}" y1="{Y(tomo[key])}" x2="{X(x1)}" y2="{Y(tomo[key])}" stroke="gray" stroke-dasharray="4 3"/>')
    methods = list(dict.fromkeys(x["method"] for x in rows))
    for k, run in enumerate(runs):
        r = [x for x in rows if x["run"] == run]
        c = colors[methods.index(r[0]["method"]) % len(colors)]
        dash = "" if r[0]["channels"] == 16 and r[0]["batch"] == 4 else \
            (' stroke-dasharray="6 3"' if r[0]["batch"] == 4 else ' stroke-dasharray="2 2"')
        pts = " ".join(f"{X(math.log2(x['cpu_minutes'])):.1f},{Y(x[key]):.1f}" for x in r)
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="1.8"{dash}/>')
        if p == 1:
            ly = 30 + 13 * k
            svg.append(f'<line x1="{X(x1) + 4}" y1="{ly - 4}" x2="{X(x1) + 24}" y2="{ly - 4}" stroke="{c}" stroke-width="1.8"{dash}/>')
            svg.append(f'<text x="{X(x1) + 28}" y="{ly}" fill="{c}">{r[0]["method"]} {r[0]["channels"]}ch b{r[0]["batch"]}</text>')
            if k == len(runs) - 1:
                svg.append(f'<line x1="{X(x1) + 4}" y1="{ly + 9}" x2="{X(x1) + 24}" y2="{ly + 9}" stroke="gray" stroke-dasharray="4 3"/>')
                svg.append(f'<text x="{X(x1) + 28}" y="{ly + 13}" fill="gray">the tomogram</text>')
svg.append("</svg>")
open(f"{out}/curve.svg", "w").write("\n".join(svg))
print(open(f"{out}/curve.md").read())
PY
