"""One table per experiment target: every run directory under a folder, side by side.

``summarize(runs_dir)`` reads each ``*/metrics.json`` (and ``predictions_<split>.csv``)
and returns rows of recording-level metrics per run and split, plus Table V's
Friedman test: do the models' absolute errors on the same recordings differ?
Each row carries the run's view weights (``train.member_model`` with
``member_weights = "fit"``): how much of an ensemble's score each view of the input
gives, e.g. how much a view without blocks gives in a table that compares blocks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy import stats

from depressionmlp.errors import DataError
from depressionmlp.runs import write_json_atomic, write_text_atomic


def _runs(runs_dir: Path):
    for mfile in sorted(runs_dir.glob("*/metrics.json")):
        try:
            yield mfile.parent, json.loads(mfile.read_text())
        except json.JSONDecodeError as e:
            raise DataError(mfile, f"not valid JSON: {e}") from None


def _abs_errors(run_dir: Path, split: str) -> dict:
    path = run_dir / f"predictions_{split}.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {r["recording_id"]: abs(float(r["predicted"]) - float(r["true"]))
                for r in csv.DictReader(f)}


def friedman(runs: list, split: str) -> dict | None:
    """Friedman test over runs' per-recording absolute errors (Table V)."""
    errs = [(meta["name"], _abs_errors(d, split)) for d, meta in runs]
    errs = [(n, e) for n, e in errs if e]
    if len(errs) < 3:
        return None
    common = sorted(set.intersection(*(set(e) for _, e in errs)))
    if len(common) < 2:
        return None
    table = np.array([[e[r] for r in common] for _, e in errs])
    stat, p = stats.friedmanchisquare(*table)
    ranks = stats.rankdata(table, axis=0).mean(axis=1)
    return {"split": split, "statistic": float(stat), "p_value": float(p),
            "recordings": len(common),
            "mean_rank": {n: float(r) for (n, _), r in zip(errs, ranks)}}


def summarize(runs_dir) -> dict:
    runs_dir = Path(runs_dir)
    runs = list(_runs(runs_dir))
    if not runs:
        raise DataError(runs_dir, "no run directories with metrics.json here")
    rows = []
    for d, meta in runs:
        for split, r in meta["splits"].items():
            rows.append({"run": d.name, "name": meta["name"], "model": meta["model"],
                         "inputs": meta.get("inputs"), "params": meta.get("params"),
                         "split": split, "rmse": r["rmse"], "mae": r["mae"], "r2": r["r2"],
                         "smape": r["smape"],
                         "mean_predictor_rmse": r.get("mean_predictor", {}).get("rmse"),
                         "view_weights": meta.get("view_weights")})
    splits = sorted({r["split"] for r in rows})
    return {"rows": rows, "friedman": [f for s in splits if (f := friedman(runs, s))]}


def to_markdown(summary: dict) -> str:
    out = ["| run | model | inputs | params | split | RMSE | MAE | R2 | SMAPE | mean-pred RMSE "
           "| view weights |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        views = " / ".join(f"{w:.2f}" for w in r.get("view_weights") or []) or "-"
        out.append(f"| {r['name']} | {r['model']} | {r['inputs']} | {r['params']:,} | "
                   f"{r['split']} | {r['rmse']:.2f} | {r['mae']:.2f} | {r['r2']:.3f} | "
                   f"{r['smape']:.1f} | {r['mean_predictor_rmse'] or float('nan'):.2f} | "
                   f"{views} |")
    for f in summary["friedman"]:
        out += ["", f"Friedman test on {f['split']} absolute errors over {f['recordings']} "
                    f"recordings: chi2 = {f['statistic']:.2f}, p = {f['p_value']:.3g}; "
                    "mean ranks (lower is better): " + ", ".join(
                        f"{n} {r:.2f}" for n, r in sorted(f["mean_rank"].items(),
                                                          key=lambda kv: kv[1]))]
    return "\n".join(out) + "\n"


def write_summary(runs_dir, out_stem) -> dict:
    summary = summarize(runs_dir)
    write_json_atomic(f"{out_stem}.json", summary)
    write_text_atomic(f"{out_stem}.md", to_markdown(summary))
    return summary
