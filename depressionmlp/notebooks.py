"""Execute the notebooks (``make notebooks``) without a Jupyter command line.

    python -m depressionmlp.notebooks                      # every notebooks/*.ipynb, in place
    python -m depressionmlp.notebooks notebooks/explore_run.ipynb -p STEPS=60
    python -m depressionmlp.notebooks --check              # no execution: figures + sizes

Each notebook runs top to bottom in a fresh kernel (nbclient) with its own folder as
the working directory. ``-p NAME=VALUE`` (a Python literal) is appended to the cell
tagged ``parameters`` for the run only: the file written keeps its original
parameters cell. The kernel draws with matplotlib's inline backend whatever
``MPLBACKEND`` says outside (``--backend`` to change it), so every figure lands in the
notebook as an ``image/png`` output that the repository's web page shows.

:func:`figure_cells` / :func:`check_notebook` are what ``tests/test_notebooks.py``
checks on the committed files: every cell that saves a figure (``save_png(`` or
``savefig(``) has an image output, and the file is under :data:`MAX_BYTES`.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
MAX_BYTES = 2_000_000
INLINE = "module://matplotlib_inline.backend_inline"
FIGURE_CALLS = ("save_png(", "savefig(")


#: stderr lines of TensorFlow's start-up and tracing chatter, dropped from saved outputs
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "triggered tf.function retracing",
         "Kernel is running over TCP")


def drop_noise(nb) -> None:
    """Remove TensorFlow's log chatter (:data:`NOISE`) from the stream outputs of ``nb``
    (stdout and stderr), and stream outputs left empty."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        kept = []
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                lines = [l for l in o["text"].splitlines(keepends=True)
                         if not any(n in l for n in NOISE)]
                if not "".join(lines).strip():
                    continue
                o["text"] = "".join(lines)
            kept.append(o)
        c["outputs"] = kept


def inject_parameters(nb, params: dict) -> str:
    """Append ``NAME = repr(value)`` lines to the cell tagged ``parameters``; returns the
    cell's original source (ValueError when no cell carries the tag)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    cell = cells[0]
    original = cell.source
    if params:
        cell.source = original + "\n# injected\n" + "\n".join(
            f"{k} = {v!r}" for k, v in params.items())
    return original


def execute(path, params: dict | None = None, *, cwd=None, timeout: int = 1800,
            backend: str = INLINE, write_to=None):
    """Run notebook ``path`` with ``params`` injected; returns the executed notebook.

    ``cwd``: the kernel's working directory (default: the notebook's folder);
    ``backend``: the kernel's ``MPLBACKEND``; ``write_to``: where to save the executed
    notebook (its parameters cell restored), None = nowhere.
    """
    import nbformat
    from nbclient import NotebookClient
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    original = inject_parameters(nb, dict(params or {}))
    saved = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = backend              # the kernel inherits the environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(cwd or path.parent)}}).execute()
    finally:
        if saved is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved
    if write_to is not None:
        drop_noise(nb)
        next(c for c in nb.cells
             if "parameters" in c.get("metadata", {}).get("tags", [])).source = original
        nbformat.write(nb, Path(write_to))
    return nb


def figure_cells(nb) -> list:
    """Code cells that save a figure (their source calls ``save_png(`` or ``savefig(``)."""
    return [c for c in nb.cells if c.cell_type == "code"
            and any(call in c.source for call in FIGURE_CALLS)]


def has_image(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def check_notebook(path) -> list[str]:
    """Problems of an executed notebook file: figure cells without an image/png output,
    error outputs, a file of :data:`MAX_BYTES` or more, no figure at all."""
    import nbformat
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = []
    size = path.stat().st_size
    if size >= MAX_BYTES:
        problems.append(f"{path.name}: {size:,} bytes (limit {MAX_BYTES:,})")
    figs = figure_cells(nb)
    if not figs:
        problems.append(f"{path.name}: no cell saves a figure")
    for i, c in enumerate(nb.cells):
        if c in figs and not has_image(c):
            problems.append(f"{path.name}: cell {i} draws a figure but has no image/png output")
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            problems.append(f"{path.name}: cell {i} has an error output")
    return problems


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        value = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        value = v                                     # a bare string
    return k.strip(), value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m depressionmlp.notebooks",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path,
                    help="notebooks to run (default: notebooks/*.ipynb)")
    ap.add_argument("-p", "--param", action="append", type=_param, default=[],
                    help="NAME=VALUE injected into the parameters cell (repeatable)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("--backend", default=INLINE, help="the kernel's MPLBACKEND")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for the executed notebooks (default: in place)")
    ap.add_argument("--check", action="store_true",
                    help="do not execute; check figures and sizes of the files")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    problems = []
    for p in paths:
        if not args.check:
            dest = (args.out / p.name) if args.out else p
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            print(f"{p}: executing...", flush=True)
            execute(p, dict(args.param), timeout=args.timeout, backend=args.backend,
                    write_to=dest)
            print(f"{dest}: {time.time() - t0:.0f} s, {dest.stat().st_size / 1e6:.2f} MB",
                  flush=True)
            p = dest
        problems += check_notebook(p)
    for msg in problems:
        print(msg, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
