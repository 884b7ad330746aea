#!/usr/bin/python3
"""A tomograms table written by unwedge, read by gemmi (python3-gemmi), an independent STAR/CIF
parser: the global table as RELION 5 imports it (one loop in data_global with rlnTomoName, the
optics columns the input had, rlnTomoTiltSeriesStarFile, sizes, binning, pixel size) and every
rlnTomoReconstructedTomogramDenoised file there, with the size the table says (mrcfile).

usage: star_gemmi.py OUTPUT_STAR INPUT_STAR [TOMO_NAME ...]
(exit 77 = skipped: gemmi or mrcfile not importable)
"""
import os
import sys

try:
    import gemmi
    import mrcfile
except ImportError as e:  # pragma: no cover
    print(f"skip: python3-gemmi/python3-mrcfile not importable by {sys.executable}: {e}")
    sys.exit(77)

out_path, in_path = sys.argv[1], sys.argv[2]
names = sys.argv[3:]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def table(path):
    doc = gemmi.cif.read(path)
    block = doc.find_block("global")
    check(block is not None, f"{path}: gemmi finds data_global")
    if block is None:
        return {}
    loop = block.find_loop("_rlnTomoName").get_loop()
    return {tag[1:]: [gemmi.cif.as_string(loop.val(r, c)) for r in range(loop.length())]
            for c, tag in enumerate(loop.tags)}


out = table(out_path)
inp = table(in_path)
if names:
    check(out.get("rlnTomoName") == names, f"tomogram names {out.get('rlnTomoName')} == {names}")
# RELION 5 reads these from the global table (IsoNet2's table lacked rlnVoltage there).
for label in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
              "rlnTomoTiltSeriesStarFile", "rlnTomoTiltSeriesPixelSize", "rlnTomoTomogramBinning",
              "rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ",
              "rlnTomoReconstructedTomogramDenoised"):
    check(label in out, f"global table has _{label}")
for label, values in inp.items():
    if label in ("rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"):
        continue
    check(out.get(label) == values, f"input column _{label} kept unchanged")
for i, path in enumerate(out.get("rlnTomoReconstructedTomogramDenoised", [])):
    check(os.path.isfile(path), f"{path} exists")
    if not os.path.isfile(path):
        continue
    with mrcfile.open(path, permissive=False) as m:
        nz, ny, nx = m.data.shape
        vs = float(m.voxel_size.x)
    size = (int(out["rlnTomoSizeX"][i]), int(out["rlnTomoSizeY"][i]), int(out["rlnTomoSizeZ"][i]))
    check(size == (nx, ny, nz), f"{path}: size {size} == mrcfile's {(nx, ny, nz)}")
    px = float(out["rlnTomoTiltSeriesPixelSize"][i]) * float(out["rlnTomoTomogramBinning"][i])
    check(abs(px - vs) < 1e-3 * vs, f"{path}: pixel size x binning {px:.4f} == voxel {vs:.4f}")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
