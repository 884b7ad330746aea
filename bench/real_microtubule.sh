#!/usr/bin/env bash
# Real-data check of the wedge methods (issue 6), without ground truth: the two real microtubule
# sub-tomograms in ../shared/data/real/ (filaments along Y, missing wedge about Y) are restored by
# each given model and by isonet trained on the volume itself; `unwedge ring` measures how round
# the microtubule's cross-section is (Z/X extent ratio; the wedge smears it along Z) and the power
# in the missing-wedge band, before and after. Per volume: restored MRCs, ring.json, montage.png,
# report.json and report.html; over both: OUT/real_microtubule.json and a table on stdout.
#
#   bash bench/real_microtubule.sh MODEL.uwm...      (no models: only isonet on each volume)
#
# Environment (defaults in brackets): UNWEDGE [build/unwedge], OUT [real-microtubule],
# DATA [<repo>/../shared/data/real], VOLUMES [microtubule_13pf microtubule_14pf],
# MINUTES [5] CPU minutes of isonet training on each real volume (--budget-clock cpu),
# STEPS [] a step budget instead of MINUTES (for tests), SKIP_ISONET [0],
# PATCH [32] (the 13pf volume is 36 voxels deep), BATCH [4], THREADS [1],
# TILT_MIN [-60], TILT_MAX [60], ISONET_OPTS [] (extra train options), OVERWRITE [0],
# SELF_METHODS [] methods that train on halves or on one tomogram (e.g. "cryogen-ot ei") trained
# on each real volume itself with --in (these volumes have no halves: their one-tomogram options,
# docs/wedge-methods.md "Single tomograms"; nothing is denoised, the proxy term fills the wedge),
# with the same budget and patch; SELF_OPTS [] extra train options for them (e.g. "--seed 1").
#
# Models trained on half tomograms (n2n, ddw, cryogen-*) are applied to the single real volume:
# `unwedge restore` warns and proceeds (a full tomogram is less noisy than a half, so their
# denoising is milder than in training); the report notes it. Models trained at another voxel
# size (the `standard` preset is 10 A; these volumes are 10.52 A) are applied as they are.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
UNWEDGE=${UNWEDGE:-$SRC/build/unwedge}
OUT=${OUT:-real-microtubule}
DATA=${DATA:-$SRC/../shared/data/real}
VOLUMES=${VOLUMES:-microtubule_13pf microtubule_14pf}
MINUTES=${MINUTES:-5}
STEPS=${STEPS:-}
SKIP_ISONET=${SKIP_ISONET:-0}
PATCH=${PATCH:-32}
BATCH=${BATCH:-4}
THREADS=${THREADS:-1}
TILT_MIN=${TILT_MIN:--60}
TILT_MAX=${TILT_MAX:-60}
ISONET_OPTS=${ISONET_OPTS:-}
OVERWRITE=${OVERWRITE:-0}
SELF_METHODS=${SELF_METHODS:-}
SELF_OPTS=${SELF_OPTS:-}
PY=/usr/bin/python3

die() { echo "real_microtubule.sh: $*" >&2; exit 1; }
[[ -x $UNWEDGE ]] || die "UNWEDGE=$UNWEDGE is not an executable"
UNWEDGE=$(realpath "$UNWEDGE")
MODELS=()
for m in "$@"; do
  [[ -f $m ]] || die "model $m does not exist"
  MODELS+=("$(realpath "$m")")
done
if [[ -d $OUT && -n $(ls -A "$OUT") && $OVERWRITE != 1 ]]; then
  die "OUT=$OUT exists and is not empty (OVERWRITE=1 to replace its files)"
fi
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
U=("$UNWEDGE" --threads "$THREADS")
if [[ -n $STEPS ]]; then BUDGET=(--steps "$STEPS"); BUDGET_TEXT="$STEPS steps"
else BUDGET=(--minutes "$MINUTES" --budget-clock cpu); BUDGET_TEXT="$MINUTES CPU minutes"; fi

for V in $VOLUMES; do
  IN=$DATA/$V.mrc
  [[ -f $IN ]] || die "volume $IN does not exist (DATA=$DATA)"
  D=$OUT/$V
  mkdir -p "$D"
  FILES=("$IN")
  LABELS=(input)
  : >"$D/methods.tsv"  # label, restored, model, note
  for M in "${MODELS[@]}"; do
    NAME=$(basename "$M" .uwm)
    if ! "${U[@]}" restore --model "$M" --in "$IN" --out "$D/$NAME.mrc" --overwrite --no-progress \
         >"$D/$NAME.restore.log" 2>&1; then
      echo "skip $NAME on $V: restore failed: $(tail -1 "$D/$NAME.restore.log")" >&2
      continue
    fi
    NOTE=""
    if grep -q "trained on half tomograms" "$D/$NAME.restore.log"; then
      NOTE="trained on half tomograms; applied to the full real volume"
    fi
    FILES+=("$D/$NAME.mrc")
    LABELS+=("$NAME")
    printf '%s\t%s\t%s\t%s\n' "$NAME" "$D/$NAME.mrc" "$M" "$NOTE" >>"$D/methods.tsv"
  done
  if [[ $SKIP_ISONET != 1 ]]; then
    NAME=isonet-on-$V
    echo "training isonet on $V ($BUDGET_TEXT, patch $PATCH)" >&2
    "${U[@]}" train --method isonet --in "$IN" --out "$D/$NAME.uwm" "${BUDGET[@]}" \
      --patch "$PATCH" --batch "$BATCH" --tilt-range "$TILT_MIN" "$TILT_MAX" --no-progress \
      --overwrite $ISONET_OPTS >"$D/$NAME.train.log" 2>&1 ||
      die "isonet training on $V failed: $(tail -1 "$D/$NAME.train.log")"
    "${U[@]}" restore --model "$D/$NAME.uwm" --in "$IN" --out "$D/$NAME.mrc" --overwrite \
      --no-progress >"$D/$NAME.restore.log" 2>&1 ||
      die "restoring $V with $NAME failed: $(tail -1 "$D/$NAME.restore.log")"
    FILES+=("$D/$NAME.mrc")
    LABELS+=("$NAME")
    printf '%s\t%s\t%s\t%s\n' "$NAME" "$D/$NAME.mrc" "$D/$NAME.uwm" \
      "isonet trained on this volume alone for $BUDGET_TEXT" >>"$D/methods.tsv"
  fi
  for SM in $SELF_METHODS; do
    NAME=$SM-on-$V
    echo "training $SM on $V alone ($BUDGET_TEXT, patch $PATCH)" >&2
    "${U[@]}" train --method "$SM" --in "$IN" --out "$D/$NAME.uwm" "${BUDGET[@]}" \
      --patch "$PATCH" --batch "$BATCH" --tilt-range "$TILT_MIN" "$TILT_MAX" --no-progress \
      --overwrite $SELF_OPTS >"$D/$NAME.train.log" 2>&1 ||
      die "$SM training on $V failed: $(tail -1 "$D/$NAME.train.log")"
    "${U[@]}" restore --model "$D/$NAME.uwm" --in "$IN" --out "$D/$NAME.mrc" \
      --overwrite --no-progress >"$D/$NAME.restore.log" 2>&1 ||
      die "restoring $V with $NAME failed: $(tail -1 "$D/$NAME.restore.log")"
    FILES+=("$D/$NAME.mrc")
    LABELS+=("$NAME")
    printf '%s\t%s\t%s\t%s\n' "$NAME" "$D/$NAME.mrc" "$D/$NAME.uwm" \
      "$SM trained on this volume alone (--in) for $BUDGET_TEXT" >>"$D/methods.tsv"
  done
  RING=("${U[@]}" ring --tilt-range "$TILT_MIN" "$TILT_MAX" --json "$D/ring.json" \
        --png "$D/montage.png" --overwrite)
  for i in "${!FILES[@]}"; do RING+=(--in "${FILES[$i]}" --label "${LABELS[$i]}"); done
  "${RING[@]}" | tee "$D/ring.txt"
done

# Report JSON per volume (the montage and a summary as sections) and the summary over volumes.
"$PY" - "$OUT" "$TILT_MIN" "$TILT_MAX" $VOLUMES <<'EOF'
import json, os, sys
out, tmin, tmax, vols = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
summary = {"tilt_range_deg": [tmin, tmax], "volumes": {},
           "measure": "ring_z_over_x: outer half-maximum extent of the ring along Z over X in "
                      "the section averaged along Y (unwedge ring); 1 = round. "
                      "wedge_power_fraction: power in the missing wedge / total (no DC)."}
for v in vols:
    d = os.path.join(out, v)
    ring = {r["label"]: r for r in json.load(open(os.path.join(d, "ring.json")))["volumes"]}
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(d, "methods.tsv")) if l.strip()]
    def info(r, note=""):
        i = {"ring_z_over_x": r["ratio_z_over_x"], "extent_z_vox": r["extent_z_vox"],
             "extent_x_vox": r["extent_x_vox"], "moment_z_over_x": r["moment_ratio_z_over_x"],
             "wedge_power_pct": None if r["wedge_power_fraction"] is None
             else 100 * r["wedge_power_fraction"]}
        if r["clipped_z"] or r["clipped_x"]:
            i["clipped"] = "z" if r["clipped_z"] else "x"
        if note:
            i["note"] = note
        return i
    inp = ring["input"]
    methods = [dict(name="input (not restored)", restored=inp["file"], **info(inp))]
    vs = {"input": info(inp), "methods": {}}
    for name, restored, model, note in rows:
        r = ring[name]
        m = dict(name=name, restored=restored, **info(r, note))
        log = model[:-4] + ".train.jsonl" if model.endswith(".uwm") else ""
        if log and os.path.exists(log):
            m["loss_log"] = log  # the training curves (and a method's loss components)
        methods.append(m)
        vs["methods"][name] = dict(info(r, note), model=model,
                                   ratio_change=r["ratio_z_over_x"] - inp["ratio_z_over_x"]
                                   if r["ratio_z_over_x"] is not None
                                   and inp["ratio_z_over_x"] is not None else None,
                                   wedge_power_gain=r["wedge_power_fraction"] /
                                   inp["wedge_power_fraction"]
                                   if r["wedge_power_fraction"] and inp["wedge_power_fraction"]
                                   else None)
    summary["volumes"][v] = vs
    order = ", ".join(["input"] + [r[0] for r in rows])
    lines = ["%s: Z/X %.3f, wedge power %.2f %%" % (k, ring[k]["ratio_z_over_x"] or float("nan"),
             100 * (ring[k]["wedge_power_fraction"] or float("nan"))) for k in ["input"] + [r[0] for r in rows]]
    report = {"title": "unwedge real-data check: " + v, "input": inp["file"],
              "tilt_range_deg": [tmin, tmax], "methods": methods,
              "sections": [
                  {"title": "XZ cross-sections (" + v + ")", "image": "montage.png",
                   "caption": "One row per volume, top to bottom: " + order + ". Left: the "
                   "section averaged along Y (the filament tracked); right: the central XZ "
                   "slice. Each panel on its own 0.5-99.5 % contrast. A round ring is the goal; "
                   "the missing wedge smears it along Z (vertical)."},
                  {"title": "Ring roundness and wedge-band power",
                   "caption": "; ".join(lines) + ". Z/X = outer half-maximum extent of the "
                   "ring along Z over X (unwedge ring); wedge power = power in the missing "
                   "wedge of the tilt range over the total, DC excluded."}]}
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
with open(os.path.join(out, "real_microtubule.json"), "w") as f:
    json.dump(summary, f, indent=1)
print("%-22s %-28s %8s %8s %8s %9s" % ("volume", "method", "Z/X", "extZ", "extX", "wedge %"))
for v, vs in summary["volumes"].items():
    for name, i in [("input", vs["input"])] + list(vs["methods"].items()):
        f = lambda x, p: ("%" + p) % x if x is not None else "-"
        print("%-22s %-28s %8s %8s %8s %9s" % (v, name, f(i["ring_z_over_x"], ".3f"),
              f(i["extent_z_vox"], ".1f"), f(i["extent_x_vox"], ".1f"), f(i["wedge_power_pct"], ".2f")))
EOF
for V in $VOLUMES; do
  "${U[@]}" report --json "$OUT/$V/report.json" --out "$OUT/$V/report.html" --overwrite
done
echo "wrote $OUT/real_microtubule.json and $OUT/<volume>/report.html" >&2
