"""Training and recording-level evaluation of DepressionMLP and its ablations.

Protocol of Sec. IV-B-3/4: RMSE loss (Eq. 21); Adam (0.9, 0.999), lr 2e-4,
weight decay 1e-4; batch 8; the balanced epoch of Fig. 5 (4 segments from every
recording, drawn afresh each epoch); the model kept is the one with the lowest
recording-level RMSE on the development split; a recording's score is the mean
of its segments' scores.

A config is plain data (a dict, usually read from ``experiments/<name>.toml``)
merged over :data:`DEFAULT_CONFIG`. A run writes one directory::

    <out>/<name>-<stamp>/
        config.json      the resolved config (what ``evaluate``/``predict`` rebuild from)
        best.keras       the best model on dev (written atomically)
        history.json     per-epoch loss and dev metrics
        metrics.json     recording-level metrics of the best model per split
        predictions_<split>.csv   per-recording true/predicted scores
        tb/              TensorBoard logs
        selection.json   while training: the committed state (history, best so far,
                         elapsed seconds, the backup file it belongs to)
        backup/          while training: weights + optimizer state of the last
                         committed evaluation (a killed run resumes with --resume);
                         removed when the run finishes

With ``train.ensemble = K > 1`` (the default protocol: 3) the run directory holds
``members/<k>/``, each a whole run directory as above (member k trains with seed
seed + 100 k), and its own ``config.json``, ``best.keras`` (the members' mean score),
``metrics.json`` (with each member's numbers) and ``predictions_<split>.csv``.

Resume is exact wherever a kill lands: after each evaluation the weights and the
optimizer state go to a new ``backup/step-<n>.weights.h5``, and only then is
``selection.json`` replaced (an atomic rename) to point at it; older backups are
removed after that. A resumed run loads the backup that ``selection.json`` names,
skips the balanced draws already used, and continues; stray temporaries are
removed first.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
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

from depressionmlp import classical
from depressionmlp import metrics
from depressionmlp.data.sampler import (SegmentTable, balanced_dataset,
                                        steps_per_epoch, subject_folds)
from depressionmlp.data.types import AUTO_PHASES, SegmentSettings
from depressionmlp.errors import DataError
from depressionmlp.runs import (check_numbers, check_resumable, clean_temporaries,
                                committed_backup,
                                deep_update, load_keras_file, new_run_dir, run_files,
                                save_model_atomic, write_json_atomic, write_text_atomic)

DEFAULT_CONFIG = {
    "name": "DG+MG+Linear",
    "model": {"name": "DG+MG+Linear", "inputs": "all"},
    "data": {
        "corpus": "synthetic",
        "data_root": None,
        "train_splits": ["train"],
        "select_split": "dev",
        "eval_splits": ["dev", "test"],
        "strict_leakage": False,
        # segmented recordings are cached here as .npz (keyed by file, mtime and
        # settings), so a second run does not re-parse the CSVs; "" turns it off
        "cache_dir": ".cache/segments",
        "segment": {},               # overrides of SegmentSettings (Eq. 1-3)
    },
    "train": {
        "epochs": 100,
        "batch_size": 8,
        "per_recording": 4,          # Fig. 5: segments per recording per epoch
        "learning_rate": 2e-4,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "weight_decay": 1e-4,
        # [choice] "keras3": decoupled weight decay (Keras 3 Adam(weight_decay=...));
        # "keras2": the Keras-2 `decay` reading, lr_t = lr / (1 + decay * step).
        "weight_decay_mode": "keras3",
        "seed": 0,
        # XLA for the train step (and dev / test scoring): true, false, or "auto": on
        # where a GPU is visible. On a 2-core CPU its compile (about 20 s per model)
        # ate its faster steps: a 3,000-step run took as long with it as without
        "jit_compile": False,
        # each balanced epoch's last, partial batch: "keep", "drop" (every batch full,
        # its draws left out of that epoch), or "auto": dropped under XLA, which
        # compiles a second program for the one odd batch shape (about 10 s a model on
        # 2 CPU cores), kept otherwise (so runs without XLA are as before)
        "partial_batches": "auto",
        # optimiser steps per call into TensorFlow (Keras' steps_per_execution): K > 1
        # runs K steps in one traced loop, which saves the per-step Python dispatch
        # and, with jit_compile, lets the input pipeline keep up; the same steps and
        # draws either way. Runs use gcd(K, steps between dev evaluations), so an
        # evaluation always falls on a boundary, and 1 under a strategy of several
        # replicas (keras-team/keras#19246); recorded in resolved.steps_per_execution
        "steps_per_execution": 1,
        # step budget: null = epochs x balanced-epoch steps (the paper); a number =
        # that many optimiser steps, the balanced draws continuing across epochs
        "steps": None,
        "eval_every": None,          # steps between dev evaluations (null: one epoch)
        "lr_schedule": "constant",   # [choice] "constant" (paper) or "cosine" over the budget
        # [choice] 0 = off (the paper); else the optimiser keeps an exponential moving
        # average of the weights (Keras' use_ema, this momentum), and dev evaluation,
        # selection and the saved model use the averaged weights; training continues
        # from the raw ones
        "ema_momentum": 0.0,
        "max_minutes": None,         # wall-clock budget; stops after the evaluation past it
        # how often a run commits its resumable state (backup weights + selection.json):
        # after an evaluation once this many seconds have passed since the last commit,
        # and at the end; 0: after every evaluation. A kill loses at most this much
        # training (the resumed run repeats it exactly); each commit writes the weights
        # and optimizer state, about 0.07 s, 30 times in a 6,000-step column-view model
        "commit_seconds": 30.0,
        "patience": None,            # dev evaluations without improvement before stopping
        "init_bias_to_mean": True,   # [choice] start the score at the training-label mean
        # [choice] "segment": Eq. 21 over the batch's segments (the paper); "recording":
        # Eq. 21 over the mean score of each recording's per_recording draws, which are
        # kept together in the batch (the quantity evaluation scores)
        "loss": "segment",
        # [choice] "none" (the paper) or "slope": after training, the score head's
        # score_scale is multiplied by the least-squares slope a (clipped to
        # CALIBRATION_SLOPE) of the select split's recording labels on its recording
        # scores, both measured from score_offset: score = offset + a (score - offset)
        "calibrate": "none",
        # [choice] what picks the saved step among the dev evaluations: "rmse" (the
        # paper: dev RMSE as the model stands), "calibrated": dev RMSE after the
        # "slope" calibration fitted at that step, the quantity a calibrated run keeps,
        # or "last": the last step, with one dev evaluation, at the end (eval_every,
        # patience and max_minutes unused): the select split then only fits the calibration
        "select": "rmse",
        # [choice] 1 (the paper): one model. K > 1: K members trained one after another,
        # each the whole run above (selection and calibration included) with seed
        # seed + ENSEMBLE_SEED_STEP * k, in <run>/members/<k>/; the saved model is the
        # mean of their scores (models.ensemble_model)
        "ensemble": 1,
        # [choice] [] (every member the run's [model]) or a list of [model] overrides,
        # member k taking entry k mod its length (e.g. [{}, {keypoint_levels = "speed"}]:
        # members that read the keypoints in two ways); a single model (ensemble = 1)
        # is the first entry over [model]
        "member_model": [],
        # which entries of member_model to keep, by index (e.g. [0, 1]: the Table
        # III-IV and Fig. 4 configs keep the protocol's views that run the blocks they
        # compare); absent: all of them; with no member_model (the paper protocol)
        # nothing to select. Applied when the config is resolved (member_model then
        # holds the kept entries, and member_views is None)
        "member_views": None,
        # [choice] null (every view trains train.steps) or one number per entry of
        # member_model: view v trains round(train.steps x entry v) steps (e.g. [1, 1,
        # 3.75]: a small, fast view trained longer than the others; max_minutes is still
        # shared equally by the models). Selected with member_views; dropped where a
        # config sets its own member_model without it (its views then train train.steps)
        "member_step_scale": None,
        # [choice] how ensemble members split the data: "fixed" (every member trains on
        # the train splits and is selected and calibrated on the select split) or
        # "cross": the train and select splits pooled and cut into K subject folds
        # stratified by score; member k trains on the other folds and is selected and
        # calibrated on fold k, so the ensemble learns from every pooled recording while
        # each member still picks its step on recordings it never saw. The ensemble's
        # select-split metrics are then out of fold (each recording scored by the
        # member that held it out). The default protocol sets "cross"; a single model
        # (ensemble = 1) and StatsRidge resolve to "fixed"
        "member_split": "fixed",
        # [choice] how the saved ensemble weighs its members: "equal" (their mean) or
        # "fit", with member_split = "cross" and a train.member_model of V >= 2 views
        # (ways of reading the input): every view is trained on every fold (ensemble x V
        # models; model j is view j // ensemble on fold j % ensemble), and the saved
        # model is sum_v w_v (mean of view v's models), with w >= 0, sum w = 1 fitted
        # to the pooled train + select recordings' out-of-fold scores (each recording
        # scored by the models that held it out): the data choose how much of each
        # reading to keep. Single models and StatsRidge resolve to "equal"
        "member_weights": "equal",
        # [choice] how a cross ensemble's recording score (the weighted mean of its
        # members' recording scores) becomes the reported score: "identity" (as it is; the
        # paper's recording score, the mean of segment scores) or "quadratic": a
        # nondecreasing quadratic g fitted by least squares to the pooled train + select
        # recordings' out-of-fold scores (the same scores member_weights = "fit" uses),
        # continued linearly outside their range (fit_recording_link). A mean of segment
        # scores is linear in how often something happens in a segment, while the label
        # need not be (blinks: the rate falls exponentially with severity). Needs
        # member_split = "cross"; single models and StatsRidge resolve to "identity"
        "recording_link": "identity",
        # devices and precision (depressionmlp/scaling.py): "auto" = mirrored where more
        # than one GPU is visible, else none; mixed precision where a GPU supports it
        "distribute": "auto",        # "auto" | "none" | "mirrored" | "multiworker"
        "precision": "auto",         # "auto" | "float32" | "mixed_float16" | "mixed_bfloat16"
        "verbose": 1,
    },
}

#: Range of the "slope" calibration's factor: 0 would be the mean predictor, which
#: ScoreHead's positive score_scale does not allow, and a steep slope fitted on a
#: small select split would amplify its noise.
CALIBRATION_SLOPE = (1e-3, 4.0)
CALIBRATIONS = ("none", "slope")
#: Fewest pooled out-of-fold recordings a "quadratic" recording link is fitted to; with
#: fewer the run keeps the identity and says why. Refitted to random subsets of the
#: learnability suite's 36 pooled out-of-fold sets (docs/learnability.md), the link
#: raised the mean test RMSE by 0.29 at 15 recordings (one corpus by 10) and by 0.05 at
#: 20, and lowered it by 0.14 at 30 (0.28 with all 50-84).
RECORDING_LINK_MIN = 30
#: Seed step between ensemble members: member k trains with seed + 100 k.
ENSEMBLE_SEED_STEP = 100
SELECTIONS = ("rmse", "calibrated", "last")
MEMBER_SPLITS = ("fixed", "cross")
MEMBER_WEIGHTS = ("equal", "fit")
RECORDING_LINKS = ("identity", "quadratic")
PARTIAL_BATCHES = ("auto", "keep", "drop")

#: Named protocols: config layers between DEFAULT_CONFIG and an experiment config,
#: kept as data in experiments/protocols/<name>.toml.
PROTOCOLS = ("default", "paper")
PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "experiments" / "protocols"

SCALES = {"avec2013": "bdi2", "avec2014": "bdi2", "synthetic": "bdi2", "daic": "phq8"}


# --------------------------------------------------------------------------- config

def protocol_config(name: str) -> dict:
    """The config layer of a named protocol (``experiments/protocols/<name>.toml``)."""
    from depressionmlp.runs import load_config
    if name not in PROTOCOLS:
        raise DataError(None, f"protocol must be one of {list(PROTOCOLS)}, got {name!r}")
    layer = load_config(PROTOCOL_DIR / f"{name}.toml")
    layer.pop("protocol", None)
    return layer


def resolve_config(config: dict, source: str = "config", protocol: str | None = None) -> dict:
    """Merge ``config`` over its protocol over the defaults; check keys and values.

    The protocol is ``protocol`` if given (the CLI's ``--protocol``), else the
    config's ``protocol`` key, else "default". A resolved config (one that holds
    ``resolved``) is taken as it is.
    """
    config = dict(config)
    name = protocol or config.pop("protocol", None) or "default"
    config.pop("protocol", None)
    _check_keys(config, {**DEFAULT_CONFIG, "resolved": {}}, source)
    base = deep_update(copy.deepcopy(DEFAULT_CONFIG), protocol_config(name))
    cfg = deep_update(base, config)
    cfg["protocol"] = name
    if "name" not in config:
        cfg["name"] = cfg["model"]["name"]
    t = cfg["train"]
    for key in ("epochs", "batch_size", "per_recording", "ensemble", "steps_per_execution"):
        if not isinstance(t[key], int) or isinstance(t[key], bool) or t[key] < 1:
            raise DataError(source, f"train.{key} must be a positive integer, got {t[key]!r}")
    for key in ("steps", "eval_every", "patience"):
        if t[key] is not None and (not isinstance(t[key], int) or t[key] < 1):
            raise DataError(source, f"train.{key} must be a positive integer or absent, "
                                    f"got {t[key]!r}")
    check_numbers(t, ("learning_rate", "beta_1", "beta_2", "weight_decay", "seed",
                      "max_minutes", "patience", "commit_seconds"), source, "train.",
                  positive=("learning_rate", "max_minutes"), optional=("max_minutes", "patience"))
    if t["commit_seconds"] < 0:
        raise DataError(source, f"train.commit_seconds must be 0 or more, got {t['commit_seconds']!r}")
    if t["loss"] not in LOSSES:
        raise DataError(source, f"train.loss must be one of {list(LOSSES)}, got {t['loss']!r}")
    if t["loss"] == "recording" and t["batch_size"] % t["per_recording"]:
        raise DataError(source, f"train.loss 'recording' needs train.batch_size "
                                f"({t['batch_size']}) to be a multiple of train.per_recording "
                                f"({t['per_recording']})")
    if t["calibrate"] not in CALIBRATIONS:
        raise DataError(source, f"train.calibrate must be one of {list(CALIBRATIONS)}, "
                                f"got {t['calibrate']!r}")
    if t["select"] not in SELECTIONS:
        raise DataError(source, f"train.select must be one of {list(SELECTIONS)}, "
                                f"got {t['select']!r}")
    if t["select"] == "calibrated" and t["calibrate"] != "slope":
        raise DataError(source, "train.select = 'calibrated' needs train.calibrate = 'slope'")
    if "member_model" not in config.get("train", {}):         # the protocol's views
        t["member_model"], t["member_step_scale"] = protocol_views(
            t["member_model"], t["member_step_scale"], cfg["model"].get("inputs", "all"))
    _check_member_model(t["member_model"], cfg["model"], source)
    if "member_model" in config.get("train", {}) and "member_step_scale" not in config["train"]:
        t["member_step_scale"] = None    # the config's own views, without budgets of their own
    _check_step_scale(t["member_step_scale"], t["member_model"], t["steps"], t["ensemble"],
                      source)
    keep = t["member_views"]
    t["member_model"] = _kept_views(t["member_model"], keep, source)
    if t["member_step_scale"] is not None:
        t["member_step_scale"] = _kept_views(t["member_step_scale"], keep, source)
    t["member_views"] = None                                  # applied
    if t["member_model"] and t["ensemble"] < 2:
        # one model (ensemble = 1, e.g. a QUICK run of an ensemble config) is view 0:
        # its entry over [model] and its step budget, the rest dropped, so that a
        # config or protocol with views still runs as one model
        cfg["model"] = deep_update(cfg["model"], t["member_model"][0])
        if t["member_step_scale"] is not None and t["steps"] is not None:
            t["steps"] = scaled_steps(t["steps"], t["member_step_scale"][0])
        t["member_model"] = []
    if not t["member_model"]:
        t["member_step_scale"] = None                         # no views to budget
    if t["member_split"] not in MEMBER_SPLITS:
        raise DataError(source, f"train.member_split must be one of {list(MEMBER_SPLITS)}, "
                                f"got {t['member_split']!r}")
    if t["ensemble"] < 2 or cfg["model"]["name"] in classical.MODEL_NAMES:
        # only an ensemble's members split the data; a single model (ensemble = 1, e.g.
        # a QUICK run under the default protocol) and StatsRidge / StatsLasso (one fit, whatever the
        # ensemble) train on the train splits
        t["member_split"] = "fixed"
    if t["member_split"] == "cross" and cfg["data"]["select_split"] in cfg["data"]["train_splits"]:
        raise DataError(source, "train.member_split = 'cross' needs a data.select_split "
                                "that is not one of data.train_splits (or set "
                                "train.member_split = 'fixed')")
    if t["member_weights"] not in MEMBER_WEIGHTS:
        raise DataError(source, f"train.member_weights must be one of {list(MEMBER_WEIGHTS)}, "
                                f"got {t['member_weights']!r}")
    if t["ensemble"] < 2 or cfg["model"]["name"] in classical.MODEL_NAMES:
        t["member_weights"] = "equal"
    if (t["member_weights"] == "fit" and "member_weights" not in config.get("train", {})
            and (t["member_split"] != "cross" or len(t["member_model"]) < 2)):
        # the protocol's "fit" where the config asks for a fixed split or fewer than two
        # views (e.g. member_split = "fixed" for an untouched dev): the members' mean,
        # model k reading view k mod V
        t["member_weights"] = "equal"
    if t["member_weights"] == "fit" and (t["member_split"] != "cross"
                                         or len(t["member_model"]) < 2):
        raise DataError(source, "train.member_weights = 'fit' needs train.member_split = "
                                "'cross' and a train.member_model of at least two views "
                                "(e.g. [{}, {au_levels = \"interleave\"}])")
    if t["recording_link"] not in RECORDING_LINKS:
        raise DataError(source, f"train.recording_link must be one of {list(RECORDING_LINKS)}, "
                                f"got {t['recording_link']!r}")
    if t["recording_link"] != "identity" and t["member_split"] != "cross":
        if "recording_link" in config.get("train", {}):
            raise DataError(source, f"train.recording_link = {t['recording_link']!r} needs "
                                    "train.member_split = 'cross' (an ensemble whose "
                                    "out-of-fold scores it is fitted to)")
        t["recording_link"] = "identity"    # the protocol's link, where nothing is out of fold
    if t["jit_compile"] not in (True, False, "auto"):
        raise DataError(source, f"train.jit_compile must be true, false or \"auto\", "
                                f"got {t['jit_compile']!r}")
    if t["partial_batches"] not in PARTIAL_BATCHES:
        raise DataError(source, f"train.partial_batches must be one of {list(PARTIAL_BATCHES)}, "
                                f"got {t['partial_batches']!r}")
    ema = t["ema_momentum"]
    if (not isinstance(ema, (int, float)) or isinstance(ema, bool)
            or not 0.0 <= float(ema) < 1.0):
        raise DataError(source, f"train.ema_momentum must be a number in [0, 1), got {ema!r}")
    if t["lr_schedule"] not in ("constant", "cosine"):
        raise DataError(source, "train.lr_schedule must be 'constant' or 'cosine', "
                                f"got {t['lr_schedule']!r}")
    if t["lr_schedule"] == "cosine" and t["weight_decay_mode"] == "keras2":
        raise DataError(source, "train.lr_schedule 'cosine' needs weight_decay_mode 'keras3'")
    if t["weight_decay_mode"] not in ("keras3", "keras2"):
        raise DataError(source, "train.weight_decay_mode must be 'keras3' or 'keras2'")
    from depressionmlp.scaling import check_options
    check_options(t, source)
    from depressionmlp.data.segments import CENTERING
    center = cfg["data"]["segment"].get("center", "none")
    if center not in CENTERING:
        raise DataError(source, f"data.segment.center must be one of {list(CENTERING)}, "
                                f"got {center!r}")
    if cfg["data"]["corpus"] not in SCALES:
        raise DataError(source, f"data.corpus must be one of {sorted(SCALES)}, "
                                f"got {cfg['data']['corpus']!r}")
    phases = cfg["data"]["segment"].get("phases", 1)
    if not (phases == AUTO_PHASES
            or (isinstance(phases, int) and not isinstance(phases, bool) and phases >= 1)):
        raise DataError(source, f"data.segment.phases must be \"{AUTO_PHASES}\" or a positive "
                                f"integer (1 = the paper, at most fps_in / fps), got {phases!r}")
    below = cfg["data"]["segment"].get("phases_below", SegmentSettings.phases_below)
    if isinstance(below, bool) or not isinstance(below, int) or below < 1:
        raise DataError(source, f"data.segment.phases_below must be a positive integer "
                                f"(segments), got {below!r}")
    from depressionmlp.data.segments import downsample_step
    known = {f.name for f in dataclasses.fields(SegmentSettings)}
    unknown = sorted(set(cfg["data"]["segment"]) - known)
    if unknown:
        raise DataError(source, f"unknown config key(s) data.segment.{unknown[0]}; "
                                f"known: {', '.join(sorted(known))}")
    settings = segment_settings(cfg)
    step = downsample_step(settings.fps_in, settings.fps)
    if phases != AUTO_PHASES and phases > step:
        raise DataError(source, f"data.segment.phases must be at most fps_in / fps = "
                                f"{step}, got {phases}")
    return cfg


def _check_keys(config, defaults, source, prefix=""):
    for k, v in config.items():
        if prefix == "" and k == "resolved":
            continue
        if k not in defaults:
            if prefix in ("model.", "data.segment."):      # free-form option tables
                continue
            raise DataError(source, f"unknown config key '{prefix}{k}'; "
                                    f"known: {', '.join(sorted(defaults))}")
        if isinstance(defaults[k], dict) and not isinstance(v, dict):
            raise DataError(source, f"config key '{prefix}{k}' must be a table "
                                    f"([{prefix}{k}]), got {v!r}")
        if isinstance(v, dict) and isinstance(defaults[k], dict):
            _check_keys(v, defaults[k], source, f"{prefix}{k}.")


def protocol_views(entries: list, scale, run_inputs) -> tuple[list, list | None]:
    """The protocol's ``train.member_model`` views (and their ``member_step_scale``)
    that apply to a run reading ``run_inputs``: a view with ``inputs`` of its own only
    where the run reads more than those streams. On a run of the AUs alone the
    default's AU view would repeat its view 2 and its keypoint view would have nothing
    to read, so such a run keeps views 0-2 (``train.member_views`` then indexes the
    kept views). A config's own ``member_model`` is taken as written (and checked)."""
    from depressionmlp.models import INPUT_SETS
    run = set(run_inputs if isinstance(run_inputs, (list, tuple))
              else INPUT_SETS.get(run_inputs, ()))
    keep = [v for v, e in enumerate(entries)
            if not isinstance(e, dict) or "inputs" not in e
            or set(INPUT_SETS.get(e["inputs"], ())) < run]
    if len(keep) == len(entries):
        return entries, scale
    return ([entries[v] for v in keep],
            [scale[v] for v in keep] if isinstance(scale, list) and len(scale) == len(entries)
            else scale)


def _check_member_model(entries, model, source):
    """``train.member_model``: a list of [model] tables over the run's ``model``; a
    view may read a subset of the run's streams (``inputs``), where its model
    accepts that set (a fusion model only with ``stream_blocks = false``)."""
    from depressionmlp.models import DEFAULT_OPTIONS, INPUT_SETS, resolve_inputs
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DataError(source, f"train.member_model must be a list of [model] tables, "
                                f"got {entries!r}")
    run_inputs = model.get("inputs", "all")
    for v, e in enumerate(entries):
        if "name" in e:
            raise DataError(source, "train.member_model may change model options and inputs, "
                                    "not the model's name (the views share one architecture)")
        unknown = sorted(set(e) - set(DEFAULT_OPTIONS) - {"inputs"})
        if unknown:
            raise DataError(source, f"train.member_model: unknown model option(s) {unknown}")
        if "inputs" not in e:
            continue
        within = [k for k, streams in INPUT_SETS.items()
                  if set(streams) <= set(INPUT_SETS.get(run_inputs, ()))]
        if e["inputs"] not in within:
            raise DataError(source, f"train.member_model view {v}: inputs must be one of "
                                    f"{within} (the input sets within the run's "
                                    f"model.inputs = {run_inputs!r}), got {e['inputs']!r}")
        if model["name"] in classical.MODEL_NAMES:
            continue                              # a classical reference trains no views
        try:
            resolve_inputs(model["name"], e["inputs"],
                           e.get("stream_blocks", model.get("stream_blocks", True)))
        except ValueError as err:
            raise DataError(source, f"train.member_model view {v}: {err}") from None


def _check_step_scale(scale, entries, steps, ensemble, source):
    """``train.member_step_scale``: null, or one positive number per view, scaling a
    step budget (checked where there are views: a protocol without them, e.g. the
    paper's, has none to budget; one model, e.g. a config with views under the paper
    protocol, trains its epochs or steps unscaled when it has no step budget)."""
    if scale is None or not entries:
        return
    if steps is None and ensemble >= 2:
        raise DataError(source, "train.member_step_scale scales train.steps: set a step "
                                "budget (train.steps), not an epoch count")
    if (not isinstance(scale, list) or len(scale) != len(entries)
            or any(isinstance(v, bool) or not isinstance(v, (int, float))
                   or not np.isfinite(v) or v <= 0 for v in scale)):
        raise DataError(source, f"train.member_step_scale must be one positive number per "
                                f"entry of train.member_model ({len(entries)} views), "
                                f"got {scale!r}")


def scaled_steps(steps: int, scale: float) -> int:
    """A view's step budget: ``round(steps x scale)``, at least 1."""
    return max(1, int(round(steps * scale)))


def _kept_views(entries, keep, source):
    """The entries of ``train.member_model`` that ``train.member_views`` keeps (a
    protocol without views, e.g. the paper's, has none to select: the list stays empty)."""
    if keep is None:
        return entries
    if (not isinstance(keep, list) or not keep
            or any(isinstance(i, bool) or not isinstance(i, int) for i in keep)
            or len(set(keep)) != len(keep) or min(keep) < 0
            or (entries and max(keep) >= len(entries))):
        raise DataError(source, f"train.member_views must be a non-empty list of distinct "
                                f"indices into train.member_model (which has {len(entries)} "
                                f"entries), got {keep!r}")
    return [entries[i] for i in keep] if entries else entries


def member_layout(cfg: dict) -> list[tuple[int, int]]:
    """(fold, view) of each ensemble member: with ``member_weights = "equal"`` member
    k is fold k (its select split under a cross split) and view k mod V; with "fit"
    there are K x V members, member j being view j // K on fold j % K (K =
    ``train.ensemble``, V = len(``train.member_model``), at least 1)."""
    t = cfg["train"]
    k_folds, views = t["ensemble"], max(1, len(t["member_model"]))
    if t["member_weights"] == "fit":
        return [(j % k_folds, j // k_folds) for j in range(k_folds * views)]
    return [(k, k % views) for k in range(k_folds)]


def member_overrides(cfg: dict, k: int) -> dict:
    """Member ``k``'s entry of ``train.member_model``: its view's ({} when the list
    is empty)."""
    entries = cfg["train"]["member_model"]
    return entries[member_layout(cfg)[k][1]] if entries else {}


def segment_settings(cfg: dict) -> SegmentSettings:
    from depressionmlp.data.corpora import default_settings
    base = default_settings(cfg["data"]["corpus"]).to_dict()
    base.update(cfg["data"]["segment"])
    seg_len = cfg["model"].get("segment_length")
    if seg_len is not None:
        base["segment_length"] = seg_len
    return SegmentSettings.from_dict(base)


def model_streams(cfg: dict) -> tuple[str, ...]:
    from depressionmlp.models import INPUT_SETS
    inputs = cfg["model"].get("inputs", "all")
    if inputs not in INPUT_SETS:
        raise DataError(None, f"model.inputs must be one of {sorted(INPUT_SETS)}, got {inputs!r}")
    return tuple(INPUT_SETS[inputs])


def build_model_from_config(cfg: dict, settings: SegmentSettings,
                            model_name: str | None = None) -> keras.Model:
    from depressionmlp.models import build_model
    opts = {k: v for k, v in cfg["model"].items()
            if k not in ("name", "inputs", "segment_length", "n_points")}
    try:
        return build_model(cfg["model"]["name"], cfg["model"].get("inputs", "all"),
                           segment_length=settings.segment_length,
                           n_points=settings.n_points, model_name=model_name, **opts)
    except (ValueError, TypeError) as e:
        raise DataError(None, f"bad model config: {e}") from None


# --------------------------------------------------------------------------- loss/optimiser

@keras.saving.register_keras_serializable(package="depressionmlp")
def rmse_loss(y_true, y_pred):
    """Eq. 21 over the batch: sqrt(mean((y - y_hat)^2)), in float32 (mixed precision
    too). Under a distribution strategy, over each replica's share of the batch."""
    y_pred = keras.ops.cast(y_pred, "float32")
    y_true = keras.ops.cast(y_true, "float32")
    return keras.ops.sqrt(keras.ops.mean(keras.ops.square(y_true - y_pred)) + 1e-12)


@keras.saving.register_keras_serializable(package="depressionmlp")
class RecordingRMSE(keras.losses.Loss):
    """Eq. 21 on recording scores: the batch holds ``group`` consecutive segments
    per recording (``balanced_dataset(grouped=True)``); each group's mean score is
    compared with its label, as evaluation scores a recording by its segments' mean.

    Call args:
        y_true, y_pred: (b, 1) with b a multiple of ``group``.

    Returns:
        sqrt(mean over the b / group recordings of (y - mean_g y_hat)^2).
    """

    def __init__(self, group: int = 4, name: str = "recording_rmse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.group = int(group)

    def call(self, y_true, y_pred):
        y_pred = keras.ops.reshape(keras.ops.cast(y_pred, "float32"), (-1, self.group))
        y_true = keras.ops.reshape(keras.ops.cast(y_true, "float32"), (-1, self.group))
        err = keras.ops.mean(y_true, axis=1) - keras.ops.mean(y_pred, axis=1)
        return keras.ops.sqrt(keras.ops.mean(keras.ops.square(err)) + 1e-12)

    def get_config(self):
        return {**super().get_config(), "group": self.group}


LOSSES = ("segment", "recording")


def make_loss(t: dict):
    """The training loss named by ``train.loss`` (see DEFAULT_CONFIG)."""
    return rmse_loss if t["loss"] == "segment" else RecordingRMSE(t["per_recording"])


def resolve_full_batches(t: dict, jit: bool, train_table: SegmentTable, source) -> bool:
    """``train.partial_batches`` as the sampler takes it: True drops each balanced
    epoch's partial batch ("drop", or "auto" under XLA where an epoch holds at least one
    full batch)."""
    draws = train_table.n_recordings * t["per_recording"]
    if t["partial_batches"] == "drop" and draws < t["batch_size"]:
        raise DataError(source, f"train.partial_batches = 'drop' needs at least one full "
                                f"batch ({t['batch_size']}) per balanced epoch; "
                                f"{train_table.n_recordings} training recordings x "
                                f"{t['per_recording']} draws give {draws}")
    return (t["partial_batches"] == "drop"
            or (t["partial_batches"] == "auto" and jit and draws >= t["batch_size"]))


def make_optimizer(t: dict, total_steps: int | None = None) -> keras.optimizers.Optimizer:
    """Adam of Sec. IV-B-3 with the chosen weight-decay reading and lr schedule
    (and a moving average of the weights where ``train.ema_momentum`` > 0)."""
    ema = {"use_ema": True, "ema_momentum": float(t["ema_momentum"])} if t["ema_momentum"] else {}
    if t["weight_decay_mode"] == "keras3":
        lr = t["learning_rate"]
        if t["lr_schedule"] == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total_steps or 1, 1),
                                                        alpha=0.05)
        return keras.optimizers.Adam(learning_rate=lr, beta_1=t["beta_1"],
                                     beta_2=t["beta_2"], weight_decay=t["weight_decay"], **ema)
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        t["learning_rate"], decay_steps=1, decay_rate=t["weight_decay"])
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=t["beta_1"], beta_2=t["beta_2"],
                                 **ema)


def resolve_score_affine(model_cfg: dict, labels, source) -> None:
    """Replace ``model.score_scale = "label_std"`` / ``score_offset = "label_mean"``
    by the training labels' spread / mean, in place (Eq. 20 [choice])."""
    scale, offset = model_cfg.get("score_scale", 1.0), model_cfg.get("score_offset", 0.0)
    if scale == "label_std":
        model_cfg["score_scale"] = max(float(np.std(labels)), 1.0)
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise DataError(source, f"model.score_scale must be \"label_std\" or a positive "
                                f"number, got {scale!r}")
    if offset == "label_mean":
        model_cfg["score_offset"] = float(np.mean(labels))
    elif isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise DataError(source, f"model.score_offset must be \"label_mean\" or a number, "
                                f"got {offset!r}")


def init_output_bias(model: keras.Model, target: float) -> None:
    """Set Eq. 20's Dense bias so that an all-zero summary predicts ``target``."""
    head = model.get_layer("score")
    head.out_dense.bias.assign(
        np.array([(target - head.score_offset) / head.score_scale], dtype=np.float32))


# --------------------------------------------------------------------------- evaluation

class SegmentPredictor:
    """Segment scores of one table from one Keras model, ready to call many times.

    The table's inputs are batched once (256 segments a batch, table order, the
    batches :func:`~depressionmlp.data.sampler.eval_dataset` gives) as views of its
    arrays; the forward pass is one ``tf.function`` with a free batch dimension,
    traced once per model. Calling it after each evaluation period costs the
    forward pass only, where ``model.predict`` builds a dataset, an iterator and
    callbacks each time. Same outputs as ``model.predict`` on the same batches.

    With ``jit_compile`` the last batch is padded with zeros to ``batch_size`` (and
    its padding's scores dropped): XLA compiles one program per input shape, and a
    segment's score does not depend on the others in its batch at inference.
    Predictors of one model can share one ``forward`` (:func:`inference_function`),
    so that its program is compiled once for every split.
    """

    def __init__(self, model, table: SegmentTable, streams, batch_size: int = 256,
                 jit_compile: bool = False, forward=None):
        streams = [s for s in streams if s in model.input]      # a view reads its own
        self.model, self.n = model, table.n_segments
        # views into the table's arrays (no second copy of a large dev set in memory)
        self.batches = [{s: table.arrays[s][i:i + batch_size] for s in streams}
                        for i in range(0, self.n, batch_size)]
        last = self.batches[-1] if self.batches else {}
        if jit_compile and last and len(next(iter(last.values()))) < batch_size:
            self.batches[-1] = {s: np.concatenate(
                [a, np.zeros((batch_size - len(a),) + a.shape[1:], a.dtype)])
                for s, a in last.items()}
        self._forward = forward or inference_function(model, table, streams, jit_compile)

    def __call__(self) -> np.ndarray:
        out = [self._forward(b) for b in self.batches]
        return np.concatenate([np.asarray(o) for o in out]).astype(np.float64).reshape(-1)[:self.n]


def inference_function(model, table: SegmentTable, streams, jit_compile: bool = False):
    """The model's forward pass (training=False) as one ``tf.function`` with a free
    batch dimension, for the inputs of ``table`` (its streams' segment shapes)."""
    spec = {s: tf.TensorSpec((None,) + table.arrays[s].shape[1:], tf.float32)
            for s in streams if s in model.input}
    # a partial, not a lambda: TensorFlow counts traces per code object, so the
    # one trace of each new predictor would add up to its retracing warning in a
    # process that trains many runs (the learnability suite, make report)
    return tf.function(functools.partial(_inference, model), input_signature=[spec],
                       jit_compile=jit_compile, reduce_retracing=True)


class CalibratedPredictor:
    """Segment scores of a slope-calibrated model (:func:`calibrate_slope`) from the
    :class:`SegmentPredictor` of the model before it: ``offset + a (score - offset)``,
    exact when the score head is linear (``output_activation = "linear"``)."""

    def __init__(self, predictor: SegmentPredictor, slope: float, offset: float):
        self.predictor, self.slope, self.offset = predictor, float(slope), float(offset)

    def __call__(self) -> np.ndarray:
        return self.offset + self.slope * (self.predictor() - self.offset)


def _inference(model, x):
    return model(x, training=False)


def predict_segments(model, table: SegmentTable, streams, predictor=None) -> np.ndarray:
    """(S,) segment predictions in table order (``predictor``: a ready
    :class:`SegmentPredictor` of this model and table)."""
    if predictor is not None:
        return predictor()
    if isinstance(model, classical.StatsRidge):
        return np.asarray(model.predict(table.arrays), dtype=np.float64).reshape(-1)
    # a forward function of its own: model.predict's cached function retraces for
    # each split's last partial batch
    return SegmentPredictor(model, table, streams)()


def evaluate_table(model, table: SegmentTable, streams, scale="bdi2",
                   train_labels=None, predictor=None, link=None) -> tuple[dict, list[dict]]:
    """Recording-level metrics and per-recording rows for one split (``link``: the
    run's ``resolved.recording_link``, applied to the recording scores)."""
    seg_pred = predict_segments(model, table, streams, predictor)
    rec_ids, rec_pred, rec_true = metrics.aggregate_by_recording(
        table.recording_ids[table.recording], seg_pred, table.labels)
    rec_pred = metrics.apply_recording_link(link, rec_pred)
    return score_recordings(table, rec_ids, rec_pred, rec_true, scale, train_labels)


def score_recordings(table: SegmentTable, rec_ids, rec_pred, rec_true, scale="bdi2",
                     train_labels=None) -> tuple[dict, list[dict]]:
    """Metrics and per-recording rows of recording scores (``table`` names subjects)."""
    result = metrics.regression_metrics(rec_true, rec_pred)
    result.update(metrics.classification_metrics(rec_true, rec_pred, scale))
    if train_labels is not None:
        result["mean_predictor"] = metrics.mean_predictor_metrics(train_labels, rec_true)
    subj = dict(zip(table.recording_ids, table.subject_ids))
    rows = [{"recording_id": str(r), "subject_id": str(subj[r]), "true": float(t),
             "predicted": float(p), "severity_true": metrics.severity_name(t, scale),
             "severity_predicted": metrics.severity_name(p, scale)}
            for r, p, t in zip(rec_ids, rec_pred, rec_true)]
    return result, rows


def write_predictions_csv(path, rows: list[dict]) -> None:
    cols = ["recording_id", "subject_id", "true", "predicted", "severity_true",
            "severity_predicted"]
    lines = [",".join(cols)] + [
        ",".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


class RecordingLevelSelection(keras.callbacks.Callback):
    """After each evaluation period (a Keras "epoch" of ``eval_every`` steps): dev
    metrics at recording level; keep the best model; commit the run's state.

    Adds ``dev_rmse``/``dev_mae`` to the epoch logs (so TensorBoard and
    ``history.json`` get them), keeps the weights when dev RMSE improves, and commits
    (after an evaluation once ``commit_seconds`` have passed since the last commit, and
    when training ends): ``best.keras`` atomically if the best changed since the last
    commit, the weights and optimizer state to ``backup/``, then ``selection.json``
    (the commit point of a resumable run, see the module docstring), and stops on
    ``patience`` or on the wall-clock budget. The dev segments are scored by a
    :class:`SegmentPredictor` built once (``predictor``, else on the first evaluation);
    the best weights are kept in memory (``best_weights``), so the final evaluation
    needs no reload. With a moving
    average of the weights (``train.ema_momentum``) the averaged weights are
    evaluated, kept and saved; training and the backup continue from the raw ones.
    """

    STATE = "selection.json"

    def __init__(self, table, streams, run_dir, scale, patience=None, max_minutes=None,
                 history_path=None, eval_every=1, predictor=None, calibrated_about=None,
                 commit_seconds=0.0):
        super().__init__()
        self.calibrated_about = calibrated_about
        self.commit_seconds, self.committed_at, self.uncommitted = float(commit_seconds), None, 0
        self.predictor, self.best_weights, self.best_unsaved = predictor, None, False
        self.eval_every = int(eval_every)
        self.table, self.streams, self.run_dir, self.scale = table, streams, Path(run_dir), scale
        self.patience, self.max_minutes = patience, max_minutes
        self.history_path = history_path
        self.best, self.best_epoch, self.t0, self.history = math.inf, -1, None, []
        self.elapsed_before, self.backup = 0.0, None
        state = self.run_dir / self.STATE
        if state.exists():                       # resumed run: the committed state
            try:
                s = json.loads(state.read_text())
                self.best, self.best_epoch, self.history = (s["best"], s["best_epoch"],
                                                            s["history"])
                self.elapsed_before, self.backup = float(s.get("seconds", 0.0)), s.get("backup")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError(state, "not a readable run state; start a new run") from None

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def restore(self, model) -> None:
        """Load the committed backup (weights + optimizer state) into ``model``."""
        if not self.history:
            return
        path = committed_backup(self.run_dir, self.backup, self.STATE)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(path)

    @property
    def train_seconds(self) -> float:
        return self.elapsed_before + (time.time() - self.t0 if self.t0 else 0.0)

    def on_train_begin(self, logs=None):
        self.t0 = self.committed_at = time.time()

    def on_train_end(self, logs=None):
        if self.uncommitted:                     # the evaluations since the last commit
            self._commit(self.epochs_done)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.predictor is None:
            self.predictor = SegmentPredictor(self.model, self.table, self.streams)
        raw = None
        opt = self.model.optimizer                 # a LossScaleOptimizer wraps the Adam
        if getattr(getattr(opt, "inner_optimizer", opt), "use_ema", False):
            raw = self.model.get_weights()           # train.ema_momentum > 0
            self.model.optimizer.finalize_variable_values(self.model.trainable_variables)
        res, rows = evaluate_table(self.model, self.table, self.streams, self.scale,
                                   predictor=self.predictor)
        logs["dev_rmse"], logs["dev_mae"] = res["rmse"], res["mae"]
        entry = {"dev_rmse": res["rmse"], "dev_mae": res["mae"]}
        score = res["rmse"]
        if self.calibrated_about is not None:      # train.select = "calibrated"
            score = calibrated_rmse([r["predicted"] for r in rows],
                                    [r["true"] for r in rows], self.calibrated_about)
            logs["dev_rmse_calibrated"] = entry["dev_rmse_calibrated"] = score
        improved = score < self.best
        if improved:                        # saved as best.keras at the next commit
            self.best, self.best_epoch = score, epoch
            self.best_weights, self.best_unsaved = self.model.get_weights(), True
        if raw is not None:                 # training (and the backup) go on from the raw
            self.model.set_weights(raw)
        self.history.append({"epoch": epoch + 1, "step": (epoch + 1) * self.eval_every,
                             "loss": float(logs.get("loss", np.nan)), **entry,
                             "best": improved})
        self.uncommitted += 1
        if time.time() - self.committed_at >= self.commit_seconds:
            self._commit(epoch + 1)
        if self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self.max_minutes is not None and (time.time() - self.t0) / 60 > self.max_minutes:
            self.model.stop_training = True

    def _commit(self, epochs: int) -> None:
        if self.best_unsaved:           # best.keras: the best of the state committed here
            current = self.model.get_weights()
            self.model.set_weights(self.best_weights)
            save_model_atomic(self.model, self.run_dir / "best.keras")
            self.model.set_weights(current)
            self.best_unsaved = False
        backup_dir = self.run_dir / "backup"
        backup_dir.mkdir(exist_ok=True)
        name = f"step-{epochs * self.eval_every:07d}.weights.h5"
        self.model.save_weights(backup_dir / name, overwrite=True)
        write_json_atomic(self.run_dir / self.STATE,
                          {"best": self.best, "best_epoch": self.best_epoch,
                           "history": self.history, "seconds": round(self.train_seconds, 3),
                           "backup": name})
        self.backup, self.committed_at, self.uncommitted = name, time.time(), 0
        for old in backup_dir.glob("*.weights.h5"):      # only after the commit
            if old.name != name:
                old.unlink(missing_ok=True)


class EpochSummaries(keras.callbacks.Callback):
    """TensorBoard scalars of each evaluation period's logs (``epoch_loss``,
    ``epoch_dev_rmse``, ...) in ``<log_dir>/train``, at step = optimiser steps done.

    Written eagerly after each period, so the traced train step never sees a summary
    writer: Keras' own ``TensorBoard`` callback halved the default protocol's steps/s
    on a CPU (131.6 -> 77.6 at 25 steps per call, XLA on).
    """

    def __init__(self, log_dir, steps_per_epoch: int):
        super().__init__()
        self.log_dir, self.steps_per_epoch = Path(log_dir), int(steps_per_epoch)
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.log_dir / "train"))
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                if isinstance(value, (int, float, np.floating)) or np.ndim(value) == 0:
                    tf.summary.scalar(f"epoch_{name}", float(value),
                                      step=(epoch + 1) * self.steps_per_epoch)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def clean_stray_files(run_dir) -> None:
    """Remove what a killed run may leave half-written: the atomic writers'
    temporaries, and backups that ``selection.json`` does not name."""
    run_dir = Path(run_dir)
    clean_temporaries(run_dir)
    state = run_dir / RecordingLevelSelection.STATE
    keep = None
    if state.exists():
        try:
            keep = json.loads(state.read_text()).get("backup")
        except (json.JSONDecodeError, AttributeError):
            keep = None
    backup = run_dir / "backup"
    for f in backup.glob("*.weights.h5") if backup.is_dir() else ():
        if f.name != keep:
            f.unlink(missing_ok=True)


# --------------------------------------------------------------------------- train

def load_tables(cfg: dict, settings: SegmentSettings, splits, warn=None) -> dict:
    """Segment (or read from cache) the corpus splits -> {split: SegmentTable}."""
    from depressionmlp.data.corpora import load_corpus
    d = cfg["data"]
    data = load_corpus(d["corpus"], d["data_root"], splits=tuple(splits), settings=settings,
                       strict=d["strict_leakage"], cache_dir=d["cache_dir"] or None,
                       **({"warn": warn} if warn is not None else {}))
    tables = {}
    for split in splits:
        recs = data.get(split, [])
        if not recs:
            raise DataError(d["data_root"] or os.environ.get("DATA_ROOT", "data"),
                            f"corpus '{d['corpus']}' has no recordings in split '{split}'")
        tables[split] = SegmentTable.from_recordings(recs, streams=("R_X", "R_Y", "R_AU"))
    return tables


def train(config: dict, *, out_base="outputs/runs", resume_dir=None, tables=None,
          source="config", callbacks=(), protocol=None) -> tuple[Path, dict]:
    """Train one config; returns (run_dir, metrics dict). See the module docstring."""
    cfg = resolve_config(config, source, protocol)
    t, d = cfg["train"], cfg["data"]
    settings = segment_settings(cfg)
    streams = model_streams(cfg)
    scale = SCALES[d["corpus"]]
    splits = list(dict.fromkeys(list(d["train_splits"]) + [d["select_split"]]
                                + list(d["eval_splits"])))
    if tables is None:
        tables = load_tables(cfg, settings, splits)
    train_table = SegmentTable.concat([tables[s] for s in d["train_splits"]])
    dev_table = tables[d["select_split"]]
    run_dir = Path(resume_dir) if resume_dir else new_run_dir(out_base, cfg["name"])
    if resume_dir:                 # a folder prepared by the caller may not have started yet
        check_resumable(run_dir, require_started=False)
        clean_stray_files(run_dir)
    if cfg["model"]["name"] in classical.MODEL_NAMES:
        return _train_classical(cfg, tables, train_table, streams, scale, settings, run_dir)
    if t["ensemble"] > 1:
        return _train_ensemble(cfg, tables, train_table, settings, run_dir, source, callbacks)

    from depressionmlp import scaling
    distribute = scaling.resolve_distribute(t["distribute"], source)
    precision = scaling.resolve_precision(t["precision"], source)
    strategy, scope = scaling.strategy_scope(distribute)
    keras.utils.set_random_seed(t["seed"])
    labels = train_table.recording_labels
    resolve_score_affine(cfg["model"], labels, source)
    jit = scaling.resolve_jit(t["jit_compile"])
    full_batches = resolve_full_batches(t, jit, train_table, source)
    epoch_steps = steps_per_epoch(train_table, t["per_recording"], t["batch_size"],
                                  full_batches)
    eval_every = t["eval_every"] or epoch_steps
    total_steps = t["steps"] or t["epochs"] * epoch_steps
    if t["select"] == "last":               # one evaluation period: the whole budget
        eval_every = total_steps
    n_evals = int(math.ceil(total_steps / eval_every))
    replicas = int(strategy.num_replicas_in_sync)
    # K steps per call run in a traced while loop; under a strategy of several replicas
    # Keras' loop fails with "You must feed a value for placeholder tensor"
    # (keras-team/keras#19246), so such a run takes one step per call
    per_call = math.gcd(t["steps_per_execution"], eval_every) if replicas == 1 else 1
    with scope(), scaling.precision_policy(precision):
        model = build_model_from_config(cfg, settings)
        from depressionmlp.models import adapt_inputs
        adapt_inputs(model, train_table.arrays)
        if t["init_bias_to_mean"]:
            init_output_bias(model, float(np.mean(labels)))
        model.compile(optimizer=make_optimizer(t, n_evals * eval_every), loss=make_loss(t),
                      jit_compile=jit,
                      steps_per_execution=per_call)
        # Built here, not lazily inside the first traced step: a variable created
        # while tracing makes TensorFlow trace the whole train step a second time.
        model.optimizer.build(model.trainable_variables)

    cfg["resolved"] = {"segment": settings.to_dict(), "streams": list(streams),
                       "scale": scale, "params": trainable_params(model),
                       "steps": n_evals * eval_every, "eval_every": eval_every,
                       "steps_per_execution": per_call,
                       "jit_compile": jit,
                       "partial_batches": "drop" if full_batches else "keep",
                       "steps_per_balanced_epoch": epoch_steps,
                       "distribute": distribute, "replicas": replicas, "precision": precision}
    write_json_atomic(run_dir / "config.json", cfg)

    calibrated_about = (float(cfg["model"].get("score_offset", 0.0))
                        if t["select"] == "calibrated" else None)
    forward = inference_function(model, dev_table, streams, jit)   # one program, every split
    predictors = {split: SegmentPredictor(model, tables[split], streams, jit_compile=jit,
                                          forward=forward)
                  for split in dict.fromkeys([d["select_split"], *d["eval_splits"]])}
    selection = RecordingLevelSelection(dev_table, streams, run_dir, scale,
                                        patience=t["patience"], max_minutes=t["max_minutes"],
                                        eval_every=eval_every,
                                        predictor=predictors[d["select_split"]],
                                        calibrated_about=calibrated_about,
                                        commit_seconds=t["commit_seconds"])
    with scope():
        selection.restore(model)
    # A resumed run continues the balanced draws where the killed one stopped.
    ds = balanced_dataset(train_table, streams, per_recording=t["per_recording"],
                          batch_size=t["batch_size"], seed=t["seed"],
                          grouped=t["loss"] == "recording", replicas=replicas,
                          full_batches=full_batches)
    ds = ds.skip(selection.epochs_done * eval_every)
    callbacks = [
        selection,
        EpochSummaries(run_dir / "tb", eval_every),
        *callbacks,
    ]
    if selection.epochs_done < n_evals and not _stopped_early(selection, t):
        model.fit(ds, epochs=n_evals, initial_epoch=selection.epochs_done,
                  steps_per_epoch=eval_every, callbacks=callbacks, shuffle=False,
                  verbose=t["verbose"])
    train_seconds = selection.train_seconds

    if selection.best_weights is not None:    # the best model, without a reload
        model.set_weights(selection.best_weights)
        best = model
    else:                                     # a resumed run whose best came before
        best, predictors = load_model_file(run_dir / "best.keras"), {}
    if t["calibrate"] == "slope":
        with scaling.precision_policy(precision):
            best, calibration = calibrate_slope(best, cfg, settings, tables[d["select_split"]],
                                                streams, predictors.get(d["select_split"]))
        a = cfg["model"]["score_scale"] / calibration["score_scale_before"]
        # a linear score head: the new model's scores are exactly offset + a (score -
        # offset) of the old one's, so its predictors serve (no new trace per split)
        predictors = ({k: CalibratedPredictor(p, a, cfg["model"].get("score_offset", 0.0))
                       for k, p in predictors.items()}
                      if cfg["model"].get("output_activation") == "linear" else {})
        cfg["resolved"]["calibration"] = calibration
        write_json_atomic(run_dir / "config.json", cfg)
        save_model_atomic(best, run_dir / "best.keras")
    result = _result_header(cfg, trainable_params(best))
    result.update({"best_epoch": selection.best_epoch + 1,
                   "best_step": (selection.best_epoch + 1) * eval_every,
                   "epochs_run": len(selection.history),
                   "steps_run": len(selection.history) * eval_every,
                   "train_seconds": round(train_seconds, 2),
                   "steps_per_epoch": eval_every,
                   "distribute": distribute, "replicas": replicas, "precision": precision})
    if "calibration" in cfg["resolved"]:
        result["calibration"] = cfg["resolved"]["calibration"]
    _evaluate_splits(best, cfg, tables, streams, scale, train_table, run_dir, result,
                     predictors)
    write_json_atomic(run_dir / "history.json", selection.history)
    write_json_atomic(run_dir / "metrics.json", result)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return run_dir, result


def calibration_slope(scores, labels, offset: float) -> float:
    """Least-squares slope through ``(offset, offset)`` of ``labels`` on ``scores``
    (recording level), clipped to :data:`CALIBRATION_SLOPE`:
    ``a = sum((s - o)(y - o)) / sum((s - o)^2)``."""
    s = np.asarray(scores, np.float64) - offset
    y = np.asarray(labels, np.float64) - offset
    denom = float(np.sum(s * s))
    a = float(np.sum(s * y)) / denom if denom > 0 else CALIBRATION_SLOPE[1]
    return float(np.clip(a, *CALIBRATION_SLOPE))


def calibrated_rmse(scores, labels, offset: float) -> float:
    """Recording RMSE of ``offset + a (scores - offset)``, ``a`` the
    :func:`calibration_slope` fitted on these same scores and labels."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    a = calibration_slope(s, y, offset)
    return float(np.sqrt(np.mean((offset + a * (s - offset) - y) ** 2)))


def calibrate_slope(model, cfg: dict, settings: SegmentSettings, table: SegmentTable,
                    streams, predictor=None) -> tuple[keras.Model, dict]:
    """The "slope" calibration (``train.calibrate``): the trained model rebuilt
    with ``score_scale`` times :func:`calibration_slope` of ``table``'s recording
    labels on its recording scores; ``cfg["model"]["score_scale"]`` is updated.

    The score head computes ``act(scale * z + offset)``, so a new scale is exactly
    ``offset + a * (score - offset)`` (before the activation): the saved model
    still predicts BDI-II. Returns the new model and a record of the fit.
    """
    seg = predict_segments(model, table, streams, predictor)
    _, rec_pred, rec_true = metrics.aggregate_by_recording(
        table.recording_ids[table.recording], seg, table.labels)
    offset = float(cfg["model"].get("score_offset", 0.0))
    a = calibration_slope(rec_pred, rec_true, offset)
    before = float(np.sqrt(np.mean((rec_pred - rec_true) ** 2)))
    scale = float(cfg["model"].get("score_scale", 1.0))
    cfg["model"]["score_scale"] = scale * a
    calibrated = build_model_from_config(cfg, settings)
    calibrated.set_weights(model.get_weights())
    return calibrated, {"split": cfg["data"]["select_split"], "slope": round(a, 6),
                        "score_scale_before": scale, "rmse_before": round(before, 4)}


def _stopped_early(selection: RecordingLevelSelection, t: dict) -> bool:
    """A resumed run whose committed state already met its patience."""
    return (t["patience"] is not None and selection.history
            and selection.epochs_done - 1 - selection.best_epoch >= t["patience"])


def trainable_params(model) -> int:
    """Trainable parameters (Table VI's count; the input-conditioning statistics of
    the default protocol are non-trainable and not counted)."""
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def _result_header(cfg: dict, params: int) -> dict:
    return {"name": cfg["name"], "model": cfg["model"]["name"],
            "inputs": cfg["model"].get("inputs", "all"), "corpus": cfg["data"]["corpus"],
            "protocol": cfg["protocol"], "params": int(params), "splits": {}}


def _evaluate_splits(model, cfg, tables, streams, scale, train_table, run_dir, result,
                     predictors=None, skip=()):
    for split in cfg["data"]["eval_splits"]:
        if split in skip:
            continue
        res, rows = evaluate_table(model, tables[split], streams, scale,
                                   train_labels=train_table.recording_labels,
                                   predictor=(predictors or {}).get(split),
                                   link=cfg.get("resolved", {}).get("recording_link"))
        result["splits"][split] = res
        write_predictions_csv(run_dir / f"predictions_{split}.csv", rows)


def _train_classical(cfg, tables, train_table, streams, scale, settings, run_dir):
    """Fit a classical reference (StatsRidge, StatsLasso) and write the same run
    directory files."""
    t0 = time.time()
    model = classical.build(cfg["model"]["name"], streams).fit(train_table)
    cfg["resolved"] = {"segment": settings.to_dict(), "streams": list(streams),
                       "scale": scale, "params": model.count_params(), "alpha": model.alpha_}
    write_json_atomic(run_dir / "config.json", cfg)
    model.save(run_dir / classical.MODEL_FILE)
    result = _result_header(cfg, model.count_params())
    result.update({"alpha": model.alpha_, "train_seconds": round(time.time() - t0, 2)})
    _evaluate_splits(model, cfg, tables, streams, scale, train_table, run_dir, result)
    write_json_atomic(run_dir / "metrics.json", result)
    return run_dir, result


def member_config(cfg: dict, k: int) -> dict:
    """Ensemble member ``k``'s config: the run's, one model, seed + 100 k, 1/K of
    the run's ``max_minutes`` (K = the number of members), and its view's entry of
    ``train.member_model`` (:func:`member_layout`) over its ``[model]`` (with a
    cross split, one training split: its folds, see :func:`member_tables`)."""
    m = copy.deepcopy(cfg)
    m.pop("resolved", None)
    m["name"] = f"{cfg['name']}-member{k}"
    m["train"]["ensemble"] = 1
    m["model"] = deep_update(m["model"], member_overrides(cfg, k))
    m["train"]["member_model"] = []
    m["train"]["member_weights"] = "equal"
    m["train"]["recording_link"] = "identity"     # the run's, fitted to all members
    m["train"]["seed"] = cfg["train"]["seed"] + ENSEMBLE_SEED_STEP * k
    if cfg["train"]["member_split"] == "cross":   # its folds come as one training split
        m["train"]["member_split"] = "fixed"
        m["data"]["train_splits"] = m["data"]["train_splits"][:1]
    scale = cfg["train"].get("member_step_scale")
    m["train"]["member_step_scale"] = None
    if scale is not None:                     # its view's step budget
        m["train"]["steps"] = scaled_steps(m["train"]["steps"], scale[member_layout(cfg)[k][1]])
    if m["train"]["max_minutes"]:             # the run's wall-clock budget, shared
        m["train"]["max_minutes"] = m["train"]["max_minutes"] / len(member_layout(cfg))
    return m


def cross_folds(cfg: dict, train_table: SegmentTable, select_table: SegmentTable) -> np.ndarray:
    """``train.member_split = "cross"``: (R_train + R_select,) fold of each pooled
    recording (train recordings first), by subject and stratified by score
    (:func:`~depressionmlp.data.sampler.subject_folds` under the run's seed)."""
    pool = SegmentTable.concat([train_table, select_table])
    try:
        return subject_folds(pool, cfg["train"]["ensemble"], cfg["train"]["seed"])
    except ValueError as e:
        raise DataError(cfg["data"]["data_root"] or "data",
                        f"train.member_split = 'cross': {e} in the pooled "
                        f"{cfg['data']['train_splits']} + {cfg['data']['select_split']} "
                        f"splits") from None


def member_tables(cfg: dict, tables: dict, train_table: SegmentTable, folds,
                  fold: int) -> dict:
    """The tables of an ensemble member on fold ``fold``: the run's, or with ``folds``
    (a cross split) the pooled train + select recordings outside the fold as its
    training split and those in it as its select split."""
    if folds is None:
        return tables
    d = cfg["data"]
    pool = SegmentTable.concat([train_table, tables[d["select_split"]]])
    return {**tables, d["train_splits"][0]: pool.subset(np.flatnonzero(folds != fold)),
            d["select_split"]: pool.subset(np.flatnonzero(folds == fold))}


def view_scores(members, layout, table: SegmentTable, folds, streams):
    """Out-of-fold recording scores of each view: (ids (R,), P (R, V), true (R,)),
    P[r, v] the score of view v's member on recording r's fold (NaN where that fold
    has no member of view v; ``folds``: (R,) fold of each of ``table``'s recordings).
    Each member reads its own of ``streams`` (:class:`SegmentPredictor`)."""
    n_views = 1 + max(v for _, v in layout)
    rec_ids = table.recording_ids
    P = np.full((table.n_recordings, n_views), np.nan)
    true = np.asarray(table.recording_labels, dtype=np.float64)
    where = {rid: i for i, rid in enumerate(rec_ids)}
    for member, (fold, view) in zip(members, layout):
        idx = np.flatnonzero(folds == fold)
        if idx.size:
            part = table.subset(idx)
            r_ids, r_pred, _ = metrics.aggregate_by_recording(
                part.recording_ids[part.recording], predict_segments(member, part, streams),
                part.labels)
            P[[where[r] for r in r_ids], view] = r_pred
    return np.asarray(rec_ids), P, true


def combine_views(P, weights) -> np.ndarray:
    """(R,) weighted mean of each row of ``P`` (R, V) over its views that have a score
    (not NaN), with ``weights`` (V,)."""
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), P.shape)
    has = ~np.isnan(P)
    return np.where(has, P * w, 0.0).sum(axis=1) / np.where(has, w, 0.0).sum(axis=1)


def fit_view_weights(P, y) -> np.ndarray:
    """``train.member_weights = "fit"``: w (V,) >= 0 with sum 1 minimising
    ``||P w - y||`` over recordings (P (R, V) out-of-fold scores, y (R,) labels), by
    non-negative least squares with the sum as a heavily weighted extra row."""
    from scipy.optimize import nnls
    P, y = np.asarray(P, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho = 1e3 * max(1.0, float(np.abs(P).max()))
    w, _ = nnls(np.vstack([P, np.full((1, P.shape[1]), rho)]), np.append(y, rho))
    return w / w.sum()


def fit_recording_link(scores, labels, min_recordings: int = RECORDING_LINK_MIN) -> dict:
    """``train.recording_link = "quadratic"``: the nondecreasing quadratic
    ``y = a + b u + c u^2`` (``u = (z - m) / s``, the scores standardised) of least
    squares over the range of ``scores`` (R,) against ``labels`` (R,), as a record
    for :func:`depressionmlp.metrics.apply_recording_link`.

    The constrained optimum either has ``g' >= 0`` at both ends of the range
    unconstrained, or ``g' = 0`` at one end (``y = a + c (u - end)^2``), or is a line
    (``c = 0``; a constant where the line would fall): the fit with the least squared
    error among those that are nondecreasing is kept. With fewer than
    ``min_recordings`` scores (:data:`RECORDING_LINK_MIN`) three numbers would fit
    noise: the record is the identity, with the reason.
    """
    z = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(z) < max(3, min_recordings):
        return {"kind": "identity", "fitted_on": int(len(z)),
                "reason": f"{len(z)} recordings out of fold, fewer than "
                          f"{max(3, min_recordings)}"}
    if float(z.std()) <= 0:
        return {"kind": "identity"}                 # nothing to fit a curve to
    m, s = float(z.mean()), float(z.std())
    u = (z - m) / s
    lo, hi = float(u.min()), float(u.max())
    ones = np.ones_like(u)
    candidates = [np.linalg.lstsq(np.stack([ones, u, u * u], 1), y, rcond=None)[0]]
    for end in (lo, hi):                            # g' = 0 at one end of the range
        a, c = np.linalg.lstsq(np.stack([ones, (u - end) ** 2], 1), y, rcond=None)[0]
        candidates.append((a + c * end * end, -2.0 * c * end, c))
    a, b = np.linalg.lstsq(np.stack([ones, u], 1), y, rcond=None)[0]
    candidates.append((a, b, 0.0) if b >= 0 else (float(y.mean()), 0.0, 0.0))
    best, best_sse = None, np.inf
    for a, b, c in candidates:
        if min(b + 2 * c * lo, b + 2 * c * hi) < -1e-9:
            continue                                # decreasing somewhere in the range
        sse = float(np.sum((a + b * u + c * u * u - y) ** 2))
        if sse < best_sse:
            best, best_sse = (float(a), float(b), float(c)), sse
    return {"kind": "quadratic", "center": m, "scale": s, "coef": list(best),
            "range": [lo, hi], "fitted_on": int(len(z))}


def out_of_fold(ids, P, true, weights, cfg: dict, select_table: SegmentTable,
                train_labels) -> tuple[dict, list[dict]]:
    """Metrics and rows of the select split with each recording scored by the members
    that held it out (its fold's members, views weighted by ``weights``, then the
    run's ``resolved.recording_link``): a cross ensemble's honest dev. ``ids, P,
    true``: :func:`view_scores` of the select split's recordings."""
    scale = SCALES[cfg["data"]["corpus"]]
    order = np.argsort(ids, kind="stable")
    scores = metrics.apply_recording_link(cfg.get("resolved", {}).get("recording_link"),
                                          combine_views(P, weights))
    result, rows = score_recordings(select_table, ids[order], scores[order],
                                    true[order], scale, train_labels)
    result["out_of_fold"] = True
    return result, rows


def _train_ensemble(cfg, tables, train_table, settings, run_dir, source, callbacks):
    """``train.ensemble = K``: train the members (:func:`member_layout`; each a
    whole run, in ``<run_dir>/members/<j>``; a finished member is kept on resume, a
    killed one resumes), save their mean (or, with ``train.member_weights = "fit"``,
    their view-weighted mean) as ``best.keras`` and evaluate it. With
    ``train.member_split = "cross"`` a member trains and selects on its own folds
    (:func:`member_tables`) and the select split is scored out of fold
    (:func:`out_of_fold`); the other splits score the saved ensemble."""
    from depressionmlp.models import MEMBER_NAME, ensemble_model
    t, d = cfg["train"], cfg["data"]
    layout = member_layout(cfg)
    n_views = 1 + max(v for _, v in layout)
    streams, scale = model_streams(cfg), SCALES[d["corpus"]]
    folds = (cross_folds(cfg, train_table, tables[d["select_split"]])
             if t["member_split"] == "cross" else None)
    # written first: the folder is a started run (train --resume finds it)
    write_json_atomic(run_dir / "config.json", cfg)
    members, records = [], []
    for j, (fold, view) in enumerate(layout):
        member_dir = run_dir / "members" / str(j)
        if not (member_dir / "metrics.json").exists():
            member_dir.mkdir(parents=True, exist_ok=True)
            train(member_config(cfg, j), resume_dir=member_dir,
                  tables=member_tables(cfg, tables, train_table, folds, fold), source=source,
                  callbacks=callbacks, protocol=cfg["protocol"])
        mres = json.loads((member_dir / "metrics.json").read_text())
        mcfg = json.loads((member_dir / "config.json").read_text())
        # rebuilt under a member name (names are unique inside the ensemble); the
        # member's config holds its own calibrated score_scale
        member = build_model_from_config(mcfg, settings, model_name=MEMBER_NAME.format(j))
        member.set_weights(load_model_file(member_dir / "best.keras").get_weights())
        members.append(member)
        records.append({"seed": mcfg["train"]["seed"],
                        "model_overrides": member_overrides(cfg, j),
                        "best_step": mres["best_step"],
                        "steps_run": mres["steps_run"], "train_seconds": mres["train_seconds"],
                        "calibration": mres.get("calibration"),
                        **({"fold": fold, "view": view,
                            "select_recordings": int(np.sum(folds == fold))}
                           if folds is not None else {}),
                        **{f"{s}_rmse": mres["splits"][s]["rmse"] for s in mres["splits"]}})
    view_weights = np.full(n_views, 1.0 / n_views)
    weights = None                                  # the plain mean of the members
    if folds is not None:     # out-of-fold scores of the pooled recordings, train first
        pool = SegmentTable.concat([train_table, tables[d["select_split"]]])
        ids, P, y = view_scores(members, layout, pool, folds, streams)
    if t["member_weights"] == "fit":
        view_weights = fit_view_weights(P, y)
        weights = [float(view_weights[v]) / t["ensemble"] for _, v in layout]
        for r, w in zip(records, weights):
            r["weight"] = w
    model = ensemble_model(members, name=f"{cfg['model']['name'].replace('+', '_')}_ensemble",
                           weights=weights, streams=streams)
    member_params = trainable_params(members[0])
    cfg["resolved"] = {"segment": settings.to_dict(), "streams": list(streams), "scale": scale,
                       "params": member_params, "params_total": trainable_params(model),
                       "ensemble": len(layout), "members": records}
    fitted = ({"view_weights": [round(float(w), 6) for w in view_weights]}
              if weights is not None else {})
    if t["recording_link"] != "identity":      # fitted to the same out-of-fold scores
        fitted["recording_link"] = fit_recording_link(combine_views(P, view_weights), y)
        if "reason" in fitted["recording_link"]:
            log(f"train.recording_link = {t['recording_link']!r} left at the identity: "
                f"{fitted['recording_link']['reason']}")
    cfg["resolved"].update(fitted)
    write_json_atomic(run_dir / "config.json", cfg)
    save_model_atomic(model, run_dir / "best.keras")
    result = _result_header(cfg, member_params)
    result.update({"ensemble": len(layout), "params_total": trainable_params(model),
                   "members": records, **fitted,
                   "best_step": max(r["best_step"] for r in records),
                   "steps_run": sum(r["steps_run"] for r in records),
                   "train_seconds": round(sum(r["train_seconds"] for r in records), 2),
                   **{k: mres[k] for k in ("distribute", "replicas", "precision")}})
    if folds is not None:
        result["member_split"] = "cross"
    _evaluate_splits(model, cfg, tables, streams, scale, train_table, run_dir, result,
                     skip=(d["select_split"],) if folds is not None else ())
    if folds is not None and d["select_split"] in d["eval_splits"]:
        dev = slice(train_table.n_recordings, None)
        res, rows = out_of_fold(ids[dev], P[dev], y[dev], view_weights, cfg,
                                tables[d["select_split"]], train_table.recording_labels)
        write_predictions_csv(run_dir / f"predictions_{d['select_split']}.csv", rows)
        result["splits"] = {s: res if s == d["select_split"] else result["splits"][s]
                            for s in d["eval_splits"]}
    write_json_atomic(run_dir / "metrics.json", result)
    return run_dir, result


# --------------------------------------------------------------------------- load / predict

def load_model_file(path) -> keras.Model:
    """Load a ``.keras`` model with ``safe_mode=True``; a bad file is a DataError."""
    import depressionmlp.layers  # noqa: F401  (registers the custom layers)
    return load_keras_file(path, custom_objects={"rmse_loss": rmse_loss,
                                                 "RecordingRMSE": RecordingRMSE})


def load_run(model_path) -> tuple[keras.Model, dict]:
    """A run directory, or its model file, beside its ``config.json``: a Keras model,
    or the StatsRidge / StatsLasso reference for a classical run."""
    p = Path(model_path)
    if p.is_dir() and (p / classical.MODEL_FILE).exists():
        p = p / classical.MODEL_FILE
    model_file, cfg = run_files(p, "depressionmlp train")
    if model_file.name == classical.MODEL_FILE:
        return classical.load(model_file), cfg
    return load_model_file(model_file), cfg


def predict_file(model, cfg: dict, path) -> dict:
    """Score one OpenFace recording: recording score (the mean of its segment scores
    through the run's ``resolved.recording_link``), severity class, segment scores."""
    from depressionmlp.data.openface import read_recording
    from depressionmlp.data.segments import segment_recording
    settings = SegmentSettings.from_dict(cfg["resolved"]["segment"])
    streams = cfg["resolved"]["streams"]
    scale = cfg["resolved"]["scale"]
    frames = read_recording(path)
    R_X, R_Y, R_AU, info = segment_recording(frames, settings)
    arrays = {"R_X": R_X, "R_Y": R_Y, "R_AU": R_AU}
    seg = np.asarray(model.predict({s: arrays[s] for s in streams}, verbose=0,
                                   batch_size=256)).reshape(-1)
    score = float(metrics.apply_recording_link(cfg["resolved"].get("recording_link"),
                                               [np.mean(seg)])[0])
    return {"file": str(path), "score": score, "severity": metrics.severity_name(score, scale),
            "scale": scale, "segments": len(seg), "segment_scores": [float(v) for v in seg],
            "frames": int(info.get("frames_total", frames.n_frames)),
            "frames_dropped": int(info.get("frames_dropped", 0)),
            "phases": int(info.get("phases", 1))}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
