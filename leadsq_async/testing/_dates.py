"""The four date formats LeadSquared was seen to send, written and read back as UTC seconds;
kept apart from the client's ``leadsq_async._dates`` on purpose, so that the emulator orders
rows by their real time on its own and a mistake in the client's parser shows up against it
instead of being mirrored by it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
from typing import Literal

DateStyle = Literal["plain", "millis", "us", "wcf"]
DATE_STYLES: tuple[DateStyle, ...] = ("plain", "millis", "us", "wcf")

_PLAIN = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?")
_US = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ([AaPp][Mm])")
_WCF = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")


def format_date(seconds: int, style: DateStyle) -> str:
    """Write UTC epoch ``seconds`` in one of the formats LeadSquared sends.

    plain ``2026-08-08 07:38:00``, millis ``2026-08-08 07:38:00.000``,
    us ``7/31/2026 5:33:50 AM``, wcf ``/Date(1785350199000+0000)/``.
    """
    if style == "wcf":
        return f"/Date({seconds * 1000}+0000)/"
    when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    if style == "us":
        hour = when.hour % 12 or 12
        noon = "AM" if when.hour < 12 else "PM"
        return f"{when.month}/{when.day}/{when.year} {hour}:{when:%M:%S} {noon}"
    plain = f"{when:%Y-%m-%d %H:%M:%S}"
    return plain + ".000" if style == "millis" else plain


@functools.lru_cache(maxsize=1 << 18)
def parse_date(text: str) -> float | None:
    """UTC epoch seconds of a date in any of the four formats, or None if it is not one."""
    try:
        if match := _PLAIN.fullmatch(text):
            year, month, day, hour, minute, second, fraction = match.groups()
            seconds = calendar.timegm(
                dt.datetime(
                    int(year), int(month), int(day), int(hour), int(minute), int(second)
                ).timetuple()
            )
            return seconds + (float("0." + fraction) if fraction else 0.0)
        if match := _US.fullmatch(text):
            month, day, year, hour, minute, second, noon = match.groups()
            if not 1 <= int(hour) <= 12:
                return None
            hour24 = int(hour) % 12 + (12 if noon.upper() == "PM" else 0)
            when = dt.datetime(int(year), int(month), int(day), hour24, int(minute), int(second))
            return float(calendar.timegm(when.timetuple()))
        if match := _WCF.fullmatch(text):
            return int(match.group(1)) / 1000
    except ValueError:  # a date-shaped string such as 2026-13-45 00:00:00
        return None
    return None
