"""Progress reports that suit where they are shown: a tqdm bar on a terminal, plain lines elsewhere.

On a terminal (the stream is a TTY) :func:`progress_bar` returns a tqdm bar, and in a Jupyter
kernel tqdm's notebook widget. Anywhere else — a log file, a CI job, a pipe, ``nohup`` — a bar's
carriage returns pile up into one unreadable line, so it returns a :class:`LineProgress` that
writes one line ``desc: i/total (pct%) [elapsed, rate]`` at most every ``every`` seconds and once
at :meth:`~LineProgress.close`, and never a carriage return. Both have ``update(n=1)``,
``set_postfix(dict, refresh=False)`` and ``close()``; ``enabled=False`` gives an object with the
same methods that reports nothing.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Mapping, Optional, TextIO

__all__ = ["progress_bar", "LineProgress", "NoProgress"]


def progress_bar(total: Optional[int], desc: str, *, unit: str = "it", enabled: bool = True,
                 stream: Optional[TextIO] = None, every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> Any:
    """A progress reporter for ``total`` steps called ``desc``: a tqdm bar when ``stream``
    (default ``sys.stderr``) is a TTY, else a :class:`LineProgress` writing a plain line at
    most every ``every`` seconds of ``clock`` and once at ``close()``; a :class:`NoProgress`
    when not ``enabled`` (module docstring).

    Example:
        >>> import io
        >>> out, now = io.StringIO(), iter([0.0, 2.0, 6.0, 7.0]).__next__   # a fake clock
        >>> bar = progress_bar(4, "sampling", unit="step", stream=out, clock=now)
        >>> bar.update(); bar.update(); bar.close()     # a line at 6 s (≥ 5 s), one at close
        >>> print(out.getvalue(), end="")
        sampling: 2/4 (50%) [00:06, 3 s/step]
        sampling: 2/4 (50%) [00:07, 3.5 s/step]
    """
    if not enabled:
        return NoProgress()
    default = stream is None
    stream = sys.stderr if default else stream
    if default and _in_notebook():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit)
    if _is_tty(stream):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return LineProgress(total, desc, unit=unit, stream=stream, every=every, clock=clock)


class LineProgress:
    """Progress as plain lines, ``desc: i/total (pct%) [elapsed, rate, key=value, ...]``: one
    when an :meth:`update` finds ``every`` seconds passed since the last line (or since the
    start), and one at :meth:`close`; no carriage returns, so logs stay readable. ``clock`` is
    the time source in seconds (a fake one makes it testable).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with LineProgress(None, "training", stream=out, clock=lambda: 0.0) as bar:
        ...     bar.update(3)
        ...     bar.set_postfix({"loss": "0.25"})
        >>> out.getvalue()
        'training: 3 [00:00, ? it/s, loss=0.25]\\n'
    """

    def __init__(self, total: Optional[int], desc: str, *, unit: str = "it",
                 stream: Optional[TextIO] = None, every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) \
                or not math.isfinite(every) or every < 0:
            raise ValueError(f"every must be a finite number of seconds ≥ 0, got {every!r}")
        self.total, self.desc, self.unit, self.every = total, desc, unit, float(every)
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self.start = self.last = clock()
        self.closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; write a line when ``every`` seconds have passed."""
        self.n += n
        now = self.clock()
        if now - self.last >= self.every:
            self._write(now)

    def set_postfix(self, ordered_dict: Optional[Mapping[str, Any]] = None,
                    refresh: bool = False, **kwargs: Any) -> None:
        """Values shown after the rate in the next line (``refresh`` is tqdm's; lines keep
        their pace either way)."""
        self.postfix = {**dict(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        """Write the last line (once)."""
        if not self.closed:
            self.closed = True
            self._write(self.clock())

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def line(self, now: float) -> str:
        """The line at time ``now``: ``desc: i/total (pct%) [elapsed, rate, key=value]``."""
        elapsed = max(now - self.start, 0.0)
        count = f"{self.n}" if self.total is None else f"{self.n}/{self.total}"
        if self.total:
            count += f" ({100 * self.n / self.total:.0f}%)"
        if elapsed <= 0:
            rate = f"? {self.unit}/s"
        elif self.n >= elapsed or self.n == 0:
            rate = f"{self.n / elapsed:.3g} {self.unit}/s"
        else:
            rate = f"{elapsed / self.n:.3g} s/{self.unit}"
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {count} [{_duration(elapsed)}, {rate}{extra}]"

    def _write(self, now: float) -> None:
        self.last = now
        self.stream.write(self.line(now) + "\n")
        flush = getattr(self.stream, "flush", None)
        if callable(flush):
            flush()


class NoProgress:
    """The reporter of ``progress_bar(..., enabled=False)``: the same methods, no output.

    Example:
        >>> bar = NoProgress(); bar.update(5); bar.set_postfix({"loss": 1}); bar.close()
    """

    def update(self, n: int = 1) -> None:
        """Nothing."""

    def set_postfix(self, ordered_dict: Optional[Mapping[str, Any]] = None,
                    refresh: bool = False, **kwargs: Any) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _duration(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on (tqdm's way)."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, whose stderr is not a TTY but shows tqdm's widget."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    except Exception:  # an IPython that cannot say: not a notebook
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
