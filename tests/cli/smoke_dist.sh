# Smoke tests of data-parallel training (sourced by smoke.sh: check, $BIN, $WORK).
# Two local ranks over loopback Gloo with the global batch split between them must give the
# same model as one rank with the whole batch (no augmentation, so both see the same data), in
# fp32: bf16 (what auto picks on a CPU with avx512_bf16) rounds the two sums differently.
D="$WORK/dist"
mkdir -p "$D"
check dist-simulate 0 "" -- "$BIN" -q simulate --preset tiny --out "$D/data" --seed 11
base=(train --method n2n --even "$D/data/even.mrc" --odd "$D/data/odd.mrc"
  --patch 32 --opt augment=none --opt swap=false --seed 5 --val-every 0 --checkpoint-every 0)
common=("${base[@]}" --batch 4 --steps 3 --precision fp32)
check dist-single 0 "" -- "$BIN" -q --threads 1 "${common[@]}" --out "$D/single.uwm"
check dist-two-ranks 0 "" -- "$BIN" -q --threads 1 launch --nproc 2 -- "${common[@]}" --out "$D/two.uwm"
check dist-restore-single 0 "" -- "$BIN" -q restore --model "$D/single.uwm" --in "$D/data/even.mrc" --out "$D/single.mrc" --precision fp32
check dist-restore-two 0 "" -- "$BIN" -q restore --model "$D/two.uwm" --in "$D/data/even.mrc" --out "$D/two.mrc" --precision fp32
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
# Distributed restoration: one tomogram split into Z slabs over 2 ranks (each writes its slab
# into the one output file), and two tomograms split by tomogram; both equal 1-rank outputs (in
# fp32: bf16 convolutions round differently with the number of threads a process runs).
check dist-restore-slabs 0 "" -- "$BIN" -q --threads 1 launch --nproc 2 -- restore --model "$D/single.uwm" \
  --in "$D/data/even.mrc" --out "$D/slabs.mrc" --tile 24 --overlap 8 --precision fp32
check dist-restore-slabs-ref 0 "" -- "$BIN" -q --threads 1 restore --model "$D/single.uwm" \
  --in "$D/data/even.mrc" --out "$D/slabs_ref.mrc" --tile 24 --overlap 8 --precision fp32
check dist-restore-by-tomogram 0 "" -- "$BIN" -q --threads 1 launch --nproc 2 -- restore \
  --model "$D/single.uwm" --in "$D/data/even.mrc" "$D/data/odd.mrc" --out "$D/t_even.mrc" "$D/t_odd.mrc" --precision fp32
check dist-restore-odd-ref 0 "" -- "$BIN" -q --threads 1 restore --model "$D/single.uwm" \
  --in "$D/data/odd.mrc" --out "$D/odd_ref.mrc" --precision fp32
check dist-restore-out-count 1 "--out lists 1 files for 2 inputs" -- "$BIN" -q restore \
  --model "$D/single.uwm" --in "$D/data/even.mrc" "$D/data/odd.mrc" --out "$D/x.mrc"
check dist-restore-device-auto 0 "" -- "$BIN" -q --threads 1 restore --model "$D/single.uwm" \
  --in "$D/data/even.mrc" --out "$D/auto.mrc" --device auto
check dist-restore-bad-device 1 "device: 'tpu' is not a device" -- "$BIN" -q restore \
  --model "$D/single.uwm" --in "$D/data/even.mrc" --out "$D/y.mrc" --device tpu
check dist-train-bf16 0 "" -- "$BIN" -q --threads 1 "${base[@]}" --batch 2 --steps 2 \
  --precision bf16 --out "$D/bf16.uwm"
if /usr/bin/python3 -c "import mrcfile, numpy" 2>/dev/null; then
  check dist-restore-same 0 "slabs .* by tomogram" -- /usr/bin/python3 -c "
import sys, mrcfile, numpy as np
def cmp(a_path, b_path):
    fa, fb = mrcfile.open(a_path), mrcfile.open(b_path)
    a, b = fa.data.astype(np.float64), fb.data.astype(np.float64)
    d = np.abs(a - b).max() / np.abs(a).max()
    ha, hb = fa.header, fb.header
    h = max(abs(float(ha[k]) - float(hb[k])) / (abs(float(ha[k])) + 1e-6) for k in ('dmin', 'dmax', 'dmean', 'rms'))
    return max(d, h)
s = cmp('$D/slabs_ref.mrc', '$D/slabs.mrc')
t = max(cmp('$D/single.mrc', '$D/t_even.mrc'), cmp('$D/odd_ref.mrc', '$D/t_odd.mrc'))
print('max relative difference: slabs %.3g, by tomogram %.3g' % (s, t))
sys.exit(0 if s < 1e-5 and t < 1e-5 else 1)"
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
# Auxiliary networks on 2 ranks: cryogen-map (its discriminator synchronised across ranks) runs
# and writes a model; bench takes --device/--precision and passes them to its children.
check dist-cryogen-map-two-ranks 0 "" -- "$BIN" -q --threads 1 launch --nproc 2 -- train \
  --method cryogen-map --even "$D/data/even.mrc" --odd "$D/data/odd.mrc" --patch 16 --batch 2 \
  --steps 2 --opt depth=2 --opt base_channels=4 --opt d_channels=4 --opt d_levels=2 --seed 5 \
  --val-every 0 --checkpoint-every 0 --out "$D/cgm.uwm"
check dist-bench-help 0 "--device TEXT=cpu" -- "$BIN" bench --help
check dist-bench-help-precision 0 "--precision TEXT.*=auto" -- "$BIN" bench --help
check dist-restore-help-device 0 "--device TEXT=model" -- "$BIN" restore --help
check dist-bench-bad-device 1 "device: 'tpu' is not a device" -- "$BIN" -q bench --device tpu \
  --data "$D/data" --methods n2n --out "$D/bench_bad"
check dist-bench-device 0 "" -- "$BIN" -q --threads 1 bench --data "$D/data" --methods n2n \
  --steps 2 --patch 16 --batch 2 --device auto --precision bf16 --out "$D/bench"
check dist-bench-device-json 0 '"device": "(cpu|cuda)"' -- grep -A1 '"device"' "$D/bench/bench.json"
check dist-bench-child-precision 0 "" -- grep -aq '"precision":"bf16"' "$D/bench/n2n/model.uwm"
# bench --resume: an existing model is trained on from its checkpoint up to the (here raised)
# budget, not retrained: its log keeps the first run's line and gains one; without --resume or
# --overwrite the outputs are refused.
check bench-again-refused 1 "exists" -- "$BIN" -q --threads 1 bench --data "$D/data" \
  --methods n2n --steps 2 --patch 16 --batch 2 --precision bf16 --out "$D/bench"
check bench-resume 0 "n2n" -- "$BIN" --threads 1 bench --data "$D/data" --methods n2n \
  --steps 4 --patch 16 --batch 2 --precision bf16 --resume --out "$D/bench"
check bench-resume-json 0 '"resumed": true' -- cat "$D/bench/bench.json"
check bench-resume-continued 0 '"step":2,.*"step":4,' -- bash -c \
  "grep -o '\"step\":[0-9]*,' '$D/bench/n2n/model.train.jsonl' | tr -d '\n'"
