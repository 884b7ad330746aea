# Smoke tests of `unwedge eval` and `unwedge report` (sourced by smoke.sh: check, $BIN, $WORK, $SRC).
check eval-help 0 "tilt-range.*-60" -- "$BIN" eval --help
check eval-no-inputs 1 "either --in and --truth" -- "$BIN" eval
check report-no-inputs 1 "either --json or --runs" -- "$BIN" report --out "$WORK/r.html"
if /usr/bin/python3 -c "import mrcfile, numpy" 2>/dev/null; then
  /usr/bin/python3 "$SRC/tests/report_fixture.py" "$WORK/ev" 24 >/dev/null
  /usr/bin/python3 "$SRC/tests/report_fixture.py" "$WORK/ev16" 16 >/dev/null
  E=$WORK/ev
  check eval-truth 0 "PSNR.*dB.*yes" -- "$BIN" eval --in "$E/lowpass.mrc" --truth "$E/gt.mrc" \
    --json "$WORK/eval.json"
  check eval-json 0 '"cc_wedge_band"' -- cat "$WORK/eval.json"
  check eval-json-exists 1 "exists" -- "$BIN" eval --in "$E/lowpass.mrc" --truth "$E/gt.mrc" \
    --json "$WORK/eval.json"
  check eval-halves 0 "anisotropy" -- "$BIN" eval --half1 "$E/sampled.mrc" --half2 "$E/lowpass.mrc" \
    --tilt-range -50 65
  check eval-mask 0 "mask > 0.5" -- "$BIN" eval --in "$E/lowpass.mrc" --truth "$E/gt.mrc" \
    --mask "$E/mask.mrc"
  check eval-shape-mismatch 1 "ev16/gt.mrc is 16 x 16 x 16" -- "$BIN" eval --in "$E/lowpass.mrc" \
    --truth "$WORK/ev16/gt.mrc"
  check eval-bad-tilt 1 "90|tilt" -- "$BIN" eval --in "$E/lowpass.mrc" --truth "$E/gt.mrc" \
    --tilt-range 60 -60
  check report-json 0 "report.html" -- "$BIN" report --json "$E/report.json" --out "$WORK/report.html"
  check report-inline 0 "data:image/png;base64" -- grep -o "data:image/png;base64" -m1 "$WORK/report.html"
  check report-exists 1 "exists" -- "$BIN" report --json "$E/report.json" --out "$WORK/report.html"
  mkdir -p "$WORK/runs/mymethod"
  cp "$E/sampled.mrc" "$WORK/runs/mymethod/restored.mrc"
  cp "$E/train_log.jsonl" "$WORK/runs/mymethod/train_log.jsonl"
  check report-runs 0 "runs.html" -- "$BIN" report --runs "$WORK/runs/mymethod" --truth "$E/gt.mrc" \
    --input "$E/tomo.mrc" --out "$WORK/runs.html"
  check report-runs-missing 1 "no restored.mrc" -- "$BIN" report --runs "$WORK" --out "$WORK/x.html"
else
  echo "skip: /usr/bin/python3 with mrcfile+numpy absent, eval/report smoke tests on data not run"
fi
check bench-help 0 "steps.*200" -- "$BIN" bench --help
check bench-unknown-method 1 "unknown method" -- "$BIN" bench --methods nosuch --out "$WORK/bench"
if [[ -f "$WORK/ev/sampled_std.mrc" ]]; then
  check eval-std 0 "90 % interval" -- "$BIN" eval --in "$WORK/ev/sampled.mrc" --truth "$WORK/ev/gt.mrc" \
    --std "$WORK/ev/sampled_std.mrc"
  check eval-std-halves 1 "--std needs --in" -- "$BIN" eval --half1 "$WORK/ev/sampled.mrc" \
    --half2 "$WORK/ev/lowpass.mrc" --std "$WORK/ev/sampled_std.mrc"
fi
# `unwedge ring` on a real microtubule sub-tomogram (filament along Y) and its errors.
check ring-help 0 "axis TEXT:\{y,x\}=y|axis TEXT=y" -- "$BIN" ring --help
check ring-missing-in 1 "nope.mrc" -- "$BIN" ring --in "$WORK/nope.mrc"
if [[ -f "$SHARED/real/microtubule_14pf.mrc" ]]; then
  MT=$SHARED/real/microtubule_14pf.mrc
  check ring-real 0 "microtubule_14pf: ring Z/X [0-9.]+ .*wedge power [0-9.]+ %" -- \
    "$BIN" ring --in "$MT" --json "$WORK/ring.json" --png "$WORK/ring.png"
  check ring-json 0 '"ratio_z_over_x"' -- cat "$WORK/ring.json"
  check ring-png 0 "PNG image data" -- file "$WORK/ring.png"
  check ring-exists 1 "exists" -- "$BIN" ring --in "$MT" --json "$WORK/ring.json"
  check ring-labels 1 "--label given 1 times for 2 --in files" -- "$BIN" ring --in "$MT" \
    --in "$MT" --label a
  check ring-bad-tilt 1 "min > max" -- "$BIN" ring --in "$MT" --tilt-range 60 -60
  check ring-bad-axis 1 "--axis: z not in" -- "$BIN" ring --in "$MT" --axis z
else
  echo "skip: $SHARED/real absent, unwedge ring smoke tests on real data not run"
fi
