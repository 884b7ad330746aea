# Smoke tests of `unwedge reconstruct` (sourced by smoke.sh: check, $BIN, $WORK, $SRC).
# A tiny tilt series (7 tilts of 24 x 16) is written as a plain float32 MRC by python3.
if command -v python3 >/dev/null; then
  python3 - "$WORK/ts.mrc" <<'PY'
import math, struct, sys
nx, ny, nz = 24, 16, 7
data = [math.exp(-((x - 11.5) ** 2 + (y - 7.5) ** 2) / 8.0) * (1 + 0.1 * z)
        for z in range(nz) for y in range(ny) for x in range(nx)]
h = bytearray(1024)
struct.pack_into("<3i i 3i 3i 3f 3f 3i 3f", h, 0, nx, ny, nz, 2, 0, 0, 0, nx, ny, nz,
                 nx * 10.0, ny * 10.0, nz * 10.0, 90, 90, 90, 1, 2, 3,
                 min(data), max(data), sum(data) / len(data))
struct.pack_into("<i", h, 108, 20140)
h[208:212] = b"MAP "
h[212:216] = bytes([0x44, 0x44, 0, 0])
with open(sys.argv[1], "wb") as f:
    f.write(h)
    f.write(struct.pack("<%df" % len(data), *data))
PY
  printf '%s\n' -60 -40 -20 0 20 40 60 > "$WORK/ts.tlt"
  printf '%s\n' -60 -40 -20 0 20 40 > "$WORK/ts6.tlt"
  check reconstruct-help 0 "sirt-iterations.*10" -- "$BIN" reconstruct --help
  check reconstruct 0 "" -- "$BIN" reconstruct --tilt-series "$WORK/ts.mrc" --angles "$WORK/ts.tlt" \
    --thickness 12 --out "$WORK/tomo.mrc"
  check reconstruct-info 0 "24 x 16 x 12" -- "$BIN" info "$WORK/tomo.mrc"
  check reconstruct-voxel 0 "voxel size +10 x 10 x 10" -- "$BIN" info "$WORK/tomo.mrc"
  check reconstruct-exists 1 "tomo.mrc exists" -- "$BIN" reconstruct --tilt-series "$WORK/ts.mrc" \
    --angles "$WORK/ts.tlt" --thickness 12 --out "$WORK/tomo.mrc"
  check reconstruct-split 0 "" -- "$BIN" reconstruct --tilt-series "$WORK/ts.mrc" \
    --angles "$WORK/ts.tlt" --thickness 12 --out "$WORK/half.mrc" --split even-odd \
    --filter sirt-like --sirt-iterations 5 --lowpass 0.35
  check reconstruct-even 0 "24 x 16 x 12" -- "$BIN" info "$WORK/half_even.mrc"
  check reconstruct-odd 0 "24 x 16 x 12" -- "$BIN" info "$WORK/half_odd.mrc"
  check reconstruct-count 1 "6 angles but .*ts.mrc has 7 sections" -- "$BIN" reconstruct \
    --tilt-series "$WORK/ts.mrc" --angles "$WORK/ts6.tlt" --thickness 12 --out "$WORK/x.mrc"
else
  echo "skip: python3 absent, reconstruct smoke tests not run"
fi
