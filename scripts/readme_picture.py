#!/usr/bin/env python3
"""The README's picture: central XY (top) and XZ (bottom) slices of the ground truth, the
tomogram and its restoration, side by side, each volume on its own 1-99 % contrast.

usage: scripts/readme_picture.py DEMO_OUT OUT.png   (DEMO_OUT: what `make demo` wrote)
Needs python3 with numpy and mrcfile (the test packages); writes the PNG with zlib only."""
import struct
import sys
import zlib

import mrcfile
import numpy as np


def png_write(path, gray):
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[y].tobytes() for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def slices(path, zoom):
    v = mrcfile.read(path).astype(np.float64)  # [Z, Y, X]
    lo, hi = np.percentile(v, [1, 99])
    g = lambda a: np.clip((a - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    xy = g(v[v.shape[0] // 2])
    xz = g(v[:, v.shape[1] // 2, :])
    up = lambda a: np.kron(a, np.ones((zoom, zoom), np.uint8))
    return up(xy), up(xz)


def main():
    out_dir, png = sys.argv[1], sys.argv[2]
    cols = [slices(f"{out_dir}/{p}", 2) for p in ("data/gt.mrc", "data/tomo.mrc", "restored.mrc")]
    gap = 6
    w = sum(c[0].shape[1] for c in cols) + gap * (len(cols) - 1)
    h = cols[0][0].shape[0] + gap + cols[0][1].shape[0]
    canvas = np.full((h, w), 255, np.uint8)
    x = 0
    for xy, xz in cols:
        canvas[: xy.shape[0], x : x + xy.shape[1]] = xy
        canvas[xy.shape[0] + gap :, x : x + xz.shape[1]] = xz
        x += xy.shape[1] + gap
    png_write(png, canvas)


if __name__ == "__main__":
    main()
