"""Time windows: aware datetimes only, UTC text to the second, half-open, split in halves."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from leadsq_async._windows import MIN_WINDOW, Window, aware_utc, utc_text, windows

UTC = timezone.utc


def test_a_naive_datetime_is_refused() -> None:
    """A datetime without a zone raises ValueError naming it: its zone cannot be guessed."""
    with pytest.raises(ValueError, match="naive"):
        aware_utc("since", datetime(2026, 1, 1))


def test_a_date_or_text_is_refused() -> None:
    """Anything but a datetime raises TypeError."""
    with pytest.raises(TypeError):
        aware_utc("since", "2026-01-01 00:00:00")


def test_another_zone_is_read_in_utc_and_truncated_to_the_second() -> None:
    """10:00:30.9 at +05:30 is 04:30:30 UTC."""
    ist = timezone(timedelta(hours=5, minutes=30))
    moment = aware_utc("since", datetime(2026, 1, 1, 10, 0, 30, 900_000, tzinfo=ist))
    assert moment == datetime(2026, 1, 1, 4, 30, 30, tzinfo=UTC)
    assert utc_text(moment) == "2026-01-01 04:30:30"


def test_to_date_is_until_minus_one_second() -> None:
    """[00:00, 01:00) is sent as FromDate 00:00:00 and ToDate 00:59:59."""
    window = Window.checked(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert (window.from_date, window.to_date) == ("2026-01-01 00:00:00", "2026-01-01 00:59:59")


def test_until_must_be_after_since() -> None:
    """An empty or reversed window is refused."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="after"):
        Window.checked(moment, moment + timedelta(milliseconds=500))


def test_halves_meet_at_a_whole_second_and_cover_the_window() -> None:
    """A 61-second window splits at its 30th second; the halves share their edge."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    first, second = Window(since, since + timedelta(seconds=61)).halves()
    assert first == Window(since, since + timedelta(seconds=30))
    assert second == Window(since + timedelta(seconds=30), since + timedelta(seconds=61))


def test_a_one_minute_window_is_not_split() -> None:
    """A window of MIN_WINDOW cannot be split."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    window = Window(since, since + MIN_WINDOW)
    assert not window.splittable
    with pytest.raises(ValueError, match="too short"):
        window.halves()


def test_windows_cover_a_range_in_order_the_last_one_shorter() -> None:
    """Two and a half hours in windows of one hour: three windows, edge to edge."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    until = since + timedelta(hours=2, minutes=30)
    parts = list(windows(since, until, timedelta(hours=1)))
    assert [part.since for part in parts] == [since + timedelta(hours=n) for n in range(3)]
    assert parts[-1].until == until
    assert all(a.until == b.since for a, b in itertools.pairwise(parts))
