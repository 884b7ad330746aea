#!/usr/bin/env python3
"""Writes the MRC seed corpus (tests/fuzz/corpus/mrc/): small valid files of every mode read
(0, 1, 2, 6, 12), both byte orders, a permuted axis order, an extended header (FEI1-like and
SERI) and an IMOD-stamped unsigned-byte file. Standard library only; rerun to regenerate.
"""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "mrc")
FMT = {0: "b", 1: "h", 2: "f", 6: "H", 12: "e"}


def mrc(nx, ny, nz, mode, order="<", mapcrs=(1, 2, 3), ext=b"", exttyp=b"\0\0\0\0",
        imod_unsigned=False, nversion=20140):
    n = nx * ny * nz
    vals = [(i * 7) % 13 - 3 for i in range(n)]
    if mode == 6:
        vals = [v + 3 for v in vals]
    if mode == 0 and imod_unsigned:
        vals = [v + 3 for v in vals]
    fv = [float(v) for v in vals]
    mean = sum(fv) / n
    rms = (sum((v - mean) ** 2 for v in fv) / n) ** 0.5
    h = bytearray(1024)
    struct.pack_into(order + "10i", h, 0, nx, ny, nz, mode, 0, 0, 0, nx, ny, nz)
    struct.pack_into(order + "6f", h, 40, nx * 2.0, ny * 2.0, nz * 2.0, 90, 90, 90)
    struct.pack_into(order + "3i", h, 64, *mapcrs)
    struct.pack_into(order + "3f", h, 76, min(fv), max(fv), mean)
    struct.pack_into(order + "2i", h, 88, 1, len(ext))
    h[104:108] = exttyp
    struct.pack_into(order + "i", h, 108, nversion)
    if imod_unsigned:
        struct.pack_into(order + "2i", h, 152, 1146047817, 1)  # IMOD stamp, flags bit 0
    struct.pack_into(order + "3f", h, 196, 1.5, -2.0, 0.25)
    h[208:212] = b"MAP "
    h[212:216] = b"\x44\x44\0\0" if order == "<" else b"\x11\x11\0\0"
    struct.pack_into(order + "f", h, 216, rms)
    struct.pack_into(order + "i", h, 220, 1)
    h[224:224 + 20] = b"fuzz seed".ljust(20)
    code = FMT[mode]
    if mode == 0 and imod_unsigned:
        code = "B"
    data = struct.pack(order + code * n, *vals)
    return bytes(h) + ext + data


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    for mode in (0, 1, 2, 6, 12):
        seeds[f"mode{mode}_le.mrc"] = mrc(4, 3, 2, mode)
        seeds[f"mode{mode}_be.mrc"] = mrc(4, 3, 2, mode, order=">")
    seeds["mode2_axes_312.mrc"] = mrc(3, 2, 4, 2, mapcrs=(3, 1, 2))
    seeds["mode2_ext_fei1.mrc"] = mrc(4, 3, 2, 2, ext=bytes(range(256)) * 2, exttyp=b"FEI1")
    seeds["mode1_ext_seri_be.mrc"] = mrc(4, 3, 2, 1, order=">", ext=b"\0\x05" * 64,
                                        exttyp=b"SERI")
    seeds["mode0_imod_unsigned.mrc"] = mrc(4, 3, 2, 0, imod_unsigned=True)
    seeds["mode2_nversion0.mrc"] = mrc(2, 2, 2, 2, nversion=0)
    seeds["mode2_one_voxel.mrc"] = mrc(1, 1, 1, 2)
    for name, b in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b)
    print(f"{len(seeds)} files in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
