# Smoke tests of n2v in the tilt-series domain: train on the tilt images, restore = denoise every
# tilt image + WBP (sourced by smoke.sh: $BIN, $WORK, check).
TT="$WORK/tilt_sim"
mkdir -p "$TT"
if "$BIN" -q simulate --preset tiny --out "$TT" > /dev/null 2>&1 && [[ -f "$TT/tilt_series.tlt" ]]; then
  TTINY=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 32 --batch 2
         --no-progress --threads 1)
  check tilt-train 0 "wrote" -- "$BIN" train --method n2v --domain tilt-series \
    --tilt-series "$TT/tilt_series.mrc" --angles "$TT/tilt_series.tlt" --thickness 32 \
    --out "$WORK/t.uwm" --steps 20 "${TTINY[@]}"
  # The checkpoint's info JSON (stored uncompressed in the .uwm zip) holds domain and angles.
  check tilt-train-domain-stored 0 '"domain":"tilt-series"' -- grep -ao '"domain":"[a-z-]*"' \
    "$WORK/t.uwm"
  check tilt-train-angles-stored 0 '"angles_deg":\[-60' -- grep -ao '"angles_deg":\[[-0-9.]*' \
    "$WORK/t.uwm"
  # The stored thickness and angles are enough for restore.
  check tilt-restore 0 "wrote" -- "$BIN" restore --model "$WORK/t.uwm" \
    --tilt-series "$TT/tilt_series.mrc" --out "$WORK/t_tomo.mrc" --no-progress \
    --save-tilt-series "$WORK/t_den.mrc"
  vx=$("$BIN" info "$TT/tilt_series.mrc" 2>/dev/null | awk '/voxel size/{print $3}')
  check tilt-restore-shape 0 "64 x 64 x 32 voxels" -- "$BIN" info "$WORK/t_tomo.mrc"
  check tilt-restore-voxel 0 "voxel size +$vx x $vx x $vx A" -- "$BIN" info "$WORK/t_tomo.mrc"
  check tilt-denoised-series 0 "64 x 64 x $(wc -l < "$TT/tilt_series.tlt") voxels" -- \
    "$BIN" info "$WORK/t_den.mrc"
  check tilt-restore-thickness 0 "64 x 64 x 20 voxels" -- bash -c "\"$BIN\" restore \
    --model \"$WORK/t.uwm\" --tilt-series \"$TT/tilt_series.mrc\" --angles \
    \"$TT/tilt_series.tlt\" --thickness 20 --filter sirt-like --out \"$WORK/t_tomo20.mrc\" \
    --no-progress && \"$BIN\" info \"$WORK/t_tomo20.mrc\""
  head -n 5 "$TT/tilt_series.tlt" > "$WORK/short.tlt"
  check tilt-train-angle-count 1 "short.tlt has 5 angles but .*tilt_series.mrc has [0-9]+ sections" \
    -- "$BIN" train --method n2v --domain tilt-series --tilt-series "$TT/tilt_series.mrc" \
    --angles "$WORK/short.tlt" --out "$WORK/t2.uwm" --steps 1 "${TTINY[@]}"
  check tilt-restore-angle-count 1 "short.tlt has 5 angles but .*tilt_series.mrc has [0-9]+ sections" \
    -- "$BIN" restore --model "$WORK/t.uwm" --tilt-series "$TT/tilt_series.mrc" \
    --angles "$WORK/short.tlt" --out "$WORK/t3.mrc"
  check tilt-model-on-tomogram 1 "t.uwm is a tilt-series-domain model .*tomo.mrc is given as a tomogram" \
    -- "$BIN" restore --model "$WORK/t.uwm" --in "$TT/tomo.mrc" --out "$WORK/t4.mrc"
  check tilt-tomogram-model-on-series 1 "t5.uwm is a tomogram-domain model .*tilt_series.mrc is a tilt series" \
    -- bash -c "\"$BIN\" train --method n2v --in \"$TT/tomo.mrc\" --out \"$WORK/t5.uwm\" --steps 1 \
      ${TTINY[*]} > /dev/null 2>&1 && \"$BIN\" restore --model \"$WORK/t5.uwm\" \
      --tilt-series \"$TT/tilt_series.mrc\" --angles \"$TT/tilt_series.tlt\" --thickness 32 \
      --out \"$WORK/t6.mrc\""
  check tilt-restore-save-halves 1 "--save-halves needs --even/--odd" -- "$BIN" restore \
    --model "$WORK/t.uwm" --tilt-series "$TT/tilt_series.mrc" --save-halves --out "$WORK/t9.mrc"
  check tilt-train-not-n2v 1 "method n2n does not train on tilt images" -- "$BIN" train \
    --method n2n --domain tilt-series --tilt-series "$TT/tilt_series.mrc" \
    --angles "$TT/tilt_series.tlt" --out "$WORK/t7.uwm" --steps 1
  check tilt-train-needs-series 1 "needs --tilt-series" -- "$BIN" train --method n2v \
    --domain tilt-series --in "$TT/tomo.mrc" --out "$WORK/t8.uwm" --steps 1
else
  echo "skip: simulate unavailable, tilt-series smoke tests not run"
fi
