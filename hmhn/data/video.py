"""Reading frames out of a video: which frames (evenly spread) and how (OpenCV).

The paper does not say how frames are taken from a video (Sec. 3.2.1 only says the
faces are aligned and resized to 224 x 224). **[choice]** A fixed number of frames per
video, spread evenly over its length: frame ``i`` of ``count`` is the one at the centre
of the ``i``-th of ``count`` equal segments, ``floor((i + 0.5) * n_frames / count)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from depressionmlp.errors import DataError

# Above this many frames, frames are reached by seeking instead of decoding every frame.
SEEK_ABOVE_FRAMES = 3000


def sample_frame_indices(n_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``range(n_frames)``, sorted.

    Index ``i`` is ``floor((i + 0.5) * n_frames / count)``: the centre of the ``i``-th
    of ``count`` equal segments. The indices are unique whenever ``count <= n_frames``;
    when ``count > n_frames`` every frame is used and some repeat (still evenly: each
    frame ``count // n_frames`` or one more times), so the result always has ``count``
    entries. ``n_frames == 0`` gives an empty array.

    >>> sample_frame_indices(10, 4).tolist()
    [1, 3, 6, 8]
    >>> sample_frame_indices(3, 5).tolist()
    [0, 0, 1, 2, 2]
    """
    n_frames, count = int(n_frames), int(count)
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    idx = ((np.arange(count) + 0.5) * n_frames // count).astype(np.int64)
    return np.clip(idx, 0, n_frames - 1)


def _open_capture(path: Path):
    import cv2
    if not path.is_file():
        raise DataError(path, "video file not found")
    cap = cv2.VideoCapture(os.fspath(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(path, "cannot open video (corrupt file or unsupported codec)")
    return cap


def _count_frames(cap) -> int:
    """Frames in a capture, by grabbing them all (for containers that give no count)."""
    n = 0
    while cap.grab():
        n += 1
    return n


def _read_sequential(cap, wanted: set[int]) -> dict[int, np.ndarray]:
    """Decode from the start up to the last wanted frame; keep the wanted ones."""
    frames, last = {}, max(wanted)
    for i in range(last + 1):
        if not cap.grab():
            break
        if i in wanted:
            ok, bgr = cap.retrieve()
            if ok and bgr is not None:
                frames[i] = bgr
    return frames


def _read_seeking(cap, wanted: list[int]) -> dict[int, np.ndarray]:
    import cv2
    frames = {}
    for i in wanted:
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = cap.read()
        if ok and bgr is not None:
            frames[i] = bgr
    return frames


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    import cv2
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_sampled_frames(path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, frames)``: the frames :func:`read_video_frames` returns and their indices.

    The container's frame count is trusted when it is positive: short videos are
    decoded from the start up to the last wanted frame, long ones (more than
    ``SEEK_ABOVE_FRAMES``) are reached by seeking. When the container reports no
    frame count, the frames are counted in a first pass (nothing kept). Sampled frames that
    cannot be decoded (a frame count that overstates the video) are dropped.
    """
    path = Path(path)
    cap = _open_capture(path)
    try:
        import cv2
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n <= 0:                      # no count in the container: count, then reopen
            n = _count_frames(cap)
            cap.release()
            cap = _open_capture(path)
        idx = sample_frame_indices(n, count)
        unique = sorted(set(idx.tolist()))
        if not unique:
            got = {}
        elif n > SEEK_ABOVE_FRAMES:
            got = _read_seeking(cap, unique)
        else:
            got = _read_sequential(cap, set(unique))
    finally:
        cap.release()
    keep = np.array([i for i in idx.tolist() if i in got], dtype=np.int64)
    if len(keep) == 0:
        raise DataError(path, "no frames could be decoded (empty, truncated or corrupt video)")
    rgb = {i: _to_rgb(got[i]) for i in set(keep.tolist())}
    return keep, np.stack([rgb[i] for i in keep.tolist()])


def read_video_frames(path, count: int) -> np.ndarray:
    """``count`` frames spread evenly over the video, as ``(count', H, W, 3)`` uint8 RGB.

    Frames are chosen with :func:`sample_frame_indices` (so a video shorter than
    ``count`` repeats frames); ``count' < count`` only when some sampled frames cannot
    be decoded. Raises :class:`DataError` naming the file when it is missing,
    cannot be opened, or yields no frame at all.
    """
    return read_sampled_frames(path, count)[1]
