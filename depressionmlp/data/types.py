"""Plain containers passed between readers, the segmenter and the sampler."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: ``SegmentSettings.phases`` value that decides the phases per recording
AUTO_PHASES = "auto"


@dataclass(frozen=True)
class SegmentSettings:
    """How a recording becomes segments (Eq. 1-3, Sec. IV-B-1).

    Attributes:
        fps_in: frame rate of the tracked video (30 for AVEC and DAIC-WOZ).
        fps: frame rate after down-sampling (6: keep every 5th frame).
        segment_length: M, frames per segment (18).
        stride: frames between segment starts (9 = 50 % overlap).
        frame_size: (height, width) of the video frames, for Eq. 2's divisor
            max(height, width). 480x480 for AVEC (rescaled, as the paper does),
            480x640 for DAIC-WOZ.
        n_points: N, columns per stream (68 keypoints; AUs widened to it by Eq. 3).
        min_confidence: frames with ``success == 0`` or confidence below this
            are dropped; a segment never spans a dropped frame [choice].
        center: ``"none"`` (the paper: Eq. 2/3 values as they are) or
            ``"recording"`` [choice, not in the paper]: subtract each column's mean
            over the recording's kept frames, so that where a face sits in the frame,
            its shape and its resting AU levels (identity) do not reach the model and
            only movement about the recording's own mean does.
        phases: down-sampling phases cut into segments [choice]: 1 (the paper)
            keeps every 5th frame from the first; k (2 .. fps_in / fps) also cuts the
            same segments from the frames offset by 1 .. k-1 at the input rate, so
            that k / 5 of a 30 fps video's frames reach the model (the segments of a
            recording in order of their first frame). ``"auto"`` (the default
            protocol's) decides per recording: every phase (fps_in / fps) for a
            recording with fewer than ``phases_below`` segments at phase 0, 1
            otherwise, so short recordings give more windows and long ones cost no
            more. Omitted from ``to_dict`` at 1, so that caches and run fingerprints
            of earlier releases stay valid.
        phases_below: the ``"auto"`` rule's threshold, in phase-0 segments (40: about
            a minute at M = 18, stride 9, 6 fps). Ignored, and omitted from
            ``to_dict``, unless ``phases`` is ``"auto"``.
    """

    fps_in: float = 30.0
    fps: float = 6.0
    segment_length: int = 18
    stride: int = 9
    frame_size: tuple[int, int] = (480, 480)
    n_points: int = 68
    min_confidence: float = 0.8
    center: str = "none"
    phases: int | str = 1
    phases_below: int = 40

    def to_dict(self) -> dict:
        d = {"fps_in": self.fps_in, "fps": self.fps,
             "segment_length": self.segment_length, "stride": self.stride,
             "frame_size": list(self.frame_size), "n_points": self.n_points,
             "min_confidence": self.min_confidence, "center": self.center}
        if self.phases != 1:
            d["phases"] = self.phases
        if self.phases == AUTO_PHASES:
            d["phases_below"] = self.phases_below
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentSettings":
        d = dict(d)
        if "frame_size" in d:
            d["frame_size"] = tuple(int(v) for v in d["frame_size"])
        return cls(**d)


@dataclass
class OpenFaceFrames:
    """One recording's per-frame OpenFace output, as read from disk.

    Attributes:
        path: the file it came from.
        frame: (T,) int frame numbers.
        timestamp: (T,) float seconds.
        success: (T,) bool, OpenFace's tracking flag.
        confidence: (T,) float in [0, 1].
        x, y: (T, 68) float 2-D landmark pixels (``x_i``, ``y_i``).
        au: (T, P) float AU columns in file order (P = 35 for OpenFace 2.x).
        au_names: the P AU column names.
    """

    path: str
    frame: np.ndarray
    timestamp: np.ndarray
    success: np.ndarray
    confidence: np.ndarray
    x: np.ndarray
    y: np.ndarray
    au: np.ndarray
    au_names: list[str]

    @property
    def n_frames(self) -> int:
        return int(self.frame.shape[0])


@dataclass(frozen=True)
class RecordingSource:
    """One recording found in a corpus layout, before it is read."""

    recording_id: str
    subject_id: str
    split: str                   # "train" | "dev" | "test"
    label: float                 # BDI-II (AVEC) or PHQ-8 (DAIC-WOZ)
    path: str                    # OpenFace CSV, or DAIC-WOZ *_CLNF_features.txt
    label_path: str | None = None


@dataclass
class SegmentedRecording:
    """One recording cut into segments (the sampler's unit).

    Attributes:
        R_X, R_Y, R_AU: (S, M, N) float32 arrays (Eq. 2, Eq. 3).
        frames_total: frames in the file.
        frames_dropped: frames dropped for failed tracking.
    """

    recording_id: str
    subject_id: str
    split: str
    label: float
    R_X: np.ndarray
    R_Y: np.ndarray
    R_AU: np.ndarray
    frames_total: int = 0
    frames_dropped: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        return int(self.R_X.shape[0])
