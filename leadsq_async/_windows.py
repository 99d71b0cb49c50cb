"""Time windows for the account-wide feeds: half-open, in UTC, to the second, split in halves.

The feeds filter rows by modification time between a ``FromDate`` and a
``ToDate`` that are both inclusive and read to the second, in UTC, as
``YYYY-MM-DD HH:MM:SS``. A `Window` is the half-open range [since, until) the
caller means, and says what to send for it: ``since`` as ``FromDate`` and
``until`` minus one second as ``ToDate``, so that two adjacent windows never
both hold a row modified in the second they share. Times are taken to the whole
second below, the API's resolution, at both ends alike. Pure values: nothing
here sends or waits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import attrs

__all__ = ["MIN_WINDOW", "Window", "aware_utc", "pages_ahead", "utc_text", "windows"]

MIN_WINDOW = timedelta(minutes=1)
"""A window this long or shorter is never split: if the server cannot serve it, the walk fails."""

_SECOND = timedelta(seconds=1)


def aware_utc(name: str, value: object) -> datetime:
    """``value``, an aware datetime, in UTC and truncated to the whole second.

    Raises:
        TypeError: not a datetime (a date alone is refused too).
        ValueError: a naive datetime: which zone it means cannot be guessed.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be an aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} is a naive datetime ({value.isoformat()}): give its zone, such as "
            "datetime(..., tzinfo=timezone.utc)"
        )
    return value.astimezone(timezone.utc).replace(microsecond=0)


def utc_text(moment: datetime) -> str:
    """``moment`` as the API reads dates: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@attrs.frozen
class Window:
    """The rows modified in [since, until): aware UTC datetimes on whole seconds."""

    since: datetime
    until: datetime

    @classmethod
    def checked(cls, since: object, until: object) -> Window:
        """The window between two aware datetimes, ``since`` before ``until``.

        Raises:
            TypeError, ValueError: as `aware_utc`, or ``until`` not after ``since``
                (to the second).
        """
        start, end = aware_utc("since", since), aware_utc("until", until)
        if end <= start:
            raise ValueError(f"until ({utc_text(end)}) must be after since ({utc_text(start)})")
        return cls(start, end)

    @property
    def duration(self) -> timedelta:
        """How long the window is."""
        return self.until - self.since

    @property
    def from_date(self) -> str:
        """What to send as ``FromDate``: ``since``, inclusive."""
        return utc_text(self.since)

    @property
    def to_date(self) -> str:
        """What to send as ``ToDate``, inclusive to the second: ``until`` minus one second."""
        return utc_text(self.until - _SECOND)

    @property
    def splittable(self) -> bool:
        """Whether the window is longer than `MIN_WINDOW`, and so may be split."""
        return self.duration > MIN_WINDOW

    def halves(self) -> tuple[Window, Window]:
        """The two halves, split at the whole second at or below the middle.

        Raises:
            ValueError: a window of `MIN_WINDOW` or less.
        """
        if not self.splittable:
            raise ValueError(f"{self} is too short to split")
        middle = self.since + timedelta(seconds=int(self.duration.total_seconds()) // 2)
        return Window(self.since, middle), Window(middle, self.until)

    def __str__(self) -> str:
        return f"[{utc_text(self.since)}, {utc_text(self.until)}) UTC"


def windows(since: datetime, until: datetime, size: timedelta) -> Iterator[Window]:
    """Consecutive windows of ``size`` covering [since, until) in order, the last one shorter.

    Raises:
        ValueError: a ``size`` shorter than one second.
    """
    if size < _SECOND:
        raise ValueError(f"a window must last a second at least, not {size}")
    start = since
    while start < until:
        end = min(start + size, until)
        yield Window(start, end)
        start = end


def pages_ahead(
    span: timedelta, size: timedelta, ceiling: timedelta, rows: float, page: int
) -> int:
    """The pages a feed walk takes over ``span`` holding ``rows`` evenly, its windows
    starting at ``size`` and doubling, up to ``ceiling``, while one holds under a quarter
    of a ``page``; a window takes one page at least."""
    density = rows / span.total_seconds() if span > timedelta(0) else 0.0
    pages = 0
    while span > timedelta(0):
        held = density * size.total_seconds()
        if size >= ceiling or held * 4 >= page:
            # The size no longer grows: the rest at this size.
            return pages + math.ceil(span / size) * max(math.ceil(held / page), 1)
        length = min(size, span)
        pages += max(math.ceil(density * length.total_seconds() / page), 1)
        span -= length
        size = min(size * 2, ceiling)
    return pages
