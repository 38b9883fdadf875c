"""`python -m depressionmlp ...` (also the `depressionmlp` console script)."""

from __future__ import annotations

from depressionmlp.clikit import guarded, quiet_tensorflow  # noqa: F401  (shared with hmhn.cli)


def main(argv=None) -> int:  # filled in below as commands land
    raise SystemExit("not yet")
