"""Input conditioning in front of the per-stream blocks (the default protocol).

The paper feeds Eq. 2's keypoints (pixels / frame size) and Eq. 3's AUs straight
into DG. Measured on generated corpora with per-subject nuisance, that leaves the
keypoints' motion ~30x smaller than the AUs' spread and dominated by where the
face sits in the frame, and kills a third of the Eq. 14/17/19 ReLU units at
initialisation. The default protocol therefore puts three layers in front of the
blocks **[choice]**, each one an option of ``build_model``:

- :class:`FaceFrame` (``keypoint_frame="face"``): keypoints relative to the
  segment's own face centre and in units of its size;
- ``keras.layers.Normalization`` per stream (``standardize=True``): every column
  standardised with the training split's statistics (static levels are kept,
  unlike recording centring);
- :class:`ColumnJitter` (``column_jitter=sd``, training only): one random offset
  per sample and column, the same over the segment's frames, so a subject's
  resting levels cannot be memorised exactly; the regulariser that training with
  input noise equals (a ridge penalty), and the one the classical baseline uses.

Two further options (issue 8's static/dynamic split):

- :class:`SplitStandardize` (``standardize="split"``): a segment's resting level
  and its motion around it standardised separately, each to unit spread;
- :class:`LevelJitter` (``level_jitter=sd``, training only): offsets drawn with
  the covariance of the training segments' levels, so that whole-face identity
  patterns are as noisy as any other direction.

All live inside the saved model, so ``predict`` takes raw OpenFace-derived input.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from depressionmlp.layers.common import check_streams


@keras.saving.register_keras_serializable(package="depressionmlp")
class FaceFrame(keras.layers.Layer):
    """Keypoints in the segment's face frame: centre removed, divided by face size.

    For one segment (batch axis omitted), ``R_X``, ``R_Y`` of shape (M, N):

    - centre ``c = (mean(R_X), mean(R_Y))`` over all frames and points;
    - size ``s = sqrt(var_n(mean_t R_X) + var_n(mean_t R_Y))``: the spread of the
      segment's mean face over its N points;
    - output ``((R_X - c_x) / s, (R_Y - c_y) / s)``, each (M, N).

    Face position and scale in the frame (identity and camera, not expression)
    drop out; shape and motion relative to the face stay.

    Args:
        epsilon: floor on ``s`` (default 1e-6), for a collapsed face.

    Call args:
        inputs: ``[R_X, R_Y]``, each (batch, M, N).

    Returns:
        ``[X_face, Y_face]``, each (batch, M, N).
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        check_streams(self.name, input_shape, 2)
        self.built = True

    def call(self, inputs):
        x, y = inputs
        cx = ops.mean(x, axis=(1, 2), keepdims=True)
        cy = ops.mean(y, axis=(1, 2), keepdims=True)
        mx, my = ops.mean(x, axis=1), ops.mean(y, axis=1)              # (N,) mean face
        size = ops.sqrt(ops.var(mx, axis=-1) + ops.var(my, axis=-1))   # (,)
        size = ops.maximum(size, self.epsilon)[:, None, None]
        return [(x - cx) / size, (y - cy) / size]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class SegmentCentre(keras.layers.Layer):
    """Each column minus its mean over the segment's frames: motion only.

    ``y = x - mean_t(x)`` for one segment ``x`` of shape (M, N) (batch axis
    omitted). Used on the keypoints (``keypoint_levels="drop"``): in the face
    frame their resting positions are mostly face shape, i.e. who the subject
    is, and 136 such columns let a model recognise every training subject; the
    AUs keep their levels, where resting expression (less smiling at rest) lives
    **[choice]**.

    Call args:
        inputs: (batch, M, N).

    Returns:
        (batch, M, N).
    """

    def call(self, inputs):
        return inputs - ops.mean(inputs, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="depressionmlp")
class SegmentEnergy(keras.layers.Layer):
    """Each column's motion about its segment mean, with its mean speed as level.

    ``y_t = (x_t - mean_t(x)) + mean_t |x_t - x_{t-1}|`` for one segment ``x`` of
    shape (M, N) (batch axis omitted). Used on the keypoints
    (``keypoint_levels="energy"``): the frame-by-frame motion of
    :class:`SegmentCentre` is kept for the blocks, and the resting position (face
    shape, i.e. identity) is replaced by how much the point moves, the level that
    :class:`SegmentSpeed` gives, so a cue confined to a few points is a
    per-column mean that one linear read-out finds **[choice]**. Under
    ``standardize="split"`` the two parts are standardised apart.

    With ``columns="odd"`` only the columns at odd (0-based) indices are read so
    and the others pass through unchanged: used on the AUs (``au_levels =
    "interleave"``). Eq. 3 widens P AU columns to N = 2P - 2 by putting each AU
    at an even index and the mean of two neighbours at the odd index between
    them, so the even columns keep every AU's resting level (static cues, e.g.
    less smiling at rest) and the interpolated ones, which repeat that
    information, carry how much the neighbouring AUs move instead (blinks,
    expressive variability) **[choice]**.

    Args:
        columns: ``"all"`` (default) or ``"odd"``.

    Call args:
        inputs: (batch, M, N), M >= 2.

    Returns:
        (batch, M, N).
    """

    COLUMNS = ("all", "odd")

    def __init__(self, columns: str = "all", **kwargs):
        super().__init__(**kwargs)
        if columns not in self.COLUMNS:
            raise ValueError(f"SegmentEnergy: columns must be one of {self.COLUMNS}, "
                             f"got {columns!r}.")
        self.columns = columns

    def call(self, inputs):
        speed = ops.mean(ops.abs(inputs[:, 1:] - inputs[:, :-1]), axis=1, keepdims=True)
        energy = inputs - ops.mean(inputs, axis=1, keepdims=True) + speed
        if self.columns == "all":
            return energy
        odd = ops.cast(ops.arange(ops.shape(inputs)[-1]) % 2 == 1, inputs.dtype)
        return inputs + odd * (energy - inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["columns"] = self.columns
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class ColumnGate(keras.layers.Layer):
    """A trained gain per column under an L1 penalty: the lasso's prior at the input.

    ``y = g * x`` with ``g`` (N,) initialised to 1 and ``l1 * sum_j |g_j|`` added to
    the training loss, so columns that do not pay for their penalty are shrunk
    towards 0 before any block sees them **[choice]**.

    Args:
        l1: the penalty per unit of gain (>= 0).

    Call args:
        inputs: (batch, M, N).

    Returns:
        (batch, M, N).
    """

    def __init__(self, l1: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not float(l1) >= 0:
            raise ValueError(f"ColumnGate: l1 must be >= 0, got {l1}.")
        self.l1 = float(l1)

    def build(self, input_shape):
        self.gain = self.add_weight(
            shape=(int(input_shape[-1]),), initializer="ones", name="gain",
            regularizer=keras.regularizers.L1(self.l1) if self.l1 else None)
        self.built = True

    def call(self, inputs):
        return inputs * self.gain

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["l1"] = self.l1
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class SegmentSpeed(keras.layers.Layer):
    """Each column's frame-to-frame speed: how much, not where, a point moves.

    ``y_t = |x_t - x_{t-1}|`` for t = 1..M-1 and ``y_0 = y_1``, for one segment
    ``x`` of shape (M, N) (batch axis omitted), so the shape is kept. Used on the
    keypoints (``keypoint_levels="speed"``). Like :class:`SegmentCentre` it drops
    the resting positions (face shape, i.e. identity), and it also turns motion
    energy, a sign-free second-order statistic of the positions, into the
    columns' level: a cue confined to a few points (brows that move less) becomes
    a per-column mean that one linear read-out finds, instead of a variance the
    blocks would have to compute from zero-mean positions **[choice]**.

    Call args:
        inputs: (batch, M, N), M >= 2.

    Returns:
        (batch, M, N).
    """

    def call(self, inputs):
        step = ops.abs(inputs[:, 1:] - inputs[:, :-1])
        return ops.concatenate([step[:, :1], step], axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class SavedNoiseState(keras.layers.Layer):
    """Base of the jitter layers: ``stddev`` (>= 0) and ``seed`` arguments, and a
    random stream whose position is saved with the weights (Keras saves a
    SeedGenerator's state with neither ``save_weights`` nor ``.keras``), so a resumed
    run draws the noise the killed run would have drawn."""

    SEED_KEY = "seed_state"

    def __init__(self, stddev: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not float(stddev) >= 0:
            raise ValueError(f"{type(self).__name__}: stddev must be >= 0, got {stddev}.")
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"stddev": self.stddev, "seed": self.seed})
        return config

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[self.SEED_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        for i, v in enumerate(self.weights):
            v.assign(store[f"{i}"])
        if self.SEED_KEY in store.keys():          # files saved before this was kept
            self.seed_generator.state.assign(store[self.SEED_KEY])


@keras.saving.register_keras_serializable(package="depressionmlp")
class ColumnJitter(SavedNoiseState):
    """Training-time offsets per sample and column, constant over the frames.

    ``y = x + e`` with ``e ~ N(0, stddev^2)`` of shape (batch, 1, N), broadcast over
    the M frames; identity at inference. On standardised inputs ``stddev`` is in
    units of each column's spread. With ``group = g > 1`` each run of g consecutive
    samples shares one offset: with the recording loss a batch holds each
    recording's draws together, so the whole group moves as one new face and the
    offsets do not average out over the draws the loss averages **[choice]**.

    Args:
        stddev: the offsets' standard deviation (>= 0; 0 is the identity).
        group: consecutive samples sharing one offset (>= 1).
        seed: optional int seed of the noise.

    Call args:
        inputs: (batch, M, N).
        training: bool.

    Returns:
        (batch, M, N).
    """

    def __init__(self, stddev: float = 0.0, group: int = 1, seed=None, **kwargs):
        super().__init__(stddev, seed, **kwargs)
        if int(group) != group or int(group) < 1:
            raise ValueError(f"ColumnJitter: group must be a positive integer, got {group}.")
        self.group = int(group)

    def get_config(self):
        config = super().get_config()
        config["group"] = self.group
        return config

    def group_noise(self, inputs):
        """``N(0, stddev^2)`` of shape (batch, 1, N), one draw per run of ``group`` samples."""
        batch = ops.shape(inputs)[0]
        groups = (batch + self.group - 1) // self.group
        noise = keras.random.normal((groups, 1, ops.shape(inputs)[2]), stddev=self.stddev,
                                    dtype=inputs.dtype, seed=self.seed_generator)
        if self.group > 1:
            noise = ops.repeat(noise, self.group, axis=0)[:batch]
        return noise

    def call(self, inputs, training=False):
        if not training or self.stddev == 0.0:
            return inputs
        return inputs + self.group_noise(inputs)


@keras.saving.register_keras_serializable(package="depressionmlp")
class MotionJitter(ColumnJitter):
    """Training-time gains on each column's motion, constant over the frames.

    For one segment ``x`` of shape (M, N) with frame mean ``m = mean_t(x)``:

        y = m + (x - m) * exp(e),   e ~ N(0, stddev^2) of shape (1, N)

    identity at inference. :class:`ColumnJitter` moves resting levels, but a
    subject is recognisable from motion too: how much each column moves (head-pose
    spread, tracker jitter, the face's own mobility) is a per-subject fingerprint
    in every column. Independent gains per column blur that fingerprint while a
    cue shared by many columns (a whole face moving less) survives their average
    **[choice]**. Arguments, call and shapes as :class:`ColumnJitter`, ``stddev``
    being the spread of the log-gains and ``group`` the run of samples (a
    recording's draws) sharing one gain.
    """

    def call(self, inputs, training=False):
        if not training or self.stddev == 0.0:
            return inputs
        level = ops.mean(inputs, axis=1, keepdims=True)
        return level + (inputs - level) * ops.exp(self.group_noise(inputs))


@keras.saving.register_keras_serializable(package="depressionmlp")
class SplitStandardize(keras.layers.Layer):
    """Standardise a segment's resting level and its motion separately.

    For one segment ``x`` of shape (M, N) (batch axis omitted), with its frame
    mean ``m = mean_t(x)`` of shape (1, N):

        y = (m - mu) / sigma_level  +  (x - m) / sigma_motion

    where, per column and from the training split (:meth:`adapt`), ``mu`` and
    ``sigma_level`` are the mean and spread of the segments' frame means and
    ``sigma_motion`` the pooled spread of the frames around their segment's
    mean. Plain per-column standardisation divides both parts by the total
    spread, which between-subject differences (face shape, AU baselines)
    dominate, so within-segment motion reaches the blocks 10-100x smaller than
    resting levels; here both arrive with unit spread **[choice]**. A column
    whose levels spread less than 1e-3 x its motion (one already centred per
    segment) keeps its motion part only.

    It is affine per segment and keeps the shape, so the model's equations and
    parameter count are unchanged.

    Args:
        epsilon: floor on the spreads (default 1e-6).

    Call args:
        inputs: (batch, M, N).

    Returns:
        (batch, M, N).
    """

    FLAT = 1e-3          # level spread below FLAT x motion spread: no level information
    NO_LEVEL = 1e30      # the level spread stored for such a column

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.level_mean = self.add_weight(shape=(n,), initializer="zeros",
                                          trainable=False, name="level_mean")
        self.level_std = self.add_weight(shape=(n,), initializer="ones",
                                         trainable=False, name="level_std")
        self.motion_std = self.add_weight(shape=(n,), initializer="ones",
                                          trainable=False, name="motion_std")
        self.built = True

    def adapt(self, data):
        """Set the statistics from ``data`` (S, M, N): the training segments."""
        data = np.asarray(data, dtype="float64")
        if data.ndim != 3 or data.shape[0] == 0:
            raise ValueError(f"{self.name}: adapt needs (segments, M, N) data, "
                             f"got shape {data.shape}.")
        if not self.built:
            self.build(data.shape)
        level = data.mean(axis=1)                                   # (S, N)
        motion = data - level[:, None, :]
        level_std = np.maximum(level.std(axis=0), self.epsilon)
        motion_std = np.maximum(np.sqrt((motion ** 2).mean(axis=(0, 1))), self.epsilon)
        # A column whose levels do not vary (already centred, e.g. keypoint_levels="drop")
        # holds only rounding error there: a huge spread sends its level part to 0
        # instead of amplifying that error to unit size.
        level_std = np.where(level_std < self.FLAT * motion_std, self.NO_LEVEL, level_std)
        self.level_mean.assign(level.mean(axis=0).astype("float32"))
        self.level_std.assign(level_std.astype("float32"))
        self.motion_std.assign(motion_std.astype("float32"))

    def call(self, inputs):
        level = ops.mean(inputs, axis=1, keepdims=True)
        return ((level - self.level_mean) / self.level_std
                + (inputs - level) / self.motion_std)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="depressionmlp")
class LevelJitter(SavedNoiseState):
    """Training-time offsets shaped like the differences between recordings.

    ``y = x + stddev * (z @ L^T)`` with ``z ~ N(0, I)`` of shape (batch, 1, N),
    broadcast over the M frames; identity at inference. ``L`` (N, N) is set by
    :meth:`adapt` so that ``L L^T`` is the covariance of the training segments'
    frame means (their resting levels): the offsets are as large, along every
    direction, as the level differences between segments. Isotropic
    :class:`ColumnJitter` leaves the few directions where whole-face identity
    lives (face shape, AU baselines: 10-100x the average column's variance)
    nearly untouched, so a model still recognises a training subject from its
    resting levels; here each direction's signal-to-noise ratio is ``1 /
    stddev``, the same for identity as for a real static cue **[choice]**.

    Args:
        stddev: scale of the offsets (>= 0; 0 is the identity).
        seed: optional int seed of the noise.

    Call args:
        inputs: (batch, M, N).
        training: bool.

    Returns:
        (batch, M, N).
    """

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.factor = self.add_weight(shape=(n, n), initializer="zeros", trainable=False,
                                      name="factor")
        self.built = True

    def adapt(self, data):
        """Set ``L`` from ``data`` (S, M, N): the (standardised) training segments."""
        data = np.asarray(data, dtype="float64")
        if data.ndim != 3 or data.shape[0] < 2:
            raise ValueError(f"{self.name}: adapt needs (segments >= 2, M, N) data, "
                             f"got shape {data.shape}.")
        if not self.built:
            self.build(data.shape)
        levels = data.mean(axis=1)
        vals, vecs = np.linalg.eigh(np.cov(levels, rowvar=False))
        self.factor.assign((vecs * np.sqrt(np.clip(vals, 0.0, None))).astype("float32"))

    def call(self, inputs, training=False):
        if not training or self.stddev == 0.0:
            return inputs
        z = keras.random.normal((ops.shape(inputs)[0], 1, ops.shape(inputs)[2]),
                                stddev=self.stddev, dtype=inputs.dtype,
                                seed=self.seed_generator)
        return inputs + ops.matmul(z, ops.transpose(self.factor))

