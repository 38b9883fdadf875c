"""Helpers shared by the DepressionMLP layers: the per-sample transpose and the
check of a list of (batch, M, N) streams."""

from __future__ import annotations

from keras import ops


def transpose(x):
    """``X^T`` of every sample: ``(batch, a, b) -> (batch, b, a)``."""
    return ops.transpose(x, (0, 2, 1))


def check_streams(layer_name, input_shape, expected):
    """(M, N) of a list of ``expected`` (batch, M, N) shapes that share M and N."""
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != expected \
            or not all(isinstance(s, (list, tuple)) for s in input_shape):
        raise ValueError(
            f"{layer_name}: expects a list of {expected} tensors of shape "
            f"(batch, M, N), got input shape {input_shape}.")
    shapes = {tuple(s[-2:]) for s in input_shape}
    if len(shapes) != 1:
        raise ValueError(
            f"{layer_name}: all streams must share (M, N), got {sorted(shapes)}.")
    m, n = next(iter(shapes))
    if m is None or n is None:
        raise ValueError(f"{layer_name}: M and N must be static, got ({m}, {n}).")
    return int(m), int(n)
