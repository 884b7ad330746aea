# unwedge simulate: tiny preset into $WORK, outputs present, refusal to overwrite, bad preset.
check simulate-help 0 "--preset.*tiny" -- "$BIN" simulate --help
check simulate-tiny 0 "CC\(tomo, gt\)" -- "$BIN" simulate --preset tiny --out "$WORK/sim" --seed 3
for f in gt.mrc tomo.mrc even.mrc odd.mrc clean_tomo.mrc tilt_series.mrc tilt_series.tlt particles.csv meta.json; do
  check "simulate-file-$f" 0 "" -- test -s "$WORK/sim/$f"
done
check simulate-csv-header 0 "^class,class_id,x_vox,y_vox,z_vox,quat_w" -- head -1 "$WORK/sim/particles.csv"
check simulate-meta-seed 0 "\"seed\": 3" -- cat "$WORK/sim/meta.json"
check simulate-tlt-41 0 "^41$" -- bash -c "grep -c . '$WORK/sim/tilt_series.tlt'"
check simulate-refuses-overwrite 1 "exists|overwrite" -- "$BIN" simulate --preset tiny --out "$WORK/sim" --seed 3
check simulate-overwrite 0 "" -- "$BIN" -q simulate --preset tiny --out "$WORK/sim" --seed 3 --overwrite
check simulate-bad-preset 1 "huge" -- "$BIN" simulate --preset huge --out "$WORK/sim2"
