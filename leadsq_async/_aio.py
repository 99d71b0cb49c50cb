"""Two asyncio helpers every layer shares: cancel-then-wait, and ids from any iterable."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable
from typing import Any, TypeVar

__all__ = ["AnyIterator", "cancel_and_wait", "within"]

T = TypeVar("T")


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
