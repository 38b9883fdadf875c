"""Recording-level metrics (Eq. 21-24) and severity classes (Sec. IV-A, Table VII).

All functions take plain arrays of recording-level labels and predictions; the
per-segment (or per-frame, for HMHN) predictions are first averaged per
recording with :func:`aggregate_by_recording`.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

# Lower bounds of each class; a score s is in class i if BOUNDS[i] <= s < BOUNDS[i+1].
SEVERITY_SCALES = {
    # BDI-II: 0-13 minimal, 14-19 mild, 20-28 moderate, 29-63 severe.
    "bdi2": {"bounds": (0, 14, 20, 29), "names": ("minimal", "mild", "moderate", "severe"),
             "max": 63},
    # PHQ-8 (DAIC-WOZ): 0-4 none, 5-9 mild, 10-14 moderate, 15-19 moderately severe, 20-24 severe.
    "phq8": {"bounds": (0, 5, 10, 15, 20),
             "names": ("none", "mild", "moderate", "moderately severe", "severe"), "max": 24},
}


def aggregate_by_recording(ids, preds, labels):
    """Mean of segment predictions per recording (the paper's recording score).

    Args:
        ids: (S,) recording id per segment.
        preds: (S,) or (S, 1) segment predictions.
        labels: (S,) label per segment (constant within a recording).

    Returns:
        (rec_ids, rec_pred, rec_label): recordings in first-seen order.
    """
    ids = np.asarray(ids).reshape(-1)
    preds = np.asarray(preds, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if not (len(ids) == len(preds) == len(labels)):
        raise ValueError(f"ids, preds, labels differ in length: {len(ids)}, {len(preds)}, {len(labels)}")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)                     # unique ids in first-seen order
    counts = np.bincount(inverse)
    pred_mean = np.bincount(inverse, weights=preds) / counts
    label_mean = np.bincount(inverse, weights=labels) / counts
    return ids[first[order]], pred_mean[order], label_mean[order]


def apply_recording_link(link: dict | None, scores) -> np.ndarray:
    """A run's recording link (``train.recording_link``) applied to recording scores.

    ``link`` is None or ``{"kind": "identity"}`` (scores unchanged), or the record
    of :func:`depressionmlp.train.fit_recording_link`: ``{"kind": "quadratic",
    "center": m, "scale": s, "coef": [a, b, c], "range": [u_lo, u_hi]}``. With
    ``u = (z - m) / s`` and ``v = clip(u, u_lo, u_hi)``:
    ``g(z) = a + b v + c v^2 + (b + 2 c v)(u - v)``: the quadratic inside the range
    of the scores it was fitted to, continued along its tangent outside it.

    Args:
        scores: (R,) recording scores (the mean of each recording's segment scores).

    Returns:
        (R,) linked scores.
    """
    z = np.asarray(scores, dtype=np.float64)
    if not link or link.get("kind", "identity") == "identity":
        return z
    a, b, c = (float(v) for v in link["coef"])
    lo, hi = (float(v) for v in link["range"])
    u = (z - float(link["center"])) / float(link["scale"])
    v = np.clip(u, lo, hi)
    return a + b * v + c * v * v + (b + 2.0 * c * v) * (u - v)


def rmse(y_true, y_pred) -> float:
    """Eq. 21: sqrt(mean((y - y_hat)^2))."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true, y_pred) -> float:
    """Eq. 22: mean(|y - y_hat|)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def r2(y_true, y_pred) -> float:
    """Eq. 23: 1 - SS_res / SS_tot (nan when the labels are constant)."""
    y_true, y_pred = _pair(y_true, y_pred)
    ss_tot = np.sum((y_true - y_true.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / ss_tot)


def smape(y_true, y_pred) -> float:
    """Eq. 24: mean(|y - y_hat| / ((|y| + |y_hat|) / 2)) in percent; 0/0 terms count 0."""
    y_true, y_pred = _pair(y_true, y_pred)
    den = (np.abs(y_true) + np.abs(y_pred)) / 2.0
    num = np.abs(y_true - y_pred)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(100.0 * np.mean(ratio))


def regression_metrics(y_true, y_pred) -> dict:
    """RMSE, MAE, R2, SMAPE (Eq. 21-24) and the count, as a JSON-ready dict."""
    return {"rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred),
            "r2": r2(y_true, y_pred), "smape": smape(y_true, y_pred),
            "n": int(np.asarray(y_true).size)}


def severity_class(scores, scale: str = "bdi2") -> np.ndarray:
    """Severity class index per score (0 = minimal/none) on the BDI-II or PHQ-8 scale."""
    bounds = np.asarray(_scale(scale)["bounds"][1:], dtype=np.float64)
    return np.searchsorted(bounds, np.asarray(scores, dtype=np.float64), side="right")


def severity_name(score: float, scale: str = "bdi2") -> str:
    return _scale(scale)["names"][int(severity_class([score], scale)[0])]


def classification_metrics(y_true, y_pred, scale: str = "bdi2") -> dict:
    """Severity-class accuracy and the two-class ROC AUC (Table VII, Fig. 9/10).

    Two classes: minimal/none vs the rest (BDI-II >= 14, PHQ-8 >= 5 is the first
    non-minimal class; for PHQ-8 the clinical cut-off 10 is also reported).
    The AUC uses the predicted score as the decision value.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    c_true, c_pred = severity_class(y_true, scale), severity_class(y_pred, scale)
    two_true, two_pred = c_true > 0, c_pred > 0
    out = {
        "accuracy_classes": float(np.mean(c_true == c_pred)),
        "accuracy_2class": float(np.mean(two_true == two_pred)),
        "n_classes": len(_scale(scale)["names"]),
        "confusion": skm.confusion_matrix(
            c_true, c_pred, labels=list(range(len(_scale(scale)["names"])))).tolist(),
    }
    out["roc_auc_2class"] = (float(skm.roc_auc_score(two_true, y_pred))
                             if 0 < two_true.sum() < len(two_true) else float("nan"))
    if scale == "phq8":
        pos = y_true >= 10
        out["accuracy_phq8_cutoff10"] = float(np.mean(pos == (y_pred >= 10)))
        out["roc_auc_phq8_cutoff10"] = (float(skm.roc_auc_score(pos, y_pred))
                                        if 0 < pos.sum() < len(pos) else float("nan"))
    return out


def mean_predictor_metrics(train_labels, y_true) -> dict:
    """Metrics of the baseline that predicts the training-label mean for everyone."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    pred = np.full_like(y_true, float(np.mean(train_labels)))
    return regression_metrics(y_true, pred)


def _scale(scale: str) -> dict:
    if scale not in SEVERITY_SCALES:
        raise ValueError(f"unknown severity scale {scale!r}; choose from {sorted(SEVERITY_SCALES)}")
    return SEVERITY_SCALES[scale]


def _pair(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_pred {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("no recordings to score")
    return y_true, y_pred
