"""Running the commands' async work: signals, fetches to a stream, and crawls to a directory."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from leadsq_async import (
    Crawl,
    Event,
    LeadResult,
    OpportunityResult,
    QuotaWait,
    Session,
    journal,
    unstructure,
)
from leadsq_async.journal import CrawlDirectory

from ._counts import CrawlCounts
from ._export import RowWriter
from ._meter import ACTIVITIES
from ._outcomes import (
    INTERRUPTED,
    CommandFailed,
    Failures,
    FailureStreak,
    Interrupted,
    error_line,
    quota_name,
    quota_resumes_at,
)
from ._progress import Display, Meter, track

__all__ = [
    "CommandFailed",
    "Interrupted",
    "crawl_into",
    "error_line",
    "fetch_activities",
    "fetch_opportunities",
    "run_interruptibly",
]

T = TypeVar("T")
Result = TypeVar("Result", LeadResult, OpportunityResult)
Ids = Iterable[str] | AsyncIterable[str]

#: The exit code of a command stopped by SIGINT (128 + 2, as shells report it).
INTERRUPTED_EXIT_CODE = INTERRUPTED


def run_interruptibly(
    work: Coroutine[Any, Any, T], on_abort: Callable[[], None] | None = None
) -> T:
    """Run ``work`` in a new event loop; SIGINT or SIGTERM cancel it cleanly.

    The first signal cancels ``work`` (which cleans up as it unwinds) and then
    raises `Interrupted`. A second signal ends the process at once with exit
    code 130, after ``on_abort`` (which must be quick and must not raise):
    while ``work`` unwinds, and from then on until the process exits, through
    asyncio's shutdown and the caller's own clean-up (the handler that does
    it stays installed once a signal came).
    """
    return asyncio.run(_interruptible(work, on_abort))


async def _interruptible(work: Coroutine[Any, Any, T], on_abort: Callable[[], None] | None) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[str] = []

    def abort(*_: object) -> None:
        if on_abort is not None:
            on_abort()
        os._exit(INTERRUPTED_EXIT_CODE)

    def on_signal(number: signal.Signals) -> None:
        if received:
            abort()
        received.append(number.name)
        task.cancel()

    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, on_signal, number)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not on this platform: Ctrl-C raises KeyboardInterrupt instead
        installed.append(number)
    try:
        return await task
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
            if received:
                # Not back to KeyboardInterrupt: a second Ctrl-C after the loop
                # (while files are closed, say) must end the process just as at once.
                signal.signal(number, abort)


async def fetch_opportunities(
    session: Session,
    lead_ids: Ids,
    writer: RowWriter,
    report: Callable[[str, BaseException], None],
    *,
    concurrency: int | None,
    opportunity_type: str | None,
) -> Failures:
    """Write the opportunity rows of each lead; return how many leads failed, and how.

    Each lead's rows come together, leads in the order they finish. A lead's
    failure is passed to ``report`` and the others carry on.

    Raises:
        LeadSquaredError: a failure of the whole account, which stops the crawl.
        FailuresInARow: many leads in a row failed for now (see `FailureStreak`).
    """
    results = session.crawl_opportunities(
        lead_ids, concurrency=concurrency, opportunity_type=opportunity_type
    )
    return await _write_results(
        results, writer, report, lambda result, row: row, lambda result: result.lead_id, "lead"
    )


async def fetch_activities(
    session: Session,
    opportunity_ids: Ids,
    writer: RowWriter,
    report: Callable[[str, BaseException], None],
    *,
    concurrency: int | None,
    activity_event_code: str | None,
    with_opportunity_id: bool,
) -> Failures:
    """Write the activity rows of each opportunity; return how many failed, and how.

    With ``with_opportunity_id``, each row gets an ``OpportunityId`` key first
    (activity rows do not always say which opportunity they belong to).

    Raises:
        LeadSquaredError: a failure of the whole account, which stops the crawl.
        FailuresInARow: many ids in a row failed for now (see `FailureStreak`).
    """

    def row_of(result: OpportunityResult, row: dict[str, Any]) -> dict[str, Any]:
        return {"OpportunityId": result.opportunity_id, **row} if with_opportunity_id else row

    results = session.crawl_activities(
        opportunity_ids, concurrency=concurrency, activity_event_code=activity_event_code
    )
    return await _write_results(
        results, writer, report, row_of, lambda result: result.opportunity_id, "opportunity"
    )


async def _write_results(
    results: Crawl[Result],
    writer: RowWriter,
    report: Callable[[str, BaseException], None],
    row_of: Callable[[Result, dict[str, Any]], dict[str, Any]],
    id_of: Callable[[Result], str],
    noun: str,
) -> Failures:
    """Write each result's rows as the API sent them, then end the id; count the failures."""
    failures = Failures()
    streak = FailureStreak(noun)
    try:
        async for result in results:
            if result.error is not None:
                report(id_of(result), result.error)
                failures.add(result.error)
                streak.add(result.error)
                continue
            for record in result.records:
                writer.write(row_of(result, unstructure(record)))
            writer.end_of_id()
            streak.add(None)
    finally:
        await results.aclose()
    return failures


async def crawl_into(
    session: Session,
    output: CrawlDirectory,
    lead_ids: Ids,
    counts: CrawlCounts,
    display: Display,
    *,
    concurrency: int | None,
    scrub: Callable[[str], str],
    retry_failed: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Meter:
    """Crawl every lead not yet settled into ``output``, journaling each as it finishes.

    ``lead_ids`` (an iterable or an async iterable) is read as the crawl
    needs ids. Leads journaled as done, those journaled as failed for good
    (unless ``retry_failed``), and ids repeated in the input, are skipped. A
    lead that fails is journaled as failed (its message passed through
    ``scrub``) and the others carry on. Cancelling the task that runs this
    stops it within moments: every lead journaled so far stays in the output.

    A wait for a spent quota (``Session(wait_for_quota=True)``) shows in the
    progress, and is passed to ``announce`` as a line, once per resume time.

    Returns:
        The meter, with the requests sent and the time spent.

    Raises:
        LeadSquaredError: a failure of the whole account (bad keys, a spent
            quota); what was journaled before it stays.
        FailuresInARow: many leads in a row failed for now; they are journaled.
        OSError: a file could not be written.
    """
    children = ACTIVITIES if output.settings.with_activities else None
    meter = Meter(session, child_endpoint=children, clock=asyncio.get_running_loop().time)
    results = journal.crawl_into(
        session,
        output,
        lead_ids,
        concurrency=concurrency,
        retry_failed=retry_failed,
        error_message=lambda error: scrub(str(error)),
        skipped=lambda _: counts.skip(),
    )
    streak = FailureStreak("lead")
    unsubscribe = session.events.subscribe(_QuotaWatch(announce)) if announce else None
    try:
        async with track(counts, meter, display), results:
            async for result in results:
                counts.add(result)
                meter.end(result.lead_id, result.activities, failed=result.error is not None)
                streak.add(result.error, "" if result.error is None else scrub(str(result.error)))
    finally:
        if unsubscribe is not None:
            unsubscribe()
    return meter


class _QuotaWatch:
    """Says that the crawl waits for a spent quota, "quota spent, resumes at 14:04 UTC",
    through ``announce``, once for each resume time (the progress shows it too, through
    `Meter.quota_until`)."""

    def __init__(self, announce: Callable[[str], None]) -> None:
        self._announce = announce
        self._announced = ""

    def __call__(self, event: Event) -> None:
        if not isinstance(event, QuotaWait):
            return
        at = quota_resumes_at(event.retry_at)
        if at != self._announced:
            self._announced = at
            self._announce(
                f"quota spent, resumes at {at}: waiting for {quota_name(event.limit)} "
                "(--wait-for-quota)"
            )


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (where a progress bar can redraw itself)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
