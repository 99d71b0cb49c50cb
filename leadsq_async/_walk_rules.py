"""When a walk over the pages stops, and what page size it goes on at: rules, no I/O.

`WalkRules` reads each page a walk receives (first page, fresh rows, last
page, page cap, clamp confirmation, count changes) and says what to yield and
whether the walk ends; `PageSizes` is what one session remembers about the
page sizes each endpoint serves. `_paging` does the fetching around them; the
rules and the reason every walk ends are in docs/how-it-works/paging.md.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

from ._decode import RawPage
from ._errors import MalformedResponseError, PagingError

__all__ = [
    "MAX_PAGES_WITHOUT_RECORD_COUNT",
    "SPARE_PAGES",
    "PageSizes",
    "PageStep",
    "WalkRules",
    "page_cap",
    "row_key",
]

MAX_PAGES_WITHOUT_RECORD_COUNT = 10_000
"""The most pages a walk asks for when page 1 has no ``RecordCount``."""

SPARE_PAGES = 10
"""Pages a walk may ask for beyond twice what page 1's ``RecordCount`` needs."""


def page_cap(first_count: int | None, page_size: int) -> int:
    """The most pages a walk asks for, from page 1's ``RecordCount`` and the page size the
    walk goes on at: twice the pages that count needs (the rows may double while the walk
    reads them) and `SPARE_PAGES` more, or `MAX_PAGES_WITHOUT_RECORD_COUNT` without one."""
    if first_count is None:
        return MAX_PAGES_WITHOUT_RECORD_COUNT
    return 2 * -(-first_count // page_size) + SPARE_PAGES


def row_key(row: dict[str, Any], id_key: str, endpoint: str) -> tuple[str, object]:
    """What tells a row apart from the others: its id, or for a row without one (or an
    endpoint without ids) a digest of its whole content, so a walk keeps a few bytes per
    row it has seen, never a copy of the row.

    Raises:
        MalformedResponseError: an id that is neither a string nor a number, or a row
            without one nested too deeply to read.
    """
    row_id = row.get(id_key) if id_key else None
    if row_id is None:
        try:
            text = json.dumps(row, sort_keys=True, default=str)
        except (ValueError, RecursionError):
            raise MalformedResponseError(
                "a row without an id is too deeply nested to tell apart",
                endpoint=endpoint,
                status=200,
            ) from None
        return ("row", hashlib.blake2b(text.encode(), digest_size=16).digest())
    if isinstance(row_id, (str, int, float)) and not isinstance(row_id, bool):
        return ("id", row_id)
    kind = (
        "boolean" if isinstance(row_id, bool) else "array" if isinstance(row_id, list) else "object"
    )
    raise MalformedResponseError(
        f"a row's {id_key} is a JSON {kind}, not an id", endpoint=endpoint, status=200
    )


class PageSizes:
    """The page size each endpoint of one session is known to serve, by endpoint path.

    A clamp confirmed by a walk, or a size the server refused, lowers it; it is
    never lowered below the most rows the endpoint was seen to serve on one page.
    """

    __slots__ = ("_largest_served", "_learned")

    def __init__(self) -> None:
        self._learned: dict[str, int] = {}
        self._largest_served: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"PageSizes(learned={self._learned!r}, largest_served={self._largest_served!r})"

    def size_for(self, endpoint: str, asked: int) -> int:
        """The page size to ask ``endpoint`` for: ``asked``, but never more than learned."""
        return min(asked, self._learned.get(endpoint, asked))

    def served(self, endpoint: str, rows: int) -> None:
        """Note that ``endpoint`` served a page of ``rows`` rows."""
        if rows > self._largest_served.get(endpoint, 0):
            self._largest_served[endpoint] = rows

    def learn(self, endpoint: str, page_size: int) -> int:
        """Remember that ``endpoint`` serves at most ``page_size`` rows a page (never fewer
        than it was seen to serve on one page); the size remembered."""
        size = max(page_size, self._largest_served.get(endpoint, 0))
        self._learned[endpoint] = self.size_for(endpoint, size)
        return self._learned[endpoint]


class PageStep(NamedTuple):
    """What a walk does with one page it received.

    Attributes:
        rows: the rows to yield: new ones, in order, cut at ``limit``.
        last: whether the walk ends with this page.
        clamp_confirmed: whether the page size the walk goes on at is now worth
            remembering for the endpoint's later walks.
    """

    rows: list[dict[str, Any]]
    last: bool
    clamp_confirmed: bool = False


class WalkRules:
    """The state of one walk and its rules: fed each page received, in order."""

    def __init__(self, endpoint: str, id_key: str, page_size: int, limit: int | None) -> None:
        self.endpoint = endpoint
        self.id_key = id_key
        # Never ask for more rows than the limit lets us use.
        self.page_size = page_size if limit is None else min(page_size, max(limit, 1))
        self.limit = limit
        self.index = 0
        self.yielded = 0
        self.seen: set[tuple[str, object]] = set()
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
        # Set once RecordCount changes: pages fetched ahead may then leave a gap.
        self.sequential = False

    @property
    def over_cap(self) -> bool:
        """Whether the next page would be past the page cap."""
        return self.index >= self.max_pages

    def begin(self, first: RawPage) -> bool:
        """Read page 1: RecordCount, a page size the server may clamp, and the page cap.

        Returns whether the server seems to clamp: it served fewer rows than asked while
        more match. The walk then goes on at the size served, which is right for a clamp
        and for one odd short answer alike (the next page starts where this one ended).
        """
        self.record_count = self.first_count = first.record_count
        served, total = len(first.rows), first.record_count
        if 0 < served < self.page_size and total is not None and served < total:
            self.page_size = served
            self.clamp_suspected = True
        self.max_pages = page_cap(first.record_count, self.page_size)
        return self.clamp_suspected

    def count_changed(self, record_count: int | None) -> bool:
        """Note a page's RecordCount; whether it changed (a page without one changes nothing)."""
        if record_count is None or record_count == self.record_count:
            return False
        self.record_count = record_count
        self.sequential = True
        if self.first_count is None:
            self.first_count = record_count
        self.growth = max(self.growth, record_count - self.first_count)
        return True

    def step(self, raw: RawPage) -> PageStep:
        """Take the next page: its new rows, and whether the walk ends with it.

        Raises:
            PagingError: a full page of rows already seen while more were expected, more
                repeats than rows inserted since page 1 can explain.
            MalformedResponseError: a row whose id is not an id.
        """
        self.index += 1
        fresh = self.fresh_rows(raw)
        confirmed = self.clamp_suspected and self.index == 2 and self.confirms_clamp(raw, fresh)
        rows = fresh if self.limit is None else fresh[: self.limit - self.yielded]
        self.yielded += len(rows)
        last = self.is_last(raw, fresh)
        self.largest_served = max(self.largest_served, len(raw.rows))
        return PageStep(rows, last, confirmed)

    def fresh_rows(self, raw: RawPage) -> list[dict[str, Any]]:
        """The page's rows not seen before, in order; the others are counted as repeats."""
        fresh = []
        for row in raw.rows:
            key = row_key(row, self.id_key, self.endpoint)
            if key not in self.seen:
                self.seen.add(key)
                fresh.append(row)
        self.repeats += len(raw.rows) - len(fresh)
        return fresh

    def confirms_clamp(self, second: RawPage, fresh: list[dict[str, Any]]) -> bool:
        """Whether page 2, asked at the size page 1 served, confirms a clamp: it is full of
        new rows and RecordCount says more follow, so page 1 was no last, short page."""
        total = self.record_count
        full = len(second.rows) == len(fresh) == self.page_size
        return full and total is not None and total > 2 * self.page_size

    def is_last(self, raw: RawPage, fresh: list[dict[str, Any]]) -> bool:
        """Whether the walk ends with this page (see `step`)."""
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
            endpoint=self.endpoint,
        )

    def overrun(self) -> PagingError:
        """The error of a walk that reached the page cap still receiving new rows."""
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
            endpoint=self.endpoint,
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
