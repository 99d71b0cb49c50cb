"""The fan-out engine under every crawl: many ids worked on at once, each id's result as it
finishes, one id's failure its own and an account-wide one the crawl's (how the work is
paced and stopped: the "How a crawl runs" section of docs/crawls.md)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Container, Iterable
from typing import Any, Generic, TypeVar

import attrs

from ._aio import AnyIterator, cancel_and_wait
from ._closing import AsyncClosing
from ._errors import QuotaExhaustedError

__all__ = ["Crawl", "Ids", "PendingIds", "WorkCancelledError", "checked_ids"]

T = TypeVar("T")
Ids = Iterable[str] | AsyncIterable[str]


class WorkCancelledError(RuntimeError):
    """One id's work was cancelled from inside (a listener, a library below), not by the
    crawl: that id failed, for now (``transient``), and the crawl goes on."""

    transient = True


class Crawl(AsyncClosing, Generic[T]):
    """The results of a fan-out crawl, one per id as each finishes.

    Iterate it with ``async for``; use it as ``async with crawl as results:``
    so that leaving the block, however it is left, cancels the work at once.
    Nothing starts before the first result is asked for.

    A `CancelledError` that one id's work raises, when the crawl did not cancel it
    (a listener raised it, say), is that id's failure: with ``failed``, its result is
    ``failed(id, error=WorkCancelledError(...))``.

    Raises (while iterating):
        QuotaExhaustedError: a spent quota: no id starts after it, the work already
            started goes on as far as it gets slots, and its results come first; an id
            whose work could not get a slot has no result.
        LeadSquaredError: another account-wide failure, which ends the crawl at once.
        Exception: whatever reading the ids raised: the ids still in progress are
            cancelled, and the results already finished come first.
    """

    def __init__(
        self,
        ids: Ids,
        work: Callable[[str], Awaitable[T]],
        *,
        concurrency: int,
        spawn: Callable[[Any], asyncio.Task[Any]],
        failed: Callable[..., T] | None = None,
    ) -> None:
        self._ids = AnyIterator(ids)
        self._failed = failed
        #: The tasks whose work has not finished (the others wait to hand their result on).
        self._working: set[asyncio.Task[Any]] = set()
        #: What reading the ids raised, raised once the finished results are delivered.
        self._source_error: Exception | None = None
        self._work = work
        self._concurrency = concurrency
        self._spawn = spawn
        self._results: asyncio.Queue[T | _End] | None = None
        self._feeder: asyncio.Task[None] | None = None
        #: The feeder's task that reads the ids and starts the work on each.
        self._starter: asyncio.Task[None] | None = None
        #: A spent quota, raised once the work still going on has delivered its results.
        self._spent: QuotaExhaustedError | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._stopping = False
        self._finished = False

    def __aiter__(self) -> Crawl[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        if self._results is None:
            self._results = asyncio.Queue(maxsize=self._concurrency)
            self._feeder = self._spawn(self._feed(self._results))
        try:
            if self._failure is None:
                result = await self._results.get()
            if self._failure is not None:
                raise self._failure
        except BaseException:
            await self.aclose()
            raise
        if isinstance(result, _End):
            self._finished = True
            if self._source_error is not None:
                raise self._source_error
            if self._spent is not None:
                raise self._spent
            raise StopAsyncIteration
        return result

    async def aclose(self) -> None:
        """Cancel every task of the crawl and wait for them to end."""
        self._stop()
        await cancel_and_wait(self._running())

    def __del__(self) -> None:
        # Left without aclose (a `break` out of `async for`): stop the work anyway.
        with contextlib.suppress(RuntimeError):
            self._stop()

    def _stop(self) -> None:
        self._stopping = True
        self._finished = True
        for task in self._running():
            task.cancel()

    def _running(self) -> list[asyncio.Task[None]]:
        """The crawl's tasks: one per id in progress, and the feeder and its starter."""
        feeding = [task for task in (self._feeder, self._starter) if task is not None]
        return [*self._tasks, *feeding]

    async def _feed(self, results: asyncio.Queue[T | _End]) -> None:
        """Start the work on each id, wait for all of it to end, then end the results."""
        # Its own task, so that a spent quota can stop it, even while it waits for a slow
        # source of ids, and leave the work already started going (see _spend).
        self._starter = self._spawn(self._start(results))
        await asyncio.wait([self._starter])
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if not self._stopping:
            await results.put(_End())

    async def _start(self, results: asyncio.Queue[T | _End]) -> None:
        places = asyncio.Semaphore(self._concurrency)
        try:
            while not self._stopping and self._spent is None:
                await places.acquire()
                try:
                    item = await self._ids.__anext__()
                except StopAsyncIteration:
                    break
                if self._spent is not None:
                    break  # spent while the id was read: it stays pending
                task = self._spawn(self._one(item, places, results))
                self._tasks.add(task)
                self._working.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception as exc:  # reading the ids failed: deliver what finished, then raise
            self._source_error = exc
            for task in self._working:
                task.cancel()

    async def _one(
        self, item: str, places: asyncio.Semaphore, results: asyncio.Queue[T | _End]
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            try:
                result = await self._work(item)
            except asyncio.CancelledError as cancelled:
                if self._failed is None or self._cancelled_by_the_crawl(task):
                    raise
                error = WorkCancelledError(f"the work on {item!r} was cancelled, not by the crawl")
                error.__cause__ = cancelled
                result = self._failed(item, error=error)
            finally:
                self._working.discard(task)
            if self._stopping:
                # Cancelled, but a library below swallowed it (seen on Python 3.10,
                # which lacks Task.uncancel): nobody will take this result.
                return
            await results.put(result)
        except QuotaExhaustedError as spent:  # no slot for this id's work: it stays pending
            self._spend(spent)
        except Exception as exc:  # account-wide: the work turns the others into results
            self._fail(exc)
        finally:
            places.release()

    def _cancelled_by_the_crawl(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled by the crawl (or someone holding the task), rather
        than by a CancelledError raised inside its work."""
        if self._stopping or self._failure is not None or self._source_error is not None:
            return True
        return sys.version_info >= (3, 11) and task.cancelling() > 0

    def _spend(self, spent: QuotaExhaustedError) -> None:
        """A spent quota: start no more ids, but let the work already started go on as far
        as it gets slots (a request granted one is paid for); its results are delivered
        before ``spent`` is raised."""
        if self._failure is not None or self._stopping or self._spent is not None:
            return
        self._spent = spent
        if self._starter is not None:
            self._starter.cancel()

    def _fail(self, failure: BaseException) -> None:
        if self._failure is not None or self._stopping:
            return
        self._failure = failure
        for task in self._running():
            if task is not asyncio.current_task():
                task.cancel()
        assert self._results is not None
        # Wakes a consumer waiting on an empty queue; one busy elsewhere checks
        # _failure before it waits again.
        with contextlib.suppress(asyncio.QueueFull):
            self._results.put_nowait(_End())


@attrs.frozen
class _End:
    """No more results (or a failure to raise: see Crawl._failure)."""


class PendingIds(AsyncIterator[str]):
    """The ids neither settled already (``settled``) nor seen before in this crawl.

    Each id skipped is handed to ``skipped``. What is not a str passes through, for the
    crawl to fail it as the id it is. A class rather than a generator, so that it can
    take ids from an async source without nesting async generators.
    """

    def __init__(self, ids: Ids, settled: Container[str], skipped: Callable[[str], object]) -> None:
        self._ids = AnyIterator(ids)
        self._settled = settled
        self._seen: set[str] = set()
        self._skipped = skipped

    async def __anext__(self) -> str:
        while True:
            item = await self._ids.__anext__()
            if not isinstance(item, str):
                return item
            if item in self._settled or item in self._seen:
                self._skipped(item)
                continue
            self._seen.add(item)
            return item


def checked_ids(ids: object) -> Ids:
    """``ids`` if it can be iterated, lazily, for ids.

    Raises:
        TypeError: a str (one id, not many) or something not iterable.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be an iterable of ids, not a single str")
    if not isinstance(ids, (Iterable, AsyncIterable)):
        raise TypeError(f"ids must be an iterable or async iterable, not {type(ids).__name__}")
    return ids
