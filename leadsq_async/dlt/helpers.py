"""What the source is made of: the crawl resource (a journaled crawl in the pipeline's
working directory), the two tables' transformers and their typed rows."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs
import dlt
from dlt.common.normalizers.naming import NamingConvention

from leadsq_async import (
    Activity,
    LeadResult,
    Opportunity,
    RateLimit,
    RateLimiter,
    RetryPolicy,
    Session,
)
from leadsq_async.journal import (
    CrawlDirectory,
    CrawlError,
    CrawlSettings,
    DirectoryInUse,
    crawl_into,
)

from .rows import (
    ACTIVITY_COLUMNS,
    OPPORTUNITY_COLUMNS,
    KeyGuard,
    activity_row,
    missing_primary_key,
    opportunity_row,
)
from .settings import CHECKPOINT_DIRECTORY, CRAWL_ID_FILE, LEAD_RESULTS, RESUMED_BATCH

__all__ = ["LoadProgress", "Plan", "SessionPlan", "lead_results", "session_for", "transformers"]

logger = logging.getLogger("leadsq_async")

T = TypeVar("T")


class LoadProgress(Protocol):
    """What a load reports as it goes, for a progress display (the command line's).

    Called from the thread and event loop dlt extracts in: keep each call short. An
    exception a call raises stops the load: the crawl unwinds (what it fetched stays
    in the checkpoint) and ``pipeline.run`` raises dlt's ``PipelineStepFailed``,
    caused by it. The command line stops on Ctrl-C that way.
    """

    def crawl_started(self, session: Session) -> None:
        """The crawl's session is open; its ``stats`` and ``limiter`` can be watched."""

    def lead_skipped(self, lead_id: str) -> None:
        """An id fetched by the interrupted load this one carries on, or repeated."""

    def lead_crawled(self, result: LeadResult) -> None:
        """A lead was fetched, or failed (``result.error``)."""


# What flows from the crawl to the two tables.


@attrs.frozen
class _Resumed:
    """Rows of leads an interrupted load fetched, read back from its checkpoint."""

    opportunities: list[Opportunity] = attrs.field(factory=list)
    activities: list[tuple[str, Activity]] = attrs.field(factory=list)


@attrs.frozen
class _CrawlEnd:
    """Every lead of the crawl was handed to dlt."""

    crawl_id: str


_Item = LeadResult | _Resumed | _CrawlEnd


def _note_in_state(item: _Item) -> None:
    """Record a failed lead, a lead fetched again, or the crawl's end in dlt's state.

    Both tables' transformers call it with the same items (dlt runs them on the
    main thread, where the state is), so every write is idempotent.
    """
    state = dlt.current.resource_state(LEAD_RESULTS)
    if isinstance(item, _CrawlEnd):
        state["completed_crawl"] = item.crawl_id
    elif isinstance(item, LeadResult):
        failed = state.setdefault("failed", {})
        if item.error is None:
            failed.pop(item.lead_id, None)
        else:
            failed[item.lead_id] = {"error": type(item.error).__name__, "message": str(item.error)}


Transformer = Callable[[_Item], Iterator[list[dict[str, Any]]]]


def transformers(naming: NamingConvention) -> tuple[Transformer, Transformer]:
    """The ``opportunities`` and ``activities`` transformers of one load: the rows of each
    item of the crawl, their keys kept apart once ``naming`` makes them column names."""
    opportunity_keys = KeyGuard(naming, OPPORTUNITY_COLUMNS)
    activity_keys = KeyGuard(naming, ACTIVITY_COLUMNS)

    def opportunity_rows(item: _Item) -> Iterator[list[dict[str, Any]]]:
        _note_in_state(item)
        if isinstance(item, LeadResult) and item.error is None:
            records = item.records
        elif isinstance(item, _Resumed):
            records = item.opportunities
        else:
            return
        if records:
            yield [opportunity_keys(opportunity_row(record)) for record in records]

    def activity_rows(item: _Item) -> Iterator[list[dict[str, Any]]]:
        _note_in_state(item)
        if isinstance(item, LeadResult) and item.error is None:
            pairs = [
                (opportunity_id, activity)
                for opportunity_id, activities in item.activities.items()
                for activity in activities
            ]
        elif isinstance(item, _Resumed):
            pairs = item.activities
        else:
            return
        if pairs:
            yield [activity_keys(activity_row(key, activity)) for key, activity in pairs]

    return opportunity_rows, activity_rows


# The crawl.


@attrs.frozen
class Plan:
    """Everything the crawl needs, checked when the source is made."""

    lead_ids: Iterable[str] | AsyncIterable[str]
    access_key: str = attrs.field(repr=False)
    secret_key: str = attrs.field(repr=False)
    host: str
    rate_limit: tuple[RateLimit, ...] | Callable[[], RateLimiter]
    settings: CrawlSettings
    concurrency: int | None
    timeout: float
    retry: RetryPolicy
    progress: LoadProgress | None


def lead_results(plan: Plan) -> Iterator[AsyncIterator[_Item]]:
    """The parent resource: on dlt's main thread, find the checkpoint; then crawl.

    dlt's state and the pipeline can only be reached here, on the main thread;
    the crawl itself runs in dlt's event loop (dlt iterates the async generator
    this yields).
    """
    completed = dlt.current.resource_state().get("completed_crawl")
    directory = Path(dlt.current.pipeline().working_dir) / CHECKPOINT_DIRECTORY
    yield _crawl(plan, directory, completed)


async def _crawl(plan: Plan, directory: Path, completed: str | None) -> AsyncIterator[_Item]:
    checkpoint, crawl_id = _open_checkpoint(directory, plan.settings, completed)
    try:
        for resumed in _read_back(checkpoint):
            yield resumed
        async with session_for(plan) as session:
            progress = plan.progress
            if progress is not None:
                progress.crawl_started(session)
            results = crawl_into(
                session,
                checkpoint,
                plan.lead_ids,
                concurrency=plan.concurrency,
                retry_failed=True,
                check=missing_primary_key,
                skipped=progress.lead_skipped if progress is not None else None,
            )
            async with results:
                async for result in results:
                    if result.error is not None:
                        logger.warning(
                            "lead %s failed and is not loaded (a later load tries it again): %s",
                            result.lead_id,
                            result.error,
                        )
                    if progress is not None:
                        progress.lead_crawled(result)
                    yield result
        yield _CrawlEnd(crawl_id)
    finally:
        checkpoint.close()


class SessionPlan(Protocol):
    """What opening a source's session takes (a `Plan` has it)."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def rate_limit(self) -> tuple[RateLimit, ...] | Callable[[], RateLimiter]: ...
    @property
    def timeout(self) -> float: ...
    @property
    def retry(self) -> RetryPolicy: ...


@contextlib.asynccontextmanager
async def session_for(plan: SessionPlan) -> AsyncIterator[Session]:
    """A source's session; a limiter made by the caller's factory is closed after it."""
    limiter: RateLimiter | None = None
    rate_limit: tuple[RateLimit, ...] | None = None
    if isinstance(plan.rate_limit, tuple):
        rate_limit = plan.rate_limit
    else:
        limiter = plan.rate_limit()
    try:
        async with Session(
            plan.access_key,
            plan.secret_key,
            host=plan.host,
            rate_limit=rate_limit,
            limiter=limiter,
            timeout=plan.timeout,
            retry=plan.retry,
        ) as session:
            yield session
    finally:
        if limiter is not None:
            await limiter.aclose()


# The checkpoint.


def _open_checkpoint(
    directory: Path, settings: CrawlSettings, completed: str | None
) -> tuple[CrawlDirectory, str]:
    """Carry on the unfinished crawl in ``directory``, or start a new one there.

    A crawl whose id dlt's state names as completed was extracted whole, and
    its rows went (or, pending, will go) to the destination with that state:
    it is over, and a new one starts. The directory's lock is taken before
    anything in it changes, so a load never touches the crawl of another
    that is running.

    Raises:
        DirectoryInUse: another load of the pipeline is crawling.
    """
    crawl_id = _read_crawl_id(directory)
    if crawl_id is not None and crawl_id != completed:
        try:
            checkpoint = CrawlDirectory.resume(directory, settings)
        except DirectoryInUse:
            raise
        except CrawlError as error:
            logger.warning(
                "the interrupted load's crawl cannot be carried on (%s): starting anew", error
            )
        else:
            if checkpoint.done:
                logger.info(
                    "carrying on the interrupted load: %d leads fetched before are not asked "
                    "for again",
                    len(checkpoint.done),
                )
            return checkpoint, crawl_id
    checkpoint = CrawlDirectory.start(directory, settings, overwrite=True)
    try:
        crawl_id = uuid.uuid4().hex
        _write_durably(directory / CRAWL_ID_FILE, json.dumps({"crawl_id": crawl_id}).encode())
    except BaseException:
        checkpoint.close()
        raise
    return checkpoint, crawl_id


def _read_crawl_id(directory: Path) -> str | None:
    try:
        document = json.loads((directory / CRAWL_ID_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    crawl_id = document.get("crawl_id") if isinstance(document, dict) else None
    return crawl_id if isinstance(crawl_id, str) else None


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _read_back(checkpoint: CrawlDirectory) -> Iterator[_Resumed]:
    """The rows of the leads the checkpoint holds, in batches.

    Its data files hold exactly the rows of the leads journaled as done (resuming
    cut off anything written after the last journal line).
    """
    if not checkpoint.done:
        return
    for opportunities in _batches(checkpoint.opportunities()):
        yield _Resumed(opportunities=opportunities)
    for activities in _batches(checkpoint.activities()):
        yield _Resumed(activities=activities)


def _batches(items: Iterable[T]) -> Iterator[list[T]]:
    """``items`` in lists of `RESUMED_BATCH`."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == RESUMED_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
