"""ResNet-18 of basic blocks, written once, channels-last (He et al. 2016; HMHN Sec. 3.3).

Why here and not a library: ``keras.applications`` has no ResNet-18, and keras-hub's
ResNet-18 needs tensorflow-text, which pulls the full ``tensorflow`` wheel beside
``tensorflow-cpu`` (plus kagglehub and tokenizers). The paper trains from scratch,
so no pre-trained weights are needed either.

Matching the PyTorch reference (torchvision ``resnet18``, which the paper's code uses):

* convolutions have no bias; BatchNormalization uses ``momentum=0.9, epsilon=1e-5``
  (PyTorch's momentum 0.1 / eps 1e-5; Keras' defaults 0.99 / 1e-3 differ);
* stride-2 convolutions use explicit ``ZeroPadding2D`` + ``"valid"``: Keras' ``"same"``
  at stride 2 pads only bottom/right on even inputs, PyTorch pads both sides;
* the stem max-pool pads with zeros, which equals PyTorch's -inf padding because it
  follows a ReLU (all inputs >= 0);
* convolution kernels start as Kaiming-normal, fan-out (torchvision's init).

Shapes at 224 x 224 x 3 input: stem (FT) -> (56, 56, 64); stages -> (56, 56, 64),
(28, 28, 128), (14, 14, 256), (7, 7, 512).

HMHN **[choice]**, Eq. 7 ``G_bar = DFF(FT1(g) + FT2(G_tilde))``: FT1 and FT2 share
their structure, not their weights. Two readings (``build_hmhn(ft=...)``):

* ``"conv3x3"`` (default): FT_i = :class:`FeatureTransform`, a 3x3 convolution 3->3
  channels + BN on the image (87 parameters each); DFF is the whole ResNet-18 trunk
  (stem + four stages). GWA + DFF then add 291 parameters to DAN's structure and the
  default counts 19.72 M as in Table 5 (the stem reading cannot: see below).
* ``"stem"``: FT_i = a ResNet-18 stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) each, DFF =
  the four residual stages. The second stem adds 9,536 parameters: 19.73 M.

The plain backbone (ablation rows A, B, D) is one stem + the stages.
"""

from __future__ import annotations

import keras
from keras import ops

BN_MOMENTUM = 0.9      # = PyTorch momentum 0.1
BN_EPSILON = 1e-5      # = PyTorch eps

STAGE_BLOCKS = (2, 2, 2, 2)   # ResNet-18
FT_VARIANTS = ("conv3x3", "conv1x1", "stem")   # readings of Eq. 7's FT_i


def kaiming_fan_out():
    """torchvision's conv init: kaiming_normal_(mode="fan_out", nonlinearity="relu")."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def _bn(name, momentum=BN_MOMENTUM):
    return keras.layers.BatchNormalization(dtype="float32", momentum=momentum, epsilon=BN_EPSILON, name=name)


@keras.saving.register_keras_serializable(package="hmhn")
class ResNetStem(keras.layers.Layer):
    """ResNet stem = FT_i of Eq. 7: ``(B, H, W, 3) -> (B, H/4, W/4, width)``.

    ZeroPadding 3 + Conv 7x7/2 (no bias) + BN + ReLU + ZeroPadding 1 + MaxPool 3x3/2.
    ``bn_momentum``: Keras momentum of the BN (0.9 = PyTorch's 0.1).
    """

    def __init__(self, width: int = 64, bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.bn_momentum = float(bn_momentum)
        self.pad1 = keras.layers.ZeroPadding2D(3, name="pad1")
        self.conv = keras.layers.Conv2D(self.width, 7, strides=2, padding="valid",
                                        use_bias=False, kernel_initializer=kaiming_fan_out(),
                                        name="conv")
        self.bn = _bn("bn", self.bn_momentum)
        self.pad2 = keras.layers.ZeroPadding2D(1, name="pad2")
        self.pool = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="pool")

    def build(self, input_shape):
        self.conv.build((None, None, None, input_shape[-1]))
        self.bn.build((None, None, None, self.width))
        self.built = True

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        f = (lambda n: None if n is None else ((n + 6 - 7) // 2 + 1 + 2 - 3) // 2 + 1)
        return (b, f(h), f(w), self.width)

    def call(self, x, training=None):
        y = ops.cast(self.bn(self.conv(self.pad1(x)), training=training), x.dtype)
        return self.pool(self.pad2(ops.relu(y)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="hmhn")
class FeatureTransform(keras.layers.Layer):
    """FT_i of Eq. 7 in the default reading: ``(B, H, W, C) -> (B, H, W, C)``.

    Conv kxk C->C (``same`` padding, no bias, Kaiming fan-out) + BN, no activation: a
    learned, nearly parameter-free transform of an image (g or G_tilde) before the sum
    that DFF (the ResNet-18 trunk) fuses. ``kernel_size`` 3 (default) gives 87
    parameters at C = 3, 1 gives 15.
    """

    def __init__(self, kernel_size: int = 3, bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.bn_momentum = float(bn_momentum)
        self.conv = self.bn = None

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.conv = keras.layers.Conv2D(c, self.kernel_size, padding="same", use_bias=False,
                                        kernel_initializer=kaiming_fan_out(), name="conv")
        self.bn = _bn("bn", self.bn_momentum)
        self.conv.build((None, None, None, c))
        self.bn.build((None, None, None, c))
        self.built = True

    def call(self, x, training=None):
        return ops.cast(self.bn(self.conv(x), training=training), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="hmhn")
class BasicBlock(keras.layers.Layer):
    """ResNet basic block: ``(B, H, W, Cin) -> (B, H/s, W/s, filters)``.

    conv3x3/s - BN - ReLU - conv3x3 - BN, plus the identity (or conv1x1/s + BN when the
    shape changes), then ReLU.
    """

    def __init__(self, filters: int, strides: int = 1, downsample: bool = False,
                 bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.downsample = int(filters), int(strides), bool(downsample)
        self.bn_momentum = m = float(bn_momentum)
        init = kaiming_fan_out()
        self.pad1 = keras.layers.ZeroPadding2D(1, name="pad1")
        self.conv1 = keras.layers.Conv2D(self.filters, 3, strides=self.strides, padding="valid",
                                         use_bias=False, kernel_initializer=init, name="conv1")
        self.bn1 = _bn("bn1", m)
        self.pad2 = keras.layers.ZeroPadding2D(1, name="pad2")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="valid", use_bias=False,
                                         kernel_initializer=init, name="conv2")
        self.bn2 = _bn("bn2", m)
        if self.downsample:
            self.proj = keras.layers.Conv2D(self.filters, 1, strides=self.strides,
                                            use_bias=False, kernel_initializer=init, name="proj")
            self.proj_bn = _bn("proj_bn", m)

    def build(self, input_shape):
        cin = (None, None, None, input_shape[-1])
        cout = (None, None, None, self.filters)
        self.conv1.build(cin)
        self.bn1.build(cout)
        self.conv2.build(cout)
        self.bn2.build(cout)
        if self.downsample:
            self.proj.build(cin)
            self.proj_bn.build(cout)
        self.built = True

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        f = (lambda n: None if n is None else (n + 2 - 3) // self.strides + 1)
        return (b, f(h), f(w), self.filters)

    def call(self, x, training=None):
        # BatchNorm computes in float32 (mixed precision too): back to x's dtype
        y = ops.relu(ops.cast(self.bn1(self.conv1(self.pad1(x)), training=training), x.dtype))
        y = ops.cast(self.bn2(self.conv2(self.pad2(y)), training=training), x.dtype)
        shortcut = (ops.cast(self.proj_bn(self.proj(x), training=training), x.dtype)
                    if self.downsample else x)
        return ops.relu(y + shortcut)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "downsample": self.downsample, "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="hmhn")
class DeepFeatureFusion(keras.layers.Layer):
    """The four ResNet-18 stages; DFF of Eq. 7 (and the body of the plain backbone).

    ``(B, H/4, W/4, width) -> (B, H/32, W/32, 8*width)``; (56,56,64) -> (7,7,512) at 224.

    Args:
        width: channels of the first stage (64 in ResNet-18); stages use
            ``width * (1, 2, 4, 8)``. Smaller values only serve fast tests.
        blocks: basic blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18.
        bn_momentum: Keras momentum of every BN (0.9 = PyTorch's 0.1).
    """

    def __init__(self, width: int = 64, blocks=STAGE_BLOCKS, bn_momentum: float = BN_MOMENTUM,
                 **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.bn_momentum = float(bn_momentum)
        self.blocks = tuple(int(b) for b in blocks)
        self.block_layers = []
        in_ch = self.width
        for s, n in enumerate(self.blocks):
            filters = self.width * 2 ** s
            for b in range(n):
                strides = 2 if (s > 0 and b == 0) else 1
                blk = BasicBlock(filters, strides, downsample=(strides != 1 or in_ch != filters),
                                 bn_momentum=self.bn_momentum, name=f"stage{s + 1}_block{b + 1}")
                self.block_layers.append(blk)
                in_ch = filters

    @property
    def out_channels(self) -> int:
        return self.width * 2 ** (len(self.blocks) - 1)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for blk in self.block_layers:
            blk.build(shape)
            shape = blk.compute_output_shape(shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for blk in self.block_layers:
            shape = blk.compute_output_shape(shape)
        return shape

    def call(self, x, training=None):
        for blk in self.block_layers:
            x = blk(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "width": self.width, "blocks": list(self.blocks),
                "bn_momentum": self.bn_momentum}
