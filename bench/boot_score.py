#!/usr/bin/python3
"""Scores an `unwedge sample` output folder against a ground truth: Pearson and Spearman
correlation of the posterior std with the absolute error, and the sparsification figures (RMSE
left after removing the most uncertain voxels, against removing the largest errors first).

usage: /usr/bin/python3 bench/boot_score.py SAMPLE_DIR GT.mrc

The mean is mapped onto the truth's scale by a least-squares affine fit first (the std with it).
"""
import sys

import mrcfile
import numpy as np


def ranks(x):
    r = np.empty(x.size)
    r[np.argsort(x.ravel(), kind="stable")] = np.arange(x.size)
    return r


def main():
    folder, truth = sys.argv[1], sys.argv[2]
    mean = mrcfile.read(folder + "/mean.mrc").astype(np.float64)
    std = mrcfile.read(folder + "/std.mrc").astype(np.float64)
    gt = mrcfile.read(truth).astype(np.float64)
    slope, offset = np.polyfit(mean.ravel(), gt.ravel(), 1)
    err = np.abs(gt - (slope * mean + offset)).ravel()
    sd = (std * abs(slope)).ravel()
    print("pearson %.3f spearman %.3f" % (np.corrcoef(sd, err)[0, 1],
                                          np.corrcoef(ranks(sd), ranks(err))[0, 1]))
    sq = err ** 2
    by_std, by_err = np.argsort(-sd), np.argsort(-err)
    for f in (0.1, 0.3, 0.5):
        k = int(f * sq.size)
        print("remove %.0f%%: rmse left by std %.4f, oracle %.4f, all %.4f" % (
            100 * f, np.sqrt(np.delete(sq, by_std[:k]).mean()),
            np.sqrt(np.delete(sq, by_err[:k]).mean()), np.sqrt(sq.mean())))


if __name__ == "__main__":
    main()
