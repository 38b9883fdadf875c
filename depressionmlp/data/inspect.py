"""Validate one recording file the way training reads it (``depressionmlp inspect``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from depressionmlp.data.openface import DAIC_AUS_SUFFIX, DAIC_FEATURES_SUFFIX, read_recording
from depressionmlp.data.segments import kept_mask, segment_recording
from depressionmlp.data.types import AUTO_PHASES, SegmentSettings
from depressionmlp.errors import DataError


def settings_for_file(path) -> SegmentSettings:
    """Default settings for a file: DAIC-WOZ for ``*_CLNF_*.txt``, else AVEC (480x480)."""
    from depressionmlp.data.corpora import default_settings
    name = Path(path).name
    daic = name.endswith(DAIC_FEATURES_SUFFIX) or name.endswith(DAIC_AUS_SUFFIX)
    return default_settings("daic" if daic else "avec2013")


def estimate_fps(timestamp: np.ndarray, frame: np.ndarray) -> float | None:
    """Frame rate from first to last frame: frames advanced / seconds elapsed.

    Over the whole span, so timestamps rounded to milliseconds (1/30 s -> 0.033)
    still give 30.
    """
    if len(frame) < 2 or not timestamp[-1] > timestamp[0] or not frame[-1] > frame[0]:
        return None
    return float(np.round((frame[-1] - frame[0]) / (timestamp[-1] - timestamp[0]), 2))


def _px_range(v: np.ndarray) -> list[float]:
    return [float(np.min(v)), float(np.max(v))] if v.size else [None, None]


def inspect_recording(path, settings: SegmentSettings | None = None) -> dict:
    """Read and segment one recording; summarise what training would see.

    Args:
        path: an OpenFace 2.x CSV or a DAIC-WOZ ``NNN_CLNF_features.txt`` (its
            ``NNN_CLNF_AUs.txt`` is found beside it).
        settings: SegmentSettings; default 30 -> 6 fps, M = 18, stride 9, and the
            frame size of the file's corpus (see :func:`settings_for_file`).

    Returns:
        dict with file, frames (rows), frames_ok (tracked frames kept, full rate),
        frames_dropped, aus (AU columns found), au_names, fps_in (from the
        timestamps), segments (at ``settings.phases``), default_phases and
        default_segments (how the default protocol's ``phases = "auto"`` cuts it:
        all five phases below 40 segments at phase 0), x_px_range and y_px_range
        ([min, max] of the 2-D landmarks over kept frames, pixels); plus ``note``
        when the measured frame rate differs from ``settings.fps_in``.

    Raises:
        DataError: the file cannot be read (see the readers), or it is too short
            or too gappy for one segment (a ShortRecordingError, as in training).
    """
    s = settings or settings_for_file(path)
    frames = read_recording(path)
    keep = kept_mask(frames, s.min_confidence)
    notes = []
    segments = segment_recording(frames, s)[3]["segments"]   # too short: DataError, as training
    # how the default protocol (data.segment.phases = "auto") would cut it
    auto = segment_recording(frames, replace(s, phases=AUTO_PHASES))[3]
    fps = estimate_fps(frames.timestamp, frames.frame)
    if fps is not None and abs(fps - s.fps_in) > 0.05 * s.fps_in:
        notes.append(f"timestamps say {fps:g} fps, segmenting assumes {s.fps_in:g}")
    info = {"file": os.fspath(path), "frames": frames.n_frames, "frames_ok": int(keep.sum()),
            "frames_dropped": int((~keep).sum()), "aus": len(frames.au_names),
            "au_names": list(frames.au_names), "fps_in": fps, "segments": int(segments),
            "default_phases": int(auto["phases"]), "default_segments": int(auto["segments"]),
            "x_px_range": _px_range(frames.x[keep]), "y_px_range": _px_range(frames.y[keep])}
    if notes:
        info["note"] = "; ".join(notes)
    return info
