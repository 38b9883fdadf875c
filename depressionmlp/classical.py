"""The classical references: hand-crafted statistics + a penalised linear model.

``StatsRidge`` (ridge regression) and ``StatsLasso`` (the lasso: the same features
with an L1 penalty, which keeps a few of them).

Every learning claim in this project is read against three numbers on the same
split: the mean predictor, the corpus's noise floor, and this model. It sees the
same segments as the deep models (Eq. 1-3 output, (M, N) per stream) and computes,
per segment,

- keypoints (``R_X``, ``R_Y``), in face units: each frame's points minus the
  segment's face centre, divided by the segment's face size (the spread of the
  mean face), so face position and scale in the frame drop out. Per face region
  (jaw, brows, nose, eyes, mouth) and axis: mean speed (mean |first difference|),
  within-segment spread (sd over frames) and resting position (mean);
- AUs (``R_AU``, every other widened column, i.e. the original AUs of Eq. 3): mean
  level, within-segment spread and mean |first difference| (for the presence
  columns: the rate of switching).

A recording's features are the mean over its segments; ``StandardScaler`` +
ridge regression (alpha by cross-validation over training subjects) is fit on them.
The lasso differs only in its penalty: with 25-60 training recordings and 135
features, a cue carried by one or two of them (the brows' motion, the blinks' AU45
spread) is spread by the ridge over every feature that fits the training noise,
while the lasso keeps the few that carry it. Because scaler and model are affine,
the mean of the per-segment predictions is
exactly the prediction from the recording's features, so the model predicts per
segment and is evaluated, aggregated and served like the deep models.

Saved as plain JSON (feature names, scaler, coefficients, alpha): no pickle.
Both are written to :data:`MODEL_FILE`; its ``format`` says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from depressionmlp.errors import DataError

MODEL_NAME = "StatsRidge"
LASSO_NAME = "StatsLasso"
#: The classical models, by their ``[model] name``.
MODEL_NAMES = (MODEL_NAME, LASSO_NAME)
FORMAT = "depressionmlp.StatsRidge/1"
LASSO_FORMAT = "depressionmlp.StatsLasso/1"
MODEL_FILE = "model.ridge.json"
REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36),
           "eyes": range(36, 48), "mouth": range(48, 68)}
ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 29))
#: The lasso's penalties, as fractions of the smallest one that zeroes every
#: coefficient (``max |z^T (y - mean y)| / n`` on the standardised features).
LASSO_FRACTIONS = tuple(float(a) for a in np.logspace(-3, 0, 25))


# --------------------------------------------------------------------------- features

def _keypoint_features(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(S, M, 68) x and y -> (S, F) region statistics in face units."""
    cx = x.mean(axis=(1, 2), keepdims=True)
    cy = y.mean(axis=(1, 2), keepdims=True)
    mx, my = x.mean(axis=1), y.mean(axis=1)                        # (S, 68) mean face
    size = np.sqrt(mx.var(axis=1) + my.var(axis=1))[:, None, None]
    size = np.maximum(size, 1e-6)
    feats, names = [], []
    for axis, v in (("x", (x - cx) / size), ("y", (y - cy) / size)):
        speed = np.abs(np.diff(v, axis=1)).mean(axis=1)            # (S, 68)
        spread = v.std(axis=1)
        level = v.mean(axis=1)
        for region, idx in REGIONS.items():
            idx = list(idx)
            if max(idx) >= v.shape[-1]:
                continue
            for stat, arr in (("speed", speed), ("spread", spread), ("level", level)):
                feats.append(arr[:, idx].mean(axis=1))
                names.append(f"kp_{axis}_{region}_{stat}")
    return np.stack(feats, axis=1), names


def _au_features(au: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(S, M, N) widened AUs -> level, spread and mean |difference| of every other
    column (Eq. 3 puts the P original AUs at the even columns; the odd ones are
    their neighbours' means and add nothing a linear model needs), plus the last."""
    cols = sorted(set(range(0, au.shape[-1], 2)) | {au.shape[-1] - 1})
    au = au[..., cols]
    feats = np.concatenate([au.mean(axis=1), au.std(axis=1),
                            np.abs(np.diff(au, axis=1)).mean(axis=1)], axis=1)
    names = [f"au{j}_{stat}" for stat in ("level", "spread", "change") for j in cols]
    return feats, names


def segment_features(arrays: dict, streams) -> tuple[np.ndarray, list[str]]:
    """Per-segment statistics of the given streams: ((S, F) float64, F names)."""
    parts, names = [], []
    if "R_X" in streams and "R_Y" in streams:
        f, n = _keypoint_features(np.asarray(arrays["R_X"], np.float64),
                                  np.asarray(arrays["R_Y"], np.float64))
        parts.append(f)
        names += n
    if "R_AU" in streams:
        f, n = _au_features(np.asarray(arrays["R_AU"], np.float64))
        parts.append(f)
        names += n
    if not parts:
        raise ValueError(f"StatsRidge needs (R_X, R_Y) and/or R_AU, got {list(streams)}")
    return np.concatenate(parts, axis=1), names


def recording_features(table, streams) -> np.ndarray:
    """(R, F) mean segment features per recording of a SegmentTable."""
    seg, _ = segment_features(table.arrays, streams)
    out = np.zeros((table.n_recordings, seg.shape[1]))
    np.add.at(out, table.recording, seg)
    return out / table.counts[:, None]


# --------------------------------------------------------------------------- model

class StatsRidge:
    """``StandardScaler`` + ``RidgeCV`` on :func:`segment_features`.

    Args:
        streams: the input streams, e.g. ``("R_X", "R_Y", "R_AU")``.
        alphas: the ridge penalties searched (default 1e-2..1e5).
    """

    name = MODEL_NAME
    format = FORMAT

    def __init__(self, streams=("R_X", "R_Y", "R_AU"), alphas=ALPHAS):
        self.streams = tuple(streams)
        self.alphas = tuple(float(a) for a in alphas)
        self.feature_names: list[str] = []
        self.mean_ = self.scale_ = self.coef_ = None
        self.intercept_ = 0.0
        self.alpha_ = None

    def fit(self, table) -> "StatsRidge":
        """Fit on a training SegmentTable: one row per recording.

        The penalty is chosen by cross-validation over subjects (GroupKFold, up to
        5 folds): a subject's second session never validates its first, which
        would reward memorising identity.
        """
        from sklearn.model_selection import GroupKFold, GridSearchCV
        from sklearn.preprocessing import StandardScaler
        x = recording_features(table, self.streams)
        y = np.asarray(table.recording_labels, np.float64)
        _, self.feature_names = segment_features(
            {s: table.arrays[s][:1] for s in self.streams}, self.streams)
        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
        groups = np.asarray(table.subject_ids)
        folds = min(5, len(set(groups.tolist())))
        alphas = self._alpha_grid(z, y)
        if folds >= 2:
            search = GridSearchCV(self._estimator(), {"alpha": alphas},
                                  cv=GroupKFold(n_splits=folds),
                                  scoring="neg_mean_squared_error")
            search.fit(z, y, groups=groups)
            fitted = search.best_estimator_
        else:
            fitted = self._estimator().set_params(alpha=float(np.median(alphas))).fit(z, y)
        self.mean_, self.scale_ = scaler.mean_, scaler.scale_
        self.coef_, self.intercept_ = fitted.coef_, float(fitted.intercept_)
        self.alpha_ = float(fitted.alpha)
        return self

    def _estimator(self):
        from sklearn.linear_model import Ridge
        return Ridge()

    def _alpha_grid(self, z, y) -> list[float]:
        return list(self.alphas)

    def count_params(self) -> int:
        return 0 if self.coef_ is None else int(self.coef_.size + 1)

    def predict(self, inputs, verbose=0, batch_size=None) -> np.ndarray:
        """Per-segment scores, (S, 1), from a dict of (S, M, N) stream arrays."""
        x, _ = segment_features(inputs, self.streams)
        z = (x - self.mean_) / self.scale_
        return (z @ self.coef_ + self.intercept_)[:, None]

    # ----------------------------------------------------------------- saving

    def to_json(self) -> dict:
        return {"format": self.format, "streams": list(self.streams),
                "alphas": list(self.alphas),
                "alpha": self.alpha_, "feature_names": self.feature_names,
                "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(), "intercept": self.intercept_}

    @classmethod
    def from_json(cls, d: dict) -> "StatsRidge":
        m = cls(d["streams"], d["alphas"])
        m.alpha_, m.feature_names = d["alpha"], list(d["feature_names"])
        m.mean_, m.scale_ = np.asarray(d["mean"]), np.asarray(d["scale"])
        m.coef_, m.intercept_ = np.asarray(d["coef"]), float(d["intercept"])
        n = len(m.feature_names)
        if not (m.mean_.shape == m.scale_.shape == m.coef_.shape == (n,)):
            raise ValueError("feature, scaler and coefficient lengths differ")
        return m

    def save(self, path) -> None:
        from depressionmlp.runs import write_json_atomic
        write_json_atomic(path, self.to_json())


class StatsLasso(StatsRidge):
    """``StandardScaler`` + the lasso on :func:`segment_features` [choice: the
    sparse classical reference].

    The penalty is chosen as StatsRidge's is (cross-validation over training
    subjects), among ``alphas`` x the smallest penalty that zeroes every
    coefficient on the training features.

    Args:
        streams: the input streams, e.g. ``("R_X", "R_Y", "R_AU")``.
        alphas: fractions of that largest penalty (default 1e-3..1).
    """

    name = LASSO_NAME
    format = LASSO_FORMAT

    def __init__(self, streams=("R_X", "R_Y", "R_AU"), alphas=LASSO_FRACTIONS):
        super().__init__(streams, alphas)

    def _estimator(self):
        from sklearn.linear_model import Lasso
        return Lasso(max_iter=50_000, tol=1e-4)

    def _alpha_grid(self, z, y) -> list[float]:
        top = float(np.max(np.abs(z.T @ (y - y.mean()))) / len(y))
        return [max(top, 1e-12) * a for a in self.alphas]

    def count_params(self) -> int:
        """Non-zero coefficients + the intercept (what the lasso kept)."""
        return 0 if self.coef_ is None else int(np.count_nonzero(self.coef_) + 1)


#: The classical models by their ``[model] name``, and by their file's ``format``.
MODELS = {cls.name: cls for cls in (StatsRidge, StatsLasso)}
CLASSES = {cls.format: cls for cls in MODELS.values()}


def build(name: str, streams):
    """An unfitted classical model by its ``[model] name``."""
    return MODELS[name](streams)


def load(path) -> StatsRidge:
    """A saved StatsRidge or StatsLasso; a bad file is a DataError naming it."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as e:
        raise DataError(path, f"cannot read the model file ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a StatsRidge model file (invalid JSON: {e})") from None
    if not isinstance(d, dict) or d.get("format") not in CLASSES:
        raise DataError(path, f"not a StatsRidge model file (expected format {FORMAT!r} "
                              f"or {LASSO_FORMAT!r})")
    cls = CLASSES[d["format"]]
    try:
        return cls.from_json(d)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"corrupt {cls.name} model file ({e})") from None
