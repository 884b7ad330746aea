#!/usr/bin/python3
"""Reference SSIM from scikit-image for tests/test_eval.cpp.

usage: ssim_skimage.py A.raw B.raw Z Y X DATA_RANGE gaussian|uniform
A and B are raw little-endian float64 volumes in C order [Z, Y, X]. Prints the SSIM.
Exits 77 when numpy or scikit-image is missing.
"""
import sys

try:
    import numpy as np
    from skimage.metrics import structural_similarity
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

a_path, b_path, z, y, x, data_range, window = sys.argv[1:8]
shape = (int(z), int(y), int(x))
a = np.fromfile(a_path, dtype="<f8").reshape(shape)
b = np.fromfile(b_path, dtype="<f8").reshape(shape)
if window == "gaussian":
    s = structural_similarity(a, b, data_range=float(data_range), gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False)
else:
    s = structural_similarity(a, b, data_range=float(data_range), win_size=7,
                              use_sample_covariance=False)
print(f"{s:.12f}")
