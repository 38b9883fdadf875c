"""The one error type for bad input, shared by both packages.

Every reader, loader and CLI command raises :class:`DataError` for input it
cannot use (a malformed CSV, a missing column, failed tracking, too few frames,
a wrong label file, a corrupt model file). The message names the file and,
where it helps, the row or column, and says what is wrong. The CLIs turn it
into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os


class DataError(Exception):
    """Input that cannot be used, with the file it came from.

    Args:
        path: the offending file or folder (str or PathLike), or None.
        problem: what is wrong, in one sentence, no trailing period needed.
        row: optional 1-based data row (CSV line numbers count the header as 1).
        column: optional column name.
    """

    def __init__(self, path, problem: str, *, row: int | None = None,
                 column: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.row = row
        self.column = column
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        loc = f" ({', '.join(where)})" if where else ""
        head = f"{self.path}{loc}: " if self.path else (f"{', '.join(where)}: " if where else "")
        return f"{head}{self.problem}"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message

    @classmethod
    def from_os_error(cls, e: OSError) -> "DataError":
        """An OSError that names a file (permission denied, disk full, a file where a
        folder should be) as a DataError on that file."""
        problem = e.strerror or str(e) or type(e).__name__
        problem = problem[:1].lower() + problem[1:]
        if e.filename2 is not None:
            problem += f" (and {os.fspath(e.filename2)})"
        return cls(e.filename, problem)
