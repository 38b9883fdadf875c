"""Per-head attention maps over the face (Fig. 1): ``python -m hmhn explain``.

For each image, the spatial attention map of every cross-attention head
(:meth:`hmhn.layers.SpatialAttention.attention_map`, ``(h, w)`` = 7 x 7 at 224 input)
is upsampled to the image, min-max normalised per head, and drawn as a heatmap over
the face: one PNG per image, the original in the first column and one head per
column after it (a matplotlib Figure drawn off screen, whatever the backend). Rows D
and E only (they have heads).

For notebooks (``notebooks/hmhn_attention.ipynb``, HMHN's Fig. 8 style), as data:
:func:`gwa_tile_weights` (Grid-Wise Attention's weight per tile, Eq. 5),
:func:`head_fusion_weights` (each head's share in the Attention Fusion Block),
:func:`attention_summary` (all of it at image size, plus the fused map), and as
figures :func:`plot_faces`, :func:`plot_tile_weights`, :func:`plot_attention`, which
pick no matplotlib backend (inline in Jupyter). :func:`quick_run` trains a small
HMHN on the synthetic faces; :func:`load_videos` reads a run's aligned faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depressionmlp.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def read_images(folder, size: int) -> tuple[list[str], np.ndarray]:
    """RGB images of ``folder`` resized to ``size`` x ``size`` -> (names, (N, S, S, 3) uint8)."""
    from PIL import Image, UnidentifiedImageError
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(folder, f"no images ({', '.join(IMAGE_EXTS)}) in the folder")
    names, arrays = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(p, f"not a readable image ({e})") from None
        names.append(p.stem)
    return names, np.stack(arrays)


def upsample_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """``(..., h, w)`` -> ``(..., size, size)`` bilinear, each map min-max scaled to [0, 1]."""
    import tensorflow as tf
    lead = maps.shape[:-2]
    flat = maps.reshape((-1,) + maps.shape[-2:] + (1,)).astype(np.float32)
    up = tf.image.resize(flat, (size, size), method="bilinear").numpy()[..., 0]
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    up = (up - lo) / np.where(hi - lo > 0, hi - lo, 1.0)
    return up.reshape(lead + (size, size))


def save_figure(path, image: np.ndarray, maps: np.ndarray, title: str = "",
                alpha: float = 0.5) -> None:
    """One row: the face, then one heatmap overlay per head (``maps`` (k, S, S) in [0, 1])."""
    from matplotlib.figure import Figure      # no pyplot: leaves the session's backend alone
    k = len(maps)
    fig = Figure(figsize=(2.2 * (k + 1), 2.4))
    axes = fig.subplots(1, k + 1)
    axes = np.atleast_1d(axes)
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    for i, m in enumerate(maps):
        axes[i + 1].imshow(image)
        axes[i + 1].imshow(m, cmap="jet", alpha=alpha, vmin=0, vmax=1)
        axes[i + 1].set_title(f"head {i + 1}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def explain(model_path, images, out) -> list[Path]:
    """Write ``<out>/<image>_heads.png`` for each image of the folder; returns the paths."""
    from hmhn.models import attention_maps, head_layers
    from hmhn.train import load_run
    from depressionmlp.runs import check_output_dir, write_json_atomic
    check_output_dir(out, what="--out folder")
    model, _ = load_run(model_path)
    if not head_layers(model):
        raise DataError(model_path, "this model has no cross-attention heads "
                                    "(ablation rows A-C); explain needs row D or E")
    size = int(model.inputs[0].shape[1])
    names, arrays = read_images(images, size)
    maps = attention_maps(model, arrays.astype(np.float32))            # (N, k, h, w)
    scores = np.asarray(model.predict(arrays.astype(np.float32), verbose=0)).reshape(-1)
    up = upsample_maps(maps, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths, summary = [], []
    for name, img, m, s in zip(names, arrays, up, scores):
        p = out / f"{name}_heads.png"
        save_figure(p, img, m, title=f"{name}: predicted BDI-II {s:.1f}")
        paths.append(p)
        summary.append({"image": name, "png": p.name, "score": float(s)})
    write_json_atomic(out / "explain.json", {"model": str(model_path), "heads": int(maps.shape[1]),
                                             "map_size": list(maps.shape[2:]),
                                             "images": summary})
    return paths


# --------------------------------------------------------------------------- notebooks

def gwa_layer(model):
    """The model's :class:`hmhn.layers.GridWiseAttention` layer, or None (rows A, D)."""
    from hmhn.layers import GridWiseAttention
    found = [l for l in model.layers if isinstance(l, GridWiseAttention)]
    return found[0] if found else None


def gwa_tile_weights(model, images) -> tuple[np.ndarray, np.ndarray]:
    """Grid-Wise Attention on ``images`` (pixels 0..255), inference mode.

    Returns ``(tiles, weight_map)``: ``tiles`` ``(B, h, w)`` the Eq. 5 weight of each
    tile averaged over the colour channels (with the default softmax over the tiles
    they sum to 1 per channel, so ``1 / (h*w)`` is "no preference"), ``weight_map``
    ``(B, S, S)`` the Eq. 6 map that multiplies the image (same average). Raises
    ValueError for a model without GWA.
    """
    import keras
    gwa = gwa_layer(model)
    if gwa is None:
        raise ValueError(f"model {model.name} has no Grid-Wise Attention (rows B, C, E only)")
    to_gwa = keras.Model(model.inputs[0], gwa.input, name="gwa_input")
    g = to_gwa(np.asarray(images, dtype=np.float32), training=False)
    h, w = gwa.grid
    t = np.asarray(gwa.tile_weights(g, training=False)).mean(axis=-1)        # (B, T)
    wmap = np.asarray(gwa.weight_map(g, training=False)).mean(axis=-1)       # (B, S, S)
    return t.reshape(-1, h, w), wmap


def head_fusion_weights(model, images) -> np.ndarray:
    """``(B, k)``: each cross-attention head's share in the fused vector.

    **[choice]** For AFB's default fusion (log-softmax across the heads, then sum) the
    share of head i is its softmax across the heads, averaged over the channels (the
    weights sum to 1 per image); for ``"sum"`` / ``"mean"`` fusion every head weighs 1/k.
    """
    from hmhn.layers import AttentionFusion
    from hmhn.models import head_feature_model
    heads = np.asarray(head_feature_model(model)(np.asarray(images, dtype=np.float32),
                                                 training=False), dtype=np.float64)
    k = heads.shape[1]
    fusion = [l.fusion for l in model.layers if isinstance(l, AttentionFusion)]
    if k == 1 or (fusion and fusion[0] != "log_softmax_sum"):
        return np.full(heads.shape[:2], 1.0 / k)
    e = np.exp(heads - heads.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).mean(axis=2)


def attention_summary(model, images) -> dict:
    """What the notebook draws, at image size ``S``, for ``images`` ``(B, S, S, 3)``:

    ``scores`` (B,) predicted BDI-II; ``heads`` (B, k, S, S) each head's spatial map
    (Eq. 8) upsampled and min-max scaled to [0, 1]; ``head_weights`` (B, k)
    (:func:`head_fusion_weights`); ``fused`` (B, S, S) **[choice]** the heads' maps
    weighted by those shares, scaled to [0, 1]; ``map_size`` (h, w) of the raw maps;
    ``tiles`` (B, h, w) / ``tile_map`` (B, S, S) / ``grid`` from
    :func:`gwa_tile_weights` (None for models without GWA).
    """
    from hmhn.models import attention_maps
    from hmhn.train import predict_frames
    x = np.asarray(images, dtype=np.float32)
    size = int(model.inputs[0].shape[1])
    raw = attention_maps(model, x)                                       # (B, k, h, w)
    heads = upsample_maps(raw, size)
    weights = head_fusion_weights(model, x)
    fused = upsample_maps(np.einsum("bk,bkhw->bhw", weights, heads)[:, None], size)[:, 0]
    out = {"scores": predict_frames(model, x), "heads": heads, "head_weights": weights,
           "fused": fused, "map_size": tuple(raw.shape[2:]), "tiles": None, "tile_map": None,
           "grid": None}
    if gwa_layer(model) is not None:
        out["tiles"], out["tile_map"] = gwa_tile_weights(model, x)
        out["grid"] = gwa_layer(model).grid
    return out


def load_videos(run_dir, split: str = "dev", data_root=None) -> list:
    """The aligned faces (:class:`hmhn.data.FaceVideo`) of one split, as the run saw them
    (its corpus, input size and frames per video); ``data_root`` overrides its root."""
    from hmhn.train import load_splits
    from depressionmlp.runs import run_files
    _, cfg = run_files(run_dir, "python -m hmhn train")
    if data_root is not None:
        cfg["data"]["data_root"] = str(data_root)
    return load_splits(cfg, [split])[split].videos


def quick_run(out_dir, *, input_size: int = 64, width: int = 32, heads: int = 4,
              grid: str = "3x3", epochs: int = 4, steps_per_epoch: int = 20,
              batch_size: int = 16, n_subjects: int = 60, frames_per_video: int = 4,
              seed: int = 0) -> Path:
    """Train a small row-E HMHN (default protocol, ``width`` first-stage channels: 64 =
    ResNet-18) on a synthetic face corpus written to ``<out_dir>/data``; returns the run
    directory (under ``<out_dir>/runs``)."""
    import json
    from hmhn.data.synth import generate_faces
    from hmhn.train import train
    out_dir = Path(out_dir)
    data_root = out_dir / "data"
    corpus = "synthetic-faces-notebook"
    params = {"n_subjects": int(n_subjects), "frames_per_video": int(frames_per_video),
              "size": int(input_size), "seed": int(seed)}
    manifest = data_root / corpus / "manifest.json"
    have = json.loads(manifest.read_text()).get("parameters", {}) if manifest.exists() else {}
    if any(have.get(k) != v for k, v in params.items()):       # else: reuse the corpus
        generate_faces(data_root / corpus, **params)
    cfg = {"name": "hmhn-quick",
           "model": {"row": "E", "input_size": int(input_size), "width": int(width),
                     "heads": int(heads), "grid": grid},
           "data": {"corpus": corpus, "data_root": str(data_root),
                    "frames_per_video": int(frames_per_video)},
           "train": {"epochs": int(epochs), "steps_per_epoch": int(steps_per_epoch),
                     "batch_size": int(batch_size), "seed": int(seed), "verbose": 0}}
    run_dir, _ = train(cfg, out_base=out_dir / "runs")
    return run_dir


def _grid_of_axes(rows: int, cols: int, cell: float = 1.9):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, cell * rows + 0.3),
                             squeeze=False, constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def plot_faces(videos, max_frames: int = 8):
    """One row per video: its aligned faces (the model's input), titled with its score."""
    n = min(max_frames, max(len(v.frames) for v in videos))
    fig, axes = _grid_of_axes(len(videos), n, cell=1.5)
    for r, v in enumerate(videos):
        for c, img in enumerate(v.frames[:n]):
            axes[r, c].imshow(img)
        axes[r, 0].set_title(f"{v.video_id}: BDI-II {v.label:.0f}", fontsize=9, loc="left")
    return fig


def plot_tile_weights(images, summary, titles=(), alpha: float = 0.45):
    """One row per image: the face, Grid-Wise Attention's weight map over it (Eq. 6),
    and the tile weights as numbers on the grid (Eq. 5; uniform = 1 / (h*w))."""
    if summary["tiles"] is None:
        raise ValueError("the model has no Grid-Wise Attention")
    fig, axes = _grid_of_axes(len(images), 3, cell=2.4)
    h, w = summary["grid"]
    lo, hi = float(summary["tiles"].min()), float(summary["tiles"].max())
    for r, img in enumerate(images):
        title = titles[r] if r < len(titles) else ""
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(title, fontsize=9)
        axes[r, 1].imshow(img)
        axes[r, 1].imshow(summary["tile_map"][r], cmap="viridis", alpha=alpha + 0.15,
                          vmin=lo, vmax=hi)
        axes[r, 1].set_title("GWA weight map (Eq. 6)", fontsize=9)
        im = axes[r, 2].imshow(summary["tiles"][r], cmap="viridis", vmin=lo, vmax=hi)
        for i in range(h):
            for j in range(w):
                axes[r, 2].text(j, i, f"{summary['tiles'][r, i, j]:.3f}", ha="center",
                                va="center", fontsize=8, color="w")
        axes[r, 2].set_title(f"tile weights (Eq. 5), uniform {1 / (h * w):.3f}", fontsize=9)
        fig.colorbar(im, ax=axes[r, 2], shrink=0.8)
    return fig


def plot_attention(images, summary, titles=(), alpha: float = 0.5):
    """HMHN Fig. 8 style: one row per image, the face, each head's spatial attention map
    over it (Eq. 8, with the head's fusion share) and the fused map."""
    k = summary["heads"].shape[1]
    fig, axes = _grid_of_axes(len(images), k + 2)
    for r, img in enumerate(images):
        axes[r, 0].imshow(img)
        title = titles[r] if r < len(titles) else ""
        axes[r, 0].set_title(f"{title}\npredicted {summary['scores'][r]:.1f}".strip(),
                             fontsize=8)
        for i in range(k):
            axes[r, i + 1].imshow(img)
            axes[r, i + 1].imshow(summary["heads"][r, i], cmap="jet", alpha=alpha, vmin=0, vmax=1)
            axes[r, i + 1].set_title(f"head {i + 1} ({summary['head_weights'][r, i]:.2f})",
                                     fontsize=8)
        axes[r, k + 1].imshow(img)
        axes[r, k + 1].imshow(summary["fused"][r], cmap="jet", alpha=alpha, vmin=0, vmax=1)
        axes[r, k + 1].set_title("fused", fontsize=8)
    return fig
