"""The crawl's progress: what it counts, what it measures, and how it shows them on stderr.

Shown: leads handled of the total, records written, requests per second (over
the last rate-limit period), how long the crawl was throttled (wall time during
which at least one request waited for a rate-limit slot), and an ETA derived
from the rate limit: the leads left, times the requests a lead has needed so
far, at the limit's calls per second. The rate limit, not the network, sets
the pace of a long crawl, so that is also the most honest estimate.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import attrs
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from leadsq_async import LeadResult, Session

__all__ = [
    "CrawlCounts",
    "Meter",
    "NoDisplay",
    "PlainDisplay",
    "RichDisplay",
    "format_duration",
    "plural",
    "track",
]

TICK_SECONDS = 0.25


@attrs.define
class CrawlCounts:
    """What a crawl has done so far.

    Attributes:
        total: the ids to handle, when known (not for standard input).
        handled: ids done, failed or skipped.
        crawled: ids fetched by this run (done or failed).
        failed: ids that failed in this run.
        skipped: ids done by an earlier run, or repeated in the input.
        opportunities: opportunity rows written by this run.
        activities: activity rows written by this run.
    """

    total: int | None = None
    handled: int = 0
    crawled: int = 0
    failed: int = 0
    skipped: int = 0
    opportunities: int = 0
    activities: int = 0

    @property
    def records(self) -> int:
        """Rows written by this run, opportunities and activities."""
        return self.opportunities + self.activities

    def skip(self) -> None:
        """Count an id that needs no work."""
        self.handled += 1
        self.skipped += 1

    def add(self, result: LeadResult) -> None:
        """Count one lead's result."""
        self.handled += 1
        self.crawled += 1
        if result.error is not None:
            self.failed += 1
            return
        self.opportunities += len(result.records)
        self.activities += sum(len(rows) for rows in result.activities.values())


class Meter:
    """Measures a session's pace: requests per second, time throttled, and the ETA."""

    def __init__(self, session: Session, clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self._clock = clock
        self.started = clock()
        self.throttled_seconds = 0.0
        #: What holds the crawl back beyond the pace, such as a spent quota; None when nothing.
        self.notice: str | None = None
        self._last = self.started
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._samples.append((self.started, session.stats.requests))

    @property
    def requests(self) -> int:
        """Requests the session has sent (retries included)."""
        return self._session.stats.requests

    @property
    def elapsed(self) -> float:
        """Seconds since the meter started."""
        return self._clock() - self.started

    def sample(self) -> None:
        """Take one measurement; call it a few times a second."""
        now = self._clock()
        waiting = getattr(self._session.limiter, "waiting", 0)
        if isinstance(waiting, int) and waiting > 0:
            self.throttled_seconds += now - self._last
        self._last = now
        self._samples.append((now, self.requests))
        horizon = now - max(self._session.limiter.rate_limit.period, 1.0)
        while len(self._samples) > 2 and self._samples[1][0] <= horizon:
            self._samples.popleft()

    @property
    def requests_per_second(self) -> float:
        """Requests per second over the last rate-limit period (at least one second)."""
        (first_time, first_count), (last_time, last_count) = self._samples[0], self._samples[-1]
        span = last_time - first_time
        return (last_count - first_count) / span if span > 0 else 0.0

    def eta(self, counts: CrawlCounts) -> float | None:
        """Seconds left at the rate limit's pace, or None until that can be told."""
        if counts.total is None or counts.crawled == 0:
            return None
        remaining = max(counts.total - counts.handled, 0)
        limit = self._session.limiter.rate_limit
        requests_per_lead = self.requests / counts.crawled
        return remaining * requests_per_lead * limit.period / limit.calls


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``1 lead``, ``2 leads``, ``1,234 opportunities``."""
    return f"{count:,} {singular if count == 1 else many or singular + 's'}"


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s`` or ``2h07m``; ``-`` for an unknown duration."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe(counts: CrawlCounts, meter: Meter) -> dict[str, str]:
    """The figures a display shows, as text."""
    throttled = format_duration(meter.throttled_seconds)
    return {
        "records": f"{counts.records:,}",
        "rate": f"{meter.requests_per_second:.1f}",
        "throttled": throttled if meter.notice is None else f"{throttled}, {meter.notice}",
        "eta": format_duration(meter.eta(counts)),
    }


class Display(Protocol):
    """Shows the progress of a crawl."""

    def start(self, counts: CrawlCounts) -> None:
        """Start showing."""

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Show the latest figures."""

    def stop(self) -> None:
        """Stop showing (and leave the last figures on screen)."""


class NoDisplay:
    """Shows nothing (stderr is not a terminal, or ``--quiet``)."""

    def start(self, counts: CrawlCounts) -> None:
        """Do nothing."""

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Do nothing."""

    def stop(self) -> None:
        """Do nothing."""


class RichDisplay:
    """A rich progress bar on stderr."""

    def __init__(self, console: Console, description: str = "leads") -> None:
        self._progress = Progress(
            TextColumn(f"[bold]{description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[records]} records"),
            TextColumn("{task.fields[rate]} req/s"),
            TextColumn("throttled {task.fields[throttled]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._task: TaskID | None = None

    def start(self, counts: CrawlCounts) -> None:
        """Show the bar."""
        self._task = self._progress.add_task(
            "crawl",
            total=counts.total,
            completed=counts.handled,
            records="0",
            rate="0.0",
            throttled="0s",
            eta="-",
        )
        self._progress.start()

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Move the bar and refresh its figures."""
        if self._task is not None:
            fields: dict[str, Any] = describe(counts, meter)
            self._progress.update(
                self._task, completed=counts.handled, total=counts.total, **fields
            )

    def stop(self) -> None:
        """Leave the bar's last state on screen."""
        self._progress.stop()


class PlainDisplay:
    """A line of figures every few seconds, for a stderr that is not a terminal."""

    def __init__(
        self,
        write: Callable[[str], None],
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._next = 0.0

    def start(self, counts: CrawlCounts) -> None:
        """Note the time: the first line comes after one interval."""
        self._next = self._clock() + self._interval

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Write a line when an interval has passed."""
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval
        self._write(self.line(counts, meter))

    @staticmethod
    def line(counts: CrawlCounts, meter: Meter) -> str:
        """The figures as one line."""
        total = "?" if counts.total is None else str(counts.total)
        figures = describe(counts, meter)
        return (
            f"{counts.handled}/{total} leads, {figures['records']} records, "
            f"{figures['rate']} req/s, throttled {figures['throttled']}, "
            f"ETA {figures['eta']}, {format_duration(meter.elapsed)} elapsed"
        )

    def stop(self) -> None:
        """Nothing to clean up."""


@contextlib.asynccontextmanager
async def track(counts: CrawlCounts, meter: Meter, display: Display) -> AsyncIterator[None]:
    """Show progress while the body runs: sample the meter and refresh the display."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            meter.sample()
            display.update(counts, meter)

    display.start(counts)
    ticker = asyncio.ensure_future(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        meter.sample()
        display.update(counts, meter)
        display.stop()
