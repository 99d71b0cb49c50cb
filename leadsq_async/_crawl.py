"""Fan-out crawls: the records of many ids, as fast as the rate limit allows.

A crawl runs ``concurrency`` workers that take ids one at a time from the
caller's iterable (or async iterable), so a generator of a million ids is
never held in memory. Each finished id becomes a result, yielded as soon as it
is ready (in completion order, not input order); results wait in a queue of
``concurrency`` places, so a slow consumer holds the workers back rather than
letting results pile up. Every request of every worker goes through the
session's one rate limiter, and enough of them wait on it to keep every slot
busy.

One id's failure ends only that id: its result carries the error. Leaving the
loop early, or cancelling the task that iterates, cancels every worker and
waits for them, leaving no task or connection behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import attrs

from ._errors import LeadSquaredError
from ._records import Activity, Opportunity

__all__ = ["LeadResult", "OpportunityResult", "crawl"]

T = TypeVar("T")
Ids = Iterable[str] | AsyncIterable[str]

#: What ends one id's crawl without stopping the others: a failed call, or an
#: id that is not a non-empty str.
ID_ERRORS = (LeadSquaredError, ValueError, TypeError)


@attrs.frozen
class LeadResult:
    """The opportunities of one lead, or why they could not all be had.

    Attributes:
        lead_id: the lead.
        records: its opportunities (empty when ``error`` is set).
        activities: with ``with_activities``, each opportunity's activities by
            opportunity id; else empty.
        error: None, or the exception that ended this lead.
    """

    lead_id: str
    records: list[Opportunity] = attrs.field(factory=list)
    activities: dict[str, list[Activity]] = attrs.field(factory=dict)
    error: BaseException | None = None


@attrs.frozen
class OpportunityResult:
    """The activities of one opportunity, or why they could not be had.

    Attributes:
        opportunity_id: the opportunity.
        records: its activities (empty when ``error`` is set).
        error: None, or the exception that ended this opportunity.
    """

    opportunity_id: str
    records: list[Activity] = attrs.field(factory=list)
    error: BaseException | None = None


def check_concurrency(concurrency: object) -> int:
    """Check a crawl's concurrency.

    Raises:
        TypeError: not an int.
        ValueError: below 1.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    return concurrency


def check_ids(ids: object) -> Ids:
    """Check that ``ids`` can be iterated, lazily, for ids.

    Raises:
        TypeError: a str (one id, not many) or something not iterable.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be an iterable of ids, not a single str")
    if not isinstance(ids, (Iterable, AsyncIterable)):
        raise TypeError(f"ids must be an iterable or async iterable, not {type(ids).__name__}")
    return ids


async def crawl(
    ids: Ids,
    work: Callable[[str], Awaitable[T]],
    *,
    concurrency: int,
    spawn: Callable[[Any], asyncio.Task[Any]],
) -> AsyncGenerator[T, None]:
    """Run ``work(id)`` for every id, ``concurrency`` at a time; yield each result.

    ``work`` must turn an id's failure into its result rather than raise.
    """
    source = _IdSource(ids)
    results: asyncio.Queue[_Done | T] = asyncio.Queue(maxsize=concurrency)

    stopping = False

    async def worker() -> None:
        failure: Exception | None = None
        try:
            while not stopping and (item := await source.next()) is not _END:
                result = await work(item)
                if stopping:
                    # Cancelled, but a library below swallowed it (seen on Python 3.10,
                    # which lacks Task.uncancel): nobody will take this result.
                    return
                await results.put(result)
        except Exception as exc:  # reading the ids failed: the consumer re-raises it
            failure = exc
        # Not in a `finally`: a cancelled worker must not block on a full queue.
        if not stopping:
            await results.put(_Done(failure))

    workers = [spawn(worker()) for _ in range(concurrency)]
    running = len(workers)
    try:
        while running:
            result = await results.get()
            if isinstance(result, _Done):
                running -= 1
                if result.failure is not None:
                    raise result.failure
                continue
            yield result
    finally:
        stopping = True
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


@attrs.frozen
class _Done:
    """A worker ended: no more ids, or reading them failed."""

    failure: Exception | None


_END: Any = object()


class _IdSource:
    """One iterator over the caller's ids, shared by the workers."""

    def __init__(self, ids: Ids) -> None:
        self._sync = iter(ids) if isinstance(ids, Iterable) else None
        self._async = ids.__aiter__() if isinstance(ids, AsyncIterable) else None
        self._lock = asyncio.Lock()
        self._exhausted = False

    async def next(self) -> Any:
        async with self._lock:
            if self._exhausted:
                return _END
            try:
                if self._sync is not None:
                    return next(self._sync)
                assert self._async is not None
                # Not the builtin anext(): on Python 3.10 its awaitable does not pass a
                # cancellation on to the generator, and a cancelled crawl then hangs.
                return await self._async.__anext__()
            except (StopIteration, StopAsyncIteration):
                self._exhausted = True
                return _END


async def gather_limited(
    items: list[str], work: Callable[[str], Awaitable[T]], limit: asyncio.Semaphore
) -> list[T]:
    """``work`` over ``items`` concurrently, at most ``limit`` at a time; results in order."""

    async def one(item: str) -> T:
        async with limit:
            return await work(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
