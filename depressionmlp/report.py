"""`make report`: every table and figure of the DepressionMLP paper from one command.

``build_report(corpus, ...)`` trains what is missing (one run directory per config x
seed under ``<out>/runs``; a run whose ``metrics.json`` exists and whose resolved
config is unchanged is reused, so a killed report continues where it stopped) and
writes ``<out>/report.md``, ``<out>/report.json`` and the figures beside them:

- Table III / IV: every model x input row (``experiments/table3_*.toml``,
  ``table4_*.toml``) and the classical StatsRidge row, RMSE / MAE / R2 / SMAPE on the
  development split as mean +- sd over seeds, with a 95 % bootstrap interval over
  recordings (subjects are resampled, with all their recordings, see
  :func:`bootstrap_replicates`);
- Table V: the Friedman test over the eight models' per-recording absolute errors
  (:func:`depressionmlp.summary.friedman`), one line per seed;
- Table VI: parameters and FLOPs (:func:`depressionmlp.models.count_all`);
- Table VII: 2-class and n-class severity accuracy (BDI-II 0-13 / 14-19 / 20-28 /
  29-63; two classes = "None" (0-13) vs the rest, as Sec. IV-C-5 says);
- Fig. 4 (dev RMSE against M), Fig. 8 (QQ plots of residuals), Fig. 9 / 10 (ROC,
  two classes and one-vs-rest per severity class), Fig. 11 (test split, predicted
  and true per recording) and the Fig. 6 / 7 heat maps of one low- and one
  high-score recording.

The statistics (bootstrap, QQ, ROC) and the figures are plain functions of arrays,
so tests check them against scipy / scikit-learn on fixed inputs. The paper's own
numbers (``experiments/published/depressionmlp.toml``) are shown in a column
"paper", never mixed into ours.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depressionmlp import classical

from depressionmlp import metrics
from depressionmlp.errors import DataError
from depressionmlp.runs import (deep_update, load_config, write_json_atomic,
                                write_text_atomic)

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
PUBLISHED = EXPERIMENTS / "published"
METRICS = ("rmse", "mae", "r2", "smape")
METRIC_LABEL = {"rmse": "RMSE", "mae": "MAE", "r2": "R2", "smape": "SMAPE (%)"}
#: The Table V / VII / Fig. 8-10 models (inputs R_X, R_Y, R_AU), in the paper's order.
EIGHT = ("table3_gmlp_all", "table3_clg_all", "table3_cfg_all", "table3_dg_all",
         "table4_dg_ca", "table4_dg_gpu", "table4_dg_gup", "table4_dg_mg")
OURS = "table4_dg_mg"                 # DG+MG+Linear: Fig. 11 and the heat maps
GMLP = "table3_gmlp_all"              # gMLP+Linear: the Fig. 6 comparison
BASELINE = "baseline_ridge"
#: QUICK=1: one seed and this step budget per run (dev evaluation every eval_every),
#: one model (not the default protocol's ensemble of three).
QUICK_TRAIN = {"steps": 1000, "eval_every": 250, "ensemble": 1}
N_BOOT = 1000


# =========================================================================== statistics

def mean_sd(values) -> tuple[float, float]:
    """Mean and sample sd (ddof=1) of ``values``; sd is nan for fewer than two."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else float("nan"))


def _metric_fn(name: str):
    return {"rmse": metrics.rmse, "mae": metrics.mae, "r2": metrics.r2,
            "smape": metrics.smape}[name]


def bootstrap_replicates(y_true, preds, metric, groups=None, n_boot: int = N_BOOT,
                         seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the seed-mean of ``metric`` over recordings.

    Args:
        y_true: (N,) true score per recording.
        preds: (N,) or (S, N) predictions (one row per seed, same recordings).
        metric: name in :data:`METRICS` or a function ``f(y_true, y_pred) -> float``.
        groups: (N,) subject per recording. Resampling draws *subjects* with
            replacement and takes all their recordings (a cluster bootstrap), so
            two sessions of one person are not counted as independent evidence.
            None: every recording is its own group.
        n_boot: number of replicates; seed: the resampling seed.

    Returns:
        (n_boot,) values: for each replicate, the metric of every seed's predictions
        on the same resampled recordings, averaged over seeds.
    """
    fn = _metric_fn(metric) if isinstance(metric, str) else metric
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.atleast_2d(np.asarray(preds, dtype=np.float64))
    if p.shape[1] != y.size:
        raise ValueError(f"preds have {p.shape[1]} recordings, y_true {y.size}")
    g = np.arange(y.size) if groups is None else np.asarray(groups)
    _, inv = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(inv.max() + 1)]
    rng = np.random.default_rng(seed)
    n_groups = len(members)
    picks = rng.integers(0, n_groups, (n_boot, n_groups))
    if isinstance(metric, str):
        # a recording's weight = how often its subject was drawn: the same value as the
        # metric of the concatenated resample, for all replicates at once
        draws = np.zeros((n_boot, n_groups))
        np.add.at(draws, (np.arange(n_boot)[:, None], picks), 1.0)
        w = draws[:, inv]
        return np.mean([_weighted_metric(metric, y, row, w) for row in p], axis=0)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([members[k] for k in picks[b]])
        out[b] = np.mean([fn(y[idx], row[idx]) for row in p])
    return out


def _weighted_metric(name: str, y, pred, w) -> np.ndarray:
    """Eq. 21-24 with recording weights ``w`` (B, N) -> (B,) values."""
    tot = w.sum(axis=1)
    err = pred - y
    if name == "rmse":
        return np.sqrt((w * err ** 2).sum(axis=1) / tot)
    if name == "mae":
        return (w * np.abs(err)).sum(axis=1) / tot
    if name == "smape":
        den = (np.abs(y) + np.abs(pred)) / 2.0
        ratio = np.divide(np.abs(err), den, out=np.zeros_like(den), where=den > 0)
        return 100.0 * (w * ratio).sum(axis=1) / tot
    if name == "r2":
        mean = (w * y).sum(axis=1, keepdims=True) / tot[:, None]
        ss_tot = (w * (y - mean) ** 2).sum(axis=1)
        ss_res = (w * err ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                            np.nan)
    raise ValueError(f"unknown metric {name!r}")


def bootstrap_ci(y_true, preds, metric, groups=None, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval (``level``) of :func:`bootstrap_replicates`; nan-safe."""
    reps = bootstrap_replicates(y_true, preds, metric, groups, n_boot, seed)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [a, 1.0 - a])
    return float(lo), float(hi)


def qq_data(residuals) -> dict:
    """Normal QQ data of residuals, as ``scipy.stats.probplot`` computes it.

    Returns ``{"theoretical", "ordered", "slope", "intercept", "r"}``: Filliben
    plotting positions mapped through the normal quantile function, the sorted
    residuals and the least-squares line through them.
    """
    from scipy import stats
    r = np.sort(np.asarray(residuals, dtype=np.float64).reshape(-1))
    n = r.size
    pos = np.empty(n)
    pos[-1] = 0.5 ** (1.0 / n)
    pos[0] = 1.0 - pos[-1]
    if n > 2:
        i = np.arange(2, n)
        pos[1:-1] = (i - 0.3175) / (n + 0.365)
    q = stats.norm.ppf(pos)
    slope, intercept = np.polyfit(q, r, 1)
    rr = float(np.corrcoef(q, r)[0, 1]) if n > 1 else float("nan")
    return {"theoretical": q, "ordered": r, "slope": float(slope),
            "intercept": float(intercept), "r": rr}


def roc_points(positive, score) -> dict:
    """ROC curve of a binary ``positive`` (bool) against a decision ``score``.

    Thresholds are the distinct scores, highest first, starting at +inf (as
    ``sklearn.metrics.roc_curve(drop_intermediate=False)``); AUC by the trapezoid
    rule. Returns ``{"fpr", "tpr", "thresholds", "auc"}`` (nan AUC: one class only).
    """
    pos = np.asarray(positive, dtype=bool).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]     # end of each tie block
    tp = np.cumsum(pos)[last]
    fp = (last + 1) - tp
    n_pos, n_neg = pos.sum(), (~pos).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(last.size + 1, np.nan)
        fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(last.size + 1, np.nan)
    auc = float(np.trapezoid(tpr, fpr)) if n_pos and n_neg else float("nan")
    return {"fpr": fpr, "tpr": tpr, "thresholds": np.r_[np.inf, s[last]], "auc": auc}


def class_decision_scores(y_pred, scale: str = "bdi2") -> np.ndarray:
    """(N, K) one-vs-rest decision values of a regression output per severity class.

    A higher value means "more like class k": the lowest class takes ``-pred``,
    the highest ``pred``, a middle class ``-|pred - centre|`` with the centre of
    its score interval (BDI-II 14-19 -> 16.5, 20-28 -> 24) [choice]; the paper
    does not say how its Fig. 10 scores a regression model per class.
    """
    sc = metrics.SEVERITY_SCALES[scale]
    b = list(sc["bounds"]) + [sc["max"] + 1]
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    k = len(sc["bounds"])
    out = np.empty((p.size, k))
    for c in range(k):
        if c == 0:
            out[:, c] = -p
        elif c == k - 1:
            out[:, c] = p
        else:
            out[:, c] = -np.abs(p - (b[c] + b[c + 1] - 1) / 2.0)
    return out


def roc_two_class(y_true, y_pred, scale: str = "bdi2") -> dict:
    """Fig. 9: "None" (class 0) vs the rest, decision value = predicted score."""
    return roc_points(metrics.severity_class(y_true, scale) > 0, y_pred)


def roc_one_vs_rest(y_true, y_pred, scale: str = "bdi2") -> list[dict]:
    """Fig. 10: one ROC per severity class (class k vs the rest)."""
    c = metrics.severity_class(y_true, scale)
    d = class_decision_scores(y_pred, scale)
    return [roc_points(c == k, d[:, k]) for k in range(d.shape[1])]


def class_accuracies(y_true, y_pred, scale: str = "bdi2") -> dict:
    """Table VII: 2-class (None vs the rest) and n-class accuracy."""
    ct, cp = metrics.severity_class(y_true, scale), metrics.severity_class(y_pred, scale)
    return {"acc_2class": float(np.mean((ct > 0) == (cp > 0))),
            "acc_nclass": float(np.mean(ct == cp))}


# =========================================================================== figures

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, dpi=72) -> Path:
    """Save a figure atomically (temporary name, then rename)."""
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def plot_segment_length(points: dict, path, corpus: str = "") -> Path:
    """Fig. 4: dev RMSE against M. ``points``: {M: [rmse per seed]}."""
    plt = _plt()
    ms = sorted(points)
    mean = [np.mean(points[m]) for m in ms]
    sd = [np.std(points[m], ddof=1) if len(points[m]) > 1 else 0.0 for m in ms]
    fig, ax = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
    ax.errorbar(ms, mean, yerr=sd, marker="o", capsize=3)
    ax.set_xlabel("M (frames per segment)")
    ax.set_ylabel("dev RMSE")
    ax.set_xticks(ms)
    ax.set_title(f"Fig. 4: segment length ({corpus})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _grid(n):
    cols = min(4, n)
    return (n + cols - 1) // cols, cols


def plot_qq(residuals: dict, path) -> Path:
    """Fig. 8: one normal QQ panel of the dev residuals (pred - true) per model."""
    plt = _plt()
    rows, cols = _grid(len(residuals))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows), squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.93, wspace=0.3, hspace=0.5)
    for ax, (name, r) in zip(axes.flat, residuals.items()):
        q = qq_data(r)
        ax.plot(q["theoretical"], q["ordered"], "o", ms=3)
        xs = np.array([q["theoretical"].min(), q["theoretical"].max()])
        ax.plot(xs, q["slope"] * xs + q["intercept"], "r-", lw=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("normal quantile", fontsize=7)
        ax.set_ylabel("residual", fontsize=7)
    for ax in list(axes.flat)[len(residuals):]:
        ax.axis("off")
    return _save(fig, path)


def plot_roc_two_class(curves: dict, path) -> Path:
    """Fig. 9: one two-class ROC curve per model. ``curves``: {name: roc_points(...)}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.2), constrained_layout=True)
    for name, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.2f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Fig. 9: two classes (None vs depressed)", fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    return _save(fig, path)


def plot_roc_classes(curves: dict, class_names, path) -> Path:
    """Fig. 10: one panel per model, one one-vs-rest curve per severity class."""
    plt = _plt()
    rows, cols = _grid(len(curves))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.8 * rows), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.93, wspace=0.25, hspace=0.35)
    for ax, (name, per_class) in zip(axes.flat, curves.items()):
        for cname, c in zip(class_names, per_class):
            if np.isfinite(c["auc"]):
                ax.plot(c["fpr"], c["tpr"], label=f"{cname} ({c['auc']:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=5, loc="lower right")
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    return _save(fig, path)


def plot_predicted_vs_true(y_true, y_pred, path, title="") -> Path:
    """Fig. 11: per recording, sorted by true score: true (green), predicted (red), gap."""
    plt = _plt()
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    order = np.argsort(t, kind="mergesort")
    x = np.arange(t.size)
    fig, ax = plt.subplots(figsize=(6.0, 3.2), constrained_layout=True)
    ax.vlines(x, t[order], p[order], colors="tab:blue", lw=1)
    ax.plot(x, t[order], "o", color="tab:green", ms=4, label="true")
    ax.plot(x, p[order], "o", color="tab:red", ms=4, label="predicted")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("recording (sorted by true score)")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_heatmaps(rows: list[tuple[str, dict]], path, cmap="viridis", dpi=56) -> Path:
    """Heat maps: one figure row per recording, one panel per named map."""
    plt = _plt()
    ncol = max(len(m) for _, m in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(3.4 * ncol, 2.6 * len(rows)),
                             constrained_layout=True, squeeze=False)
    for r, (label, maps) in enumerate(rows):
        for c, (title, m) in enumerate(maps.items()):
            im = axes[r, c].imshow(np.asarray(m), aspect="auto", cmap=cmap)
            axes[r, c].set_title(f"{title}, {label}", fontsize=8)
            axes[r, c].set_xlabel("column", fontsize=7)
            axes[r, c].set_ylabel("frame", fontsize=7)
            fig.colorbar(im, ax=axes[r, c])
    return _save(fig, path, dpi=dpi)


# =========================================================================== heat maps

def stream_output(model, prefix: str):
    """:func:`depressionmlp.models.stream_model`, a missing layer as a DataError."""
    from depressionmlp.models import stream_model
    try:
        return stream_model(model, prefix)
    except ValueError as e:
        raise DataError(None, str(e)) from None


def low_high_segments(table) -> list[tuple[int, dict]]:
    """The middle segment of the lowest- and of the highest-scored recording of a
    SegmentTable: ``[(recording index, {stream: (1, M, N) array}), ...]``."""
    order = np.argsort(table.recording_labels, kind="mergesort")
    out = []
    for r in (int(order[0]), int(order[-1])):
        i = int(table.offsets[r] + table.counts[r] // 2)
        out.append((r, {s: table.arrays[s][i:i + 1] for s in ("R_X", "R_Y", "R_AU")}))
    return out


def fig6_maps(dg_model, gmlp_model, segment: dict) -> dict:
    """Fig. 6 for one segment: R_AU as input, after gMLP, after DG (arrays (M, N))."""
    au_gmlp = stream_output(gmlp_model, "R_AU_gmlp")
    au_dg = stream_output(dg_model, "R_AU_dg")
    return {"R_AU (input)": np.asarray(segment["R_AU"])[0],
            "after gMLP": np.asarray(au_gmlp(segment, training=False))[0],
            "after DG": np.asarray(au_dg(segment, training=False))[0]}


def fig7_maps(dg_model, segment: dict) -> dict:
    """Fig. 7 for one segment: the streams after Mutual Guidance (D_UX, D_UY, D_PU)."""
    guided = stream_output(dg_model, "mutual_guidance")
    d_ux, d_uy, d_pu = (np.asarray(t)[0] for t in guided(segment, training=False))
    return {"D_UX (Eq. 18)": d_ux, "D_UY (Eq. 18)": d_uy, "D_PU (Eq. 16)": d_pu}


# =========================================================================== runs

@dataclass
class RunSpec:
    """One training run of the report: a config file at one seed."""
    stem: str                 # config file stem, e.g. "table3_dg_all"
    seed: int
    config: dict              # the experiment config with the report's overrides
    source: str               # the config file, for messages
    protocol: str | None = None
    fingerprint: str = ""
    resolved: dict = field(default_factory=dict)


def config_paths(experiments=EXPERIMENTS) -> dict:
    """{group: [config paths]} of the report: table3, table4, baseline, fig4."""
    e = Path(experiments)
    return {"baseline": [e / "baseline_ridge.toml"],
            "table3": sorted(e.glob("table3_*.toml")),
            "table4": sorted(e.glob("table4_*.toml")),
            "fig4": sorted(e.glob("fig4_m*.toml"),
                           key=lambda p: int(p.stem.split("_m")[-1]))}


def plan_runs(corpus: str, data_root, seeds=(0, 1, 2), protocol=None, quick=False,
              train_overrides=None, experiments=EXPERIMENTS, only=None) -> list[RunSpec]:
    """One RunSpec per config x seed (StatsRidge, deterministic: seed 0 only).

    ``train_overrides``: merged into every config's [train] (tests: a few steps);
    ``only``: config stems to keep (tests: a reduced model list).
    """
    from depressionmlp.train import resolve_config
    specs, seen = [], set()
    for group, paths in config_paths(experiments).items():
        for path in paths:
            if path.stem in seen or (only is not None and path.stem not in only):
                continue
            seen.add(path.stem)
            base = load_config(path)
            is_ridge = base.get("model", {}).get("name") in classical.MODEL_NAMES
            for seed in ([seeds[0]] if is_ridge else seeds):
                cfg = copy.deepcopy(base)
                over = {"data": {"corpus": corpus, "data_root": str(data_root)},
                        "train": {"seed": int(seed), "verbose": 0}}
                if quick:
                    over["train"].update(QUICK_TRAIN)
                if train_overrides:
                    over["train"].update(train_overrides)
                cfg = deep_update(cfg, over)
                resolved = resolve_config(copy.deepcopy(cfg), str(path), protocol)
                fp = fingerprint(_canonical(resolved))
                specs.append(RunSpec(path.stem, int(seed), cfg, str(path), protocol, fp,
                                     resolved))
    return specs


REQUEST_FILE = "report_request.json"


def fingerprint(resolved: dict) -> str:
    """Hash of a resolved config without its name: two configs that train the same
    thing (e.g. Table IV's DG+MG row and Fig. 4's M = 18 if they agreed) share a run."""
    body = {k: v for k, v in resolved.items() if k != "name"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _canonical(resolved: dict) -> dict:
    """The resolved config as it trains: M from the segment settings whether a config
    names it or takes the default (Fig. 4's M = 18 and Table IV's DG+MG row then agree),
    without the scored splits (a run scored on more splits serves one that needs fewer:
    :func:`find_finished`)."""
    from depressionmlp.train import segment_settings
    c = copy.deepcopy(resolved)
    c["data"]["segment"] = segment_settings(resolved).to_dict()
    c["model"].pop("segment_length", None)
    c["data"].pop("eval_splits", None)
    return c


def _eval_splits(spec: RunSpec) -> set:
    return set(spec.resolved.get("data", {}).get("eval_splits", ()))


def find_finished(runs_dir, spec: RunSpec) -> Path | None:
    """A run directory under ``runs_dir`` with metrics.json for the same resolved config
    and every split the spec scores."""
    for req in sorted(Path(runs_dir).glob(f"*/{REQUEST_FILE}")):
        try:
            r = json.loads(req.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if r.get("fingerprint") != spec.fingerprint:
            continue
        try:
            scored = json.loads((req.parent / "metrics.json").read_text())["splits"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            continue
        if _eval_splits(spec) <= set(scored):
            return req.parent
    return None


def find_started(runs_dir, spec: RunSpec) -> Path | None:
    """A run directory of the same resolved config that a killed report left unfinished
    (its request written, no metrics.json): the run continues there."""
    for req in sorted(Path(runs_dir).glob(f"*/{REQUEST_FILE}")):
        try:
            r = json.loads(req.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if r.get("fingerprint") == spec.fingerprint and not (req.parent / "metrics.json").exists():
            return req.parent
    return None


def _train_depressionmlp(spec: RunSpec, runs_dir, resume_dir=None):
    from depressionmlp.train import train
    return train(copy.deepcopy(spec.config), out_base=runs_dir, source=spec.source,
                 protocol=spec.protocol, resume_dir=resume_dir)


def ensure_runs(specs: list[RunSpec], runs_dir, log=None, train_fn=None) -> dict:
    """Train every spec without a finished matching run; ``{(stem, seed): run_dir}``.

    One progress line per finished run (its time, the remaining count and an
    estimate of the time left). A run killed half-way leaves a directory without
    metrics.json; the next report continues that run in its directory (the trainers'
    ``resume_dir``: the committed backup and dev-selection state).
    """
    from depressionmlp.runs import new_run_dir
    from depressionmlp.progress import _fmt_seconds
    train_fn = train_fn or _train_depressionmlp
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    runs_dir = Path(runs_dir)
    out, todo, queued = {}, [], {}
    for s in specs:
        d = find_finished(runs_dir, s)
        if d is not None:
            out[(s.stem, s.seed)] = d
        elif s.fingerprint in queued:         # the same training under another name:
            queued[s.fingerprint].append(s)   # its first spec scores the splits of all
            lead = queued[s.fingerprint][0]
            if not _eval_splits(s) <= _eval_splits(lead):
                wider = {"data": {"eval_splits": sorted(_eval_splits(lead) | _eval_splits(s))}}
                lead.config = deep_update(lead.config, wider)
                lead.resolved = deep_update(lead.resolved, wider)
        else:
            queued[s.fingerprint] = [s]
            todo.append(s)
    if out:
        log(f"report: reusing {len(out)} finished run(s), {len(todo)} to train")
    spent = []
    for i, s in enumerate(todo, 1):
        t0 = time.time()
        run_dir = find_started(runs_dir, s)
        request = {"fingerprint": s.fingerprint, "config": s.stem, "seed": s.seed,
                   "source": s.source}
        before = 0.0
        if run_dir is None:
            run_dir = new_run_dir(runs_dir, s.resolved.get("name", s.stem))
        else:
            before = json.loads((run_dir / REQUEST_FILE).read_text()).get("seconds", 0.0)
            log(f"report: continuing the unfinished run {run_dir.name}")
        write_json_atomic(run_dir / REQUEST_FILE, {**request, "seconds": before,
                                                   "status": "started"})
        run_dir, result = train_fn(s, runs_dir, resume_dir=run_dir)
        dt = time.time() - t0
        spent.append(dt)
        write_json_atomic(Path(run_dir) / REQUEST_FILE,
                          {**request, "seconds": round(before + dt, 1), "status": "finished"})
        for same in queued[s.fingerprint]:
            out[(same.stem, same.seed)] = Path(run_dir)
        left = len(todo) - i
        dev = result["splits"].get("dev", {}).get("rmse")
        eta = f", ~{_fmt_seconds(np.mean(spent) * left)} left" if left else ""
        log(f"[{i}/{len(todo)}] {result['name']} seed {s.seed}: dev RMSE "
            f"{dev:.2f} in {_fmt_seconds(dt)}; {left} run(s) to go{eta}")
    return out


def read_predictions(run_dir, split: str) -> dict:
    """{recording_id: (subject_id, true, predicted)} of a run's predictions_<split>.csv."""
    path = Path(run_dir) / f"predictions_{split}.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {r["recording_id"]: (r["subject_id"], float(r["true"]), float(r["predicted"]))
                for r in csv.DictReader(f)}


def stacked_predictions(run_dirs, split: str):
    """(recording ids, subjects, y_true (N,), preds (S, N)) over the runs of one config."""
    per = [read_predictions(d, split) for d in run_dirs]
    per = [p for p in per if p]
    if not per:
        return None
    ids = sorted(set.intersection(*(set(p) for p in per)))
    subj = np.array([per[0][r][0] for r in ids])
    y = np.array([per[0][r][1] for r in ids])
    preds = np.array([[p[r][2] for r in ids] for p in per])
    return ids, subj, y, preds


# =========================================================================== tables

def row_stats(run_dirs, split: str, scale: str, n_boot: int = N_BOOT) -> dict | None:
    """Mean +- sd over seeds and the 95 % cluster-bootstrap interval of each metric."""
    st = stacked_predictions(run_dirs, split)
    if st is None:
        return None
    ids, subj, y, preds = st
    row = {"n": int(y.size), "seeds": int(preds.shape[0])}
    for m in METRICS:
        per_seed = [_metric_fn(m)(y, p) for p in preds]
        mu, sd = mean_sd(per_seed)
        lo, hi = bootstrap_ci(y, preds, m, subj, n_boot=n_boot)
        row[m] = {"mean": mu, "sd": sd, "ci": [lo, hi], "per_seed": per_seed}
    acc = [class_accuracies(y, p, scale) for p in preds]
    for a, p in zip(acc, preds):
        a["auc_2class"] = roc_two_class(y, p, scale)["auc"]
    for k in ("acc_2class", "acc_nclass", "auc_2class"):
        mu, sd = mean_sd([a[k] for a in acc])
        row[k] = {"mean": mu, "sd": sd, "per_seed": [a[k] for a in acc]}
    return row


def _fmt(v, nd=2):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}"


def fmt_cell(stat: dict, nd: int = 2, ci: bool = True) -> str:
    """``mean ± sd [lo, hi]`` (sd left out for one seed)."""
    s = _fmt(stat["mean"], nd)
    if np.isfinite(stat.get("sd", float("nan"))):
        s += f" ± {_fmt(stat['sd'], nd)}"
    if ci and "ci" in stat:
        s += f" [{_fmt(stat['ci'][0], nd)}, {_fmt(stat['ci'][1], nd)}]"
    return s


def load_published(name: str) -> dict:
    """The numbers a paper prints (``experiments/published/<name>.toml``), or {}."""
    path = PUBLISHED / f"{name}.toml"
    return load_config(path) if path.exists() else {}


def regression_table(rows: list[tuple[str, str, dict]], paper: dict | None = None) -> str:
    """Markdown: model | inputs | RMSE | MAE | R2 | SMAPE | paper (RMSE / MAE)."""
    paper = paper or {}
    out = ["| model | inputs | RMSE | MAE | R2 | SMAPE (%) | paper (RMSE / MAE) |",
           "|---|---|---|---|---|---|---|"]
    for name, inputs, st in rows:
        if st is None:
            out.append(f"| {name} | {inputs} | - | - | - | - | - |")
            continue
        p = paper.get(name)
        pc = f"{p['rmse']:.2f} / {p['mae']:.2f}" if p else "not in the text"
        out.append(f"| {name} | {inputs} | {fmt_cell(st['rmse'])} | {fmt_cell(st['mae'])} | "
                   f"{fmt_cell(st['r2'], 3)} | {fmt_cell(st['smape'], 1)} | {pc} |")
    return "\n".join(out)


# =========================================================================== report

@dataclass
class ReportResult:
    out: Path
    files: list
    seconds: float
    run_seconds: float
    runs_trained: int
    runs_reused: int


def _model_label(meta: dict) -> tuple[str, str]:
    return meta["model"], meta.get("inputs", "all")


def build_report(corpus: str, *, data_root="data", out=None, seeds=(0, 1, 2), protocol=None,
                 quick=False, train_overrides=None, only=None, n_boot: int = N_BOOT,
                 heatmaps: bool = True, complexity: dict | None = None,
                 log=None) -> ReportResult:
    """Train what is missing, then write ``<out>/report.md`` and its figures.

    ``only`` (config stems) and ``train_overrides`` shrink the report for tests;
    ``complexity``: Table VI as ``{model: {"params", "flops"}}`` instead of counting
    (:func:`depressionmlp.models.count_all` builds all eight models).
    """
    from depressionmlp.train import SCALES, load_tables, segment_settings
    t_start = time.time()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if quick:
        seeds = tuple(seeds)[:1]
    out = Path(out or f"outputs/report/{corpus}")
    specs = plan_runs(corpus, data_root, seeds, protocol, quick, train_overrides, only=only)
    if not specs:
        raise DataError(None, "no experiment configs to run")
    first = specs[0].resolved
    runs_dir = out / "runs"
    before = {(s.stem, s.seed) for s in specs if find_finished(runs_dir, s)}
    if len(before) < len(specs):
        if corpus == "synthetic" and not (Path(data_root) / "synthetic").exists():
            from depressionmlp.demo import ensure_synthetic   # the bundled corpus (make demo)
            ensure_synthetic(data_root)
        # the corpus must be there before anything is written (one-line DataError if not)
        load_tables(first, segment_settings(first), ["train", "dev", "test"])
    run_map = ensure_runs(specs, runs_dir, log)
    run_seconds = 0.0
    for d in set(run_map.values()):
        try:
            run_seconds += json.loads((d / REQUEST_FILE).read_text()).get("seconds", 0.0)
        except (OSError, json.JSONDecodeError):
            pass
    scale = SCALES[corpus]
    class_names = metrics.SEVERITY_SCALES[scale]["names"]
    by_stem: dict = {}
    for (stem, seed), d in sorted(run_map.items()):
        by_stem.setdefault(stem, []).append(d)
    meta = {stem: json.loads((ds[0] / "metrics.json").read_text())
            for stem, ds in by_stem.items()}
    files: list[Path] = []
    data: dict = {"corpus": corpus, "protocol": protocol or "config's own (default)",
                  "seeds": list(seeds), "quick": bool(quick), "scale": scale,
                  "rows": {}, "files": []}

    # ----- Tables III / IV / VII (dev)
    for stem, ds in by_stem.items():
        if stem.startswith("fig4_"):
            continue
        data["rows"][stem] = {"model": meta[stem]["model"],
                              "inputs": meta[stem].get("inputs", "all"),
                              "dev": row_stats(ds, "dev", scale, n_boot),
                              "test": row_stats(ds, "test", scale, n_boot)}
    published = load_published("depressionmlp")
    paper_rows = published.get(corpus, {}).get("rows", {}) if published else {}

    from depressionmlp.models import MODEL_NAMES
    inputs_order = {"all": 0, "xy": 1, "au": 2}

    def rows_of(prefix):
        sel = sorted((s for s in data["rows"] if s.startswith(prefix)),
                     key=lambda s: (list(MODEL_NAMES).index(data["rows"][s]["model"])
                                    if data["rows"][s]["model"] in MODEL_NAMES else 99,
                                    inputs_order.get(data["rows"][s]["inputs"], 9)))
        sel += [BASELINE] if BASELINE in data["rows"] else []
        return [(data["rows"][s]["model"], data["rows"][s]["inputs"], data["rows"][s]["dev"])
                for s in sel]

    # ----- Table V: Friedman (per seed) over the eight models
    from depressionmlp.summary import friedman
    fried = []
    for seed in seeds:
        runs = [(run_map[(s, seed)], meta[s]) for s in EIGHT if (s, seed) in run_map]
        f = friedman(runs, "dev")
        if f:
            f["seed"] = seed
            fried.append(f)
    data["friedman"] = fried
    if BASELINE in meta:
        data["mean_predictor"] = {sp: r.get("mean_predictor")
                                  for sp, r in meta[BASELINE]["splits"].items()}

    # ----- Table VI: params and FLOPs
    if complexity is None:
        from depressionmlp.models import count_all
        seg_len = segment_settings(first).segment_length
        complexity = count_all(segment_length=int(seg_len))
    data["complexity"] = complexity

    # ----- figures
    fig4 = {}
    for stem, ds in by_stem.items():
        if stem.startswith("fig4_m"):
            m = int(stem.split("_m")[-1])
            fig4[m] = [json.loads((d / "metrics.json").read_text())["splits"]["dev"]["rmse"]
                       for d in ds]
    if fig4:
        files.append(plot_segment_length(fig4, out / "fig4_segment_length.png", corpus))
        data["fig4"] = {str(m): v for m, v in sorted(fig4.items())}
    eight = [s for s in EIGHT if s in by_stem]
    dev = {s: stacked_predictions(by_stem[s], "dev") for s in eight}
    dev = {s: v for s, v in dev.items() if v is not None}
    label = {s: meta[s]["model"] for s in dev}
    if dev:
        resid = {label[s]: (v[3].mean(axis=0) - v[2]) for s, v in dev.items()}
        files.append(plot_qq(resid, out / "fig8_qq.png"))
        roc2 = {label[s]: roc_two_class(v[2], v[3].mean(axis=0), scale) for s, v in dev.items()}
        files.append(plot_roc_two_class(roc2, out / "fig9_roc_2class.png"))
        rocn = {label[s]: roc_one_vs_rest(v[2], v[3].mean(axis=0), scale)
                for s, v in dev.items()}
        files.append(plot_roc_classes(rocn, class_names, out / "fig10_roc_4class.png"))
        data["auc_2class"] = {k: c["auc"] for k, c in roc2.items()}
        data["auc_classes"] = {k: [c["auc"] for c in cs] for k, cs in rocn.items()}
    ours = OURS if OURS in by_stem else (eight[-1] if eight else None)
    test = stacked_predictions(by_stem[ours], "test") if ours else None
    if test is not None:
        files.append(plot_predicted_vs_true(
            test[2], test[3].mean(axis=0), out / "fig11_predicted_vs_true.png",
            f"Fig. 11: {meta[ours]['model']}, test split ({corpus})"))
    heat_note = ""
    if heatmaps and OURS in by_stem and GMLP in by_stem:
        try:
            files += write_heatmaps(by_stem[OURS][0], by_stem[GMLP][0], first, out)
        except DataError as e:
            heat_note = f"Heat maps not drawn: {e}"

    elapsed = time.time() - t_start
    reused = {run_map[k] for k in before if k in run_map}
    trained = len(set(run_map.values()) - reused)
    data.update({"seconds": round(elapsed, 1), "run_seconds": round(run_seconds, 1),
                 "runs_trained": trained, "runs_reused": len(reused),
                 "files": [p.name for p in files]})
    md = render_markdown(data, rows_of, published, class_names, heat_note)
    write_json_atomic(out / "report.json", data)
    write_text_atomic(out / "report.md", md)
    files += [out / "report.json", out / "report.md"]
    return ReportResult(out, files, elapsed, run_seconds, trained, len(reused))


def write_heatmaps(dg_run, gmlp_run, cfg, out) -> list[Path]:
    """Fig. 6 / 7 heat maps of the lowest- and highest-scored dev recording."""
    from depressionmlp.train import load_run, load_tables, segment_settings
    dg_model, dg_cfg = load_run(dg_run)
    gmlp_model, _ = load_run(gmlp_run)
    table = load_tables(dg_cfg, segment_settings(dg_cfg), ["dev"])["dev"]
    picks = low_high_segments(table)
    rows6, rows7 = [], []
    for r, seg in picks:
        lab = f"score {table.recording_labels[r]:.0f}"
        rows6.append((lab, fig6_maps(dg_model, gmlp_model, seg)))
        rows7.append((lab, fig7_maps(dg_model, seg)))
    return [plot_heatmaps(rows6, Path(out) / "fig6_heatmaps.png"),
            plot_heatmaps(rows7, Path(out) / "fig7_heatmaps.png", cmap="magma")]


def render_markdown(data: dict, rows_of, published: dict, class_names, heat_note="") -> str:
    corpus = data["corpus"]
    L = [f"# DepressionMLP report: {corpus}", "",
         f"Protocol: {data['protocol']}; seeds: {', '.join(map(str, data['seeds']))}"
         + ("; QUICK (one seed, "
            f"{QUICK_TRAIN['steps']} steps per run, one model: a smoke test, not a result)"
            if data["quick"] else "") + ".",
         f"Runs: {data['runs_trained']} trained now, {data['runs_reused']} reused; "
         f"sum of per-run times {data['run_seconds']:.0f} s; report wall time "
         f"{data['seconds']:.0f} s.", "",
         "Cells: mean ± sd over seeds [95 % bootstrap interval over recordings, resampling "
         "subjects with all their recordings; 1000 replicates of the seed-mean metric]. "
         "Development split, recording level (the mean of a recording's segment scores). "
         "The column *paper* holds the paper's own numbers where its text keeps them "
         "(experiments/published/depressionmlp.toml); they are never part of our "
         "statistics.", ""]
    mp = (data.get("mean_predictor") or {}).get("dev")
    if mp:
        L += [f"Reference: the mean predictor (the training mean for every recording) has dev "
              f"RMSE {mp['rmse']:.2f}, MAE {mp['mae']:.2f}; a model must beat it to have "
              "learnt anything.", ""]
    L += ["## Table III: DG module (model x inputs)", "", regression_table(rows_of("table3_")),
          "", "## Table IV: MG module", "", regression_table(rows_of("table4_")), ""]
    L += ["## Table V: Friedman test (dev absolute errors of the eight models)", ""]
    if data["friedman"]:
        L += ["| seed | recordings | chi2 | p | best mean rank |", "|---|---|---|---|---|"]
        for f in data["friedman"]:
            best = min(f["mean_rank"].items(), key=lambda kv: kv[1])
            L.append(f"| {f['seed']} | {f['recordings']} | {f['statistic']:.2f} | "
                     f"{f['p_value']:.3g} | {best[0]} ({best[1]:.2f}) |")
    else:
        L.append("Fewer than three models: no test.")
    t5 = published.get("table5", {})
    if t5:
        L += ["", f"Paper: {t5.get('note', '')}"]
    L += ["", "## Table VI: parameters and FLOPs (one segment, batch 1)", "",
          "| model | params | FLOPs |", "|---|---|---|"]
    for name, c in data["complexity"].items():
        L.append(f"| {name} | {c['params']:,} | {c['flops']:,} |")
    n_cls = len(class_names)
    L += ["", f"## Table VII: severity classes ({data['scale']})", "",
          f"Two classes: {class_names[0]} vs the rest; {n_cls} classes: "
          + ", ".join(class_names) + " (BDI-II 0-13, 14-19, 20-28, 29-63)."
          if data["scale"] == "bdi2" else
          f"Two classes: {class_names[0]} vs the rest; {n_cls} classes: "
          + ", ".join(class_names) + " (PHQ-8 0-4, 5-9, 10-14, 15-19, 20-24).", "",
          f"| model | 2-class accuracy | {n_cls}-class accuracy | 2-class AUC | paper |",
          "|---|---|---|---|---|"]
    for stem in EIGHT + (BASELINE,):
        r = data["rows"].get(stem)
        if not r or not r["dev"]:
            continue
        L.append(f"| {r['model']} | {fmt_cell(r['dev']['acc_2class'], ci=False)} | "
                 f"{fmt_cell(r['dev']['acc_nclass'], ci=False)} | "
                 f"{fmt_cell(r['dev']['auc_2class'], ci=False)} | "
                 "not in the text |")
    L += ["", "## Test split (for Fig. 11 and Tables VIII/IX context)", "",
          "| model | inputs | test RMSE | test MAE |", "|---|---|---|---|"]
    for stem, r in data["rows"].items():
        if r["test"]:
            L.append(f"| {r['model']} | {r['inputs']} | {fmt_cell(r['test']['rmse'])} | "
                     f"{fmt_cell(r['test']['mae'])} |")
    mean_other = published.get("tables8_9_mean_of_methods", {}).get(corpus)
    if mean_other:
        L += ["", f"Paper (Sec. IV-D): the mean over all methods it compares on {corpus} "
                  f"test is RMSE {mean_other['rmse']:.2f}, MAE {mean_other['mae']:.2f} "
                  "(its own row is not in the text)."]
    L += ["", "## Figures", ""]
    captions = {
        "fig4_segment_length.png": "Fig. 4: dev RMSE against M (mean ± sd over seeds); "
                                   "the paper chooses M = 18.",
        "fig8_qq.png": "Fig. 8: normal QQ plots of the dev residuals (seed-mean prediction "
                       "- true), one panel per model.",
        "fig9_roc_2class.png": "Fig. 9: two-class ROC (None vs the rest; decision value = "
                               "predicted score).",
        "fig10_roc_4class.png": "Fig. 10: one-vs-rest ROC per severity class (decision "
                                "value: -|prediction - class centre| [choice]).",
        "fig11_predicted_vs_true.png": "Fig. 11: test split, per recording sorted by true "
                                       "score (green true, red predicted).",
        "fig6_heatmaps.png": "Fig. 6: R_AU of the middle segment of the lowest- and "
                             "highest-scored dev recording: input, after gMLP, after DG.",
        "fig7_heatmaps.png": "Fig. 7: the same segments after Mutual Guidance "
                             "(D_UX, D_UY, D_PU).",
    }
    for f in data["files"]:
        L += [f"![{f}]({f})", "", captions.get(f, ""), ""]
    if heat_note:
        L += [heat_note, ""]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m depressionmlp.report")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--out")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--protocol")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    r = build_report(a.corpus, data_root=a.data_root, out=a.out, seeds=a.seeds,
                     protocol=a.protocol, quick=a.quick)
    print(f"report: {r.out / 'report.md'}")
    return 0
