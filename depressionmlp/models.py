"""Model builder for the eight models of Tables III-VI, and their sizes.

A model is three named parts (Sec. III, Fig. 1):

1. a per-stream block, applied to every input stream separately (one instance
   per stream, not shared **[choice]**, option ``shared_stream_block``):
   ``gMLP`` (:class:`GatedMLPBlock`), ``CLG`` / ``CFG`` (:class:`DualGating`
   with one branch) or ``DG`` (:class:`DualGating`);
2. a fusion of the three streams: none, ``CA`` (:class:`CrossAttentionFusion`),
   ``GPU`` / ``GUP`` (:class:`MutualGuidance` with one arrow) or ``MG``;
3. the "Linear" :class:`ScoreHead` (Eq. 19-20) over whichever streams exist.

Inputs are a dict ``{"R_X", "R_Y", "R_AU"}`` (only those in the input set) of
(batch, M, N) float32 tensors; the output is (batch, 1), named ``"score"``.
"""

from __future__ import annotations

import keras
import numpy as np

from depressionmlp.layers import (ColumnGate, ColumnJitter, CrossAttentionFusion, DualGating,
                                  FaceFrame, GatedMLPBlock, LevelJitter, MotionJitter,
                                  MutualGuidance, ScoreHead, SegmentCentre, SegmentEnergy,
                                  SegmentSpeed, SplitStandardize)

MODEL_NAMES = ("gMLP+Linear", "CLG+Linear", "CFG+Linear", "DG+Linear",
               "DG+CA+Linear", "DG+GPU+Linear", "DG+GUP+Linear", "DG+MG+Linear")

INPUT_SETS = {"xy": ("R_X", "R_Y"), "au": ("R_AU",), "all": ("R_X", "R_Y", "R_AU")}

# name -> (per-stream block, fusion)
MODEL_PARTS = {
    "gMLP+Linear": ("gMLP", None),
    "CLG+Linear": ("CLG", None),
    "CFG+Linear": ("CFG", None),
    "DG+Linear": ("DG", None),
    "DG+CA+Linear": ("DG", "CA"),
    "DG+GPU+Linear": ("DG", "GPU"),
    "DG+GUP+Linear": ("DG", "GUP"),
    "DG+MG+Linear": ("DG", "MG"),
}

# Options accepted by build_model, with their defaults (the design's reading).
DEFAULT_OPTIONS = {
    # DualGating / CLG / CFG
    "clg_softmax_over": "locations",   # [choice] Eq. 10 softmax over N
    "cfg_softmax_over": "frames",      # [choice] L->F embedding softmax over M
    "single_branch_conv": False,       # [choice] CLG/CFG ablations: no C2
    "shared_stream_block": False,      # [choice] one block per stream
    # gMLP baseline
    "gmlp_width": None,                # [choice] D = 2N
    "gmlp_depth": 1,                   # gMLP blocks per stream
    "gmlp_spatial_init": "uniform",    # W2 ~ U(-1e-3, 1e-3), b2 = 1
    "gmlp_spatial_norm": False,        # Eq. 5 as printed: no norm on Z2
    # cross-attention baseline
    "ca_num_heads": 4,
    "ca_key_dim": None,                # N // heads
    "ca_dropout": 0.0,
    # head
    "output_activation": "relu",       # Eq. 20; "linear" as an option
    "score_scale": 1.0,                # [choice] Eq. 20 times a fixed scale (1 = paper)
    "score_offset": 0.0,               # [choice] Eq. 20 plus a fixed offset (0 = paper)
    "head_hidden": 0,                  # [choice] Eq. 19 per-column read-out: 0 = one linear
                                       # C1 (paper), H = C1_{M->H}, GELU, C1_{H->1}
    "head_outputs": 1,                 # [choice] Eq. 19 values per column (1 = paper), K:
                                       # the same K statistics of every column into Eq. 20
    "stream_blocks": True,             # [choice] False: no per-stream block and no fusion,
                                       # Eq. 19-20 read the conditioned inputs (the
                                       # default protocol's view 2)
    # input conditioning (layers/preprocessing.py); the paper feeds Eq. 2-3 directly
    "keypoint_frame": "image",         # [choice] "image" (Eq. 2) or "face" (FaceFrame)
    "keypoint_levels": "keep",         # [choice] "keep", "drop" (SegmentCentre on R_X, R_Y)
                                       # "speed" (SegmentSpeed on R_X, R_Y) or
                                       # "energy" (SegmentEnergy on R_X, R_Y; the
                                       # default protocol's)
    "au_levels": "keep",               # [choice] "keep" (Eq. 3) or "interleave" (Eq. 3's
                                       # interpolated columns read as energy;
                                       # SegmentEnergy(columns="odd") on R_AU)
    "standardize": False,              # [choice] False, True/"column" or "split" (train stats)
    "column_jitter": 0.0,              # [choice] training-only offsets per column (sd), or
                                       # one sd per stream: {"R_X": .., "R_Y": .., "R_AU": ..}
    "column_jitter_group": 1,          # [choice] consecutive samples sharing one offset
    "level_jitter": 0.0,               # [choice] training-only offsets shaped like level
                                       # differences between segments (LevelJitter, sd)
    "motion_jitter": 0.0,              # [choice] training-only log-gains on each column's
                                       # motion (MotionJitter, sd; column_jitter_group shares)
    "column_dropout": 0.0,             # [choice] training-only: drop whole columns of a
                                       # segment (SpatialDropout1D, rate)
    "column_gate_l1": 0.0,             # [choice] a trained gain per column under this L1
                                       # penalty (ColumnGate; 0 = no gate)
}

KEYPOINT_FRAMES = ("image", "face")
KEYPOINT_LEVELS = ("keep", "drop", "speed", "energy")
AU_LEVELS = ("keep", "interleave")
STANDARDIZE_MODES = (False, True, "column", "split")


def allowed_input_sets(name: str, stream_blocks: bool = True) -> tuple[str, ...]:
    """Input sets a model accepts: fusion models need all three streams, unless
    ``stream_blocks`` is False (no blocks and no fusion: Eq. 19-20 read any set)."""
    _check_name(name)
    if MODEL_PARTS[name][1] is None or not stream_blocks:
        return tuple(INPUT_SETS)
    return ("all",)


def _check_name(name):
    if name not in MODEL_PARTS:
        raise ValueError(f"Unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}.")


def resolve_inputs(name, inputs, stream_blocks: bool = True) -> str:
    """The input-set key ('xy' | 'au' | 'all') of ``inputs`` (a key or the matching
    tuple of stream names) for model ``name``; a ValueError names a set it does not
    accept (see :func:`allowed_input_sets`)."""
    key = inputs
    if isinstance(inputs, (list, tuple)):
        matches = [k for k, v in INPUT_SETS.items() if tuple(inputs) == v]
        key = matches[0] if matches else None
    if key not in INPUT_SETS:
        raise ValueError(
            f"Unknown input set {inputs!r}; allowed: "
            + ", ".join(f"{k!r} {v}" for k, v in INPUT_SETS.items()) + ".")
    allowed = allowed_input_sets(name, stream_blocks)
    if key not in allowed:
        raise ValueError(
            f"Model {name!r} does not accept inputs={key!r}: it fuses keypoint and AU "
            f"streams and needs all three; allowed input sets: {', '.join(allowed)}. "
            f"Models that accept 'xy' or 'au': "
            f"{', '.join(n for n in MODEL_NAMES if MODEL_PARTS[n][1] is None)}, "
            f"or any model with stream_blocks = false.")
    return key


def _resolve_options(options):
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown model option(s) {unknown}; allowed: {sorted(DEFAULT_OPTIONS)}.")
    merged = dict(DEFAULT_OPTIONS)
    merged.update(options)
    return merged


def _stream_block(block, opts, name):
    """One per-stream block instance: (batch, M, N) -> (batch, M, N)."""
    if block == "gMLP":
        layers = [GatedMLPBlock(width=opts["gmlp_width"], spatial_init=opts["gmlp_spatial_init"],
                                spatial_norm=opts["gmlp_spatial_norm"],
                                name=name if opts["gmlp_depth"] == 1 else f"{name}_{i}")
                  for i in range(int(opts["gmlp_depth"]))]
        if not layers:
            raise ValueError(f"gmlp_depth must be >= 1, got {opts['gmlp_depth']}.")
        return layers
    branches = {"DG": "both", "CLG": "clg", "CFG": "cfg"}[block]
    return [DualGating(branches=branches, clg_softmax_over=opts["clg_softmax_over"],
                       cfg_softmax_over=opts["cfg_softmax_over"],
                       single_branch_conv=opts["single_branch_conv"], name=name)]


def _fusion(fusion, opts):
    if fusion == "CA":
        return CrossAttentionFusion(num_heads=opts["ca_num_heads"], key_dim=opts["ca_key_dim"],
                                    dropout=opts["ca_dropout"], name="cross_attention")
    if fusion in ("GPU", "GUP", "MG"):
        return MutualGuidance(guide_au=fusion in ("GPU", "MG"),
                              guide_keypoints=fusion in ("GUP", "MG"),
                              name="mutual_guidance")
    raise ValueError(f"Unknown fusion {fusion!r}.")


def _blocks_and_fusion(streams_in: list, streams: tuple, block: str, fusion, opts) -> list:
    """Parts 1-2 of the model: the per-stream blocks, then the fusion (if any)."""
    shared = _stream_block(block, opts, f"shared_{block.lower()}") \
        if opts["shared_stream_block"] else None
    outputs = []
    for s, x in zip(streams, streams_in):
        for layer in shared or _stream_block(block, opts, f"{s}_{block.lower()}"):
            x = layer(x)
        outputs.append(x)
    return _fusion(fusion, opts)(outputs) if fusion is not None else outputs


def build_model(name: str = "DG+MG+Linear", inputs="all", segment_length: int = 18,
                n_points: int = 68, model_name: str | None = None, **options) -> keras.Model:
    """Build one of :data:`MODEL_NAMES` as a functional Keras model.

    Args:
        name: one of :data:`MODEL_NAMES` (default "DG+MG+Linear" = DepressionMLP).
        inputs: ``"xy"``, ``"au"`` or ``"all"`` (or the tuple of stream names
            in :data:`INPUT_SETS`). The four fusion models accept only "all"
            (any set with ``stream_blocks = False``: nothing is fused).
        segment_length: M, frames per segment (18). Must be even for the
            DG / CLG / CFG blocks.
        n_points: N, columns per stream (68). Must be even for DG / CLG / CFG.
        model_name: the Keras model's name (default: ``name`` with "+" -> "_").
        **options: see :data:`DEFAULT_OPTIONS`: ``clg_softmax_over``
            ("locations"), ``cfg_softmax_over`` ("frames"), ``single_branch_conv``
            (False), ``shared_stream_block`` (False), ``gmlp_width`` (None -> 2N),
            ``gmlp_depth`` (1), ``gmlp_spatial_init`` ("uniform"),
            ``gmlp_spatial_norm`` (False), ``ca_num_heads`` (4), ``ca_key_dim``
            (None -> N // heads), ``ca_dropout`` (0.0), ``output_activation``
            ("relu" per Eq. 20, or "linear"), ``score_scale`` (1.0; see ScoreHead).

    Returns:
        ``keras.Model`` named e.g. "DG_MG_Linear", inputs a dict of
        ``keras.Input((M, N), name=stream)``, output (batch, 1) named "score".

    Raises:
        ValueError: unknown name / input set / option, a fusion model with
            fewer than three streams, or odd M / N for a gating block.
    """
    _check_name(name)
    opts = _resolve_options(options)
    if not isinstance(opts["stream_blocks"], bool):
        raise ValueError(f"stream_blocks must be true or false, got {opts['stream_blocks']!r}.")
    key = resolve_inputs(name, inputs, opts["stream_blocks"])
    block, fusion = MODEL_PARTS[name]
    for what, value in (("segment_length", segment_length), ("n_points", n_points)):
        if int(value) != value or int(value) < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}.")
        if block != "gMLP" and int(value) % 2:
            raise ValueError(
                f"{what} must be even for {name!r}: the {block} block splits frames "
                f"(M) and locations (N) into halves; got {value}.")
    m, n = int(segment_length), int(n_points)

    streams = INPUT_SETS[key]
    model_inputs = {s: keras.Input(shape=(m, n), name=s, dtype="float32") for s in streams}
    conditioned = _condition_inputs(model_inputs, opts)
    outputs = [conditioned[s] for s in streams]
    if opts["stream_blocks"]:
        outputs = _blocks_and_fusion(outputs, streams, block, fusion, opts)
    score = ScoreHead(num_streams=len(outputs), output_activation=opts["output_activation"],
                      score_scale=opts["score_scale"], score_offset=opts["score_offset"],
                      hidden=opts["head_hidden"], column_outputs=opts["head_outputs"],
                      # float32 under a mixed precision policy too (depressionmlp/scaling.py)
                      dtype="float32",
                      name="score")(outputs if len(outputs) > 1 else outputs[0])
    return keras.Model(inputs=model_inputs, outputs=score,
                       name=model_name or name.replace("+", "_"))


#: Name of the i-th member model inside an ensemble model (:func:`ensemble_model`).
MEMBER_NAME = "member_{}"


def ensemble_model(members: list, name: str = "ensemble", weights=None,
                   streams=None) -> keras.Model:
    """The mean score of ``members`` (``train.ensemble``): one functional model
    holding the K member models, named ``member_0`` ... ``member_{K-1}``.

    Args:
        members: K >= 2 models, each with an input dict {stream: (batch, M, N)} of
            its own streams (views may read different streams, e.g. a view on the
            AUs alone) and a (batch, 1) score, named :data:`MEMBER_NAME` (unique
            names).
        name: the ensemble model's name.
        weights: None (the plain mean, ``keras.layers.Average``) or K floats >= 0
            summing to 1 (:class:`~depressionmlp.layers.WeightedMean`,
            ``train.member_weights = "fit"``).
        streams: the ensemble's input streams (the run's, a superset of what the
            members read; one no member reads is an unused input); default: every
            stream some member reads. Each member is called on its own streams.

    Returns:
        ``keras.Model``, inputs {stream: (batch, M, N)} for ``streams`` (in
        :data:`INPUT_SETS` order), output (batch, 1) = mean of the K scores,
        named "score".
    """
    from depressionmlp.layers import WeightedMean
    shapes = {}
    for m in members:
        shapes.update({s: tuple(t.shape[1:]) for s, t in m.input.items()})
    wanted = set(shapes if streams is None else streams)
    missing = sorted(set(shapes) - wanted)
    if missing:
        raise ValueError(f"ensemble_model: members read {missing}, not among the "
                         f"ensemble's streams {sorted(wanted)}.")
    # a stream no member reads stays an (unused) input: the streams share (M, N)
    inputs = {s: keras.Input(shape=shapes.get(s, next(iter(shapes.values()))), name=s,
                             dtype="float32")
              for s in INPUT_SETS["all"] if s in wanted}
    scores = [m({s: inputs[s] for s in input_streams(m)}) for m in members]
    combine = (keras.layers.Average(name="score", dtype="float32") if weights is None else
               WeightedMean(weights, name="score", dtype="float32"))
    return keras.Model(inputs, combine(scores), name=name)


def input_streams(model: keras.Model) -> tuple[str, ...]:
    """The streams a model reads ({"R_X", "R_Y", "R_AU"} names of its input dict),
    in :data:`INPUT_SETS` order."""
    return tuple(s for s in INPUT_SETS["all"] if s in model.input)


def ensemble_members(model: keras.Model) -> list:
    """The member models of an :func:`ensemble_model`; ``[model]`` for a single model."""
    names = {l.name for l in model.layers}
    members, k = [], 0
    while MEMBER_NAME.format(k) in names:
        members.append(model.get_layer(MEMBER_NAME.format(k)))
        k += 1
    return members or [model]


def stream_model(model: keras.Model, prefix: str) -> keras.Model:
    """Sub-model from a model's inputs to the output of its last layer whose name
    starts with ``prefix`` (e.g. ``"R_AU_dg"``: the AU stream after Dual Gating,
    Fig. 6; ``"mutual_guidance"``: D_UX, D_UY, D_PU, Fig. 7). For an ensemble, of
    its first member (the members share the architecture, not the weights)."""
    model = ensemble_members(model)[0]
    layers = [l for l in model.layers if l.name.startswith(prefix)]
    if not layers:
        raise ValueError(f"model {model.name} has no layer named {prefix}*")
    return keras.Model(model.inputs, layers[-1].output, name=f"{model.name}_{prefix}")


def per_stream(value, name: str):
    """``value`` (a number >= 0, or a mapping stream -> number >= 0, absent streams 0)
    as a function stream -> float; a ValueError names a bad value or stream."""
    table = value if isinstance(value, dict) else None
    if table is not None:
        streams = INPUT_SETS["all"]
        unknown = sorted(set(table) - set(streams))
        if unknown:
            raise ValueError(f"{name} streams must be among {list(streams)}, got {unknown}.")
    for v in (table.values() if table is not None else [value]):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name} must be >= 0, got {v!r}.")
    if table is not None:
        return lambda stream: float(table.get(stream, 0.0))
    return lambda stream: float(value)


def _condition_inputs(model_inputs: dict, opts: dict) -> dict:
    """Optional FaceFrame / standardisation / jitter in front of the blocks."""
    if opts["keypoint_frame"] not in KEYPOINT_FRAMES:
        raise ValueError(f"keypoint_frame must be one of {KEYPOINT_FRAMES}, "
                         f"got {opts['keypoint_frame']!r}.")
    if opts["keypoint_levels"] not in KEYPOINT_LEVELS:
        raise ValueError(f"keypoint_levels must be one of {KEYPOINT_LEVELS}, "
                         f"got {opts['keypoint_levels']!r}.")
    if opts["au_levels"] not in AU_LEVELS:
        raise ValueError(f"au_levels must be one of {AU_LEVELS}, got {opts['au_levels']!r}.")
    if not float(opts["level_jitter"]) >= 0:
        raise ValueError(f"level_jitter must be >= 0, got {opts['level_jitter']!r}.")
    jitter = per_stream(opts["column_jitter"], "column_jitter")
    if not float(opts["motion_jitter"]) >= 0:
        raise ValueError(f"motion_jitter must be >= 0, got {opts['motion_jitter']!r}.")
    if not 0 <= float(opts["column_dropout"]) < 1:
        raise ValueError(f"column_dropout must be in [0, 1), got {opts['column_dropout']!r}.")
    mode = opts["standardize"]
    if not any(mode is m or (isinstance(m, str) and mode == m) for m in STANDARDIZE_MODES):
        raise ValueError(f"standardize must be one of {STANDARDIZE_MODES}, got {mode!r}.")
    out = dict(model_inputs)
    if opts["keypoint_frame"] == "face" and "R_X" in out:
        out["R_X"], out["R_Y"] = FaceFrame(name="face_frame")([out["R_X"], out["R_Y"]])
    if opts["keypoint_levels"] != "keep":
        layer, prefix = {"drop": (SegmentCentre, "centre"),
                         "speed": (SegmentSpeed, "speed"),
                         "energy": (SegmentEnergy, "energy")}[opts["keypoint_levels"]]
        for s in ("R_X", "R_Y"):
            if s in out:
                out[s] = layer(name=f"{prefix}_{s}")(out[s])
    if opts["au_levels"] == "interleave" and "R_AU" in out:
        out["R_AU"] = SegmentEnergy(columns="odd", name="energy_R_AU")(out["R_AU"])
    for s in list(out):
        if mode == "split":
            out[s] = SplitStandardize(name=f"standardize_{s}")(out[s])
        elif mode:
            out[s] = keras.layers.Normalization(axis=-1, name=f"standardize_{s}")(out[s])
        if jitter(s):
            out[s] = ColumnJitter(jitter(s), int(opts["column_jitter_group"]),
                                  name=f"jitter_{s}")(out[s])
        if opts["motion_jitter"]:
            out[s] = MotionJitter(float(opts["motion_jitter"]), int(opts["column_jitter_group"]),
                                  name=f"motion_jitter_{s}")(out[s])
        if opts["level_jitter"]:
            out[s] = LevelJitter(float(opts["level_jitter"]), name=f"level_jitter_{s}")(out[s])
        if opts["column_dropout"]:
            out[s] = keras.layers.SpatialDropout1D(float(opts["column_dropout"]),
                                                   name=f"column_dropout_{s}")(out[s])
        if opts["column_gate_l1"]:
            out[s] = ColumnGate(float(opts["column_gate_l1"]), name=f"column_gate_{s}")(out[s])
    return out


def adapt_inputs(model: keras.Model, arrays: dict) -> None:
    """Adapt the input-conditioning layers to ``arrays`` (the training split's
    segments, {stream: (S, M, N)}): every ``standardize_<stream>`` layer first (on
    its input, after any FaceFrame), then every ``level_jitter_<stream>`` (on the
    standardised segments)."""
    names = {l.name for l in model.layers}
    for prefix in ("standardize_", "level_jitter_"):
        layers = {s: model.get_layer(prefix + s) for s in model.input if prefix + s in names}
        if not layers:
            continue
        probe = keras.Model(model.input, {s: layer.input for s, layer in layers.items()})
        # eager calls, not probe.predict: each predict of a new probe traces a function
        # of its own (twice, for the last partial batch), and a process that builds
        # many models (ensembles, the suite) would end in TensorFlow's retracing warning
        n = len(next(iter(arrays.values())))
        parts = [probe({s: arrays[s][i:i + 1024] for s in model.input}, training=False)
                 for i in range(0, n, 1024)]
        for s, layer in layers.items():
            layer.adapt(np.concatenate([np.asarray(p[s]) for p in parts]))


def build_from_config(config: dict) -> keras.Model:
    """``build_model`` from a dict ``{"name", "inputs", "segment_length",
    "n_points", **options}``; missing keys take build_model's defaults."""
    cfg = dict(config)
    kwargs = {k: cfg.pop(k) for k in ("name", "inputs", "segment_length", "n_points")
              if k in cfg}
    return build_model(**kwargs, **cfg)


def _layer_flops(layer) -> int:
    if hasattr(layer, "count_flops"):
        return int(layer.count_flops())
    if isinstance(layer, (keras.layers.Normalization, SplitStandardize, LevelJitter)):
        return 0                       # input standardisation: element-wise, not counted
    if isinstance(layer, keras.layers.Dense):
        shape = layer.input.shape if hasattr(layer, "input") else None
        rows = 1
        for d in (shape[1:-1] if shape is not None else ()):
            rows *= int(d)
        return 2 * rows * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    if layer.weights:
        raise ValueError(f"count: no FLOP rule for layer {layer.name!r} "
                         f"({layer.__class__.__name__}).")
    return 0


def count(model: keras.Model) -> dict:
    """Parameters and FLOPs of one forward pass of one segment (batch 1).

    Convention (analytical, per layer): FLOPs = 2 x multiply-accumulates of
    every linear map (Dense / Conv1D / 1x1 Conv2D / einsum projections, and the
    attention score ``Q K^T`` and weighted sum ``A V``). Bias adds,
    activations, softmax, LayerNorm, gating products and residual adds are not
    counted (they are O(M*N) per layer, under 1 % here). A layer applied to k
    streams (``shared_stream_block``) counts k times.

    Returns:
        ``{"params": int, "flops": int}``; params are the trainable weights (the
        default protocol's standardisation statistics are not parameters).
    """
    flops = 0
    calls = {entry["name"]: max(1, len(entry.get("inbound_nodes") or [None]))
             for entry in model.get_config()["layers"]}
    for layer in model.layers:
        flops += calls.get(layer.name, 1) * _layer_flops(layer)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {"params": params, "flops": int(flops)}


def count_all(segment_length: int = 18, n_points: int = 68, inputs="all",
              **options) -> dict:
    """``{name: count(build_model(name, inputs, ...))}`` for every model that
    accepts ``inputs`` (all eight for "all", Table VI)."""
    table = {}
    for name in MODEL_NAMES:
        if _resolve_key_quietly(inputs) in allowed_input_sets(name):
            model = build_model(name, inputs, segment_length, n_points, **options)
            table[name] = count(model)
    return table


def _resolve_key_quietly(inputs):
    if isinstance(inputs, (list, tuple)):
        for k, v in INPUT_SETS.items():
            if tuple(inputs) == v:
                return k
    return inputs
