"""From per-frame tracking to short-term representation sequences (Eq. 1-3).

A recording's frames are down-sampled (30 -> 6 fps: keep every 5th frame), the
frames OpenFace failed to track are dropped, and the rest is cut into segments of
M consecutive frames with a stride (50 % overlap). Each segment gives three
(M, N) matrices (Eq. 1):

- ``R_X``, ``R_Y``: landmark pixels divided by max(frame height, width)  (Eq. 2)
- ``R_AU``: the P AU columns widened to N = 68 columns                    (Eq. 3)

Dropped frames are never filled with zeros: the kept frames are split into runs of
consecutive down-sampled frames and a segment never spans a gap **[choice]**.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from depressionmlp.data.openface import dependency_paths, read_recording
from depressionmlp.data.types import (AUTO_PHASES, OpenFaceFrames, RecordingSource,
                                      SegmentedRecording, SegmentSettings)
from depressionmlp.errors import DataError

CACHE_VERSION = 1


class ShortRecordingError(DataError):
    """A DataError for a recording with too few usable frames for one segment."""


# ----------------------------------------------------------------------------- Eq. 1-3

CENTERING = ("none", "recording")


def downsample_step(fps_in: float, fps: float) -> int:
    """Frames between kept frames: round(fps_in / fps), at least 1 (30 -> 6 fps: 5)."""
    if fps <= 0 or fps_in <= 0:
        raise ValueError(f"frame rates must be positive, got fps_in={fps_in}, fps={fps}")
    return max(1, int(round(fps_in / fps)))


def downsample(frames, fps_in: float, fps: float):
    """Keep every round(fps_in / fps)-th frame by row position, starting with the first.

    Args:
        frames: an array with frames on axis 0, shape (T, ...), or OpenFaceFrames.
        fps_in, fps: frame rate of the input and of the output.

    Returns:
        The same kind of object with ceil(T / step) frames.
    """
    step = downsample_step(fps_in, fps)
    if isinstance(frames, OpenFaceFrames):
        return OpenFaceFrames(
            path=frames.path, frame=frames.frame[::step], timestamp=frames.timestamp[::step],
            success=frames.success[::step], confidence=frames.confidence[::step],
            x=frames.x[::step], y=frames.y[::step], au=frames.au[::step],
            au_names=list(frames.au_names))
    return frames[::step]


def normalise_landmarks(v, frame_size) -> np.ndarray:
    """Eq. 2: R = R_hat / max(I_r, I_c).

    Args:
        v: landmark pixels, any shape (e.g. (T, 68) or (S, M, 68)).
        frame_size: (height, width) = (I_r, I_c) of the video frame.

    Returns:
        float32 array of v's shape, in [0, 1] for points inside the frame.
    """
    h, w = frame_size
    return (np.asarray(v, np.float32) / np.float32(max(h, w))).astype(np.float32)


def _widen_eq3(au: np.ndarray) -> np.ndarray:
    """Eq. 3 as printed, for N = 2P - 2 columns (P = 35 -> 68).

    1-based j = 1..N: odd j -> column (j + 1) / 2; even j -> mean of columns j / 2
    and j / 2 + 1.
    """
    p = au.shape[-1]
    n = 2 * p - 2
    out = np.empty(au.shape[:-1] + (n,), np.float32)
    for j in range(1, n + 1):
        if j % 2 == 1:
            out[..., j - 1] = au[..., (j + 1) // 2 - 1]
        else:
            out[..., j - 1] = (au[..., j // 2 - 1] + au[..., j // 2]) / 2
    return out


def _widen_interp(au: np.ndarray, n_points: int) -> np.ndarray:
    """Linear interpolation of the P columns at positions k (P - 1) / N, k = 0..N-1.

    Column k of the output samples the AU axis (0-based positions 0..P-1) at
    k (P - 1) / N, i.e. ``np.interp`` along the last axis. For N = 2P - 2 the
    positions are 0, 0.5, 1, ..., P - 1.5: exactly Eq. 3.
    """
    p = au.shape[-1]
    pos = np.arange(n_points, dtype=np.float64) * (p - 1) / n_points
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, p - 1)
    frac = (pos - lo).astype(np.float32)
    return (au[..., lo] * (1 - frac) + au[..., hi] * frac).astype(np.float32)


def widen_aus(au, n_points: int = 68) -> np.ndarray:
    """Eq. 3: widen P AU columns to ``n_points`` columns.

    For n_points = 2P - 2 (P = 35 -> 68, OpenFace 2.x) this is Eq. 3 as printed;
    for other P (DAIC-WOZ: 20) it is linear interpolation onto n_points columns at
    positions k (P - 1) / n_points **[choice]**, which equals Eq. 3 when
    n_points = 2P - 2.

    Args:
        au: (..., P) AU values, P >= 2.
        n_points: N, output columns.

    Returns:
        (..., N) float32.
    """
    au = np.asarray(au, np.float32)
    p = au.shape[-1]
    if p < 2:
        raise ValueError(f"need at least 2 AU columns to widen, got {p}")
    if n_points == 2 * p - 2:
        return _widen_eq3(au)
    return _widen_interp(au, n_points)


# ----------------------------------------------------------------------------- segmenting

def kept_mask(frames: OpenFaceFrames, min_confidence: float) -> np.ndarray:
    """(T,) bool: tracked (success) with confidence >= min_confidence and finite values."""
    ok = frames.success & (frames.confidence >= min_confidence)
    finite = (np.isfinite(frames.x).all(1) & np.isfinite(frames.y).all(1)
              & np.isfinite(frames.au).all(1))
    return ok & finite


def run_starts(keep: np.ndarray, frame_no: np.ndarray | None, step: int,
               length: int, stride: int) -> np.ndarray:
    """Segment start positions among the kept frames (indices into ``keep.nonzero()``).

    Runs are maximal stretches of consecutive kept down-sampled frames; if frame
    numbers are given, a jump other than ``step`` between neighbours (rows missing
    from the file) also ends a run. Within a run of L frames the starts are
    0, stride, ... while start + length <= L.
    """
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    brk = np.diff(idx) != 1
    if frame_no is not None:
        brk |= np.diff(frame_no[idx]) != step
    bounds = np.concatenate([[0], np.flatnonzero(brk) + 1, [len(idx)]])
    starts = [np.arange(a, b - length + 1, stride) for a, b in zip(bounds[:-1], bounds[1:])
              if b - a >= length]
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)


def _longest_run(keep: np.ndarray) -> int:
    best = cur = 0
    for k in keep:
        cur = cur + 1 if k else 0
        best = max(best, cur)
    return best


def _windows(keep: np.ndarray, starts: np.ndarray, step: int, phase: int,
             length: int) -> np.ndarray:
    """(S, M) full-rate row numbers of the segments starting at ``starts`` among the
    kept frames of the down-sampled phase ``phase`` (rows phase, phase + step, ...)."""
    rows = np.flatnonzero(keep) * step + phase
    return rows[starts[:, None] + np.arange(length)[None, :]].reshape(-1, length)


def check_phases(settings: SegmentSettings, step: int) -> None:
    """ValueError unless ``settings.phases`` is an integer from 1 to ``step`` or
    ``"auto"`` with a positive integer ``phases_below``."""
    phases, below = settings.phases, settings.phases_below
    if phases == AUTO_PHASES:
        if isinstance(below, bool) or not isinstance(below, int) or below < 1:
            raise ValueError(f"phases_below must be a positive integer, got {below!r}")
    elif isinstance(phases, bool) or not isinstance(phases, int) or not 1 <= phases <= step:
        raise ValueError(f"phases must be \"{AUTO_PHASES}\" or an integer from 1 to {step} "
                         f"(fps_in / fps), got {phases!r}")


def recording_phases(settings: SegmentSettings, step: int, segments_phase0: int) -> int:
    """The phases one recording is cut at: ``settings.phases``, or under ``"auto"``
    all ``step`` of them when phase 0 alone gives fewer than ``phases_below``
    segments, else 1 [choice] (see SegmentSettings.phases)."""
    if settings.phases != AUTO_PHASES:
        return int(settings.phases)
    return step if segments_phase0 < settings.phases_below else 1


def segment_recording(frames: OpenFaceFrames, settings: SegmentSettings | None = None):
    """Cut one recording into segments (Eq. 1-3).

    Args:
        frames: the recording (T frames at ``settings.fps_in``).
        settings: SegmentSettings (defaults: 30 -> 6 fps, M = 18, stride 9).

    Returns:
        (R_X, R_Y, R_AU, info): R_X, R_Y (S, M, 68) float32 (Eq. 2), R_AU
        (S, M, N) float32 (Eq. 3), info a dict with frames_total (T),
        frames_dropped (failed frames among the T), frames_sampled (after
        down-sampling), frames_kept (down-sampled frames used; both of phase
        0), segments (S, over all phases), phases (those this recording was cut
        at: ``settings.phases``, or the ``"auto"`` rule's choice), step, fps.

    Raises:
        ShortRecordingError (a DataError): fewer usable frames than one segment,
            or no gap-free run of M.
    """
    s = settings or SegmentSettings()
    step = downsample_step(s.fps_in, s.fps)
    m = int(s.segment_length)
    if m < 1 or s.stride < 1:
        raise ValueError(f"segment_length and stride must be >= 1, got {m}, {s.stride}")
    if s.center not in CENTERING:
        raise ValueError(f"center must be one of {CENTERING}, got {s.center!r}")
    check_phases(s, step)
    keep_all = kept_mask(frames, s.min_confidence)
    keep = keep_all[::step]
    frame_no = frames.frame[::step]
    starts = run_starts(keep, frame_no, step, m, int(s.stride))
    info = {"frames_total": frames.n_frames,
            "frames_dropped": int((~keep_all).sum()),
            "frames_sampled": int(len(keep)),
            "frames_kept": int(keep.sum()),
            "segments": int(len(starts)), "step": step, "fps": s.fps}
    if len(starts) == 0:
        k = info["frames_kept"]
        fps = f"{s.fps:g} fps"
        if k < m:
            problem = f"only {k} usable frames at {fps}, a segment needs {m}"
        else:
            problem = (f"{k} usable frames at {fps} but tracking gaps leave at most "
                       f"{_longest_run(keep)} in a row, a segment needs {m} consecutive")
        raise ShortRecordingError(frames.path, f"{problem} ({info['frames_dropped']} of "
                                     f"{info['frames_total']} frames failed tracking)")
    phases = recording_phases(s, step, len(starts))
    info["phases"] = phases
    win = _windows(keep, starts, step, 0, m)      # (S, M) rows of the full-rate arrays
    if phases > 1:                                # [choice] see SegmentSettings.phases
        win = [win]
        for phase in range(1, phases):
            keep_p = keep_all[phase::step]
            starts_p = run_starts(keep_p, frames.frame[phase::step], step, m, int(s.stride))
            win.append(_windows(keep_p, starts_p, step, phase, m))
        win = np.concatenate(win)
        win = win[np.argsort(win[:, 0], kind="stable")]
        info["segments"] = int(len(win))
    rows = np.flatnonzero(keep) * step            # phase 0's kept frames (centring)
    r_x = normalise_landmarks(frames.x[win], s.frame_size)
    r_y = normalise_landmarks(frames.y[win], s.frame_size)
    r_au = widen_aus(frames.au[win], s.n_points)
    if s.center == "recording":                   # [choice] see SegmentSettings.center
        r_x -= normalise_landmarks(frames.x[rows], s.frame_size).mean(axis=0)
        r_y -= normalise_landmarks(frames.y[rows], s.frame_size).mean(axis=0)
        r_au -= widen_aus(frames.au[rows], s.n_points).mean(axis=0)
    return r_x, r_y, r_au, info


# ----------------------------------------------------------------------------- cache

def cache_key(path, settings: SegmentSettings) -> str:
    """Hash of (absolute path, size, mtime_ns of every file read, settings, version)."""
    parts = [f"v{CACHE_VERSION}", json.dumps(settings.to_dict(), sort_keys=True)]
    for p in dependency_paths(path):
        p = Path(p).absolute()
        try:
            st = p.stat()
            parts.append(f"{p}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}|missing")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _cache_file(cache_dir, source: RecordingSource, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.recording_id)
    return Path(cache_dir) / f"{safe}-{key}.npz"


def _write_npz_atomic(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: np.load parses each array's header with ast.literal_eval, and on CPython 3.11 (seen on
#: 3.11.7, in a test run) concurrent ast calls can fail with "SystemError: AST constructor
#: recursion depth mismatch" (python/cpython#106905); load_corpus reads in threads
_NPZ_LOCK = threading.Lock()


def _read_cache(path: Path):
    try:
        with _NPZ_LOCK, np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            return z["R_X"], z["R_Y"], z["R_AU"], info
    except (OSError, ValueError, KeyError):
        return None                         # missing or corrupt: re-parse


def load_segmented(source: RecordingSource, settings: SegmentSettings | None = None,
                   cache_dir=None) -> SegmentedRecording:
    """Read and segment one recording, through an optional .npz cache.

    Args:
        source: where the recording is and what its label is.
        settings: SegmentSettings.
        cache_dir: folder for ``<recording_id>-<key>.npz`` files; None = no cache.
            The key hashes the absolute path, size and mtime_ns of the file(s) read
            and the settings, so a changed file or setting is re-parsed; files are
            written atomically (temporary file + os.replace).

    Returns:
        SegmentedRecording with (S, M, N) float32 streams; ``meta`` holds the
        segmenting info, the source path and whether it came from the cache.
    """
    s = settings or SegmentSettings()
    hit = None
    if cache_dir is not None:
        cfile = _cache_file(cache_dir, source, cache_key(source.path, s))
        hit = _read_cache(cfile) if cfile.exists() else None
    if hit is None:
        r_x, r_y, r_au, info = segment_recording(read_recording(source.path), s)
        if cache_dir is not None:
            _write_npz_atomic(cfile, R_X=r_x, R_Y=r_y, R_AU=r_au,
                              info=np.array(json.dumps(info)))
    else:
        r_x, r_y, r_au, info = hit
    meta = dict({"phases": s.phases}, **info)     # caches older than info["phases"]
    meta.update(path=source.path, label_path=source.label_path, cached=hit is not None)
    return SegmentedRecording(
        recording_id=source.recording_id, subject_id=source.subject_id,
        split=source.split, label=float(source.label), R_X=r_x, R_Y=r_y, R_AU=r_au,
        frames_total=int(info["frames_total"]), frames_dropped=int(info["frames_dropped"]),
        meta=meta)
