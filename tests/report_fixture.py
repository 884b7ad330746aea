#!/usr/bin/python3
"""Writes a small synthetic report fixture for the report tests (independent of unwedge).

usage: report_fixture.py OUT_DIR [N]
Writes gt.mrc (Gaussian blobs), mask.mrc (central box), tomo.mrc (gt through a +-60 deg missing wedge plus noise),
two "restored" volumes (a low-passed input; gt plus noise with a std map), a JSONL loss log and
report.json following docs/evaluation.md. Exits 77 when numpy or mrcfile is missing.
"""
import json
import os
import sys

try:
    import mrcfile
    import numpy as np
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 48
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
z, y, x = np.meshgrid(*(np.arange(n),) * 3, indexing="ij")
gt = np.zeros((n, n, n))
for _ in range(30):
    c = rng.uniform(0.2 * n, 0.8 * n, 3)
    s = rng.uniform(1.0, 3.0)
    gt += np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * s * s))
kz = np.fft.fftfreq(n)[:, None, None]
kx = np.fft.fftfreq(n)[None, None, :]
phi = np.degrees(np.arctan2(kz, kx))
phi = np.where(phi > 90, phi - 180, np.where(phi <= -90, phi + 180, phi))
measured = (np.abs(phi) <= 60) | (kz == 0)
measured = np.broadcast_to(measured, (n, n, n))
tomo = np.real(np.fft.ifftn(np.fft.fftn(gt) * measured)) + 0.3 * rng.standard_normal(gt.shape)
k2 = kz ** 2 + np.fft.fftfreq(n)[None, :, None] ** 2 + kx ** 2
lowpass = np.real(np.fft.ifftn(np.fft.fftn(tomo) * np.exp(-k2 / (2 * 0.08 ** 2))))
sampled = gt + 0.1 * rng.standard_normal(gt.shape)
std = 0.1 + 0.05 * np.abs(np.sin(x / 5.0))
mask = ((np.abs(z - n / 2) < n / 3) & (np.abs(y - n / 2) < n / 3) & (np.abs(x - n / 2) < n / 3))


def save(name, a):
    with mrcfile.new(os.path.join(out, name), overwrite=True) as m:
        m.set_data(a.astype(np.float32))
        m.voxel_size = 10.0


for name, a in [("gt.mrc", gt), ("tomo.mrc", tomo), ("lowpass.mrc", lowpass),
                ("sampled.mrc", sampled), ("sampled_std.mrc", std),
                ("mask.mrc", mask.astype(np.float32))]:
    save(name, a)
with open(os.path.join(out, "train_log.jsonl"), "w") as f:
    for step in range(0, 200, 10):
        rec = {"step": step, "loss": 1.0 / (1 + step / 20) + 0.05}
        if step % 50 == 0:
            rec["val_loss"] = 1.1 / (1 + step / 25) + 0.08
        f.write(json.dumps(rec) + "\n")
report = {
    "title": "unwedge report (synthetic fixture)",
    "gt": "gt.mrc",
    "input": "tomo.mrc",
    "tilt_range_deg": [-60, 60],
    "methods": [
        {"name": "baseline: low-pass", "restored": "lowpass.mrc", "wall_s": 0.1},
        {"name": "sampler", "restored": "sampled.mrc", "std": "sampled_std.mrc",
         "loss_log": "train_log.jsonl", "steps": 190, "wall_s": 12.5},
    ],
}
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
print(os.path.join(out, "report.json"))
