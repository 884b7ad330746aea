# Smoke tests of RELION 5 projects (--star; sourced by smoke.sh: $BIN, $WORK, check): three
# tomograms simulated at three tilt ranges, described in a tomograms table with tilt-series STARs,
# trained in one run, restored and sampled over the table; the written table read by gemmi; each
# restored tomogram keeps the missing band of its own tilt range.
PJ="$WORK/star_project"
mkdir -p "$PJ/tilt_series"
star_ok=1
for spec in "TS_01 -60 60" "TS_02 -40 40" "TS_03 -50 65"; do
  read -r name lo hi <<<"$spec"
  "$BIN" -q simulate --preset tiny --seed 5 --tilt-min "$lo" --tilt-max "$hi" --tilt-step 5 \
    --out "$PJ/$name" > /dev/null 2>&1 || star_ok=0
  {
    printf '# version 50001\n\ndata_%s\n\nloop_\n_rlnMicrographMovieName #1\n' "$name"
    printf '_rlnTomoNominalStageTiltAngle #2\n'
    awk -v n="$name" 'NF { printf "frames/%s_%03d.eer %s\n", n, NR, $1 }' "$PJ/$name/tilt_series.tlt"
  } > "$PJ/tilt_series/$name.star"
done
if [[ $star_ok -eq 1 ]]; then
  {
    printf '# version 50001\n\ndata_global\n\nloop_\n'
    printf '_rlnTomoName #1\n_rlnTomoTiltSeriesStarFile #2\n_rlnVoltage #3\n'
    printf '_rlnSphericalAberration #4\n_rlnAmplitudeContrast #5\n_rlnTomoHand #6\n'
    printf '_rlnTomoReconstructedTomogram #7\n_rlnTomoReconstructedTomogramHalf1 #8\n'
    printf '_rlnTomoReconstructedTomogramHalf2 #9\n'
    for n in TS_01 TS_02 TS_03; do
      printf '%s tilt_series/%s.star 300.0 2.7 0.1 -1 %s/tomo.mrc %s/even.mrc %s/odd.mrc\n' \
        "$n" "$n" "$n" "$n" "$n"
    done
  } > "$PJ/tomograms.star"
  TINY=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 16 --batch 2
        --no-progress --threads 1)
  # Paths in the table are relative: read from the current folder (RELION's project folder).
  check star-train 0 "wrote n2n.uwm" -- bash -c "set -o pipefail; cd '$PJ' && '$BIN' train \
    --method n2n --star tomograms.star --out n2n.uwm --steps 4 ${TINY[*]} 2>&1 | tee train.log"
  check star-train-three 0 "training n2n on 3 tomogram" -- cat "$PJ/train.log"
  check star-train-own-range 0 "TS_03: tilt range -50 .. 65 degrees from tilt_series/TS_03.star" \
    -- cat "$PJ/train.log"
  check star-train-resume 0 "wrote" -- bash -c "cd '$PJ' && '$BIN' train --method n2n \
    --star tomograms.star --out n2n.uwm --steps 6 --resume ${TINY[*]}"
  check star-restore 0 "wrote restored/tomograms.star \(3 tomograms" -- bash -c "cd '$PJ' && \
    '$BIN' restore --model n2n.uwm --star tomograms.star --out-dir restored --tile 32 \
    --overlap 8 --no-progress"
  check star-gemmi 0 "0 failure" -- bash -c "cd '$PJ' && /usr/bin/python3 \
    '$SRC/tests/interop/star_gemmi.py' restored/tomograms.star tomograms.star TS_01 TS_02 TS_03"
  # Two ranks share the table's tomograms out; the outputs equal one rank's.
  check star-restore-two-ranks 0 "2 ranks share 3 tomogram" -- bash -c "cd '$PJ' && \
    '$BIN' --threads 1 launch --nproc 2 -- restore --model n2n.uwm --star tomograms.star \
    --out-dir restored2 --tile 32 --overlap 8 --no-progress"
  if /usr/bin/python3 -c "import mrcfile" 2>/dev/null; then
    check star-restore-two-ranks-equal 0 "^max diff [0-9.e-]+ ok$" -- /usr/bin/python3 -c "
import mrcfile, numpy as np
d = max(float(np.abs(mrcfile.read('$PJ/restored/%s.mrc' % n) - mrcfile.read('$PJ/restored2/%s.mrc' % n)).max())
        for n in ('TS_01', 'TS_02', 'TS_03'))
print('max diff', d, 'ok' if d <= 1e-5 else 'too large')"
  fi
  check star-restore-exists 1 "exists" -- bash -c "cd '$PJ' && '$BIN' restore --model n2n.uwm \
    --star tomograms.star --out-dir restored --no-progress"
  check star-restore-with-in 1 "lists the tomograms" -- bash -c "cd '$PJ' && '$BIN' restore \
    --model n2n.uwm --star tomograms.star --out-dir r2 --in TS_01/tomo.mrc --no-progress"
  # Each restoration keeps its own measured band: the deep-wedge power of TS_03 (-50..65) is
  # lower measured with its own range than with the mirrored one (-65..50), and TS_01's (-60..60)
  # lower with its own range than with TS_02's narrower one (whose wedge TS_01 measured).
  deep() { "$BIN" ring --in "$1" --tilt-range "$2" "$3" "${@:4}" 2>/dev/null | sed -n 's/.*(deep \([0-9.]*\) %).*/\1/p'; }
  own3=$(deep "$PJ/restored/TS_03.mrc" -50 65); mir3=$(deep "$PJ/restored/TS_03.mrc" -65 50)
  own1=$(deep "$PJ/restored/TS_01.mrc" -60 60); nar1=$(deep "$PJ/restored/TS_01.mrc" -40 40)
  echo "deep-wedge power %: TS_03 own $own3 mirrored $mir3; TS_01 own $own1 narrow $nar1"
  check star-own-wedge-asymmetric 0 "" -- awk -v a="$own3" -v b="$mir3" \
    'BEGIN { exit !(a != "" && b != "" && 2 * a < b) }'
  check star-own-wedge-range 0 "" -- awk -v a="$own1" -v b="$nar1" \
    'BEGIN { exit !(a != "" && b != "" && 2 * a < b) }'
  # A tomogram stored mirrored along X (the opposite wedge orientation some packages write for
  # the same angles) matches its own range with --wedge-sign: deep-wedge power well under half
  # of that without the flag.
  if /usr/bin/python3 -c "import mrcfile" 2>/dev/null; then
    /usr/bin/python3 -c "
import mrcfile, numpy as np
d = mrcfile.read('$PJ/TS_03/tomo.mrc')
mrcfile.write('$PJ/mirrored.mrc', np.ascontiguousarray(d[:, :, ::-1]), voxel_size=10)"
    flip=$(deep "$PJ/mirrored.mrc" -50 65 --wedge-sign); plain=$(deep "$PJ/mirrored.mrc" -50 65)
    echo "mirrored TS_03 deep-wedge power %: --wedge-sign $flip, without $plain"
    check star-mirrored-wedge-sign 0 "" -- awk -v a="$flip" -v b="$plain" \
      'BEGIN { exit !(a != "" && b != "" && 2 * a < b) }'
  fi
  # One-line errors naming the file and the column.
  sed 's/_rlnTomoReconstructedTomogramHalf1/_rlnTomoReconstructedTomogramHalf_1/' \
    "$PJ/tomograms.star" > "$PJ/typo.star"
  check star-typo 1 "typo.star: unknown column _rlnTomoReconstructedTomogramHalf_1 in data_global \(did you mean _rlnTomoReconstructedTomogramHalf1\?\)" -- \
    bash -c "cd '$PJ' && '$BIN' train --method n2n --star typo.star --out t.uwm --steps 1"
  grep -v '_rlnTomoReconstructedTomogramHalf' "$PJ/tomograms.star" \
    | awk '/^TS_/ { print $1, $2, $3, $4, $5, $6, $7; next } { print }' > "$PJ/nohalves.star"
  check star-missing-halves 1 "nohalves.star: data_global has no column _rlnTomoReconstructedTomogramHalf1 \(the half tomograms method n2n trains on\)" -- \
    bash -c "cd '$PJ' && '$BIN' train --method n2n --star nohalves.star --out t.uwm --steps 1"
  check star-n2v-uses-tomogram 0 "wrote" -- bash -c "cd '$PJ' && '$BIN' train --method n2v \
    --star nohalves.star --out n2v.uwm --steps 1 ${TINY[*]}"
  # Posterior sampling over the table: each tomogram with its own range, means in the table.
  check star-train-mc 0 "wrote" -- bash -c "cd '$PJ' && '$BIN' train --method cryowgen-mc \
    --star tomograms.star --out mc.uwm --steps 2 --opt depth=1 --opt base_channels=4 \
    --opt convs_per_level=1 --patch 24 --batch 2 --no-progress --threads 1"
  check star-sample 0 "wrote post/tomograms.star \(3 posterior means" -- bash -c "cd '$PJ' && \
    '$BIN' sample --model mc.uwm --star tomograms.star --out-dir post --n 2 --tile 32 \
    --overlap 8 --no-report --no-progress --threads 1"
  check star-sample-own-range 0 "^\[-50\.0, 65\.0\]$" -- /usr/bin/python3 -c "
import json
def find(d):
    if isinstance(d, dict):
        for k, v in d.items():
            if k == 'tilt_range_deg': return v
            r = find(v)
            if r is not None: return r
print(find(json.load(open('$PJ/post/TS_03/summary.json'))))"
  check star-sample-gemmi 0 "0 failure" -- bash -c "cd '$PJ' && /usr/bin/python3 \
    '$SRC/tests/interop/star_gemmi.py' post/tomograms.star tomograms.star TS_01 TS_02 TS_03"
  check star-restore-needs-out-dir 1 "needs --out-dir" -- bash -c "cd '$PJ' && '$BIN' restore \
    --model n2n.uwm --star tomograms.star"
else
  echo "skip: simulate unavailable, --star smoke tests not run"
fi
