"""Progress of long work (a table rebuild's copy, a backup, a restore): a small reporter passed
in, that logs a line at most every second once the work has run a second, or draws a bar in a
terminal (tqdm, imported only when such work starts)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any, Protocol, TextIO

from loguru import logger

Clock = Callable[[], float]


class Progress(Protocol):
    """Told about one piece of work at a time: what, how much, how far."""

    def start(self, what: str, total: int | None, unit: str) -> None:
        """Work begins: what it is ("Rebuilding table tasks"), its size in unit ("rows",
        "bytes"), or None when the size is not known beforehand."""

    def advance(self, n: int) -> None:
        """n more units are done."""

    def finish(self) -> None:
        """The work has ended."""


@contextmanager
def tracked(
    progress: Progress, what: str, total: int | None, unit: str
) -> Iterator[Callable[[int], None]]:
    """start, yield advance, finish (also when the work fails)."""
    progress.start(what, total, unit)
    try:
        yield progress.advance
    finally:
        progress.finish()


class LogProgress:
    """An INFO line at most every `every_s` once the work has run `after_s`, and one when it
    ends: `Rebuilding table tasks: 400000/1000000 rows (40%), 120000 rows/s, 5s left`."""

    def __init__(self, after_s: float = 1.0, every_s: float = 1.0, clock: Clock = time.monotonic):
        self.after_s = after_s
        self.every_s = every_s
        self.clock = clock
        self._what, self._unit = "", ""
        self._total: int | None = None
        self._done, self._started = 0, 0.0
        self._logged_at: float | None = None

    def start(self, what: str, total: int | None, unit: str) -> None:
        self._what, self._total, self._unit = what, total, unit
        self._done, self._started, self._logged_at = 0, self.clock(), None

    def advance(self, n: int) -> None:
        self._done += n
        now = self.clock()
        if now - self._started < self.after_s:
            return
        if self._logged_at is None or now - self._logged_at >= self.every_s:
            self._logged_at = now
            logger.info("{}", self._line(now, ending=False))

    def finish(self) -> None:
        now = self.clock()
        if self._logged_at is not None or now - self._started >= self.after_s:
            logger.info("{}", self._line(now, ending=True))

    def _line(self, now: float, ending: bool) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        done, total = self._done, self._total
        if total is None:
            head = f"{self._what}: {_amount(done, self._unit)}"
        else:
            share = 100 if total == 0 else min(100, int(done * 100 / total))
            head = f"{self._what}: {_amount(done, self._unit, total)} ({share}%)"
        tail = f"took {elapsed:.1f}s" if ending else _left(done, total, rate)
        return ", ".join(part for part in (head, f"{_amount(rate, self._unit)}/s", tail) if part)


def _left(done: int, total: int | None, rate: float) -> str:
    if total is None or rate <= 0:
        return ""
    return f"{max(0.0, (total - done) / rate):.0f}s left"


_BYTES = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def _amount(n: float, unit: str, total: int | None = None) -> str:
    """400000 rows, 400000/1000000 rows; bytes in the KiB, MiB or GiB the larger number needs:
    12.0/48.0 MiB."""
    if unit != "bytes":
        return f"{n:.0f}/{total} {unit}" if total is not None else f"{n:.0f} {unit}"
    scale, name = next(((s, u) for s, u in _BYTES if max(n, total or 0) >= s), (1, "B"))
    of = f"/{total / scale:.1f}" if total is not None else ""
    return f"{n / scale:.1f}{of} {name}"


class BarProgress:
    """A tqdm bar on a terminal stream, shown once the work has run `after_s`."""

    def __init__(self, stream: TextIO, after_s: float = 1.0) -> None:
        self.stream = stream
        self.after_s = after_s
        self._bar: Any = None

    def start(self, what: str, total: int | None, unit: str) -> None:
        # Only when long work starts: a start with nothing to do never imports it.
        from tqdm import tqdm  # type: ignore[import-untyped]

        in_bytes = unit == "bytes"
        self._bar = tqdm(
            total=total,
            desc=what,
            unit="B" if in_bytes else f" {unit}",
            unit_scale=True,
            unit_divisor=1024 if in_bytes else 1000,
            file=self.stream,
            delay=self.after_s,
            leave=True,
        )

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def for_stream(stream: TextIO) -> Progress:
    """A bar when stream is a terminal (and tqdm is installed), log lines otherwise; the CLI
    passes its stderr."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty() and find_spec("tqdm") is not None:
        return BarProgress(stream)
    return LogProgress()
