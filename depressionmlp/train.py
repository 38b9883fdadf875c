"""Training and recording-level evaluation of DepressionMLP and its ablations.

Protocol of Sec. IV-B-3/4: RMSE loss (Eq. 21); Adam (0.9, 0.999), lr 2e-4,
weight decay 1e-4; batch 8; the balanced epoch of Fig. 5 (4 segments from every
recording, drawn afresh each epoch); the model kept is the one with the lowest
recording-level RMSE on the development split; a recording's score is the mean
of its segments' scores.

A config is plain data (a dict, usually read from ``experiments/<name>.toml``)
merged over :data:`DEFAULT_CONFIG`. A run writes one directory::

    <out>/<name>-<stamp>/
        config.json      the resolved config (what ``evaluate``/``predict`` rebuild from)
        best.keras       the best model on dev (written atomically)
        history.json     per-epoch loss and dev metrics
        metrics.json     recording-level metrics of the best model per split
        predictions_<split>.csv   per-recording true/predicted scores
        tb/              TensorBoard logs
        backup/          BackupAndRestore state (a killed run resumes with --resume)
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from depressionmlp import metrics as M
from depressionmlp.data.sampler import (SegmentTable, balanced_dataset, eval_dataset,
                                        steps_per_epoch)
from depressionmlp.data.types import SegmentSettings
from depressionmlp.errors import DataError
from depressionmlp.runs import (check_numbers, deep_update, load_keras_file, new_run_dir,
                                run_files, save_model_atomic, write_json_atomic,
                                write_text_atomic)

DEFAULT_CONFIG = {
    "name": "DG+MG+Linear",
    "model": {"name": "DG+MG+Linear", "inputs": "all"},
    "data": {
        "corpus": "synthetic",
        "data_root": None,
        "train_splits": ["train"],
        "select_split": "dev",
        "eval_splits": ["dev", "test"],
        "strict_leakage": False,
        # segmented recordings are cached here as .npz (keyed by file, mtime and
        # settings), so a second run does not re-parse the CSVs; "" turns it off
        "cache_dir": ".cache/segments",
        "segment": {},               # overrides of SegmentSettings (Eq. 1-3)
    },
    "train": {
        "epochs": 100,
        "batch_size": 8,
        "per_recording": 4,          # Fig. 5: segments per recording per epoch
        "learning_rate": 2e-4,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "weight_decay": 1e-4,
        # [choice] "keras3": decoupled weight decay (Keras 3 Adam(weight_decay=...));
        # "keras2": the Keras-2 `decay` reading, lr_t = lr / (1 + decay * step).
        "weight_decay_mode": "keras3",
        "seed": 0,
        "jit_compile": False,
        "max_minutes": None,         # wall-clock budget; stops after the epoch that passes it
        "patience": None,            # epochs without dev improvement before stopping
        "init_bias_to_mean": True,   # [choice] start the score at the training-label mean
        # [choice] Eq. 20's Dense output times a fixed scale: null = 1 (the paper),
        # "label_std" = the training labels' standard deviation (as if trained on
        # standardised labels), or a number
        "score_scale": None,
        "verbose": 1,
    },
}

SCALES = {"avec2013": "bdi2", "avec2014": "bdi2", "synthetic": "bdi2", "daic": "phq8"}


# --------------------------------------------------------------------------- config

def resolve_config(config: dict, source: str = "config") -> dict:
    """Merge ``config`` over the defaults and check its keys and values."""
    _check_keys(config, DEFAULT_CONFIG, source)
    cfg = deep_update(copy.deepcopy(DEFAULT_CONFIG), config)
    if "name" not in config:
        cfg["name"] = cfg["model"]["name"]
    t = cfg["train"]
    for key in ("epochs", "batch_size", "per_recording"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise DataError(source, f"train.{key} must be a positive integer, got {t[key]!r}")
    check_numbers(t, ("learning_rate", "beta_1", "beta_2", "weight_decay", "seed",
                      "max_minutes", "patience"), source, "train.",
                  positive=("learning_rate", "max_minutes"), optional=("max_minutes", "patience"))
    if t["weight_decay_mode"] not in ("keras3", "keras2"):
        raise DataError(source, "train.weight_decay_mode must be 'keras3' or 'keras2'")
    from depressionmlp.data.segments import CENTERING
    center = cfg["data"]["segment"].get("center", "none")
    if center not in CENTERING:
        raise DataError(source, f"data.segment.center must be one of {list(CENTERING)}, "
                                f"got {center!r}")
    if cfg["data"]["corpus"] not in SCALES:
        raise DataError(source, f"data.corpus must be one of {sorted(SCALES)}, "
                                f"got {cfg['data']['corpus']!r}")
    return cfg


def _check_keys(config, defaults, source, prefix=""):
    for k, v in config.items():
        if k not in defaults:
            if prefix in ("model.", "data.segment."):      # free-form option tables
                continue
            raise DataError(source, f"unknown config key '{prefix}{k}'; "
                                    f"known: {', '.join(sorted(defaults))}")
        if isinstance(defaults[k], dict) and not isinstance(v, dict):
            raise DataError(source, f"config key '{prefix}{k}' must be a table "
                                    f"([{prefix}{k}]), got {v!r}")
        if isinstance(v, dict) and isinstance(defaults[k], dict):
            _check_keys(v, defaults[k], source, f"{prefix}{k}.")


def segment_settings(cfg: dict) -> SegmentSettings:
    from depressionmlp.data.corpora import default_settings
    base = default_settings(cfg["data"]["corpus"]).to_dict()
    base.update(cfg["data"]["segment"])
    seg_len = cfg["model"].get("segment_length")
    if seg_len is not None:
        base["segment_length"] = seg_len
    return SegmentSettings.from_dict(base)


def model_streams(cfg: dict) -> tuple[str, ...]:
    from depressionmlp.models import INPUT_SETS
    inputs = cfg["model"].get("inputs", "all")
    if inputs not in INPUT_SETS:
        raise DataError(None, f"model.inputs must be one of {sorted(INPUT_SETS)}, got {inputs!r}")
    return tuple(INPUT_SETS[inputs])


def build_model_from_config(cfg: dict, settings: SegmentSettings) -> keras.Model:
    from depressionmlp.models import build_model
    opts = {k: v for k, v in cfg["model"].items()
            if k not in ("name", "inputs", "segment_length", "n_points")}
    try:
        return build_model(cfg["model"]["name"], cfg["model"].get("inputs", "all"),
                           segment_length=settings.segment_length,
                           n_points=settings.n_points, **opts)
    except (ValueError, TypeError) as e:
        raise DataError(None, f"bad model config: {e}") from None


# --------------------------------------------------------------------------- loss/optimiser

@keras.saving.register_keras_serializable(package="depressionmlp")
def rmse_loss(y_true, y_pred):
    """Eq. 21 over the batch: sqrt(mean((y - y_hat)^2))."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    return keras.ops.sqrt(keras.ops.mean(keras.ops.square(y_true - y_pred)) + 1e-12)


def make_optimizer(t: dict) -> keras.optimizers.Optimizer:
    """Adam of Sec. IV-B-3 with the chosen weight-decay reading."""
    if t["weight_decay_mode"] == "keras3":
        return keras.optimizers.Adam(learning_rate=t["learning_rate"], beta_1=t["beta_1"],
                                     beta_2=t["beta_2"], weight_decay=t["weight_decay"])
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        t["learning_rate"], decay_steps=1, decay_rate=t["weight_decay"])
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=t["beta_1"], beta_2=t["beta_2"])


def _score_scale(value, labels, source) -> float:
    """The fixed factor of Eq. 20's output (see ``train.score_scale``)."""
    if value is None:
        return 1.0
    if value == "label_std":
        return max(float(np.std(labels)), 1.0)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise DataError(source, f"train.score_scale must be null, \"label_std\" or a positive "
                            f"number, got {value!r}")


def _init_output_bias(model: keras.Model, value: float) -> bool:
    """Set the bias of the final 1-unit Dense (Eq. 20) to ``value``."""
    biases = [w for w in model.weights if w.path.endswith("bias") and tuple(w.shape) == (1,)]
    if not biases:
        return False
    biases[-1].assign(np.array([value], dtype=np.float32))
    return True


# --------------------------------------------------------------------------- evaluation

def predict_segments(model: keras.Model, table: SegmentTable, streams) -> np.ndarray:
    """(S,) segment predictions in table order."""
    out = model.predict(eval_dataset(table, streams), verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(-1)


def evaluate_table(model, table: SegmentTable, streams, scale="bdi2",
                   train_labels=None) -> tuple[dict, list[dict]]:
    """Recording-level metrics and per-recording rows for one split."""
    seg_pred = predict_segments(model, table, streams)
    rec_ids, rec_pred, rec_true = M.aggregate_by_recording(
        table.recording_ids[table.recording], seg_pred, table.labels)
    result = M.regression_metrics(rec_true, rec_pred)
    result.update(M.classification_metrics(rec_true, rec_pred, scale))
    if train_labels is not None:
        result["mean_predictor"] = M.mean_predictor_metrics(train_labels, rec_true)
    subj = dict(zip(table.recording_ids, table.subject_ids))
    rows = [{"recording_id": str(r), "subject_id": str(subj[r]), "true": float(t),
             "predicted": float(p), "severity_true": M.severity_name(t, scale),
             "severity_predicted": M.severity_name(p, scale)}
            for r, p, t in zip(rec_ids, rec_pred, rec_true)]
    return result, rows


def write_predictions_csv(path, rows: list[dict]) -> None:
    cols = ["recording_id", "subject_id", "true", "predicted", "severity_true",
            "severity_predicted"]
    lines = [",".join(cols)] + [
        ",".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


class RecordingLevelSelection(keras.callbacks.Callback):
    """After each epoch: dev metrics at recording level; keep the best model.

    Adds ``dev_rmse``/``dev_mae`` to the epoch logs (so TensorBoard and
    ``history.json`` get them), saves ``best.keras`` atomically when dev RMSE
    improves, and stops on ``patience`` or on the wall-clock budget.
    """

    def __init__(self, table, streams, run_dir, scale, patience=None, max_minutes=None,
                 history_path=None):
        super().__init__()
        self.table, self.streams, self.run_dir, self.scale = table, streams, Path(run_dir), scale
        self.patience, self.max_minutes = patience, max_minutes
        self.history_path = history_path
        self.best, self.best_epoch, self.t0, self.history = math.inf, -1, None, []
        state = self.run_dir / "selection.json"
        if state.exists():                       # resumed run: remember the best so far
            s = json.loads(state.read_text())
            self.best, self.best_epoch, self.history = s["best"], s["best_epoch"], s["history"]

    def on_train_begin(self, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        res, _ = evaluate_table(self.model, self.table, self.streams, self.scale)
        logs["dev_rmse"], logs["dev_mae"] = res["rmse"], res["mae"]
        improved = res["rmse"] < self.best
        if improved:
            self.best, self.best_epoch = res["rmse"], epoch
            save_model_atomic(self.model, self.run_dir / "best.keras")
        self.history.append({"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)),
                             "dev_rmse": res["rmse"], "dev_mae": res["mae"],
                             "best": improved})
        write_json_atomic(self.run_dir / "selection.json",
                          {"best": self.best, "best_epoch": self.best_epoch,
                           "history": self.history})
        if self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self.max_minutes is not None and (time.time() - self.t0) / 60 > self.max_minutes:
            self.model.stop_training = True


# --------------------------------------------------------------------------- train

def load_tables(cfg: dict, settings: SegmentSettings, splits, warn=None) -> dict:
    """Segment (or read from cache) the corpus splits -> {split: SegmentTable}."""
    from depressionmlp.data.corpora import load_corpus
    d = cfg["data"]
    data = load_corpus(d["corpus"], d["data_root"], splits=tuple(splits), settings=settings,
                       strict=d["strict_leakage"], cache_dir=d["cache_dir"] or None,
                       **({"warn": warn} if warn is not None else {}))
    tables = {}
    for split in splits:
        recs = data.get(split, [])
        if not recs:
            raise DataError(d["data_root"] or os.environ.get("DATA_ROOT", "data"),
                            f"corpus '{d['corpus']}' has no recordings in split '{split}'")
        tables[split] = SegmentTable.from_recordings(recs, streams=("R_X", "R_Y", "R_AU"))
    return tables


def train(config: dict, *, out_base="outputs/runs", resume_dir=None, tables=None,
          source="config", callbacks=()) -> tuple[Path, dict]:
    """Train one config; returns (run_dir, metrics dict). See the module docstring."""
    cfg = resolve_config(config, source)
    t, d = cfg["train"], cfg["data"]
    settings = segment_settings(cfg)
    streams = model_streams(cfg)
    scale = SCALES[d["corpus"]]
    splits = list(dict.fromkeys(list(d["train_splits"]) + [d["select_split"]]
                                + list(d["eval_splits"])))
    if tables is None:
        tables = load_tables(cfg, settings, splits)
    train_table = _merge_tables([tables[s] for s in d["train_splits"]])
    dev_table = tables[d["select_split"]]

    keras.utils.set_random_seed(t["seed"])
    score_scale = _score_scale(t["score_scale"], train_table.recording_labels, source)
    if score_scale != 1.0:
        cfg["model"]["score_scale"] = score_scale
    model = build_model_from_config(cfg, settings)
    if t["init_bias_to_mean"]:
        _init_output_bias(model, float(np.mean(train_table.recording_labels)) / score_scale)
    model.compile(optimizer=make_optimizer(t), loss=rmse_loss, jit_compile=t["jit_compile"])

    run_dir = Path(resume_dir) if resume_dir else new_run_dir(out_base, cfg["name"])
    cfg["resolved"] = {"segment": settings.to_dict(), "streams": list(streams),
                       "scale": scale, "params": int(model.count_params())}
    write_json_atomic(run_dir / "config.json", cfg)

    steps = steps_per_epoch(train_table, t["per_recording"], t["batch_size"])
    selection = RecordingLevelSelection(dev_table, streams, run_dir, scale,
                                        patience=t["patience"], max_minutes=t["max_minutes"])
    # A resumed run continues the epoch draws where the killed one stopped.
    ds = balanced_dataset(train_table, streams, per_recording=t["per_recording"],
                          batch_size=t["batch_size"], seed=t["seed"],
                          start_epoch=len(selection.history))
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        selection,
        keras.callbacks.TensorBoard(str(run_dir / "tb"), write_graph=False, profile_batch=0),
        *callbacks,
    ]
    t0 = time.time()
    model.fit(ds, epochs=t["epochs"], steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
              verbose=t["verbose"])
    train_seconds = time.time() - t0

    best = load_model_file(run_dir / "best.keras")
    result = {"name": cfg["name"], "model": cfg["model"]["name"],
              "inputs": cfg["model"].get("inputs", "all"), "corpus": d["corpus"],
              "params": int(best.count_params()), "best_epoch": selection.best_epoch + 1,
              "epochs_run": len(selection.history), "train_seconds": round(train_seconds, 2),
              "steps_per_epoch": steps, "splits": {}}
    for split in d["eval_splits"]:
        res, rows = evaluate_table(best, tables[split], streams, scale,
                                   train_labels=train_table.recording_labels)
        result["splits"][split] = res
        write_predictions_csv(run_dir / f"predictions_{split}.csv", rows)
    write_json_atomic(run_dir / "history.json", selection.history)
    write_json_atomic(run_dir / "metrics.json", result)
    return run_dir, result


def _merge_tables(tables: list[SegmentTable]) -> SegmentTable:
    if len(tables) == 1:
        return tables[0]
    offsets, base, rec_base = [], 0, 0
    for tb in tables:
        offsets.append(tb.offsets + base)
        base += tb.n_segments
    recs = []
    for tb in tables:
        recs.append(tb.recording + rec_base)
        rec_base += tb.n_recordings
    cat = np.concatenate
    return SegmentTable(
        arrays={k: cat([tb.arrays[k] for tb in tables]) for k in tables[0].arrays},
        labels=cat([tb.labels for tb in tables]), recording=cat(recs).astype(np.int32),
        offsets=cat(offsets), counts=cat([tb.counts for tb in tables]),
        recording_ids=cat([tb.recording_ids for tb in tables]),
        subject_ids=cat([tb.subject_ids for tb in tables]),
        recording_labels=cat([tb.recording_labels for tb in tables]))


# --------------------------------------------------------------------------- load / predict

def load_model_file(path) -> keras.Model:
    """Load a ``.keras`` model with ``safe_mode=True``; a bad file is a DataError."""
    import depressionmlp.layers  # noqa: F401  (registers the custom layers)
    return load_keras_file(path, custom_objects={"rmse_loss": rmse_loss})


def load_run(model_path) -> tuple[keras.Model, dict]:
    """A run directory or a ``.keras`` file beside its ``config.json``."""
    model_file, cfg = run_files(model_path, "depressionmlp train")
    return load_model_file(model_file), cfg


def predict_file(model, cfg: dict, path) -> dict:
    """Score one OpenFace recording: recording score, severity class, segment scores."""
    from depressionmlp.data.openface import read_recording
    from depressionmlp.data.segments import segment_recording
    settings = SegmentSettings.from_dict(cfg["resolved"]["segment"])
    streams = cfg["resolved"]["streams"]
    scale = cfg["resolved"]["scale"]
    frames = read_recording(path)
    R_X, R_Y, R_AU, info = segment_recording(frames, settings)
    arrays = {"R_X": R_X, "R_Y": R_Y, "R_AU": R_AU}
    seg = np.asarray(model.predict({s: arrays[s] for s in streams}, verbose=0,
                                   batch_size=256)).reshape(-1)
    score = float(np.mean(seg))
    return {"file": str(path), "score": score, "severity": M.severity_name(score, scale),
            "scale": scale, "segments": len(seg), "segment_scores": [float(v) for v in seg],
            "frames": int(info.get("frames_total", frames.n_frames)),
            "frames_dropped": int(info.get("frames_dropped", 0))}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
