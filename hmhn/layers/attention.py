"""Multi-head cross Attention Block (MAB, HMHN Sec. 3.4, Eq. 8-9, Fig. 4).

One cross-attention head = spatial attention ``H_i`` then channel attention ``H'_i``,
as in the DAN model (Wen et al. 2023) that MAB comes from. Shapes at 224 input,
``G_bar`` of ``(B, 7, 7, 512)``:

* :class:`SpatialAttention` (Eq. 8): Conv 1x1 512->256 + BN (no activation); then
  Conv 3x3, Conv 1x3, Conv 3x1 (``same`` padding), each 256->512 + BN, summed; ReLU;
  summed over channels to one ``(B, 7, 7, 1)`` map (no sigmoid); ``S_i = G_bar * map``.
* :class:`ChannelAttention` (Eq. 9): global average pool of ``S_i`` -> Dense 512->32
  -> BN -> ReLU -> Dense 32->512 -> sigmoid; ``C_i = pooled(S_i) * weights`` -> ``(B, 512)``.
* :class:`CrossAttentionHead`: both, ``(B, 7, 7, 512) -> (B, 512)``.

Table 5 varies the spatial kernels (:data:`KERNEL_SETS`). All convolutions / dense
layers here have biases (PyTorch's default in DAN); BN uses momentum 0.9 / eps 1e-5
(= PyTorch). Initialisation follows DAN: convs Kaiming-normal fan-out, bias 0;
dense layers normal(std 0.001), bias 0.
"""

from __future__ import annotations

import keras
from keras import ops

from hmhn.layers.resnet import BN_EPSILON, BN_MOMENTUM, kaiming_fan_out

DEFAULT_KERNELS = "3x3,1x3,3x1"

#: Table 5 rows -> kernel sizes of the summed branches after the 1x1 reduction.
#: **[choice]** "standard" (the paper's "Standard Conv") reads as the non-separable
#: counterpart of the default: three full 3x3 branches. The paper's parameter column
#: (29.33 M, 26.57 M, ...) does not follow from this structure by counting; the
#: ``count`` command prints ours next to the paper's.
KERNEL_SETS = {
    "standard": ((3, 3), (3, 3), (3, 3)),
    "1x7,7x7,7x1": ((1, 7), (7, 7), (7, 1)),
    "1x5,5x5,5x1": ((1, 5), (5, 5), (5, 1)),
    "3x1,1x3": ((3, 1), (1, 3)),
    "3x3,1x3,3x1": ((3, 3), (1, 3), (3, 1)),
}

#: Table 5's parameter column (millions), as printed.
PAPER_PARAMS_M = {"standard": 29.33, "1x7,7x7,7x1": 26.57, "1x5,5x5,5x1": 22.63,
                  "3x1,1x3": 17.78, "3x3,1x3,3x1": 19.72}


def parse_kernels(kernels) -> tuple[tuple[int, int], ...]:
    """A Table 5 name (``"standard"``, ``"3x3,1x3,3x1"``...), any ``"AxB,CxD"`` string, or
    a list of pairs -> tuple of ``(kh, kw)``. Sizes must be odd (symmetric 'same' padding)."""
    if isinstance(kernels, str):
        key = kernels.replace(" ", "").lower()
        if key in KERNEL_SETS:
            return KERNEL_SETS[key]
        try:
            pairs = tuple(tuple(int(v) for v in part.split("x")) for part in key.split(","))
        except ValueError:
            raise ValueError(f"kernels must be one of {sorted(KERNEL_SETS)} or like "
                             f"'3x3,1x3,3x1', got {kernels!r}") from None
    else:
        pairs = tuple(tuple(int(v) for v in p) for p in kernels)
    if not pairs or any(len(p) != 2 or min(p) < 1 or p[0] % 2 == 0 or p[1] % 2 == 0
                        for p in pairs):
        raise ValueError(f"kernels must be odd (kh, kw) pairs, got {kernels!r}")
    return pairs


def kernels_name(kernels) -> str:
    pairs = parse_kernels(kernels)
    for name, ks in KERNEL_SETS.items():
        if ks == pairs:
            return name
    return ",".join(f"{a}x{b}" for a, b in pairs)


def _dan_dense_init():
    return keras.initializers.RandomNormal(stddev=0.001)


@keras.saving.register_keras_serializable(package="hmhn")
class SpatialAttention(keras.layers.Layer):
    """Eq. 8, ``H_i``: ``G_bar (B, h, w, C) -> S_i = G_bar * map (B, h, w, C)``.

    ``map = sum_c ReLU(sum_k BN(Conv_k(BN(Conv1x1(G_bar)))))`` of shape ``(B, h, w, 1)``.

    Args:
        channels: C of the input (512 for ResNet-18).
        kernels: branch kernel sizes (Table 5); default ``"3x3,1x3,3x1"``.
        reduction: channels after the 1x1 conv; default ``channels // 2`` (256).
        bn_momentum: Keras momentum of the BNs (0.9 = PyTorch's 0.1).
    """

    def __init__(self, channels: int = 512, kernels=DEFAULT_KERNELS, reduction=None,
                 bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bn_momentum = float(bn_momentum)
        self.kernels = parse_kernels(kernels)
        self.reduction = int(reduction) if reduction else self.channels // 2
        init = kaiming_fan_out()
        self.conv1x1 = keras.layers.Conv2D(self.reduction, 1, kernel_initializer=init,
                                           name="conv1x1")
        self.bn1x1 = keras.layers.BatchNormalization(dtype="float32", momentum=self.bn_momentum,
                                                     epsilon=BN_EPSILON,
                                                     name="bn1x1")
        self.branches, self.branch_bns = [], []
        for kh, kw in self.kernels:
            self.branches.append(keras.layers.Conv2D(self.channels, (kh, kw), padding="same",
                                                     kernel_initializer=init,
                                                     name=f"conv{kh}x{kw}"))
            self.branch_bns.append(keras.layers.BatchNormalization(dtype="float32", 
                momentum=self.bn_momentum, epsilon=BN_EPSILON, name=f"bn{kh}x{kw}"))

    def build(self, input_shape):
        self.conv1x1.build((None, None, None, input_shape[-1]))
        self.bn1x1.build((None, None, None, self.reduction))
        for conv, bn in zip(self.branches, self.branch_bns):
            conv.build((None, None, None, self.reduction))
            bn.build((None, None, None, self.channels))
        self.built = True

    def attention_map(self, x, training=None):
        """The ``(B, h, w, 1)`` spatial attention map (non-negative, no sigmoid)."""
        y = ops.cast(self.bn1x1(self.conv1x1(x), training=training), x.dtype)
        z = None
        for conv, bn in zip(self.branches, self.branch_bns):
            b = ops.cast(bn(conv(y), training=training), y.dtype)
            z = b if z is None else z + b
        return ops.sum(ops.relu(z), axis=-1, keepdims=True)

    def call(self, x, training=None):
        return x * self.attention_map(x, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernels": ",".join(f"{a}x{b}" for a, b in self.kernels),
                "reduction": self.reduction, "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="hmhn")
class ChannelAttention(keras.layers.Layer):
    """Eq. 9, ``H'_i``: ``S_i (B, h, w, C) -> C_i (B, C)``.

    ``p = GAP(S_i)``; ``a = sigmoid(Dense_C(ReLU(BN(Dense_hidden(p)))))``; ``C_i = p * a``.

    Args:
        channels: C (512).
        hidden: bottleneck width, default ``channels // 16`` (32).
        bn_momentum: Keras momentum of the BN (0.9 = PyTorch's 0.1).
    """

    def __init__(self, channels: int = 512, hidden=None, bn_momentum: float = BN_MOMENTUM,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bn_momentum = float(bn_momentum)
        self.hidden = int(hidden) if hidden else max(1, self.channels // 16)
        self.fc1 = keras.layers.Dense(self.hidden, kernel_initializer=_dan_dense_init(),
                                      name="fc1")
        self.bn = keras.layers.BatchNormalization(dtype="float32", momentum=self.bn_momentum,
                                                  epsilon=BN_EPSILON, name="bn")
        self.fc2 = keras.layers.Dense(self.channels, kernel_initializer=_dan_dense_init(),
                                      name="fc2")

    def build(self, input_shape):
        self.fc1.build((None, input_shape[-1]))
        self.bn.build((None, self.hidden))
        self.fc2.build((None, self.hidden))
        self.built = True

    def call(self, s, training=None):
        p = ops.mean(s, axis=(1, 2))
        a = ops.relu(ops.cast(self.bn(self.fc1(p), training=training), p.dtype))
        return p * ops.sigmoid(self.fc2(a))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden,
                "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="hmhn")
class CrossAttentionHead(keras.layers.Layer):
    """One MAB head, Eq. 8-9: ``G_bar (B, h, w, C) -> C_i (B, C)``.

    ``.spatial.attention_map(G_bar)`` gives the head's ``(B, h, w, 1)`` map (Fig. 1).
    """

    def __init__(self, channels: int = 512, kernels=DEFAULT_KERNELS,
                 bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernels = parse_kernels(kernels)
        self.bn_momentum = float(bn_momentum)
        self.spatial = SpatialAttention(self.channels, self.kernels,
                                        bn_momentum=self.bn_momentum, name="spatial")
        self.channel = ChannelAttention(self.channels, bn_momentum=self.bn_momentum,
                                        name="channel")

    def build(self, input_shape):
        self.spatial.build(input_shape)
        self.channel.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        return self.channel(self.spatial(x, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernels": ",".join(f"{a}x{b}" for a, b in self.kernels),
                "bn_momentum": self.bn_momentum}
