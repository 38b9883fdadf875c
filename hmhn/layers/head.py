"""The regression head every HMHN ablation row ends in: features ``(B, C)`` -> BDI-II ``(B, 1)``.

The paper's head (Sec. 3.5, Sec. 4.2.1) is "dropout 0.2, then a linear layer to the
score"; the DAN code MAB/AFB come from adds ``BatchNorm1d(1)`` after it. Both train
badly as a regressor here (issue 9, measured on the synthetic faces):

* DAN's output BN fixes the within-batch spread of the predictions to its gamma in
  training mode. Started at the labels' spread, predictions with correlation
  ``rho < 0.5`` to the labels are worse than the mean predictor
  (RMSE ``sigma * sqrt(2 - 2 rho)``; the first epoch's dev RMSE was sqrt(2) x the mean
  predictor's).
* Dropout before that BN inflates its running variance, so inference-mode predictions
  are squashed (spread 2.4-3.4 against 8.2 in training mode).
* Rows A-C ended in GAP -> Dropout -> Dense without any normalisation, rows D-E with
  it: the rows differed by more than their named modules.

:class:`RegressionHead` (``variant="standardized"``, the default **[choice]**)::

    x (B, C) -> Norm(C, no scale/offset) -> Dropout(p) -> Dense(1) = z (B, 1)
             -> y = target_mean + target_std * z                      (B, 1), BDI-II

* the features are standardised before any dropout. ``feature_norm="layer"`` (default)
  standardises each sample over its C features (LayerNormalization): no batch
  statistics, so training and inference compute the same thing whatever the features'
  scale does during training -- rows D/E's fused heads have a scale in the thousands
  that keeps growing (Eq. 11 rewards variance across heads), and BatchNorm's moving
  averages lagged behind it (inference predictions off by several points after an
  epoch). ``feature_norm="batch"``: BatchNorm over the batch (moving statistics at
  inference); ``"none"``: no normalisation. Dropout never feeds a normalisation's
  statistics (it keeps the mean, and the linear layer after it the expected prediction);
* the network learns standardised targets ``z = (y - mean) / std``; the inverse is a
  fixed part of the layer (constructor arguments, saved with the model), so the saved
  model still predicts BDI-II scores;
* ``Dense`` starts with weights ``N(0, init_scale^2 / C)`` and bias 0: the prediction
  starts at the training-label mean with a spread of about ``init_scale`` standard
  deviations (0.1 by default).

The non-affine normalisation adds no trainable parameter (a Dense after it absorbs any scale and
offset), so the head counts ``C + 1`` parameters (513).

``variant="dan"``: Dropout -> Dense(1) -> BN(1) -> ``mean + std * z`` (DAN's head; with
the label mean/std it is the former default of starting beta at the mean and gamma at
the spread; 515 parameters). ``variant="linear"``: Dropout -> Dense(1) ->
``mean + std * z`` (the paper's text; no normalisation).
"""

from __future__ import annotations

import keras
from keras import ops

from hmhn.layers.resnet import BN_EPSILON, BN_MOMENTUM

HEAD_VARIANTS = ("standardized", "dan", "linear")
FEATURE_NORMS = ("layer", "batch", "none")


@keras.saving.register_keras_serializable(package="hmhn")
class RegressionHead(keras.layers.Layer):
    """Features ``(B, C)`` -> BDI-II score ``(B, 1)``; see the module docstring.

    Args:
        variant: ``"standardized"`` (default), ``"dan"`` or ``"linear"``.
        dropout: dropout rate before the Dense (0.2, Sec. 4.2.1).
        feature_norm: ``"standardized"`` only: ``"layer"`` (default), ``"batch"`` or
            ``"none"`` (see the module docstring).
        bn_momentum: Keras momentum of the head's BN (0.9 = PyTorch's 0.1).
        init_scale: the initial prediction spread in standard deviations of the labels
            (``"standardized"`` and ``"linear"``: Dense kernel ``N(0, init_scale^2 / C)``;
            ``"dan"`` keeps Keras' default Dense init, its BN sets the spread to 1).
        target_mean, target_std: the label mean and spread (BDI-II points) the output is
            mapped back with, ``y = target_mean + target_std * z``. The trainer sets them
            from the training videos' labels (``train.standardize_targets``); 0 / 1
            leave the output unscaled.
    """

    def __init__(self, variant: str = "standardized", dropout: float = 0.2,
                 feature_norm: str = "layer", bn_momentum: float = BN_MOMENTUM,
                 init_scale: float = 0.1, target_mean: float = 0.0, target_std: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        if variant not in HEAD_VARIANTS:
            raise ValueError(f"head variant must be one of {HEAD_VARIANTS}, got {variant!r}")
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, "
                             f"got {feature_norm!r}")
        self.feature_norm = feature_norm
        if not float(target_std) > 0:
            raise ValueError(f"target_std must be > 0, got {target_std}")
        self.variant, self.dropout_rate = variant, float(dropout)
        self.bn_momentum, self.init_scale = float(bn_momentum), float(init_scale)
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout",
                                            dtype=self.dtype_policy)
        self.norm = self.output_bn = None
        if variant == "standardized" and feature_norm == "batch":
            self.norm = keras.layers.BatchNormalization(dtype="float32", 
                momentum=self.bn_momentum, epsilon=BN_EPSILON, center=False, scale=False,
                name="feature_bn")
        elif variant == "standardized" and feature_norm == "layer":
            self.norm = keras.layers.LayerNormalization(
                epsilon=BN_EPSILON, center=False, scale=False, name="feature_ln")
        elif variant == "dan":
            self.output_bn = keras.layers.BatchNormalization(dtype="float32", 
                momentum=self.bn_momentum, epsilon=BN_EPSILON, name="bn")
        self.fc = None

    def build(self, input_shape):
        c = int(input_shape[-1])
        if self.variant == "dan":
            init = "glorot_uniform"
        else:
            init = keras.initializers.RandomNormal(stddev=self.init_scale / c ** 0.5)
        self.fc = keras.layers.Dense(1, kernel_initializer=init, name="fc",
                                     dtype=self.dtype_policy)
        if self.norm is not None:
            self.norm.build((None, c))
        self.fc.build((None, c))
        if self.output_bn is not None:
            self.output_bn.build((None, 1))
        self.built = True

    def standardized(self, x, training=None):
        """``z`` before the mapping back to BDI-II: ``(B, C) -> (B, 1)``."""
        if self.norm is not None:
            x = self.norm(x, training=training)
        z = self.fc(self.dropout(x, training=training))
        if self.output_bn is not None:
            z = self.output_bn(z, training=training)
        return z

    def call(self, x, training=None):
        return self.target_mean + self.target_std * self.standardized(x, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "variant": self.variant, "dropout": self.dropout_rate,
                "feature_norm": self.feature_norm, "bn_momentum": self.bn_momentum,
                "init_scale": self.init_scale,
                "target_mean": self.target_mean, "target_std": self.target_std}


@keras.saving.register_keras_serializable(package="hmhn")
class StandardizedMSE(keras.losses.Loss):
    """MSE in units of the label spread: ``mean((y - y_hat)^2) / std^2``.

    With it the partition loss (Eq. 11) weighs against the MSE of standardised scores
    rather than of BDI-II points (Eq. 10 as printed uses the latter).
    """

    def __init__(self, target_std: float = 1.0, name="standardized_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.target_std = float(target_std)

    def call(self, y_true, y_pred):
        d = (ops.cast(y_true, y_pred.dtype) - y_pred) / self.target_std
        return ops.mean(ops.square(d), axis=-1)

    def get_config(self):
        return {**super().get_config(), "target_std": self.target_std}
