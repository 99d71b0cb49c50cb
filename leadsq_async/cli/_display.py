"""Which progress display a command gets, and the progress of the two export commands.

`progress_display` is the one place that decides, for ``crawl``, ``demo``,
``opportunities`` and ``activities`` alike:

- nothing with ``--quiet`` or ``--no-progress``;
- a bar when stderr is a terminal (or with ``--progress``);
- otherwise a plain line every 5 seconds, for logs: the crawls only, since
  an export's stderr is kept for its error lines.

`ExportProgress` counts what ``opportunities`` and ``activities`` write, through
the writer and the failure report they already take.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Protocol

import click
from rich.console import Console
from rich.theme import Theme

from leadsq_async import Session

from ._counts import CrawlCounts
from ._export import RowWriter
from ._ids import STDIN, count_ids
from ._meter import ACTIVITIES, OPPORTUNITIES, Meter
from ._progress import (
    LEADS,
    TICK_SECONDS,
    Display,
    NoDisplay,
    Noun,
    PlainDisplay,
    RichDisplay,
    track,
)
from ._run import stderr_is_terminal

__all__ = [
    "ExportProgress",
    "Watched",
    "export_total",
    "progress_display",
    "showing",
    "stdout_is_terminal",
]

#: Every bar's colours: the finished part green, not rich's default red.
BAR_THEME = Theme({"bar.complete": "green", "bar.finished": "green", "bar.pulse": "green"})

#: Seconds between two plain lines.
PLAIN_INTERVAL = 5.0


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def progress_display(
    *,
    noun: Noun = LEADS,
    quiet: bool = False,
    force: bool | None = None,
    lines: bool = True,
    prefix: str = "",
) -> Display:
    """The display for a command's progress on stderr.

    Args:
        noun: what the ids are, singular and plural.
        quiet: show nothing.
        force: ``--progress`` (True: a bar even off a terminal) or ``--no-progress``
            (False: nothing); None decides by stderr.
        lines: off a terminal, a plain line every 5 s; else nothing.
        prefix: put before each plain line.
    """
    if quiet or force is False:
        return NoDisplay()
    if force or stderr_is_terminal():
        console = Console(stderr=True, force_terminal=True if force else None, theme=BAR_THEME)
        return RichDisplay(console, noun)
    if lines:
        return PlainDisplay(
            lambda line: click.echo(f"{prefix}{line}", err=True), PLAIN_INTERVAL, noun=noun
        )
    return NoDisplay()


class Watched(Protocol):
    """What a command that dlt runs watches: the meter on its session's events once the
    session is open, the event loop it runs on, and its counts."""

    @property
    def meter(self) -> Meter | None: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    @property
    def counts(self) -> CrawlCounts: ...


@contextlib.contextmanager
def showing(watched: Watched, display: Display) -> Iterator[None]:
    """Refresh ``display`` from a thread while the body runs (dlt holds the main thread).
    The refresh runs on the watched loop, never beside the events it counts."""
    stop = threading.Event()

    def refresh() -> None:
        meter = watched.meter
        if meter is not None:
            meter.sample()
            display.update(watched.counts, meter)

    def tick() -> None:
        while not stop.wait(TICK_SECONDS):
            loop = watched.loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: the run ended
                    loop.call_soon_threadsafe(refresh)

    display.start(watched.counts)
    ticker = threading.Thread(target=tick, name="leadsq-async progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        refresh()  # the run's loop is gone: nothing counts any more
        display.stop()


def export_total(ids: tuple[str, ...], ids_file: str | None) -> int | None:
    """How many ids an export has, or None when they come from a pipe or standard input."""
    if ids_file is None:
        return len(ids)
    counted = count_ids(ids_file) if ids_file != STDIN else None
    return None if counted is None else len(ids) + counted


class ExportProgress:
    """The progress of ``opportunities`` or ``activities``: ids and rows, from what they write.

    Args:
        session: the session the export fetches with.
        kind: ``lead`` (opportunities of leads) or ``opportunity`` (activities of
            opportunities).
        total: how many ids, when known.
        display: where to show it.
    """

    def __init__(self, session: Session, kind: str, total: int | None, display: Display) -> None:
        self.counts = CrawlCounts(total=total)
        self._kind = kind
        endpoint = OPPORTUNITIES if kind == "lead" else ACTIVITIES
        self.meter = Meter(session, endpoint=endpoint, clock=asyncio.get_running_loop().time)
        self._display = display

    @contextlib.asynccontextmanager
    async def tracking(self) -> AsyncIterator[None]:
        """Show the progress while the body runs."""
        async with track(self.counts, self.meter, self._display):
            yield

    def writer(self, writer: RowWriter) -> RowWriter:
        """``writer``, counting the rows and the ids it ends."""
        return _CountingWriter(writer, self.counts, self._kind)

    def report(
        self, report: Callable[[str, BaseException], None]
    ) -> Callable[[str, BaseException], None]:
        """``report``, counting the ids that fail."""

        def counted(identifier: str, error: BaseException) -> None:
            self.counts.handled += 1
            self.counts.crawled += 1
            self.counts.failed += 1
            self.meter.end(identifier, failed=True)
            report(identifier, error)

        return counted


class _CountingWriter:
    def __init__(self, writer: RowWriter, counts: CrawlCounts, kind: str) -> None:
        self._writer = writer
        self._counts = counts
        self._kind = kind

    def write(self, row: Mapping[str, Any]) -> None:
        self._writer.write(row)
        if self._kind == "lead":
            self._counts.opportunities += 1
        else:
            self._counts.activities += 1

    def end_of_id(self) -> None:
        self._writer.end_of_id()
        self._counts.handled += 1
        self._counts.crawled += 1

    def finish(self) -> None:
        self._writer.finish()
