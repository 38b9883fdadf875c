"""Corpus layouts on disk: finding recordings and labels, split by split.

The corpora live under a data root (the ``data_root`` argument, else the
``DATA_ROOT`` environment variable, else ``./data``)::

    <root>/avec2013/        (and <root>/synthetic/, the same layout)
      openface/{train,dev,test}/<rec>.csv             OpenFace 2.x CSV, <rec> = <subject>_<session>
      labels/{train,dev,test}/<rec>_Depression.csv    one BDI-II number (0-63), no header
    <root>/avec2014/
      openface/{train,dev,test}/{Freeform,Northwind}/<rec>_{Freeform,Northwind}.csv
      labels/{train,dev,test}/<rec>_Depression.csv    one label per <rec>, shared by both tasks,
                                                      or <rec>_{Freeform,Northwind}_Depression.csv
    <root>/daic/
      <NNN>_P/<NNN>_CLNF_features.txt, <NNN>_CLNF_AUs.txt
      train_split_Depression_AVEC2017.csv, dev_split_Depression_AVEC2017.csv
                                                      (Participant_ID, PHQ8_Score, ...)
      full_test_split.csv                             (Participant_ID, PHQ_Score, ...)

Split folders may also use AVEC's own names Training / Development / Testing.
AVEC 2014 is merged as in the paper: each task recording is its own recording
(``<rec>_Freeform``, ``<rec>_Northwind``) in its split; the subject is the leading
number of ``<rec>``.
"""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from depressionmlp.data.segments import ShortRecordingError, load_segmented
from depressionmlp.progress import Progress
from depressionmlp.data.types import RecordingSource, SegmentedRecording, SegmentSettings
from depressionmlp.errors import DataError

CORPORA = ("synthetic", "avec2013", "avec2014", "daic")
SPLITS = ("train", "dev", "test")
SPLIT_ALIASES = {"train": ("train", "training"), "dev": ("dev", "development"),
                 "test": ("test", "testing")}
AVEC2014_TASKS = ("Freeform", "Northwind")
LABEL_SUFFIX = "_Depression.csv"
DAIC_SPLIT_FILES = {"train": ("train_split_Depression_AVEC2017.csv",),
                    "dev": ("dev_split_Depression_AVEC2017.csv",),
                    "test": ("full_test_split.csv", "test_split_Depression_AVEC2017.csv")}
DAIC_SCORE_COLUMNS = ("phq8_score", "phq_score")


def _check_corpus(corpus: str) -> str:
    if corpus not in CORPORA:
        raise DataError(None, f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    return corpus


def _check_splits(splits) -> tuple[str, ...]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise DataError(None, f"unknown split(s) {', '.join(map(repr, bad))}; "
                              f"choose from {', '.join(SPLITS)}")
    return splits


# ----------------------------------------------------------------------------- settings

def default_settings(corpus: str) -> SegmentSettings:
    """The paper's segmenting (30 -> 6 fps, M = 18, stride 9) with the corpus' frame size.

    AVEC 2013/2014: 480x480 (the paper rescales every frame to it). DAIC-WOZ:
    480x640 (its webcam video). Synthetic: 480x640, the frame the generator
    projects onto (see :mod:`depressionmlp.synth`), so Eq. 2 maps it to [0, 1].
    """
    frame_size = {"avec2013": (480, 480), "avec2014": (480, 480),
                  "daic": (480, 640), "synthetic": (480, 640)}[_check_corpus(corpus)]
    return SegmentSettings(frame_size=frame_size)


def label_range(corpus: str) -> tuple[float, float]:
    """Valid label range: BDI-II 0..63 (AVEC, synthetic), PHQ-8 0..24 (DAIC-WOZ)."""
    return (0.0, 24.0) if _check_corpus(corpus) == "daic" else (0.0, 63.0)


def _scale_name(corpus: str) -> str:
    return "PHQ-8" if corpus == "daic" else "BDI-II"


# ----------------------------------------------------------------------------- root

def resolve_corpus_dir(corpus: str, data_root=None) -> Path:
    """Absolute ``<root>/<corpus>``; root = data_root, else $DATA_ROOT, else ./data.

    Raises:
        DataError: the folder does not exist (says where it looked and what to do).
    """
    _check_corpus(corpus)
    if data_root is not None:
        root, origin = Path(data_root), "from data_root"
    elif os.environ.get("DATA_ROOT"):
        root, origin = Path(os.environ["DATA_ROOT"]), "from DATA_ROOT"
    else:
        root, origin = Path("data"), "default ./data; DATA_ROOT is not set"
    d = root / corpus
    if not d.is_dir():
        hint = ("run `make synth` (or `python -m depressionmlp synth --out "
                f"{d}`) to build it" if corpus == "synthetic" else
                "put the layout described in README 'Data layouts' there or set DATA_ROOT; "
                "for the bundled synthetic corpus run `make synth`")
        raise DataError(None, f"no {corpus} corpus at {d.absolute()} ({origin}); {hint}")
    return d.absolute()


def _split_dir(parent: Path, split: str) -> Path | None:
    """The child of ``parent`` named like ``split`` or one of its AVEC aliases."""
    if not parent.is_dir():
        return None
    names = SPLIT_ALIASES[split]
    hits = sorted(c for c in parent.iterdir() if c.is_dir() and c.name.lower() in names)
    if len(hits) > 1:
        raise DataError(parent, f"both {hits[0].name}/ and {hits[1].name}/ hold split "
                                f"'{split}'; keep one")
    return hits[0] if hits else None


def _child_dir(parent: Path, name: str) -> Path | None:
    """Case-insensitive child folder lookup."""
    if not parent.is_dir():
        return None
    return next((c for c in sorted(parent.iterdir())
                 if c.is_dir() and c.name.lower() == name.lower()), None)


def _visible_files(folder: Path | None, suffix: str) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.endswith(suffix))


def subject_of(recording_id: str) -> str:
    """Subject id: the leading number (``203_1`` -> ``203``), else the text before '_'."""
    m = re.match(r"\d+", recording_id)
    return m.group(0) if m else recording_id.split("_")[0]


# ----------------------------------------------------------------------------- labels

def read_label(path, corpus: str) -> float:
    """The single number in an AVEC ``*_Depression.csv`` label file.

    Raises:
        DataError: missing, empty, non-numeric, more than one number, or outside
            :func:`label_range`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise DataError(path, f"cannot read label file: {e.strerror or e}") from None
    tokens = [t for t in re.split(r"[\s,;]+", text.strip()) if t]
    if not tokens:
        raise DataError(path, "label file is empty; expected one number")
    if len(tokens) > 1:
        raise DataError(path, f"label file holds {len(tokens)} values "
                              f"({' '.join(tokens[:3])}{' ...' if len(tokens) > 3 else ''}); "
                              "expected one number")
    try:
        value = float(tokens[0])
    except ValueError:
        raise DataError(path, f"label {tokens[0]!r} is not a number") from None
    _check_range(path, value, corpus)
    return value


def _check_range(path, value: float, corpus: str, row=None, column=None) -> None:
    lo, hi = label_range(corpus)
    if not (np.isfinite(value) and lo <= value <= hi):
        raise DataError(path, f"label {value:g} is outside the {_scale_name(corpus)} range "
                              f"{lo:g}..{hi:g}", row=row, column=column)


# ----------------------------------------------------------------------------- AVEC

def _discover_avec2013(cdir: Path, corpus: str, split: str) -> list[RecordingSource]:
    of = _split_dir(cdir / "openface", split)
    lab = _split_dir(cdir / "labels", split)
    if of is None:
        raise DataError(cdir / "openface", f"no folder for split '{split}' (looked for "
                                           f"{' / '.join(SPLIT_ALIASES[split])})")
    recs = {p.name[: -len(".csv")]: p for p in _visible_files(of, ".csv")}
    labels = {p.name[: -len(LABEL_SUFFIX)]: p for p in _visible_files(lab, LABEL_SUFFIX)}
    out = []
    for rec, path in recs.items():
        if rec not in labels:
            want = (lab or cdir / "labels" / split) / f"{rec}{LABEL_SUFFIX}"
            raise DataError(path, f"recording without label: expected {want}")
        out.append(RecordingSource(rec, subject_of(rec), split,
                                   read_label(labels[rec], corpus), str(path),
                                   str(labels[rec])))
    for rec, lpath in labels.items():
        if rec not in recs:
            raise DataError(lpath, f"label without recording: expected {of / (rec + '.csv')}")
    return out


def _discover_avec2014(cdir: Path, corpus: str, split: str) -> list[RecordingSource]:
    of = _split_dir(cdir / "openface", split)
    lab = _split_dir(cdir / "labels", split)
    if of is None:
        raise DataError(cdir / "openface", f"no folder for split '{split}' (looked for "
                                           f"{' / '.join(SPLIT_ALIASES[split])})")
    label_files = _visible_files(lab, LABEL_SUFFIX)
    for task in AVEC2014_TASKS:                      # also accept labels/<split>/<Task>/
        label_files += _visible_files(_child_dir(lab, task) if lab else None, LABEL_SUFFIX)
    shared, per_task = {}, {}
    for p in label_files:
        stem = p.name[: -len(LABEL_SUFFIX)]
        task = next((t for t in AVEC2014_TASKS if stem.lower().endswith("_" + t.lower())), None)
        if task is None:
            shared[stem] = p
        else:
            per_task[(stem[: -len(task) - 1], task)] = p
    recs = {}
    for task in AVEC2014_TASKS:
        tdir = _child_dir(of, task)
        for p in _visible_files(tdir, ".csv"):
            stem = p.name[: -len(".csv")]
            suffix = "_" + task.lower()
            if not stem.lower().endswith(suffix):
                raise DataError(p, f"file name should be <rec>_{task}.csv")
            recs[(stem[: -len(suffix)], task)] = p
    out = []
    for (rec, task), path in sorted(recs.items()):
        lpath = per_task.get((rec, task)) or shared.get(rec)
        if lpath is None:
            want = (lab or cdir / "labels" / split) / f"{rec}{LABEL_SUFFIX}"
            raise DataError(path, f"recording without label: expected {want} "
                                  f"(or {rec}_{task}{LABEL_SUFFIX})")
        label = read_label(lpath, corpus)
        if (rec, task) in per_task and rec in shared:
            other = read_label(shared[rec], corpus)
            if other != label:
                raise DataError(per_task[(rec, task)],
                                f"label {label:g} disagrees with {shared[rec].name} ({other:g})")
        out.append(RecordingSource(f"{rec}_{task}", subject_of(rec), split, label,
                                   str(path), str(lpath)))
    have_rec = {rec for rec, _ in recs}
    for rec, lpath in shared.items():
        if rec not in have_rec:
            raise DataError(lpath, f"label without recording: expected {of}/<Task>/"
                                   f"{rec}_Freeform.csv or {rec}_Northwind.csv")
    for (rec, task), lpath in per_task.items():
        if (rec, task) not in recs:
            raise DataError(lpath, f"label without recording: expected "
                                   f"{of / task / (rec + '_' + task + '.csv')}")
    return out


# ----------------------------------------------------------------------------- DAIC-WOZ

def _daic_split_file(cdir: Path, split: str) -> Path | None:
    return next((cdir / n for n in DAIC_SPLIT_FILES[split] if (cdir / n).is_file()), None)


def _norm_pid(pid: str) -> str:
    """'303', ' 303', '303.0' -> '303'."""
    pid = pid.strip()
    return str(int(float(pid))) if re.fullmatch(r"\d+(\.0*)?", pid) else pid


def read_daic_split(path, split: str) -> dict[str, float]:
    """Participant id -> PHQ-8 score from a DAIC-WOZ split CSV.

    Raises:
        DataError: unreadable file, no Participant_ID column, no score column (the
            unlabelled test_split_Depression_AVEC2017.csv), or a bad score.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, skipinitialspace=True, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read split file: {str(e).strip()}") from None
    cols = {c.strip().lower(): c for c in df.columns}
    if "participant_id" not in cols:
        raise DataError(path, "missing required column Participant_ID")
    score_col = next((cols[c] for c in DAIC_SCORE_COLUMNS if c in cols), None)
    if score_col is None:
        raise DataError(path, f"has no PHQ-8 scores (no PHQ8_Score / PHQ_Score column), "
                              f"so split '{split}' cannot be evaluated; put "
                              "full_test_split.csv (Participant_ID, PHQ_Score) beside it")
    out = {}
    for i, (pid, score) in enumerate(zip(df[cols["participant_id"]], df[score_col])):
        row = i + 2
        pid = pid.strip()
        if not pid:
            raise DataError(path, "empty participant id", row=row,
                            column=cols["participant_id"])
        try:
            value = float(score)
        except ValueError:
            raise DataError(path, f"score {score.strip()!r} is not a number", row=row,
                            column=score_col) from None
        _check_range(path, value, "daic", row=row, column=score_col)
        pid = _norm_pid(pid)
        if pid in out:
            raise DataError(path, f"participant {pid} listed twice", row=row)
        out[pid] = value
    return out


def _discover_daic(cdir: Path, split: str) -> list[RecordingSource]:
    sfile = _daic_split_file(cdir, split)
    if sfile is None:
        raise DataError(cdir, f"no split file for '{split}' (expected "
                              f"{' or '.join(DAIC_SPLIT_FILES[split])})")
    scores = read_daic_split(sfile, split)
    out = []
    for pid, score in scores.items():
        feat = cdir / f"{pid}_P" / f"{pid}_CLNF_features.txt"
        if not feat.is_file():
            raise DataError(sfile, f"label without recording: participant {pid} has no "
                                   f"{feat}")
        out.append(RecordingSource(pid, pid, split, score, str(feat), str(sfile)))
    return out


def _daic_orphans(cdir: Path) -> None:
    """A participant folder in no split file is a recording without a label."""
    listed = set()
    for split in SPLITS:
        sfile = _daic_split_file(cdir, split)
        if sfile is None:
            return                       # incomplete split files: cannot tell
        df = pd.read_csv(sfile, skipinitialspace=True, dtype=str, keep_default_na=False)
        col = next((c for c in df.columns if c.strip().lower() == "participant_id"), None)
        if col is None:
            return
        listed |= {_norm_pid(v) for v in df[col]}
    for d in sorted(cdir.glob("*_P")):
        pid = d.name[:-2]
        if d.is_dir() and (d / f"{pid}_CLNF_features.txt").is_file() and pid not in listed:
            raise DataError(d, f"recording without label: participant {pid} is in no split "
                               "file")


# ----------------------------------------------------------------------------- public

def discover(corpus: str, data_root=None, splits=SPLITS) -> list[RecordingSource]:
    """Every recording of the requested splits, with its label.

    Args:
        corpus: "synthetic", "avec2013", "avec2014" or "daic".
        data_root: folder holding ``<corpus>/``; default $DATA_ROOT or ./data.
        splits: any of "train", "dev", "test".

    Returns:
        RecordingSource list, split by split in the order asked, recordings sorted.

    Raises:
        DataError: missing corpus or split folder, a recording without a label, a
            label without a recording, or a bad label.
    """
    cdir = resolve_corpus_dir(corpus, data_root)
    splits = _check_splits(splits)
    out = []
    if corpus == "daic":
        _daic_orphans(cdir)
    for split in splits:
        if corpus == "avec2014":
            out += _discover_avec2014(cdir, corpus, split)
        elif corpus == "daic":
            out += _discover_daic(cdir, split)
        else:
            out += _discover_avec2013(cdir, corpus, split)
    return out


def check_leakage(sources) -> dict[str, list[str]]:
    """Subjects that appear in more than one split: subject id -> its splits.

    Splits are listed in train, dev, test order.
    """
    seen: dict[str, set] = {}
    for s in sources:
        seen.setdefault(s.subject_id, set()).add(s.split)
    order = {s: i for i, s in enumerate(SPLITS)}
    return {sub: sorted(sp, key=lambda x: (order.get(x, 99), x))
            for sub, sp in sorted(seen.items()) if len(sp) > 1}


def _warn_stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def leakage_message(corpus: str, leaks: dict) -> str:
    shown = "; ".join(f"{s} ({', '.join(sp)})" for s, sp in list(leaks.items())[:10])
    more = f"; and {len(leaks) - 10} more" if len(leaks) > 10 else ""
    return (f"{corpus}: {len(leaks)} subject(s) appear in more than one split: "
            f"{shown}{more}")


def load_summary(corpus: str, data: dict, n_skipped: int = 0) -> str:
    """One line: recordings per split, segments, frames dropped, cache hits."""
    recs = [r for rs in data.values() for r in rs]
    per_split = ", ".join(f"{k} {len(v)}" for k, v in data.items())
    segs = sum(r.n_segments for r in recs)
    frames = sum(r.frames_total for r in recs)
    dropped = sum(r.frames_dropped for r in recs)
    hits = sum(bool(r.meta.get("cached")) for r in recs)
    text = (f"{corpus}: {len(recs)} recordings ({per_split}), {segs:,} segments, "
            f"{dropped:,} of {frames:,} frames dropped (failed tracking), "
            f"{hits} from the cache")
    return text + (f", {n_skipped} left out (too short)" if n_skipped else "")


def load_corpus(corpus: str, data_root=None, splits=SPLITS,
                settings: SegmentSettings | None = None, cache_dir=None,
                strict: bool = False, warn=_warn_stderr,
                skip_short: bool = True,
                workers: int | None = None) -> dict[str, list[SegmentedRecording]]:
    """Discover, check and segment a corpus.

    Args:
        corpus, data_root, splits: as :func:`discover`.
        settings: SegmentSettings; default :func:`default_settings` (corpus).
        cache_dir: .npz cache folder for :func:`load_segmented`; None = no cache.
        strict: raise DataError (instead of warning) if a subject is in two splits.
        warn: callable(str) for warnings; default prints to stderr.
        skip_short: recordings too short (or too gappy) for one segment are left
            out with a warning naming them; False raises their DataError.
        workers: recordings read at once, in threads (parsing and segmenting are
            NumPy work that releases the GIL); None = ``min(8, os.cpu_count())``, 1 =
            one after another. The result and the first error reported are the same
            for any number: recordings are collected in discovery order.

    Returns:
        split -> list of SegmentedRecording, one entry per requested split.
    """
    settings = settings or default_settings(corpus)
    sources = discover(corpus, data_root, splits)
    leaks = check_leakage(sources)
    if leaks:
        msg = leakage_message(corpus, leaks)
        if strict:
            raise DataError(resolve_corpus_dir(corpus, data_root),
                            msg + " (strict leakage check)")
        warn(msg)
    out = {split: [] for split in _check_splits(splits)}
    skipped = []
    workers = min(8, os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = Progress(len(sources), f"{corpus}: reading and segmenting recordings")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(load_segmented, src, settings, cache_dir) for src in sources]
        try:
            for src, job in zip(sources, jobs):
                try:
                    out[src.split].append(job.result())
                except ShortRecordingError as e:
                    if not skip_short:
                        raise
                    skipped.append((src, e))
                bar.update()
        except BaseException:
            for job in jobs:           # an error (or Ctrl-C): start no further recording
                job.cancel()
            raise
    bar.done(load_summary(corpus, out, len(skipped)))
    if skipped:
        names = ", ".join(f"{s.split}/{s.recording_id}" for s, _ in skipped[:10])
        warn(f"{corpus}: left out {len(skipped)} recording(s) with fewer usable frames "
             f"than one segment: {names}{' ...' if len(skipped) > 10 else ''} "
             f"(first: {skipped[0][1]})")
    return out
