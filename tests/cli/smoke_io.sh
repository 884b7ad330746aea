# Smoke tests of `unwedge info` and `unwedge convert` (sourced by smoke.sh: check, $BIN, $WORK,
# $SHARED, $SRC).
check convert-help 0 "--mode INT:\{2,12\}=2" -- "$BIN" convert --help
check convert-missing-input 1 "nope.mrc" -- "$BIN" convert --in "$WORK/nope.mrc" --out "$WORK/x.mrc"
if [[ -d "$SHARED/mrc_samples" ]]; then
  s="$SHARED/mrc_samples/EMD-3197.map"
  check convert-sample 0 "" -- "$BIN" -q convert --permissive --in "$s" --out "$WORK/c.mrc"
  check convert-output-info 0 "20 x 20 x 20.*" -- "$BIN" info "$WORK/c.mrc"
  check convert-output-label 0 "label [0-9] +unwedge .*convert" -- "$BIN" info "$WORK/c.mrc"
  check convert-output-voxel 0 "voxel size +11.4 x 11.4 x 11.4 A" -- "$BIN" info "$WORK/c.mrc"
  check convert-no-overwrite 1 "exists.*--overwrite" -- "$BIN" convert --permissive --in "$s" --out "$WORK/c.mrc"
  check convert-overwrite 0 "" -- "$BIN" -q convert --permissive --in "$s" --out "$WORK/c.mrc" --overwrite
  check convert-box 0 "" -- "$BIN" -q convert --permissive --in "$s" --out "$WORK/box.mrc" --box 1 4 2 6 3 8 --mode 12
  check convert-box-info 0 "5 x 4 x 3 voxels" -- "$BIN" info "$WORK/box.mrc"
  check convert-box-mode 0 "mode +12 \(float16\)" -- "$BIN" info --data "$WORK/box.mrc"
  check convert-bad-box 1 "--box x range \[3, 30\)" -- "$BIN" convert --permissive --in "$s" --out "$WORK/bad.mrc" --box 0 1 0 1 3 30
  check convert-bad-mode 1 "--mode" -- "$BIN" convert --in "$s" --out "$WORK/bad.mrc" --mode 6
  check convert-permuted 0 "" -- "$BIN" -q convert --permissive --in "$SHARED/mrc_samples/EMD-3001.map" --out "$WORK/p.mrc"
  check convert-permuted-info 0 "43 x 25 x 73 voxels" -- "$BIN" info "$WORK/p.mrc"
  head -c 5000 "$s" >"$WORK/short.mrc"
  check info-short 1 "short.mrc: data is 28024 bytes short" -- "$BIN" info "$WORK/short.mrc"
  check convert-short-no-output 1 "bytes short" -- "$BIN" convert --in "$WORK/short.mrc" --out "$WORK/s_out.mrc"
  check convert-short-left-nothing 0 "^0$" -- bash -c "ls -A '$WORK' | grep -c s_out || true"
fi
head -c 100 /dev/zero >"$WORK/tiny.mrc"
check info-tiny 1 "tiny.mrc: file is 100 bytes, shorter than the 1024-byte MRC header" -- "$BIN" info "$WORK/tiny.mrc"
