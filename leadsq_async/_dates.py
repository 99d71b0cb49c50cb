"""Reading the dates LeadSquared sends as timezone-aware UTC datetimes."""

from __future__ import annotations

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

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r" ?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
_DOTNET = re.compile(r"/Date\((-?\d{1,16})(?:[+-]\d{4})?\)/", re.ASCII)


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
    if (
        (size == 19 or ((size == 23 or size == 26) and value[19] == "."))
        and value[4] == value[7] == "-"
        and value[13] == ":"
        and value[10] in " T"
    ):
        try:
            return _fromisoformat(value + "+00:00")
        except ValueError:
            pass
    return _parse_any_format(value.strip())


def _parse_any_format(text: str) -> datetime | None:
    if text.startswith("/Date("):
        return _parse_dotnet(text)
    if "/" in text[:3]:
        return _parse_us(text)
    match = _ISO.fullmatch(text)
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


# A field of a US date as the API writes it ("7", "07", "31"), as ISO 8601's two digits.
_TWO_DIGITS = {str(n): f"{n:02}" for n in range(60)} | {f"{n:02}": f"{n:02}" for n in range(10)}
# Its hour as ISO's 24-hour two digits, by meridiem: "12 AM" is midnight, "12 PM" noon.
_ISO_HOUR: dict[str | None, dict[str, str]] = {
    None: {text: iso for text, iso in _TWO_DIGITS.items() if int(text) < 24},
    "AM": {text: f"{int(text) % 12:02}" for text in _TWO_DIGITS if 1 <= int(text) <= 12},
    "PM": {text: f"{int(text) % 12 + 12:02}" for text in _TWO_DIGITS if 1 <= int(text) <= 12},
}


def _parse_us(text: str) -> datetime | None:
    # Split rather than matched with a regular expression: it is the slowest format
    # LeadSquared sends, and this takes half the time.
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
    iso_hour = _ISO_HOUR.get(meridiem)
    if iso_hour is None:  # neither AM nor PM
        return None
    if len(year) == 4 and year.isdigit() and year.isascii():
        # Fields of one or two digits, as the API writes them, are rewritten as the ISO
        # text the C parser reads: quicker than the six int() and datetime() below.
        try:
            return _fromisoformat(
                f"{year}-{_TWO_DIGITS[month]}-{_TWO_DIGITS[day]} "
                f"{iso_hour[hour]}:{_TWO_DIGITS[minute]}:{_TWO_DIGITS[second]}+00:00"
            )
        except KeyError:  # a field written with more digits, or out of range: read below
            pass
        except ValueError:  # no such day (June 31)
            return None
    fields = (month, day, year, hour, minute, second)
    digits = "".join(fields)
    if "" in fields or not (digits.isdigit() and digits.isascii()):
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
    match = _DOTNET.fullmatch(text)
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
