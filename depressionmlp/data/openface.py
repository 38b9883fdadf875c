"""Readers for per-frame facial tracking output: OpenFace 2.x CSV and DAIC-WOZ CLNF.

Both return :class:`~depressionmlp.data.types.OpenFaceFrames` with the 2-D landmark
pixels ``x``/``y`` of shape (T, 68) and the AU columns ``au`` of shape (T, P):

- OpenFace 2.x ``FeatureExtraction`` CSV (714 columns, ", "-separated): landmarks
  ``x_0..x_67``, ``y_0..y_67`` (never the 3-D ``X_/Y_/Z_`` nor ``eye_lmk_x_*``);
  AUs are every ``AUxx_r`` column in file order, then every ``AUxx_c`` column in
  file order (P = 35).
- DAIC-WOZ ``NNN_CLNF_features.txt`` (``frame, timestamp, confidence, success,
  x0..x67, y0..y67``) joined on ``frame`` with ``NNN_CLNF_AUs.txt`` beside it
  (14 ``AUxx_r`` + 6 ``AUxx_c``, P = 20).

Well-formed files (ASCII numbers, the header's field count on every line) are read
by the vectorised :func:`~depressionmlp.data.fastcsv.read_plain_columns`; anything
else, and every file with a problem, by pandas' C engine restricted to the needed
columns, which finds and names the problem. Anything unusable
raises :class:`~depressionmlp.errors.DataError` naming the file and, where it
helps, the 1-based line (the header is line 1) and column. A cell that is not a
number is an error on a tracked row; on a row OpenFace marked ``success == 0`` it
is read as NaN, since that frame is dropped anyway.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from depressionmlp.data.fastcsv import read_plain_columns
from depressionmlp.data.schema import N_LANDMARKS
from depressionmlp.data.types import OpenFaceFrames
from depressionmlp.errors import DataError

AU_R_PATTERN = re.compile(r"^AU\d+_r$")
AU_C_PATTERN = re.compile(r"^AU\d+_c$")
OPENFACE_X = [f"x_{i}" for i in range(N_LANDMARKS)]
OPENFACE_Y = [f"y_{i}" for i in range(N_LANDMARKS)]
DAIC_X = [f"x{i}" for i in range(N_LANDMARKS)]
DAIC_Y = [f"y{i}" for i in range(N_LANDMARKS)]
DAIC_FEATURES_SUFFIX = "_CLNF_features.txt"
DAIC_AUS_SUFFIX = "_CLNF_AUs.txt"
_SUCCESS_NAMES = ("success", "detection_success")
_F32_MAX = float(np.finfo(np.float32).max)


# ----------------------------------------------------------------------------- header

def read_header(path) -> list[str]:
    """The column names of a ", "-separated file, stripped.

    Raises DataError if the file is missing, empty, or not a file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "is not a file")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
        with open(path, "r", encoding="utf-8-sig", errors="replace", newline="") as f:
            first = f.readline()
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or e}") from None
    check_text(path, head)
    names = [c.strip() for c in first.rstrip("\r\n").split(",")]
    if not any(names):
        raise DataError(path, "first line is blank; expected a header", row=1)
    return names


_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


def check_text(path, head: bytes) -> None:
    """DataError unless ``head`` (the file's first bytes) looks like text.

    A NUL byte, or more than 1 in 10 bytes being control characters, means a
    binary file (a video, an archive, a spreadsheet) given where a CSV belongs.
    """
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(path, "is UTF-16 text; save the CSV as UTF-8 (OpenFace writes UTF-8)")
    nul = head.find(b"\0")
    n_ctrl = sum(head.count(bytes([c])) for c in _CONTROL)
    if nul >= 0 or n_ctrl > len(head) / 10:
        where = f" (NUL byte at offset {nul})" if nul >= 0 else ""
        raise DataError(path, f"not a text file: binary content{where}; expected an "
                              "OpenFace CSV / DAIC-WOZ text file")


def au_columns(names) -> list[str]:
    """AU columns as OpenFace orders them: all ``AUxx_r`` in file order, then ``AUxx_c``."""
    return ([n for n in names if AU_R_PATTERN.match(n)]
            + [n for n in names if AU_C_PATTERN.match(n)])


def _success_column(names) -> str | None:
    return next((n for n in _SUCCESS_NAMES if n in names), None)


def _require(path, names, required) -> None:
    have = set(names)
    missing = [c for c in required if c not in have]
    if missing:
        shown = ", ".join(missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(path, f"missing required column(s) {shown}{more} "
                              f"({len(names)} columns in header)")


# ----------------------------------------------------------------------------- table

def read_numeric_table(path, names: list[str], wanted: list[str], *,
                       engine: str = "auto", threads: int | None = None
                       ) -> dict[str, np.ndarray]:
    """Read columns ``wanted`` of a ", "-separated file as float64 arrays.

    Args:
        path: the file.
        names: its header (from :func:`read_header`).
        wanted: column names, all present in ``names``.
        engine: "auto" (the vectorised reader, pandas where it declines) or
            "pandas" (always pandas: the reference path, kept for ``make bench``).
        threads: the vectorised reader's threads (None: the usable cores, at most 4).

    Returns:
        name -> (T,) float64, T = data rows. Non-numeric cells on rows whose
        success column is 0 become NaN.

    Raises DataError for no data rows, a ragged or truncated line, an empty cell,
    or a non-numeric cell on a tracked row (with its line number and column).
    """
    if engine not in ("auto", "pandas"):
        raise ValueError(f"engine must be 'auto' or 'pandas', not {engine!r}")
    first_at = {}
    for i, c in enumerate(names):
        first_at.setdefault(c, i)                 # names.index(c), for every c at once
    pos = sorted(first_at[c] for c in wanted)
    if engine == "auto":
        block = read_plain_columns(path, len(names), pos, threads=threads)
        if block is not None:     # plain numbers of at most 14 digits: finite, no NaN,
            out = {names[p]: block[i] for i, p in enumerate(pos)}   # within float32
            return {c: out[c] for c in wanted}
    check_field_counts(path, len(names))
    try:
        df = pd.read_csv(path, sep=",", header=0, usecols=pos, skipinitialspace=True,
                         engine="c", dtype=np.float64, encoding="utf-8-sig",
                         skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DataError(path, "no data rows (header only)") from None
    except pd.errors.ParserError as e:
        raise _ragged_error(path, len(names), str(e)) from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte {e.start})") from None
    except (ValueError, TypeError):
        df = _read_lenient(path, pos, names)
    df.columns = [names[p] for p in pos]
    if len(df) == 0:
        raise DataError(path, "no data rows (header only)")
    out = {c: df[c].to_numpy(dtype=np.float64) for c in wanted}
    _check_missing(path, out, wanted)
    return out


def check_field_counts(path, n_cols: int, block: int = 1 << 24) -> None:
    """Every non-blank line must have ``n_cols`` comma-separated fields.

    pandas with ``usecols`` silently ignores extra fields and fills missing ones
    with NaN, which would shift columns; this scan (about 0.5 GB/s, memory bounded
    by ``block``) catches a ragged line anywhere and a truncated last line.
    """
    want = n_cols - 1
    line_no, carry = 0, b""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while True:
            chunk = f.read(block)
            final = not chunk or f.tell() >= size
            lines = (carry + chunk).split(b"\n")
            carry = b"" if final else lines.pop()
            counts = np.fromiter((ln.count(b",") for ln in lines), np.int64, len(lines))
            last = len(lines) - 1
            while final and last >= 0 and not lines[last].strip():
                last -= 1                        # the last non-blank line of the file
            for i in np.flatnonzero(counts != want):
                if lines[i].strip():
                    _field_count_error(path, line_no + int(i) + 1, int(counts[i]) + 1,
                                       n_cols, last=final and i == last)
            line_no += len(lines)
            if final:
                break


def _field_count_error(path, line: int, k: int, n_cols: int, last: bool):
    if last and k < n_cols:
        raise DataError(path, f"truncated last line: {k} of {n_cols} fields", row=line)
    raise DataError(path, f"line has {k} fields, the header has {n_cols}", row=line)


def _ragged_error(path, n_cols: int, msg: str) -> DataError:
    m = re.search(r"line (\d+), saw (\d+)", msg)
    if m:
        return DataError(path, f"line has {m.group(2)} fields, the header has {n_cols}",
                         row=int(m.group(1)))
    return DataError(path, f"cannot parse as CSV: {msg.strip()}")


def _read_lenient(path, pos, names) -> pd.DataFrame:
    """Slow path: read as text, find the non-numeric cells, keep failed rows as NaN."""
    try:
        raw = pd.read_csv(path, sep=",", header=0, usecols=pos, skipinitialspace=True,
                          engine="c", dtype=str, keep_default_na=False,
                          encoding="utf-8-sig", skip_blank_lines=True)
    except pd.errors.ParserError as e:
        raise _ragged_error(path, len(names), str(e)) from None
    raw.columns = [names[p] for p in pos]
    num = raw.apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
    text = raw.apply(lambda s: s.str.strip())
    bad = num.isna().to_numpy() & (text != "").to_numpy()
    succ = _success_column(list(raw.columns))
    failed = np.zeros(len(raw), bool)
    if succ is not None:
        failed = num[succ].to_numpy() == 0
    hard = bad & ~failed[:, None]
    if hard.any():
        r, c = np.argwhere(hard)[0]
        col = raw.columns[c]
        raise DataError(path, f"not a number: {raw.iat[r, c]!r}", row=_line_of(path, r),
                        column=col)
    return num.astype(np.float64)


def _line_of(path, data_index: int) -> int:
    """1-based file line of data row ``data_index`` (header = line 1, blank lines skipped)."""
    seen = -1
    with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 or not line.strip():
                continue
            seen += 1
            if seen == data_index:
                return lineno
    return data_index + 2


def _check_missing(path, cols: dict, wanted: list[str]) -> None:
    """Empty cells (NaN) are errors, except on rows with success == 0."""
    succ = _success_column(wanted)
    n = len(next(iter(cols.values())))
    failed = np.zeros(n, bool) if succ is None else (cols[succ] == 0)
    for c in ("frame", "timestamp", "confidence", succ):
        if c in cols and np.isnan(cols[c]).any():
            failed = np.zeros(n, bool)       # meta columns must always be present
            break
    nan_rows = np.zeros(n, bool)
    first_col = {}
    for c in wanted:
        bad = np.isnan(cols[c]) & ~failed
        if bad.any():
            i = int(np.argmax(bad))
            first_col.setdefault(i, c)
            nan_rows |= bad
    if nan_rows.any():
        i = int(np.argmax(nan_rows))
        raise DataError(path, "empty or missing value", row=_line_of(path, i),
                        column=first_col[i])
    for c in wanted:                 # inf, or beyond float32 (what training computes in)
        v = cols[c]
        bad = (np.abs(v) > _F32_MAX) & ~failed
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(path, f"value {v[i]:g} is not a finite float32 number",
                            row=_line_of(path, i), column=c)


def _frames_from(path, cols: dict, succ: str, x_names, y_names, au_names):
    """Assemble OpenFaceFrames from column arrays; DataError if nothing was tracked."""
    success = cols[succ] != 0
    if not success.any():
        raise DataError(path, f"OpenFace tracking failed on every frame "
                              f"({len(success)} frames with {succ} == 0)")
    return OpenFaceFrames(
        path=os.fspath(path),
        frame=cols["frame"].astype(np.int64),
        timestamp=cols["timestamp"].astype(np.float64),
        success=success,
        confidence=cols["confidence"].astype(np.float32),
        x=np.stack([cols[c] for c in x_names], axis=1, dtype=np.float32),
        y=np.stack([cols[c] for c in y_names], axis=1, dtype=np.float32),
        au=np.stack([cols[c] for c in au_names], axis=1, dtype=np.float32),
        au_names=list(au_names))


# ----------------------------------------------------------------------------- readers

def read_openface_csv(path, *, engine: str = "auto", threads: int | None = None):
    """Read an OpenFace 2.x FeatureExtraction CSV.

    Args:
        path: the CSV (header ``frame, face_id, timestamp, confidence, success, ...``).
        engine, threads: as :func:`read_numeric_table` ("pandas": the reference path).

    Returns:
        OpenFaceFrames with x, y (T, 68) 2-D landmark pixels from ``x_i``/``y_i``
        and au (T, P) from the ``AUxx_r`` then ``AUxx_c`` columns (P = 35).

    Raises:
        DataError: missing/empty file, header only, missing columns, a ragged or
            truncated line, a non-numeric cell, or tracking failed on every frame.
    """
    names = read_header(path)
    aus = au_columns(names)
    succ = _success_column(names) or "success"
    _require(path, names, ["frame", "timestamp", "confidence", succ] + OPENFACE_X + OPENFACE_Y)
    if not aus:
        raise DataError(path, "no AU columns (AUxx_r / AUxx_c) in the header; run "
                              "OpenFace FeatureExtraction with -aus (or without -2Dfp only)")
    wanted = ["frame", "timestamp", "confidence", succ] + OPENFACE_X + OPENFACE_Y + aus
    cols = read_numeric_table(path, names, wanted, engine=engine, threads=threads)
    return _frames_from(path, cols, succ, OPENFACE_X, OPENFACE_Y, aus)


def daic_aus_path(features_path) -> Path:
    """``.../NNN_CLNF_AUs.txt`` beside ``.../NNN_CLNF_features.txt``."""
    p = Path(features_path)
    if not p.name.endswith(DAIC_FEATURES_SUFFIX):
        raise DataError(p, f"not a DAIC-WOZ features file (name must end in "
                           f"{DAIC_FEATURES_SUFFIX})")
    return p.with_name(p.name[: -len(DAIC_FEATURES_SUFFIX)] + DAIC_AUS_SUFFIX)


def read_daic_clnf(features_path):
    """Read a DAIC-WOZ recording: ``NNN_CLNF_features.txt`` + ``NNN_CLNF_AUs.txt``.

    The two files are joined on ``frame`` (inner join); a frame counts as tracked
    only if both files mark it ``success``, and its confidence is the smaller one.

    Returns:
        OpenFaceFrames with x, y (T, 68) from ``x0..x67``/``y0..y67`` and au (T, 20).

    Raises:
        DataError: as :func:`read_openface_csv`, plus a missing AUs file, or no
            frame number shared by the two files.
    """
    features_path = Path(features_path)
    aus_path = daic_aus_path(features_path)
    f_names = read_header(features_path)
    f_succ = _success_column(f_names) or "success"
    meta = ["frame", "timestamp", "confidence"]
    _require(features_path, f_names, meta + [f_succ] + DAIC_X + DAIC_Y)
    if not aus_path.exists():
        raise DataError(aus_path, f"DAIC-WOZ AUs file missing (needed beside "
                                  f"{features_path.name})")
    a_names = read_header(aus_path)
    a_succ = _success_column(a_names) or "success"
    _require(aus_path, a_names, meta + [a_succ])
    aus = au_columns(a_names)
    if not aus:
        raise DataError(aus_path, "no AU columns (AUxx_r / AUxx_c) in the header")
    fc = read_numeric_table(features_path, f_names, meta + [f_succ] + DAIC_X + DAIC_Y)
    ac = read_numeric_table(aus_path, a_names, meta + [a_succ] + aus)
    _, fi, ai = np.intersect1d(fc["frame"], ac["frame"], assume_unique=False,
                               return_indices=True)
    if len(fi) == 0:
        raise DataError(aus_path, f"no frame number in common with {features_path.name}")
    cols = {k: v[fi] for k, v in fc.items()}
    cols.update({k: v[ai] for k, v in ac.items() if k in aus})
    cols["success"] = ((fc[f_succ][fi] != 0) & (ac[a_succ][ai] != 0)).astype(np.float64)
    cols["confidence"] = np.minimum(fc["confidence"][fi], ac["confidence"][ai])
    return _frames_from(features_path, cols, "success", DAIC_X, DAIC_Y, aus)


def read_recording(path):
    """Read one recording, choosing the reader by file name.

    ``*_CLNF_features.txt`` -> :func:`read_daic_clnf`; ``*_CLNF_AUs.txt`` -> the
    features file beside it; anything else -> :func:`read_openface_csv`.
    """
    p = Path(path)
    if p.name.endswith(DAIC_AUS_SUFFIX):
        p = p.with_name(p.name[: -len(DAIC_AUS_SUFFIX)] + DAIC_FEATURES_SUFFIX)
    if p.name.endswith(DAIC_FEATURES_SUFFIX):
        return read_daic_clnf(p)
    return read_openface_csv(p)


def dependency_paths(path) -> list[Path]:
    """Files a recording's content depends on (for cache keys)."""
    p = Path(path)
    if p.name.endswith(DAIC_FEATURES_SUFFIX):
        return [p, daic_aus_path(p)]
    return [p]
