"""Dual Gating (DG) module of DepressionMLP (Sec. III-B-2, Eq. 7-13).

All three layers map one representation sequence ``R`` of shape
``(batch, M, N)`` (M frames, N keypoints / widened AU columns) to a tensor of
the same shape and the same physical meaning, so a residual add is legal.

"C1 on X" (a ``Conv1D`` with ``kernel_size=1`` whose steps are X's first
non-batch axis) is implemented as a ``keras.layers.Dense`` on X's last axis:
the same matrix right-multiplication plus bias, with the same parameters.
"C2" (a ``Conv2D`` with one 1x1 filter over the two stacked branch maps) is a
``Dense(1)`` on the stacked channel axis, again with the same 2 + 1 parameters.
"""

from __future__ import annotations

import keras
from keras import ops

from depressionmlp.layers.common import transpose

SOFTMAX_AXES = ("locations", "frames")


def check_even(layer_name: str, frames, locations) -> None:
    """Raise a clear ``ValueError`` unless M and N are known and even.

    The DG splits halve the frame axis (CFG) and the location axis (CLG).
    """
    for what, value in (("segment_length M (frames)", frames),
                        ("n_points N (locations)", locations)):
        if value is None:
            raise ValueError(
                f"{layer_name}: {what} must be a known static size, got None.")
        if int(value) % 2:
            raise ValueError(
                f"{layer_name}: {what} must be even because the gating splits it "
                f"into two halves, got {value}.")


def _check_softmax_axis(layer_name: str, value: str) -> str:
    if value not in SOFTMAX_AXES:
        raise ValueError(
            f"{layer_name}: softmax_over must be one of {SOFTMAX_AXES}, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="depressionmlp")
class CrossLocationGating(keras.layers.Layer):
    """Cross-location gating embedding (CLG), Eq. 7-10.

    Shapes (batch axis omitted), R of shape (M, N):

    - Eq. 7  ``R_L = ReLU(C1_{N->N}(R))``                          (M, N)
    - split ``R_L`` on the last axis into ``R_L1, R_L2``           (M, N/2) each
    - Eq. 8  ``M_F2 = sigmoid(C1_{M->M}(R_L2^T))``                 (N/2, M)
    - Eq. 9  ``G_FL = M_F2^T * R_L1``                              (M, N/2)
    - Eq. 10 ``R_FL = softmax(C1_{N/2->N}(G_FL)) * R``             (M, N)

    Parameters: ``(N*N + N) + (M*M + M) + (N/2*N + N)``.

    Args:
        softmax_over: **[choice]** axis of the Eq. 10 softmax: ``"locations"``
            (the N axis, default, the design's reading) or ``"frames"``
            (the M axis). With ``"frames"`` the bias of the last C1 is constant
            along the softmax axis and therefore has no effect.

    Call args:
        inputs: ``R``, float tensor (batch, M, N); M and N even.

    Returns:
        ``R_FL``, (batch, M, N).
    """

    def __init__(self, softmax_over: str = "locations", **kwargs):
        super().__init__(**kwargs)
        self.softmax_over = _check_softmax_axis(self.__class__.__name__, softmax_over)
        self.frames = None
        self.locations = None

    def build(self, input_shape):
        m, n = input_shape[-2], input_shape[-1]
        check_even(self.name, m, n)
        self.frames, self.locations = int(m), int(n)
        # Eq. 7: C1_{N->N} on R.
        self.location_proj = keras.layers.Dense(n, activation="relu", name="location_proj")
        self.location_proj.build((None, m, n))
        # Eq. 8: C1_{M->M} on R_L2^T.
        self.frame_gate = keras.layers.Dense(m, activation="sigmoid", name="frame_gate")
        self.frame_gate.build((None, n // 2, m))
        # Eq. 10: C1_{N/2->N} on G_FL.
        self.embed_proj = keras.layers.Dense(n, name="embed_proj")
        self.embed_proj.build((None, m, n // 2))
        self.built = True

    def call(self, inputs):
        r = inputs
        r_l = self.location_proj(r)                              # Eq. 7  (M, N)
        r_l1, r_l2 = ops.split(r_l, 2, axis=-1)                  # (M, N/2) each
        m_f2 = self.frame_gate(transpose(r_l2))                 # Eq. 8  (N/2, M)
        g_fl = transpose(m_f2) * r_l1                           # Eq. 9  (M, N/2)
        axis = -1 if self.softmax_over == "locations" else -2
        weights = ops.softmax(self.embed_proj(g_fl), axis=axis)  # Eq. 10 (M, N)
        return weights * r

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_flops(self) -> int:
        """2 x multiply-accumulates of the three C1 layers, one segment."""
        m, n = self.frames, self.locations
        return 2 * (m * n * n + (n // 2) * m * m + m * (n // 2) * n)

    def get_config(self):
        config = super().get_config()
        config.update({"softmax_over": self.softmax_over})
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class CrossFrameGating(keras.layers.Layer):
    """Cross-frame gating embedding (CFG), Eq. 11-12 and the L->F embedding.

    Shapes (batch axis omitted), R of shape (M, N):

    - Eq. 11 ``R_F = ReLU(C1_{M->M}(R^T))``                        (N, M)
    - split ``R_F`` on the last axis into ``R_F1, R_F2``           (N, M/2) each
    - ``M_L2 = sigmoid(C1_{N->N}(R_F2^T))``                        (M/2, N)
    - Eq. 12 ``G_LF = M_L2^T * R_F1``                              (N, M/2)
    - ``R_LF = softmax(C1_{M/2->M}(G_LF))^T * R``                  (M, N)
      (Eq. 10 with ``G_LF^T``: only this order gives (M, N).)

    Parameters: ``(M*M + M) + (N*N + N) + (M/2*M + M)``.

    Args:
        softmax_over: **[choice]** axis of the softmax: ``"frames"`` (the M
            axis, default, the design's reading) or ``"locations"`` (the N
            axis). With ``"locations"`` the bias of the last C1 has no effect.

    Call args:
        inputs: ``R``, float tensor (batch, M, N); M and N even.

    Returns:
        ``R_LF``, (batch, M, N).
    """

    def __init__(self, softmax_over: str = "frames", **kwargs):
        super().__init__(**kwargs)
        self.softmax_over = _check_softmax_axis(self.__class__.__name__, softmax_over)
        self.frames = None
        self.locations = None

    def build(self, input_shape):
        m, n = input_shape[-2], input_shape[-1]
        check_even(self.name, m, n)
        self.frames, self.locations = int(m), int(n)
        # Eq. 11: C1_{M->M} on R^T.
        self.frame_proj = keras.layers.Dense(m, activation="relu", name="frame_proj")
        self.frame_proj.build((None, n, m))
        # Cross-location mixing: C1_{N->N} on R_F2^T.
        self.location_gate = keras.layers.Dense(n, activation="sigmoid", name="location_gate")
        self.location_gate.build((None, m // 2, n))
        # Embedding: C1_{M/2->M} on G_LF.
        self.embed_proj = keras.layers.Dense(m, name="embed_proj")
        self.embed_proj.build((None, n, m // 2))
        self.built = True

    def call(self, inputs):
        r = inputs
        r_f = self.frame_proj(transpose(r))                      # Eq. 11 (N, M)
        r_f1, r_f2 = ops.split(r_f, 2, axis=-1)                   # (N, M/2) each
        m_l2 = self.location_gate(transpose(r_f2))               # (M/2, N)
        g_lf = transpose(m_l2) * r_f1                            # Eq. 12 (N, M/2)
        axis = -1 if self.softmax_over == "frames" else -2
        weights = ops.softmax(self.embed_proj(g_lf), axis=axis)   # (N, M)
        return transpose(weights) * r                            # (M, N)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_flops(self) -> int:
        """2 x multiply-accumulates of the three C1 layers, one segment."""
        m, n = self.frames, self.locations
        return 2 * (n * m * m + (m // 2) * n * n + n * (m // 2) * m)

    def get_config(self):
        config = super().get_config()
        config.update({"softmax_over": self.softmax_over})
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class DualGating(keras.layers.Layer):
    """Dual Gating module (DG), Eq. 13, with its one-branch ablations.

    Shapes (batch axis omitted), R of shape (M, N):

    - ``branches="both"`` (DG): Eq. 13
      ``Q = ReLU(C2(stack([R_FL, R_LF], axis=-1))) + R``  (M, N), where C2 is a
      1x1 Conv2D with one filter (2 weights + 1 bias), implemented as a
      ``Dense(1)`` on the stacked channel axis.
    - ``branches="clg"`` ("CLG+Linear"): ``Q = ReLU(R_FL) + R``.
    - ``branches="cfg"`` ("CFG+Linear"): ``Q = ReLU(R_LF) + R``.

    One DG at M=18, N=68 has 12,631 parameters (7,414 CLG + 5,214 CFG + 3 C2).

    Args:
        branches: ``"both"`` (default), ``"clg"`` or ``"cfg"``.
        clg_softmax_over: softmax axis of the CLG branch, default ``"locations"``
            **[choice]**, see :class:`CrossLocationGating`.
        cfg_softmax_over: softmax axis of the CFG branch, default ``"frames"``
            **[choice]**, see :class:`CrossFrameGating`.
        single_branch_conv: **[choice]** for a one-branch ablation, pass the
            branch through a 1x1 Conv2D on its single channel (weight + bias)
            before the ReLU, as C2 would. Default ``False``: the design's
            ``Q = ReLU(branch) + R``. Ignored for ``branches="both"``.

    Call args:
        inputs: ``R``, (batch, M, N); M and N even.

    Returns:
        ``Q``, (batch, M, N).
    """

    BRANCHES = ("both", "clg", "cfg")

    def __init__(self, branches: str = "both", clg_softmax_over: str = "locations",
                 cfg_softmax_over: str = "frames", single_branch_conv: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        if branches not in self.BRANCHES:
            raise ValueError(
                f"DualGating: branches must be one of {self.BRANCHES}, got {branches!r}.")
        self.branches = branches
        self.clg_softmax_over = _check_softmax_axis("DualGating", clg_softmax_over)
        self.cfg_softmax_over = _check_softmax_axis("DualGating", cfg_softmax_over)
        self.single_branch_conv = bool(single_branch_conv)
        self.frames = None
        self.locations = None

    @property
    def _uses_fuse(self) -> bool:
        return self.branches == "both" or self.single_branch_conv

    def build(self, input_shape):
        m, n = input_shape[-2], input_shape[-1]
        check_even(self.name, m, n)
        self.frames, self.locations = int(m), int(n)
        shape = (None, m, n)
        self.clg = None
        self.cfg = None
        if self.branches in ("both", "clg"):
            self.clg = CrossLocationGating(self.clg_softmax_over, name="clg")
            self.clg.build(shape)
        if self.branches in ("both", "cfg"):
            self.cfg = CrossFrameGating(self.cfg_softmax_over, name="cfg")
            self.cfg.build(shape)
        self.fuse = None
        if self._uses_fuse:
            channels = 2 if self.branches == "both" else 1
            self.fuse = keras.layers.Dense(1, name="fuse")   # C2, 1x1 Conv2D
            self.fuse.build((None, m, n, channels))
        self.built = True

    def call(self, inputs):
        r = inputs
        maps = []
        if self.clg is not None:
            maps.append(self.clg(r))                              # R_FL (M, N)
        if self.cfg is not None:
            maps.append(self.cfg(r))                              # R_LF (M, N)
        if self.fuse is not None:
            stacked = ops.stack(maps, axis=-1)                    # (M, N, C)
            fused = ops.squeeze(self.fuse(stacked), axis=-1)      # C2 -> (M, N)
        else:
            fused = maps[0]
        return ops.relu(fused) + r                                # Eq. 13

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_flops(self) -> int:
        """2 x multiply-accumulates of the branch C1 layers and C2, one segment."""
        total = 0
        for branch in (self.clg, self.cfg):
            if branch is not None:
                total += branch.count_flops()
        if self.fuse is not None:
            channels = 2 if self.branches == "both" else 1
            total += 2 * self.frames * self.locations * channels
        return total

    def get_config(self):
        config = super().get_config()
        config.update({
            "branches": self.branches,
            "clg_softmax_over": self.clg_softmax_over,
            "cfg_softmax_over": self.cfg_softmax_over,
            "single_branch_conv": self.single_branch_conv,
        })
        return config
