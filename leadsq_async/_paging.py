"""Walking every page of a paged endpoint, in order, each row once.

A `Paginator` is what ``session.opportunities_of_lead(...)`` returns: iterate
it for records, call `Paginator.pages` for whole pages, or `Paginator.collect`
for a list. This module does the fetching (page 1 alone, then a bounded number
of pages ahead, each through the transport) and owns each session's
`PageSizes`; when a walk stops is `_walk_rules`' to say. How a walk goes, and
why every walk ends: docs/how-it-works/paging.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._aio import cancel_and_wait
from ._checks import check_int
from ._decode import RawPage
from ._endpoints import Endpoint
from ._errors import APIError
from ._request import PageQuery
from ._transport import Transport
from ._walk_rules import MAX_PAGES_WITHOUT_RECORD_COUNT, SPARE_PAGES, PageSizes, WalkRules

__all__ = [
    "MAX_PAGES_WITHOUT_RECORD_COUNT",
    "SPARE_PAGES",
    "Page",
    "PageIterator",
    "Paginator",
    "Walk",
]

logger = logging.getLogger("leadsq_async")

R = TypeVar("R")
T = TypeVar("T")


@attrs.frozen
class Page(Generic[R]):
    """One page of records.

    Attributes:
        items: the page's records, in the server's order, less rows already
            yielded by an earlier page and rows beyond ``limit``.
        index: the page's ``PageIndex`` (1-based).
        record_count: the ``RecordCount`` this page reported: the total number
            of matching rows, or None if the server sent none.
        page_size: the page size the page was asked with.
    """

    items: list[R]
    index: int
    record_count: int | None
    page_size: int


Structure = Callable[[list[dict[str, Any]]], list[R]]


def _checked_count(name: str, value: object, minimum: int) -> int | None:
    return None if value is None else check_int(name, value, minimum=minimum)


class Paginator(Generic[R]):
    """The records of a paged endpoint: an async iterable, walked lazily.

    Nothing is sent until iteration starts, and each iteration walks the pages
    anew. ``async with paginator as records:`` gives one walk's iterator and,
    however the block is left, cancels the pages fetched ahead and waits for
    them before going on.

    Raises:
        TypeError, ValueError: at construction, for a ``page_size`` below 1 or a
            ``limit`` below 0 (or not an int).
    """

    def __init__(
        self,
        transport: Transport,
        query: PageQuery,
        structure: Structure[R],
        *,
        page_size: int | None = None,
        limit: int | None = None,
        look_ahead: int | None = None,
    ) -> None:
        self._transport = transport
        self._query = query
        self._structure = structure
        self._page_size = _checked_count("page_size", page_size, 1)
        self._limit = _checked_count("limit", limit, 0)
        # The session's look-ahead unless this walk must send no request it may not need.
        self._look_ahead = _checked_count("look_ahead", look_ahead, 0)
        self._open: list[RecordIterator[R]] = []

    def __repr__(self) -> str:
        return (
            f"<Paginator {self._query.endpoint.name}({self._query.id_value!r}) "
            f"page_size={self._page_size} limit={self._limit}>"
        )

    def __aiter__(self) -> AsyncIterator[R]:
        return RecordIterator(self._walk())

    async def __aenter__(self) -> AsyncIterator[R]:
        records = RecordIterator(self._walk())
        self._open.append(records)
        return records

    async def __aexit__(self, *exc_info: object) -> None:
        await self._open.pop().aclose()

    def pages(self) -> PageIterator[R]:
        """Iterate over whole pages instead of records."""
        return self._walk()

    def _walk(self) -> PageIterator[R]:
        walk = _Walk(self._transport, self._query, self._structure, self._page_size, self._limit)
        if self._look_ahead is not None:
            walk.look_ahead = self._look_ahead
        return PageIterator(walk)

    async def collect(self) -> list[R]:
        """Every record (up to ``limit``), as a list."""
        return [record async for record in self]


class Walk(Protocol[T]):
    """What a `PageIterator` steps through: `_Walk` here, the feeds' windowed walk too."""

    async def next_page(self) -> Page[T] | None: ...

    def stop(self) -> None: ...

    async def cancel_ahead(self) -> None: ...

    def pages_left(self) -> int | None: ...


class PageIterator(AsyncIterator[Page[R]]):
    """One walk over the pages: what `Paginator.pages` returns.

    A class rather than an async generator, so that nothing needs awaiting to
    stop it: leaving the loop early, an error, or dropping the iterator cancels
    the pages fetched ahead at once. (At interpreter shutdown asyncio closes
    every async generator still open concurrently, and nested generators then
    collide; plain iterators are not touched.) `aclose` also waits for the
    cancelled fetches to end.
    """

    def __init__(self, walk: Walk[R]) -> None:
        self._walk = walk

    def __aiter__(self) -> PageIterator[R]:
        return self

    @property
    def pages_left(self) -> int | None:
        """The requests the walk still makes, retries aside, as far as it can tell: None
        until its first page came; then from ``RecordCount`` over the page size, and for
        a feed also the windows left at the size in use (see the feeds guide); 0 once
        it is over. An estimate for a display, never a promise."""
        return self._walk.pages_left()

    async def __anext__(self) -> Page[R]:
        try:
            page = await self._walk.next_page()
        except BaseException:
            self._walk.stop()
            raise
        if page is None:
            raise StopAsyncIteration
        return page

    async def aclose(self) -> None:
        """Stop the walk, and wait for the pages fetched ahead to be cancelled."""
        await self._walk.cancel_ahead()
        self._walk.stop()

    def __del__(self) -> None:
        # A loop already closed has cancelled every task; nothing is left to stop.
        with contextlib.suppress(RuntimeError):
            self._walk.stop()


class RecordIterator(AsyncIterator[R]):
    """One walk over the records: what ``async for`` over a `Paginator` uses."""

    def __init__(self, pages: PageIterator[R]) -> None:
        self._pages = pages
        self._items: Iterator[R] = iter(())

    def __aiter__(self) -> RecordIterator[R]:
        return self

    async def __anext__(self) -> R:
        while True:
            item = next(self._items, _NO_ITEM)
            if item is not _NO_ITEM:
                return item
            page = await self._pages.__anext__()
            self._items = iter(page.items)

    async def aclose(self) -> None:
        """Stop the walk, and wait for the pages fetched ahead to be cancelled."""
        await self._pages.aclose()


_NO_ITEM: Any = object()


# One session's page-size memory, made on its transport's first walk and gone with it.
_page_sizes: weakref.WeakKeyDictionary[Transport, PageSizes] = weakref.WeakKeyDictionary()


def page_sizes_of(transport: Transport) -> PageSizes:
    """What the walks of ``transport``'s session learned about the page sizes served."""
    sizes = _page_sizes.get(transport)
    if sizes is None:
        sizes = _page_sizes[transport] = PageSizes()
    return sizes


class _Walk(Generic[R]):
    """One walk over the pages: the fetching around its `WalkRules`."""

    def __init__(
        self,
        transport: Transport,
        query: PageQuery,
        structure: Structure[R],
        page_size: int | None,
        limit: int | None,
    ) -> None:
        self.transport = transport
        self.query = query
        self.structure = structure
        self.endpoint: Endpoint[Any] = query.endpoint
        self.sizes = page_sizes_of(transport)
        path = self.endpoint.path
        asked = self.endpoint.max_page_size if page_size is None else page_size
        self.rules = WalkRules(path, self.endpoint.id_key, self.sizes.size_for(path, asked), limit)
        self.look_ahead = transport.look_ahead
        self.ahead: dict[int, asyncio.Task[RawPage]] = {}
        # Cancelled by `stop`, not yet waited for: `cancel_ahead` waits for them.
        self.stopped: list[asyncio.Task[RawPage]] = []
        self.finished = False

    async def next_page(self) -> Page[R] | None:
        """The next page, or None once the walk is over.

        Raises:
            PagingError: the server broke paging (see docs/how-it-works/paging.md).
            MalformedResponseError: a row whose id is not an id.
            LeadSquaredError: the failure of a page's request.
        """
        rules = self.rules
        if self.finished:
            return None
        if rules.index == 0:
            if rules.limit == 0:
                self.finished = True
                return None
            raw = await self.first_page()
            asked = rules.page_size
            if rules.begin(raw):
                logger.info(
                    "%s answered %d rows for a page of %d while %d match: it clamps pages to "
                    "%d rows",
                    self.endpoint.path,
                    len(raw.rows),
                    asked,
                    raw.record_count,
                    rules.page_size,
                )
        else:
            if rules.over_cap:
                self.stop()
                raise rules.overrun()
            raw = await self.fetched(rules.index + 1)
        step = rules.step(raw)
        if step.clamp_confirmed:
            self.sizes.learn(self.endpoint.path, rules.page_size)
        if step.last:
            self.stop()
        elif rules.index == 1:
            self.fetch_ahead(1)
        return Page(self.structure(step.rows), rules.index, raw.record_count, rules.page_size)

    def pages_left(self) -> int | None:
        """Pages still to fetch (`PageIterator.pages_left`): None before page 1."""
        if self.finished:
            return 0
        if self.rules.index == 0:
            return None
        # Pages fetched ahead and not yet yielded are fetched: not left.
        ahead = sum(1 for task in self.ahead.values() if task.done())
        left = max(self.rules.last_index() - self.rules.index - ahead, 0)
        # Without a RecordCount, a walk not over asks for one more page at least.
        return left if self.rules.record_count is not None else max(left, 1)

    def stop(self) -> None:
        """End the walk: no page is yielded after this, and fetches ahead are cancelled."""
        self.finished = True
        for task in self.ahead.values():
            task.cancel()
            self.stopped.append(task)
        self.ahead.clear()

    async def first_page(self) -> RawPage:
        """Page 1. Asked for more rows than the API is known to honour and refused with an
        API error, it is asked again at that size, which is then remembered if it works."""
        rules = self.rules
        try:
            return await self.fetch(1)
        except APIError as error:
            if rules.page_size <= self.endpoint.max_page_size:
                raise
            reason = error.message
        refused, rules.page_size = rules.page_size, self.endpoint.max_page_size
        raw = await self.fetch(1)
        logger.warning(
            "%s refused pages of %d rows (%s); asking for %d from now on",
            self.endpoint.path,
            refused,
            reason,
            rules.page_size,
        )
        self.sizes.learn(self.endpoint.path, rules.page_size)
        return raw

    async def fetched(self, index: int) -> RawPage:
        """Page ``index``: fetched ahead, or now. When RecordCount changes, the pages
        fetched ahead may have been answered before the change: they are dropped, and
        this one is asked again."""
        task = self.ahead.pop(index, None)
        raw = await task if task is not None else await self.fetch(index)
        before = self.rules.record_count
        if self.rules.count_changed(raw.record_count):
            logger.info(
                "%s: RecordCount went from %s to %s while paging %r; the rest of the walk "
                "fetches one page at a time",
                self.endpoint.path,
                before,
                raw.record_count,
                self.query.id_value,
            )
            await self.cancel_ahead()
            if task is not None:
                raw = await self.fetch(index)
                self.rules.count_changed(raw.record_count)
        self.fetch_ahead(index)
        return raw

    def fetch_ahead(self, index: int) -> None:
        if self.rules.sequential:
            return
        last = self.rules.last_index()
        for ahead in range(index + 1, min(last, index + self.look_ahead) + 1):
            if ahead not in self.ahead:
                self.ahead[ahead] = self.transport.spawn(self.fetch(ahead))

    async def fetch(self, index: int) -> RawPage:
        raw = await self.transport.fetch_page(self.query, index, self.rules.page_size)
        # What the server showed it can serve: no clamp is learned below it.
        self.sizes.served(self.endpoint.path, len(raw.rows))
        return raw

    async def cancel_ahead(self) -> None:
        tasks = [*self.stopped, *self.ahead.values()]
        self.ahead.clear()
        self.stopped.clear()
        await cancel_and_wait(tasks)
