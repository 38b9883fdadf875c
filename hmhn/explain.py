"""Per-head attention maps over the face (Fig. 1): ``python -m hmhn explain``.

For each image, the spatial attention map of every cross-attention head
(:meth:`hmhn.layers.SpatialAttention.attention_map`, ``(h, w)`` = 7 x 7 at 224 input)
is upsampled to the image, min-max normalised per head, and drawn as a heatmap over
the face: one PNG per image, the original in the first column and one head per
column after it (matplotlib, Agg backend). Rows D and E only (they have heads).
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(maps)
    fig, axes = plt.subplots(1, k + 1, figsize=(2.2 * (k + 1), 2.4))
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
    plt.close(fig)


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
