"""Run directories, JSON written atomically, TOML configs as data.

One run = one directory ``<base>/<name>-<YYYYmmdd-HHMMSS>[-k]`` holding
``config.json`` (the resolved config), ``metrics.json``, checkpoints and logs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import tomllib
from pathlib import Path

from depressionmlp.errors import DataError


def new_run_dir(base, name: str) -> Path:
    """Create and return a fresh run directory under ``base``; never reuses one."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if (c.isalnum() or c in "-_.+") else "_" for c in name) or "run"
    for k in range(1000):
        path = base / (f"{safe}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {base}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    elif hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj) -> None:
    """JSON (NaN/inf written as null, numpy values as Python ones), atomically."""
    write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def load_config(path) -> dict:
    """Read a TOML config file as a dict; bad files raise DataError naming them."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise DataError(path, f"not valid TOML: {e}") from None


def config_table(cfg: dict, key: str, source) -> dict:
    """``cfg[key]`` as a table (created if absent), for command-line overrides;
    ``train = 3`` in the file is a DataError naming ``source``."""
    table = cfg.setdefault(key, {})
    if not isinstance(table, dict):
        raise DataError(source, f"config key '{key}' must be a table ([{key}]), got {table!r}")
    return table


def deep_update(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (configs as data)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def save_model_atomic(model, path) -> None:
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def check_keras_archive(path) -> Path:
    """A ``.keras`` file must exist and be a complete zip archive; else DataError.

    Keras reports a file it cannot open as a zip as "File not found", which misleads
    when the file is there but empty, truncated or corrupt; this says which.
    """
    import zipfile
    path = Path(path)
    if not path.exists():
        raise DataError(path, "model file not found")
    if path.is_dir():
        raise DataError(path, "expected a .keras model file, got a directory")
    size = path.stat().st_size
    if size == 0:
        raise DataError(path, "not a readable .keras model: the file is empty (0 bytes); "
                              "the run that wrote it was probably killed")
    if not zipfile.is_zipfile(path):
        raise DataError(path, f"not a readable .keras model: not a zip archive "
                              f"({size:,} bytes; truncated or corrupt?)")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(path, f"not a readable .keras model: corrupt zip archive ({e})") from None
    if bad is not None:
        raise DataError(path, f"not a readable .keras model: member {bad!r} is corrupt "
                              "(checksum mismatch)")
    if "config.json" not in names:
        raise DataError(path, "not a readable .keras model: the zip archive has no config.json")
    return path


def load_keras_file(path, custom_objects=None):
    """Load a ``.keras`` model with ``safe_mode=True``; any failure is one DataError.

    The packages' layers must be registered (imported) before the call.
    """
    import keras
    path = check_keras_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=True, custom_objects=custom_objects)
    except Exception as e:  # zip / json / weight errors all mean: not a usable model
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(path, f"not a readable .keras model ({msg[:160]})") from None


def run_files(model_path, trainer: str) -> tuple[Path, dict]:
    """``(model file, config)`` of a run directory or of a ``.keras`` file in one.

    ``trainer`` names the command that writes run directories, for the message.
    """
    p = Path(model_path)
    if not p.exists():
        raise DataError(p, "no such run directory or .keras file (pass a run directory "
                           f"written by `{trainer}`)")
    model_file = p / "best.keras" if p.is_dir() else p
    cfg_file = model_file.parent / "config.json"
    if p.is_dir() and not model_file.exists():
        what = ("a run directory without best.keras (killed before its first epoch "
                "ended?)" if cfg_file.exists() else
                f"not a run directory: no best.keras and no config.json (pass a run "
                f"directory written by `{trainer}`)")
        raise DataError(p, what)
    if not cfg_file.exists():
        raise DataError(cfg_file, "no config.json beside the model; pass a run directory "
                                  f"written by `{trainer}`")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(cfg_file, f"not valid JSON: {e}") from None
    return model_file, cfg


def check_numbers(section: dict, keys, source, prefix: str, *, positive=(),
                  optional=()) -> None:
    """Config values that must be numbers: ``section[k]`` for ``k`` in ``keys``.

    ``positive``: keys that must also be > 0; ``optional``: keys that may be None.
    Raises DataError naming ``source`` and the ``prefix``-ed key (so ``learning_rate =
    "fast"`` is one line, not an optimizer traceback).
    """
    for k in keys:
        v = section.get(k)
        if v is None and k in optional:
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ok and k in positive:
            ok = v > 0
        if not ok:
            kind = "a positive number" if k in positive else "a number"
            if k in optional:
                kind += " (or absent)"
            raise DataError(source, f"{prefix}{k} must be {kind}, got {v!r}")


def check_output_dir(path, *, what: str = "output folder", empty: bool = False) -> Path:
    """Check, before any heavy work, that folder ``path`` can be created or written.

    Walks up to the nearest existing folder: a file anywhere on the way, or a
    folder the user may not write to, raises DataError naming the path. Nothing is
    created. ``empty``: an existing non-empty folder is an error too.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise DataError(path, f"{what} exists and is a file, not a folder; "
                                  "choose another path")
        if empty and any(path.iterdir()):
            raise DataError(path, f"{what} exists and is not empty; choose a new one")
        if not os.access(path, os.W_OK | os.X_OK):
            raise DataError(path, f"{what} is not writable (permission denied)")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(parent, f"is a file, so {what} {path} cannot be created in it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(path, f"cannot create {what}: {parent} is not writable "
                              "(permission denied)")
    return path


def check_output_file(path, *, what: str = "output file") -> Path:
    """Like :func:`check_output_dir` for a file: its folder must be writable and
    the path itself must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"{what} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise DataError(path, f"{what} is not writable (permission denied)")
    check_output_dir(path.absolute().parent, what="folder for " + what)
    return path


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename folder ``tmp`` to ``out``; an existing ``out`` is moved aside first, then
    removed, so ``out`` is never half-written (used by the corpus generators)."""
    import shutil
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_resumable(run_dir, require_started: bool = True) -> None:
    """``--resume`` needs a run directory that started (``require_started``: it has
    its config.json) and has not finished (no metrics.json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "no such run directory to resume")
    if (run_dir / "metrics.json").exists():
        raise DataError(run_dir, "this run finished (metrics.json is there); nothing to "
                                 "resume: start a new run instead")
    if require_started and not (run_dir / "config.json").exists():
        raise DataError(run_dir, "not a run directory (no config.json): nothing to resume")


def clean_temporaries(run_dir) -> None:
    """Remove the ``.<name>.tmp.*`` files an atomic write killed half-way leaves."""
    for tmp in Path(run_dir).glob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def committed_backup(run_dir, name, state_file="selection.json") -> Path:
    """``<run_dir>/backup/<name>``, the backup a run's committed state names; a
    DataError when it is missing (a resume cannot continue without it)."""
    path = Path(run_dir) / "backup" / str(name or "")
    if not name or not path.is_file():
        raise DataError(run_dir, f"cannot resume: the backup {name!r} named in {state_file} "
                                 f"is missing")
    return path
