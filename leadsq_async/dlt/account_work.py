"""What a `leadsquared_account` run has left to ask, in requests, for a display's ETA.

Every walk of a run (the leads feed, the activities feed, each opportunity type's search,
each opportunity's activities, reconcile's listings) is counted here by its kind. A walk
started tells its own pages left (`PageIterator.pages_left`: from ``RecordCount`` over the
page size, and the windows left up to the run's end at the size in use); a walk of a kind
not started yet, or before its first page, counts as the mean walk of its kind so far. Until
each kind expected has a walk that can tell, nothing is estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from leadsq_async._aio import cancel_and_wait

if TYPE_CHECKING:
    from leadsq_async import Page, PageIterator, Paginator

__all__ = ["SyncWork", "all_at_once", "merged"]

T = TypeVar("T")


class _Walk:
    def __init__(self, kind: str, pages: PageIterator[Any]) -> None:
        self.kind = kind
        self.pages = pages
        self.yielded = 0
        self.over = False

    def left(self) -> int | None:
        return 0 if self.over else self.pages.pages_left


class SyncWork:
    """The walks of one sync, and the requests they still need (`requests_left`).

    Walks are added from the sync's event loop; `requests_left` may be read from any
    thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._walks: list[_Walk] = []
        # Walks to come, by kind; None: a number not known yet.
        self._expected: dict[str, int | None] = {}

    def expect(self, kind: str, count: int | None = 1) -> None:
        """``count`` more walks of ``kind`` are to come (None: some, how many not known)."""
        with self._lock:
            if count is None:
                self._expected[kind] = None
                return
            before = self._expected.get(kind) or 0
            self._expected[kind] = before + count

    def settle(self, kind: str, count: int) -> None:
        """Exactly ``count`` walks of ``kind`` are to come (no longer unknown)."""
        with self._lock:
            self._expected[kind] = count

    async def walk(self, kind: str, paginator: Paginator[Any]) -> AsyncGenerator[Page[Any], None]:
        """The pages of ``paginator``, counted as one expected walk of ``kind``."""
        walk = _Walk(kind, paginator.pages())
        with self._lock:
            self._expected[kind] = max((self._expected.get(kind) or 1) - 1, 0)
            self._walks.append(walk)
        try:
            async for page in walk.pages:
                walk.yielded += 1
                yield page
        finally:
            walk.over = True

    def requests_left(self) -> float | None:
        """The requests still to come, retries aside; None until it can be told."""
        with self._lock:
            walks = list(self._walks)
            expected = dict(self._expected)
        left = 0.0
        totals: dict[str, list[int]] = {}
        unknown: list[str] = []
        for walk in walks:
            pages = walk.left()
            if pages is None:
                unknown.append(walk.kind)  # before its first page
                continue
            left += pages
            totals.setdefault(walk.kind, []).append(walk.yielded + pages)
        for kind, count in [*((kind, 1) for kind in unknown), *expected.items()]:
            if count is None:
                return None
            if count:
                seen = totals.get(kind)
                if not seen:
                    return None
                left += count * sum(seen) / len(seen)
        return left


async def all_at_once(work: Iterable[Awaitable[T]]) -> list[T]:
    """Each of ``work``'s results, all awaited at once (on the run's one limiter); the first
    failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(each) for each in work]
    try:
        return await asyncio.gather(*tasks)
    finally:
        await cancel_and_wait(tasks)


_OVER = object()


async def merged(walks: Sequence[AsyncGenerator[T, None]]) -> AsyncGenerator[T, None]:
    """The items of ``walks`` as each comes, the walks run at once: each walk's items in its
    own order, each walk at most one item ahead of what was taken. The first failure
    cancels the other walks and is raised; closing this cancels them all."""
    if len(walks) == 1:
        async with contextlib.aclosing(walks[0]) as only:
            async for item in only:
                yield item
        return
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue(len(walks))

    async def pump(walk: AsyncGenerator[T, None]) -> None:
        try:
            async with contextlib.aclosing(walk):
                async for item in walk:
                    await queue.put((item, None))
        except Exception as error:
            await queue.put((None, error))
        else:
            await queue.put((_OVER, None))

    tasks = [asyncio.ensure_future(pump(walk)) for walk in walks]
    running = len(tasks)
    try:
        while running:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _OVER:
                running -= 1
                continue
            yield item
    finally:
        await cancel_and_wait(tasks)
