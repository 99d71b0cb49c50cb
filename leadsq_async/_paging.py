"""Walking every page of a paged endpoint, in order, each row once.

A `Paginator` is what ``session.opportunities_of_lead(...)`` returns: iterate
it for records, call `Paginator.pages` for whole pages, or
`Paginator.collect` for a list.

How a walk goes:

- Page 1 is fetched alone. It tells ``RecordCount``, and whether the server
  may clamp the page size (fewer rows than asked while more remain): then the
  walk goes on at the size served, which is right for a clamp and for one odd
  short answer alike. The session remembers that size for later walks only when
  page 2, asked at it, comes back full of new rows and ``RecordCount`` says more
  follow, so one short answer does not shrink every later walk's pages.
  A page size above the largest the API is known to honour (1000) that the
  server refuses with an API error is asked again at that size, remembered too.
- The following pages are fetched ahead, a bounded number at a time, each
  through the rate limiter, and yielded strictly in order.
- Rows are told apart by their id (by their whole content when they have
  none); a row seen before is dropped, so each row is yielded once. A row whose
  id is not a string or a number raises `MalformedResponseError`.
- When ``RecordCount`` changes mid-walk, the pages fetched ahead may have been
  answered before the change and leave a gap, so they are dropped, and the rest
  of the walk fetches one page after another. A page without ``RecordCount``
  changes nothing: the last one sent still counts.
- Leaving early (``break``, an exception, cancellation) cancels the pages
  fetched ahead and waits for them to end, so nothing is left running.

When a walk ends, whatever the server answers (each rule ends it without
another request):

1. On an empty page, a page shorter than asked, or at ``limit``.
2. When the rows reach ``RecordCount``: the pages asked cover it, or as many
   different rows as it counts have come (a server may send more rows than
   asked; they are taken, once).
3. On a page that adds no new row. After pages larger than asked, a shorter one
   is the end. A full one while more rows were expected raises `PagingError`
   (the server ignores ``PageIndex``), unless ``RecordCount`` grew since page 1
   by at least as many rows as have come twice: rows inserted ahead of the walk
   push rows already read onto later pages, which the walk then reads through.
4. At the page cap: a walk asks for at most twice the pages page 1's
   ``RecordCount`` needs at the page size it goes on at, plus `SPARE_PAGES`
   (the rows may double while it reads them), or `MAX_PAGES_WITHOUT_RECORD_COUNT`
   when page 1 has no ``RecordCount``. A walk that would go further raises
   `PagingError` instead of asking for another page: the server keeps inventing
   rows, or they grow faster than the walk reads them.

Every page that does not end the walk either adds a new row or is explained
by rows inserted, and the cap bounds them all, so every walk ends, with its
rows or a `PagingError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._aio import cancel_and_wait
from ._checks import check_int
from ._endpoints import Endpoint
from ._errors import APIError, MalformedResponseError, PagingError
from ._transport import Transport
from ._wire import PageQuery, RawPage

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

MAX_PAGES_WITHOUT_RECORD_COUNT = 10_000
"""The most pages a walk asks for when page 1 has no ``RecordCount``."""

SPARE_PAGES = 10
"""Pages a walk may ask for beyond twice what page 1's ``RecordCount`` needs."""


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

    def pages(self) -> AsyncIterator[Page[R]]:
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


def _row_key(row: dict[str, Any], id_key: str, endpoint: str) -> tuple[str, object]:
    """What tells a row apart from the others: its id, or for a row without one (or an
    endpoint without ids) its whole content."""
    row_id = row.get(id_key) if id_key else None
    if row_id is None:
        try:
            return ("row", json.dumps(row, sort_keys=True, default=str))
        except (ValueError, RecursionError):
            raise MalformedResponseError(
                "a row without an id is too deeply nested to tell apart",
                endpoint=endpoint,
                status=200,
            ) from None
    if isinstance(row_id, (str, int, float)) and not isinstance(row_id, bool):
        return ("id", row_id)
    raise MalformedResponseError(
        f"a row's {id_key} is a JSON {_json_type(row_id)}, not an id", endpoint=endpoint, status=200
    )


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "array" if isinstance(value, list) else "object"


def _page_cap(first_count: int | None, page_size: int) -> int:
    """The most pages a walk asks for, from page 1's ``RecordCount`` and the page size the
    walk goes on at: twice the pages that count needs (the rows may double while the walk
    reads them) and `SPARE_PAGES` more, or `MAX_PAGES_WITHOUT_RECORD_COUNT` without one."""
    if first_count is None:
        return MAX_PAGES_WITHOUT_RECORD_COUNT
    return 2 * -(-first_count // page_size) + SPARE_PAGES


class _Walk(Generic[R]):
    """The state of one walk over the pages."""

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
        self.page_size = transport.page_size_for(query.endpoint, page_size)
        if limit is not None:
            # Never ask for more rows than the limit lets us use.
            self.page_size = min(self.page_size, max(limit, 1))
        self.limit = limit
        self.look_ahead = transport.look_ahead
        self.ahead: dict[int, asyncio.Task[RawPage]] = {}
        self.seen: set[tuple[str, object]] = set()
        self.yielded = 0
        # The RecordCount of the latest page that sent one, and of the first.
        self.record_count: int | None = None
        self.first_count: int | None = None
        # The most RecordCount grew above the first: rows inserted during the walk.
        self.growth = 0
        # Rows served again (already seen on an earlier page, or earlier on the same one).
        self.repeats = 0
        self.largest_served = 0
        self.max_pages = MAX_PAGES_WITHOUT_RECORD_COUNT
        self.clamp_suspected = False
        self.sequential = False
        self.index = 0
        self.finished = False

    async def next_page(self) -> Page[R] | None:
        """The next page, or None once the walk is over.

        Raises:
            PagingError: the server broke paging (see the module's documentation).
            MalformedResponseError: a row whose id is not an id.
            LeadSquaredError: the failure of a page's request.
        """
        if self.finished:
            return None
        if self.index == 0:
            if self.limit == 0:
                self.finished = True
                return None
            raw = await self.first_page()
            self.begin(raw)
        else:
            if self.index >= self.max_pages:
                raise self.overrun()
            raw = await self.fetched(self.index + 1)
        self.index += 1
        fresh = self.fresh_rows(raw)
        if self.clamp_suspected and self.index == 2:
            self.confirm_clamp(raw, fresh)
        rows = fresh if self.limit is None else fresh[: self.limit - self.yielded]
        self.yielded += len(rows)
        if self.is_last(raw, fresh):
            self.stop()
        elif self.index == 1:
            self.fetch_ahead(1)
        self.largest_served = max(self.largest_served, len(raw.rows))
        return Page(self.structure(rows), self.index, raw.record_count, self.page_size)

    def stop(self) -> None:
        """End the walk: no page is yielded after this, and fetches ahead are cancelled."""
        self.finished = True
        for task in self.ahead.values():
            task.cancel()
        self.ahead.clear()

    async def first_page(self) -> RawPage:
        """Page 1. Asked for more rows than the API is known to honour and refused with an
        API error, it is asked again at that size, which is then remembered if it works."""
        try:
            return await self.fetch(1)
        except APIError as error:
            if self.page_size <= self.endpoint.max_page_size:
                raise
            reason = error.message
        refused, self.page_size = self.page_size, self.endpoint.max_page_size
        raw = await self.fetch(1)
        logger.warning(
            "%s refused pages of %d rows (%s); asking for %d from now on",
            self.endpoint.path,
            refused,
            reason,
            self.page_size,
        )
        self.transport.learn_page_size(self.endpoint, self.page_size)
        return raw

    def begin(self, first: RawPage) -> None:
        """Read page 1: RecordCount, a page size the server may clamp, and the page cap."""
        self.record_count = self.first_count = first.record_count
        served, total = len(first.rows), first.record_count
        if 0 < served < self.page_size and total is not None and served < total:
            # A clamp, or one odd answer: going on at the size served is right for both
            # (the next page starts where this one ended), but only a second full page at
            # that size, with more to come, makes it worth remembering for other walks.
            logger.info(
                "%s answered %d rows for a page of %d while %d match: it clamps pages to %d rows",
                self.endpoint.path,
                served,
                self.page_size,
                total,
                served,
            )
            self.page_size = served
            self.clamp_suspected = True
        self.max_pages = _page_cap(first.record_count, self.page_size)

    def confirm_clamp(self, second: RawPage, fresh: list[dict[str, Any]]) -> None:
        """Remember the clamp seen on page 1 when page 2, asked at that size, is full of
        new rows and RecordCount says more follow: page 1 was no last, short page."""
        total = self.record_count
        full = len(second.rows) == len(fresh) == self.page_size
        if full and total is not None and total > 2 * self.page_size:
            self.transport.learn_page_size(self.endpoint, self.page_size)

    def fresh_rows(self, raw: RawPage) -> list[dict[str, Any]]:
        """The page's rows not seen before, in order; the others are counted as repeats."""
        path, id_key, fresh = self.endpoint.path, self.endpoint.id_key, []
        for row in raw.rows:
            key = _row_key(row, id_key, path)
            if key not in self.seen:
                self.seen.add(key)
                fresh.append(row)
        self.repeats += len(raw.rows) - len(fresh)
        return fresh

    def is_last(self, raw: RawPage, fresh: list[dict[str, Any]]) -> bool:
        """Whether the walk ends with this page.

        Raises:
            PagingError: a full page of rows already seen while more were expected, more
                repeats than rows inserted since page 1 can explain.
        """
        if not raw.rows or len(raw.rows) < self.page_size:
            return True
        if self.limit is not None and self.yielded >= self.limit:
            return True
        total = self.record_count
        if total is not None and (self.index * self.page_size >= total or len(self.seen) >= total):
            return True
        if fresh:
            return False
        if len(raw.rows) < self.largest_served:
            # After pages of more rows than asked, the last page may hold only rows they
            # already brought.
            return True
        if self.repeats <= self.growth:
            # Rows inserted ahead of the walk pushed rows already read onto this page.
            return False
        raise PagingError(
            f"page {self.index} holds only rows already seen while more were expected "
            f"(RecordCount {total}): the server seems to ignore PageIndex",
            endpoint=self.endpoint.path,
        )

    def overrun(self) -> PagingError:
        self.stop()
        if self.first_count is None:
            why = f"{self.max_pages} pages is the most a walk asks for without a RecordCount"
        else:
            why = (
                f"{self.max_pages} pages is the most a walk asks for when page 1's RecordCount "
                f"is {self.first_count} at {self.page_size} rows a page; RecordCount is now "
                f"{self.record_count}"
            )
        return PagingError(
            f"the server still answered full pages of new rows after {self.index} pages: {why}",
            endpoint=self.endpoint.path,
        )

    def last_index(self) -> int:
        """The last page worth fetching ahead, as far as RecordCount and ``limit`` tell."""
        target = self.record_count
        if target is None:
            return self.index
        if self.limit is not None:
            # Rows dropped as repeats don't count, so this may stop short by a
            # page; the walk then goes on one page at a time.
            target = min(target, self.limit)
        return min(-(-target // self.page_size), self.max_pages)

    async def fetched(self, index: int) -> RawPage:
        task = self.ahead.pop(index, None)
        raw = await task if task is not None else await self.fetch(index)
        if raw.record_count is not None and raw.record_count != self.record_count:
            logger.info(
                "%s: RecordCount went from %s to %s while paging %r; the rest of the walk "
                "fetches one page at a time",
                self.endpoint.path,
                self.record_count,
                raw.record_count,
                self.query.id_value,
            )
            self.count_changed(raw.record_count)
            await self.cancel_ahead()
            if task is not None:
                # This page may have been answered before the previous one.
                raw = await self.fetch(index)
                if raw.record_count is not None:
                    self.count_changed(raw.record_count)
        self.fetch_ahead(index)
        return raw

    def count_changed(self, record_count: int) -> None:
        self.record_count = record_count
        self.sequential = True
        if self.first_count is None:
            self.first_count = record_count
        self.growth = max(self.growth, record_count - self.first_count)

    def fetch_ahead(self, index: int) -> None:
        if self.sequential:
            return
        last = self.last_index()
        for ahead in range(index + 1, min(last, index + self.look_ahead) + 1):
            if ahead not in self.ahead:
                self.ahead[ahead] = self.transport.spawn(self.fetch(ahead))

    async def fetch(self, index: int) -> RawPage:
        return await self.transport.fetch_page(self.query, index, self.page_size)

    async def cancel_ahead(self) -> None:
        tasks = list(self.ahead.values())
        self.ahead.clear()
        await cancel_and_wait(tasks)
