"""Baseline blocks of Tables III-V: the gMLP block and cross-attention fusion."""

from __future__ import annotations

import keras
from keras import ops

from depressionmlp.layers.common import check_streams

SPATIAL_INITS = ("uniform", "zeros")


@keras.saving.register_keras_serializable(package="depressionmlp")
class GatedMLPBlock(keras.layers.Layer):
    """One gMLP block (Liu et al. 2021), Eq. 4-6; tokens = frames, channels = N.

    Shapes (batch axis omitted), R of shape (M, N):

    - Eq. 4 ``Z = GELU(LayerNorm(R) W1 + b1)``               (M, D)
    - split ``Z`` on the last axis into ``Z1, Z2``             (M, D/2) each
    - Eq. 5 ``Z_hat = Z1 * (W2 Z2 + b2)``, W2 (M, M) mixes tokens (frames),
      b2 (M,) per token                                         (M, D/2)
    - Eq. 6 ``G = R + Z_hat W3 + b3``                          (M, N)

    LayerNorm is over the channel (N) axis with exact GELU (``approximate=False``).
    Parameters: ``2N + (N*D + D) + (M*M + M) + (D/2*N + N)``.

    Args:
        width: D, **[choice]** default ``None`` -> ``2 * N``. Must be even.
        spatial_init: ``"uniform"`` (default, W2 ~ U(-eps, eps)) or ``"zeros"``;
            the token-mixing bias b2 starts at 1, so the block starts close to
            identity gating, as in the gMLP paper.
        spatial_epsilon: eps of the uniform init (default 1e-3).
        spatial_norm: **[choice]** LayerNorm Z2 before W2 as the gMLP paper's
            code does; default ``False`` (Eq. 5 as printed has no norm).
        epsilon: LayerNorm epsilon (default 1e-6).

    Call args:
        inputs: ``R``, (batch, M, N).

    Returns:
        ``G``, (batch, M, N).
    """

    def __init__(self, width: int | None = None, spatial_init: str = "uniform",
                 spatial_epsilon: float = 1e-3, spatial_norm: bool = False,
                 epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if spatial_init not in SPATIAL_INITS:
            raise ValueError(
                f"GatedMLPBlock: spatial_init must be one of {SPATIAL_INITS}, "
                f"got {spatial_init!r}.")
        if width is not None and (int(width) <= 0 or int(width) % 2):
            raise ValueError(f"GatedMLPBlock: width D must be a positive even number, got {width}.")
        self.width = None if width is None else int(width)
        self.spatial_init = spatial_init
        self.spatial_epsilon = float(spatial_epsilon)
        self.spatial_norm = bool(spatial_norm)
        self.epsilon = float(epsilon)
        self.frames = None
        self.locations = None

    def build(self, input_shape):
        m, n = input_shape[-2], input_shape[-1]
        if m is None or n is None:
            raise ValueError(f"{self.name}: M and N must be static, got ({m}, {n}).")
        m, n = int(m), int(n)
        d = self.width or 2 * n
        self.frames, self.locations, self.units = m, n, d
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="norm")
        self.norm.build((None, m, n))
        self.channel_proj = keras.layers.Dense(d, name="channel_proj")        # W1
        self.channel_proj.build((None, m, n))
        if self.spatial_init == "uniform":
            init = keras.initializers.RandomUniform(-self.spatial_epsilon, self.spatial_epsilon)
        else:
            init = "zeros"
        self.spatial_norm_layer = None
        if self.spatial_norm:
            self.spatial_norm_layer = keras.layers.LayerNormalization(
                epsilon=self.epsilon, name="spatial_norm")
            self.spatial_norm_layer.build((None, m, d // 2))
        self.spatial_proj = keras.layers.Dense(                               # W2, b2
            m, kernel_initializer=init, bias_initializer="ones", name="spatial_proj")
        self.spatial_proj.build((None, d // 2, m))
        self.out_proj = keras.layers.Dense(n, name="out_proj")                # W3
        self.out_proj.build((None, m, d // 2))
        self.built = True

    def call(self, inputs):
        r = inputs
        z = ops.gelu(self.channel_proj(self.norm(r)), approximate=False)     # Eq. 4 (M, D)
        z1, z2 = ops.split(z, 2, axis=-1)                                     # (M, D/2)
        if self.spatial_norm_layer is not None:
            z2 = self.spatial_norm_layer(z2)
        # W2 Z2: Dense over the token axis of Z2^T, i.e. (Z2^T W2^T)^T.
        mixed = ops.transpose(self.spatial_proj(ops.transpose(z2, (0, 2, 1))), (0, 2, 1))
        z_hat = z1 * mixed                                                    # Eq. 5 (M, D/2)
        return r + self.out_proj(z_hat)                                       # Eq. 6 (M, N)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_flops(self) -> int:
        """2 x multiply-accumulates of W1, W2, W3, one segment."""
        m, n, d = self.frames, self.locations, self.units
        return 2 * (m * n * d + (d // 2) * m * m + m * (d // 2) * n)

    def get_config(self):
        config = super().get_config()
        config.update({"width": self.width, "spatial_init": self.spatial_init,
                       "spatial_epsilon": self.spatial_epsilon,
                       "spatial_norm": self.spatial_norm, "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class CrossAttentionFusion(keras.layers.Layer):
    """Cross-attention fusion of keypoint and AU streams ("DG+CA+Linear").

    The baseline the paper contrasts with MG (Sec. III-C). Tokens are frames
    (M of them). The two keypoint streams are joined on the feature axis into
    one keypoint sequence ``K = [Q_X | Q_Y]`` of shape (M, 2N), mirroring how
    MG pools (Q_X, Q_Y) jointly (Eq. 15) and guides both with one mask (Eq. 18).
    Batch axis omitted:

    - keypoints attend to AUs: ``K' = K + MHA_ku(query=K, key=value=Q_AU)``
      (M, 2N); ``D_X, D_Y = split(K')`` (M, N) each;
    - AUs attend to keypoints: ``D_AU = Q_AU + MHA_uk(query=Q_AU, key=value=K)``
      (M, N).

    Both directions read the unfused inputs; each MHA projects back to its
    query's width, so the residual keeps (M, N) per stream and the three
    outputs feed the :class:`ScoreHead` exactly as MG's ``[D_UX, D_UY, D_PU]``
    do. Unlike MG, each output frame is a mixture over all frames of the other
    stream, which is the paper's argument against CA.

    Args:
        num_heads: attention heads of each MHA (default 4).
        key_dim: per-head query/key (and value) size; default ``None`` ->
            ``max(1, N // num_heads)``.
        dropout: attention dropout (default 0.0).
        residual: add the query stream back (default True).

    Call args:
        inputs: list ``[Q_X, Q_Y, Q_AU]``, each (batch, M, N).

    Returns:
        list ``[D_X, D_Y, D_AU]``, each (batch, M, N).
    """

    def __init__(self, num_heads: int = 4, key_dim: int | None = None,
                 dropout: float = 0.0, residual: bool = True, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"CrossAttentionFusion: num_heads must be >= 1, got {num_heads}.")
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.frames = None
        self.locations = None

    def build(self, input_shape):
        m, n = check_streams(self.name, input_shape, 3)
        self.frames, self.locations = m, n
        self.head_dim = self.key_dim or max(1, n // self.num_heads)
        self.keypoints_from_au = keras.layers.MultiHeadAttention(
            self.num_heads, self.head_dim, dropout=self.dropout, name="keypoints_from_au")
        self.keypoints_from_au.build((None, m, 2 * n), (None, m, n))
        self.au_from_keypoints = keras.layers.MultiHeadAttention(
            self.num_heads, self.head_dim, dropout=self.dropout, name="au_from_keypoints")
        self.au_from_keypoints.build((None, m, n), (None, m, 2 * n))
        self.built = True

    def call(self, inputs, training=None):
        q_x, q_y, q_au = inputs
        k = ops.concatenate([q_x, q_y], axis=-1)                              # (M, 2N)
        k_new = self.keypoints_from_au(k, q_au, q_au, training=training)      # (M, 2N)
        au_new = self.au_from_keypoints(q_au, k, k, training=training)        # (M, N)
        if self.residual:
            k_new = k + k_new
            au_new = q_au + au_new
        d_x, d_y = ops.split(k_new, 2, axis=-1)
        return [d_x, d_y, au_new]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def count_flops(self) -> int:
        """2 x multiply-accumulates of projections, scores and weighted sums."""
        m, n, h, e = self.frames, self.locations, self.num_heads, self.head_dim

        def mha(dq, dkv):
            return (m * dq * h * e            # query projection
                    + 2 * m * dkv * h * e     # key and value projections
                    + 2 * h * m * m * e       # Q K^T and A V
                    + m * h * e * dq)         # output projection
        return 2 * (mha(2 * n, n) + mha(n, 2 * n))

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "key_dim": self.key_dim,
                       "dropout": self.dropout, "residual": self.residual})
        return config
