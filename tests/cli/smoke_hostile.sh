# Hostile and odd inputs (issue 19): every case either is refused with one line naming the file
# or option and the value, exit status 1, and nothing written, or reads correctly (sourced by
# smoke.sh: check, $BIN, $WORK, $SRC). docs/robustness.md lists the cases.
H="$WORK/hostile"
mkdir -p "$H"
# 4 GiB of address space: a command that tries to allocate a volume of many GB fails under it.
# A program built with AddressSanitizer (`make test SANITIZE=1`) reserves terabytes of address
# space for its shadow memory and cannot start under `ulimit -v`: its allocator refuses any single
# allocation over 4 GiB instead (max_allocation_size_mb, a sanitizer report and a non-zero exit).
LIMIT_KIB=$((4 * 1024 * 1024))
if ldd "$BIN" 2>/dev/null | grep -q 'libasan\.so'; then
  ASAN_BIN=1
  limited_vm() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}max_allocation_size_mb=$((LIMIT_KIB / 1024))" "$@"
  }
else
  ASAN_BIN=0
  limited_vm() { bash -c 'ulimit -v "$0"; exec "$@"' "$LIMIT_KIB" "$@"; }
fi

# _refused PATTERN DIR COMMAND...: prints "ok" when COMMAND exits 1 with exactly one line
# "unwedge: error: ..." matching PATTERN, no usage text, backtrace or exception dump, and DIR
# (its output folder) holds nothing afterwards; otherwise what went wrong.
_refused() {
  local pattern=$1 dir=$2
  shift 2
  local out rc errs left
  out=$("$@" 2>&1)
  rc=$?
  errs=$(grep -c '^unwedge: error' <<<"$out")
  left=$(ls -A "$dir" 2>/dev/null)
  if [[ $rc -ne 1 ]]; then
    echo "exit status $rc (want 1)"
  elif [[ $errs -ne 1 ]]; then
    echo "$errs error lines (want 1)"
  elif grep -qE 'Run with --help|terminate called|Exception raised|frame #|Traceback|what\(\)' \
      <<<"$out"; then
    echo "usage text, backtrace or exception dump in the output"
  elif ! grep '^unwedge: error' <<<"$out" | grep -qE -- "$pattern"; then
    echo "the error line does not match /$pattern/"
  elif [[ -n $left ]]; then
    echo "left behind in $dir: $left"
  else
    echo ok
    return 0
  fi
  echo "$out" | tail -8
  return 1
}
# refused NAME PATTERN COMMAND...: COMMAND writes into $O (a fresh empty folder) and must be
# refused (see _refused).
refused() {
  local name=$1 pattern=$2
  shift 2
  check "$name" 0 "^ok$" -- _refused "$pattern" "$O" "$@"
  find "$O" -mindepth 1 -delete 2>/dev/null
}
O="$H/out"
mkdir -p "$O"
# mrc_edit IN OUT PYTHON: OUT is IN with the header (h, a bytearray) and data (d, a bytearray)
# changed by PYTHON (struct imported).
mrc_edit() {
  python3 - "$1" "$2" "$3" <<'EOF'
import struct, sys
raw = open(sys.argv[1], 'rb').read()
h, d = bytearray(raw[:1024]), bytearray(raw[1024:])
def i32(off, v): h[off:off + 4] = struct.pack('<i', v)
def f32(off, v): h[off:off + 4] = struct.pack('<f', v)
exec(sys.argv[3])
open(sys.argv[2], 'wb').write(bytes(h) + bytes(d))
EOF
}

if ! command -v python3 > /dev/null || ! "$BIN" -q simulate --preset tiny --out "$H/sim" \
    > /dev/null 2>&1; then
  echo "skip: python3 or simulate unavailable, hostile-input tests not run"
else
  S="$H/sim"
  TINY=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 16 --batch 2
        --no-progress --threads 1)
  PAIR=(--method n2n --even "$S/even.mrc" --odd "$S/odd.mrc")
  "$BIN" -q train "${PAIR[@]}" --out "$H/n2n.uwm" --steps 2 "${TINY[@]}" > /dev/null 2>&1
  "$BIN" -q train --method n2v --in "$S/tomo.mrc" --out "$H/n2v.uwm" --steps 2 "${TINY[@]}" \
    > /dev/null 2>&1
  HOSTILE_CHECKS_START=$((passes + fails))

  # 1. Huge dimensions in a tiny file: refused from the header and the file size, before any
  # allocation (the commands run with 4 GiB of address space; the control shows that a 5 GiB
  # allocation fails under that limit).
  if [[ $ASAN_BIN == 1 ]]; then
    # The control: a legitimate 5.3 GB volume (1100^3 float32) is refused by the limit.
    big_simulate_fails() {
      ! limited_vm "$BIN" -q simulate --nx 1100 --ny 1100 --nz 1100 --particles 0 --out "$O/big"
    }
    check huge-limit-bites 0 "allocation-size-too-big|exceeds maximum supported size" -- \
      big_simulate_fails
    find "$O" -mindepth 1 -delete 2>/dev/null
  else
    check huge-limit-bites 1 "" -- limited_vm python3 -c "bytearray(5 << 30)"
  fi
  mrc_edit "$S/even.mrc" "$H/huge.mrc" \
    "[i32(o, 100000) for o in (0, 4, 8, 28, 32, 36)]; d[:] = d[:4096]"
  mrc_edit "$S/even.mrc" "$H/hugeext.mrc" "i32(92, 2**31 - 1); d[:] = d[:4096]"
  HUGE="huge.mrc: data is [0-9]+ bytes short: header says nx\*ny\*nz"
  refused huge-info "$HUGE" limited_vm "$BIN" info "$H/huge.mrc"
  refused huge-convert "$HUGE" limited_vm "$BIN" convert --in "$H/huge.mrc" --out "$O/c.mrc"
  refused huge-train "$HUGE" limited_vm "$BIN" train --method n2n --even "$H/huge.mrc" \
    --odd "$H/huge.mrc" --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused huge-restore "$HUGE" limited_vm "$BIN" restore --model "$H/n2v.uwm" \
    --in "$H/huge.mrc" --out "$O/r.mrc" --no-progress
  refused huge-eval "$HUGE" limited_vm "$BIN" eval --in "$H/huge.mrc" --truth "$S/gt.mrc" \
    --json "$O/e.json"
  refused huge-ext-header "hugeext.mrc: .*nsymbt 2147483647.*past the end" limited_vm "$BIN" \
    info "$H/hugeext.mrc"

  # 2. NaN and Inf voxels: refused by train, restore, sample and eval, naming the file and counts.
  mrc_edit "$S/even.mrc" "$H/nan.mrc" "d[4096:4100] = struct.pack('<f', float('nan'))"
  mrc_edit "$S/odd.mrc" "$H/inf.mrc" "d[8000:8004] = struct.pack('<f', float('-inf'))"
  refused nan-train-even "nan.mrc: 1 NaN and 0 Inf" "$BIN" train --method n2n \
    --even "$H/nan.mrc" --odd "$S/odd.mrc" --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused inf-train-odd "inf.mrc: 0 NaN and 1 Inf" "$BIN" train --method n2n \
    --even "$S/even.mrc" --odd "$H/inf.mrc" --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused nan-train-in "nan.mrc: 1 NaN" "$BIN" train --method n2v --in "$H/nan.mrc" \
    --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused nan-restore-pair "nan.mrc: 1 NaN" "$BIN" restore --model "$H/n2n.uwm" \
    --even "$H/nan.mrc" --odd "$S/odd.mrc" --out "$O/r.mrc" --no-progress
  refused inf-restore-in "inf.mrc: 0 NaN and 1 Inf" "$BIN" restore --model "$H/n2v.uwm" \
    --in "$H/inf.mrc" --out "$O/r.mrc" --no-progress
  refused inf-eval-in "inf.mrc: 0 NaN and 1 Inf" "$BIN" eval --in "$H/inf.mrc" \
    --truth "$S/gt.mrc" --json "$O/e.json"
  refused nan-eval-truth "nan.mrc: 1 NaN" "$BIN" eval --in "$S/tomo.mrc" --truth "$H/nan.mrc" \
    --json "$O/e.json"
  refused inf-eval-half "inf.mrc: 0 NaN and 1 Inf" "$BIN" eval --half1 "$S/even.mrc" \
    --half2 "$H/inf.mrc" --json "$O/e.json"
  refused nan-convert "nan.mrc: data: 1 NaN" "$BIN" convert --in "$H/nan.mrc" --out "$O/c.mrc"

  # 3. Constant volumes (zero spread): nothing to standardise for train and restore; a constant
  # volume is still a valid file to convert.
  mrc_edit "$S/even.mrc" "$H/const.mrc" "d[:] = struct.pack('<f', 0.5) * (len(d) // 4)"
  refused const-train-pair "const.mrc.*spread is 0" "$BIN" train --method n2n \
    --even "$H/const.mrc" --odd "$H/const.mrc" --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused const-train-in "const.mrc.*spread is 0" "$BIN" train --method n2v --in "$H/const.mrc" \
    --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused const-restore "const.mrc.*spread is 0" "$BIN" restore --model "$H/n2v.uwm" \
    --in "$H/const.mrc" --out "$O/r.mrc" --no-progress
  check const-convert-reads 0 "min 0.5 max 0.5 mean 0.5" -- bash -c "'$BIN' -q convert \
    --in '$H/const.mrc' --out '$H/const_c.mrc' && '$BIN' info '$H/const_c.mrc'"

  # 4. Volumes smaller than the patch or than the network's size multiple (2^depth): training
  # refuses a patch larger than the volume; restore pads, so a 3 x 3 x 3 volume and a single
  # section restore to their own shape with finite values (info's verdict checks NaN/Inf).
  cut() {  # cut IN OUT NX NY NZ: the first NX*NY*NZ voxels as a volume of that shape
    mrc_edit "$1" "$2" "[i32(o, v) for o, v in ((0, $3), (4, $4), (8, $5), (28, $3), (32, $4), \
      (36, $5))]; [f32(o, 10.0 * v) for o, v in ((40, $3), (44, $4), (48, $5))]; \
      d[:] = d[:4 * $3 * $4 * $5]"
  }
  cut "$S/even.mrc" "$H/t3e.mrc" 3 3 3
  cut "$S/odd.mrc" "$H/t3o.mrc" 3 3 3
  cut "$S/even.mrc" "$H/z1e.mrc" 64 64 1
  cut "$S/odd.mrc" "$H/z1o.mrc" 64 64 1
  cut "$S/tomo.mrc" "$H/odd40.mrc" 40 36 20
  refused small-train-patch "t3e.mrc.*patch 16 x 16 x 16 .*larger than the volume \(3 x 3 x 3" \
    "$BIN" train --method n2n --even "$H/t3e.mrc" --odd "$H/t3o.mrc" --out "$O/m.uwm" --steps 1 \
    "${TINY[@]}"
  refused small-train-auto-patch "z1e.mrc.*larger than the volume \(1 x 64 x 64" "$BIN" train \
    --method n2n --even "$H/z1e.mrc" --odd "$H/z1o.mrc" --out "$O/m.uwm" --steps 1 --no-progress
  check small-train-not-multiple 0 "wrote" -- "$BIN" train --method n2v --in "$H/odd40.mrc" \
    --out "$H/odd40.uwm" --steps 1 --patch 12 --val-fraction 0 --opt depth=2 \
    --opt base_channels=4 --opt convs_per_level=1 --batch 1 --no-progress --threads 1
  check small-restore-3 0 "3 x 3 x 3 voxels.*verdict +ok" -- bash -c "'$BIN' -q restore \
    --model '$H/n2n.uwm' --even '$H/t3e.mrc' --odd '$H/t3o.mrc' --out '$H/r3.mrc' --no-progress \
    && '$BIN' info '$H/r3.mrc' | tr '\n' ' '"
  check small-restore-1-section 0 "64 x 64 x 1 voxels.*verdict +ok" -- bash -c "'$BIN' -q restore \
    --model '$H/n2n.uwm' --even '$H/z1e.mrc' --odd '$H/z1o.mrc' --out '$H/r1.mrc' --no-progress \
    && '$BIN' info '$H/r1.mrc' | tr '\n' ' '"
  check small-restore-not-multiple 0 "40 x 36 x 20 voxels.*verdict +ok" -- bash -c "'$BIN' -q \
    restore --model '$H/odd40.uwm' --in '$H/odd40.mrc' --out '$H/r40.mrc' --tile 21 --overlap 4 \
    --no-progress && '$BIN' info '$H/r40.mrc' | tr '\n' ' '"

  # 5. Halves of different shapes or voxel sizes: not two halves of one tomogram.
  mrc_edit "$S/odd.mrc" "$H/odd5A.mrc" "f32(40, 320.0); f32(44, 320.0); f32(48, 160.0)"
  cut "$S/odd.mrc" "$H/odd_small.mrc" 64 64 16
  SHAPE="halves differ in shape: .*even.mrc is 64 x 64 x 32 but .*odd_small.mrc is 64 x 64 x 16"
  VOXEL="even.mrc has voxel size 10 A along x but .*odd5A.mrc has 5 A"
  refused halves-shape-train "$SHAPE" "$BIN" train --method n2n --even "$S/even.mrc" \
    --odd "$H/odd_small.mrc" --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused halves-voxel-train "$VOXEL" "$BIN" train --method n2n --even "$S/even.mrc" \
    --odd "$H/odd5A.mrc" --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused halves-shape-restore "$SHAPE" "$BIN" restore --model "$H/n2n.uwm" \
    --even "$S/even.mrc" --odd "$H/odd_small.mrc" --out "$O/r.mrc" --no-progress
  refused halves-voxel-restore "$VOXEL" "$BIN" restore --model "$H/n2n.uwm" \
    --even "$S/even.mrc" --odd "$H/odd5A.mrc" --out "$O/r.mrc" --no-progress
  refused halves-shape-eval "even.mrc is 64 x 64 x 32 .* but .*odd_small.mrc is 64 x 64 x 16" \
    "$BIN" eval --half1 "$S/even.mrc" --half2 "$H/odd_small.mrc" --json "$O/e.json"
  refused halves-voxel-eval "$VOXEL" "$BIN" eval --half1 "$S/even.mrc" --half2 "$H/odd5A.mrc" \
    --json "$O/e.json"
  refused truth-voxel-eval "tomo.mrc has voxel size 10 A along x but .*odd5A.mrc has 5 A" \
    "$BIN" eval --in "$S/tomo.mrc" --truth "$H/odd5A.mrc" --json "$O/e.json"

  # 6. Tilt files: garbage, too few angles (fewer than the sections, or one direction only),
  # angles beyond +-90; a reversed file with its series reversed too reads correctly (the same
  # tomogram); reversed or too wide --tilt-range / --tilt-min --tilt-max are refused.
  TSA=(--tilt-series "$S/tilt_series.mrc" --thickness 32)
  printf 'abc\n1.0\n' > "$H/garbage.tlt"
  printf '0\n3\n' > "$H/two.tlt"
  printf '%s\n' $(seq -100 5 100) > "$H/wide.tlt"
  printf '5\n5\n' > "$H/same.tlt"
  cut "$S/tilt_series.mrc" "$H/ts2.mrc" 64 64 2
  refused tilt-garbage "garbage.tlt:1: 'abc' is not one angle" "$BIN" reconstruct "${TSA[@]}" \
    --angles "$H/garbage.tlt" --out "$O/r.mrc"
  refused tilt-garbage-train "garbage.tlt:1: 'abc'" "$BIN" train --method n2v \
    --domain tilt-series --tilt-series "$S/tilt_series.mrc" --angles "$H/garbage.tlt" \
    --out "$O/m.uwm" --steps 1 "${TINY[@]}"
  refused tilt-too-few "two.tlt has 2 angles but .*tilt_series.mrc has 41 sections" "$BIN" \
    reconstruct "${TSA[@]}" --angles "$H/two.tlt" --out "$O/r.mrc"
  refused tilt-one-direction "same.tlt: 2 tilt angle\(s\), all 5 degrees" "$BIN" reconstruct \
    --tilt-series "$H/ts2.mrc" --thickness 32 --angles "$H/same.tlt" --out "$O/r.mrc"
  refused tilt-beyond-90 "wide.tlt:1: angle -100 is not a finite angle in \[-90, 90\]" "$BIN" \
    reconstruct "${TSA[@]}" --angles "$H/wide.tlt" --out "$O/r.mrc"
  python3 - "$S/tilt_series.mrc" "$H/ts_rev.mrc" <<'EOF'
import struct, sys
raw = open(sys.argv[1], 'rb').read()
nx, ny, nz = struct.unpack('<3i', raw[:12])
s = nx * ny * 4
secs = [raw[1024 + i * s:1024 + (i + 1) * s] for i in range(nz)]
open(sys.argv[2], 'wb').write(raw[:1024] + b''.join(secs[::-1]))
EOF
  tac "$S/tilt_series.tlt" > "$H/ts_rev.tlt"
  "$BIN" -q reconstruct "${TSA[@]}" --angles "$S/tilt_series.tlt" --out "$H/rec.mrc" \
    > /dev/null 2>&1
  "$BIN" -q reconstruct --tilt-series "$H/ts_rev.mrc" --thickness 32 --angles "$H/ts_rev.tlt" \
    --out "$H/rec_rev.mrc" > /dev/null 2>&1
  check tilt-reversed-reads 0 "^same " -- python3 -c "
import array, sys
a, b = (array.array('f', open(p, 'rb').read()[1024:]) for p in sys.argv[1:])
d = max(abs(x - y) for x, y in zip(a, b)); m = max(abs(y) for y in b)
print('same' if len(a) == len(b) > 0 and d <= 1e-5 * m else 'differ', d, m)" \
    "$H/rec_rev.mrc" "$H/rec.mrc"
  refused tilt-range-reversed-train "--tilt-range.*MIN < MAX" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --tilt-range 60 -60 "${TINY[@]}"
  refused tilt-range-beyond-train "--tilt-range: .*\[-95, 95\]" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --tilt-range -95 95 "${TINY[@]}"
  refused tilt-range-reversed-eval "--tilt-range: .*tilt range \[60, -60\]" "$BIN" eval \
    --in "$S/tomo.mrc" --truth "$S/gt.mrc" --tilt-range 60 -60 --json "$O/e.json"
  refused tilt-range-beyond-eval "--tilt-range: .*tilt range \[-95, 95\]" "$BIN" eval \
    --in "$S/tomo.mrc" --truth "$S/gt.mrc" --tilt-range -95 95 --json "$O/e.json"
  refused tilt-range-reversed-simulate "tilt range 60 ?\.\. ?-60" "$BIN" simulate \
    --tilt-min 60 --tilt-max -60 --out "$O/sim"
  refused tilt-range-beyond-simulate "tilt range -95 ?\.\. ?95" "$BIN" simulate \
    --tilt-min -95 --tilt-max 95 --out "$O/sim"

  # 7. --threads: 0 is every core (works), negative or not a whole number is refused.
  check threads-0-works 0 "verdict +ok" -- "$BIN" --threads 0 info "$S/gt.mrc"
  refused threads-minus-1 "--threads: -1 is negative" "$BIN" --threads -1 convert \
    --in "$S/gt.mrc" --out "$O/c.mrc"
  refused threads-minus-1-after "--threads: -1 is negative" "$BIN" convert --in "$S/gt.mrc" \
    --out "$O/c.mrc" --threads -1
  refused threads-word "--threads = abc" "$BIN" --threads abc convert --in "$S/gt.mrc" \
    --out "$O/c.mrc"

  # 8. Options of the wrong type or out of range, on the command line and in a --config file.
  printf 'steps: abc\n' > "$H/bad.yaml"
  refused type-minutes "--minutes = abc" "$BIN" train "${PAIR[@]}" --out "$O/m.uwm" --minutes abc
  refused type-patch "--patch = 3.5" "$BIN" train "${PAIR[@]}" --out "$O/m.uwm" --steps 1 \
    --patch 3.5
  refused type-batch "--batch = 2.0" "$BIN" train "${PAIR[@]}" --out "$O/m.uwm" --steps 1 \
    --batch 2.0
  refused type-opt-number "option depth=notanumber is not a number" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --opt depth=notanumber
  refused type-opt-fraction "option base_channels=4.5" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --opt base_channels=4.5
  refused type-opt-no-value "option 'depth' is not KEY=VALUE" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --opt depth
  refused type-tile "--tile = abc" "$BIN" restore --model "$H/n2v.uwm" --in "$S/tomo.mrc" \
    --out "$O/r.mrc" --tile abc
  refused type-config "bad.yaml: key 'steps'.*--steps = abc" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --config "$H/bad.yaml"
  refused range-steps-overflow "--steps: 99999999999999999999 is out of the 64-bit" "$BIN" \
    train "${PAIR[@]}" --out "$O/m.uwm" --steps 99999999999999999999 "${TINY[@]}"
  refused range-seed-negative "--seed: -1 is negative" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --seed -1 "${TINY[@]}"
  refused range-seed-simulate "--seed: -1 is negative" "$BIN" simulate --seed -1 --out "$O/sim"
  refused range-lr-inf "lr: inf is not a positive finite number" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --steps 1 --lr 1e400 "${TINY[@]}"
  refused range-minutes-inf "--minutes inf is not a finite number" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --minutes inf "${TINY[@]}"
  refused range-minutes-nan "--minutes nan is not a finite number" "$BIN" train "${PAIR[@]}" \
    --out "$O/m.uwm" --minutes nan "${TINY[@]}"
  refused range-voxel-size-simulate "voxel size 0 A must be > 0" "$BIN" simulate \
    --voxel-size 0 --out "$O/sim"

  # 9. Checkpoints of another method or a newer format. A resume with another --method or other
  # --opt values leaves the run's files as they were.
  "$BIN" -q train "${PAIR[@]}" --out "$H/k.uwm" --steps 4 --stop-after 2 "${TINY[@]}" \
    > /dev/null 2>&1
  sums() { md5sum "$H"/k.* | md5sum; }
  before=$(sums)
  check ckpt-resume-other-method 1 "k.uwm: checkpoint holds method 'n2n', not --method n2v" -- \
    "$BIN" train --method n2v --in "$S/tomo.mrc" --out "$H/k.uwm" --steps 4 --resume "${TINY[@]}"
  check ckpt-resume-other-opt 1 "k.uwm: --opt values differ" -- "$BIN" train "${PAIR[@]}" \
    --out "$H/k.uwm" --steps 4 --resume "${TINY[@]}" --opt depth=2
  check ckpt-resume-refused-kept 0 "^$before$" -- sums
  refused ckpt-sample-deterministic "n2n.uwm: method n2n is deterministic" "$BIN" sample \
    --model "$H/n2n.uwm" --even "$S/even.mrc" --odd "$S/odd.mrc" --out-dir "$O/s"
  refused ckpt-tomogram-model-on-series "n2v.uwm is a tomogram-domain model" "$BIN" restore \
    --model "$H/n2v.uwm" --tilt-series "$S/tilt_series.mrc" --angles "$S/tilt_series.tlt" \
    --out "$O/r.mrc"
  # format_version is an int in the archive's data.pkl (pickle BININT1 after its key): 1 -> 2.
  # The same rewrite with the version left alone must still load (the control).
  uwm_version() {
    python3 - "$1" "$2" "$3" <<'EOF'
import sys, zipfile
src = zipfile.ZipFile(sys.argv[1])
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_STORED) as out:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith('/data.pkl'):
            key = b'X\x0e\x00\x00\x00format_versionq\x03K\x01'
            assert data.count(key) == 1, 'format_version not found'
            data = data.replace(key, key[:-1] + bytes([int(sys.argv[3])]))
        out.writestr(info, data)
EOF
  }
  uwm_version "$H/n2v.uwm" "$H/v1.uwm" 1 && uwm_version "$H/n2v.uwm" "$H/v2.uwm" 2
  check ckpt-rewritten-v1-loads 0 "wrote" -- "$BIN" restore --model "$H/v1.uwm" \
    --in "$S/tomo.mrc" --out "$H/rv1.mrc" --no-progress
  refused ckpt-newer-version "v2.uwm: checkpoint format_version 2 is not supported" "$BIN" \
    restore --model "$H/v2.uwm" --in "$S/tomo.mrc" --out "$O/r.mrc"
  cp "$H/v2.uwm" "$O/v2.uwm"
  check ckpt-newer-version-resume 1 "v2.uwm: checkpoint format_version 2" -- "$BIN" train \
    --method n2v --in "$S/tomo.mrc" --out "$O/v2.uwm" --steps 4 --resume "${TINY[@]}"
  check ckpt-newer-version-resume-nothing-written 0 "^v2.uwm$" -- ls -A "$O"
  find "$O" -mindepth 1 -delete

  # 10. A model trained at another voxel size: restore warns, naming both sizes, and restores.
  mrc_edit "$S/tomo.mrc" "$H/tomo5A.mrc" "f32(40, 320.0); f32(44, 320.0); f32(48, 160.0)"
  check voxel-size-warns 0 \
    "warning.*tomo5A.mrc has voxel size 5 A but .*n2v.uwm was trained at 10 A" -- "$BIN" \
    restore --model "$H/n2v.uwm" --in "$H/tomo5A.mrc" --out "$H/r5A.mrc" --no-progress
  check voxel-size-restored 0 "voxel size +5 x 5 x 5" -- "$BIN" info "$H/r5A.mrc"
  check voxel-size-same-no-warning 0 "^0$" -- bash -c "'$BIN' restore --model '$H/n2v.uwm' \
    --in '$S/tomo.mrc' --out '$H/r10A.mrc' --no-progress 2>&1 | grep -c 'trained at' || true"

  # 11. Non-ASCII and space-containing paths: simulate, train, restore, convert, eval, info.
  U="$H/dír ünï 日本/a b"
  mkdir -p "$U"
  check path-simulate 0 "wrote" -- "$BIN" simulate --preset tiny --out "$U/sím 1"
  check path-train 0 "wrote" -- "$BIN" train --method n2n --even "$U/sím 1/even.mrc" \
    --odd "$U/sím 1/odd.mrc" --out "$U/mödel 1.uwm" --steps 1 "${TINY[@]}"
  check path-restore 0 "wrote" -- "$BIN" restore --model "$U/mödel 1.uwm" \
    --even "$U/sím 1/even.mrc" --odd "$U/sím 1/odd.mrc" --out "$U/rést 1.mrc" --no-progress
  check path-convert 0 "wrote" -- "$BIN" convert --in "$U/rést 1.mrc" --out "$U/cönv 1.mrc" \
    --mode 12
  check path-eval 0 "PSNR" -- "$BIN" eval --in "$U/rést 1.mrc" --truth "$U/sím 1/gt.mrc" \
    --json "$U/évál 1.json"
  check path-info 0 "64 x 64 x 32 voxels.*mode +12" -- bash -c \
    "'$BIN' info '$U/cönv 1.mrc' | tr '\n' ' '"
  check path-config-beside 0 "rést 1.mrc" -- cat "$U/rést 1.config.yaml"
  check path-no-temporaries 0 "^$" -- find "$H/dír ünï 日本" -name '.*.tmp'

  # 12. Read-only output folders: one line naming the file, nothing left. chmod does not stop
  # root, so as root the folder is a read-only bind mount (skipped when that is not possible).
  RO="$H/readonly"
  mkdir -p "$RO"
  ro_ok=0
  if [[ $(id -u) -ne 0 ]]; then
    chmod 555 "$RO" && ro_ok=1
  elif mount --bind "$RO" "$RO" 2>/dev/null; then
    if mount -o remount,bind,ro "$RO" 2>/dev/null; then ro_ok=1; else umount "$RO"; fi
  fi
  if [[ $ro_ok -eq 1 ]] && ! touch "$RO/probe" 2>/dev/null; then
    O="$RO"
    ROE="readonly/.*(Read-only file system|Permission denied)"
    refused readonly-train "$ROE" "$BIN" train "${PAIR[@]}" --out "$RO/m.uwm" --steps 1 "${TINY[@]}"
    refused readonly-restore "$ROE" "$BIN" restore --model "$H/n2v.uwm" --in "$S/tomo.mrc" \
      --out "$RO/r.mrc" --no-progress
    refused readonly-convert "$ROE" "$BIN" convert --in "$S/gt.mrc" --out "$RO/c.mrc"
    refused readonly-simulate "$ROE" "$BIN" simulate --preset tiny --out "$RO/sim"
    refused readonly-reconstruct "$ROE" "$BIN" reconstruct "${TSA[@]}" \
      --angles "$S/tilt_series.tlt" --out "$RO/rec.mrc"
    refused readonly-eval-json "$ROE" "$BIN" eval --in "$S/tomo.mrc" --truth "$S/gt.mrc" \
      --json "$RO/e.json"
    O="$H/out"
  else
    echo "skip: cannot make a read-only folder here (root without mount), read-only checks not run"
  fi
  if [[ $(id -u) -eq 0 ]]; then umount "$RO" 2>/dev/null; fi
  rm -f "$RO/probe"
  chmod 755 "$RO"

  echo "hostile inputs: $((passes + fails - HOSTILE_CHECKS_START)) checks"
fi
