"""The layers on a GPU through Keras 3's JAX backend (a probe outside the package).

The lent GPU machine has JAX with CUDA but no TensorFlow, and TensorFlow cannot be
carried to it (64 MiB a call; the TensorFlow 2.21 wheel alone is 573 MB). Every layer of both
packages is written in ``keras.ops`` alone, so the models themselves run on JAX; only
``train.py`` (tf.data, tf.function) needs TensorFlow. This probe therefore answers two
questions, not the speed of ``make`` on a GPU:

1. Do the layers compute the same function on another backend and device? Reference
   outputs are written here by TensorFlow on the CPU (``--reference DIR``), and the GPU
   run compares against them (``--check DIR``):
   - the default protocol's three DepressionMLP views, adapted and saved as ``.keras``
     here and loaded there with ``safe_mode=True`` (a real cross-backend round trip);
   - HMHN row E at 224 x 224, whose 19.7 M weights are too large to carry: both sides
     build it and set every weight from the same NumPy generator, in ``model.weights``
     order.
2. How fast are the models' training and inference steps on one GPU (``--bench``)?
   Keras's own ``fit`` / ``predict`` on arrays in memory, XLA-compiled (JAX always is),
   MSE loss: the step's arithmetic, without this package's tf.data pipeline, recording
   loss or evaluation schedule.

Usage:
    python docs/probes/gpu_keras_jax.py --reference .gpu          # here, TensorFlow, CPU
    KERAS_BACKEND=jax python docs/probes/gpu_keras_jax.py --check .gpu --bench --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# The default protocol's three views (experiments/protocols/default.toml), with the
# training-set score affine already resolved to numbers.
BASE = {"name": "DG+MG+Linear", "inputs": "all", "keypoint_frame": "face",
        "keypoint_levels": "energy", "standardize": "split", "column_jitter": 1.0,
        "column_jitter_group": 8, "score_scale": 10.0, "score_offset": 20.0,
        "output_activation": "linear"}
VIEWS = [dict(BASE),
         dict(BASE, au_levels="interleave", column_jitter={"R_X": 0.5, "R_Y": 0.5, "R_AU": 1.0}),
         dict(BASE, stream_blocks=False, head_hidden=16, au_levels="interleave")]
STREAMS = ("R_X", "R_Y", "R_AU")
HMHN_SIZE = 224


def segments(n: int, seed: int) -> dict:
    """n segments (18 frames x 68 columns per stream) shaped like OpenFace's: keypoints
    in pixels about a face, AU intensities 0-5."""
    rng = np.random.default_rng(seed)
    face = rng.uniform(200, 400, (n, 1, 1)) + rng.normal(0, 40, (n, 1, 68))
    return {"R_X": (face + rng.normal(0, 2, (n, 18, 68))).astype("float32"),
            "R_Y": (face + rng.normal(0, 2, (n, 18, 68))).astype("float32"),
            "R_AU": np.clip(rng.gamma(1.0, 0.8, (n, 18, 68)), 0, 5).astype("float32")}


def set_numpy_weights(model, seed: int) -> None:
    """Every weight from one NumPy generator, in ``model.weights`` order: variances and
    scales near 1, everything else small, so BatchNorm stays well conditioned."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        name = w.path.lower()
        if "variance" in name or "gamma" in name or "scale" in name:
            value = rng.uniform(0.8, 1.2, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.normal(0, 1 / np.sqrt(max(fan_in, 1)), shape) * (len(shape) > 1) \
                + rng.normal(0, 0.02, shape) * (len(shape) <= 1)
        w.assign(value.astype(w.dtype))


def build_hmhn():
    from hmhn.models import build_hmhn as build
    return build(row="E", input_size=HMHN_SIZE)


def hmhn_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, HMHN_SIZE, HMHN_SIZE, 3)).astype("float32")


def reference(out: Path) -> None:
    import keras
    from depressionmlp.models import adapt_inputs, build_from_config
    out.mkdir(parents=True, exist_ok=True)
    x_fit, x = segments(512, 0), segments(64, 1)
    ref = {}
    for v, cfg in enumerate(VIEWS):
        keras.utils.set_random_seed(v)
        model = build_from_config(cfg)
        adapt_inputs(model, x_fit)
        model.save(out / f"view{v}.keras")
        ref[f"view{v}"] = np.asarray(model(x, training=False))
    model = build_hmhn()
    set_numpy_weights(model, 0)
    ref["hmhn"] = np.asarray(model(hmhn_images(4, 2), training=False))
    np.savez(out / "inputs.npz", **x)
    np.savez(out / "reference.npz", **ref)
    print(f"{keras.backend.backend()}: wrote {sorted(ref)} to {out}")


def rel_err(a, b) -> float:
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def check(ref_dir: Path) -> dict:
    import keras
    import depressionmlp.models  # noqa: F401  (registers the layers for load_model)
    inputs = dict(np.load(ref_dir / "inputs.npz"))
    ref = dict(np.load(ref_dir / "reference.npz"))
    result = {}
    for v in range(len(VIEWS)):
        model = keras.saving.load_model(ref_dir / f"view{v}.keras", safe_mode=True)
        got = np.asarray(model(inputs, training=False))
        result[f"view{v}_rel_err"] = rel_err(got, ref[f"view{v}"])
    model = build_hmhn()
    set_numpy_weights(model, 0)
    got = np.asarray(model(hmhn_images(4, 2), training=False))
    result["hmhn_rel_err"] = rel_err(got, ref["hmhn"])
    result["hmhn_ref_norm"] = float(np.linalg.norm(ref["hmhn"]))
    return result


def _fit_rate(model, x, y, batch: int, steps: int, spe: int) -> float:
    """Training steps per second of ``fit`` on arrays of ``steps`` batches (one pass),
    after a compiling warm-up of ``spe`` steps."""
    assert len(y) == batch * steps, "arrays must hold every step: fit does not repeat them"
    model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=spe, verbose=0)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return steps / (time.perf_counter() - t0)


def bench(quick: bool = False) -> dict:
    import keras
    from depressionmlp.models import adapt_inputs, build_from_config
    result = {}
    for v in (0, 2):
        for batch in ((8,) if quick else (8, 32, 1024)):
            keras.utils.set_random_seed(0)
            model = build_from_config(VIEWS[v])
            steps = 25 if quick else 500 if batch < 1024 else 100
            x = segments(batch * steps, 3)       # one pass: fit on arrays does not repeat
            adapt_inputs(model, x)
            y = np.random.default_rng(4).uniform(0, 45, (batch * steps, 1)).astype("float32")
            model.compile(optimizer=keras.optimizers.Adam(2e-3, weight_decay=1e-4),
                          loss="mse", steps_per_execution=25)
            rate = _fit_rate(model, x, y, batch, steps, 25)
            result[f"dgmg_view{v}_train_steps_per_s_batch{batch}"] = round(rate, 1)
            result[f"dgmg_view{v}_train_segments_per_s_batch{batch}"] = round(rate * batch)
            print("view", v, "batch", batch, round(rate, 1), "steps/s", flush=True)
        n = 4096 if quick else 65536
        xi = segments(n, 5)
        model.predict(xi, batch_size=4096, verbose=0)
        t0 = time.perf_counter()
        model.predict(xi, batch_size=4096, verbose=0)
        result[f"dgmg_view{v}_infer_segments_per_s_batch4096"] = round(n / (time.perf_counter() - t0))
    for policy, batch in ([("float32", 2)] if quick else
                          [("float32", 8), ("float32", 64), ("mixed_bfloat16", 64)]):
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(0)
        model = build_hmhn()
        steps = 4 if quick else 20 if batch == 64 else 40
        x = hmhn_images(batch * steps, 6)
        y = np.random.default_rng(7).uniform(0, 45, (batch * steps, 1)).astype("float32")
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse", steps_per_execution=4)
        t0 = time.perf_counter()
        rate = _fit_rate(model, x, y, batch, steps, 4)
        result[f"hmhn_{policy}_train_images_per_s_batch{batch}"] = round(rate * batch, 1)
        result[f"hmhn_{policy}_batch{batch}_seconds_with_compile"] = round(time.perf_counter() - t0, 1)
        print(policy, batch, result[f"hmhn_{policy}_train_images_per_s_batch{batch}"], "images/s", flush=True)
        keras.config.set_dtype_policy("float32")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference", type=Path, help="write reference outputs here (TensorFlow)")
    p.add_argument("--check", type=Path, help="compare against the references in this folder")
    p.add_argument("--bench", action="store_true", help="time training and inference")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run on a CPU")
    p.add_argument("--out", type=Path, help="write the JSON here")
    args = p.parse_args()
    if args.reference:
        reference(args.reference)
        return 0
    import keras
    result = {"backend": keras.backend.backend(), "keras": keras.__version__}
    if keras.backend.backend() == "jax":
        import jax
        result["jax"] = jax.__version__
        result["devices"] = [str(d) for d in jax.devices()]
        result["device_kind"] = jax.devices()[0].device_kind
    if args.check:
        result.update(check(args.check))
        print(json.dumps(result, indent=1), flush=True)
    if args.bench:
        result.update(bench(args.quick))
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_keras_jax.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
