# Smoke tests of `unwedge sample` (sourced by smoke.sh: $BIN, $WORK, check).
check sample-help 0 "--n.*16" -- "$BIN" sample --help
check sample-help-interval 0 "--interval.*0\.9" -- "$BIN" sample --help
check sample-missing-model 1 "nope.uwm" -- "$BIN" sample --model "$WORK/nope.uwm" \
  --in "$WORK/nope.mrc" --out-dir "$WORK/s0"
SS="$WORK/sample_sim"
mkdir -p "$SS"
if "$BIN" -q simulate --preset tiny --out "$SS" > /dev/null 2>&1 && [[ -f "$SS/even.mrc" ]]; then
  ST=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 24 --batch 2
      --steps 2 --no-progress --threads 1)
  "$BIN" -q train --method n2n --even "$SS/even.mrc" --odd "$SS/odd.mrc" \
    --out "$WORK/s_n2n.uwm" "${ST[@]}" > /dev/null 2>&1
  # --init-from: a cryowgen-mc generator started from the n2n network (same widths: all but the
  # layer that also takes the latent noise copied, that one on its shared input channels).
  check train-init-from 0 "initialised from .*\(n2n\): [0-9]+ of [0-9]+ tensors copied, 1 with" -- \
    "$BIN" train --method cryowgen-mc --even "$SS/even.mrc" --odd "$SS/odd.mrc" \
    --out "$WORK/s_init.uwm" "${ST[@]}" --init-from "$WORK/s_n2n.uwm"
  check sample-deterministic 1 "n2n is deterministic.*cryowgen-mc" -- "$BIN" sample \
    --model "$WORK/s_n2n.uwm" --in "$SS/tomo.mrc" --out-dir "$WORK/s1" --no-progress
  check sample-no-input 1 "no input" -- "$BIN" sample --model "$WORK/s_n2n.uwm" \
    --out-dir "$WORK/s1"
  check sample-even-needs-odd 1 "--even needs --odd" -- "$BIN" sample \
    --model "$WORK/s_n2n.uwm" --even "$SS/even.mrc" --out-dir "$WORK/s1"
  # Any model through the equivariant bootstrap.
  check sample-bootstrap 0 "wrote" -- "$BIN" sample --model "$WORK/s_n2n.uwm" --in "$SS/tomo.mrc" \
    --uq bootstrap --n 3 --tile 24 --overlap 4 --out-dir "$WORK/s_boot" --truth "$SS/gt.mrc" \
    --no-progress --threads 1
  check sample-bootstrap-std 0 "64 x 64 x 32" -- "$BIN" info "$WORK/s_boot/std.mrc"
  check sample-bootstrap-summary 0 '"uq": "equivariant bootstrap' -- cat "$WORK/s_boot/summary.json"
  # --calibrate: the same draws, std and the bounds' distances from the mean times the factors
  # it records (checked here from the files).
  SB=(--model "$WORK/s_n2n.uwm" --in "$SS/tomo.mrc" --uq bootstrap --n 3 --tile 24 --overlap 4
      --no-report --no-progress --threads 1)
  check sample-calibrate 0 "calibration on 1 cube of 24\^3.*std x" -- "$BIN" sample "${SB[@]}" \
    --calibrate --out-dir "$WORK/s_cal"
  check sample-calibrate-summary 0 '"calibration".*' -- cat "$WORK/s_cal/summary.json"
  # --calibrate-cubes: several cubes over the volume, pooled (a 1 x 2 x 2 grid: the 2 x 3 x 3
  # that cover the 32 x 64 x 64 volume, capped at 4).
  check sample-calibrate-cubes 0 "calibration on 4 cubes of 24\^3" -- "$BIN" sample "${SB[@]}" \
    --calibrate --calibrate-cubes 4 --out-dir "$WORK/s_cal4"
  check sample-calibrate-cubes-summary 0 '"cubes": 4' -- cat "$WORK/s_cal4/summary.json"
  if /usr/bin/python3 -c "import mrcfile, numpy" 2>/dev/null && "$BIN" -q sample "${SB[@]}" \
       --out-dir "$WORK/s_nocal" > /dev/null 2>&1; then
    check sample-calibrate-scales 0 "scaled by" -- /usr/bin/python3 -c "
import json, mrcfile, numpy as np
c = json.load(open('$WORK/s_cal/summary.json'))['calibration']
assert c['coverage_after'] >= c['interval'], c
r = lambda d, f: mrcfile.open('$WORK/' + d + '/' + f + '.mrc', permissive=True).data.astype(np.float64)
m = r('s_nocal', 'mean')
assert np.array_equal(r('s_cal', 'mean'), m)
s, b = c['std_scale'], c['bounds_scale']
assert len(c['reliability']['after']) == 4, c
for k in ('z', 'z_measured_band', 'z_wedge_band'):
    assert len(c['level_z'][k]) == 4 and all(z > 0 for z in c['level_z'][k]), c
for f, ref in (('std', r('s_nocal', 'std') * s), ('lower', m - b * (m - r('s_nocal', 'lower'))),
               ('upper', m + b * (r('s_nocal', 'upper') - m))):
    d = np.abs(r('s_cal', f) - ref).max()
    assert d < 1e-4 * (1 + np.abs(ref).max()), (f, d)
print('std scaled by', s, 'bounds by', b)
"
  fi
  check sample-std-pool-range 1 "--std-pool" -- "$BIN" sample --model "$WORK/s_n2n.uwm" \
    --in "$SS/tomo.mrc" --uq bootstrap --std-pool -1 --out-dir "$WORK/s_pool"
  check sample-std-structure-range 1 "--std-structure" -- "$BIN" sample --model "$WORK/s_n2n.uwm" \
    --in "$SS/tomo.mrc" --uq bootstrap --std-structure -1 --out-dir "$WORK/s_struct"
  check sample-uq-unknown 1 "--uq" -- "$BIN" sample --model "$WORK/s_n2n.uwm" \
    --in "$SS/tomo.mrc" --uq sure --out-dir "$WORK/s_boot2"
  mkdir -p "$WORK/s2" && : > "$WORK/s2/mean.mrc"
  check sample-exists 1 "mean.mrc.*exists|exists.*mean.mrc" -- "$BIN" sample \
    --model "$WORK/s_n2n.uwm" --in "$SS/tomo.mrc" --out-dir "$WORK/s2"
  if "$BIN" methods | grep -q cryowgen-mc; then
    check sample-train-mc 0 "wrote" -- "$BIN" train --method cryowgen-mc --even "$SS/even.mrc" \
      --odd "$SS/odd.mrc" --out "$WORK/s_mc.uwm" "${ST[@]}"
    check sample-mc 0 "wrote.*per sample" -- "$BIN" sample --model "$WORK/s_mc.uwm" \
      --even "$SS/even.mrc" --odd "$SS/odd.mrc" --out-dir "$WORK/s3" --n 4 --save-samples \
      --tile 32 --overlap 8 --truth "$SS/gt.mrc" --no-progress --threads 1
    for f in mean std lower upper samples/sample_003; do
      check "sample-out-$f" 0 "64 x 64 x 32" -- "$BIN" info "$WORK/s3/$f.mrc"
    done
    # Outputs keep the input's voxel size.
    vs=$("$BIN" info "$SS/even.mrc" | grep "voxel size")
    check sample-voxel-size 0 "${vs//./\\.}" -- "$BIN" info "$WORK/s3/mean.mrc"
    check sample-summary 0 '"ess_min".*' -- cat "$WORK/s3/summary.json"
    check sample-summary-coverage 0 '"coverage_90"' -- cat "$WORK/s3/summary.json"
    check sample-report 0 "flipbook|XZ slices" -- cat "$WORK/s3/report.html"
    # With --truth: the rank correlation, AUSE, a reliability diagram and sparsification curves.
    check sample-summary-ause 0 '"ause": [0-9.e-]+' -- cat "$WORK/s3/summary.json"
    check sample-summary-spearman 0 '"std_error_spearman"' -- cat "$WORK/s3/summary.json"
    check sample-report-reliability 0 "Reliability diagram" -- cat "$WORK/s3/report.html"
    check sample-report-sparsification 0 "removed by std" -- cat "$WORK/s3/report.html"
    check sample-reliability-svg 0 "<svg" -- cat "$WORK/s3/reliability.svg"
    # --save-samples with --truth: the same figures inside the measured band and the wedge.
    check sample-summary-band-coverage 0 '"coverage_90_wedge_band"' -- cat "$WORK/s3/summary.json"
    check sample-summary-band-ause 0 '"ause_measured_band"' -- cat "$WORK/s3/summary.json"
    check sample-reliability-bands 0 "missing wedge" -- cat "$WORK/s3/reliability.svg"
    S3=("$WORK"/s3/samples/sample_00{0,1,2,3}.mrc)
    check eval-samples-needs-std 1 "--samples needs" -- "$BIN" eval --in "$WORK/s3/mean.mrc" \
      --truth "$SS/gt.mrc" --samples "${S3[@]}"
    check eval-samples 0 "" -- "$BIN" eval --in "$WORK/s3/mean.mrc" --truth "$SS/gt.mrc" \
      --std "$WORK/s3/std.mrc" --samples "${S3[@]}" --json "$WORK/s3_eval.json"
    if /usr/bin/python3 -c "import json" 2>/dev/null; then
      # eval --samples on sample's files gives the figures sample computed from its draws.
      check eval-samples-match-sample 0 "band figures agree" -- /usr/bin/python3 -c "
import json, sys
a = json.load(open('$WORK/s3/summary.json'))['eval']['metrics']
b = json.load(open('$WORK/s3_eval.json'))['metrics']
keys = [k for k in a if k.endswith('_band') and k.startswith(('coverage', 'ause', 'std_error'))]
assert len(keys) == 22, keys  # coverage (stated and Gaussian) x4, cc, spearman, ause; x2 bands
bad = [k for k in keys if abs(a[k] - b[k]) > 1e-6]
print('band figures agree' if not bad else 'differ: %s' % bad)
sys.exit(1 if bad else 0)"
    fi
    check sample-config-written 0 "^n: 4" -- cat "$WORK/s3/config.yaml"
    check sample-exists-real 1 "exists" -- "$BIN" sample --model "$WORK/s_mc.uwm" \
      --even "$SS/even.mrc" --odd "$SS/odd.mrc" --out-dir "$WORK/s3" --n 4 --no-progress
    check sample-overwrite 0 "wrote" -- "$BIN" sample --model "$WORK/s_mc.uwm" \
      --in "$SS/tomo.mrc" --out-dir "$WORK/s3" --n 2 --no-report --overwrite --no-progress \
      --tile 32 --overlap 8 --threads 1
    # Two ranks: Z slabs of one tomogram written into the same files equal the 1-rank run.
    SA=(--model "$WORK/s_mc.uwm" --in "$SS/tomo.mrc" --n 4 --save-samples --tile 32 --overlap 8
        --no-report --no-progress)
    check sample-one-rank-ref 0 "" -- "$BIN" -q --threads 1 sample "${SA[@]}" --out-dir "$WORK/s4"
    check sample-two-ranks 0 "" -- "$BIN" -q --threads 1 launch --nproc 2 -- sample "${SA[@]}" \
      --out-dir "$WORK/s5"
    if /usr/bin/python3 -c "import mrcfile, numpy" 2>/dev/null; then
      check sample-two-ranks-same 0 "max abs diff" -- /usr/bin/python3 -c "
import sys, mrcfile, numpy as np
d = 0.0
for f in ['mean', 'std', 'lower', 'upper', 'samples/sample_003']:
    a = mrcfile.read('$WORK/s4/%s.mrc' % f); b = mrcfile.read('$WORK/s5/%s.mrc' % f)
    assert a.shape == b.shape, (f, a.shape, b.shape)
    d = max(d, float(np.abs(a.astype(np.float64) - b).max()))
print('max abs diff', d)
sys.exit(0 if d < 1e-5 else 1)"
    else
      echo "skip: /usr/bin/python3 with mrcfile absent, 2-rank sample comparison not run"
    fi
  else
    echo "skip: cryowgen-mc not registered, end-to-end sample smoke tests not run"
  fi
else
  echo "skip: simulate unavailable, sample smoke tests not run"
fi
