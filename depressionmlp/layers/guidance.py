"""Mutual Guidance (MG) and the score head of DepressionMLP (Eq. 14-20).

"C1_{M->k} on Q^T" (a ``Conv1D`` with kernel size 1 whose steps are Q's
columns) is a ``keras.layers.Dense(k)`` applied to ``Q^T``; "C1_{1->N} on q"
with q of shape (M, 1) is a ``Dense(N)`` on q's single channel. Every Conv and
Dense has a bias.
"""

from __future__ import annotations

import keras
from keras import ops

from depressionmlp.layers.common import check_streams, transpose

STREAMS = ("R_X", "R_Y", "R_AU")
OUTPUT_ACTIVATIONS = ("relu", "linear")


def _summarize_columns(dense, q):
    """``ReLU(C1_{M->1}(Q^T))`` flattened: (batch, M, N) -> (batch, N)."""
    return ops.squeeze(dense(transpose(q)), axis=-1)


@keras.saving.register_keras_serializable(package="depressionmlp")
class MutualGuidance(keras.layers.Layer):
    """Mutual Guidance between keypoint (FKRS) and AU (AURS) streams, Eq. 14-18.

    Inputs ``[Q_X, Q_Y, Q_AU]``, each (M, N) (batch axis omitted). Both masks
    are computed from the unguided inputs.

    FKRS guides AURS (``guide_au``, red arrow, "DG+GPU+Linear"):

    - Eq. 14 ``q_X = ReLU(C1_{M->1}(Q_X^T))``, ``q_Y`` likewise (own C1)   (N, 1)
    - Eq. 15 ``q_XY = ReLU(Dense_{2N->M}(concat_rows(q_X, q_Y)))``         (M, 1)
    - Eq. 16 ``D_PU = sigmoid(C1_{1->N}(q_XY)) * Q_AU``                     (M, N)

    AURS guides FKRS (``guide_keypoints``, orange arrow, "DG+GUP+Linear"):

    - Eq. 17 ``q_AU = ReLU(Dense_{N->M}(ReLU(C1_{M->1}(Q_AU^T))))``         (M, 1)
    - Eq. 18 ``D_UX = sigmoid(C1_{1->N}(q_AU)) * Q_X``; ``D_UY`` with the
      same mask times ``Q_Y``                                               (M, N)

    A stream whose guidance is switched off passes through unchanged.
    Parameters at M=18, N=68: 2,640 (FKRS->AURS) + 1,397 (AURS->FKRS).

    Args:
        guide_au: apply the FKRS->AURS guidance (Eq. 14-16). Default True.
        guide_keypoints: apply the AURS->FKRS guidance (Eq. 17-18). Default True.

    Call args:
        inputs: list ``[Q_X, Q_Y, Q_AU]``, each (batch, M, N).

    Returns:
        list ``[D_UX, D_UY, D_PU]``, each (batch, M, N).
    """

    def __init__(self, guide_au: bool = True, guide_keypoints: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not (guide_au or guide_keypoints):
            raise ValueError(
                "MutualGuidance: at least one of guide_au / guide_keypoints must be "
                "True; leave the layer out for no guidance.")
        self.guide_au = bool(guide_au)
        self.guide_keypoints = bool(guide_keypoints)
        self.frames = None
        self.locations = None

    def build(self, input_shape):
        m, n = check_streams(self.name, input_shape, 3)
        self.frames, self.locations = m, n
        if self.guide_au:
            # Eq. 14: one C1_{M->1} per keypoint stream.
            self.summarize_x = keras.layers.Dense(1, activation="relu", name="summarize_x")
            self.summarize_x.build((None, n, m))
            self.summarize_y = keras.layers.Dense(1, activation="relu", name="summarize_y")
            self.summarize_y.build((None, n, m))
            # Eq. 15: W_XY in R^{M x 2N}.
            self.keypoint_dense = keras.layers.Dense(m, activation="relu", name="keypoint_dense")
            self.keypoint_dense.build((None, 2 * n))
            # Eq. 16: C1_{1->N}, the AU guidance mask.
            self.au_mask = keras.layers.Dense(n, activation="sigmoid", name="au_mask")
            self.au_mask.build((None, m, 1))
        if self.guide_keypoints:
            # Eq. 17: C1_{M->1} on Q_AU^T, then W_AU in R^{M x N}.
            self.summarize_au = keras.layers.Dense(1, activation="relu", name="summarize_au")
            self.summarize_au.build((None, n, m))
            self.au_dense = keras.layers.Dense(m, activation="relu", name="au_dense")
            self.au_dense.build((None, n))
            # Eq. 18: C1_{1->N}, the keypoint guidance mask (shared by X and Y).
            self.keypoint_mask = keras.layers.Dense(n, activation="sigmoid", name="keypoint_mask")
            self.keypoint_mask.build((None, m, 1))
        self.built = True

    def call(self, inputs):
        Q_x, Q_y, Q_au = inputs                                            # noqa: N806
        d_x, d_y, d_au = Q_x, Q_y, Q_au
        if self.guide_au:
            q_x = _summarize_columns(self.summarize_x, Q_x)                 # Eq. 14 (N,)
            q_y = _summarize_columns(self.summarize_y, Q_y)                 # Eq. 14 (N,)
            q_xy = self.keypoint_dense(ops.concatenate([q_x, q_y], -1))     # Eq. 15 (M,)
            mask = self.au_mask(ops.expand_dims(q_xy, -1))                  # (M, N)
            d_au = mask * Q_au                                              # Eq. 16
        if self.guide_keypoints:
            q_au = self.au_dense(_summarize_columns(self.summarize_au, Q_au))  # Eq. 17 (M,)
            mask = self.keypoint_mask(ops.expand_dims(q_au, -1))            # (M, N)
            d_x, d_y = mask * Q_x, mask * Q_y                               # Eq. 18
        return [d_x, d_y, d_au]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def count_flops(self) -> int:
        """2 x multiply-accumulates of the C1 / Dense layers, one segment."""
        m, n = self.frames, self.locations
        macs = 0
        if self.guide_au:
            macs += 2 * n * m + 2 * n * m + m * n     # Eq. 14, Eq. 15, Eq. 16
        if self.guide_keypoints:
            macs += n * m + n * m + m * n             # Eq. 17 (two maps), Eq. 18
        return 2 * macs

    def get_config(self):
        config = super().get_config()
        config.update({"guide_au": self.guide_au, "guide_keypoints": self.guide_keypoints})
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class ScoreHead(keras.layers.Layer):
    """The "Linear" score head, Eq. 19-20, for 1, 2 or 3 streams.

    For each stream ``D`` (M, N) (batch axis omitted), with its own C1:

    - Eq. 19 ``s_D = ReLU(C1_{M->1}(D^T))``                       (N, 1)

    or, with ``hidden = H > 0`` **[choice]**, a two-layer read-out of each column's
    M frames, shared by the stream's columns as Eq. 19's C1 is:
    ``s_D = ReLU(C1_{H->1}(GELU(C1_{M->H}(D^T))))`` (N, 1). Eq. 19's C1 is linear in
    the frames; the hidden layer makes the read-out non-linear in them, e.g. for a
    brief event wherever it falls in the segment (measured in docs/learnability.md,
    "Where the blink cue is lost"; off by default).

    With ``column_outputs = K > 1`` **[choice]** the last C1 gives K values per
    column (C1_{M->K} or C1_{H->K}, ReLU), so ``s_D`` is (N, K), read row by row
    into Eq. 20's Dense (kNK inputs): K statistics of every column, the same K
    for every column, and a choice among columns only in Eq. 20.

    then, over the k present streams in input order,

    - Eq. 20 ``s = act(score_scale * Dense_{kN->1}(concat_rows(s_1, ..., s_k))
      + score_offset)``  scalar.

    ``score_scale`` is 1 and ``score_offset`` 0 in the paper. Fixed (non-trained)
    values, the training labels' standard deviation and mean [choice], let the
    Dense work on standardised labels (zero at the mean, unit at one spread) while
    the model still outputs BDI-II: with Adam, the score then moves
    ``score_scale`` times faster per step.

    Parameters: ``k*(M + 1) + (k*N + 1)`` (262 at k=3, M=18, N=68); with
    ``hidden = H``, ``k*(M*H + 2*H + 1) + (k*N + 1)``; with K outputs per column,
    ``k*(M*H + H + (H or M)*K + K) + (k*N*K + 1)``.

    Args:
        num_streams: k, how many (batch, M, N) tensors the head takes (1-3).
        output_activation: ``"relu"`` (default, Eq. 20) or ``"linear"``.
        score_scale: positive float multiplying the Dense output before the
            activation (default 1.0, Eq. 20 as printed).
        score_offset: float added after the scale, before the activation
            (default 0.0, Eq. 20 as printed).
        hidden: H, width of the hidden layer of Eq. 19's per-column read-out
            (default 0: Eq. 19 as printed, one linear C1).
        column_outputs: K, values per column out of Eq. 19's read-out (default
            1: Eq. 19 as printed).

    Call args:
        inputs: one tensor or a list of ``num_streams`` tensors, (batch, M, N).

    Returns:
        the score, (batch, 1).
    """

    def __init__(self, num_streams: int = 3, output_activation: str = "relu",
                 score_scale: float = 1.0, score_offset: float = 0.0, hidden: int = 0,
                 column_outputs: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.score_offset = float(score_offset)
        if isinstance(hidden, bool) or int(hidden) != hidden or int(hidden) < 0:
            raise ValueError(f"ScoreHead: hidden must be an integer >= 0, got {hidden!r}.")
        self.hidden = int(hidden)
        if isinstance(column_outputs, bool) or int(column_outputs) != column_outputs \
                or int(column_outputs) < 1:
            raise ValueError(f"ScoreHead: column_outputs must be an integer >= 1, "
                             f"got {column_outputs!r}.")
        self.column_outputs = int(column_outputs)
        if not float(score_scale) > 0:
            raise ValueError(f"ScoreHead: score_scale must be > 0, got {score_scale}.")
        self.score_scale = float(score_scale)
        if int(num_streams) not in (1, 2, 3):
            raise ValueError(f"ScoreHead: num_streams must be 1, 2 or 3, got {num_streams}.")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"ScoreHead: output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                f"got {output_activation!r}.")
        self.num_streams = int(num_streams)
        self.output_activation = output_activation
        self.frames = None
        self.locations = None

    def _as_list(self, x):
        return list(x) if isinstance(x, (list, tuple)) else [x]

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape, (list, tuple)) and \
            input_shape and isinstance(input_shape[0], (list, tuple)) else [input_shape]
        m, n = check_streams(self.name, shapes, self.num_streams)
        self.frames, self.locations = m, n
        self.stream_hidden, self.stream_scores = [], []
        for i in range(self.num_streams):
            if self.hidden:
                hidden = keras.layers.Dense(self.hidden, activation="gelu",
                                            name=f"stream_hidden_{i}", dtype=self.dtype_policy)
                hidden.build((None, n, m))
                self.stream_hidden.append(hidden)
            dense = keras.layers.Dense(self.column_outputs, activation="relu",
                                       name=f"stream_score_{i}", dtype=self.dtype_policy)
            dense.build((None, n, self.hidden or m))
            self.stream_scores.append(dense)
        self.out_dense = keras.layers.Dense(1, name="out", dtype=self.dtype_policy)
        self.out_dense.build((None, self.num_streams * n * self.column_outputs))
        self.built = True

    def call(self, inputs):
        streams = self._as_list(inputs)
        if len(streams) != self.num_streams:
            raise ValueError(
                f"ScoreHead: built for {self.num_streams} streams, called with {len(streams)}.")
        scores = []
        for i, d in enumerate(streams):                         # Eq. 19, (N,) or (N*K,)
            h = transpose(d)                                    # (N, M)
            if self.hidden:
                h = self.stream_hidden[i](h)                    # (N, H)
            h = self.stream_scores[i](h)                        # (N, K)
            scores.append(ops.reshape(h, (-1, self.locations * self.column_outputs)))
        joined = scores[0] if len(scores) == 1 else ops.concatenate(scores, axis=-1)
        out = self.out_dense(joined)                            # Eq. 20 (1,)
        if self.score_scale != 1.0:
            out = out * self.score_scale
        if self.score_offset != 0.0:
            out = out + self.score_offset
        return ops.relu(out) if self.output_activation == "relu" else out

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        return (shapes[0][0], 1)

    def count_flops(self) -> int:
        """2 x multiply-accumulates of the per-stream C1 and the Dense, one segment."""
        k, m, n, h, c = (self.num_streams, self.frames, self.locations, self.hidden,
                         self.column_outputs)
        per_column = (m * h + h * c) if h else m * c
        return 2 * (k * n * per_column + k * n * c)

    def get_config(self):
        config = super().get_config()
        config.update({"num_streams": self.num_streams,
                       "output_activation": self.output_activation,
                       "score_scale": self.score_scale,
                      "score_offset": self.score_offset, "hidden": self.hidden,
                       "column_outputs": self.column_outputs})
        return config
