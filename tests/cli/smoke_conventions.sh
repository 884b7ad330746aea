# Smoke tests of the wedge orientation of other packages' tomograms (sourced by smoke.sh: $BIN,
# $WORK, check; docs/projects.md "Wedge orientation"). One specimen simulated at the asymmetric
# range -50..65 (a lamella) is written the way each convention would store it, the tilt range
# always given as the acquisition's -50..65; `--wedge-sign auto` must pick, for each, the sign
# whose missing band is the data's (its power there well under half of the other sign's), and
# `train` must do the same by default.
#   unwedge / IMOD `trimvol -yz`: the reconstruction as unwedge makes it (the anchor);
#   IMOD `trimvol -rx`: turned by -90 degrees about X instead of swapping Y and Z: Z reversed
#     relative to -yz (y' = z, z' = -y);
#   Warp/WarpTools: the same specimen reconstructed with the tilt angles negated (ts_import
#     inverts IMOD's angles unless --dont_invert);
#   AreTomo3: Warp's volume mirrored along X (tomograms of the two from the same angles are
#     mirror images), stored as NAME_EVN_Vol.mrc / NAME_ODD_Vol.mrc with NAME.tlt beside them.
# What each package writes in absolute terms is not settled by the sources (docs/projects.md):
# the tests check that the data-driven choice follows each of these transformations.
CV="$WORK/conventions"
mkdir -p "$CV"
if ! /usr/bin/python3 -c "import mrcfile" 2>/dev/null; then
  echo "SKIP conventions: python3-mrcfile missing"
  return 0
fi
cv_ok=1
"$BIN" -q simulate --preset tiny --seed 11 --tilt-min -50 --tilt-max 65 --tilt-step 5 \
  --out "$CV/sim" > /dev/null 2>&1 || cv_ok=0
"$BIN" -q simulate --preset tiny --seed 11 --tilt-min -65 --tilt-max 50 --tilt-step 5 \
  --out "$CV/sim_negated" > /dev/null 2>&1 || cv_ok=0
if [[ $cv_ok -eq 1 ]]; then
  /usr/bin/python3 - "$CV" <<'EOF'
import sys, mrcfile, numpy as np
cv = sys.argv[1]
def rd(p): return mrcfile.read(p).astype(np.float32)
def wr(p, d): mrcfile.write(p, np.ascontiguousarray(d), voxel_size=10, overwrite=True)
a = rd(cv + '/sim/tomo.mrc')                       # [Z, Y, X], unwedge's convention
raw = a.transpose(1, 0, 2)                          # IMOD tilt output: thickness along file Y
wr(cv + '/imod_yz.mrc', raw.transpose(1, 0, 2))     # trimvol -yz: swap Y and Z
wr(cv + '/imod_rx.mrc', raw.transpose(1, 0, 2)[::-1])  # trimvol -rx: y' = z, z' = -y
wr(cv + '/warp.mrc', rd(cv + '/sim_negated/tomo.mrc'))
for half, name in (('even', 'EVN'), ('odd', 'ODD')):
    wr(cv + '/TS_01_%s_Vol.mrc' % name, rd(cv + '/sim_negated/%s.mrc' % half)[:, :, ::-1])
EOF
  awk '{ print }' "$CV/sim/tilt_series.tlt" > "$CV/TS_01.tlt"   # the acquisition's -50..65
  # ring --wedge-sign auto: the decision line; then the wedge power with each explicit sign.
  power() { "$BIN" ring --in "$1" --tilt-range -50 65 --wedge-sign "$2" 2>/dev/null \
              | sed -n 's/.*wedge power \([0-9.]*\) %.*/\1/p'; }
  for spec in "imod_yz +1 -1" "imod_rx -1 +1" "warp -1 +1"; do
    read -r name want other <<<"$spec"
    check "conventions-auto-$name" 0 "wedge sign ${want/+/[+]} from the data" -- \
      "$BIN" ring --in "$CV/$name.mrc" --tilt-range -50 65 --wedge-sign auto
    chosen=$(power "$CV/$name.mrc" "$want"); rest=$(power "$CV/$name.mrc" "$other")
    echo "$name: missing-band power % with $want $chosen, with $other $rest"
    check "conventions-band-$name" 0 "" -- awk -v a="$chosen" -v b="$rest" \
      'BEGIN { exit !(a != "" && b != "" && 2 * a < b) }'
  done
  # AreTomo3 halves: train decides the sign itself (default auto), per tomogram, from the
  # halves' mean, with the range from TS_01.tlt beside TS_01_EVN_Vol.mrc.
  check conventions-train-aretomo3 0 "TS_01_EVN_Vol.mrc.*wedge sign \+1 from the data" -- \
    "$BIN" train --method n2n --even "$CV/TS_01_EVN_Vol.mrc" --odd "$CV/TS_01_ODD_Vol.mrc" \
    --out "$CV/are.uwm" --steps 1 --opt depth=1 --opt base_channels=4 --opt convs_per_level=1 \
    --patch 16 --batch 2 --no-progress --threads 1
  evn=$(power "$CV/TS_01_EVN_Vol.mrc" +1); evn_m=$(power "$CV/TS_01_EVN_Vol.mrc" -1)
  echo "aretomo3 TS_01_EVN_Vol: missing-band power % with +1 $evn, with -1 $evn_m"
  check conventions-band-aretomo3 0 "" -- awk -v a="$evn" -v b="$evn_m" \
    'BEGIN { exit !(a != "" && b != "" && 2 * a < b) }'
  # The Warp volume trained with auto is flipped; an explicit sign overrides (no decision line).
  check conventions-train-warp 0 "warp.mrc.*wedge sign -1 from the data" -- \
    "$BIN" train --method n2v --in "$CV/warp.mrc" --tilt-range -50 65 --out "$CV/warp.uwm" \
    --steps 1 --opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 16 --batch 2 \
    --no-progress --threads 1
  for sign in +1 -1; do
    check "conventions-train-explicit$sign" 0 "^overridden$" -- bash -c "out=\$('$BIN' train \
      --method n2v --in '$CV/warp.mrc' --tilt-range -50 65 --wedge-sign $sign \
      --out '$CV/warp$sign.uwm' --steps 1 --opt depth=1 --opt base_channels=4 \
      --opt convs_per_level=1 --patch 16 --batch 2 --no-progress --threads 1 2>&1) && \
      grep -q wrote <<<\"\$out\" && ! grep -q 'from the data' <<<\"\$out\" && echo overridden"
  done
  # A symmetric range: the sign does not matter, nothing is decided.
  check conventions-symmetric 0 "symmetric: the wedge sign does not matter" -- \
    "$BIN" ring --in "$CV/warp.mrc" --tilt-range -60 60 --wedge-sign auto
  check conventions-bad-sign 1 "--wedge-sign: 'up' is not auto, \+1 or -1" -- \
    "$BIN" ring --in "$CV/warp.mrc" --tilt-range -50 65 --wedge-sign up
else
  echo "FAIL conventions: simulate failed"
  fails=$((fails + 1))
fi
