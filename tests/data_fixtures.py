"""Tiny writers for OpenFace / DAIC-WOZ files and corpus layouts, for tests.

Import from tests: ``from data_fixtures import write_openface_csv`` (pytest puts
``tests/`` on sys.path) or ``from tests.data_fixtures import ...``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depressionmlp.data.schema import AU_COLUMNS, OPENFACE_COLUMNS

DAIC_AU_COLUMNS = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU09_r", "AU10_r",
                   "AU12_r", "AU14_r", "AU15_r", "AU17_r", "AU20_r", "AU25_r", "AU26_r",
                   "AU04_c", "AU12_c", "AU15_c", "AU23_c", "AU28_c", "AU45_c"]
_COL = {c: i for i, c in enumerate(OPENFACE_COLUMNS)}


def openface_matrix(n_frames: int, *, seed: int = 0, fps: float = 30.0, success=None,
                    confidence=None, x=None, y=None, au=None) -> np.ndarray:
    """(n_frames, 714) values in schema order; landmarks/AUs random unless given.

    ``x``, ``y``: (T, 68) pixels; ``au``: (T, 35); ``success``: (T,) 0/1;
    ``confidence``: (T,). Other columns get distinct, recognisable values
    (3-D landmarks 1000 +, eye landmarks 2000 +) so a reader that picks the wrong
    columns fails the tests.
    """
    rng = np.random.default_rng(seed)
    t = n_frames
    m = np.zeros((t, len(OPENFACE_COLUMNS)))
    m[:, _COL["frame"]] = np.arange(1, t + 1)
    m[:, _COL["timestamp"]] = np.arange(t) / fps
    m[:, _COL["success"]] = 1 if success is None else np.asarray(success)
    m[:, _COL["confidence"]] = 0.98 if confidence is None else np.asarray(confidence)
    for i, c in enumerate(OPENFACE_COLUMNS):
        if c.startswith(("X_", "Y_", "Z_")):
            m[:, i] = 1000 + i
        elif c.startswith("eye_lmk"):
            m[:, i] = 2000 + i
    xs = rng.uniform(100, 400, (t, 68)) if x is None else np.asarray(x)
    ys = rng.uniform(100, 400, (t, 68)) if y is None else np.asarray(y)
    aus = rng.uniform(0, 5, (t, 35)).round(2) if au is None else np.asarray(au)
    m[:, _COL["x_0"]:_COL["x_0"] + 68] = xs
    m[:, _COL["y_0"]:_COL["y_0"] + 68] = ys
    m[:, _COL[AU_COLUMNS[0]]:_COL[AU_COLUMNS[0]] + 35] = aus
    return m


def _write_table(path, names, values: np.ndarray, fmt="%.6g") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ", ".join(names)
    np.savetxt(path, values, fmt=fmt, delimiter=", ", header=header, comments="")
    return path


def write_openface_csv(path, n_frames: int = 120, **kw) -> Path:
    """Write an OpenFace 2.x CSV (", "-separated header and rows, 714 columns)."""
    return _write_table(path, OPENFACE_COLUMNS, openface_matrix(n_frames, **kw))


def write_daic_recording(folder, pid, n_frames: int = 120, *, seed: int = 0,
                         success=None, x=None, y=None, au=None, aus_frames=None,
                         write_aus: bool = True) -> Path:
    """Write ``<folder>/<pid>_P/<pid>_CLNF_features.txt`` (+ ``_CLNF_AUs.txt``).

    ``aus_frames``: frame numbers present in the AUs file (default all).
    Returns the features path.
    """
    rng = np.random.default_rng(seed)
    d = Path(folder) / f"{pid}_P"
    frame = np.arange(1, n_frames + 1)
    ts = (frame - 1) / 30.0
    succ = np.ones(n_frames) if success is None else np.asarray(success, float)
    conf = np.full(n_frames, 0.93)
    xs = rng.uniform(150, 500, (n_frames, 68)) if x is None else np.asarray(x)
    ys = rng.uniform(100, 400, (n_frames, 68)) if y is None else np.asarray(y)
    aus = rng.uniform(0, 5, (n_frames, 20)).round(3) if au is None else np.asarray(au)
    meta = np.stack([frame, ts, conf, succ], 1)
    names = (["frame", "timestamp", "confidence", "success"]
             + [f"x{i}" for i in range(68)] + [f"y{i}" for i in range(68)])
    feat = _write_table(d / f"{pid}_CLNF_features.txt", names, np.hstack([meta, xs, ys]))
    if write_aus:
        rows = np.arange(n_frames) if aus_frames is None else np.asarray(aus_frames) - 1
        _write_table(d / f"{pid}_CLNF_AUs.txt",
                     ["frame", "timestamp", "confidence", "success"] + DAIC_AU_COLUMNS,
                     np.hstack([meta, aus])[rows])
    return feat


def write_label(path, value) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")
    return path


def make_avec2013(root, recs: dict, *, corpus: str = "avec2013", n_frames: int = 120,
                  split_names=None) -> Path:
    """``recs``: split -> {rec: label}. Returns ``<root>/<corpus>``."""
    cdir = Path(root) / corpus
    for i, (split, items) in enumerate(recs.items()):
        folder = (split_names or {}).get(split, split)
        for j, (rec, label) in enumerate(items.items()):
            write_openface_csv(cdir / "openface" / folder / f"{rec}.csv", n_frames,
                               seed=100 * i + j)
            write_label(cdir / "labels" / folder / f"{rec}_Depression.csv", label)
    return cdir


def make_avec2014(root, recs: dict, *, n_frames: int = 120, per_task_labels=False) -> Path:
    """``recs``: split -> {rec: label}; writes Freeform and Northwind CSVs per rec."""
    cdir = Path(root) / "avec2014"
    for split, items in recs.items():
        for rec, label in items.items():
            for k, task in enumerate(("Freeform", "Northwind")):
                write_openface_csv(cdir / "openface" / split / task / f"{rec}_{task}.csv",
                                   n_frames, seed=k)
                if per_task_labels:
                    write_label(cdir / "labels" / split / f"{rec}_{task}_Depression.csv",
                                label)
            if not per_task_labels:
                write_label(cdir / "labels" / split / f"{rec}_Depression.csv", label)
    return cdir


def make_daic(root, splits: dict, *, n_frames: int = 120, full_test: bool = True) -> Path:
    """``splits``: split -> {participant: PHQ-8}. Writes folders and split CSVs."""
    cdir = Path(root) / "daic"
    cdir.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        for k, pid in enumerate(items):
            write_daic_recording(cdir, pid, n_frames, seed=k)
        if split in ("train", "dev"):
            lines = ["Participant_ID,PHQ8_Binary,PHQ8_Score,Gender"]
            lines += [f"{p},{int(s >= 10)},{s},1" for p, s in items.items()]
            name = f"{split}_split_Depression_AVEC2017.csv"
        elif full_test:
            lines = ["Participant_ID,PHQ_Binary,PHQ_Score,Gender"]
            lines += [f"{p},{int(s >= 10)},{s},0" for p, s in items.items()]
            name = "full_test_split.csv"
        else:
            lines = ["participant_ID,Gender"] + [f"{p},0" for p in items]
            name = "test_split_Depression_AVEC2017.csv"
        (cdir / name).write_text("\n".join(lines) + "\n")
    return cdir
