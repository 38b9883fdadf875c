"""Combining the scores of an ensemble's member models (``train.ensemble``)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="depressionmlp")
class WeightedMean(keras.layers.Layer):
    """Fixed convex combination of K scores: ``s = sum_k w_k s_k``.

    The weights are not trained by gradient descent: ``train.member_weights =
    "fit"`` fits them on the members' out-of-fold recording scores
    (:func:`depressionmlp.train.fit_view_weights`) and builds the saved model with
    them. Equal weights give ``keras.layers.Average``.

    Args:
        member_weights: K floats >= 0 summing to 1 (checked to 1e-6).

    Call args:
        inputs: a list of K tensors, (batch, 1) each.

    Returns:
        (batch, 1), the weighted mean.
    """

    def __init__(self, member_weights, **kwargs):
        super().__init__(**kwargs)
        w = [float(v) for v in member_weights]
        if len(w) < 2 or min(w) < 0 or abs(sum(w) - 1.0) > 1e-6:
            raise ValueError(f"WeightedMean: member_weights must be >= 2 numbers >= 0 summing "
                             f"to 1, got {w}.")
        self.member_weights = w

    def build(self, input_shape):
        if len(input_shape) != len(self.member_weights):
            raise ValueError(f"WeightedMean {self.name}: {len(self.member_weights)} weights "
                             f"for {len(input_shape)} inputs.")

    def call(self, inputs):
        return sum(w * ops.cast(x, self.compute_dtype)
                   for w, x in zip(self.member_weights, inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "member_weights": list(self.member_weights)}
