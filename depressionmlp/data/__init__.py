"""Data: OpenFace / DAIC-WOZ readers, segmenting (Eq. 1-3), corpus layouts, sampler."""

from depressionmlp.data.corpora import (CORPORA, SPLITS, check_leakage, default_settings,
                                        discover, label_range, load_corpus, read_label,
                                        resolve_corpus_dir)
from depressionmlp.data.inspect import inspect_recording
from depressionmlp.data.openface import read_daic_clnf, read_openface_csv, read_recording
from depressionmlp.data.segments import (ShortRecordingError, downsample, load_segmented,
                                         normalise_landmarks, segment_recording, widen_aus)
from depressionmlp.data.types import (OpenFaceFrames, RecordingSource, SegmentedRecording,
                                      SegmentSettings)

__all__ = [
    "CORPORA", "SPLITS", "OpenFaceFrames", "RecordingSource", "SegmentedRecording",
    "SegmentSettings", "ShortRecordingError", "check_leakage", "default_settings",
    "discover", "downsample", "inspect_recording", "label_range", "load_corpus",
    "load_segmented", "normalise_landmarks", "read_daic_clnf", "read_label",
    "read_openface_csv", "read_recording", "resolve_corpus_dir", "segment_recording",
    "widen_aus",
]
