"""A crawl's progress on stderr: what it counts, and how it shows it, in words.

The figures come from a `Meter`, which listens to the session's events: the
requests fetched of the requests the crawl needs (known from each id's first
page, estimated for the ids not started), the ids handled, the records
written, the requests per second over at least one rate-limit period, an ETA
at the pace of the rate limit that binds, and what slows the crawl, in words:
``waiting for the rate limit 96% of the time; 2 retries (ServerError)``.

On a terminal it is a bar (`RichDisplay`); elsewhere a line every few seconds
(`PlainDisplay`); `progress_display` in ``_display`` picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from ._counts import CrawlCounts, format_duration, plural
from ._meter import Meter

__all__ = [
    "CrawlCounts",
    "Display",
    "Meter",
    "NoDisplay",
    "PlainDisplay",
    "RichDisplay",
    "describe",
    "format_duration",
    "plural",
    "slowdown",
    "track",
]

TICK_SECONDS = 0.25

#: What the ids are, singular and plural (None: a command without ids, such as ``sync``).
Noun = tuple[str, str] | None
LEADS: Noun = ("lead", "leads")


def slowdown(meter: Meter) -> str:
    """What slows the crawl, in words: the share of the time spent waiting for the rate
    limit, the refusals and the retries, a quota being waited for."""
    parts = [f"waiting for the rate limit {meter.waiting_share:.0%} of the time"]
    if meter.quota_until is not None:
        parts.append(f"the quota is spent until {meter.quota_until:%H:%M} UTC")
    if meter.refusals:
        refusals = plural(meter.refusals, "refusal")
        paused = format_duration(meter.paused_seconds)
        parts.append(f"{refusals} by the server, paused {paused} in all")
    # A refusal is retried too; it is counted above, with its pause.
    retried = [(kind, n) for kind, n in meter.retries.most_common() if kind != "RateLimitError"]
    retries = sum(n for _, n in retried)
    if retries:
        why = ", ".join(f"{kind} x{count}" for kind, count in retried)
        parts.append(f"{plural(retries, 'retry', 'retries')} ({why})")
    return "; ".join(parts)


def describe(counts: CrawlCounts, meter: Meter, noun: Noun = LEADS) -> dict[str, str]:
    """The figures a display shows, as text."""
    left = meter.requests_left(counts)
    done = meter.pages
    if left is None:
        requests = short = plural(done, "request")
    else:
        requests = f"{done:,} of about {round(done + left):,} requests"
        short = f"{done:,}/~{round(done + left):,} requests"
    ids = f"{counts.handled:,}" if counts.total is None else f"{counts.handled:,}/{counts.total:,}"
    named = counts.handled if counts.total is None else counts.total
    limit = meter.limits[0]
    return {
        "requests": requests,
        "requests_short": short,
        "ids": "" if noun is None else f"{ids} {noun[0] if named == 1 else noun[1]}",
        # As pages arrive: a lead of many pages shows its records before it ends.
        "records": plural(max(meter.records, counts.records), "record"),
        "rate": f"{meter.requests_per_second:.1f} of {limit.calls / limit.period:.3g} req/s",
        "eta": format_duration(meter.eta(counts)),
        "slowdown": slowdown(meter),
    }


def _shown(*figures: str) -> list[str]:
    """The figures a display has (no ids for a command without them)."""
    return [figure for figure in figures if figure]


class Display(Protocol):
    """Shows the progress of a crawl."""

    def start(self, counts: CrawlCounts) -> None:
        """Start showing."""

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Show the latest figures."""

    def stop(self) -> None:
        """Stop showing (and leave the last figures on screen)."""


class NoDisplay:
    """Shows nothing (``--quiet``, ``--no-progress``, or rows going to the terminal)."""

    def start(self, counts: CrawlCounts) -> None:
        """Do nothing."""

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Do nothing."""

    def stop(self) -> None:
        """Do nothing."""


class _Progress(Progress):
    """A rich progress bar with a line under it: the pace, and what slows the crawl."""

    details = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        if self.details:
            yield Text(f"  {self.details}", style="dim")


class RichDisplay:
    """A rich progress bar of requests on stderr, and the pace and what slows it under it.

    The bar's line fits 80 columns: requests, ids, ETA, and the time elapsed, labelled.
    """

    def __init__(self, console: Console, noun: Noun = LEADS) -> None:
        self._noun = noun
        self._progress = _Progress(
            BarColumn(bar_width=20, complete_style="green", finished_style="green"),
            TextColumn("{task.fields[figures]}"),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._task: TaskID | None = None

    def start(self, counts: CrawlCounts) -> None:
        """Show the bar."""
        self._task = self._progress.add_task("crawl", total=None, figures="")
        self._progress.start()

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        """Move the bar and refresh its figures."""
        if self._task is None:
            return
        figures = describe(counts, meter, self._noun)
        self._progress.details = f"{figures['rate']}, {figures['records']}; {figures['slowdown']}"
        left = meter.requests_left(counts)
        total = None if left is None else meter.pages + left
        self._progress.update(
            self._task,
            completed=meter.pages,
            total=total,
            figures=", ".join(
                _shown(figures["requests_short"], figures["ids"], f"ETA {figures['eta']}")
            ),
        )

    def stop(self) -> None:
        """Leave the bar's last state on screen."""
        self._progress.stop()


class PlainDisplay:
    """A line of figures every ``interval`` seconds, for a stderr that is not a terminal
    (a log file, a pipe). None at the end: the command's own summary or error line ends
    the log."""

    def __init__(
        self,
        write: Callable[[str], None],
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        noun: Noun = LEADS,
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._noun = noun
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
        self._write(self.line(counts, meter, self._noun))

    @staticmethod
    def line(counts: CrawlCounts, meter: Meter, noun: Noun = LEADS) -> str:
        """The figures as one line."""
        figures = describe(counts, meter, noun)
        shown = _shown(
            figures["requests"],
            figures["ids"],
            figures["records"],
            figures["rate"],
            f"ETA {figures['eta']}",
            f"{format_duration(meter.elapsed)} elapsed",
        )
        return f"{', '.join(shown)}; {figures['slowdown']}"

    def stop(self) -> None:
        """Nothing to clean up."""


@contextlib.asynccontextmanager
async def track(
    counts: CrawlCounts,
    meter: Meter,
    display: Display,
    *,
    tick: float = TICK_SECONDS,
) -> AsyncIterator[None]:
    """Show progress while the body runs: listen to the session's events, and refresh the
    display every ``tick`` seconds."""

    async def refresh() -> None:
        while True:
            await asyncio.sleep(tick)
            meter.sample()
            display.update(counts, meter)

    unsubscribe = meter.listen()
    display.start(counts)
    ticker = asyncio.ensure_future(refresh())
    try:
        yield
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        unsubscribe()
        meter.sample()
        display.update(counts, meter)
        display.stop()
