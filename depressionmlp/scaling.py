"""More than one device, and mixed precision, for both trainers (issue 12).

Distribution (``train.distribute`` / ``--distribute``) goes through ``tf.distribute``:

- ``"none"``: the default strategy, one device.
- ``"mirrored"``: :class:`tf.distribute.MirroredStrategy` over every GPU, or, with no
  GPU, over every logical CPU device (``--cpu-devices N`` splits the CPU into N, so
  the multi-replica path runs and is tested on a CPU machine).
- ``"multiworker"``: refused with a one-line message. Tried with two local workers
  (``TF_CONFIG`` with ``{"cluster": {"worker": ["localhost:23456", "localhost:23457"]},
  "task": {"type": "worker", "index": i}}``): the workers connect, then Keras 3's
  ``Model.fit`` fails converting the per-replica batch to a tensor, the upstream
  problem of keras-team/keras#20585 (tensorflow/tensorflow#72388; the TensorFlow
  multi-worker tutorial fails the same way). Several machines need a custom training
  loop, which this package does not have.
- ``"auto"`` (the default): ``"mirrored"`` where more than one GPU is visible, else
  ``"none"``.

The global batch stays the config's: Keras splits every batch of the training
pipeline across the replicas (batch 32 on 2 replicas: 16 each) and sums the
replicas' gradients of the loss scaled by 1 / replicas. Each replica's loss is
Eq. 21 over its share, so R replicas optimise the mean of R RMSEs, not the RMSE
of the whole batch: close, not bit-equal (the test states the tolerance).
Evaluation runs on one device over every segment once, as without distribution.

Precision (``train.precision`` / ``--precision``): a Keras dtype policy set while
the model is built, so every layer created then computes in it: ``"float32"``,
``"mixed_float16"`` (loss scaling added by ``compile``) or ``"mixed_bfloat16"``;
``"auto"``: mixed_float16 on a GPU of compute capability 7.0 or newer (bfloat16 on
8.0 or newer), float32 on CPU. The layers that must stay float32 (score heads,
BatchNorm) are built with ``dtype="float32"``; the losses cast to float32.
"""

from __future__ import annotations

import contextlib
import functools

from depressionmlp.errors import DataError

DISTRIBUTE = ("auto", "none", "mirrored", "multiworker")
MULTIWORKER_REFUSED = ("--distribute multiworker does not run: Keras 3's Model.fit fails "
                       "under MultiWorkerMirroredStrategy (keras-team/keras#20585); use "
                       "--distribute mirrored for the GPUs of one machine")
PRECISION = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def split_cpu(n: int) -> None:
    """Split the (first) physical CPU into ``n`` logical devices.

    Must run before TensorFlow executes any op; a DataError says so otherwise.
    """
    import tensorflow as tf
    if not isinstance(n, int) or n < 1:
        raise DataError(None, f"--cpu-devices must be a positive integer, got {n!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise DataError(None, f"--cpu-devices {n}: TensorFlow has already started with "
                                  f"{have} CPU device(s); split the CPU before any work "
                                  "(a fresh process)") from None


def gpu_count() -> int:
    import tensorflow as tf
    return len(tf.config.list_physical_devices("GPU"))


def check_options(train_cfg: dict, source=None) -> None:
    """A config's ``train.distribute`` and ``train.precision``: known values, and no
    multiworker (refused before a run directory exists)."""
    for key, allowed in (("distribute", DISTRIBUTE), ("precision", PRECISION)):
        if train_cfg[key] not in allowed:
            raise DataError(source, f"train.{key} must be one of {list(allowed)}, "
                                    f"got {train_cfg[key]!r}")
    if train_cfg["distribute"] == "multiworker":
        raise DataError(source, MULTIWORKER_REFUSED)


def resolve_distribute(name: str, source=None) -> str:
    if name not in DISTRIBUTE:
        raise DataError(source, f"train.distribute must be one of {list(DISTRIBUTE)}, "
                                f"got {name!r}")
    if name == "multiworker":
        raise DataError(source, MULTIWORKER_REFUSED)
    if name == "auto":
        return "mirrored" if gpu_count() > 1 else "none"
    return name


@functools.lru_cache(maxsize=None)
def make_strategy(name: str):
    """The ``tf.distribute`` strategy for a resolved ``name`` (see the module docstring).

    One per name and process: runs trained one after another in a process (make
    report, the learnability suite) share it, since a second MirroredStrategy's
    collective ops reuse the first one's instance keys and fail with a shape mismatch.
    """
    import tensorflow as tf
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if gpu_count():
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    raise ValueError(name)


def strategy_scope(name: str):
    """(strategy, scope): ``scope()`` gives a fresh context manager to build, compile
    or restore the model in (a ``strategy.scope()`` object cannot be entered twice)."""
    strategy = make_strategy(name)

    def scope():
        return contextlib.nullcontext() if name == "none" else strategy.scope()
    return strategy, scope


def resolve_jit(value) -> bool:
    """``train.jit_compile`` (true, false or "auto") as Keras takes it, always explicit
    (Keras' own "auto" leaves XLA off on a CPU): our "auto" is True where a GPU is
    visible."""
    if value == "auto":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(value)


def resolve_precision(name: str, source=None) -> str:
    if name not in PRECISION:
        raise DataError(source, f"train.precision must be one of {list(PRECISION)}, "
                                f"got {name!r}")
    if name != "auto":
        return name
    import tensorflow as tf
    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if cc:
            caps.append(tuple(cc))
    if not caps:
        return "float32"
    best = min(caps)
    if best >= (8, 0):
        return "mixed_bfloat16"
    if best >= (7, 0):
        return "mixed_float16"
    return "float32"


@contextlib.contextmanager
def precision_policy(name: str):
    """Build layers under dtype policy ``name``; the previous global policy comes back
    after (a layer keeps the policy it was built with)."""
    import keras
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def device_info() -> dict:
    """What a run or a benchmark ran on: devices by kind, GPU names and capabilities."""
    import tensorflow as tf
    info = {"cpu_logical_devices": len(tf.config.list_logical_devices("CPU")),
            "gpus": []}
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            d = tf.config.experimental.get_device_details(gpu)
        except Exception:                  # noqa: BLE001 - details are best effort
            d = {}
        info["gpus"].append({"name": d.get("device_name", gpu.name),
                             "compute_capability": list(d.get("compute_capability") or [])})
    return info
