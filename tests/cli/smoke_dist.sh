# Smoke tests of data-parallel training (sourced by smoke.sh: check, $BIN, $WORK).
# Two local ranks over loopback Gloo with the global batch split between them must give the
# same model as one rank with the whole batch (no augmentation, so both see the same data).
D="$WORK/dist"
mkdir -p "$D"
check dist-simulate 0 "" -- "$BIN" -q simulate --preset tiny --out "$D/data" --seed 11
base=(train --method n2n --even "$D/data/even.mrc" --odd "$D/data/odd.mrc"
  --patch 32 --opt augment=none --opt swap=false --seed 5 --val-every 0 --checkpoint-every 0)
common=("${base[@]}" --batch 4 --steps 3)
check dist-single 0 "" -- "$BIN" -q --threads 1 "${common[@]}" --out "$D/single.uwm"
check dist-two-ranks 0 "" -- "$BIN" -q --threads 1 launch --nproc 2 -- "${common[@]}" --out "$D/two.uwm"
check dist-restore-single 0 "" -- "$BIN" -q restore --model "$D/single.uwm" --in "$D/data/even.mrc" --out "$D/single.mrc"
check dist-restore-two 0 "" -- "$BIN" -q restore --model "$D/two.uwm" --in "$D/data/even.mrc" --out "$D/two.mrc"
if /usr/bin/python3 -c "import mrcfile, numpy" 2>/dev/null; then
  check dist-same-model 0 "max relative difference" -- /usr/bin/python3 -c "
import sys, mrcfile, numpy as np
a = mrcfile.open('$D/single.mrc').data.astype(np.float64)
b = mrcfile.open('$D/two.mrc').data.astype(np.float64)
d = np.abs(a - b).max() / np.abs(a).max()
print('max relative difference', d)
sys.exit(0 if d < 1e-4 else 1)"
else
  echo "skip: /usr/bin/python3 with mrcfile absent, 1-rank vs 2-rank comparison not run"
fi
check dist-bad-batch 1 "global batch.*multiple of the 2 ranks" -- "$BIN" -q launch --nproc 2 -- \
  "${base[@]}" --batch 3 --steps 3 --out "$D/bad.uwm"
check dist-rank-fails 1 "rank [01] failed" -- "$BIN" -q launch --nproc 2 -- train --method nope \
  --in "$D/data/tomo.mrc" --out "$D/nope.uwm"
# A rank killed mid-run: the launcher stops the others and exits non-zero instead of hanging.
"$BIN" -q --threads 1 launch --nproc 2 --grace 5 -- "${base[@]}" --batch 4 --steps 100000 --out "$D/long.uwm" \
  > "$D/long.log" 2>&1 &
lpid=$!
for _ in $(seq 1 100); do
  kids=$(pgrep -P "$lpid" | tr '\n' ' ')
  [[ $(wc -w <<<"$kids") -ge 2 ]] && break
  sleep 0.1
done
sleep 3
victim=$(pgrep -P "$lpid" | tail -1)
start=$(date +%s)
kill -9 "$victim" 2>/dev/null
wait "$lpid"
lrc=$?
waited=$(( $(date +%s) - start ))
check dist-killed-rank 0 "" -- bash -c "[[ $lrc -ne 0 && $waited -lt 60 ]] && grep -q 'failed' '$D/long.log'"
