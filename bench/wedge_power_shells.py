#!/usr/bin/python3
"""Where a volume puts its missing-wedge power: per radial shell, the share of the volume's wedge
power in that shell and the ratio of its mean power per wedge coefficient to its mean power per
measured coefficient in the same shell (an isotropic volume has ratios near 1; a restoration that
under-fills the wedge has ratios below 1); and the wedge's largest single coefficient (with its
mirror): its share of the wedge power and its frequency. Needs no ground truth: run it on the truth
and on restorations alike. A failure mode of cryogen-ot's prior before its low-pass (2026-12-07)
shows as one coefficient at k_z = ±0.25, k_x = k_y = 0 holding a third or more of the wedge power: a
stripe along Z with the period of the prior's 4-voxel feature blocks (bench/RESULTS.md).

usage: /usr/bin/python3 bench/wedge_power_shells.py TILT_MIN TILT_MAX VOLUME.mrc [...]

The wedge is the region of (k_x, k_z) angles outside the tilt range, as in bench/shell_gains.py
and `unwedge eval` (docs/evaluation.md); k = 0 and the k_y axis are left out.
"""
import sys

import mrcfile
import numpy as np

from shell_gains import wedge_grid  # bench/ is the script's own folder, first on sys.path

EDGES = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.9]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    t0, t1 = float(sys.argv[1]), float(sys.argv[2])
    print("volume | " + " | ".join(f"{a:.2f}-{b:.2f}: share (wedge/measured)"
                                   for a, b in zip(EDGES[:-1], EDGES[1:]))
          + " | largest wedge coefficient: share (k_z, k_y, k_x)")
    for path in sys.argv[3:]:
        v = mrcfile.read(path).astype(np.float64)
        k, wedge, _, measured, w = wedge_grid(v.shape, t0, t1)
        p = w * np.abs(np.fft.rfftn(v - v.mean())) ** 2
        total = (p * wedge).sum()
        cells = []
        for a, b in zip(EDGES[:-1], EDGES[1:]):
            sw = wedge & (k >= a) & (k < b)
            sm = measured & (k >= a) & (k < b)
            if not sw.any() or not sm.any():
                cells.append("-")
                continue
            per_w = (p * sw).sum() / (w * sw).sum()
            per_m = (p * sm).sum() / (w * sm).sum()
            cells.append(f"{100 * (p * sw).sum() / total:5.1f} % ({per_w / per_m:.2f})")
        pw = np.where(wedge, p, 0.0)
        iz, iy, ix = np.unravel_index(np.argmax(pw), pw.shape)
        kz, ky, kx = np.fft.fftfreq(v.shape[0])[iz], np.fft.fftfreq(v.shape[1])[iy], np.fft.rfftfreq(v.shape[2])[ix]
        top = pw[iz, iy, ix]  # w counts the mirror of columns 0 < k_x < Nyquist; in the others
        mz, my = (-iz) % v.shape[0], (-iy) % v.shape[1]  # the mirror is its own half-grid entry
        if (ix == 0 or 2 * ix == v.shape[2]) and (mz, my) != (iz, iy):
            top += pw[mz, my, ix]
        cells.append(f"{100 * top / total:5.1f} % (±({kz:+.3f}, {ky:+.3f}, {kx:.3f}))")
        print(path + " | " + " | ".join(cells))


if __name__ == "__main__":
    main()
