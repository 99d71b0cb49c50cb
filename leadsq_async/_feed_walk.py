"""The walk of an account-wide feed: a `Paginator` whose pages come from a sequence of
queries (time windows, or fixed bodies), each walked by an ordinary paginator.

So the limiter, retries, stop rules, clamp detection, scrubbing and events all hold for
every query. Windows are walked in order and grow while they hold under a quarter of a
page, never again to the size of one that failed; once their size is settled, the first
pages of the next few are fetched ahead (as many as pages are), and dropped if a window
must be walked again. A window the server cannot serve (a `ServerError` once its retries
are spent, a `PagingError`, or fewer rows reached than its ``RecordCount`` counts) is
walked again as two halves, down to `MIN_WINDOW`; one that still fails raises
`WindowError`. A window whose ``RecordCount`` fell while it was walked is walked once
more. A row already yielded by the same window or the one before it is dropped. With a
cursor (``modified_since``), the walk stops at the first older row only while the rows
came newest first, and reads to the end otherwise. See docs/feeds.md.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import attrs

from ._aio import cancel_and_wait
from ._endpoints import Endpoint
from ._errors import PagingError, ServerError, WindowError
from ._leads import flatten_lead
from ._paging import Page, PageIterator, Paginator
from ._request import PageQuery
from ._structure import structure_rows, unstructure
from ._transport import Transport
from ._windows import Window, pages_ahead

__all__ = ["FeedPaginator", "Plan"]

logger = logging.getLogger("leadsq_async")

R = TypeVar("R")


@attrs.frozen
class Plan:
    """What one feed walk asks for: its endpoint, and the body of each of its queries."""

    endpoint: Endpoint[Any]
    #: The JSON body (without Paging) of a window's query, or of each fixed query.
    body: Callable[[Window | None], dict[str, Any]]
    id_attribute: str
    span: Window | None = None
    first_window: timedelta = timedelta(days=1)
    max_window: timedelta = timedelta(days=1)
    bodies: tuple[str, ...] = ()
    modified_since: datetime | None = None
    flatten: bool = False
    look_ahead: int | None = None


@attrs.frozen
class _Segment:
    """One query of a walk: a window (None for a fixed body) and how it came to be walked."""

    window: Window | None
    body: str | None = None
    root: bool = True
    again: bool = False
    served: int = 0


@attrs.define
class _Ahead:
    """A window fetched ahead: its segment, its walk, and the task fetching its first page."""

    segment: _Segment
    pages: PageIterator[dict[str, Any]]
    first: asyncio.Task[Page[dict[str, Any]] | None]


async def _first_page(pages: PageIterator[dict[str, Any]]) -> Page[dict[str, Any]] | None:
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None


class FeedPaginator(Paginator[R]):
    """The records of an account-wide feed, query after query: a `Paginator` with every
    guarantee of one, whose walk goes window by window (see the feeds guide)."""

    def __init__(
        self,
        transport: Transport,
        plan: Plan,
        *,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> None:
        query = PageQuery.raw(plan.endpoint)
        record_class = plan.endpoint.record_class

        def structure(rows: list[dict[str, Any]]) -> list[R]:
            return structure_rows(rows, record_class)

        super().__init__(transport, query, structure, page_size=page_size, limit=limit)
        self._plan = plan

    def __repr__(self) -> str:
        span = "" if self._plan.span is None else f" {self._plan.span}"
        return (
            f"<FeedPaginator {self._plan.endpoint.name}{span} "
            f"page_size={self._page_size} limit={self._limit}>"
        )

    def _walk(self) -> PageIterator[R]:
        return PageIterator(_FeedWalk(self._transport, self._plan, self._page_size, self._limit))


class _FeedWalk(Generic[R]):
    """The state of one walk over a feed's queries (see the module's documentation)."""

    def __init__(
        self, transport: Transport, plan: Plan, page_size: int | None, limit: int | None
    ) -> None:
        self.transport, self.plan, self.limit = transport, plan, limit
        self.page_size = page_size
        self.endpoint: Endpoint[R] = plan.endpoint
        self.pending: collections.deque[_Segment] = collections.deque(
            _Segment(None, body) for body in plan.bodies
        )
        self.cursor = None if plan.span is None else plan.span.since
        self.size = plan.first_window
        # The most a window grows to: lowered below any window that could not be served.
        self.ceiling = plan.max_window
        self.segment = _Segment(None)
        self.inner: PageIterator[dict[str, Any]] | None = None
        self.inner_limit: int | None = None
        self.inner_rows = 0
        self.first_count: int | None = None
        self.last_count: int | None = None
        self.asked_size = 0
        self.current: set[object] = set()
        self.previous: set[object] = set()
        self.yielded = 0
        self.index = 0
        self.finished = False
        self.cut = False
        # The search's rows so far came newest first (until one shows otherwise).
        self.newest_first = True
        self.latest: datetime | None = None
        # Rows a second in the latest window whose RecordCount came: for `pages_left`.
        self.density: float | None = None
        # Windows fetched ahead, in order, once their sizes are settled; the first page of
        # the window being walked when it was one of them; the first pages dropped.
        self.ahead: collections.deque[_Ahead] = collections.deque()
        self.first: asyncio.Task[Page[dict[str, Any]] | None] | None = None
        self.dropped: list[asyncio.Task[Page[dict[str, Any]] | None]] = []

    async def next_page(self) -> Page[R] | None:
        """The next page of new records, or None once the walk is over.

        Raises:
            WindowError: a window the server cannot serve, even at one minute.
            LeadSquaredError: as any walk.
        """
        while not self.finished:
            if self.limit is not None and self.yielded >= self.limit:
                await self.close_inner()
                break
            if self.inner is None and not self.start_next():
                self.finished = True
                break
            assert self.inner is not None
            try:
                first, self.first = self.first, None
                if first is None:
                    page = await self.inner.__anext__()
                elif (fetched := await first) is not None:
                    page = fetched
                else:
                    raise StopAsyncIteration
            except StopAsyncIteration:
                self.inner = None
                self.end_segment()
                continue
            except (ServerError, PagingError) as error:
                await self.close_inner()
                self.split(error)
                continue
            items = self.take(page)
            if self.cut:
                await self.close_inner()
                self.finished = True
            else:
                self.fetch_ahead()
            if items:
                self.index += 1
                return Page(items, self.index, page.record_count, page.page_size)
        return None

    def pages_left(self) -> int | None:
        """The pages still to fetch (`PageIterator.pages_left`): the query being walked,
        those queued (halves, windows walked again, fixed bodies), and the windows up to
        the span's end, sized as the walk sizes them, were the rows as dense as in the
        latest window counted. None until a window or query told its ``RecordCount``."""
        if self.finished:
            return 0
        left = len(self.pending)
        for pages, window in [
            (self.inner, None),
            *((ahead.pages, ahead.segment.window) for ahead in self.ahead),
        ]:
            current = None if pages is None else pages.pages_left
            if pages is not None and current is None:
                if self.density is None:
                    return None
                held = 0.0 if window is None else self.density * window.duration.total_seconds()
                current = max(math.ceil(held / max(self.asked_size, 1)), 1)
            left += current or 0
        span = self.plan.span
        if span is None or self.cursor is None or self.cursor >= span.until:
            return left
        if self.density is None:
            return None
        size, per_page, window = self.size, max(self.asked_size, 1), self.segment.window
        held = 0.0 if window is None else self.density * window.duration.total_seconds()
        sparse = window is not None and held * 4 < per_page
        if sparse and self.inner is not None and self.segment.root:
            size = min(size * 2, self.ceiling)  # as `end_segment` will, as it ends
        rows = self.density * (span.until - self.cursor).total_seconds()
        return left + pages_ahead(span.until - self.cursor, size, self.ceiling, rows, per_page)

    def stop(self) -> None:
        """End the walk; the pages and windows fetched ahead are cancelled."""
        self.finished = True
        # Dropped, the query's page iterator stops its walk and cancels what it fetched ahead.
        self.inner = None
        if self.first is not None:
            self.first.cancel()
        self.drop_ahead()

    async def cancel_ahead(self) -> None:
        """Cancel the pages and windows fetched ahead, and wait for them to end."""
        await self.close_inner()
        self.drop_ahead()
        dropped, self.dropped = self.dropped, []
        await cancel_and_wait(dropped)

    async def close_inner(self) -> None:
        inner, self.inner = self.inner, None
        first, self.first = self.first, None
        if first is not None:
            await cancel_and_wait([first])
        if inner is not None:
            await inner.aclose()

    def fetch_ahead(self) -> None:
        """Fetch the first pages of the next windows (as many as pages are fetched ahead),
        once their sizes are settled: the window being walked is a first walk of its own,
        nothing is queued before them, and it is at the most a window grows to or holds a
        quarter page or more (so the next window does not grow)."""
        span, cursor = self.plan.span, self.cursor
        depth = self.transport.look_ahead if self.plan.look_ahead is None else self.plan.look_ahead
        if span is None or cursor is None or self.limit is not None or self.pending:
            return
        if not self.segment.root or self.first_count is None:
            return
        if self.size < self.ceiling and self.first_count * 4 < self.asked_size:
            return
        while len(self.ahead) < depth and cursor < span.until:
            segment = _Segment(Window(cursor, min(cursor + self.size, span.until)))
            cursor = self.cursor = segment.window.until  # type: ignore[union-attr]
            pages = self.paginator(segment, None).pages()
            first = self.transport.spawn(_first_page(pages))
            # A failure is seen, whether or not the window is dropped before it is read.
            first.add_done_callback(lambda task: task.cancelled() or task.exception())
            self.ahead.append(_Ahead(segment, pages, first))

    def drop_ahead(self) -> None:
        """Cancel the windows fetched ahead; the walk asks for their span again after what
        is queued (halves, a window walked again), at the sizes then in use."""
        if not self.ahead:
            return
        window = self.ahead[0].segment.window
        assert window is not None
        self.cursor = window.since
        for ahead in self.ahead:
            ahead.first.cancel()
            self.dropped.append(ahead.first)
        # Dropped, each window's page iterator stops its walk and what it fetched ahead.
        self.ahead.clear()

    def start_next(self) -> bool:
        """Start walking the next query: a half or a window again, else the next window."""
        span = self.plan.span
        ahead: _Ahead | None = None
        if self.pending:
            self.drop_ahead()
            segment = self.pending.popleft()
        elif self.ahead:
            ahead = self.ahead.popleft()
            segment = ahead.segment
        elif span is not None and self.cursor is not None and self.cursor < span.until:
            window = Window(self.cursor, min(self.cursor + self.size, span.until))
            self.cursor = window.until
            segment = _Segment(window)
        else:
            return False
        if segment.root and segment.window is not None:
            self.previous, self.current = self.current, set()
        self.segment = segment
        remaining = None if self.limit is None else self.limit - self.yielded
        self.inner_limit = None if remaining is None else segment.served + remaining
        self.inner_rows, self.first_count, self.last_count = 0, None, None
        if ahead is not None:
            self.inner, self.first = ahead.pages, ahead.first
        else:
            self.inner = self.paginator(segment, self.inner_limit).pages()
        return True

    def paginator(self, segment: _Segment, limit: int | None) -> Paginator[dict[str, Any]]:
        """The walk of one query: a window's, or a fixed body's."""
        body = segment.body or json.dumps(self.plan.body(segment.window))
        query = PageQuery.raw(self.endpoint, body=json.loads(body))
        return Paginator(
            self.transport,
            query,
            list,
            page_size=self.page_size,
            limit=limit,
            look_ahead=self.plan.look_ahead,
        )

    def end_segment(self) -> None:
        """The query's walk ended: check that it reached every row its RecordCount counts."""
        segment, count, rows = self.segment, self.last_count, self.inner_rows
        limited = self.inner_limit is not None and rows >= self.inner_limit
        if segment.window is None or self.cut:
            return
        if count is not None and rows < count and not limited:
            reason = f"paging reached {rows} of the {count} rows RecordCount counts"
            self.split(PagingError(reason, endpoint=self.endpoint.path))
        elif self.first_count is not None and count is not None and count < self.first_count:
            if not segment.again:
                # Rows modified out of the window while it was walked moved the rows after
                # them to earlier pages: some may have been skipped. Walk it once more; the
                # rows already yielded are dropped.
                self.pending.appendleft(attrs.evolve(segment, root=False, again=True))
        elif limited and self.limit is not None and self.yielded < self.limit:
            # Rows dropped as repeats: the limit needs more of this window.
            self.pending.appendleft(attrs.evolve(segment, root=False, served=rows))
        elif rows * 4 < self.asked_size and self.size < self.ceiling:
            self.size = min(self.size * 2, self.ceiling)

    def split(self, error: Exception) -> None:
        """Walk the failed window again as two halves, or raise if it is one minute long."""
        window = self.segment.window
        if window is None:
            raise error
        if not window.splittable:
            raise WindowError(
                f"the server could not serve the window {window}, even one minute long: {error}",
                endpoint=self.endpoint.path,
                since=window.since,
                until=window.until,
            ) from error
        first, second = window.halves()
        logger.warning(
            "%s could not serve %s (%s): walking it as two halves",
            self.endpoint.path,
            window,
            error,
        )
        self.pending.extendleft(
            [_Segment(second, root=False), _Segment(first, root=False)],
        )
        self.ceiling = min(self.ceiling, first.duration)
        self.size = min(self.size, self.ceiling)

    def take(self, page: Page[dict[str, Any]]) -> list[R]:
        """The page's records not yielded before, up to the limit and the cursor."""
        self.inner_rows += len(page.items)
        self.asked_size = page.page_size
        if page.record_count is not None:
            window = self.segment.window
            if self.first_count is None and window is not None:
                self.density = page.record_count / window.duration.total_seconds()
            elif self.first_count is None and self.density is None:
                self.density = 0.0  # a fixed query: no windows to size
            self.first_count = page.record_count if self.first_count is None else self.first_count
            self.last_count = page.record_count
        path = self.endpoint.path
        rows = (
            [flatten_lead(row, endpoint=path) for row in page.items]
            if self.plan.flatten
            else page.items
        )
        records: list[Any] = structure_rows(rows, self.endpoint.record_class)
        if self.plan.modified_since is not None:
            records = self.until_cursor(records, self.plan.modified_since)
        fresh: list[R] = []
        for record in records:
            key = getattr(record, self.plan.id_attribute) or json.dumps(unstructure(record))
            if key in self.current or key in self.previous:
                continue
            self.current.add(key)
            fresh.append(record)
            if self.limit is not None and self.yielded + len(fresh) >= self.limit:
                self.cut = True
                break
        self.yielded += len(fresh)
        return fresh

    def until_cursor(self, records: list[Any], since: datetime) -> list[Any]:
        """The records modified at or after ``since``; sets ``cut`` at the first one before
        it while the rows came newest first, the rest of its page included."""
        kept: list[Any] = []
        for position, record in enumerate(records):
            modified = record.modified_on
            if modified is None or (self.latest is not None and modified > self.latest):
                self.not_newest_first()
            self.latest = modified if modified is not None else self.latest
            if modified is not None and modified < since and self.newest_first:
                times: list[datetime | None] = [
                    later.modified_on for later in records[position + 1 :]
                ]
                pairs = itertools.pairwise([modified, *times])
                if all(b is not None and a is not None and b <= a for a, b in pairs):
                    self.cut = True
                    return kept
                self.not_newest_first()
            if modified is None or modified >= since:
                kept.append(record)
        return kept

    def not_newest_first(self) -> None:
        if self.newest_first:
            self.newest_first = False
            logger.warning(
                "%s does not serve its rows newest first (Sorting by ModifiedOn is ignored, "
                "or a row has no ModifiedOn): walking every row instead of stopping at "
                "modified_since",
                self.endpoint.path,
            )
