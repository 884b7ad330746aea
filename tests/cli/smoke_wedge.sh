# Smoke tests of the missing-wedge methods (sourced by smoke.sh: $BIN, $WORK, check).
check wedge-methods-listed 0 "cryogen-ot" -- "$BIN" methods
check wedge-ddw-options 0 "lambda" -- "$BIN" methods --options ddw
check wedge-map-options 0 "r1" -- "$BIN" methods --options cryogen-map
WS="$WORK/wedge_sim"
mkdir -p "$WS"
if "$BIN" -q simulate --preset tiny --out "$WS" > /dev/null 2>&1 && [[ -f "$WS/even.mrc" ]]; then
  WT=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 24 --batch 2
      --steps 2 --no-progress --threads 1)
  for m in ddw cryogen-map cryogen-ot; do
    PRIOR=()  # the cryogen priors from the first step (default: step 200)
    [[ $m == cryogen-* ]] && PRIOR=(--opt prior_start=0)
    check "wedge-train-$m" 0 "wrote" -- "$BIN" train --method "$m" --even "$WS/even.mrc" \
      --odd "$WS/odd.mrc" --out "$WORK/w_$m.uwm" --tilt-range -50 65 --wedge-sign "${WT[@]}" "${PRIOR[@]}"
  done
  # The training log carries each method's loss components (stability curves).
  check wedge-log-map-stats 0 '"d_loss".*"d_real".*"energy"' -- tail -n 1 "$WORK/w_cryogen-map.train.jsonl"
  check wedge-log-ot-stats 0 '"data".*"ot"' -- tail -n 1 "$WORK/w_cryogen-ot.train.jsonl"
  check wedge-train-isonet 0 "wrote" -- "$BIN" train --method isonet --in "$WS/tomo.mrc" \
    --out "$WORK/w_isonet.uwm" --opt refill_every=1 "${WT[@]}"
  # cryogen-ot on one tomogram (no halves): train sets its one-tomogram options, resumes with
  # the same command, and the model restores one tomogram without the halves warning; asking
  # for input=one with halves is refused.
  check wedge-train-ot-one 0 'one tomogram: cryogen-ot options .*"input":"one"' -- "$BIN" train \
    --method cryogen-ot --in "$WS/tomo.mrc" --out "$WORK/w_ot1.uwm" "${WT[@]}"
  check wedge-resume-ot-one 0 "wrote" -- "$BIN" train --method cryogen-ot --in "$WS/tomo.mrc" \
    --out "$WORK/w_ot1.uwm" --resume --opt depth=1 --opt base_channels=4 --opt convs_per_level=1 \
    --patch 24 --batch 2 --steps 3 --no-progress --threads 1
  check wedge-restore-ot-one 0 "wrote" -- bash -c '"$0" restore --model "$1" --in "$2" --out "$3" \
    --no-progress >"$4" 2>&1; rc=$?; cat "$4"; exit $rc' "$BIN" "$WORK/w_ot1.uwm" "$WS/tomo.mrc" \
    "$WORK/w_ot1.mrc" "$WORK/w_ot1.restore.log"
  check wedge-restore-ot-one-no-warning 1 "^$" -- grep "trained on half tomograms" "$WORK/w_ot1.restore.log"
  check wedge-sample-ot-one 0 '"cubes": 1' -- bash -c '"$0" -q sample --model "$1" --in "$2" \
    --uq bootstrap --n 2 --calibrate --no-report --no-progress --out-dir "$3" && cat "$3/summary.json"' \
    "$BIN" "$WORK/w_ot1.uwm" "$WS/tomo.mrc" "$WORK/w_ot1_sample"
  check wedge-ot-one-with-halves 1 "trains on one tomogram: give --in" -- "$BIN" train \
    --method cryogen-ot --even "$WS/even.mrc" --odd "$WS/odd.mrc" --out "$WORK/w_ot1b.uwm" \
    --opt input=one "${WT[@]}"
  check wedge-train-ot-sinkhorn 0 "wrote" -- "$BIN" train --method cryogen-ot --even "$WS/even.mrc" \
    --odd "$WS/odd.mrc" --out "$WORK/w_ots.uwm" --opt ot=sinkhorn --opt features=voxels "${WT[@]}"
  check wedge-restore-ddw 0 "wrote" -- "$BIN" restore --model "$WORK/w_ddw.uwm" \
    --even "$WS/even.mrc" --odd "$WS/odd.mrc" --out "$WORK/w_ddw.mrc" --no-progress
  check wedge-restore-map 0 "wrote" -- "$BIN" restore --model "$WORK/w_cryogen-map.uwm" \
    --even "$WS/even.mrc" --odd "$WS/odd.mrc" --out "$WORK/w_map.mrc" --no-progress
  check wedge-restore-isonet 0 "wrote" -- "$BIN" restore --model "$WORK/w_isonet.uwm" \
    --in "$WS/tomo.mrc" --out "$WORK/w_isonet.mrc" --no-progress
  # Haar rotations crop (cube rotations, ddw's default, keep the whole patch).
  check wedge-patch-too-small 1 "too small to crop" -- "$BIN" train --method ddw \
    --even "$WS/even.mrc" --odd "$WS/odd.mrc" --out "$WORK/w_small.uwm" --patch 8 --steps 1 \
    --batch 2 --no-progress --opt depth=3 --opt rotations=haar
  check wedge-bad-ot 1 "sliced \| sinkhorn" -- "$BIN" train --method cryogen-ot \
    --even "$WS/even.mrc" --odd "$WS/odd.mrc" --out "$WORK/w_bad.uwm" --steps 1 --opt ot=emd
else
  echo "skip: simulate unavailable, wedge smoke tests not run"
fi
