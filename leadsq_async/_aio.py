"""The asyncio helpers every layer shares: the loop's clock, cancel-then-wait, a bounded
await, and ids from any iterable."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable
from typing import Any, TypeVar

__all__ = ["AnyIterator", "LoopClock", "cancel_and_wait", "delay_until", "within"]

T = TypeVar("T")


class LoopClock:
    """The one monotonic clock: the running event loop's ``time()``.

    Read outside a running loop (a property looked at from plain code), it is the clock of
    the loop it was last read in, so a loop with virtual time stays the time of what was
    done in it; before any loop, ``time.monotonic()``, which asyncio's loops use.
    """

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> float:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                return time.monotonic()
        return self._loop.time()


def delay_until(target: float, now: float) -> float:
    """The sleep from ``now`` that ends no earlier than ``target``, on a clock that may count
    in whole microseconds (a virtual-time loop's does): ``target`` rounded up to one, and at
    least one, so that each wake finds the clock moved on."""
    return max(math.ceil(target * 1e6) / 1e6 - now, 1e-6)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended, whatever it raised."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def within(seconds: float | None, work: Awaitable[T]) -> T:
    """``await work``, raising `asyncio.TimeoutError` after ``seconds`` (None: no bound)."""
    if seconds is None:
        return await work
    if sys.version_info >= (3, 11):
        # Unlike wait_for before 3.12, this runs the work in the caller's task.
        async with asyncio.timeout(seconds):
            return await work
    return await asyncio.wait_for(work, seconds)  # pragma: no cover (Python 3.10)


class AnyIterator(AsyncIterator[T]):
    """An async iterator over an iterable or an async iterable, taken lazily.

    A class rather than an async generator: nested async generators collide at
    interpreter shutdown, and on Python 3.10 the builtin ``anext()`` does not
    pass a cancellation on to the generator it drives.
    """

    def __init__(self, items: Iterable[T] | AsyncIterable[T]) -> None:
        self._sync = iter(items) if isinstance(items, Iterable) else None
        self._async = items.__aiter__() if isinstance(items, AsyncIterable) else None

    async def __anext__(self) -> T:
        if self._sync is not None:
            try:
                return next(self._sync)
            except StopIteration:
                raise StopAsyncIteration from None
        assert self._async is not None
        return await self._async.__anext__()
