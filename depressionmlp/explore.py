"""Look inside a run directory of either model: data first, then figures.

Used by ``notebooks/explore_run.ipynb`` (and testable on their own). A run directory
is what ``python -m depressionmlp train`` or ``python -m hmhn train`` writes
(``config.json``, ``metrics.json``, ``history.json``, ``predictions_<split>.csv``,
``best.keras``). Two kinds of function:

* data: :func:`read_run`, :func:`read_predictions`, :func:`severity_bands`,
  :func:`error_by_severity`, :func:`largest_errors`, :func:`training_curves`,
  :func:`segment_scores` (the model run over every segment / frame of a recording, in
  order) and :func:`quick_run` (a small DepressionMLP run on the synthetic corpus);
* figures: ``plot_*`` draw on a new figure (or on ``ax``) and return the figure;
  :func:`save_png` writes it. Nothing here picks a matplotlib backend: in Jupyter the
  figures show inline, in scripts and tests ``MPLBACKEND=Agg`` keeps them off screen.

Severity bands (Sec. IV-A): BDI-II 0-13 minimal, 14-19 mild, 20-28 moderate, 29-63
severe; PHQ-8 0-4 / 5-9 / 10-14 / 15-19 / 20-24.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np

from depressionmlp import metrics
from depressionmlp.errors import DataError

SCALE_LABELS = {"bdi2": "BDI-II", "phq8": "PHQ-8"}
BAND_COLOURS = ("#d9f0d3", "#fff7bc", "#fdd49e", "#fcbba1", "#f4a582")
REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- places

def default_out_dir(name: str) -> Path:
    """Where notebook ``name`` writes caches, runs and PNGs: ``<repo>/outputs/notebooks/
    <name>`` in a source checkout (``outputs/`` is git-ignored), else a folder in the
    temp dir; never under ``notebooks/``."""
    if (REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "depressionmlp").is_dir():
        return REPO_ROOT / "outputs" / "notebooks" / name
    return Path(tempfile.gettempdir()) / "depressionkit" / "notebooks" / name


# --------------------------------------------------------------------------- reading

def run_kind(cfg: dict) -> str:
    """``"hmhn"`` or ``"depressionmlp"``, from a run's ``config.json`` contents."""
    return "hmhn" if "quick_mode" in cfg or "row" in cfg.get("model", {}) else "depressionmlp"


def _read_json(path: Path, default=None):
    if not path.exists():
        if default is not None:
            return default
        raise DataError(path, "missing from the run directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON: {e}") from None


def read_predictions(path, scale: str = "bdi2") -> list[dict]:
    """Rows of a ``predictions_<split>.csv`` (either model) with floats and severity
    names: ``recording_id, subject_id, true, predicted, error (= predicted - true),
    severity_true, severity_predicted``."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such predictions file")
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t, p = float(r["true"]), float(r["predicted"])
            rows.append({"recording_id": r["recording_id"], "subject_id": r.get("subject_id", ""),
                         "true": t, "predicted": p, "error": p - t,
                         "severity_true": metrics.severity_name(t, scale),
                         "severity_predicted": metrics.severity_name(p, scale)})
    return rows


def read_run(run_dir) -> dict:
    """Everything a run directory says, as data: ``kind``, ``config``, ``metrics``,
    ``history`` (list, may be empty; an ensemble's: its first member's, ``members/0``),
    ``scale``, ``predictions`` ({split: rows})."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "not a run directory")
    cfg = _read_json(run_dir / "config.json")
    kind = run_kind(cfg)
    corpus = cfg.get("data", {}).get("corpus", "")
    scale = (cfg.get("resolved", {}).get("scale")
             or ("phq8" if corpus == "daic" else "bdi2"))
    history = run_dir / "history.json"
    if not history.exists():                      # an ensemble: its first member's
        history = run_dir / "members" / "0" / "history.json"
    preds = {p.stem[len("predictions_"):]: read_predictions(p, scale)
             for p in sorted(run_dir.glob("predictions_*.csv"))}
    return {"run_dir": run_dir, "kind": kind, "name": cfg.get("name"), "config": cfg,
            "metrics": _read_json(run_dir / "metrics.json"),
            "history": _read_json(history, default=[]),
            "scale": scale, "predictions": preds}


# --------------------------------------------------------------------------- summaries

def severity_bands(scale: str = "bdi2") -> list[dict]:
    """``[{"name", "low", "high"}]``, limits inclusive (BDI-II: 0-13, 14-19, 20-28, 29-63)."""
    sc = metrics.SEVERITY_SCALES[scale]
    bounds = list(sc["bounds"]) + [sc["max"] + 1]
    return [{"name": n, "low": bounds[i], "high": bounds[i + 1] - 1}
            for i, n in enumerate(sc["names"])]


def error_by_severity(rows, scale: str = "bdi2") -> list[dict]:
    """Per true severity band: ``n``, ``mae``, ``rmse``, ``bias`` (mean predicted - true;
    negative = the model scores that band too low) and ``accuracy`` (predicted band =
    true band). Bands without recordings have ``n = 0`` and NaN errors."""
    out = []
    for band in severity_bands(scale):
        sel = [r for r in rows if r["severity_true"] == band["name"]]
        err = np.array([r["predicted"] - r["true"] for r in sel], dtype=np.float64)
        nan = float("nan")
        out.append({**band, "n": len(sel),
                    "mae": float(np.mean(np.abs(err))) if len(sel) else nan,
                    "rmse": float(np.sqrt(np.mean(err ** 2))) if len(sel) else nan,
                    "bias": float(np.mean(err)) if len(sel) else nan,
                    "accuracy": (float(np.mean([r["severity_predicted"] == r["severity_true"]
                                                for r in sel])) if sel else nan)})
    return out


def largest_errors(rows, n: int = 5) -> list[dict]:
    """The ``n`` recordings with the largest absolute error, largest first."""
    return sorted(rows, key=lambda r: -abs(r["predicted"] - r["true"]))[:n]


def training_curves(history) -> dict:
    """``history.json`` as arrays: ``x`` (optimiser steps for DepressionMLP, epochs for
    HMHN), ``x_label``, ``loss``, ``dev_rmse``, ``dev_mae`` (NaN where absent),
    ``best`` (index of the kept model, or None)."""
    if not history:
        return {"x": np.zeros(0), "x_label": "epoch", "loss": np.zeros(0),
                "dev_rmse": np.zeros(0), "dev_mae": np.zeros(0), "best": None}
    use_step = all("step" in h for h in history)
    x = np.array([h["step"] if use_step else h["epoch"] for h in history], dtype=np.float64)

    def col(key):
        return np.array([np.nan if h.get(key) is None else h[key] for h in history],
                        dtype=np.float64)

    best = [i for i, h in enumerate(history) if h.get("best")]
    return {"x": x, "x_label": "optimiser step" if use_step else "epoch", "loss": col("loss"),
            "dev_rmse": col("dev_rmse"), "dev_mae": col("dev_mae"),
            "best": best[-1] if best else None}


# --------------------------------------------------------------------------- the model again

def segment_scores(run_dir, split: str = "dev", recordings=None, *, data_root=None,
                   cache_dir=None) -> list[dict]:
    """Run the run's model over every segment (DepressionMLP) or every sampled frame
    (HMHN) of each recording of ``split``, in order.

    Returns one dict per recording: ``recording_id``, ``true``, ``scores`` (one per
    segment / frame, in time order), ``time`` (DepressionMLP: segment start in seconds,
    ``k * stride / fps``; for a recording cut at p phases (``data.segment.phases``,
    or the ``"auto"`` rule's choice), whose p segments start within each stride,
    ``k * stride / (p * fps)``, spread evenly over it; HMHN:
    position of the frame in the video, 0..1, the frames being spread evenly),
    ``time_label`` and ``score`` (their mean, through the run's recording link where
    it has one: the recording's prediction). ``recordings``: ids to keep (None: all).
    ``data_root`` overrides the run's corpus root; ``cache_dir`` where segmented
    recordings are cached (None: the run's own setting). For an ensemble with
    ``train.member_split = "cross"`` the select split's scores are the whole
    ensemble's, whose members trained on most of it, not the out-of-fold predictions
    of its ``predictions_dev.csv``.
    """
    cfg = _read_json(Path(run_dir) / "config.json")
    wanted = None if recordings is None else {str(r) for r in recordings}
    if run_kind(cfg) == "hmhn":
        return _hmhn_frame_scores(run_dir, split, wanted, data_root)
    from depressionmlp import train as T
    model, cfg = T.load_run(run_dir)
    link = cfg["resolved"].get("recording_link")      # the recording score's, if any
    table, cfg = load_table(run_dir, split, data_root=data_root, cache_dir=cache_dir)
    settings = T.segment_settings(cfg)
    seg = T.predict_segments(model, table, T.model_streams(cfg))
    out = []
    for r, rid in enumerate(table.recording_ids):
        if wanted is not None and str(rid) not in wanted:
            continue
        s = seg[table.offsets[r]:table.offsets[r] + table.counts[r]]
        out.append({"recording_id": str(rid), "true": float(table.recording_labels[r]),
                    "scores": s, "time": np.arange(len(s)) * settings.stride
                    / (settings.fps * _phases(table, r, settings)),
                    "time_label": "segment start (s)",
                    "score": float(metrics.apply_recording_link(link, [np.mean(s)])[0])})
    return out


def _phases(table, r: int, settings) -> int:
    """The phases recording ``r`` was cut at (``"auto"`` decides per recording)."""
    if table.phases is not None:
        return int(table.phases[r])
    return int(settings.phases)


def load_table(run_dir, split: str = "dev", *, data_root=None, cache_dir=None):
    """``(SegmentTable, resolved config)``: every segment of one split of a DepressionMLP
    run's corpus, segmented as the run was (``data_root`` / ``cache_dir`` override)."""
    from depressionmlp import train as T
    _, cfg = run_files_config(run_dir)
    cfg = T.resolve_config({k: v for k, v in cfg.items() if k != "resolved"})
    if data_root is not None:
        cfg["data"]["data_root"] = str(data_root)
    if cache_dir is not None:
        cfg["data"]["cache_dir"] = str(cache_dir)
    return T.load_tables(cfg, T.segment_settings(cfg), [split])[split], cfg


def run_files_config(run_dir) -> tuple[Path, dict]:
    """``(model file, config)`` of a run directory of either model."""
    from depressionmlp.runs import run_files
    p = Path(run_dir)
    if p.is_dir() and not (p / "best.keras").exists():
        from depressionmlp import classical
        if (p / classical.MODEL_FILE).exists():
            p = p / classical.MODEL_FILE
    return run_files(p, "python -m depressionmlp train / python -m hmhn train")


def stream_model(model, prefix: str):
    """:func:`depressionmlp.models.stream_model` (Fig. 6 / 7 sub-models; an ensemble's
    first member), imported only when called."""
    from depressionmlp.models import stream_model as sub_model
    return sub_model(model, prefix)


def _hmhn_frame_scores(run_dir, split, wanted, data_root):
    from hmhn import train as H
    model, cfg = H.load_run(run_dir)
    if data_root is not None:
        cfg["data"]["data_root"] = str(data_root)
    fs = H.load_splits(cfg, [split])[split]
    out = []
    for v in fs.videos:
        if wanted is not None and str(v.video_id) not in wanted:
            continue
        s = H.predict_frames(model, np.asarray(v.frames))
        n = len(s)
        out.append({"recording_id": str(v.video_id), "true": float(v.label), "scores": s,
                    "time": (np.arange(n) + 0.5) / n, "time_label": "position in the video",
                    "score": float(np.mean(s))})
    return out


def pick_recordings(rows, n: int = 2) -> list[str]:
    """Ids of ``n`` recordings spread over the true scores (lowest, ..., highest)."""
    order = sorted(rows, key=lambda r: r["true"])
    idx = np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))
    return [order[i]["recording_id"] for i in idx]


def quick_run(out_dir, steps: int = 300, *, n_subjects: int = 24, seed: int = 3,
              duration_s=(10, 14), model: str = "DG+MG+Linear", cue: str = "dynamic",
              ensemble: int | None = None, train_options: dict | None = None) -> Path:
    """Train a small DepressionMLP run (default protocol, ``steps`` optimiser steps; an
    ensemble of ``ensemble`` folds, None: the protocol's 3, each trained on the
    protocol's views; ``train_options``: more ``[train]`` keys) on a
    synthetic corpus written under ``<out_dir>`` (:func:`depressionmlp.synth.generate_corpus`
    with ``n_subjects``, ``seed``, ``duration_s``, ``cue``); segments cached in
    ``<out_dir>/cache``; returns the run directory (under ``<out_dir>/runs``)."""
    from depressionmlp import synth, train as T
    out_dir = Path(out_dir)
    # one corpus folder per generator setting, so a second run reuses it
    data_root = out_dir / f"data-{n_subjects}-{seed}-{cue}-{duration_s[0]}-{duration_s[1]}"
    synth.generate_corpus(data_root / "synthetic", n_subjects=n_subjects, seed=seed,
                          duration_s=tuple(duration_s), cue=cue)
    cfg = {"name": f"quick-{model}", "model": {"name": model, "inputs": "all"},
           "data": {"corpus": "synthetic", "data_root": str(data_root),
                    "cache_dir": str(out_dir / "cache")},
           "train": {"steps": int(steps), "eval_every": max(int(steps) // 5, 1), "verbose": 0}}
    if ensemble is not None:
        cfg["train"]["ensemble"] = int(ensemble)
    cfg["train"].update(train_options or {})
    run_dir, _ = T.train(cfg, out_base=out_dir / "runs")
    return run_dir


# --------------------------------------------------------------------------- figures

def _axes(ax, figsize):
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def draw_bands(ax, scale: str = "bdi2", axis: str = "y", labels: bool = True) -> None:
    """Shade the severity bands along ``axis`` ("x" or "y") of ``ax``; set the axis
    limits first: bands outside them get no label."""
    vmin, vmax = ax.get_ylim() if axis == "y" else ax.get_xlim()
    for band, colour in zip(severity_bands(scale), BAND_COLOURS):
        lo, hi = band["low"] - 0.5 if band["low"] else 0, band["high"] + 0.5
        span = ax.axhspan if axis == "y" else ax.axvspan
        span(lo, hi, color=colour, alpha=0.6, lw=0, zorder=0)
        if labels and vmin <= (max(lo, vmin) + min(hi, vmax)) / 2 <= vmax and hi > vmin \
                and lo < vmax:
            lo, hi = max(lo, vmin), min(hi, vmax)
            if axis == "y":
                ax.text(1.0, (lo + hi) / 2, f" {band['name']}", transform=ax.get_yaxis_transform(),
                        va="center", ha="left", fontsize=8, color="0.3", clip_on=False)
            else:
                ax.text((lo + hi) / 2, 1.0, band["name"], transform=ax.get_xaxis_transform(),
                        va="bottom", ha="center", fontsize=8, color="0.3")


def plot_predicted_vs_true(rows, scale: str = "bdi2", ax=None, title: str = ""):
    """Each recording's predicted score against its true score, the severity bands shaded
    on both axes, the identity line dashed."""
    fig, ax = _axes(ax, (5.2, 4.8))
    top = metrics.SEVERITY_SCALES[scale]["max"]
    t = np.array([r["true"] for r in rows])
    p = np.array([r["predicted"] for r in rows])
    hi = float(min(top, max(np.max(t, initial=0), np.max(p, initial=0)) + 3))
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    draw_bands(ax, scale, "y", labels=True)
    for band in severity_bands(scale)[1:]:
        ax.axvline(band["low"] - 0.5, color="0.6", lw=0.6, zorder=1)
    ax.plot([0, hi], [0, hi], "--", color="0.3", lw=1, zorder=2)
    ax.scatter(t, p, s=22, color="C0", edgecolor="k", lw=0.4, zorder=3)
    lab = SCALE_LABELS.get(scale, scale)
    ax.set_xlabel(f"true {lab}")
    ax.set_ylabel(f"predicted {lab}")
    if len(t):
        ax.set_title(title or f"{len(t)} recordings, RMSE {metrics.rmse(t, p):.2f}, "
                              f"MAE {metrics.mae(t, p):.2f}", fontsize=10)
    return fig


def plot_error_by_severity(rows, scale: str = "bdi2", ax=None):
    """Signed error (predicted - true) of each recording grouped by its true band, with
    the band's MAE above it."""
    fig, ax = _axes(ax, (5.2, 3.6))
    table = error_by_severity(rows, scale)
    for i, (band, colour) in enumerate(zip(table, BAND_COLOURS)):
        err = [r["predicted"] - r["true"] for r in rows if r["severity_true"] == band["name"]]
        ax.axvspan(i - 0.45, i + 0.45, color=colour, alpha=0.6, lw=0, zorder=0)
        if err:
            jitter = np.linspace(-0.2, 0.2, len(err)) if len(err) > 1 else np.zeros(1)
            ax.scatter(i + jitter, err, s=16, color="C0", edgecolor="k", lw=0.3, zorder=3)
            ax.hlines(band["bias"], i - 0.35, i + 0.35, color="C3", lw=2, zorder=4)
        ax.text(i, 1.0, f"n={band['n']}" + (f"\nMAE {band['mae']:.1f}" if band["n"] else ""),
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([f"{b['name']}\n{b['low']}-{b['high']}" for b in table], fontsize=8)
    ax.set_ylabel("predicted - true")
    ax.set_xlim(-0.5, len(table) - 0.5)
    return fig


def plot_segment_scores(series, scale: str = "bdi2", ax=None):
    """Each recording's segment (frame) scores over time, the severity bands shaded, its
    true score dotted and its mean (the recording's prediction) dashed."""
    fig, ax = _axes(ax, (8, 3.8))
    lo = min((float(np.min(s["scores"])) for s in series), default=0.0)
    hi = max([float(np.max(s["scores"])) for s in series] + [s["true"] for s in series]
             + [20.0])
    ax.set_ylim(max(0.0, lo - 3), hi + 3)
    draw_bands(ax, scale, "y", labels=True)
    for i, s in enumerate(series):
        c = f"C{i % 10}"
        ax.plot(s["time"], s["scores"], "-o", ms=2.5, lw=1, color=c,
                label=f"{s['recording_id']} (true {s['true']:.0f}, mean {s['score']:.1f})")
        ax.axhline(s["true"], color=c, ls=":", lw=1.2)
        ax.axhline(s["score"], color=c, ls="--", lw=0.8)
    if series:
        ax.set_xlabel(series[0]["time_label"])
    ax.set_ylabel(f"segment score ({SCALE_LABELS.get(scale, scale)})")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_training_curves(curves, ax=None):
    """Training loss and dev RMSE / MAE (recording level) against steps or epochs; the
    kept model marked."""
    fig, ax = _axes(ax, (6, 3.6))
    x = curves["x"]
    ax.plot(x, curves["loss"], "-o", ms=3, label="training loss")
    if np.isfinite(curves["dev_rmse"]).any():
        ax.plot(x, curves["dev_rmse"], "-s", ms=3, label="dev RMSE")
        ax.plot(x, curves["dev_mae"], "-^", ms=3, label="dev MAE")
    if curves["best"] is not None:
        b = curves["best"]
        y = curves["dev_rmse"][b] if np.isfinite(curves["dev_rmse"][b]) else curves["loss"][b]
        ax.plot([x[b]], [y], "*", ms=14, color="C3", label="kept model")
    ax.set_xlabel(curves["x_label"])
    ax.set_ylabel("score units")
    ax.legend(fontsize=8)
    return fig


def plot_largest_errors(rows, n: int = 8, scale: str = "bdi2", ax=None):
    """The ``n`` recordings with the largest absolute error: true (o) and predicted (x)
    on the severity bands, joined by the error."""
    worst = largest_errors(rows, n)
    fig, ax = _axes(ax, (6, 0.4 * max(len(worst), 3) + 1))
    ax.set_xlim(0, metrics.SEVERITY_SCALES[scale]["max"])
    draw_bands(ax, scale, "x", labels=True)
    for i, r in enumerate(worst):
        ax.plot([r["true"], r["predicted"]], [i, i], color="0.3", lw=1, zorder=2)
        ax.plot(r["true"], i, "o", color="C2", zorder=3, label="true" if i == 0 else None)
        ax.plot(r["predicted"], i, "X", color="C3", zorder=3,
                label="predicted" if i == 0 else None)
    ax.set_yticks(range(len(worst)))
    ax.set_yticklabels([f"{r['recording_id']} ({r['predicted'] - r['true']:+.1f})"
                        for r in worst], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(SCALE_LABELS.get(scale, scale))
    if worst:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def save_png(fig, path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG (folders created). The figure stays open, so Jupyter still
    shows it inline; nothing is returned, so the call can end a notebook cell."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
