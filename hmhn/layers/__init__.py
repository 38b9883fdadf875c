"""HMHN layers (Keras 3, channels-last), registered for ``.keras`` loading (package "hmhn").

* :mod:`hmhn.layers.grid`      -- GWA: :func:`grid_tiles`, :func:`ungrid_tiles`,
  :class:`LocalGridFeatureExtractor`, :class:`GridWiseAttention` (Sec. 3.2, Eq. 1-6)
* :mod:`hmhn.layers.resnet`    -- ResNet-18: :class:`ResNetStem` (= FT_i), :class:`BasicBlock`,
  :class:`DeepFeatureFusion` (the four stages; Sec. 3.3, Eq. 7)
* :mod:`hmhn.layers.attention` -- MAB: :class:`SpatialAttention`, :class:`ChannelAttention`,
  :class:`CrossAttentionHead` (Sec. 3.4, Eq. 8-9, Table 5 kernel sets)
* :mod:`hmhn.layers.fusion`    -- AFB: :class:`AttentionFusion`, :class:`PartitionLoss`
  (Sec. 3.5, Eq. 10-11)
* :mod:`hmhn.layers.head`      -- :class:`RegressionHead` (the score head of every row),
  :class:`StandardizedMSE`
"""

from hmhn.layers.attention import (DEFAULT_KERNELS, KERNEL_SETS, PAPER_PARAMS_M,
                                   ChannelAttention, CrossAttentionHead, SpatialAttention,
                                   kernels_name, parse_kernels)
from hmhn.layers.fusion import AttentionFusion, PartitionLoss, fuse_heads, partition_loss
from hmhn.layers.grid import (GridWiseAttention, LocalGridFeatureExtractor, grid_name,
                              grid_tiles, parse_grid, ungrid_tiles)
from hmhn.layers.head import HEAD_VARIANTS, RegressionHead, StandardizedMSE
from hmhn.layers.resnet import (BN_EPSILON, BN_MOMENTUM, FT_VARIANTS, BasicBlock,
                                DeepFeatureFusion, FeatureTransform, ResNetStem)

__all__ = [
    "AttentionFusion", "BN_EPSILON", "BN_MOMENTUM", "BasicBlock", "ChannelAttention",
    "CrossAttentionHead", "DEFAULT_KERNELS", "DeepFeatureFusion", "FT_VARIANTS",
    "FeatureTransform", "GridWiseAttention", "HEAD_VARIANTS", "KERNEL_SETS",
    "LocalGridFeatureExtractor", "PAPER_PARAMS_M", "PartitionLoss", "RegressionHead",
    "ResNetStem", "SpatialAttention", "StandardizedMSE", "fuse_heads", "grid_name",
    "grid_tiles", "kernels_name", "parse_grid", "parse_kernels", "partition_loss",
    "ungrid_tiles",
]
