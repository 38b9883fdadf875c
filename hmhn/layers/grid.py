"""Grid-Wise Attention (GWA, HMHN Sec. 3.2, Table 2, Eq. 1-6) and the tiling it rests on.

Shapes are channels-last, batch axis first: an image ``g`` is ``(B, H, W, C)``.

* :func:`grid_tiles` (Eq. 1) cuts ``(B, H, W, C)`` into ``h*w`` tiles, row-major
  (tile ``t = i*w + j`` is the i-th row, j-th column): ``(B, h*w, H/h, W/w, C)``.
* :func:`ungrid_tiles` is its exact inverse (the ``Ungrid`` of Eq. 6).
* :class:`LocalGridFeatureExtractor` is the LGFE of Table 2, one network shared by
  all tiles: Conv 1x1 C->C*k, BN, LeakyReLU, Conv 1x1 C*k->C, BN, LeakyReLU.
* :class:`GridWiseAttention` puts Eq. 2-6 together and returns the weighted image
  ``G_tilde = Ungrid(Aavp(softmax(q k^T / d_k)) * Ones) * g`` with the shape of ``g``.
"""

from __future__ import annotations

import keras
from keras import ops

from hmhn.layers.resnet import BN_EPSILON, BN_MOMENTUM

FIT_MODES = ("pad", "resize")
SOFTMAX_AXES = ("tiles", "keys")


def parse_grid(grid) -> tuple[int, int]:
    """``(3, 3)``, ``[3, 3]``, ``"3x3"``, ``3``, ``"none"``/``None``/``(1, 1)`` -> ``(h, w)``.

    ``"none"`` is the 1 x 1 grid: the whole image is a single tile.
    """
    if grid is None or (isinstance(grid, str) and grid.strip().lower() in ("none", "", "1x1")):
        return (1, 1)
    if isinstance(grid, int):
        grid = (grid, grid)
    if isinstance(grid, str):
        parts = grid.lower().replace("*", "x").split("x")
        try:
            grid = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"grid must look like '3x3' or 'none', got {grid!r}") from None
        if len(grid) == 1:
            grid = grid * 2
    grid = tuple(int(v) for v in grid)
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be two positive integers (h, w), got {grid!r}")
    return grid


def grid_name(grid) -> str:
    h, w = parse_grid(grid)
    return "none" if (h, w) == (1, 1) else f"{h}x{w}"


def grid_tiles(x, h: int, w: int):
    """Eq. 1: ``(B, H, W, C)`` -> ``(B, h*w, H/h, W/w, C)``, tiles in row-major order.

    Weight-free; ``H`` and ``W`` must be multiples of ``h`` and ``w``.
    """
    shape = ops.shape(x)
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    if H is None or W is None:
        raise ValueError("grid_tiles needs a static image size")
    if H % h or W % w:
        raise ValueError(f"image {H}x{W} does not divide into a {h}x{w} grid")
    th, tw = H // h, W // w
    t = ops.reshape(x, (shape[0], h, th, w, tw, C))
    t = ops.transpose(t, (0, 1, 3, 2, 4, 5))          # (B, h, w, th, tw, C)
    return ops.reshape(t, (shape[0], h * w, th, tw, C))


def ungrid_tiles(t, h: int, w: int):
    """Inverse of :func:`grid_tiles`: ``(B, h*w, H/h, W/w, C)`` -> ``(B, H, W, C)``."""
    shape = ops.shape(t)
    th, tw, C = t.shape[2], t.shape[3], t.shape[4]
    if t.shape[1] is not None and t.shape[1] != h * w:
        raise ValueError(f"expected {h * w} tiles, got {t.shape[1]}")
    x = ops.reshape(t, (shape[0], h, w, th, tw, C))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))          # (B, h, th, w, tw, C)
    return ops.reshape(x, (shape[0], h * th, w * tw, C))


def fitted_size(size: int, parts: int) -> int:
    """The next multiple of ``parts`` at or above ``size`` (224 -> 225 for 3 parts)."""
    return -(-size // parts) * parts


@keras.saving.register_keras_serializable(package="hmhn")
class LocalGridFeatureExtractor(keras.layers.Layer):
    """LGFE, Table 2: per-pixel (1x1) network shared by all tiles; keeps the tile shape.

    ``(N, th, tw, C) -> (N, th, tw, C)``: Conv 1x1 C->C*k (+bias), BN, LeakyReLU,
    Conv 1x1 C*k->C (+bias), BN, LeakyReLU.

    Args:
        width: the expansion factor ``k`` of Table 2. **[choice]** default 4: the
            paper does not give it; it reuses the letter of the head count (4).
        negative_slope: LeakyReLU slope. **[choice]** 0.01, PyTorch's default (Keras'
            own default is 0.3); the paper's code is PyTorch.
        bn_momentum: BatchNormalization momentum, default 0.9 with epsilon 1e-5, i.e.
            PyTorch's momentum 0.1 / eps 1e-5 (Keras' defaults 0.99 / 1e-3 differ).
    """

    def __init__(self, width: int = 4, negative_slope: float = 0.01,
                 bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        if int(width) < 1:
            raise ValueError(f"LGFE width k must be >= 1, got {width}")
        self.width = int(width)
        self.negative_slope = float(negative_slope)
        self.bn_momentum = float(bn_momentum)

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.expand = keras.layers.Conv2D(c * self.width, 1, name="expand")
        self.bn1 = keras.layers.BatchNormalization(dtype="float32", momentum=self.bn_momentum,
                                                   epsilon=BN_EPSILON, name="bn1")
        self.reduce = keras.layers.Conv2D(c, 1, name="reduce")
        self.bn2 = keras.layers.BatchNormalization(dtype="float32", momentum=self.bn_momentum,
                                                   epsilon=BN_EPSILON, name="bn2")
        shape = tuple(input_shape)
        self.expand.build(shape)
        self.bn1.build(shape[:-1] + (c * self.width,))
        self.reduce.build(shape[:-1] + (c * self.width,))
        self.bn2.build(shape)
        self.built = True

    def call(self, x, training=None):
        y = ops.cast(self.bn1(self.expand(x), training=training), x.dtype)
        y = ops.leaky_relu(y, self.negative_slope)
        y = ops.cast(self.bn2(self.reduce(y), training=training), x.dtype)
        return ops.leaky_relu(y, self.negative_slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "width": self.width,
                "negative_slope": self.negative_slope, "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="hmhn")
class GridWiseAttention(keras.layers.Layer):
    """GWA (Sec. 3.2, Eq. 1-6): ``g (B, H, W, C) -> G_tilde (B, H, W, C)``.

    Step by step, with ``T = h*w`` tiles of ``(th, tw) = (H/h, W/w)``:

    1. Eq. 1: ``grid_tiles(g)`` -> ``(B, T, th, tw, C)``.
    2. Eq. 2-3: the shared LGFE on every tile -> ``G_hat`` of the same shape.
    3. Eq. 4: per tile and channel, ``q = G_hat[b, t, :, :, c]`` (th x tw) and
       ``k = q^T`` (tw x th); scores ``q k / d_k`` with ``d_k = tw`` -> ``(B, T, C, th, th)``;
       ``Att = softmax(scores)``.
    4. Eq. 5: adaptive average pooling of each ``(th x th)`` Att to one scalar per
       (tile, channel) -> ``(B, T, C)``, broadcast over the tile (``* Ones(th, tw)``).
    5. Eq. 6: ``Ungrid`` back to ``(B, H, W, C)`` and multiply element-wise with ``g``.

    Args:
        grid: ``(h, w)`` or ``"3x3"``; ``"none"`` = one tile (1 x 1). Default 3 x 3.
        lgfe_width: LGFE expansion ``k`` (Table 2). **[choice]** default 4.
        use_lgfe: False replaces the LGFE by the identity (for tests / ablations). It
            is not built where the weights are constant (see :attr:`constant_weights`):
            grid "none" is then GWA switched off, with no parameters.
        softmax_axis: **[choice]** which axis Eq. 4's softmax normalises.
            ``"tiles"`` (default): across the ``h*w`` tiles, entry by entry, so the
            pooled weights of one channel sum to 1 over the tiles and compare the
            facial regions with one another ("the relationship between different
            facial regions", Sec. 3.2.2).
            ``"keys"``: the usual attention reading, over the last (key) axis of each
            ``th x th`` matrix. Caution: every row then sums to 1, so the Eq. 5 mean is
            exactly ``1/th`` whatever the input -- GWA degenerates to a constant
            scaling of ``g``, so no LGFE is built. Kept for completeness.
        fit: **[choice]** what to do when ``H`` (or ``W``) is not a multiple of ``h``
            (224 is not a multiple of 3). ``"pad"`` (default): mirror-pad the bottom /
            right edge to the next multiple (224 -> 225), compute the weights there and
            crop them back to ``H x W`` before Eq. 6. ``"resize"``: bilinear resize to
            the next multiple and resize the weight map back.
        negative_slope: LGFE LeakyReLU slope (PyTorch default 0.01).
        bn_momentum: LGFE BatchNormalization momentum (0.9 = PyTorch's 0.1).
    """

    def __init__(self, grid=(3, 3), lgfe_width: int = 4, use_lgfe: bool = True,
                 softmax_axis: str = "tiles", fit: str = "pad", negative_slope: float = 0.01,
                 bn_momentum: float = BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.grid = parse_grid(grid)
        if softmax_axis not in SOFTMAX_AXES:
            raise ValueError(f"softmax_axis must be one of {SOFTMAX_AXES}, got {softmax_axis!r}")
        if fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {fit!r}")
        self.lgfe_width = int(lgfe_width)
        self.use_lgfe = bool(use_lgfe)
        self.softmax_axis = softmax_axis
        self.fit = fit
        self.negative_slope = float(negative_slope)
        self.bn_momentum = float(bn_momentum)
        # The LGFE is built only where its output can reach the weights: with one tile
        # under the "tiles" softmax, or under the "keys" softmax, Eq. 5 gives constant
        # weights (1, or 1/th), so an LGFE there would hold variables with no gradient.
        self.lgfe = (LocalGridFeatureExtractor(self.lgfe_width, self.negative_slope,
                                               self.bn_momentum, name="lgfe")
                     if self.use_lgfe and not self.constant_weights else None)

    @property
    def constant_weights(self) -> bool:
        """True where Eq. 4-5 give the same weight to every tile whatever the input:
        a single tile (grid "none") under the "tiles" softmax, or any grid under "keys"."""
        return self.softmax_axis == "keys" or self.grid == (1, 1)

    def build(self, input_shape):
        H, W, C = input_shape[1], input_shape[2], input_shape[3]
        if H is None or W is None:
            raise ValueError("GridWiseAttention needs a static image size")
        h, w = self.grid
        if h > H or w > W:
            raise ValueError(f"a {h}x{w} grid does not fit a {H}x{W} image")
        self._fitted = (fitted_size(H, h), fitted_size(W, w))
        if self.lgfe is not None:
            self.lgfe.build((None, self._fitted[0] // h, self._fitted[1] // w, C))
        self.built = True

    def tile_weights(self, g, training=None):
        """Eq. 1-5: the per-(tile, channel) weights ``(B, h*w, C)`` of the fitted image."""
        h, w = self.grid
        H, W = g.shape[1], g.shape[2]
        Hf, Wf = self._fitted
        x = g
        if (Hf, Wf) != (H, W):
            if self.fit == "pad":
                x = ops.pad(x, ((0, 0), (0, Hf - H), (0, Wf - W), (0, 0)), mode="symmetric")
            else:
                x = ops.image.resize(x, (Hf, Wf), interpolation="bilinear")
        tiles = grid_tiles(x, h, w)                                    # (B, T, th, tw, C)
        b = ops.shape(tiles)[0]
        th, tw, C = tiles.shape[2], tiles.shape[3], tiles.shape[4]
        if self.lgfe is not None:
            flat = ops.reshape(tiles, (b * h * w, th, tw, C))
            tiles = ops.reshape(self.lgfe(flat, training=training), (b, h * w, th, tw, C))
        q = ops.transpose(tiles, (0, 1, 4, 2, 3))                      # (B, T, C, th, tw)
        scores = ops.matmul(q, ops.transpose(q, (0, 1, 2, 4, 3))) / float(tw)  # (B,T,C,th,th)
        if self.softmax_axis == "tiles":
            # a single tile (grid "none") normalises to exactly 1 everywhere
            att = ops.softmax(scores, axis=1) if h * w > 1 else ops.ones_like(scores)
        else:
            att = ops.softmax(scores, axis=-1)
        return ops.mean(att, axis=(3, 4))                              # Eq. 5: (B, T, C)

    def weight_map(self, g, training=None):
        """Eq. 5-6 before the product: the ``(B, H, W, C)`` weight map applied to ``g``."""
        h, w = self.grid
        H, W = g.shape[1], g.shape[2]
        Hf, Wf = self._fitted
        weights = self.tile_weights(g, training=training)              # (B, T, C)
        C = weights.shape[-1]
        th, tw = Hf // h, Wf // w
        tiled = ops.broadcast_to(weights[:, :, None, None, :],
                                 (ops.shape(weights)[0], h * w, th, tw, C))  # * Ones(th, tw)
        wmap = ungrid_tiles(tiled, h, w)                               # (B, Hf, Wf, C)
        if (Hf, Wf) != (H, W):
            if self.fit == "pad":
                wmap = wmap[:, :H, :W, :]
            else:
                wmap = ops.image.resize(wmap, (H, W), interpolation="bilinear")
        return wmap

    def call(self, g, training=None):
        wmap = self.weight_map(g, training=training)    # float32 from BatchNorm when mixed
        return ops.cast(wmap, g.dtype) * g                              # Eq. 6

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "grid": list(self.grid), "lgfe_width": self.lgfe_width,
                "use_lgfe": self.use_lgfe, "softmax_axis": self.softmax_axis, "fit": self.fit,
                "negative_slope": self.negative_slope, "bn_momentum": self.bn_momentum}
