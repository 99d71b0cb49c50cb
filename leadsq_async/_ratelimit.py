"""Client-side rate limiting: never more than ``calls`` requests in any ``period`` seconds.

LeadSquared limits each account to N calls per M seconds (2, 5, 10, 15 or 25 per 5 s by
plan; custom limits such as 72 exist) and does not say whether it counts in fixed or
sliding windows. The limiter here keeps one rule:

    A slot is held from the moment it is granted until ``period`` seconds after its
    request completed, and at most ``calls`` slots are held at once.

Why that is enough, for fixed and sliding windows alike and whatever the latency: a
request reaches the server somewhere between its grant ``g`` and its release ``r``. Take
any window ``[t, t + period)`` and the requests that reach the server inside it, and let
``k`` be the last of them to be granted. Every other one was granted before ``g_k`` and
released at some ``r >= t``, so its slot is held until ``r + period >= t + period > g_k``:
it was still held when ``k`` was granted. ``k`` was granted only while fewer than
``calls`` slots were held, so the window holds at most ``calls`` requests.

Why no capacity is wasted: a burst of ``calls`` is granted at once, and a slot frees
exactly at release + period, at which instant the first waiter (and only it) is woken by
a single timer. There is no background task and no polling.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import numbers
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Protocol, runtime_checkable

import attrs

from ._closing import AsyncClosing

__all__ = ["RateLimit", "RateLimiter", "SlidingWindowLimiter", "as_rate_limits", "least_time"]


def _to_calls(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"calls must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"calls must be at least 1, got {value}")
    return int(value)


def _to_seconds(value: float, name: str) -> float:
    # bool is a Real to Python, but `period=True` is always a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _to_period(value: float) -> float:
    period = _to_seconds(value, "period")
    if period == 0:
        raise ValueError("period must be more than 0 seconds, got 0")
    return period


_UNIT_SECONDS = {
    **dict.fromkeys(("", "s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_RATE_LIMIT_TEXT = re.compile(
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
        match = _RATE_LIMIT_TEXT.fullmatch(text)
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


@runtime_checkable
class RateLimiter(Protocol):
    """What a Session needs from a rate limiter (in-process or shared through Redis).

    Use: ``async with limiter.slot(): <send one request and read its whole response>``.
    """

    @property
    def rate_limit(self) -> RateLimit:
        """The limit currently enforced."""
        ...

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait (first come, first served) for a free slot and the end of any pause.

        The slot is held while the body runs and for ``period`` seconds after it exits,
        normally or by exception or cancellation. A waiter cancelled while waiting takes
        no slot and blocks nobody.
        """
        ...

    async def pause(self, seconds: float) -> None:
        """A rate-limit answer was seen: grant no slot to anyone before now + ``seconds``."""
        ...

    async def lower(self, limit: RateLimit) -> bool:
        """Adopt ``limit`` and return True if its rate is lower than the current one."""
        ...

    async def aclose(self) -> None:
        """Release whatever the limiter holds."""
        ...


_DEFAULT_RATE_LIMIT = RateLimit()


class SlidingWindowLimiter(AsyncClosing):
    """The in-process limiter: a slot is held until ``period`` seconds after its release.

    ``clock`` and ``sleep`` are injectable so that tests can run in virtual time; they must
    agree with each other (the defaults do: asyncio's loop clock is ``time.monotonic``).
    Use it from one event loop; it is not thread-safe.
    Only the first waiter ever sleeps, once per slot it waits for. Raises ``TypeError`` if
    ``rate_limit`` is not a `RateLimit`.
    """

    def __init__(
        self,
        rate_limit: RateLimit = _DEFAULT_RATE_LIMIT,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not isinstance(rate_limit, RateLimit):
            raise TypeError(f"rate_limit must be a RateLimit, got {type(rate_limit).__name__}")
        self._limit = rate_limit
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        # When each released slot frees again, ascending, so the next one is cooling[0].
        self._cooling: deque[float] = deque()
        self._paused_until = -math.inf
        # One future per waiter, in arrival order. The head of the queue is the only waiter
        # that watches the time; the others wait for their future, set when they reach the head.
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Set when a slot is released, for a head that waits with every slot in flight.
        self._released: asyncio.Future[None] | None = None
        self._granted = 0
        self._waited_seconds = 0.0

    @property
    def rate_limit(self) -> RateLimit:
        """The limit currently enforced (lower than the configured one after `lower`)."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Slots held now: requests in flight plus released slots still cooling down."""
        self._expire(self._clock())
        return self._in_flight + len(self._cooling)

    @property
    def in_flight(self) -> int:
        """Slots whose ``async with`` body is still running."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Tasks waiting for a slot."""
        return len(self._waiters)

    @property
    def granted(self) -> int:
        """Slots granted since the limiter was created."""
        return self._granted

    @property
    def waited_seconds(self) -> float:
        """Total time tasks spent waiting for slots (including waiters later cancelled)."""
        return self._waited_seconds

    def next_free_in(self) -> float | None:
        """Seconds until the first waiter can get a slot: 0.0 if one is free now, None while
        every slot is in flight (it frees only ``period`` after a response completes)."""
        now = self._clock()
        ready = self._ready_at(now)
        return None if ready is None else max(0.0, ready - now)

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one slot for one request: see `RateLimiter.slot`."""
        return _Slot(self)

    async def pause(self, seconds: float) -> None:
        """Grant no slot to anyone before now + ``seconds``; a pause is extended, never
        shortened. Raises ``TypeError``/``ValueError`` unless ``seconds`` is finite and >= 0."""
        until = self._clock() + _to_seconds(seconds, "seconds")
        # The waiter at the head sleeps until its old target and then looks again.
        self._paused_until = max(self._paused_until, until)

    async def lower(self, limit: RateLimit) -> bool:
        """Adopt ``limit`` if its rate (calls per second) is lower than the current one.

        Returns True if adopted, else False. Slots already held stay held; the new ``calls``
        applies to grants from now on and the new ``period`` to releases from now on.
        Raises ``TypeError`` if ``limit`` is not a `RateLimit`.
        """
        if not isinstance(limit, RateLimit):
            raise TypeError(f"limit must be a RateLimit, got {type(limit).__name__}")
        if not limit.is_slower_than(self._limit):
            return False
        now = self._clock()
        longer_by = limit.period - self._limit.period
        if longer_by > 0:
            # Why this stays safe: the proof in the module docstring needs every request
            # released at r to keep its slot until r + new period. Slots released from now
            # on get the new period; slots still cooling are held `longer_by` more; slots
            # that already freed were released before now - old period, so pausing grants
            # for `longer_by` puts every later grant past their r + new period. A shorter
            # period needs nothing: cooling slots then stay held longer than required.
            self._cooling = deque(deadline + longer_by for deadline in self._cooling)
            self._paused_until = max(self._paused_until, now + longer_by)
        self._limit = limit
        return True

    async def aclose(self) -> None:
        """Nothing to release: the limiter runs no task of its own and holds no resource.

        Slots held and tasks waiting are left alone. Calling it again is harmless.
        """

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._limit!r}, in_use={self.in_use}, waiting={self.waiting})"
        )

    def _expire(self, now: float) -> None:
        cooling = self._cooling
        while cooling and cooling[0] <= now:
            cooling.popleft()

    def _ready_at(self, now: float) -> float | None:
        """When a slot can next be granted, or None until an in-flight slot is released."""
        self._expire(now)
        # After `lower`, more slots may be held than the new `calls`: several must free.
        excess = self._in_flight + len(self._cooling) - self._limit.calls
        if excess < 0:
            at = now
        elif excess < len(self._cooling):
            at = self._cooling[excess]
        else:
            return None
        return max(at, self._paused_until)

    async def _acquire(self) -> None:
        now = self._clock()
        if not self._waiters:
            ready = self._ready_at(now)
            if ready is not None and ready <= now:
                self._granted += 1
                self._in_flight += 1
                return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        started = now
        try:
            if self._waiters[0] is not turn:
                await turn
            while True:
                now = self._clock()
                ready = self._ready_at(now)
                if ready is None:
                    self._released = loop.create_future()
                    await self._released
                elif ready > now:
                    # Nothing can make this wait shorter: releases free slots later than
                    # the ones already cooling, and pause/lower only push `ready` back.
                    await self._sleep(ready - now)
                else:
                    break
            self._granted += 1
            self._in_flight += 1
        finally:
            self._waited_seconds += self._clock() - started
            self._leave(turn)

    def _leave(self, turn: asyncio.Future[None]) -> None:
        if self._waiters[0] is turn:
            self._waiters.popleft()
            # A waiter woken to become head and cancelled before it ran lands here too, so
            # the turn it was handed is passed on instead of lost.
            if self._waiters:
                head = self._waiters[0]
                if not head.done():
                    head.set_result(None)
        else:
            self._waiters.remove(turn)

    def _release(self) -> None:
        self._in_flight -= 1
        deadline = self._clock() + self._limit.period
        if self._cooling and self._cooling[-1] > deadline:
            # Only after `lower` shortened the period: holding this slot a little longer
            # is safe and keeps the deadlines sorted.
            deadline = self._cooling[-1]
        self._cooling.append(deadline)
        released, self._released = self._released, None
        if released is not None and not released.done():
            released.set_result(None)


class _Slot(contextlib.AbstractAsyncContextManager[None]):
    """One ``async with limiter.slot()``: acquires on entry, releases on any exit."""

    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self._limiter = limiter
        self._held = False

    async def __aenter__(self) -> None:
        if self._held:
            raise RuntimeError("this slot is already held; call slot() again for another")
        await self._limiter._acquire()
        self._held = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Released even on error or cancellation: the request may have reached the server.
        if self._held:
            self._held = False
            self._limiter._release()
