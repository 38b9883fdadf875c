"""Does the spread of a recording's segment scores carry what their mean loses?
A probe outside the package (docs/learnability.md, "The spread of segment scores").

For each default-protocol run directory named on the command line (a cross-fitted
run with fitted view weights, e.g. one written by ``make learnability``; its corpus
must still be under its ``data_root``): every member scores its held-out fold of the
pooled train + dev recordings and the test split, segment by segment. Per recording
and view: the mean, standard deviation and 10th / 90th percentiles of the segment
scores (test: each segment's score averaged over the view's members first). Then,
fitted on the pooled out-of-fold recordings and scored on test:

- ``default``: the run's own recording score (non-negative view weights on the means,
  then the quadratic link: ``train.fit_view_weights``, ``train.fit_recording_link``);
- ``+ sd``, ``+ sd + q``: a ridge (standardised inputs, alpha by leave-one-out) on
  that linked score and the views' means and standard deviations (and percentiles);
- ``means``: the same ridge on the linked score and the means alone (the control).

Run: ``.venv/bin/python docs/probes/segment_spread.py RUN_DIR [RUN_DIR ...]``
(about 15 s a run on 2 CPU cores).
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
from sklearn.linear_model import RidgeCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from depressionmlp import metrics, train  # noqa: E402
from depressionmlp.data.sampler import SegmentTable  # noqa: E402


def spread(scores, rec, n):
    """(n, 4) mean, sd, 10th and 90th percentile of each recording's segment scores."""
    return np.array([[s.mean(), s.std(), *np.quantile(s, [0.1, 0.9])]
                     for s in (scores[rec == r] for r in range(n))])


def features(run_dir: Path):
    cfg = json.loads((run_dir / "config.json").read_text())
    settings = train.SegmentSettings.from_dict(cfg["resolved"]["segment"])
    streams = train.model_streams(cfg)
    tabs = train.load_tables(cfg, settings, ["train", "dev", "test"])
    folds = train.cross_folds(cfg, tabs["train"], tabs["dev"])
    pool, test = SegmentTable.concat([tabs["train"], tabs["dev"]]), tabs["test"]
    layout = train.member_layout(cfg)
    views = 1 + max(v for _, v in layout)
    seg_fold = folds[pool.recording]
    oof, tst = np.zeros((pool.n_segments, views)), np.zeros((test.n_segments, views))
    for j, (fold, view) in enumerate(layout):
        model = train.load_model_file(run_dir / "members" / str(j) / "best.keras")
        mine = seg_fold == fold
        oof[mine, view] = train.predict_segments(model, pool, streams)[mine]
        tst[:, view] += train.predict_segments(model, test, streams) / (len(layout) // views)
    fp = np.stack([spread(oof[:, v], pool.recording, pool.n_recordings) for v in range(views)], 1)
    ft = np.stack([spread(tst[:, v], test.recording, test.n_recordings) for v in range(views)], 1)
    return (fp, np.asarray(pool.recording_labels, float), ft,
            np.asarray(test.recording_labels, float))


def compare(fp, y, ft, yt) -> dict:
    def rmse(p, t):
        return float(np.sqrt(np.mean((p - t) ** 2)))
    w = train.fit_view_weights(fp[:, :, 0], y)
    link = train.fit_recording_link(fp[:, :, 0] @ w, y)
    z = metrics.apply_recording_link(link, fp[:, :, 0] @ w)
    zt = metrics.apply_recording_link(link, ft[:, :, 0] @ w)
    out = {"default": rmse(zt, yt)}
    for name, cols in (("+ sd", [0, 1]), ("+ sd + q", [0, 1, 2, 3]), ("means", [0])):
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 30)))
        ridge.fit(np.c_[z, fp[:, :, cols].reshape(len(y), -1)], y)
        out[name] = rmse(ridge.predict(np.c_[zt, ft[:, :, cols].reshape(len(yt), -1)]), yt)
    return out


if __name__ == "__main__":
    rows = []
    for arg in sys.argv[1:]:
        row = compare(*features(Path(arg)))
        rows.append(row)
        print(Path(arg).name, "  ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    if rows:
        print("mean", "  ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in rows[0]))
