#!/usr/bin/python3
"""How much of a restoration's wedge-band CC is lost to its spectral balance rather than its content:
per radial shell of the missing wedge, the truth's share of the wedge power and the CC there; then
the wedge-band and overall CC as they are and after an oracle gain per shell (the least-squares
factor onto the truth, chosen on the truth: a ceiling no method can reach without it).

usage: /usr/bin/python3 bench/shell_gains.py GT.mrc TILT_MIN TILT_MAX RESTORED.mrc [...]

The wedge is the missing region about Y of the tilt range (|k_z| beyond the tilt limits), the deep
wedge starts 10 degrees past them, as `unwedge eval` defines them (docs/evaluation.md).
"""
import sys

import mrcfile
import numpy as np


def wedge_grid(shape, tilt_min_deg, tilt_max_deg):
    """The rfft half-grid of a volume of `shape` [Z, Y, X]: |k| (cycles/voxel), the missing wedge,
    the deep wedge (10 degrees past the tilt limits), the measured band, and the weight that
    counts each coefficient's mirror. A coefficient is measured when the angle of (kx, kz),
    atan2(kz, kx) folded into [-90, 90] degrees, lies in the tilt range (the convention of
    ops/wedge.h); kx = kz = 0 is in neither. On `small` seed 7 at -50..+65 this gives wedge-band
    and deep-wedge CCs within 0.002 of `unwedge eval`'s."""
    z, y, x = shape
    t0, t1 = np.deg2rad(tilt_min_deg), np.deg2rad(tilt_max_deg)
    kz = np.fft.fftfreq(z)[:, None, None]
    ky = np.fft.fftfreq(y)[None, :, None]
    kx = np.fft.rfftfreq(x)[None, None, :]
    kz, ky, kx = np.broadcast_arrays(kz, ky, kx)
    ang = np.arctan2(kz, kx)
    ang = np.where(ang > np.pi / 2, ang - np.pi, np.where(ang < -np.pi / 2, ang + np.pi, ang))
    margin = np.deg2rad(10.0)
    zero = (kx == 0) & (kz == 0)
    inside = (ang >= t0) & (ang <= t1)
    wedge = ~inside & ~zero
    deep = ~((ang >= t0 - margin) & (ang <= t1 + margin)) & ~zero
    measured = inside & ~zero
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    w = np.where((kx == 0) | ((x % 2 == 0) & (kx == 0.5)), 1.0, 2.0)  # rfft: count the mirror
    return k, wedge, deep, measured, w


def main():
    gt = mrcfile.read(sys.argv[1]).astype(np.float64)
    k, wedge, deep, _, w = wedge_grid(gt.shape, float(sys.argv[2]), float(sys.argv[3]))
    g = np.fft.rfftn(gt - gt.mean())

    def cc(a, b, s):
        num = (w * (a * np.conj(b)).real * s).sum()
        return num / np.sqrt((w * np.abs(a) ** 2 * s).sum() * (w * np.abs(b) ** 2 * s).sum())

    edges = [0.0, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.9]
    total = (w * np.abs(g) ** 2 * wedge).sum()
    fine = np.linspace(0, 0.87, 40)
    for path in sys.argv[4:]:
        r = np.fft.rfftn(mrcfile.read(path).astype(np.float64))
        r[0, 0, 0] = 0
        print(path)
        print("  wedge shell (cycles/voxel)  truth's power %   CC")
        for a, b in zip(edges[:-1], edges[1:]):
            s = wedge & (k >= a) & (k < b)
            if s.any():
                share = 100 * (w * np.abs(g) ** 2 * s).sum() / total
                print(f"  {a:.3f}-{b:.3f}                {share:6.2f}          {cc(g, r, s):6.3f}")
        tuned = r.copy()
        for a, b in zip(fine[:-1], fine[1:]):
            for band in (wedge, ~wedge):
                s = band & (k >= a) & (k < b)
                rr = (w * np.abs(r) ** 2 * s).sum()
                if rr > 0:
                    tuned[s] *= (w * (g * np.conj(r)).real * s).sum() / rr
        every = np.ones_like(wedge)
        print(f"  wedge-band CC {cc(g, r, wedge):.3f} -> {cc(g, tuned, wedge):.3f} with oracle shell gains; "
              f"deep wedge {cc(g, r, deep):.3f} -> {cc(g, tuned, deep):.3f}; "
              f"CC {cc(g, r, every):.3f} -> {cc(g, tuned, every):.3f}")


if __name__ == "__main__":
    main()
