"""Keras 3 layers of DepressionMLP (Sec. III) and its baselines.

All layers are registered for ``.keras`` saving under the package name
``"depressionmlp"`` and take / return (batch, M, N) float tensors.
"""

from depressionmlp.layers.baselines import CrossAttentionFusion, GatedMLPBlock
from depressionmlp.layers.ensemble import WeightedMean
from depressionmlp.layers.gating import CrossFrameGating, CrossLocationGating, DualGating
from depressionmlp.layers.guidance import MutualGuidance, ScoreHead
from depressionmlp.layers.preprocessing import (ColumnGate, ColumnJitter, FaceFrame, LevelJitter,
                                                 MotionJitter, SegmentCentre, SegmentEnergy,
                                                 SegmentSpeed, SplitStandardize)

__all__ = [
    "ColumnGate",
    "ColumnJitter",
    "FaceFrame",
    "CrossAttentionFusion",
    "CrossFrameGating",
    "CrossLocationGating",
    "DualGating",
    "GatedMLPBlock",
    "LevelJitter",
    "MotionJitter",
    "MutualGuidance",
    "ScoreHead",
    "SegmentCentre",
    "SegmentEnergy",
    "SegmentSpeed",
    "SplitStandardize",
    "WeightedMean",
]
