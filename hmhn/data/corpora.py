"""Corpora on disk -> :class:`FaceVideo` lists (aligned faces + BDI-II labels).

Where the data lives: ``data_root`` if given, else the ``DATA_ROOT`` environment
variable, else ``./data``; a corpus is the folder ``<root>/<corpus>``.

Layouts (split folders may also use AVEC's names ``Training`` / ``Development`` /
``Testing``; folder names are matched case-insensitively)::

    <root>/avec2013/video/{train,dev,test}/<rec>*.mp4          (or .avi, .mov, .mkv)
    <root>/avec2013/labels/{train,dev,test}/<rec>_Depression.csv

    <root>/avec2014/video/{train,dev,test}/{Freeform,Northwind}/<rec>_{Freeform,Northwind}*.mp4
    <root>/avec2014/labels/{train,dev,test}/<rec>_Depression.csv
                                  (or per task: <rec>_Freeform_Depression.csv, ...)

    already aligned faces instead of videos (any corpus; used when present):
    <root>/<corpus>/faces/{train,dev,test}/<rec>/*.png|jpg      (avec2014: the task
                                  in <rec>'s name, or a Freeform/Northwind folder level)
    <root>/<corpus>/labels/{train,dev,test}/<rec>_Depression.csv

    <root>/synthetic-faces/     the faces layout + labels + manifest.json
                                (``hmhn synth --out <root>/synthetic-faces``)

A label file holds one number, the BDI-II score (0..63). A recording ``<rec>`` is
matched to the label whose name (before ``_Depression.csv``) is the longest prefix of
the video's file name (or face folder's name) that ends at a ``_`` or at the end; a
per-task label ``<rec>_<Task>_Depression.csv`` wins over ``<rec>_Depression.csv``.
The subject is the part of ``<rec>`` before its first ``_`` (AVEC: ``203_1`` is
subject 203, session 1). Face images are sorted by name, sampled evenly to
``frames_per_video`` (:func:`hmhn.data.video.sample_frame_indices`) and resized to
``size`` when needed (no detection). Videos are aligned with
:class:`hmhn.data.align.FaceAligner`.

Splits (Sec. 4.1): ``"train"``, ``"dev"``, ``"test"``. For ``avec2014`` the paper trains
on train + dev of both tasks, so ``split="train"`` returns train + dev of Freeform and
Northwind (``FaceVideo.split`` keeps each video's own split); ``"dev"`` and ``"test"``
return that split of both tasks. Other corpora return exactly the split asked for.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depressionmlp.errors import DataError
from depressionmlp.progress import Progress
from hmhn.data.video import sample_frame_indices

CORPORA = ("synthetic-faces", "avec2013", "avec2014")
SPLITS = ("train", "dev", "test")
SPLIT_ALIASES = {"train": ("train", "training"), "dev": ("dev", "development", "devel"),
                 "test": ("test", "testing")}
AVEC2014_TASKS = ("Freeform", "Northwind")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
LABEL_SUFFIX = "_Depression.csv"
BDI_RANGE = (0.0, 63.0)
DEFAULT_CACHE = ".cache/aligned"   # under the corpus folder, for video corpora


@dataclass
class FaceVideo:
    """One recording as aligned faces.

    Attributes:
        video_id: unique within a corpus (AVEC 2014: ``<rec>_<Task>``).
        subject_id: the participant (part of ``<rec>`` before the first ``_``).
        split: the split the recording comes from (train / dev / test).
        label: BDI-II score.
        frames: ``(F, size, size, 3)`` uint8 RGB aligned faces.
        n_skipped: sampled frames with no detectable face (videos only).
    """
    video_id: str
    subject_id: str
    split: str
    label: float
    frames: np.ndarray
    n_skipped: int = 0


# ----------------------------------------------------------------------------- folders

def resolve_corpus_dir(corpus, data_root=None) -> Path:
    """``<root>/<corpus>`` where root is ``data_root``, else ``$DATA_ROOT``, else ``./data``.

    Raises :class:`DataError` (one line: where it looked, what to do) when missing.
    """
    corpus = str(corpus)
    if not corpus or "/" in corpus or corpus in (".", ".."):
        raise DataError(None, f"invalid corpus name '{corpus}'; known: {', '.join(CORPORA)}")
    if data_root:
        root, source = Path(data_root), "data_root"
    elif os.environ.get("DATA_ROOT"):
        root, source = Path(os.environ["DATA_ROOT"]), "$DATA_ROOT"
    else:
        root, source = Path("data"), "default ./data"
    path = root / corpus
    if path.is_dir():
        return path
    hint = (f"generate it with `hmhn synth --out {path}`"
            if corpus == "synthetic-faces" else
            "set DATA_ROOT (or --data-root) to the folder holding it; layouts in the README")
    raise DataError(path, f"corpus '{corpus}' not found (looked in {root.resolve()} "
                          f"from {source}); {hint}")


def find_split_dir(parent: Path, split: str) -> Path | None:
    """The child of ``parent`` naming ``split`` (or an AVEC alias), case-insensitive."""
    if split not in SPLIT_ALIASES:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if not parent.is_dir():
        return None
    names = SPLIT_ALIASES[split]
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def source_splits(corpus: str, split: str) -> tuple[str, ...]:
    """The folders' splits that make up ``split`` (avec2014 train = train + dev)."""
    if split not in SPLITS:
        raise DataError(None, f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if corpus == "avec2014" and split == "train":
        return ("train", "dev")
    return (split,)


# ----------------------------------------------------------------------------- labels

def read_label(path) -> float:
    """The BDI-II score in a ``*_Depression.csv`` file (one number, 0..63)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read label file ({e.__class__.__name__})") from None
    cells = [c.strip() for line in text.splitlines() for c in line.split(",") if c.strip()]
    if len(cells) != 1:
        raise DataError(path, f"label file must hold exactly one number (BDI-II), "
                              f"found {len(cells)} values")
    try:
        value = float(cells[0])
    except ValueError:
        raise DataError(path, f"label '{cells[0]}' is not a number") from None
    lo, hi = BDI_RANGE
    if not math.isfinite(value) or not lo <= value <= hi:
        raise DataError(path, f"label {cells[0]} is outside the BDI-II range 0..63")
    return value


def label_index(labels_dir: Path | None, corpus_dir: Path, split: str) -> dict[str, Path]:
    """``{key: file}`` for the ``<key>_Depression.csv`` files of one split."""
    if labels_dir is None:
        raise DataError(corpus_dir / "labels", f"no labels folder for split '{split}' "
                                               f"(expected labels/{split}/<rec>{LABEL_SUFFIX})")
    return {p.name[:-len(LABEL_SUFFIX)]: p for p in sorted(labels_dir.iterdir())
            if p.is_file() and p.name.endswith(LABEL_SUFFIX)}


def match_label(name: str, task: str | None, labels: dict[str, Path]) -> tuple[str, Path] | None:
    """``(rec, label file)`` for a recording called ``name`` (file stem or folder name).

    The longest label key that is ``name`` or a ``_``-delimited prefix of it wins; with a
    task, ``<key>_<task>`` is preferred. ``rec`` is the key without a task suffix.
    """
    hits = [k for k in labels if name == k or name.startswith(k + "_")]
    if not hits:
        return None
    key = max(hits, key=len)
    if task and not key.endswith("_" + task) and f"{key}_{task}" in labels:
        key = f"{key}_{task}"
    rec = key
    for t in AVEC2014_TASKS:
        if rec.endswith("_" + t):
            rec = rec[:-len(t) - 1]
    return rec, labels[key]


def task_folder(name: str) -> str | None:
    """The AVEC 2014 task a folder is named after (``Freeform`` / ``Northwind``), or None."""
    return next((t for t in AVEC2014_TASKS if name.lower() == t.lower()), None)


def task_of(name: str) -> str | None:
    """The AVEC 2014 task named in a recording's name (``203_1_Freeform_video``), or None."""
    return next((t for t in AVEC2014_TASKS
                 if re.search(rf"(^|_){t}(_|$)", name, flags=re.IGNORECASE)), None)


def subject_of(rec: str) -> str:
    """AVEC recording ``203_1`` -> subject ``203`` (the part before the first ``_``)."""
    return rec.split("_", 1)[0]


# ----------------------------------------------------------------------------- recordings

@dataclass
class Recording:
    """One recording found on disk, before its frames are read."""
    source: Path          # a video file or a folder of face images
    name: str             # file stem or folder name
    task: str | None
    split: str


def _with_task_level(split_dir: Path, corpus: str):
    """``(folder, task-or-None)`` pairs: the split folder and, for avec2014, task folders."""
    pairs = [(split_dir, None)]
    if corpus == "avec2014":
        pairs += [(c, task_folder(c.name)) for c in sorted(split_dir.iterdir())
                  if c.is_dir() and task_folder(c.name)]
    return pairs


def list_videos(split_dir: Path, corpus: str, split: str) -> list[Recording]:
    """Video files of one split folder (and its task folders for avec2014)."""
    recs = []
    for folder, task in _with_task_level(split_dir, corpus):
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
                t = task or (task_of(p.stem) if corpus == "avec2014" else None)
                recs.append(Recording(p, p.stem, t, split))
    return recs


def list_face_folders(split_dir: Path, corpus: str, split: str) -> list[Recording]:
    """Recording folders of face images in one split folder (and task folders)."""
    recs = []
    for folder, task in _with_task_level(split_dir, corpus):
        for p in sorted(folder.iterdir()):
            is_task_folder = corpus == "avec2014" and task is None and task_folder(p.name)
            if p.is_dir() and not is_task_folder and not p.name.startswith("."):
                t = task or (task_of(p.name) if corpus == "avec2014" else None)
                recs.append(Recording(p, p.name, t, split))
    return recs


def image_files(folder: Path) -> list[Path]:
    """Face images in a recording folder, sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


# ----------------------------------------------------------------------------- frames

def read_face_images(folder: Path, count: int, size: int) -> np.ndarray:
    """``count`` images spread evenly over the sorted files, RGB, resized to ``size``."""
    import cv2
    files = image_files(folder)
    if not files:
        raise DataError(folder, "no face images (*.png, *.jpg) in recording folder")
    out = {}
    idx = sample_frame_indices(len(files), count).tolist()
    for i in dict.fromkeys(idx):
        img = cv2.imread(os.fspath(files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(files[i], "cannot read image")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img.shape[:2] != (size, size):
            shrink = img.shape[0] > size or img.shape[1] > size
            img = cv2.resize(img, (size, size),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out[i] = img
    return np.stack([out[i] for i in idx]).astype(np.uint8)


def _video_id(rec: str, task: str | None) -> str:
    return f"{rec}_{task}" if task else rec


def _default_cache(corpus_dir: Path, cache_dir):
    if cache_dir is False:
        return None
    return Path(cache_dir) if cache_dir else corpus_dir / DEFAULT_CACHE


def _collect(corpus: str, corpus_dir: Path, split: str) -> list[tuple[Recording, str, Path]]:
    """``(recording, rec, label file)`` for one folder split; faces/ wins over video/."""
    faces_dir = find_split_dir(corpus_dir / "faces", split)
    video_dir = find_split_dir(corpus_dir / "video", split)
    if faces_dir is not None:
        found = list_face_folders(faces_dir, corpus, split)
    elif video_dir is not None:
        found = list_videos(video_dir, corpus, split)
    else:
        return []
    labels = label_index(find_split_dir(corpus_dir / "labels", split), corpus_dir, split)
    out = []
    for r in found:
        hit = match_label(r.name, r.task, labels)
        if hit is None:
            raise DataError(r.source, f"recording '{r.name}' has no label file "
                                      f"(expected <rec>{LABEL_SUFFIX} in labels/{split})")
        out.append((r, hit[0], hit[1]))
    return out


def load_faces(corpus: str, data_root=None, split="train", frames_per_video=16, size=224,
               cache_dir=None, aligner=None) -> list[FaceVideo]:
    """Aligned faces and labels of one split of a corpus (layouts: module docstring).

    Args:
        corpus: ``"synthetic-faces"``, ``"avec2013"``, ``"avec2014"`` (or any folder
            name under the root that follows the same layout).
        data_root: the folder holding corpora (default ``$DATA_ROOT`` or ``./data``).
        split: ``"train"``, ``"dev"`` or ``"test"`` (avec2014 ``"train"`` = train + dev).
        frames_per_video: frames sampled evenly from each recording.
        size: side of the returned square crops.
        cache_dir: where aligned crops of videos are cached; None = ``<corpus
            folder>/.cache/aligned``; False = no cache. Not used for face folders.
        aligner: a :class:`~hmhn.data.align.FaceAligner` of this ``size`` to reuse;
            built on first need otherwise.

    Returns the videos sorted by (task, name). Raises :class:`DataError` for a missing
    corpus, a split with no recordings, a recording without a (valid) label, and a
    video that cannot be read or shows no face.
    """
    if int(frames_per_video) < 1:
        raise DataError(None, f"frames_per_video must be >= 1, got {frames_per_video}")
    corpus_dir = resolve_corpus_dir(corpus, data_root)
    found = [hit for s in source_splits(corpus, split) for hit in _collect(corpus, corpus_dir, s)]
    if not found:
        raise DataError(corpus_dir, f"no recordings for split '{split}' (looked for "
                                    f"faces/{split}/<rec>/ and video/{split}/ folders)")
    found.sort(key=lambda h: (h[0].task or "", SPLITS.index(h[0].split), h[0].name))
    cache = _default_cache(corpus_dir, cache_dir)
    videos, hits = [], 0
    aligning = any(not rec.source.is_dir() for rec, _, _ in found)
    bar = Progress(len(found), f"{corpus} {split}: " + ("aligning faces in videos"
                                                        if aligning else "reading face images"))
    for rec, rec_id, label_file in found:
        label = read_label(label_file)
        if rec.source.is_dir():
            frames, skipped = read_face_images(rec.source, frames_per_video, size), 0
        else:
            if aligner is None:
                from hmhn.data.align import FaceAligner
                aligner = FaceAligner(size=size)
            elif aligner.size != size:
                raise ValueError(f"aligner size {aligner.size} != size {size}")
            from hmhn.data.align import align_video, cache_path
            if cache and rec.source.is_file():
                hits += cache_path(rec.source, frames_per_video, aligner, cache).exists()
            frames, skipped = align_video(rec.source, frames_per_video, aligner, cache)
        videos.append(FaceVideo(video_id=_video_id(rec_id, rec.task), subject_id=subject_of(rec_id),
                                split=rec.split, label=label, frames=frames, n_skipped=skipped))
        bar.update()
    bar.done(f"{corpus} {split}: {len(videos)} videos, "
             f"{sum(len(v.frames) for v in videos):,} face frames, "
             f"{sum(v.n_skipped for v in videos):,} sampled frames dropped (no face)"
             + (f", {hits} from the cache" if aligning else ""))
    _check_unique_ids(videos, corpus_dir)
    return videos


def _check_unique_ids(videos: list[FaceVideo], corpus_dir: Path) -> None:
    seen = set()
    for v in videos:
        if v.video_id in seen:
            raise DataError(corpus_dir, f"two recordings map to the same video id "
                                        f"'{v.video_id}' (one label, several videos?)")
        seen.add(v.video_id)
