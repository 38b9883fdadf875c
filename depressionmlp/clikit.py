"""What both command lines share: the error guard and quiet TensorFlow start-up."""

from __future__ import annotations

import functools
import os
import sys

from depressionmlp.errors import DataError


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (call before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def guarded(fn):
    """Run a CLI entry point; bad input becomes one line on stderr and exit 2.

    ``DataError`` (bad files, labels, configs, models) -> ``error: <message>``,
    exit 2, no traceback. Ctrl-C -> exit 130. Anything else is a bug and keeps
    its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "depressionkit"
        if prog in ("__main__.py", "-c", "-m"):
            prog = fn.__module__.split(".")[0]
        try:
            rc = fn(*args, **kwargs)
        except DataError as e:
            print(f"{prog}: error: {e.message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        return 0 if rc is None else rc

    return wrapper
