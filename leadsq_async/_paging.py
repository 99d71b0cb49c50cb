"""Walking every page of a paged endpoint, in order, each row once.

A `Paginator` is what ``session.opportunities_of_lead(...)`` returns: iterate
it for records, call `Paginator.pages` for whole pages, or
`Paginator.collect` for a list.

How a walk goes:

- Page 1 is fetched alone. It tells ``RecordCount``, and whether the server
  clamps the page size (fewer rows than asked while more remain): then the
  walk continues at the size the server honours, and the session remembers it.
- The following pages are fetched ahead, a bounded number at a time, each
  through the rate limiter, and yielded strictly in order.
- The walk stops without an extra request once the rows reach
  ``RecordCount``, on a short page, on an empty page, or at ``limit``.
- Offset paging over data that changes can repeat a row (a row inserted ahead
  of the walk shifts the rest down): a row whose id was seen is dropped. When
  ``RecordCount`` changes mid-walk, the pages fetched ahead may have been
  answered before the change and leave a gap, so they are dropped, and the
  rest of the walk fetches one page after another.
- A page that holds only rows already seen, while nothing changed, means the
  server ignores ``PageIndex``: `PagingError`, rather than looping for ever.
- Leaving early (``break``, an exception, cancellation) cancels the pages
  fetched ahead and waits for them to end, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._endpoints import Endpoint
from ._errors import PagingError
from ._records import structure_rows
from ._wire import PageQuery, RawPage

__all__ = ["Page", "PageSource", "Paginator"]

logger = logging.getLogger("leadsq_async")

R = TypeVar("R")
T = TypeVar("T")


class PageSource(Protocol):
    """What a paginator needs from the session."""

    look_ahead: int

    async def _fetch_page(self, query: PageQuery, page_index: int, page_size: int) -> RawPage:
        """Fetch one page, through the rate limiter and with retries."""

    def _page_size_for(self, endpoint: Endpoint[Any]) -> int:
        """The largest page size worth asking this endpoint for."""

    def _learn_page_size(self, endpoint: Endpoint[Any], page_size: int) -> None:
        """Remember that the endpoint clamps pages to ``page_size`` rows."""

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a coroutine as a task that the session cancels when it closes."""


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


def _checked_count(name: str, value: object, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


class Paginator(Generic[R]):
    """The records of a paged endpoint: an async iterable, walked lazily.

    Nothing is sent until iteration starts, and each iteration walks the pages
    anew.

    Raises:
        TypeError, ValueError: at construction, for a ``page_size`` below 1 or a
            ``limit`` below 0 (or not an int).
    """

    def __init__(
        self,
        source: PageSource,
        query: PageQuery,
        *,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> None:
        self._source = source
        self._query = query
        self._page_size = _checked_count("page_size", page_size, 1)
        self._limit = _checked_count("limit", limit, 0)

    def __repr__(self) -> str:
        return (
            f"<Paginator {self._query.endpoint.name}({self._query.id_value!r}) "
            f"page_size={self._page_size} limit={self._limit}>"
        )

    def __aiter__(self) -> AsyncGenerator[R, None]:
        return self._items()

    def pages(self) -> AsyncGenerator[Page[R], None]:
        """Iterate over whole pages instead of records."""
        return self._pages()

    async def collect(self) -> list[R]:
        """Every record (up to ``limit``), as a list."""
        return [record async for record in self]

    async def _items(self) -> AsyncGenerator[R, None]:
        async with contextlib.aclosing(self._pages()) as pages:
            async for page in pages:
                for item in page.items:
                    yield item

    async def _pages(self) -> AsyncGenerator[Page[R], None]:
        walk = _Walk[R](self._source, self._query, self._page_size, self._limit)
        try:
            async for page in walk.run():
                yield page
        finally:
            await walk.cancel_ahead()


class _Walk(Generic[R]):
    """The state of one walk over the pages."""

    def __init__(
        self, source: PageSource, query: PageQuery, page_size: int | None, limit: int | None
    ) -> None:
        self.source = source
        self.query = query
        self.endpoint: Endpoint[R] = query.endpoint
        self.page_size = page_size or source._page_size_for(query.endpoint)
        if limit is not None:
            # Never ask for more rows than the limit lets us use.
            self.page_size = min(self.page_size, max(limit, 1))
        self.limit = limit
        self.ahead: dict[int, asyncio.Task[RawPage]] = {}
        self.seen: set[object] = set()
        self.yielded = 0
        self.record_count: int | None = None
        self.sequential = False

    async def run(self) -> AsyncGenerator[Page[R], None]:
        if self.limit == 0:
            return
        first = await self.fetch(1)
        self.record_count = first.record_count
        self.detect_clamp(first)
        if not self.is_last(first, 1):
            self.fetch_ahead(1)
        raw, index = first, 1
        while True:
            yield self.page(raw, index)
            if self.is_last(raw, index):
                return
            index += 1
            raw = await self.next_page(index)

    def detect_clamp(self, first: RawPage) -> None:
        served, total = len(first.rows), first.record_count
        if 0 < served < self.page_size and total is not None and served < total:
            logger.info(
                "%s answered %d rows for a page of %d while %d match: it clamps pages to %d rows",
                self.endpoint.path,
                served,
                self.page_size,
                total,
                served,
            )
            self.page_size = served
            self.source._learn_page_size(self.endpoint, served)

    def page(self, raw: RawPage, index: int) -> Page[R]:
        rows = self.fresh_rows(raw, index)
        if self.limit is not None:
            rows = rows[: self.limit - self.yielded]
        self.yielded += len(rows)
        items = structure_rows(rows, self.endpoint.record_class)
        return Page(items, index, raw.record_count, self.page_size)

    def fresh_rows(self, raw: RawPage, index: int) -> list[dict[str, Any]]:
        id_key, fresh = self.endpoint.id_key, []
        for row in raw.rows:
            row_id = row.get(id_key)
            if row_id is None:
                fresh.append(row)
            elif row_id not in self.seen:
                self.seen.add(row_id)
                fresh.append(row)
        if raw.rows and not fresh and index > 1 and not self.sequential:
            raise PagingError(
                f"page {index} holds only rows already seen while RecordCount stayed "
                f"{raw.record_count}: the server seems to ignore PageIndex",
                endpoint=self.endpoint.path,
            )
        return fresh

    def is_last(self, raw: RawPage, index: int) -> bool:
        if not raw.rows or len(raw.rows) < self.page_size:
            return True
        if self.limit is not None and self.yielded >= self.limit:
            return True
        return self.record_count is not None and index * self.page_size >= self.record_count

    def last_index(self) -> int | None:
        target = self.record_count
        if target is None:
            return None
        if self.limit is not None:
            # Rows dropped as repeats don't count, so this may stop short by a
            # page; the walk then goes on one page at a time.
            target = min(target, self.limit)
        return -(-target // self.page_size)

    async def next_page(self, index: int) -> RawPage:
        task = self.ahead.pop(index, None)
        raw = await task if task is not None else await self.fetch(index)
        if raw.record_count != self.record_count:
            logger.info(
                "%s: RecordCount went from %s to %s while paging %r; the rest of the walk "
                "fetches one page at a time",
                self.endpoint.path,
                self.record_count,
                raw.record_count,
                self.query.id_value,
            )
            self.record_count = raw.record_count
            self.sequential = True
            await self.cancel_ahead()
            if task is not None:
                # This page may have been answered before the previous one.
                raw = await self.fetch(index)
                self.record_count = raw.record_count
        self.fetch_ahead(index)
        return raw

    def fetch_ahead(self, index: int) -> None:
        last = self.last_index()
        if self.sequential or last is None:
            return
        for ahead in range(index + 1, min(last, index + self.source.look_ahead) + 1):
            if ahead not in self.ahead:
                self.ahead[ahead] = self.source._spawn(self.fetch(ahead))

    async def fetch(self, index: int) -> RawPage:
        return await self.source._fetch_page(self.query, index, self.page_size)

    async def cancel_ahead(self) -> None:
        tasks = list(self.ahead.values())
        self.ahead.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
