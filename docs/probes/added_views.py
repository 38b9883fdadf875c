"""Scores of views added to the default protocol's, exactly as a full run trains them
(a probe outside the package).

For each ``cue:size:seed`` on the command line: run the default row on the suite corpus
(``learnability.run_row``) with ``train.member_model`` set to the views of a config
(``--config``, whose first views are the saved run's), so that the package resolves the
folds, the member seeds (seed + 100 j) and the step budgets as a full run does; train
only the members of the added views (member ``j >= --skip``) and stand in for the
others with 25-step column-view models that are never scored; stop when the run has
pooled its out-of-fold scores (``train.view_scores``). Saves
``<out>/<cue>-<size>-s<seed>.npz``: ``ids``, ``P`` (the added views' pooled out-of-fold
scores), ``y``, ``Q`` (their test scores, the mean of each view's members), ``yt``,
``train_seconds`` (the added members' training time). With the saved scores of the
default's own run (``docs/probes/suite_scores.py``: its members are the first ``--skip``
members of the larger run, same seeds) the view weights and link fitted to the joined
scores give the full run's test RMSE: on short static 0 it reproduced a full package run
of the five views to the last digit (5.442).

Run: ``.venv/bin/python docs/probes/added_views.py --config experiments/X.toml --skip 9
--out outputs/added_views static:short:0``
"""
import argparse
import copy
import glob
import json
import os
import re
import time
import tomllib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

from depressionmlp import learnability, metrics, train  # noqa: E402
from depressionmlp.models import input_streams  # noqa: E402

STAND_IN = {"stream_blocks": False, "head_hidden": 16, "au_levels": "interleave",
            "inputs": "au"}


class _Pooled(Exception):
    """Raised once the run has pooled its out-of-fold scores."""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("jobs", nargs="+", metavar="CUE:SIZE:SEED")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--skip", type=int, default=9, help="members of the saved run (0 .. skip-1)")
    p.add_argument("--out", type=Path, default=Path("outputs/added_views"))
    p.add_argument("--suite-root", type=Path, default=Path("data/learnability"))
    args = p.parse_args()
    t_cfg = tomllib.loads(args.config.read_text())["train"]
    over = {"train": {k: t_cfg[k] for k in ("member_model", "member_step_scale")}}
    real_train, real_scores, pooled = train.train, train.view_scores, {}

    def member_or_stand_in(cfg, *a, **kw):
        m = re.search(r"-member(\d+)$", cfg.get("name", ""))
        if m and int(m.group(1)) < args.skip:
            cfg = copy.deepcopy(cfg)
            cfg["model"].update(STAND_IN)
            cfg["train"].update(steps=25, eval_every=25)
        return real_train(cfg, *a, **kw)

    def capture(*a):
        pooled["pool"] = real_scores(*a)
        raise _Pooled()

    train.train, train.view_scores = member_or_stand_in, capture
    for job in args.jobs:
        cue, size, seed = job.split(":")
        dst = args.out / f"{cue}-{size}-s{seed}.npz"
        if dst.exists():
            continue
        learnability.ensure_corpus(args.suite_root, cue, int(seed), size)
        root = learnability.corpus_root(args.suite_root, cue, int(seed), size)
        runs = args.out / "runs" / dst.stem
        t0 = time.time()
        try:
            learnability.run_row({"model": {"name": "DG+MG+Linear"}}, "default", root,
                                 int(seed), runs, overrides=over)
            raise SystemExit(f"{job}: the run did not pool out-of-fold scores")
        except _Pooled:
            pass
        run = Path(sorted(glob.glob(str(runs / "*")))[-1])
        cfg = json.loads((run / "config.json").read_text())
        layout = train.member_layout(cfg)
        first = json.loads((run / "members" / str(args.skip) / "config.json").read_text())
        settings = train.SegmentSettings.from_dict(first["resolved"]["segment"])
        test = train.load_tables(cfg, settings, ["test"])["test"]
        added = sorted({v for j, (_, v) in enumerate(layout) if j >= args.skip})
        Q, seconds = np.zeros((test.n_recordings, len(added))), 0.0
        for j, (_, view) in enumerate(layout):
            if j < args.skip:
                continue
            member = run / "members" / str(j)
            seconds += json.loads((member / "metrics.json").read_text())["train_seconds"]
            model = train.load_model_file(member / "best.keras")
            seg = train.predict_segments(model, test, input_streams(model))
            _, pred, yt = metrics.aggregate_by_recording(
                test.recording_ids[test.recording], seg, test.labels)
            Q[:, added.index(view)] += pred / cfg["train"]["ensemble"]
        ids, P, y = pooled.pop("pool")
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(dst, ids=ids, P=P[:, added], y=y, Q=Q, yt=yt, train_seconds=seconds)
        print(f"{dst.stem}: views {added}, {seconds:.0f} s of training, "
              f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
