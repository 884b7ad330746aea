#!/usr/bin/python3
"""Interoperability with python3-mrcfile, an independent MRC2014 implementation.

mrcfile writes files in every mode (0, 1, 2, 6, 12), big-endian, with an extended header and
with permuted axes; `unwedge convert` turns each into mode 2 and mrcfile must read back the same
values and voxel size. unwedge's own outputs (modes 2 and 12) must pass mrcfile.validate.

usage: mrcfile_interop.py UNWEDGE_BINARY     (exit 77 = skipped: mrcfile or numpy missing)
"""
import io
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import mrcfile
except ImportError as e:  # pragma: no cover
    print(f"skip: python3-mrcfile/numpy not importable by {sys.executable}: {e}")
    sys.exit(77)

BIN = sys.argv[1]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def convert(src, dst, *extra):
    r = subprocess.run([BIN, "-q", "convert", "--in", src, "--out", dst, *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
    return r.returncode == 0


def validate(path):
    buf = io.StringIO()
    ok = mrcfile.validate(path, print_file=buf)
    if not ok:
        print(buf.getvalue())
    return ok


rng = np.random.default_rng(1234)
shape = (6, 7, 9)  # file order [sections, rows, columns]
samples = {
    0: rng.integers(-128, 128, shape).astype(np.int8),
    1: rng.integers(-32768, 32768, shape).astype(np.int16),
    2: rng.uniform(1.0, 5.0, shape).astype(np.float32),
    6: rng.integers(0, 65536, shape).astype(np.uint16),
    12: (rng.integers(8, 40, shape) / 8.0).astype(np.float16),
}
voxel = (1.5, 2.0, 2.5)  # Å along x, y, z

with tempfile.TemporaryDirectory() as tmp:
    # 1. Every mode, little- and big-endian: unwedge reads what mrcfile wrote.
    for mode, arr in samples.items():
        for order in ("<", ">"):
            src = os.path.join(tmp, f"m{mode}{'be' if order == '>' else 'le'}.mrc")
            with mrcfile.new(src) as m:
                m.set_data(arr.astype(arr.dtype.newbyteorder(order)))
                m.voxel_size = voxel
            with mrcfile.open(src) as m:
                assert int(m.header.mode) == mode
                big = m.header.machst[0] == 0x11
            dst = src.replace(".mrc", "_f32.mrc")
            what = f"mode {mode} {'big' if big else 'little'}-endian"
            if not convert(src, dst):
                check(False, what + ": unwedge convert failed")
                continue
            with mrcfile.open(dst) as out:
                check(int(out.header.mode) == 2, what + ": output mode 2")
                check(np.array_equal(out.data, arr.astype(np.float32)), what + ": same values")
                vs = out.voxel_size
                check(np.allclose([vs.x, vs.y, vs.z], voxel, rtol=1e-6), what + ": voxel size")
    # 2. Extended header, kept on request.
    src = os.path.join(tmp, "ext.mrc")
    ext = np.frombuffer(bytes(range(160)), dtype="V1")
    with mrcfile.new(src) as m:
        m.set_data(samples[2])
        m.set_extended_header(ext)
        m.header.exttyp = b"AGAR"
        m.voxel_size = voxel
    dst = os.path.join(tmp, "ext_out.mrc")
    ok = convert(src, dst, "--keep-ext-header")
    with mrcfile.open(dst) as out:
        check(ok and np.array_equal(out.data, samples[2]), "extended header input: same values")
        check(int(out.header.nsymbt) == 160 and out.header.exttyp == b"AGAR"
              and bytes(out.extended_header.tobytes()) == bytes(range(160)),
              "extended header kept byte for byte with exttyp")
    check(validate(dst), "validate: output with extended header")
    # 3. Permuted axes: unwedge returns [Z, Y, X] in space; mrcfile gives file order.
    for perm in [(3, 1, 2), (2, 3, 1), (1, 3, 2)]:
        src = os.path.join(tmp, "perm%d%d%d.mrc" % perm)
        data = samples[2]  # [S, R, C]
        with mrcfile.new(src) as m:
            m.set_data(data)
            h = m.header
            h.mapc, h.mapr, h.maps = perm
            size = {perm[0]: data.shape[2], perm[1]: data.shape[1], perm[2]: data.shape[0]}
            h.mx, h.my, h.mz = size[1], size[2], size[3]  # along space x, y, z
            h.cella = (voxel[0] * size[1], voxel[1] * size[2], voxel[2] * size[3])
        file_dim = {perm[0]: 2, perm[1]: 1, perm[2]: 0}  # space axis -> file array dim
        expect = np.transpose(data, (file_dim[3], file_dim[2], file_dim[1]))  # [Z, Y, X]
        dst = src.replace(".mrc", "_out.mrc")
        ok = convert(src, dst)
        with mrcfile.open(dst) as out:
            what = "axis order %d,%d,%d" % perm
            check(ok and out.data.shape == expect.shape and np.array_equal(out.data, expect),
                  what + ": same values as [Z, Y, X]")
            vs = out.voxel_size
            check(np.allclose([vs.x, vs.y, vs.z], voxel, rtol=1e-6), what + ": voxel size")
    # 4. unwedge writes: mrcfile.validate passes and values match (modes 2 and 12, a crop).
    src = os.path.join(tmp, "m2le.mrc")
    for mode, expect in ((2, samples[2]), (12, samples[2].astype(np.float16))):
        dst = os.path.join(tmp, f"unwedge_mode{mode}.mrc")
        ok = convert(src, dst, "--mode", str(mode))
        check(ok and validate(dst), f"validate: unwedge mode {mode} output")
        with mrcfile.open(dst) as out:
            check(int(out.header.mode) == mode and np.array_equal(out.data, expect),
                  f"unwedge mode {mode} output: mrcfile reads the same values")
            check(b"unwedge" in out.header.label[int(out.header.nlabl) - 1],
                  f"unwedge mode {mode} output: label line added")
    dst = os.path.join(tmp, "crop.mrc")
    ok = convert(src, dst, "--box", "1", "5", "2", "7", "3", "9")
    check(ok and validate(dst), "validate: cropped output")
    with mrcfile.open(dst) as out:
        check(np.array_equal(out.data, samples[2][1:5, 2:7, 3:9]), "crop: same values as the slice")
        check((int(out.header.nxstart), int(out.header.nystart), int(out.header.nzstart)) == (3, 2, 1),
              "crop: nxstart/nystart/nzstart shifted by the box start")

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
