"""HMHN and its ablation rows as Keras functional models (Sec. 3, Tables 3-5, Fig. 6-7).

``build_hmhn(row="E", heads=4, grid=(3, 3), kernels="3x3,1x3,3x1", input_size=224)``
returns a ``keras.Model`` from an image ``(B, S, S, 3)`` of pixel values in [0, 255]
to the BDI-II score ``(B, 1)``. Rows (Tables 3-4), with ``trunk = stem -> stages``
(ResNet-18 without pooling / FC) and ``FT_i`` as in ``ft`` (default: 3x3 conv + BN):

====  ==========================  ===============================================================
row   paper                       graph
====  ==========================  ===============================================================
A     ResNet-18 (backbone)        trunk(g) -> GAP -> head
B     ResNet-18 + GWA             trunk(GWA(g)) -> GAP -> head
C     ResNet-18 + GWA + DFF       trunk(FT1(g) + FT2(GWA(g))) -> GAP -> head              (Eq. 7)
D     ResNet-18 + MAB + AFB       trunk(g) -> k heads -> partition loss -> fusion -> head (DAN)
E     all (HMHN, default)         trunk(FT1(g) + FT2(GWA(g))) -> k heads -> partition -> fusion
                                  -> head
====  ==========================  ===============================================================

Every row ends in the same :class:`hmhn.layers.RegressionHead` (``head``: features
standardised per sample -> dropout 0.2 -> Dense -> ``target_mean + target_std * z``), so the rows
differ only by their named modules. With ``ft="stem"`` (the former reading) FT_i is a
ResNet-18 stem each and DFF the four stages.

The head features for the partition loss are exposed in the graph: the layer named
``partition_loss`` (:class:`hmhn.layers.PartitionLoss`) receives the stacked heads
``(B, k, C)``, adds ``L_att`` (Eq. 11) with ``add_loss`` and passes them on, so
``model.compile(loss="mse")`` trains on Eq. 10 and ``predict`` returns only the score.
:func:`head_feature_model` / :func:`attention_model` give sub-models for the heads'
vectors and their spatial maps (Fig. 1).

Parameters are counted PyTorch-style (trainable weights only: BN moving statistics
are buffers there): :func:`count_params`. The default counts 19,720,932 (19.72 M, Table
5): ResNet-18 features 11,176,512 + 4 heads x 2,135,904 + the head's Dense 513, plus
FT1 and FT2 (87 each) and the LGFE (117 at k=4). DAN's own structure (row D with
``head="dan"``, whose output BN has 2 parameters) counts 19,720,643; ``ft="stem"``
gives 19,730,294 (19.73 M).
"""

from __future__ import annotations

import keras
import numpy as np

from hmhn.layers import (BN_MOMENTUM, DEFAULT_KERNELS, FT_VARIANTS, HEAD_VARIANTS,
                         KERNEL_SETS, PAPER_PARAMS_M, AttentionFusion, CrossAttentionHead,
                         DeepFeatureFusion, FeatureTransform, GridWiseAttention, PartitionLoss,
                         RegressionHead, ResNetStem, grid_name, kernels_name, parse_grid,
                         parse_kernels)

ROWS = {
    "A": {"gwa": False, "dff": False, "mab": False},
    "B": {"gwa": True, "dff": False, "mab": False},
    "C": {"gwa": True, "dff": True, "mab": False},
    "D": {"gwa": False, "dff": False, "mab": True},
    "E": {"gwa": True, "dff": True, "mab": True},
}
ROW_NAMES = {"A": "ResNet18 (backbone)", "B": "ResNet18+GWA", "C": "ResNet18+GWA+DFF",
             "D": "ResNet18+MAB+AFB", "E": "ResNet18+DFF+GWA+MAB+AFB (HMHN)"}

#: Tables 3-4 (test set, MAE / RMSE), for reports.
PAPER_ABLATION = {
    "avec2013": {"A": (8.47, 9.32), "B": (7.68, 8.31), "C": (7.49, 8.29), "D": (6.88, 7.91),
                 "E": (6.05, 7.38)},
    "avec2014": {"A": (8.38, 9.13), "B": (7.57, 8.47), "C": (7.41, 8.46), "D": (6.90, 8.13),
                 "E": (6.01, 7.60)},
}

#: ImageNet channel statistics (on [0, 1] pixels), as torchvision's Normalize in DAN.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULTS = {
    "row": "E", "heads": 4, "grid": (3, 3), "kernels": DEFAULT_KERNELS, "input_size": 224,
    "lgfe_width": 4, "width": 64, "softmax_axis": "tiles", "fit": "pad", "ft": "conv3x3",
    "fusion": "log_softmax_sum", "dropout": 0.2, "partition_variant": "eq11",
    "partition_weight": 1.0, "partition_epsilon": 1e-6, "partition_ddof": 1,
    "head": "standardized", "head_norm": "layer", "head_init_scale": 0.1,
    "target_mean": 0.0, "target_std": 1.0,
    "bn_momentum": BN_MOMENTUM, "normalize": "imagenet",
}


def build_hmhn(row: str = "E", heads: int = 4, grid=(3, 3), kernels=DEFAULT_KERNELS,
               input_size: int = 224, *, lgfe_width: int = 4, width: int = 64,
               softmax_axis: str = "tiles", fit: str = "pad", ft: str = "conv3x3",
               fusion: str = "log_softmax_sum", dropout: float = 0.2,
               partition_variant: str = "eq11", partition_weight: float = 1.0,
               partition_epsilon: float = 1e-6, partition_ddof: int = 1,
               head: str = "standardized", head_norm: str = "layer",
               head_init_scale: float = 0.1,
               target_mean: float = 0.0, target_std: float = 1.0,
               bn_momentum: float = BN_MOMENTUM, normalize: str = "imagenet",
               name: str | None = None) -> keras.Model:
    """Build one HMHN configuration; see the module docstring for the rows.

    Args:
        row: ablation row "A".."E" (E = full HMHN).
        heads: cross-attention heads k (rows D/E; Fig. 6 sweeps 1..8).
        grid: GWA grid (rows B/C/E): ``(3, 3)``, ``"2x2"``, ``"none"`` (Fig. 7).
        kernels: spatial-attention kernel set (Table 5), e.g. ``"standard"``.
        input_size: square input side (224 in the paper; 64/96 for CPU tests).
        lgfe_width, softmax_axis, fit: GWA choices (:class:`GridWiseAttention`).
        width: ResNet first-stage channels (64 = ResNet-18; smaller only for tests).
        ft: **[choice]** Eq. 7's FT_i (rows C/E): ``"conv3x3"`` (default) /
            ``"conv1x1"``: :class:`FeatureTransform` on the images, DFF = the ResNet-18
            trunk; ``"stem"``: a ResNet-18 stem each, DFF = the four stages.
        fusion: AFB's fusion of the heads (:class:`AttentionFusion`).
        dropout, head, head_norm, head_init_scale, target_mean, target_std: the score
            head of every row (:class:`RegressionHead`: ``head`` is its variant,
            ``head_norm`` its ``feature_norm``, ``head_init_scale`` its ``init_scale``).
        partition_variant, partition_weight, partition_epsilon, partition_ddof:
            Eq. 11 (:class:`PartitionLoss`).
        bn_momentum: Keras momentum of every BatchNormalization (0.9 = PyTorch's 0.1);
            0 makes the moving statistics those of the last batch seen in training mode
            (used by precise-BN recalibration, :func:`hmhn.train.recalibrate_batchnorm`).
        normalize: **[choice]** ``"imagenet"`` (default): pixels / 255, then ImageNet
            mean/std per channel (as DAN's transforms); ``"unit"``: pixels / 255 only.
    """
    row = str(row).upper()
    if row not in ROWS:
        raise ValueError(f"row must be one of {sorted(ROWS)}, got {row!r}")
    parts = ROWS[row]
    heads = int(heads)
    if parts["mab"] and not 1 <= heads <= 64:
        raise ValueError(f"heads must be in 1..64, got {heads}")
    grid = parse_grid(grid)
    kernels = parse_kernels(kernels)
    input_size = int(input_size)
    if input_size < 32:
        raise ValueError(f"input_size must be >= 32 (ResNet-18 downsamples by 32), "
                         f"got {input_size}")
    if normalize not in ("imagenet", "unit"):
        raise ValueError(f"normalize must be 'imagenet' or 'unit', got {normalize!r}")
    if ft not in FT_VARIANTS:
        raise ValueError(f"ft must be one of {FT_VARIANTS}, got {ft!r}")
    if head not in HEAD_VARIANTS:
        raise ValueError(f"head must be one of {HEAD_VARIANTS}, got {head!r}")
    m = float(bn_momentum)

    image = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    if normalize == "imagenet":
        x = keras.layers.Normalization(mean=list(IMAGENET_MEAN),
                                       variance=[s * s for s in IMAGENET_STD],
                                       name="normalize")(x)
    g = x
    if parts["gwa"]:
        g_tilde = GridWiseAttention(grid, lgfe_width=lgfe_width, softmax_axis=softmax_axis,
                                    fit=fit, bn_momentum=m, name="gwa")(g)
    if parts["dff"] and ft == "stem":
        ft_sum = keras.layers.Add(name="ft_sum")([
            ResNetStem(width, bn_momentum=m, name="ft1")(g),
            ResNetStem(width, bn_momentum=m, name="ft2")(g_tilde)])
        feats = DeepFeatureFusion(width, bn_momentum=m, name="dff")(ft_sum)       # Eq. 7
    elif parts["dff"]:
        k = 3 if ft == "conv3x3" else 1
        ft_sum = keras.layers.Add(name="ft_sum")([
            FeatureTransform(k, bn_momentum=m, name="ft1")(g),
            FeatureTransform(k, bn_momentum=m, name="ft2")(g_tilde)])
        stem = ResNetStem(width, bn_momentum=m, name="dff_stem")(ft_sum)
        feats = DeepFeatureFusion(width, bn_momentum=m, name="dff")(stem)          # Eq. 7
    else:
        stem_in = g_tilde if parts["gwa"] else g
        stem = ResNetStem(width, bn_momentum=m, name="stem")(stem_in)
        feats = DeepFeatureFusion(width, bn_momentum=m, name="stages")(stem)
    channels = 8 * width

    if parts["mab"]:
        outs = [CrossAttentionHead(channels, kernels, bn_momentum=m, name=f"head{i + 1}")(feats)
                for i in range(heads)]
        stacked = (keras.layers.Concatenate(name="heads_concat")(outs) if heads > 1
                   else outs[0])
        stacked = keras.layers.Reshape((heads, channels), name="heads")(stacked)
        stacked = PartitionLoss(partition_variant, partition_weight, partition_epsilon,
                                partition_ddof, dtype="float32",      # the loss in float32
                                name="partition_loss")(stacked)
        fused = AttentionFusion(fusion, name="afb")(stacked)
    else:
        fused = keras.layers.GlobalAveragePooling2D(name="gap")(feats)
    score = RegressionHead(head, dropout, feature_norm=head_norm, bn_momentum=m,
                           init_scale=head_init_scale,
                           target_mean=target_mean, target_std=target_std,
                           dtype="float32",     # float32 under mixed precision too
                           name="head")(fused)
    score = keras.layers.Identity(name="score", dtype="float32")(score)
    if name is None:
        name = config_name(row=row, heads=heads, grid=grid, kernels=kernels)
    return keras.Model(image, score, name=_safe_name(name))


def build_from_config(model_cfg: dict) -> keras.Model:
    """``build_hmhn(**model_cfg)`` ignoring the keys that are not builder arguments."""
    keys = set(DEFAULTS) | {"name"}
    return build_hmhn(**{k: v for k, v in model_cfg.items() if k in keys})


def config_name(row="E", heads=4, grid=(3, 3), kernels=DEFAULT_KERNELS) -> str:
    """Short, stable name: ``hmhn-E-k4-g3x3-3x3,1x3,3x1`` (only the parts the row uses)."""
    row = str(row).upper()
    parts = [f"hmhn-{row}"]
    if ROWS[row]["mab"]:
        parts.append(f"k{int(heads)}")
    if ROWS[row]["gwa"]:
        parts.append(f"g{grid_name(grid)}")
    if ROWS[row]["mab"]:
        parts.append(kernels_name(kernels))
    return "-".join(parts)


def _safe_name(name: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name)


# --------------------------------------------------------------------------- inspection

def count_params(model: keras.Model, trainable_only: bool = True) -> int:
    """Parameters, PyTorch-style by default (trainable weights; BN moving stats excluded)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(np.prod(w.shape)) for w in weights))


def regression_head(model: keras.Model) -> RegressionHead:
    """The model's score head (the layer named ``head``)."""
    return model.get_layer("head")


def head_layers(model: keras.Model) -> list:
    return [l for l in model.layers if isinstance(l, CrossAttentionHead)]


def feature_model(model: keras.Model) -> keras.Model:
    """Sub-model image -> ``G_bar`` (the features the heads see, ``(B, h, w, C)``)."""
    for name in ("dff", "stages"):
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        return keras.Model(model.inputs[0], layer.output, name="features")
    raise ValueError(f"model {model.name} has no 'dff'/'stages' layer")


def head_feature_model(model: keras.Model) -> keras.Model:
    """Sub-model image -> stacked head vectors ``(B, k, C)`` (rows D/E)."""
    return keras.Model(model.inputs[0], model.get_layer("heads").output, name="head_features")


def attention_maps(model: keras.Model, images) -> np.ndarray:
    """Per-head spatial attention maps ``(B, k, h, w)`` (Fig. 1), inference mode."""
    heads = head_layers(model)
    if not heads:
        raise ValueError(f"model {model.name} has no cross-attention heads (rows D/E only)")
    feats = feature_model(model)(np.asarray(images, dtype=np.float32), training=False)
    maps = [np.asarray(h.spatial.attention_map(feats, training=False))[..., 0] for h in heads]
    return np.stack(maps, axis=1)


# --------------------------------------------------------------------------- counting

def count_configurations(input_size: int = 224) -> dict:
    """Trainable parameters per configuration, built at ``input_size``.

    Keys: ``"default"`` (row E, 4 heads, 3x3 grid, kernels 3x3,1x3,3x1),
    ``"kernels=<Table 5 row>"``, ``"row=<A..E>"``, ``"heads=<1..8>"``,
    ``"grid=<none|2x2|..|5x5>"``. Counts do not depend on ``input_size``.
    """
    out = {}

    def count(**kw):
        model = build_hmhn(input_size=input_size, **kw)
        n = count_params(model)
        del model
        keras.backend.clear_session(free_memory=True)
        return n

    out["default"] = count()
    for k in KERNEL_SETS:
        out[f"kernels={k}"] = out["default"] if k == DEFAULT_KERNELS else count(kernels=k)
    for r in ROWS:
        out[f"row={r}"] = out["default"] if r == "E" else count(row=r)
    for h in range(1, 9):
        out[f"heads={h}"] = out["default"] if h == 4 else count(heads=h)
    for gname in ("none", "2x2", "3x3", "4x4", "5x5"):
        out[f"grid={gname}"] = out["default"] if gname == "3x3" else count(grid=gname)
    return out


def paper_params(key: str) -> float | None:
    """The paper's Table 5 count (millions) for a ``count_configurations`` key, if any."""
    if key == "default":
        return PAPER_PARAMS_M[DEFAULT_KERNELS]
    if key.startswith("kernels="):
        return PAPER_PARAMS_M.get(key.split("=", 1)[1])
    return None
