"""What both command lines share: the error guard, quiet TensorFlow start-up, the
help formatter and ``--version``."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile

from depressionmlp.errors import DataError

# Lines TensorFlow's C++ side writes straight to file descriptor 2 while it loads,
# before (and regardless of) TF_CPP_MIN_LOG_LEVEL: absl's pre-init notice, oneDNN's
# round-off note, CPU-instruction and CUDA-plugin registration chatter.
STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory", "computation_placer.cc",
    "TF-TRT Warning", "Could not find cuda drivers", "cuda_executor.cc",
    "Attempting to register factory for plugin",
)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (call before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their start-up lines kept off stderr.

    Some of those lines come from C++ before any log level applies, so file
    descriptor 2 is pointed at a temporary file during the import; afterwards every
    captured line that is not known start-up noise (:data:`STARTUP_NOISE`) is
    written to stderr, so real problems still show. No-op once TensorFlow is loaded.
    """
    if "tensorflow" in sys.modules:
        return
    quiet_tensorflow()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):      # no real fd 2 (embedded use)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured = tmp.read().decode("utf-8", errors="replace")
            kept = [ln for ln in captured.splitlines()
                    if ln.strip() and not any(n in ln for n in STARTUP_NOISE)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def package_version() -> str:
    """The installed depressionkit version (``setup.cfg``), or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("depressionkit")
    except PackageNotFoundError:
        return "unknown"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends ``(default: X)`` to every
    option's help whose default is a value (not None, not a False flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default in (None, False, argparse.SUPPRESS)
                or action.option_strings == [] or isinstance(action, argparse._HelpAction)):
            return text
        return f"{text} (default: {default})".strip()


def add_version(parser: argparse.ArgumentParser, prog: str) -> None:
    parser.add_argument("--version", action="version",
                        version=f"{prog} {package_version()} (depressionkit)",
                        help="print the version and exit")


def add_command(sub, name: str, help: str, fn, *, needs_tf: bool = True):
    """A subcommand with the shared formatter; ``needs_tf``: import TensorFlow first."""
    s = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
    s.set_defaults(fn=fn, needs_tf=needs_tf)
    return s


def add_scaling_options(s) -> None:
    """--distribute, --cpu-devices, --precision (depressionmlp/scaling.py); both CLIs' train."""
    s.add_argument("--distribute", choices=["auto", "none", "mirrored", "multiworker"],
                   help="tf.distribute strategy (default: the config's train.distribute, "
                        "auto: mirrored where more than one GPU is visible, else none; "
                        "multiworker is refused: Keras 3's fit fails under it)")
    s.add_argument("--cpu-devices", type=int, metavar="N",
                   help="split the CPU into N logical devices (mirrored then runs N "
                        "replicas on a CPU machine)")
    s.add_argument("--precision", choices=["auto", "float32", "mixed_float16",
                                           "mixed_bfloat16"],
                   help="dtype policy (default: the config's train.precision, auto: mixed "
                        "where a GPU supports it, float32 on CPU)")


def run_command(args) -> int:
    """Turn progress display on (unless ``--quiet``), load TensorFlow quietly if the
    command needs it, then run ``args.fn(args)``."""
    from depressionmlp import progress
    was = progress.enabled()
    progress.set_enabled(not getattr(args, "quiet", False))
    try:
        if getattr(args, "needs_tf", True):
            import_tensorflow_quietly()
        return args.fn(args)
    finally:
        progress.set_enabled(was)


def guarded(fn):
    """Run a CLI entry point; bad input becomes one line on stderr and exit 2.

    ``DataError`` (bad files, labels, configs, models) -> ``error: <message>``,
    exit 2, no traceback; so does an ``OSError`` that names a file (permission
    denied, disk full, a file where a folder should be). Ctrl-C -> exit 130.
    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "depressionkit"
        if prog in ("__main__.py", "-c", "-m") or prog.endswith(".py") or "pytest" in prog:
            prog = fn.__module__.split(".")[0]
        from depressionmlp import progress
        try:
            rc = fn(*args, **kwargs)
        except DataError as e:
            progress.clear()
            print(f"{prog}: error: {e.message}", file=sys.stderr)
            return 2
        except OSError as e:
            if e.filename is None:
                raise
            progress.clear()
            print(f"{prog}: error: {DataError.from_os_error(e).message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        return 0 if rc is None else rc

    return wrapper
