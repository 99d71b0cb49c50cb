"""The journaled crawl: every lead not yet settled crawled into a journal directory, each
result journaled before it is handed on. The ``crawl`` command and the dlt source both run it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable

from leadsq_async import Crawl, LeadResult, Session
from leadsq_async._closing import AsyncClosing
from leadsq_async._fanout import PendingIds

from ._directory import CrawlDirectory

__all__ = ["JournaledCrawl", "crawl_into"]


def crawl_into(
    session: Session,
    journal: CrawlDirectory,
    lead_ids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int | None = None,
    retry_failed: bool = False,
    error_message: Callable[[BaseException], str] = str,
    skipped: Callable[[str], object] | None = None,
    check: Callable[[LeadResult], Exception | None] | None = None,
) -> JournaledCrawl:
    """Crawl into ``journal`` every lead of ``lead_ids`` it has not settled yet.

    The leads journaled as done, those journaled as failed for good (unless
    ``retry_failed``) and ids repeated in ``lead_ids`` are skipped, each passed to
    ``skipped``. Every other lead is crawled with the journal's settings; its result
    is recorded (its rows written, then its journal line, both fsynced) and only then
    yielded. A failed lead is journaled as failed, its message ``error_message(error)``
    (pass a function that scrubs what the message must not show), and the crawl
    carries on. ``check``, when given, sees each lead's result first: an exception it
    returns is journaled and yielded as that lead's failure instead (a row the caller
    cannot take, say), and the lead is tried again by a crawl that retries failed
    leads. Leaving the loop, or cancelling the task that runs it, stops the
    crawl within moments: every lead journaled so far stays.

    ::

        output = CrawlDirectory.resume(path, settings)
        try:
            async with crawl_into(session, output, lead_ids) as results:
                async for result in results:
                    ...
        finally:
            output.close()

    Raises:
        TypeError, ValueError: for a bad argument, at the call.

    Raises (while iterating):
        LeadSquaredError: a failure of the whole account (bad keys, a spent quota);
            what was journaled before it stays. A spent quota is raised once the leads
            already granted their requests are journaled; the others stay pending.
        OSError: a file could not be written (the error names it); the lead being
            written is not journaled.
        Exception: whatever reading ``lead_ids`` raised.
    """
    pending = PendingIds(lead_ids, journal.settled(retry_failed=retry_failed), skipped or _ignore)
    results = session.crawl_opportunities(
        pending,
        concurrency=concurrency,
        with_activities=journal.settings.with_activities,
        opportunity_type=journal.settings.opportunity_type,
    )
    return JournaledCrawl(results, journal, error_message, check)


class JournaledCrawl(AsyncClosing, AsyncIterator[LeadResult]):
    """The results of `crawl_into`, each one journaled before it is yielded.

    Iterate it with ``async for``, inside ``async with`` so that leaving the block,
    however it is left, stops the crawl at once (`aclose`).
    """

    def __init__(
        self,
        results: Crawl[LeadResult],
        journal: CrawlDirectory,
        error_message: Callable[[BaseException], str],
        check: Callable[[LeadResult], Exception | None] | None = None,
    ) -> None:
        self._results = results
        self._journal = journal
        self._error_message = error_message
        self._check = check

    def __aiter__(self) -> JournaledCrawl:
        return self

    async def __anext__(self) -> LeadResult:
        try:
            result = await self._results.__anext__()
            if result.error is None and self._check is not None:
                refused = self._check(result)
                if refused is not None:
                    result = LeadResult(result.lead_id, error=refused)
            message = None if result.error is None else self._error_message(result.error)
            self._journal.record(result, message)
        except BaseException:
            await self._results.aclose()
            raise
        return result

    async def aclose(self) -> None:
        """Stop the crawl: cancel its work and wait for it (the journal stays open)."""
        await self._results.aclose()


def _ignore(_: str) -> None:
    return None
