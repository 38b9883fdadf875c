"""Face detection, eye-based alignment and cropping (Sec. 3.2.1, 4.2.1: dlib, 224 x 224 RGB).

:class:`FaceAligner` finds the largest face with dlib's HOG frontal face detector, puts
dlib's 68 landmarks on it (the model shipped in ``face_recognition_models``), and maps
the image with one similarity transform (rotation + uniform scale + shift, OpenCV
``warpAffine``) so that the two eye centres land at fixed points of a ``size x size``
crop:

* the eyes are level (same row),
* the eye distance is ``eye_dist * size`` pixels,
* the midpoint between the eyes is at ``(size / 2, eye_y * size)`` (x, y).

With the defaults (``eye_y=0.38``, ``eye_dist=0.36``) at 224 the eye centres land at
``(71.7, 85.1)`` and ``(152.3, 85.1)``: the crop spans roughly from the forehead to just
below the chin. **[choice]** The paper says only "aligned according to their eye
positions"; these fractions are ours. Pixels from outside the frame are black.

An eye centre is the mean of its six landmarks: points 36-41 are the eye on the image's
left (the subject's right eye), 42-47 the eye on the image's right. "left" / "right"
in this module always mean the image's left / right.

:func:`align_video` samples frames from a video, aligns each one and (optionally)
caches the crops as ``.npz`` so a second pass costs a file read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from depressionmlp.errors import DataError
from hmhn.data.video import read_sampled_frames

LEFT_EYE = slice(36, 42)    # image-left eye (subject's right)
RIGHT_EYE = slice(42, 48)   # image-right eye (subject's left)
CACHE_VERSION = 1


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)`` eye centres (x, y) of 68 dlib landmarks, image-left first."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    return pts[LEFT_EYE].mean(axis=0), pts[RIGHT_EYE].mean(axis=0)


def similarity_to_targets(left, right, target_left, target_right) -> np.ndarray:
    """2 x 3 matrix of the similarity transform taking the eye centres to the targets."""
    src = np.subtract(right, left, dtype=np.float64)
    dst = np.subtract(target_right, target_left, dtype=np.float64)
    d_src = float(np.hypot(*src))
    if d_src < 1e-6:
        raise ValueError("the two eye centres coincide")
    scale = float(np.hypot(*dst)) / d_src
    angle = np.arctan2(dst[1], dst[0]) - np.arctan2(src[1], src[0])
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    lin = np.array([[c, -s], [s, c]])
    mid_src = (np.asarray(left, float) + np.asarray(right, float)) / 2
    mid_dst = (np.asarray(target_left, float) + np.asarray(target_right, float)) / 2
    return np.hstack([lin, (mid_dst - lin @ mid_src)[:, None]])


def _as_rgb_uint8(rgb) -> np.ndarray:
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, :3])


class FaceAligner:
    """dlib face detector + 68-point predictor + eye-based similarity warp to ``size``.

    Args:
        size: side of the square output crop in pixels (the paper: 224).
        eye_y: row of the eye centres as a fraction of ``size`` (0.38).
        eye_dist: distance between the eye centres as a fraction of ``size`` (0.36).
        upsample: the detector first looks at the image as given and, only if it
            finds no face, at up to ``upsample`` 2x-upsampled versions (finds faces
            smaller than ~80 px at ~4x the cost). 1 by default.
        predictor_path: the 68-point model; default
            ``face_recognition_models.pose_predictor_model_location()``.
    """

    def __init__(self, size=224, eye_y=0.38, eye_dist=0.36, *, upsample=1,
                 predictor_path=None):
        import dlib
        if int(size) < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        if not 0 < eye_y < 1 or not 0 < eye_dist < 1:
            raise ValueError("eye_y and eye_dist are fractions of size, in (0, 1)")
        self.size = int(size)
        self.eye_y = float(eye_y)
        self.eye_dist = float(eye_dist)
        self.upsample = int(upsample)
        if predictor_path is None:
            import face_recognition_models
            predictor_path = face_recognition_models.pose_predictor_model_location()
        self.predictor_path = os.fspath(predictor_path)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(self.predictor_path)

    def config_key(self) -> str:
        """A string naming everything that changes the crops (used in cache keys)."""
        return f"size={self.size},eye_y={self.eye_y},eye_dist={self.eye_dist}," \
               f"upsample={self.upsample}"

    def target_eyes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``((x, y) left, (x, y) right)``: where the eye centres land in the crop."""
        half = self.eye_dist * self.size / 2
        cx, cy = self.size / 2, self.eye_y * self.size
        return (cx - half, cy), (cx + half, cy)

    def detect(self, rgb):
        """The largest face rectangle (``dlib.rectangle``) or None."""
        img = _as_rgb_uint8(rgb)
        for level in range(self.upsample + 1):
            faces = self._detector(img, level)
            if len(faces):
                return max(faces, key=lambda r: r.width() * r.height())
        return None

    def landmarks(self, rgb) -> np.ndarray | None:
        """``(68, 2)`` float landmarks (x, y) of the largest face, or None without a face."""
        img = _as_rgb_uint8(rgb)
        face = self.detect(img)
        if face is None:
            return None
        shape = self._predictor(img, face)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def transform(self, landmarks) -> np.ndarray:
        """The 2 x 3 warp matrix that takes these landmarks' eyes to :meth:`target_eyes`."""
        left, right = eye_centres(landmarks)
        t_left, t_right = self.target_eyes()
        return similarity_to_targets(left, right, t_left, t_right)

    def warp(self, rgb, matrix) -> np.ndarray:
        """Apply a 2 x 3 matrix: ``(size, size, 3)`` uint8, bilinear, black outside."""
        import cv2
        img = _as_rgb_uint8(rgb)
        return cv2.warpAffine(img, np.asarray(matrix, np.float64), (self.size, self.size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(0, 0, 0))

    def align(self, rgb) -> np.ndarray | None:
        """The aligned ``(size, size, 3)`` uint8 RGB crop of the largest face, or None."""
        pts = self.landmarks(rgb)
        if pts is None:
            return None
        return self.warp(rgb, self.transform(pts))


# ----------------------------------------------------------------------------- videos

def cache_path(path, count: int, aligner: FaceAligner, cache_dir) -> Path:
    """Where the crops of ``path`` are cached: keyed by path, mtime, size in bytes,
    ``count`` and the aligner's settings (crop size, eye placement)."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"v{CACHE_VERSION}|{p}|{st.st_mtime_ns}|{st.st_size}|{int(count)}|" \
          f"{aligner.config_key()}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{p.stem}-{aligner.size}-{digest}.npz"


def _load_cache(file: Path, size: int):
    try:
        with np.load(file) as z:
            frames, n_skipped = z["frames"], int(z["n_skipped"])
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (size, size, 3):
        return None
    return frames, n_skipped


def _save_cache(file: Path, frames: np.ndarray, n_skipped: int) -> None:
    """Atomic write (temporary file, then rename); a cache that cannot be written is skipped."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=file.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, frames=frames, n_skipped=np.int64(n_skipped))
        os.replace(tmp, file)
    except OSError:
        pass


def align_frames(frames, indices, aligner: FaceAligner) -> tuple[np.ndarray, int]:
    """Align each frame once per distinct index; ``(crops, n_skipped)`` in sample order."""
    crops = {}
    for i, rgb in zip(np.asarray(indices).tolist(), frames):
        if i not in crops:
            crops[i] = aligner.align(rgb)
    out = [crops[i] for i in np.asarray(indices).tolist() if crops[i] is not None]
    n_skipped = len(indices) - len(out)
    if not out:
        return np.zeros((0, aligner.size, aligner.size, 3), np.uint8), n_skipped
    return np.stack(out), n_skipped


def align_video(path, count, aligner=None, cache_dir=None) -> tuple[np.ndarray, int]:
    """Sample ``count`` frames evenly from a video and align the face in each.

    Returns ``(frames, n_skipped)``: ``frames`` is ``(F, size, size, 3)`` uint8 RGB for
    the sampled frames with a face, ``n_skipped`` the sampled frames without one
    (``F + n_skipped`` is the number of sampled frames that could be decoded; a video
    shorter than ``count`` repeats frames, see :func:`sample_frame_indices`).
    ``aligner`` None builds a default :class:`FaceAligner` (224). With ``cache_dir``
    the crops are kept there as ``.npz`` keyed by path, modification time, file size,
    ``count`` and the aligner's settings; a later call with the same key reads them
    back instead of decoding and aligning again.

    Raises :class:`DataError` naming the file when it cannot be read or no sampled
    frame holds a detectable face.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video file not found")
    aligner = FaceAligner() if aligner is None else aligner
    cfile = cache_path(path, count, aligner, cache_dir) if cache_dir else None
    cached = _load_cache(cfile, aligner.size) if cfile is not None and cfile.exists() else None
    if cached is not None:
        return cached
    indices, frames = read_sampled_frames(path, count)
    crops, n_skipped = align_frames(frames, indices, aligner)
    if len(crops) == 0:
        raise DataError(path, f"no face found in any of the {len(indices)} sampled frames")
    if cfile is not None:
        _save_cache(cfile, crops, n_skipped)
    return crops, n_skipped
