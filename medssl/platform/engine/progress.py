"""Progress as plain lines, TTY or not: one rate-limited printer that every long loop of a run
(training steps, evaluation, feature extraction, caching, phantom writing) reports through."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

#: Seconds a loop may run without a progress line (see `ProgressLine`).
PROGRESS_EVERY_S = 5.0


def duration(seconds: float) -> str:
    """`42.3s` under a minute, `3m05s` above.

    Example:
        >>> duration(4.25), duration(185)
        ('4.2s', '3m05s')
    """
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


class ProgressLine:
    """Reports `done` of `total` items of one loop as `[label] unit done/total detail (elapsed,
    ~left)`, so that about `every` seconds at most pass without a line: an update prints when
    `every` seconds have passed since the last line, or would have before the next item is
    done at the mean pace so far (a loop of slow items reports every item, a fast one every
    `every` seconds). A loop that ends within `every` seconds prints nothing; the last item is
    reported whenever an earlier line was. Time left is the mean time per item times the items
    left.

    Args:
        label: what runs, e.g. "finetune simclr 2" or "evaluate"; printed in brackets.
        total: the number of items (steps, volumes, scans) the loop will do; >= 1.
        unit: a word before the count, e.g. "step" or "volume"; empty for none.
        every: seconds between two lines (default `PROGRESS_EVERY_S`); 0 reports every update.
        start: items already done when the loop began (a resumed fit's step); time left is
            timed on the items done since.
        clock: the seconds clock (`time.monotonic`); tests pass a fake one.
        write: where a line goes; default `print(..., flush=True)`.

    Example:
        >>> lines = []
        >>> progress = ProgressLine("evaluate", 2, unit="volume", every=0, write=lines.append)
        >>> progress.advance(); progress.advance()
        >>> lines[-1].split(" (")[0]
        '[evaluate] volume 2/2'
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "",
        every: float | None = None,
        start: int = 0,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        every = PROGRESS_EVERY_S if every is None else every
        if every < 0:
            raise ValueError(f"every must be >= 0 seconds, got {every}")
        self.label = label
        self.total = total
        self.unit = unit
        self.every = every
        self.start = start
        self.clock = clock
        self.write = write or (lambda line: print(line, flush=True))
        self.done = start
        self.started = clock()
        self._last = self.started
        self._printed = False

    def line(self, done: int, detail: str = "", now: float | None = None, prefix: str = "") -> str:
        """The progress line for `done` items at clock time `now` (default: now)."""
        elapsed = (self.clock() if now is None else now) - self.started
        count = f"{self.unit} {done}/{self.total}" if self.unit else f"{done}/{self.total}"
        timing = duration(elapsed)
        if self.start < done < self.total:
            left = elapsed / (done - self.start) * (self.total - done)
            timing += f", ~{duration(left)} left"
        return f"[{self.label}] {prefix}{count}{' ' + detail if detail else ''} ({timing})"

    def update(
        self, done: int, detail: str = "", *, force: bool = False, prefix: str = ""
    ) -> str | None:
        """Record `done` items; print and return the line when it is due (or `force`)."""
        self.done = done
        now = self.clock()
        finished = done >= self.total and self._printed
        since = now - self._last
        pace = (now - self.started) / (done - self.start) if done > self.start else 0.0
        if not (force or finished or since >= self.every or since + pace > self.every):
            return None
        text = self.line(done, detail, now, prefix)
        self.write(text)
        self._last, self._printed = now, True
        return text

    def advance(self, n: int = 1, detail: str = "") -> None:
        """One (or `n`) more item done."""
        self.update(self.done + n, detail)


def tracked(
    items: Iterable[T],
    label: str,
    *,
    unit: str = "",
    total: int | None = None,
    every: float | None = None,
) -> Iterator[T]:
    """`items` one by one, each counted as done (`ProgressLine`) when the next is asked for,
    i.e. once the caller has processed it. `total` defaults to `len(items)`; a map-style
    dataset (`__len__` and `__getitem__`, no `__iter__`) is read by index.

    Example:
        >>> [x * 2 for x in tracked([1, 2, 3], "doubling", unit="number")]
        [2, 4, 6]
    """
    if total is None:
        if not isinstance(items, Sized):
            raise TypeError(f"{type(items).__name__} has no length; pass total=")
        total = len(items)
    source: Iterable[T] = items
    if not hasattr(items, "__iter__") and hasattr(items, "__getitem__"):
        source = (items[k] for k in range(total))  # type: ignore[index]
    progress = ProgressLine(label, max(1, total), unit=unit, every=every)
    for item in source:
        yield item
        progress.advance()


@contextmanager
def counting(
    label: str, total: int, *, unit: str = "", bar_from: int = 1
) -> Iterator[Callable[[], None]]:
    """An `advance()` to call after each of `total` items: a transient rich bar on a terminal
    (for `bar_from` items or more), else `ProgressLine` lines (logs, CI)."""
    if total < 1:
        yield lambda: None
        return
    from rich.console import Console

    if not Console().is_terminal:
        yield ProgressLine(label, total, unit=unit).advance
        return
    if total < bar_from:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
