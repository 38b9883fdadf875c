"""Save a default-protocol suite run's per-view scores (a probe outside the package).

For each ``cue:size:seed`` on the command line (e.g. ``blink:short:0``): build the
suite corpus if needed (``learnability.ensure_corpus``), run the default row as
``make learnability`` runs it (``learnability.run_row``), and save to
``<out>/<cue>-<size>-s<seed>.npz``:

- ``ids``, ``P`` (R, V), ``y`` (R,): the pooled train + dev recordings' out-of-fold
  scores of each view, as the run fitted its view weights and link to them
  (``train.view_scores``, captured by wrapping it for the run);
- ``Q`` (T, V), ``yt`` (T,): each view's test scores (the mean of its members' recording
  scores, no link), and ``w``: the run's view weights.

``docs/probes/line_bootstrap.py`` and the post-hoc comparisons of docs/learnability.md
("A link after the recording mean", "A windowed read-out for the column view") read
these files. Each run is a full default run: about 3-7 minutes on 2 CPU cores.

Run: ``.venv/bin/python docs/probes/suite_scores.py --out outputs/suite_scores blink:short:0``
(``--override '{"model": {...}}'`` runs the default with those config overrides).
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

from depressionmlp import learnability, metrics, train  # noqa: E402
from depressionmlp.models import input_streams  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("jobs", nargs="+", metavar="CUE:SIZE:SEED")
    p.add_argument("--out", type=Path, default=Path("outputs/suite_scores"))
    p.add_argument("--suite-root", type=Path, default=Path("data/learnability"))
    p.add_argument("--override", type=json.loads, default=None, metavar="JSON",
                   help='config overrides of the default row, e.g. \'{"model": {...}}\'')
    args = p.parse_args()
    captured = {}
    view_scores = train.view_scores

    def capture(*a):
        captured["pool"] = view_scores(*a)
        return captured["pool"]

    train.view_scores = capture          # the run calls it once, to fit weights and link
    for job in args.jobs:
        cue, size, seed = job.split(":")
        dst = args.out / f"{cue}-{size}-s{seed}.npz"
        if dst.exists():
            continue
        learnability.ensure_corpus(args.suite_root, cue, int(seed), size)
        root = learnability.corpus_root(args.suite_root, cue, int(seed), size)
        row = learnability.run_row({"model": {"name": "DG+MG+Linear"}}, "default", root,
                                   int(seed), args.out / "runs" / dst.stem, args.override)
        run = Path(row["run_dir"])
        cfg = json.loads((run / "config.json").read_text())
        settings = train.SegmentSettings.from_dict(cfg["resolved"]["segment"])
        layout = train.member_layout(cfg)
        test = train.load_tables(cfg, settings, ["test"])["test"]
        views = 1 + max(v for _, v in layout)
        Q, count = 0.0, np.zeros(views)
        for j, (_, view) in enumerate(layout):
            model = train.load_model_file(run / "members" / str(j) / "best.keras")
            seg = train.predict_segments(model, test, input_streams(model))   # its own streams
            _, pred, yt = metrics.aggregate_by_recording(
                test.recording_ids[test.recording], seg, test.labels)
            Q = Q + np.eye(views)[view] * pred[:, None]
            count[view] += 1
        ids, P, y = captured.pop("pool")
        w = np.array(json.loads((run / "metrics.json").read_text())["view_weights"])
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(dst, ids=ids, P=P, y=y, Q=Q / count, yt=yt, w=w)
        print(f"{dst.stem}: test RMSE {row['test_rmse']:.2f}, {row['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
