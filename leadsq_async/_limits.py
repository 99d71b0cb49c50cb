"""Rate limits as values: `RateLimit`, its parser, the sequence form, and the arithmetic
the limiters and the progress display share (the least time a number of requests can span,
whether one limit implies another, how long a learned limit lasts). Pure: no I/O, no event
loop, nothing from the rest of the package but the argument checks and the leaf `_errors`.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone

import attrs

from ._checks import check_int, check_seconds
from ._errors import QuotaExhaustedError, StatedLimit

__all__ = [
    "BUCKETS_PER_PERIOD",
    "LONGEST_LEARNED_PERIOD",
    "MOST_LEARNED_LIMITS",
    "NO_WAIT",
    "Grant",
    "RateLimit",
    "StatedLimit",
    "as_rate_limit",
    "as_rate_limits",
    "implies",
    "learned_in_words",
    "learned_lifetime",
    "least_time",
    "parse_rate_limits",
    "plausible",
    "quota_exhausted",
    "utc_now",
]

#: A slot is held at most ``period / BUCKETS_PER_PERIOD`` longer than the rule requires.
BUCKETS_PER_PERIOD = 1000
#: The longest period of a limit learned from the server: a longer one is not believed.
LONGEST_LEARNED_PERIOD = 31 * 86_400.0
#: The most limits learned from the server kept at once (see `SlidingWindowLimiter.learn`).
MOST_LEARNED_LIMITS = 8
#: A learned limit lasts at least this long (seconds) after the server last named it ...
LEARNED_FOR_AT_LEAST = 3600.0
#: ... and at least this many of its own periods.
LEARNED_FOR_PERIODS = 2


def _to_calls(value: int) -> int:
    return check_int("calls", value, minimum=1)


def _to_period(value: float) -> float:
    return check_seconds("period", value)


_UNIT_SECONDS = {
    **dict.fromkeys(("", "s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}


@functools.cache
def _rate_limit_text() -> re.Pattern[str]:
    # Compiled on first use: only a limit read from text (the CLI's, the dlt source's) needs it.
    return re.compile(
        r"\s*(?P<calls>[+-]?\d+)\s*/\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))?\s*(?P<unit>[a-z]*)\s*",
        re.IGNORECASE,
    )


_RATE_LIMIT_FORMS = "CALLS/PERIOD such as '10/5', '10/5s', '5/30m', '100/1h' or '10000/1d'"

_NAMED_PERIODS = ((86400, "day", "days"), (3600, "hour", "h"), (60, "minute", "min"))


def _describe_period(seconds: float) -> str:
    for size, one, several in _NAMED_PERIODS:
        if seconds >= size and (seconds / size).is_integer():
            count = int(seconds // size)
            return one if count == 1 else f"{count} {several}"
    return f"{int(seconds) if seconds.is_integer() else seconds} s"


@attrs.frozen
class RateLimit:
    """At most ``calls`` requests in any ``period`` seconds; the default is 25 per 5 s.

    Raises ``TypeError`` if ``calls`` is not an int or ``period`` not a real number (bools
    are refused), and ``ValueError`` if ``calls < 1`` or ``period`` is not finite and > 0.
    An int ``period`` is stored as a float.
    """

    calls: int = attrs.field(default=25, converter=_to_calls)
    period: float = attrs.field(default=5.0, converter=_to_period)

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read ``"CALLS/PERIOD"``, such as a CLI flag's value.

        The period is in seconds unless a unit follows it: ``s``, ``m`` (minutes), ``h`` or
        ``d`` (or ``sec``, ``min``, ``hour``, ``day`` and their plurals); a unit alone means
        one of it. So ``"10/5"`` and ``"10/5s"`` are 10 per 5 s, ``"5/30m"`` 5 per half an
        hour, ``"100/1h"`` or ``"100/h"`` 100 an hour, ``"10000/1d"`` 10,000 a day.

        Raises ``ValueError``, naming the text, if it is malformed, names an unknown unit,
        or gives numbers out of range.
        """
        if not isinstance(text, str):
            raise TypeError(f"a rate limit to parse must be a str, got {type(text).__name__}")
        match = _rate_limit_text().fullmatch(text)
        if match is None or (match["number"] is None and not match["unit"]):
            raise ValueError(f"invalid rate limit {text!r}: expected {_RATE_LIMIT_FORMS}")
        unit = match["unit"].lower()
        if unit not in _UNIT_SECONDS:
            raise ValueError(
                f"invalid rate limit {text!r}: unknown unit {match['unit']!r} "
                "(use s, m, h or d: seconds, minutes, hours or days)"
            )
        number = float(match["number"]) if match["number"] is not None else 1.0
        try:
            return cls(int(match["calls"]), number * _UNIT_SECONDS[unit])
        except ValueError as error:
            raise ValueError(f"invalid rate limit {text!r}: {error}") from None

    def is_slower_than(self, other: RateLimit) -> bool:
        """Whether this limit allows fewer calls per second than ``other``."""
        # Cross-multiplied, so 5/1 and 25/5 compare equal without rounding.
        return self.calls * other.period < other.calls * self.period

    def least_time(self, requests: int) -> float:
        """The least time ``requests`` requests can span under this limit.

        The seconds from the first request to the last when no window of ``period``
        holds more than ``calls`` of them: ``floor((requests - 1) / calls) * period``
        (0 for none or one). Add one round trip for the last answer to arrive. For several
        limits at once, see `least_time`.
        """
        return (requests - 1) // self.calls * self.period if requests > 0 else 0.0

    def __str__(self) -> str:
        calls = f"{self.calls} {'call' if self.calls == 1 else 'calls'}"
        return f"{calls} per {_describe_period(self.period)}"


@attrs.frozen
class Grant:
    """What a limiter did to grant a slot: what ``async with limiter.slot() as grant`` gives.

    Attributes:
        waited: seconds the request waited for its slot, on the event loop's clock (0.0
            when one was free).
        limit: the limit it waited on last (the binding one: a pause's stated limit while
            a pause held it), or None when it did not wait or the limit is not known.
    """

    waited: float
    limit: RateLimit | None


#: The grant of a slot that was free at once.
NO_WAIT = Grant(0.0, None)


def as_rate_limits(rate_limit: RateLimit | Sequence[RateLimit]) -> tuple[RateLimit, ...]:
    """One limit per period, shortest period first, from a `RateLimit` or a sequence of them.

    Two limits of the same period keep the one with fewer calls. Raises ``TypeError`` for
    anything but a `RateLimit` or a non-empty sequence of them, ``ValueError`` if empty.
    """
    if isinstance(rate_limit, RateLimit):
        return (rate_limit,)
    if isinstance(rate_limit, (str, bytes)) or not isinstance(rate_limit, Sequence):
        raise TypeError(
            "rate_limit must be a RateLimit or a sequence of them, "
            f"got {type(rate_limit).__name__}"
            + (" (use RateLimit.parse for text)" if isinstance(rate_limit, str) else "")
        )
    by_period: dict[float, RateLimit] = {}
    for limit in rate_limit:
        if not isinstance(limit, RateLimit):
            raise TypeError(
                f"rate_limit must hold RateLimit objects only, got {type(limit).__name__}"
            )
        kept = by_period.get(limit.period)
        if kept is None or limit.calls < kept.calls:
            by_period[limit.period] = limit
    if not by_period:
        raise ValueError("rate_limit must hold at least one RateLimit")
    return tuple(sorted(by_period.values(), key=lambda limit: limit.period))


def as_rate_limit(limit: StatedLimit | None) -> RateLimit | None:
    """The `RateLimit` an exception's ``limit`` is (`StatedLimit` is how `_errors`, which
    imports nothing, types it); a look-alike is copied into one."""
    if limit is None or isinstance(limit, RateLimit):
        return limit
    return RateLimit(limit.calls, limit.period)


def least_time(limits: RateLimit | Iterable[RateLimit], requests: int) -> float:
    """The least time ``requests`` requests can span under every one of ``limits`` at once.

    The seconds from the first request to the last in the earliest schedule that keeps
    each limit (answers taken as instant: add one round trip for the last answer to
    arrive). With one limit it is `RateLimit.least_time`; with several it can exceed the
    longest of theirs (10 per 5 s and 20 per 20 s: 40 requests take 25 s, not 20).
    """
    kept = as_rate_limits(limits if isinstance(limits, RateLimit) else tuple(limits))
    # The earliest schedule grants request i at max(t[i-1], t[i-calls] + period) for each
    # limit; grants come in bursts, so it is built as runs: run k is ends[k] - ends[k-1]
    # grants at times[k].
    times: list[float] = []
    ends: list[int] = []
    granted, at = 0, 0.0
    while granted < requests:
        for limit in kept:
            if granted >= limit.calls:
                earlier = times[bisect.bisect_right(ends, granted - limit.calls)]
                at = max(at, earlier + limit.period)
        room = requests - granted
        for limit in kept:
            freed = bisect.bisect_right(times, at - limit.period)
            while freed < len(times) and times[freed] + limit.period <= at:
                freed += 1  # `at - period` may round below a time that `t + period` reaches
            while freed and times[freed - 1] + limit.period > at:
                freed -= 1
            room = min(room, (ends[freed - 1] if freed else 0) + limit.calls - granted)
        granted += room
        times.append(at)
        ends.append(granted)
    return times[-1] if times else 0.0


def learned_lifetime(limit: RateLimit) -> float:
    """How long a learned limit lasts after the server last named it, in seconds.

    ``max(1 hour, 2 periods)``: an hour for short limits, so a limit that stopped
    applying (a plan raised) costs at most one refusal an hour to learn again; two periods
    for long ones, so that a daily quota lasts through the day in which it was learned and
    the whole day after. Naming it again renews it. After it expires, its count is kept
    one more period, so that naming it again soon loses nothing.
    """
    return max(LEARNED_FOR_AT_LEAST, LEARNED_FOR_PERIODS * limit.period)


def plausible(limit: RateLimit) -> bool:
    """Whether a limit the server named can be believed and learned: its period is at
    most `LONGEST_LEARNED_PERIOD` (31 days). (Its calls and period are positive and finite,
    as every `RateLimit`'s are.) "1 in 10000000000000 second(s)" is not."""
    return limit.period <= LONGEST_LEARNED_PERIOD


def implies(kept: RateLimit, limit: RateLimit) -> bool:
    """Whether keeping ``kept`` already keeps ``limit`` (so ``limit`` adds nothing)."""
    # A `limit.period` window is covered by ceil(limit.period / kept.period) windows of
    # `kept.period`, none of which holds more than `kept.calls` requests.
    return kept.calls * math.ceil(limit.period / kept.period) <= limit.calls


def utc_now() -> datetime:
    """The one wall clock of the package: now, as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def parse_rate_limits(value: str | RateLimit | Sequence[RateLimit | str]) -> tuple[RateLimit, ...]:
    """The one reader of a ``rate_limit`` setting, from whatever form it comes in.

    A `RateLimit`; text as `RateLimit.parse` reads it, several separated by commas
    (``"10/5, 10000/1d"``, as dlt's configuration and ``LSQ_RATE_LIMIT`` hold them); or a
    sequence of either. The result is `as_rate_limits`': one limit per period, shortest
    period first.

    Raises:
        TypeError: for anything else.
        ValueError: naming the text, for malformed text or an empty setting.
    """
    if isinstance(value, str):
        parts = [part for part in value.split(",") if part.strip()]
        if not parts:
            raise ValueError(f"invalid rate limit {value!r}: expected {_RATE_LIMIT_FORMS}")
        return as_rate_limits([RateLimit.parse(part) for part in parts])
    if isinstance(value, Sequence) and not isinstance(value, (bytes, RateLimit)):
        limits: list[RateLimit] = []
        for item in value:
            limits.extend(parse_rate_limits(item) if isinstance(item, str) else (item,))
        return as_rate_limits(limits)
    return as_rate_limits(value)


_LONGEST_RETRY_SECONDS = 100 * 365 * 86_400.0


def quota_exhausted(delay: float, limit: RateLimit | None, max_wait: float) -> QuotaExhaustedError:
    """The error of a limiter whose next slot is ``delay`` seconds away, more than the
    ``max_wait`` its caller allows; ``limit`` is what binds (None: a pause that named none)."""
    # A configured limit may have any finite period: retry_at stays a datetime.
    retry_at = utc_now() + timedelta(seconds=min(delay, _LONGEST_RETRY_SECONDS))
    what = f"{limit} is spent" if limit else "the rate limiter is paused"
    return QuotaExhaustedError(
        f"{what}: no slot before {retry_at:%Y-%m-%d %H:%M:%S} UTC "
        f"(in {delay:,.0f} s), more than the {max_wait:g} s allowed to wait",
        retry_at=retry_at,
        limit=limit,
    )


def learned_in_words(
    learned: RateLimit, before: Sequence[RateLimit], after: Sequence[RateLimit]
) -> str:
    """What a learned limit replaced and what it is kept beside, for the warning's end:
    "in place of 25 calls per 5 s", ", beside 10,000 calls per day", both, or nothing."""
    replaced = [limit for limit in before if limit.period == learned.period]
    others = [limit for limit in after if limit.period != learned.period]
    words = f" in place of {replaced[0]}" if replaced else ""
    if others:
        words += ", beside " + ", ".join(str(limit) for limit in others)
    return words
