"""The fan-out machinery behind Session.crawl_*, without HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest

from leadsq_async._crawl import Crawl


async def test_crawl_ends_when_a_call_below_swallows_the_cancellation() -> None:
    """A worker whose call swallows its cancellation does not keep the crawl from closing."""
    first_call: set[asyncio.Task[Any]] = set()
    both_waiting = asyncio.Event()

    async def work(item: str) -> str:
        task = asyncio.current_task()
        assert task is not None
        if task not in first_call:
            first_call.add(task)
            if len(first_call) == 2:
                both_waiting.set()
            # As a library with a shielded clean-up may do on Python 3.10.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)
        return item

    async def consume() -> None:
        async for _ in Crawl(map(str, itertools.count()), work, concurrency=2, spawn=asyncio.ensure_future):
            pass

    consumer = asyncio.ensure_future(consume())
    await both_waiting.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer, timeout=2)


async def test_crawl_surfaces_an_error_reading_the_ids() -> None:
    """An id source that fails raises its error from the crawl, after the ids before it."""

    def ids() -> Any:
        yield "a"
        raise OSError("the ids file went away")

    async def work(item: str) -> str:
        return item

    seen: list[str] = []

    async def consume() -> None:
        async for result in Crawl(ids(), work, concurrency=1, spawn=asyncio.ensure_future):
            seen.append(result)

    with pytest.raises(OSError, match="went away"):
        await consume()
    assert seen == ["a"]
