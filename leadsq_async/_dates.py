"""Reading the dates LeadSquared sends as timezone-aware UTC datetimes."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone, tzinfo

__all__ = ["parse_date"]

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_MILLISECOND = timedelta(milliseconds=1)

# Only ever called with "YYYY-MM-DD HH:MM:SS[.fff|.ffffff]+00:00", a form that Python
# 3.10's strict fromisoformat accepts as well as 3.11's wider one, so both versions read
# the same strings the same way. Module-level so tests can check what it is fed.
_fromisoformat = datetime.fromisoformat
# What "YYYY-MM-DD HH:MM:SS" holds at offsets 4, 7, 10 and 13 (one slice tests all four).
_ISO_SEPARATORS = ("-- :", "--T:")


# The patterns of the other shapes are compiled when a date of that shape first comes:
# the documented shape, most of what the API sends, needs none of them.


@functools.cache
def _iso() -> re.Pattern[str]:
    return re.compile(
        r"(\d{4})-(\d{2})-(\d{2})"
        r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
        r" ?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
        re.ASCII,
    )


@functools.cache
def _dotnet() -> re.Pattern[str]:
    return re.compile(r"/Date\((-?\d{1,16})(?:[+-]\d{4})?\)/", re.ASCII)


def parse_date(value: object) -> datetime | None:
    """Read one date field as an aware UTC datetime, or None if it holds no date.

    Every format the API is known to send, each read as the same instant:

    - ``2026-07-31 05:33:50``: the documented form: UTC without a zone
    - ``2026-07-31 05:33:50.000``: with a fraction (any number of digits)
    - ``7/31/2026 5:33:50 AM``: month first; also ``7/31/2026 17:33:50`` (24 h) and ``7/31/2026``
      (midnight)
    - ``/Date(1785476030000+0000)/``: .NET JSON: milliseconds since the Unix epoch, UTC (see below)
    - ``2026-07-31T05:33:50Z`` or ``2026-07-31T11:03:50+05:30``: ISO 8601: ``T`` or space, optional
      fraction, ``Z`` or an offset (``+05:30``, ``+0530``, ``+05``); no zone means UTC
    - ``2026-07-31``: a bare date: midnight UTC

    In a .NET JSON date the number is always milliseconds since the epoch in
    UTC; the ``+HHMM`` after it only records the zone of the clock that wrote
    the value (``DataContractJsonSerializer`` adds it for local times), so it
    is checked for shape and ignored, never applied a second time.

    Fractions beyond microseconds are truncated; surrounding spaces are
    ignored. Never raises: ``None``, ``""``, a non-string, garbage, an
    impossible date (month 13) or one beyond what ``datetime`` holds gives
    ``None``.
    """
    if type(value) is not str:
        return None
    size = len(value)
    # The documented shape goes straight to the C parser, ten times faster than the
    # regular expressions below, which read every shape (this one too).
    seconds_or_fraction = size == 19 or ((size == 23 or size == 26) and value[19] == ".")
    if seconds_or_fraction and value[4:14:3] in _ISO_SEPARATORS:
        try:
            return _fromisoformat(value + "+00:00")
        except ValueError:
            pass
    text = value.strip()
    if text.startswith("/Date("):
        return _parse_dotnet(text)
    if "/" in text[:3]:
        return _parse_us(text)
    return _parse_iso(text)


def _parse_iso(text: str) -> datetime | None:
    match = _iso().fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _, sign, off_hours, off_minutes = (
        match.groups()
    )
    zone: tzinfo | None = _UTC
    if sign is not None:
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes or 0))
        zone = _fixed_zone(-offset if sign == "-" else offset)
    return _build(year, month, day, hour, minute, second, fraction, zone)


# A US date as the API writes it, "7/31/2026 5:33:50 AM", with a 24-hour clock or none;
# _parse_us_words reads the rest (other spacing, fields of more digits).
@functools.cache
def _us() -> re.Pattern[str]:
    return re.compile(
        r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})"
        r"(?: ([0-9]{1,2}):([0-9]{2}:[0-9]{2})(?: ([AaPp][Mm]))?)?"
    )


# A month, day or hour of one or two digits as ISO 8601's two.
_TWO_DIGITS = {str(n): f"{n:02}" for n in range(100)} | {f"{n:02}": f"{n:02}" for n in range(10)}


def _iso_hours() -> dict[str | None, dict[str, str]]:
    # The hour as ISO's 24-hour two digits, by meridiem as the text spells it (None: a
    # 24-hour clock). A table per spelling spares an upper() call on every date.
    tables: dict[str | None, dict[str, str]] = {
        None: {text: iso for text, iso in _TWO_DIGITS.items() if int(text) < 24}
    }
    for meridiem, shift in (("AM", 0), ("PM", 12)):  # "12 AM" is midnight, "12 PM" noon
        hours = {
            text: f"{int(text) % 12 + shift:02}" for text in _TWO_DIGITS if 1 <= int(text) <= 12
        }
        for spelling in (meridiem, meridiem.lower(), meridiem.title(), meridiem.title().swapcase()):
            tables[spelling] = hours
    return tables


_ISO_HOUR = _iso_hours()


def _parse_us(text: str) -> datetime | None:
    match = _us().fullmatch(text)
    if match is None:
        return _parse_us_words(text)
    month, day, year, hour, minutes_seconds, meridiem = match.groups()
    if hour is None:  # a date alone: midnight
        hour, minutes_seconds = "0", "00:00"
    iso_hour = _ISO_HOUR[meridiem].get(hour)
    if iso_hour is None:  # 0 or beyond 12 on a 12-hour clock, beyond 23 on a 24-hour one
        return None
    # Rewritten as the ISO text the C parser reads: half the time of the int() and
    # datetime() calls of _parse_us_words.
    try:
        return _fromisoformat(
            f"{year}-{_TWO_DIGITS[month]}-{_TWO_DIGITS[day]} {iso_hour}:{minutes_seconds}+00:00"
        )
    except ValueError:  # month 13, June 31, minute 60
        return None


def _parse_us_words(text: str) -> datetime | None:
    # Any spacing, a 24-hour clock or none, either case, fields of any number of digits.
    words = text.split()
    if not 1 <= len(words) <= 3:
        return None
    meridiem = words[2].upper() if len(words) == 3 else None
    clock = words[1] if len(words) > 1 else "0:0:0"
    try:
        month, day, year = words[0].split("/")
        hour, minute, second = clock.split(":")
    except ValueError:  # not three of each
        return None
    fields = (month, day, year, hour, minute, second)
    digits = "".join(fields)
    if "" in fields or not (digits.isdigit() and digits.isascii()):
        return None
    if meridiem not in (None, "AM", "PM"):
        return None
    hours = int(hour)
    if meridiem is not None:
        if not 1 <= hours <= 12:
            return None
        hours = hours % 12 + (12 if meridiem == "PM" else 0)
    try:
        return datetime(int(year), int(month), int(day), hours, int(minute), int(second), 0, _UTC)
    except ValueError:  # month 13, day 32, hour 25
        return None


def _parse_dotnet(text: str) -> datetime | None:
    match = _dotnet().fullmatch(text)
    if match is None:
        return None
    try:
        # Multiplying a timedelta is a quarter faster than building one from milliseconds.
        return _EPOCH + _MILLISECOND * int(match[1])
    except OverflowError:
        return None


def _fixed_zone(offset: timedelta) -> tzinfo | None:
    try:
        return timezone(offset)
    except ValueError:  # beyond +-24 h
        return None


def _build(
    year: str,
    month: str,
    day: str,
    hour: str | None,
    minute: str | None,
    second: str | None,
    fraction: str | None,
    zone: tzinfo | None,
) -> datetime | None:
    if zone is None:
        return None
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour) if hour else 0,
            int(minute) if minute else 0,
            int(second) if second else 0,
            int(fraction[:6].ljust(6, "0")) if fraction else 0,
            zone,
        )
    except ValueError:  # month 13, day 32, hour 25, year 0
        return None
    if zone is _UTC:
        return moment
    try:
        return moment.astimezone(_UTC)
    except OverflowError:  # an offset pushes it before year 1 or after year 9999
        return None
