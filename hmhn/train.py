"""Training and video-level evaluation of HMHN and its ablations (Sec. 4.2).

Protocol (Sec. 4.2.1): AdamW, initial learning rate 1e-3, batch 64, dropout 0.2,
trained from scratch; "learning factor 0.1" read as **[choice]** ReduceLROnPlateau
with factor 0.1 on the selection metric (:class:`PlateauSchedule`, resumable). Loss (Eq. 10): MSE on the score plus the
partition loss (Eq. 11), which the model adds itself (:class:`hmhn.layers.PartitionLoss`).
A video's prediction is the mean of its frames' predictions; MAE and RMSE are per
video (Eq. 12-13). The model kept is the one with the lowest video-level RMSE on the
selection split (``data.select_split``, "dev" by default; empty = keep the last epoch,
the paper's AVEC 2014 protocol trains on train + dev).

A config is plain data (usually ``experiments/hmhn_*.toml``) merged over
:data:`DEFAULT_CONFIG`; ``quick`` (``--quick`` or ``QUICK=1``) merges the config's
``[quick]`` table on top (small input size etc., for CPU runs). A run writes::

    <out>/<name>-<stamp>/
        config.json      the resolved config (``evaluate`` rebuilds from it)
        best.keras       the best model on the selection split (written atomically)
        history.json     per-epoch loss, learning rate, dev metrics
        metrics.json     video-level metrics of the best model per split (+ mean predictor)
        predictions_<split>.csv   per-video true / predicted scores
        tb/              TensorBoard logs (tb/epochs.csv without the tensorboard package)
        backup/          while training: the last committed epoch's weights, optimizer
                         state and random streams (a killed run resumes exactly with
                         ``--resume``); removed when the run finishes
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from depressionmlp import metrics
from depressionmlp.errors import DataError
from depressionmlp.runs import (check_numbers, check_resumable, clean_temporaries,
                                committed_backup,
                                deep_update, load_keras_file, new_run_dir, run_files,
                                save_model_atomic, write_json_atomic, write_text_atomic)
from hmhn.models import DEFAULTS as MODEL_DEFAULTS
from hmhn.models import build_from_config, count_params

DEFAULT_CONFIG = {
    "name": "hmhn",
    "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in MODEL_DEFAULTS.items()},
    "data": {
        "corpus": "avec2013",
        "data_root": "",             # "" = $DATA_ROOT or data/
        "frames_per_video": 16,      # [choice] frames per video, spread evenly (design page)
        "train_splits": ["train"],
        # "auto": "dev" where the training split excludes it; "" (keep the last epoch) for
        # avec2014, whose "train" is train + dev of both tasks (the paper's protocol).
        "select_split": "auto",
        "eval_splits": "auto",       # "auto": [select split, "test"]; or a list of splits
        "cache_dir": "",             # "" = the data loader's default
    },
    "train": {
        "epochs": 50,
        "steps_per_epoch": 0,        # 0 = one pass over the training frames per epoch
        "batch_size": 64,
        "learning_rate": 1e-3,       # at lr_reference_batch (Sec. 4.2.1: 1e-3 at batch 64)
        # [choice] the rate follows the batch: the optimizer runs at learning_rate *
        # sqrt(batch_size / lr_reference_batch) (lr_scaling "sqrt"), so the paper's 1e-3 at
        # batch 64 becomes 5e-4 at the --quick batch of 16; 0 = learning_rate as given.
        # Measured (docs/hmhn.md, "HMHN under its default protocol"): at batch 16, 1e-3
        # left the training loss at the labels' variance on one corpus in three; 2.5e-4
        # (the linear rule) learned more slowly than 5e-4 with the cosine schedule of
        # [quick].
        "lr_reference_batch": 64,
        # "sqrt" (the square-root rule, often used with Adam) or "linear" (x batch / reference)
        "lr_scaling": "sqrt",
        "weight_decay": 0.01,        # [choice] AdamW's PyTorch default (paper: not given)
        # [choice] "plateau": ReduceLROnPlateau on the selection metric (the paper's
        # "learning factor 0.1"); "cosine": from the rate down to 0 over the whole budget
        # (epochs x steps per epoch), no plateau. [quick] runs "cosine": in its 16 epochs a
        # plateau of patience 10 never anneals the rate
        "lr_schedule": "plateau",
        # with "cosine": the rate rises linearly from 0 over this many first steps, then
        # the cosine runs over the rest of the budget. 0 = no warm-up (the paper)
        "lr_warmup_steps": 0,
        "plateau_factor": 0.1,       # "learning factor 0.1"
        "plateau_patience": 10,      # [choice] PyTorch ReduceLROnPlateau's default
        "min_lr": 0.0,
        # [choice] 0 = off (the paper); else AdamW keeps an exponential moving average of
        # the weights (Keras' use_ema, this momentum) and each evaluation, the selection
        # and the saved model use the averaged weights; training goes on from the raw ones
        "ema_momentum": 0.0,
        "seed": 0,
        "jit_compile": "auto",       # "auto": True on a GPU, False on CPU; or true/false
        # Keras's run_eagerly: every step op by op, no tf.function (debugging: breakpoints
        # and prints inside layers). Slower per step, but no graph to trace: a tiny run
        # starts about 3x sooner. Overrides jit_compile.
        "run_eagerly": False,
        "max_minutes": 0,            # 0 = no wall-clock budget
        "patience": 0,               # 0 = no early stopping on the selection metric
        "augment_flip": True,        # [choice] random horizontal flips (paper: silent)
        # [choice] on (paper: silent). Per image: random channel order, per-channel gain
        # 0.7..1.3, brightness +-20: colours stop identifying subjects (color_jitter).
        # Measured (docs/hmhn.md, "HMHN on synthetic faces"): the default protocol at 64 px, 10
        # epochs, reached dev / test 0.58 / 0.70 x the mean predictor with it and 0.80 /
        # 0.92 without (the training loss fell, the dev RMSE did not: memorised subjects).
        "augment_color": True,
        # [choice] DAN's geometric and erasing augmentation (paper: silent; DAN's training
        # transforms, which HMHN's heads come from): with this probability per image, a
        # rotation in +-20 degrees and a shift of up to 1/7 of the size (DAN: p = 0.2) ...
        "augment_affine": 0.0,
        # ... and random erasing of 2-25 % of the image (DAN: p = 0.5). 0 = off.
        "augment_erase": 0.0,
        # [choice] the head learns z = (y - mean) / std of the training videos' labels and
        # maps back inside the model (RegressionHead target_mean / target_std): it starts
        # at the label mean and still predicts BDI-II. False: mean 0, std 1 (raw scores).
        "standardize_targets": True,
        # Eq. 10's L_mse in "bdi" points (default, as printed) or in "standardized" units
        # (MSE / std^2), which weighs the partition loss (Eq. 11) against standardised scores.
        "loss_units": "bdi",
        # Same config + seed -> same metrics: tf op determinism on, stateless random
        # augmentation (oneDNN may stay on: see README "HMHN determinism").
        "deterministic": True,
        "eval_batch_size": 64,
        # [choice] "precise BN": before each evaluation, re-estimate every BatchNorm's
        # moving statistics from this many training batches (equal weights, current
        # weights, dropout off); 0 = keep the running averages of training (the paper).
        "bn_recalibration_batches": 0,
        # devices and precision (depressionmlp/scaling.py): "auto" = mirrored where more
        # than one GPU is visible, else none; mixed precision where a GPU supports it
        "distribute": "auto",        # "auto" | "none" | "mirrored" | "multiworker"
        "precision": "auto",         # "auto" | "float32" | "mixed_float16" | "mixed_bfloat16"
        "verbose": 1,
    },
    "quick": {                       # merged on top with --quick / QUICK=1
        "model": {"input_size": 64},
        "data": {"frames_per_video": 4},
        "train": {"epochs": 16, "batch_size": 16, "lr_schedule": "cosine"},
    },
}


# --------------------------------------------------------------------------- config

def quick_requested(flag: bool = False) -> bool:
    return bool(flag) or os.environ.get("QUICK", "").strip().lower() in ("1", "true", "yes")


def resolve_config(config: dict, source="config", quick: bool = False) -> dict:
    """Merge ``config`` over the defaults (then its ``quick`` table if asked) and check it."""
    _check_keys({k: v for k, v in config.items() if k != "quick"}, DEFAULT_CONFIG, source)
    if isinstance(config.get("quick"), dict):       # any model / data / train key may go there
        _check_keys(config["quick"], {k: DEFAULT_CONFIG[k] for k in ("model", "data", "train")},
                    source, "quick.")
    cfg = deep_update(copy.deepcopy(DEFAULT_CONFIG), config)
    if quick:
        q = cfg.pop("quick")
        _check_keys(q, {k: DEFAULT_CONFIG[k] for k in ("model", "data", "train")}, source,
                    "quick.")
        cfg = deep_update(cfg, q)
        cfg["quick"] = q
    cfg["quick_mode"] = bool(quick)
    t, d = cfg["train"], cfg["data"]
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise DataError(source, f"train.{key} must be a positive integer, got {t[key]!r}")
    check_numbers(t, ("learning_rate", "weight_decay", "plateau_factor", "plateau_patience",
                      "min_lr", "seed", "max_minutes", "patience"), source, "train.",
                  positive=("learning_rate", "plateau_factor"))
    for key in ("augment_affine", "augment_erase"):
        v = t[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
            raise DataError(source, f"train.{key} must be a probability in [0, 1], got {v!r}")
    ema = t["ema_momentum"]
    if (not isinstance(ema, (int, float)) or isinstance(ema, bool)
            or not 0.0 <= float(ema) < 1.0):
        raise DataError(source, f"train.ema_momentum must be a number in [0, 1), got {ema!r}")
    ref = t["lr_reference_batch"]
    if not isinstance(ref, int) or isinstance(ref, bool) or ref < 0:
        raise DataError(source, "train.lr_reference_batch must be an integer >= 0 "
                                "(0 = no scaling)")
    if not isinstance(t["steps_per_epoch"], int) or t["steps_per_epoch"] < 0:
        raise DataError(source, "train.steps_per_epoch must be an integer >= 0")
    n_recal = t["bn_recalibration_batches"]
    if not isinstance(n_recal, int) or isinstance(n_recal, bool) or n_recal < 0:
        raise DataError(source, "train.bn_recalibration_batches must be an integer >= 0")
    if not isinstance(d["frames_per_video"], int) or d["frames_per_video"] < 1:
        raise DataError(source, "data.frames_per_video must be a positive integer")
    if t["lr_scaling"] not in ("linear", "sqrt"):
        raise DataError(source, 'train.lr_scaling must be "linear" or "sqrt"')
    if t["lr_schedule"] not in ("plateau", "cosine"):
        raise DataError(source, 'train.lr_schedule must be "plateau" or "cosine"')
    w = t["lr_warmup_steps"]
    if not isinstance(w, int) or isinstance(w, bool) or w < 0:
        raise DataError(source, "train.lr_warmup_steps must be an integer >= 0")
    if w and t["lr_schedule"] != "cosine":
        raise DataError(source, 'train.lr_warmup_steps needs train.lr_schedule = "cosine"')
    if t["loss_units"] not in ("bdi", "standardized"):
        raise DataError(source, 'train.loss_units must be "bdi" or "standardized"')
    if t["jit_compile"] not in ("auto", True, False):
        raise DataError(source, "train.jit_compile must be true, false or \"auto\"")
    if not isinstance(t["run_eagerly"], bool):
        raise DataError(source, "train.run_eagerly must be true or false")
    from depressionmlp.scaling import check_options
    check_options(t, source)
    if not d["train_splits"]:
        raise DataError(source, "data.train_splits must name at least one split")
    if d["select_split"] == "auto":
        d["select_split"] = "" if d["corpus"] == "avec2014" else "dev"
    if d["eval_splits"] == "auto":
        d["eval_splits"] = ([d["select_split"]] if d["select_split"] else []) + ["test"]
    if isinstance(d["eval_splits"], str) or not d["eval_splits"]:
        raise DataError(source, "data.eval_splits must be \"auto\" or a list of splits")
    try:
        from hmhn.models import ROWS
        from hmhn.layers import parse_grid, parse_kernels
        if str(cfg["model"]["row"]).upper() not in ROWS:
            raise ValueError(f"model.row must be one of {sorted(ROWS)}")
        parse_grid(cfg["model"]["grid"])
        parse_kernels(cfg["model"]["kernels"])
    except ValueError as e:
        raise DataError(source, f"bad model config: {e}") from None
    return cfg


def _check_keys(config, defaults, source, prefix=""):
    for k, v in config.items():
        if k not in defaults:
            raise DataError(source, f"unknown config key '{prefix}{k}'; "
                                    f"known: {', '.join(sorted(defaults))}")
        if isinstance(defaults[k], dict) and not isinstance(v, dict):
            raise DataError(source, f"config key '{prefix}{k}' must be a table "
                                    f"([{prefix}{k}]), got {v!r}")
        if isinstance(v, dict) and isinstance(defaults[k], dict):
            _check_keys(v, defaults[k], source, f"{prefix}{k}.")


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({len(gpus)})" if gpus else "CPU"


# --------------------------------------------------------------------------- data

class FrameSet:
    """Frames of some videos as arrays: ``x`` (N, S, S, 3) uint8, ``y`` (N,), ``video`` (N,)."""

    def __init__(self, videos):
        if not videos:
            raise ValueError("no videos")
        self.videos = list(videos)
        self.x = np.concatenate([np.asarray(v.frames, dtype=np.uint8) for v in self.videos])
        self.y = np.concatenate([np.full(len(v.frames), float(v.label), np.float32)
                                 for v in self.videos])
        self.video = np.concatenate([np.full(len(v.frames), str(v.video_id), dtype=object)
                                     for v in self.videos])
        self.subject = {str(v.video_id): str(v.subject_id) for v in self.videos}
        self.video_labels = np.array([float(v.label) for v in self.videos], dtype=np.float64)

    def __len__(self):
        return len(self.y)


def load_splits(cfg: dict, splits) -> dict:
    """``{split: FrameSet}`` via :func:`hmhn.data.load_faces` at the model's input size."""
    from hmhn.data import load_faces
    d = cfg["data"]
    size = int(cfg["model"]["input_size"])
    out = {}
    for split in dict.fromkeys(splits):
        videos = load_faces(d["corpus"], data_root=d["data_root"] or None, split=split,
                            frames_per_video=d["frames_per_video"], size=size,
                            cache_dir=d["cache_dir"] or None)
        videos = [v for v in videos if len(v.frames)]
        if not videos:
            raise DataError(d["data_root"] or os.environ.get("DATA_ROOT", "data"),
                            f"corpus '{d['corpus']}' has no face frames in split '{split}'")
        out[split] = FrameSet(videos)
    return out


def merge_frame_sets(sets) -> FrameSet:
    return FrameSet([v for s in sets for v in s.videos])


def _stateless_seed(seed):
    """An int or a shape-(2,) tensor -> a shape-(2,) int32 seed for ``tf.random.stateless_*``."""
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    return tf.cast(seed, tf.int32)


def color_jitter(x, seed):
    """Per image of ``x`` (B, H, W, 3) float32 in 0..255: a random channel order, a gain
    in U(0.7, 1.3) per channel and a brightness shift in U(-20, 20), clipped to 0..255.

    ``seed``: an int or a shape-(2,) seed; the draws are stateless (the same seed gives
    the same jitter, whatever the order tf.data runs its batches in).

    On a small corpus a from-scratch network first fits the subjects' colours (skin,
    hair, clothes, background), which correlate with the labels of a few hundred
    training subjects by chance and with the test labels not at all; jittered colours
    leave it the shapes.
    """
    b = tf.shape(x)[0]
    seed = _stateless_seed(seed)
    seeds = [seed + tf.constant([0, k], tf.int32) for k in (1, 2, 3)]   # apart from flips
    order = tf.argsort(tf.random.stateless_uniform((b, 3), seed=seeds[0]), axis=-1)
    x = tf.gather(x, order, axis=3, batch_dims=1)
    gain = tf.random.stateless_uniform((b, 1, 1, 3), seeds[1], 0.7, 1.3)
    shift = tf.random.stateless_uniform((b, 1, 1, 1), seeds[2], -20.0, 20.0)
    return tf.clip_by_value(x * gain + shift, 0.0, 255.0)


def random_affine(x, seed, p: float, degrees: float = 20.0, pad_frac: float = 1.0 / 7.0):
    """DAN's ``RandomApply([RandomRotation(20), RandomCrop(S, padding=32)], p=0.2)`` per image.

    With probability ``p`` an image ``(H, W, 3)`` of ``x`` (B, H, W, 3) is rotated by
    U(-degrees, degrees) about its centre, then shifted by a whole number of pixels drawn
    uniformly from ``-round(pad_frac * H) .. round(pad_frac * H)`` on each axis (a crop of
    the zero-padded image: 32 px at 224, 9 px at 64); uncovered pixels are black, as
    torchvision fills them. Bilinear interpolation; stateless draws from ``seed``.
    """
    b = tf.shape(x)[0]
    h, w = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
    seed = _stateless_seed(seed)
    s = [seed + tf.constant([0, k], tf.int32) for k in (11, 12, 13, 14)]
    apply = tf.random.stateless_uniform((b,), s[0]) < p
    angle = tf.random.stateless_uniform((b,), s[1], -degrees, degrees) * (math.pi / 180.0)
    pad = tf.round(pad_frac * h)
    shift = tf.floor(tf.random.stateless_uniform((b, 2), s[2], 0.0, 1.0) * (2 * pad + 1)) - pad
    angle = tf.where(apply, angle, 0.0)
    shift = tf.where(apply[:, None], shift, 0.0)
    # inverse map: output (x, y) reads the input at R(-angle) (x - c - t) + c
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    ox, oy = cx + shift[:, 0], cy + shift[:, 1]
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx - a0 * ox - a1 * oy
    b2 = cy - b0 * ox - b1 * oy
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


def random_erasing(x, seed, p: float, scale=(0.02, 0.25), ratio=(0.3, 3.3), fill=None):
    """DAN's ``RandomErasing(scale=(0.02, 0.25))`` per image (Zhong et al., 2020).

    With probability ``p`` one rectangle of area U(scale) x H x W and aspect ratio
    log-uniform in ``ratio`` is set to ``fill`` (RGB in 0..255; default the ImageNet mean
    pixel, which is 0 after DAN's normalisation, where torchvision erases). One draw per
    image: a rectangle that does not fit is not erased (torchvision tries 10 times).
    """
    b = tf.shape(x)[0]
    hi, wi = tf.shape(x)[1], tf.shape(x)[2]
    h, w = tf.cast(hi, tf.float32), tf.cast(wi, tf.float32)
    seed = _stateless_seed(seed)
    s = [seed + tf.constant([0, k], tf.int32) for k in (21, 22, 23, 24, 25)]
    area = tf.random.stateless_uniform((b,), s[0], scale[0], scale[1]) * h * w
    log_r = tf.random.stateless_uniform((b,), s[1], math.log(ratio[0]), math.log(ratio[1]))
    eh = tf.round(tf.sqrt(area * tf.exp(log_r)))
    ew = tf.round(tf.sqrt(area / tf.exp(log_r)))
    ok = (tf.random.stateless_uniform((b,), s[2]) < p) & (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    top = tf.floor(tf.random.stateless_uniform((b,), s[3]) * (h - eh + 1))
    left = tf.floor(tf.random.stateless_uniform((b,), s[4]) * (w - ew + 1))
    rows = tf.range(h)[None, :]
    cols = tf.range(w)[None, :]
    in_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])           # (B, H)
    in_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])         # (B, W)
    mask = in_r[:, :, None] & in_c[:, None, :] & ok[:, None, None]          # (B, H, W)
    if fill is None:
        from hmhn.models import IMAGENET_MEAN
        fill = [255.0 * m for m in IMAGENET_MEAN]
    fill = tf.constant(fill, tf.float32)
    return tf.where(mask[..., None], fill, x)


def train_dataset(fs: FrameSet, batch_size: int, seed: int, flip: bool,
                  color: bool = False, skip_batches: int = 0, affine: float = 0.0,
                  erase: float = 0.0) -> tf.data.Dataset:
    """Shuffled float32 batches; full batches only (BatchNorm needs > 1 sample).
    ``flip``: random horizontal flips; ``color``: :func:`color_jitter`; ``affine``: the
    probability of :func:`random_affine`; ``erase``: of :func:`random_erasing` (in
    DAN's order: flip, affine, colour, erasing).

    Deterministic for a given ``seed``: a seeded shuffle (reshuffled each pass), and
    each batch's augmentation draws from a stateless seed taken from a seeded
    ``Dataset.random`` stream zipped with the batches (stateful random ops inside a
    parallel ``map`` would depend on the thread schedule)."""
    batch = min(batch_size, len(fs))
    ds = tf.data.Dataset.from_tensor_slices((fs.x, fs.y.reshape(-1, 1)))
    ds = ds.shuffle(len(fs), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch, drop_remainder=True)
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, keys)).repeat()     # passes reshuffled, endless
    if skip_batches:
        ds = ds.skip(skip_batches)                     # before decoding: cheap

    def prep(xy, key):
        x, y = xy
        x = tf.cast(x, tf.float32)
        key = tf.stack([tf.cast(key % 2147483647, tf.int32), tf.constant(seed, tf.int32)])
        if flip:
            mask = tf.random.stateless_uniform((tf.shape(x)[0], 1, 1, 1), seed=key) < 0.5
            x = tf.where(mask, tf.reverse(x, axis=[2]), x)
        if affine > 0:
            x = random_affine(x, key, affine)
        if color:
            x = color_jitter(x, key)
        if erase > 0:
            x = random_erasing(x, key, erase)
        return x, y

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def predict_frames(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size).map(
        lambda v: tf.cast(v, tf.float32))
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64).reshape(-1)


def evaluate_frames(model: keras.Model, fs: FrameSet, batch_size: int = 64,
                    train_labels=None) -> tuple[dict, list[dict]]:
    """Video-level metrics (mean of frame predictions per video) and per-video rows."""
    pred = predict_frames(model, fs.x, batch_size)
    vid, vpred, vtrue = metrics.aggregate_by_recording(fs.video, pred, fs.y)
    res = metrics.regression_metrics(vtrue, vpred)
    res["frame_rmse"] = metrics.rmse(fs.y, pred)
    res["frames"] = int(len(fs))
    if train_labels is not None:
        res["mean_predictor"] = metrics.mean_predictor_metrics(train_labels, vtrue)
    rows = [{"recording_id": str(v), "subject_id": fs.subject.get(str(v), ""), "true": float(t),
             "predicted": float(p)} for v, p, t in zip(vid, vpred, vtrue)]
    return res, rows


def recalibrate_batchnorm(model: keras.Model, model_cfg: dict, fs: FrameSet, n_batches: int,
                          batch_size: int = 64, seed: int = 0) -> int:
    """Precise BN: re-estimate the moving statistics of every BatchNormalization layer.

    Runs ``n_batches`` batches of training frames (a seeded sample, no augmentation)
    in training mode through a copy of ``model`` built from ``model_cfg`` with
    ``bn_momentum=0`` (each BN's moving statistics become those of the batch just seen)
    and ``dropout=0`` (what inference sees), with ``model``'s current weights; each BN's
    moving mean / variance in ``model`` is then set to the equal-weight average over the
    batches (not the exponential average over weights that changed from step to step).
    Trainable weights are untouched. Returns the number of frames used.

    Off by default (``train.bn_recalibration_batches = 0``): with the standardised
    head the running averages serve. Only public Keras API: the copy is built from
    the config, weights are paired by their order in ``model.weights``.
    """
    if n_batches < 1:
        return 0
    from hmhn.models import build_from_config
    probe = build_from_config({**model_cfg, "bn_momentum": 0.0, "dropout": 0.0})
    if len(probe.weights) != len(model.weights):
        raise ValueError("model_cfg does not describe this model")
    probe.set_weights(model.get_weights())
    idx = [i for i, w in enumerate(probe.weights)
           if w.name in ("moving_mean", "moving_variance")]
    if not idx:
        return 0
    bs = max(2, min(batch_size, len(fs)))
    order = np.random.default_rng(seed).permutation(len(fs))
    n_batches = min(n_batches, len(fs) // bs)
    sums = [np.zeros(tuple(probe.weights[i].shape), np.float64) for i in idx]
    for k in range(n_batches):
        xb = tf.convert_to_tensor(fs.x[order[k * bs:(k + 1) * bs]], dtype=tf.float32)
        probe(xb, training=True)
        for s, i in zip(sums, idx):
            s += np.asarray(probe.weights[i].numpy(), np.float64)
    for s, i in zip(sums, idx):
        model.weights[i].assign((s / n_batches).astype(np.float32))
    del probe
    return n_batches * bs


def write_predictions_csv(path, rows) -> None:
    lines = ["recording_id,subject_id,true,predicted"] + [
        f"{r['recording_id']},{r['subject_id']},{r['true']:.4f},{r['predicted']:.4f}" for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- model io

def load_model_file(path) -> keras.Model:
    """Load a ``.keras`` HMHN model with ``safe_mode=True``; a bad file is a DataError."""
    import hmhn.layers  # noqa: F401  (registers the custom layers)
    return load_keras_file(path)


def load_run(model_path) -> tuple[keras.Model, dict]:
    """A run directory, or a ``.keras`` file beside its ``config.json``."""
    model_file, cfg = run_files(model_path, "python -m hmhn train")
    return load_model_file(model_file), cfg


def target_statistics(labels) -> tuple[float, float]:
    """Mean and spread (population std) of the training videos' labels; a spread of 0
    (one distinct label) becomes 1."""
    labels = np.asarray(labels, dtype=np.float64)
    std = float(np.std(labels))
    return float(np.mean(labels)), (std if std > 1e-6 else 1.0)


# --------------------------------------------------------------------------- selection

class PlateauSchedule:
    """"Learning factor 0.1" as Keras' ReduceLROnPlateau (mode "min", ``min_delta``
    1e-4, no cooldown): after ``patience`` epochs without improvement of the
    monitored value the optimizer's learning rate is multiplied by ``factor`` (not
    below ``min_lr``).

    A plain object, not a callback: :class:`VideoLevelSelection` calls
    :meth:`update` after each evaluation and commits :attr:`state` with the run's
    state, so a resumed run continues the same schedule.
    """

    def __init__(self, factor=0.1, patience=10, min_lr=0.0, min_delta=1e-4):
        self.factor, self.patience = float(factor), int(patience)
        self.min_lr, self.min_delta = float(min_lr), float(min_delta)
        self.best, self.wait = math.inf, 0

    @property
    def state(self) -> dict:
        return {"best": None if math.isinf(self.best) else self.best, "wait": self.wait}

    def load_state(self, state: dict) -> None:
        self.best = math.inf if state.get("best") is None else float(state["best"])
        self.wait = int(state.get("wait", 0))

    def update(self, optimizer, value: float) -> float:
        """One epoch's monitored ``value``; returns the learning rate now in force."""
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        if value < self.best - self.min_delta:
            self.best, self.wait = float(value), 0
        else:
            self.wait += 1
            if self.wait >= self.patience and lr > np.float32(self.min_lr):
                lr = max(lr * self.factor, self.min_lr)
                optimizer.learning_rate = lr
                self.wait = 0
        return lr


class VideoLevelSelection(keras.callbacks.Callback):
    """After each epoch: video-level metrics on the selection split; keep the best
    model; step the learning-rate plateau; commit the run's state.

    Adds ``dev_rmse`` / ``dev_mae`` and ``learning_rate`` to the epoch logs (so
    TensorBoard and ``history.json`` see them); saves ``best.keras`` atomically when
    the dev RMSE improves (every epoch when there is no selection split); then writes
    the weights, the optimizer state and every random stream's position
    (:func:`save_training_state`) to a new ``backup/epoch-<n>.weights.h5`` and only
    then ``selection.json`` (the commit point: a kill anywhere leaves a consistent
    pair, and a resumed run is exact); stops on ``patience`` epochs without
    improvement or on the wall-clock budget. With ``recalibrate=(model_cfg,
    train_frames, n_batches)`` the BatchNorm statistics are first re-estimated
    (:func:`recalibrate_batchnorm`), so the evaluated and the saved model carry them.
    """

    STATE = "selection.json"

    def __init__(self, dev: FrameSet | None, run_dir, batch_size=64, patience=0,
                 max_minutes=0, recalibrate=None, seed=0, plateau=None):
        super().__init__()
        self.dev, self.run_dir, self.batch_size = dev, Path(run_dir), batch_size
        self.patience, self.max_minutes = patience, max_minutes
        self.recalibrate, self.seed = recalibrate, seed
        self.plateau = plateau
        self.best, self.best_epoch, self.history, self.t0 = math.inf, -1, [], None
        self.elapsed_before, self.backup = 0.0, None
        state = self.run_dir / self.STATE
        if state.exists():                     # resumed run: the committed state
            try:
                s = json.loads(state.read_text())
                self.best = math.inf if s["best"] is None else float(s["best"])
                self.best_epoch, self.history = int(s["best_epoch"]), list(s["history"])
                self.elapsed_before, self.backup = float(s.get("seconds", 0.0)), s.get("backup")
                if self.plateau is not None and s.get("plateau"):
                    self.plateau.load_state(s["plateau"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError(state, "not a readable run state; start a new run") from None

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def train_seconds(self) -> float:
        return self.elapsed_before + (time.time() - self.t0 if self.t0 else 0.0)

    def restore(self, model) -> None:
        """Load the committed backup into ``model`` (nothing for a fresh run)."""
        if not self.history:
            return
        path = committed_backup(self.run_dir, self.backup, self.STATE)
        load_training_state(model, path)

    def on_train_begin(self, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        entry = {"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)), "lr": lr,
                 "seconds": round(time.time() - self.t0, 2)}
        raw = None
        if uses_ema(self.model.optimizer):         # train.ema_momentum > 0
            raw = self.model.get_weights()
            self.model.optimizer.finalize_variable_values(self.model.trainable_variables)
        if self.recalibrate is not None and self.recalibrate[2] > 0:
            model_cfg, frames, n = self.recalibrate
            recalibrate_batchnorm(self.model, model_cfg, frames, n, self.batch_size,
                                  seed=self.seed + epoch)
        if self.dev is not None:
            res, _ = evaluate_frames(self.model, self.dev, self.batch_size)
            logs["dev_rmse"], logs["dev_mae"] = res["rmse"], res["mae"]
            entry.update(dev_rmse=res["rmse"], dev_mae=res["mae"])
            improved = res["rmse"] < self.best
            score = res["rmse"]
        else:
            score = float(logs.get("loss", np.nan))
            improved = True
        if self.plateau is not None:
            logs["learning_rate"] = self.plateau.update(self.model.optimizer, score)
        if improved:
            self.best, self.best_epoch = score, epoch
            save_model_atomic(self.model, self.run_dir / "best.keras")
        if raw is not None:             # training (and the backup) go on from the raw
            self.model.set_weights(raw)
        entry["best"] = improved
        self.history.append(entry)
        self._commit(epoch + 1)
        if self.patience and self.dev is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self.max_minutes and (time.time() - self.t0) / 60 > self.max_minutes:
            self.model.stop_training = True

    def _commit(self, epochs: int) -> None:
        backup_dir = self.run_dir / "backup"
        backup_dir.mkdir(exist_ok=True)
        name = f"epoch-{epochs:04d}.weights.h5"
        save_training_state(self.model, backup_dir / name)
        write_json_atomic(self.run_dir / self.STATE,
                          {"best": None if math.isinf(self.best) else self.best,
                           "best_epoch": self.best_epoch, "history": self.history,
                           "seconds": round(self.train_seconds, 3), "backup": name,
                           "plateau": self.plateau.state if self.plateau else None})
        self.backup = name
        keep = {name, _seeds_path(backup_dir / name).name}
        for old in backup_dir.glob("*"):               # only after the commit
            if old.name not in keep and old.is_file():
                old.unlink(missing_ok=True)


def _seeds_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".weights.h5", "") + ".seeds.npz")


def _seed_variables(model) -> list:
    """The model's variables that are not weights: its random streams' positions."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_training_state(model, path) -> None:
    """Weights and optimizer state (``model.save_weights``) to ``path``, and the
    position of every random stream (dropout, jitter: model variables that are not
    weights) to ``<name>.seeds.npz`` beside it."""
    path = Path(path)
    np.savez(_seeds_path(path), *[keras.ops.convert_to_numpy(v)
                                  for v in _seed_variables(model)])
    model.save_weights(path, overwrite=True)


def load_training_state(model, path) -> None:
    """Inverse of :func:`save_training_state`."""
    path = Path(path)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    seeds = _seeds_path(path)
    if seeds.is_file():
        with np.load(seeds) as saved:
            for i, v in enumerate(_seed_variables(model)):
                v.assign(saved[f"arr_{i}"])


# --------------------------------------------------------------------------- train

def tensorboard_callback(log_dir) -> keras.callbacks.Callback:
    """TensorBoard logs in ``log_dir``; where the ``tensorboard`` package is missing
    (tensorflow 2.21 no longer pulls it in), the same epoch logs go to
    ``log_dir/epochs.csv`` instead."""
    import importlib.util
    if importlib.util.find_spec("tensorboard") is not None:
        return keras.callbacks.TensorBoard(str(log_dir), write_graph=False, profile_batch=0)
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return keras.callbacks.CSVLogger(str(Path(log_dir) / "epochs.csv"), append=True)


def effective_learning_rate(t: dict) -> float:
    """The rate the optimizer starts at: ``learning_rate * r`` with ``r = batch_size /
    lr_reference_batch`` (``lr_scaling`` "linear") or its square root ("sqrt"), or
    ``learning_rate`` when ``lr_reference_batch`` is 0."""
    ref = int(t.get("lr_reference_batch", 0))
    r = int(t["batch_size"]) / ref if ref else 1.0
    rule = t.get("lr_scaling", DEFAULT_CONFIG["train"]["lr_scaling"])
    return float(t["learning_rate"]) * (math.sqrt(r) if rule == "sqrt" else r)


def learning_rate_schedule(t: dict, total_steps: int = 0):
    """:func:`effective_learning_rate`, or where ``train.lr_schedule`` is "cosine" a
    schedule from it down to 0 over ``total_steps`` (after a linear rise from 0 over the
    first ``train.lr_warmup_steps``)."""
    lr = effective_learning_rate(t)
    if t.get("lr_schedule") != "cosine":
        return lr
    warm = min(int(t.get("lr_warmup_steps", 0)), max(0, int(total_steps) - 1))
    if not warm:
        return keras.optimizers.schedules.CosineDecay(lr, max(1, int(total_steps)))
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, int(total_steps) - warm),
                                                  warmup_target=lr, warmup_steps=warm)


def make_optimizer(t: dict, total_steps: int = 0) -> keras.optimizers.Optimizer:
    """AdamW on :func:`learning_rate_schedule`, with a moving average of the weights
    where ``train.ema_momentum`` > 0."""
    ema = ({"use_ema": True, "ema_momentum": float(t["ema_momentum"])}
           if t.get("ema_momentum") else {})
    return keras.optimizers.AdamW(learning_rate=learning_rate_schedule(t, total_steps),
                                  weight_decay=t["weight_decay"], **ema)


def uses_ema(optimizer) -> bool:
    """Whether ``optimizer`` (or the one a LossScaleOptimizer wraps) averages the weights."""
    return bool(getattr(getattr(optimizer, "inner_optimizer", optimizer), "use_ema", False))


def make_loss(t: dict, model_cfg: dict):
    """Eq. 10's L_mse: plain MSE in BDI-II points, or :class:`StandardizedMSE`."""
    if t["loss_units"] == "standardized":
        from hmhn.layers import StandardizedMSE
        return StandardizedMSE(float(model_cfg.get("target_std", 1.0)))
    return "mse"


def train(config: dict, *, out_base="outputs/hmhn", resume_dir=None, frames=None,
          source="config", quick: bool = False) -> tuple[Path, dict]:
    """Train one config; returns ``(run_dir, metrics)``. See the module docstring.

    ``frames`` may pass pre-loaded ``{split: FrameSet}`` (tests); otherwise the splits
    are read with :func:`hmhn.data.load_faces`.
    """
    cfg = resolve_config(config, source, quick=quick)
    t, d = cfg["train"], cfg["data"]
    select = d["select_split"] or None
    splits = list(dict.fromkeys(list(d["train_splits"]) + ([select] if select else [])
                                + list(d["eval_splits"])))
    if frames is None:
        frames = load_splits(cfg, splits)
    missing = [s for s in splits if s not in frames]
    if missing:
        raise DataError(None, f"no data for split(s) {missing}")
    train_fs = merge_frame_sets([frames[s] for s in d["train_splits"]])
    dev_fs = frames[select] if select else None

    # epochs of a fixed number of steps over reshuffled passes
    n_steps = t["steps_per_epoch"] or len(train_fs) // min(t["batch_size"], len(train_fs))
    if t["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(t["seed"])
    from depressionmlp import scaling
    jit = scaling.resolve_jit(t["jit_compile"]) and not t["run_eagerly"]
    if t["standardize_targets"]:
        mean, std = target_statistics(train_fs.video_labels)
        cfg["model"]["target_mean"], cfg["model"]["target_std"] = round(mean, 6), round(std, 6)
    distribute = scaling.resolve_distribute(t["distribute"], source)
    precision = scaling.resolve_precision(t["precision"], source)
    strategy, scope = scaling.strategy_scope(distribute)
    with scope(), scaling.precision_policy(precision):
        try:
            model = build_from_config(cfg["model"])
        except (ValueError, TypeError) as e:
            raise DataError(source, f"bad model config: {e}") from None
        model.compile(optimizer=make_optimizer(t, t["epochs"] * n_steps),
                      loss=make_loss(t, cfg["model"]), jit_compile=jit,
                      run_eagerly=t["run_eagerly"])
        # Built here, not lazily inside the first traced step: a variable created
        # while tracing makes TensorFlow trace the whole train step a second time.
        model.optimizer.build(model.trainable_variables)
    replicas = int(strategy.num_replicas_in_sync)

    run_dir = Path(resume_dir) if resume_dir else new_run_dir(out_base, cfg["name"])
    if resume_dir:                 # a folder prepared by the caller may not have started yet
        check_resumable(run_dir, require_started=False)
        clean_temporaries(run_dir)
    cfg["resolved"] = {"params": count_params(model), "params_all": int(model.count_params()),
                       "jit_compile": jit, "device": device_name(),
                       "train_videos": len(train_fs.videos), "train_frames": len(train_fs),
                       "model_name": model.name, "distribute": distribute,
                       "replicas": replicas, "precision": precision,
                       "learning_rate": effective_learning_rate(t)}
    write_json_atomic(run_dir / "config.json", cfg)

    plateau = (PlateauSchedule(t["plateau_factor"], t["plateau_patience"], t["min_lr"])
               if t["lr_schedule"] == "plateau" else None)
    selection = VideoLevelSelection(dev_fs, run_dir, t["eval_batch_size"], t["patience"],
                                    t["max_minutes"],
                                    recalibrate=(cfg["model"], train_fs,
                                                 t["bn_recalibration_batches"]),
                                    seed=t["seed"], plateau=plateau)
    with scope():
        selection.restore(model)
    # a resumed run skips the batches already drawn
    ds = train_dataset(train_fs, t["batch_size"], t["seed"], t["augment_flip"],
                       t["augment_color"], skip_batches=selection.epochs_done * n_steps,
                       affine=t["augment_affine"], erase=t["augment_erase"])
    callbacks = [selection, tensorboard_callback(run_dir / "tb")]
    if selection.epochs_done < t["epochs"] and not (
            t["patience"] and dev_fs is not None and selection.history
            and selection.epochs_done - 1 - selection.best_epoch >= t["patience"]):
        model.fit(ds, epochs=t["epochs"], initial_epoch=selection.epochs_done,
                  steps_per_epoch=n_steps, callbacks=callbacks, verbose=t["verbose"],
                  shuffle=False)
    train_seconds = selection.train_seconds

    best = load_model_file(run_dir / "best.keras")
    result = {"name": cfg["name"], "model": model.name, "row": cfg["model"]["row"],
              "corpus": d["corpus"], "params": count_params(best),
              "best_epoch": selection.best_epoch + 1, "epochs_run": len(selection.history),
              "train_seconds": round(train_seconds, 2),
              "train_images_per_second": round(
                  n_steps * min(t["batch_size"], len(train_fs)) * len(selection.history)
                  / max(train_seconds, 1e-9), 2),
              "learning_rate": effective_learning_rate(t),
              "jit_compile": jit, "device": device_name(), "quick": cfg["quick_mode"],
              "distribute": distribute, "replicas": replicas, "precision": precision,
              "selection_split": select or "", "splits": {}}
    for split in d["eval_splits"]:
        res, rows = evaluate_frames(best, frames[split], t["eval_batch_size"],
                                    train_labels=train_fs.video_labels)
        result["splits"][split] = res
        write_predictions_csv(run_dir / f"predictions_{split}.csv", rows)
    write_json_atomic(run_dir / "history.json", selection.history)
    write_json_atomic(run_dir / "metrics.json", result)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return run_dir, result


def evaluate_run(model_path, split: str = "test", data_root=None) -> dict:
    """Video-level metrics of a trained run on one split (data as the run was configured)."""
    model, cfg = load_run(model_path)
    if data_root:
        cfg["data"]["data_root"] = data_root
    d = cfg["data"]
    frames = load_splits(cfg, list(d["train_splits"]) + [split])
    train_labels = merge_frame_sets([frames[s] for s in d["train_splits"]]).video_labels
    res, rows = evaluate_frames(model, frames[split], cfg["train"]["eval_batch_size"],
                                train_labels=train_labels)
    return {"model": str(model_path), "name": cfg.get("name"), "split": split,
            "metrics": res, "videos": rows}


# --------------------------------------------------------------------------- benchmark

def benchmark_training(input_size: int = 224, batch_size: int = 8, jit_compile: bool = False,
                       steps: int = 5, warmup: int = 2, **model_kw) -> dict:
    """Training images/s of one configuration on random data (after ``warmup`` steps)."""
    keras.utils.set_random_seed(0)
    model = build_from_config({"input_size": input_size, **model_kw})
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01), loss="mse",
                  jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch_size, input_size, input_size, 3)), tf.float32)
    y = tf.constant(rng.uniform(0, 45, (batch_size, 1)), tf.float32)
    t0 = time.time()
    for _ in range(warmup):
        model.train_on_batch(x, y)
    first = time.time() - t0
    t0 = time.time()
    for _ in range(steps):
        model.train_on_batch(x, y)
    dt = time.time() - t0
    return {"input_size": input_size, "batch_size": batch_size, "jit_compile": jit_compile,
            "steps": steps, "warmup_seconds": round(first, 2), "seconds": round(dt, 3),
            "images_per_second": round(steps * batch_size / dt, 2), "device": device_name()}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
