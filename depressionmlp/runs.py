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


def load_keras_file(path, custom_objects=None):
    """Load a ``.keras`` model with ``safe_mode=True``; any failure is one DataError.

    The packages' layers must be registered (imported) before the call.
    """
    import keras
    path = Path(path)
    if not path.exists():
        raise DataError(path, "model file not found")
    if path.is_dir():
        raise DataError(path, "expected a .keras model file, got a directory")
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
    model_file = p / "best.keras" if p.is_dir() else p
    cfg_file = model_file.parent / "config.json"
    if not cfg_file.exists():
        raise DataError(cfg_file, "no config.json beside the model; pass a run directory "
                                  f"written by `{trainer}`")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(cfg_file, f"not valid JSON: {e}") from None
    return model_file, cfg


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
