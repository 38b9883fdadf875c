"""Progress on stderr while recordings are read, segmented or aligned.

The command lines switch it on (``set_enabled(not args.quiet)``); library use stays
silent unless asked. On a terminal one line is redrawn (count, rate, time left);
otherwise (a log file, CI) an occasional plain line is written, at most one every
``every_s`` seconds, so logs stay short. ``Progress.done(summary)`` ends with one
summary line.

    bar = progress.Progress(len(sources), "reading recordings")
    for src in sources:
        ...
        bar.update()
    bar.done("120 recordings, 2,041 segments, 310 frames dropped, 118 from cache")
"""

from __future__ import annotations

import sys
import time

_ENABLED = False
_DRAWN = None                   # the Progress whose bar is on screen now, if any


def set_enabled(on: bool) -> None:
    """Show progress (the CLIs: unless ``--quiet``); off by default for library use."""
    global _ENABLED
    _ENABLED = bool(on)


def enabled() -> bool:
    return _ENABLED


def clear() -> None:
    """Erase a bar left on the terminal (an error is about to be printed)."""
    global _DRAWN
    if _DRAWN is not None:
        _DRAWN.stream.write("\r\033[K")
        _DRAWN.stream.flush()
        _DRAWN = None


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Count ``total`` steps of ``label`` on ``stream`` (default stderr).

    Args:
        total: number of steps (recordings, videos).
        label: what is being done, e.g. ``"reading recordings"``.
        stream: where to write; default ``sys.stderr``.
        enabled: override the module switch (:func:`set_enabled`).
        every_s: seconds between plain lines when the stream is not a terminal.
        min_total_s: say nothing at all if everything finishes within this time
            (the summary line from :meth:`done` is still written).
    """

    def __init__(self, total: int, label: str, *, stream=None, enabled: bool | None = None,
                 every_s: float = 10.0, min_total_s: float = 0.5):
        self.total, self.label = int(total), label
        self.stream = stream if stream is not None else sys.stderr
        self.on = _ENABLED if enabled is None else bool(enabled)
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.every_s, self.min_total_s = every_s, min_total_s
        self.n, self.t0 = 0, time.monotonic()
        self._last = self.t0
        self._drawn = False

    def _line(self, note: str = "") -> str:
        el = time.monotonic() - self.t0
        text = f"{self.label}: {self.n}/{self.total}"
        if self.n and self.n < self.total:
            text += f", {_fmt_seconds(el / self.n * (self.total - self.n))} left"
        text += f" ({_fmt_seconds(el)})"
        return text + (f" {note}" if note else "")

    def update(self, n: int = 1, note: str = "") -> None:
        self.n += n
        if not self.on:
            return
        now = time.monotonic()
        if now - self.t0 < self.min_total_s and self.n < self.total:
            return
        if self.tty:
            if now - self._last >= 0.1 or self.n >= self.total:
                global _DRAWN
                self.stream.write("\r\033[K" + self._line(note))
                self.stream.flush()
                self._last, self._drawn, _DRAWN = now, True, self
        elif now - self._last >= self.every_s:
            self.stream.write(self._line(note) + "\n")
            self.stream.flush()
            self._last = now

    def done(self, summary: str | None = None) -> None:
        """End the bar; write ``summary`` (one line, with the elapsed time) if given."""
        global _DRAWN
        if not self.on:
            return
        if self._drawn:
            self.stream.write("\r\033[K")
            _DRAWN = None
        if summary:
            self.stream.write(f"{summary} in {_fmt_seconds(time.monotonic() - self.t0)}\n")
        self.stream.flush()
