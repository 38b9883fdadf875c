"""How sure is each suite cell's side of the 0.6x line? A probe outside the package
(docs/learnability.md, "How sure the 0.6x line is, cell by cell").

Input: one ``.npz`` per suite corpus, named ``<cue>-<size>-s<seed>.npz``, holding a
default-protocol run's pooled out-of-fold view scores ``P`` (R, V) and labels ``y``
(R,), its test view scores ``Q`` (T, V) and labels ``yt`` (T,): what
``train.view_scores`` and the members' test predictions give (the session that
measured this saved them from ``learnability.run_row`` runs of the default). The
default's recording score is rebuilt from them as a run builds it (view weights, then
the quadratic link). The mean predictor's constant (the training split's mean label)
is given per corpus on the command line as ``--mean-rmse tag=RMSE`` (the suite table's
mean-predictor RMSE) and solved for.

Each of 4,000 draws resamples every corpus's test recordings with replacement; a
cell's ratio is the mean of its corpora's default RMSE over the mean of their
mean-predictor RMSE.

Run: ``python docs/probes/line_bootstrap.py DIR --mean-rmse blink-short-s0=11.74 ...``
"""
import argparse
import os
from pathlib import Path

import numpy as np

from depressionmlp import metrics, train


def linked_scores(d):
    w = train.fit_view_weights(d["P"], d["y"])
    link = train.fit_recording_link(d["P"] @ w, d["y"])
    return metrics.apply_recording_link(link, d["Q"] @ w)


def mean_constant(yt, rmse, pooled_mean):
    """The constant c with RMSE(c, yt) = rmse nearest ``pooled_mean``."""
    half = np.sqrt(max(rmse * rmse - np.var(yt), 0.0))
    return min((yt.mean() + half, yt.mean() - half), key=lambda c: abs(c - pooled_mean))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scores", type=Path, help="folder of <cue>-<size>-s<seed>.npz files")
    p.add_argument("--mean-rmse", nargs="+", required=True, metavar="TAG=RMSE")
    p.add_argument("--draws", type=int, default=4000)
    p.add_argument("--line", type=float, default=0.6)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cells = {}
    for item in args.mean_rmse:
        tag, value = item.split("=")
        d = dict(np.load(args.scores / f"{tag}.npz"))
        pred = linked_scores(d)
        c = mean_constant(d["yt"], float(value), float(d["y"].mean()))
        cue, size, _ = tag.split("-")
        cells.setdefault((cue, size), []).append((pred, c, d["yt"]))
    print("| cue | size | default / mean predictor | 90 % interval | draws below the line |")
    print("|---|---|---:|---:|---:|")
    for (cue, size), corpora in cells.items():
        num, den = np.zeros(args.draws), np.zeros(args.draws)
        point_num = point_den = 0.0
        for pred, c, yt in corpora:
            idx = rng.integers(0, len(yt), (args.draws, len(yt)))
            num += np.sqrt(np.mean((pred[idx] - yt[idx]) ** 2, axis=1))
            den += np.sqrt(np.mean((c - yt[idx]) ** 2, axis=1))
            point_num += np.sqrt(np.mean((pred - yt) ** 2))
            point_den += np.sqrt(np.mean((c - yt) ** 2))
        ratio = num / den
        lo, hi = np.quantile(ratio, [0.05, 0.95])
        print(f"| {cue} | {size} | {point_num / point_den:.3f} | {lo:.2f}-{hi:.2f} | "
              f"{np.mean(ratio < args.line):.0%} |")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
