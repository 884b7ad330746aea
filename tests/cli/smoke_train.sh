# Smoke tests of `unwedge train` and `unwedge restore` (sourced by smoke.sh: $BIN, $WORK, check).
check train-help 0 "--patch.*64" -- "$BIN" train --help
check restore-help 0 "--overlap.*32" -- "$BIN" restore --help
TS="$WORK/train_sim"
mkdir -p "$TS"
if "$BIN" -q simulate --preset tiny --out "$TS" > /dev/null 2>&1 && [[ -f "$TS/even.mrc" ]]; then
  TINY=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 16 --batch 2
        --no-progress --threads 1)
  check train-n2n 0 "wrote" -- "$BIN" train --method n2n --even "$TS/even.mrc" --odd "$TS/odd.mrc" \
    --out "$WORK/m.uwm" --steps 3 "${TINY[@]}"
  check train-config-written 0 "patch" -- cat "$WORK/m.config.yaml"
  check train-log-written 0 '"step":3' -- cat "$WORK/m.train.jsonl"
  check train-exists 1 "exists" -- "$BIN" train --method n2n --even "$TS/even.mrc" \
    --odd "$TS/odd.mrc" --out "$WORK/m.uwm" --steps 3 "${TINY[@]}"
  check train-resume 0 "wrote" -- "$BIN" train --method n2n --even "$TS/even.mrc" \
    --odd "$TS/odd.mrc" --out "$WORK/m.uwm" --steps 4 --resume "${TINY[@]}"
  check train-unpaired 1 "paired by position" -- "$BIN" train --method n2n \
    --even "$TS/even.mrc" "$TS/even.mrc" --odd "$TS/odd.mrc" --out "$WORK/m2.uwm" --steps 1
  check train-patch-auto 0 "patch 32 \(auto on cpu" -- "$BIN" train --method n2n \
    --even "$TS/even.mrc" --odd "$TS/odd.mrc" --out "$WORK/m_auto.uwm" --steps 1 --threads 1 \
    --opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --batch 2 --no-progress
  check train-patch-too-big 1 "larger than the volume" -- "$BIN" train --method n2n \
    --even "$TS/even.mrc" --odd "$TS/odd.mrc" --out "$WORK/m3.uwm" --steps 1 --patch 128
  check train-n2v-needs-in 1 "give --in" -- "$BIN" train --method n2v \
    --even "$TS/even.mrc" --odd "$TS/odd.mrc" --out "$WORK/m4.uwm" --steps 1
  check restore-pair 0 "wrote" -- "$BIN" restore --model "$WORK/m.uwm" --even "$TS/even.mrc" \
    --odd "$TS/odd.mrc" --out "$WORK/r.mrc" --save-halves --tile 32 --overlap 8 --no-progress
  check restore-shape 0 "64 x 64 x 32" -- "$BIN" info "$WORK/r.mrc"
  check restore-halves 0 "64 x 64 x 32" -- "$BIN" info "$WORK/r_even.mrc"
  check restore-config-written 0 "^save-halves: true" -- cat "$WORK/r.config.yaml"
  check restore-config-flips 0 "^flips: 4" -- cat "$WORK/r.config.yaml"
  check restore-flips-bad 1 "flips: 3 not in" -- "$BIN" restore --model "$WORK/m.uwm" \
    --in "$TS/tomo.mrc" --out "$WORK/r3.mrc" --flips 3
  check restore-flips-one 0 "wrote" -- "$BIN" restore --model "$WORK/m.uwm" --in "$TS/tomo.mrc" \
    --out "$WORK/r1.mrc" --flips 1 --tile 32 --overlap 8 --no-progress
  check restore-exists 1 "exists" -- "$BIN" restore --model "$WORK/m.uwm" --in "$TS/tomo.mrc" \
    --out "$WORK/r.mrc"
  head -c 2000 "$WORK/m.uwm" > "$WORK/trunc.uwm"
  check restore-truncated 1 "corrupt or truncated" -- "$BIN" restore --model "$WORK/trunc.uwm" \
    --in "$TS/tomo.mrc" --out "$WORK/r2.mrc"
else
  echo "skip: simulate unavailable, train/restore smoke tests not run"
fi
# Per-tomogram tilt ranges (issue 21): the .tlt beside a tomogram, or one --tilt-range pair each.
if [[ -f "$TS/even.mrc" ]]; then
  PT="$WORK/per_tomo"
  mkdir -p "$PT"
  for h in even odd; do cp "$TS/$h.mrc" "$PT/a_$h.mrc"; cp "$TS/$h.mrc" "$PT/b_$h.mrc"; done
  printf -- '-50.0\n0.0\n65.0\n' > "$PT/a.tlt"
  HALVES=(--method ddw --even "$PT/a_even.mrc" "$PT/b_even.mrc" --odd "$PT/a_odd.mrc" "$PT/b_odd.mrc")
  check tilt-range-from-tlt 0 "a_even.mrc: tilt range -50 .. 65 degrees from .*a.tlt" -- "$BIN" \
    train "${HALVES[@]}" --out "$PT/t1.uwm" --steps 1 "${TINY[@]}"
  check tilt-range-given-wins 1 "" -- bash -c "'$BIN' train ${HALVES[*]} \
    --out '$PT/t2.uwm' --steps 1 --tilt-range -60 60 ${TINY[*]} 2>&1 | grep 'tilt range .* from'"
  check tilt-range-per-tomogram 0 "wrote" -- "$BIN" train "${HALVES[@]}" --out "$PT/t3.uwm" \
    --steps 1 --tilt-range -40 40 -30 60 "${TINY[@]}"
  check tilt-range-per-tomogram-written 0 "^tilt-range: \[-40, 40, -30, 60\]" -- cat "$PT/t3.config.yaml"
  check tilt-range-count 1 "6 values for 2 tomograms" -- "$BIN" train "${HALVES[@]}" \
    --out "$PT/t4.uwm" --steps 1 --tilt-range -40 40 -30 60 -20 20 "${TINY[@]}"
fi
