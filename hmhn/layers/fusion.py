"""Attention Fusion Block (AFB, HMHN Sec. 3.5, Eq. 10-11).

* :class:`AttentionFusion`: heads ``(B, k, C)`` -> one ``(B, C)`` vector; the score
  comes from :class:`hmhn.layers.RegressionHead` (dropout 0.2 -> Dense, shared by all rows).
* :class:`PartitionLoss`: identity on the heads that adds Eq. 11's partition loss
  (times a weight) to the model's losses, so ``L_sum = L_att + L_mse`` (Eq. 10) is what
  ``fit`` minimises with an MSE loss on the score.
* :func:`partition_loss`: the value itself, usable outside a model.
"""

from __future__ import annotations

import keras
from keras import ops

FUSIONS = ("log_softmax_sum", "sum", "mean")
PARTITION_VARIANTS = ("eq11", "dan")


def partition_loss(heads, variant: str = "eq11", epsilon: float = 1e-6, ddof: int = 1):
    """Eq. 11 on stacked heads ``(B, k, C)`` -> scalar.

    ``"eq11"`` (default, as printed): ``mean_{i,j} log(1 + k / (var_ij + eps))`` where
    ``var_ij`` is the variance of channel j across the k heads of sample i.
    ``"dan"`` (the DAN code): ``log(1 + k / (mean_{i,j} var_ij + eps))`` on the heads after
    a log-softmax across the head axis.
    **[choice]** ``ddof=1``: the unbiased variance, as ``torch.Tensor.var`` computes in
    the reference code (the paper does not say). ``k == 1`` gives 0.
    """
    if variant not in PARTITION_VARIANTS:
        raise ValueError(f"partition loss variant must be one of {PARTITION_VARIANTS}")
    k = heads.shape[1]
    if k is None:
        raise ValueError("partition_loss needs a static number of heads")
    if k < 2:
        return ops.zeros((), dtype=heads.dtype)
    if k - ddof <= 0:
        raise ValueError(f"ddof={ddof} needs more than {ddof} heads")
    x = ops.log_softmax(heads, axis=1) if variant == "dan" else heads
    var = ops.var(x, axis=1) * (k / (k - ddof))                        # (B, C)
    if variant == "dan":
        return ops.log(1.0 + k / (ops.mean(var) + epsilon))
    return ops.mean(ops.log(1.0 + k / (var + epsilon)))


def fuse_heads(heads, fusion: str = "log_softmax_sum"):
    """``(B, k, C) -> (B, C)``. **[choice]** default as in DAN: log-softmax across the
    heads (only when k > 1), then sum; ``"sum"`` / ``"mean"`` for comparison."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if fusion == "mean":
        return ops.mean(heads, axis=1)
    if fusion == "log_softmax_sum" and heads.shape[1] != 1:
        heads = ops.log_softmax(heads, axis=1)
    return ops.sum(heads, axis=1)


@keras.saving.register_keras_serializable(package="hmhn")
class AttentionFusion(keras.layers.Layer):
    """AFB's fusion: heads ``(B, k, C)`` -> one vector ``(B, C)`` (:func:`fuse_heads`).

    The score comes from the :class:`hmhn.layers.RegressionHead` after it, the same
    head as rows A-C use after global average pooling (dropout 0.2 and the Dense of
    Sec. 4.2.1 live there), so the ablation rows differ only by their named modules.

    Args:
        fusion: see :func:`fuse_heads` (default: log-softmax across heads, then sum).
    """

    def __init__(self, fusion: str = "log_softmax_sum", **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion

    def call(self, heads):
        return fuse_heads(heads, self.fusion)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "fusion": self.fusion}


@keras.saving.register_keras_serializable(package="hmhn")
class PartitionLoss(keras.layers.Layer):
    """Identity on heads ``(B, k, C)`` that adds ``weight * L_att`` (Eq. 11) via ``add_loss``.

    With the score trained on MSE, the total that ``fit`` minimises is Eq. 10,
    ``L_sum = L_att + L_mse`` (``weight=1``). ``k == 1`` adds 0.

    Args:
        variant: ``"eq11"`` (default, as printed) or ``"dan"`` (see :func:`partition_loss`).
        weight: multiplier of L_att (1 in Eq. 10).
        epsilon: added to the variance (tiny; keeps identical heads finite).
        ddof: 1 = unbiased variance (``torch.var``'s default in the reference code).
    """

    def __init__(self, variant: str = "eq11", weight: float = 1.0, epsilon: float = 1e-6,
                 ddof: int = 1, **kwargs):
        super().__init__(**kwargs)
        if variant not in PARTITION_VARIANTS:
            raise ValueError(f"partition loss variant must be one of {PARTITION_VARIANTS}")
        self.variant, self.weight = variant, float(weight)
        self.epsilon, self.ddof = float(epsilon), int(ddof)

    def value(self, heads):
        return partition_loss(heads, self.variant, self.epsilon, self.ddof)

    def call(self, heads, training=None):
        if self.weight and heads.shape[1] is not None and heads.shape[1] > 1:
            self.add_loss(self.weight * self.value(heads))
        return heads

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "variant": self.variant, "weight": self.weight,
                "epsilon": self.epsilon, "ddof": self.ddof}
