"""`SlidingWindowLimiter`, the in-process rate limiter, and the `RateLimiter` protocol
every limiter meets: never more than a limit's ``calls`` requests in any of its ``period``
seconds, under several limits at once, with waiters served first come, first served and
no capacity left idle. A slot is held from its grant until ``period`` after its release;
why that keeps every limit whatever the latency, how the counts stay small, and how
limits are learned is in the docs' "How the rate limiters work".
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import NamedTuple, Protocol, runtime_checkable

from ._aio import LoopClock, delay_until
from ._checks import check_max_wait, check_seconds
from ._closing import AsyncClosing
from ._errors import QuotaExhaustedError
from ._limits import (
    MOST_LEARNED_LIMITS,
    NO_WAIT,
    Grant,
    RateLimit,
    as_rate_limits,
    implies,
    learned_lifetime,
    plausible,
    quota_exhausted,
)
from ._slots import Window, a_little_later, keep_few_learned

__all__ = ["RateLimiter", "SlidingWindowLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What a Session needs from a rate limiter (in-process or shared through Redis).

    Use: ``async with limiter.slot() as grant: <send one request and read its whole
    response>``; ``grant`` says how long the slot was waited for and which limit bound it.
    """

    @property
    def rate_limits(self) -> tuple[RateLimit, ...]:
        """Every limit enforced now, configured and learned, shortest period first."""
        ...

    @property
    def rate_limit(self) -> RateLimit:
        """The shortest-period limit enforced now (concurrency is derived from it)."""
        ...

    def slot(
        self, *, max_wait: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[Grant]:
        """Wait (first come, first served) for a free slot of every limit and the end of
        any pause; entering gives the `Grant`: how long it waited, and on which limit.

        The slot is held while the body runs and for each limit's ``period`` after it
        exits, normally or by exception or cancellation. A waiter cancelled while waiting
        takes no slot and blocks nobody.

        ``max_wait=None`` waits as long as it takes. Otherwise, when the earliest time a
        slot can be granted (a lower bound) is more than ``max_wait`` seconds away, raises
        `QuotaExhaustedError` at once, taking no slot, with ``retry_at`` (an aware UTC
        datetime) and the ``limit`` that binds.
        """
        ...

    async def pause(self, seconds: float, *, limit: RateLimit | None = None) -> None:
        """A rate-limit answer was seen: grant no slot to anyone before now + ``seconds``.

        ``limit`` is the limit the answer named, reported as `QuotaExhaustedError.limit`
        when the pause is what makes a slot too far away.
        """
        ...

    async def learn(self, limit: RateLimit) -> bool:
        """A limit the server named: tighten the limit of its period, or add it; the others
        stay. Returns True if anything changed. Learned limits expire (`learned_lifetime`).
        """
        ...

    async def aclose(self) -> None:
        """Release whatever the limiter holds."""
        ...


class _Outlook(NamedTuple):
    ready: float | None  # when the next slot can be granted; None until a release
    earliest: float  # a lower bound of that (equal to it when known)
    limit: RateLimit | None  # what binds: the limit, or the pause's


class _Waiter:
    __slots__ = ("deadline", "max_wait", "turn")

    def __init__(self, turn: asyncio.Future[None], now: float, max_wait: float) -> None:
        self.turn = turn
        self.max_wait = max_wait
        self.deadline = now + max_wait


_DEFAULT_RATE_LIMIT = RateLimit()


class SlidingWindowLimiter(AsyncClosing):
    """The in-process limiter: a slot is held until each limit's ``period`` after its release.

    ``rate_limit`` is one `RateLimit` or several (``[RateLimit(10, 5),
    RateLimit(10_000, 86_400)]``: Pro's 10 per 5 s and 10,000 a day); a request waits for a
    free slot of every one. Its clock is the running event loop's (``loop.time()``), so a
    loop with virtual time runs it in virtual time; `QuotaExhaustedError.retry_at` is
    `utc_now` plus the wait on that clock. Use it from one event loop; it is not
    thread-safe. Only the first waiter ever sleeps, once per slot it waits for.

    Raises ``TypeError`` if ``rate_limit`` is not a `RateLimit` or a sequence of them,
    ``ValueError`` if the sequence is empty.
    """

    def __init__(
        self,
        rate_limit: RateLimit | Sequence[RateLimit] = _DEFAULT_RATE_LIMIT,
    ) -> None:
        self._windows = [Window(limit.period, limit) for limit in as_rate_limits(rate_limit)]
        self._clock = LoopClock()
        self._in_flight = 0
        self._paused_until = -math.inf
        self._pause_limit: RateLimit | None = None
        # One waiter per task, in arrival order. The head of the queue is the only waiter
        # that watches the time; the others wait for their turn, set when they reach the head.
        self._waiters: deque[_Waiter] = deque()
        # Set when a slot is released, for a head that waits with a limit's slots in flight.
        self._released: asyncio.Future[None] | None = None
        self._granted = 0
        self._waited_seconds = 0.0
        # The limit the head of the queue last waited on: the one its followers waited on.
        self._binding: RateLimit | None = None

    @property
    def rate_limits(self) -> tuple[RateLimit, ...]:
        """Every limit enforced now, configured and learned, shortest period first."""
        self._tidy(self._clock())
        return tuple(window.limit for window in self._windows if window.limit is not None)

    @property
    def rate_limit(self) -> RateLimit:
        """The shortest-period limit enforced now (tighter than configured after `learn`)."""
        return self.rate_limits[0]

    @property
    def in_use(self) -> int:
        """Slots held now under the shortest-period limit: requests in flight plus released
        slots still cooling down."""
        self._tidy(self._clock())
        return self._in_flight + self._enforced()[0].cooling

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
        the slots it needs are in flight (they free only a period after a response)."""
        now = self._clock()
        ready = self._outlook(now).ready
        return None if ready is None else max(0.0, ready - now)

    def slot(
        self, *, max_wait: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[Grant]:
        """Hold one slot of every limit for one request: see `RateLimiter.slot`.

        With ``max_wait``, a task already waiting is also given `QuotaExhaustedError` as
        soon as its slot is seen to come later than ``max_wait`` after it asked (a pause or
        a learned limit pushed it back). Raises ``TypeError``/``ValueError`` on entry unless
        ``max_wait`` is None or a number of seconds >= 0.
        """
        return _Slot(self, max_wait)

    async def pause(self, seconds: float, *, limit: RateLimit | None = None) -> None:
        """Grant no slot to anyone before now + ``seconds``; a pause is extended, never
        shortened. ``limit`` is the limit the rate-limit answer named, if it named one:
        `QuotaExhaustedError` reports it when the pause is what holds slots back.

        Raises ``TypeError``/``ValueError`` unless ``seconds`` is finite and >= 0 and
        ``limit`` a `RateLimit` or None.
        """
        seconds = check_seconds("seconds", seconds, allow_zero=True)
        if limit is not None and not isinstance(limit, RateLimit):
            raise TypeError(f"limit must be a RateLimit or None, got {type(limit).__name__}")
        now = self._clock()
        if now + seconds > self._paused_until:
            # The waiter at the head sleeps until its old target and then looks again.
            self._paused_until = now + seconds
            self._pause_limit = limit
        self._fail_hopeless(now)

    async def learn(self, limit: RateLimit) -> bool:
        """Keep to a limit the server named, beside the others.

        A limit of a period already enforced is tightened if ``limit`` has fewer calls; a
        limit of a new period is added, unless one enforced already implies it (10 per 5 s
        never allows more than 1,000 in 60 s). The other limits stay. Returns True if the
        limits enforced changed.

        A learned limit lasts `learned_lifetime` (``max(1 hour, 2 periods)``) after the
        server last named it, then the configured limits alone apply again. Slots already
        held stay held; a new period's limit counts the releases of the last longest
        period and grants nothing until the ones before could still matter (see the
        docs' "How the rate limiters work"). A limit that is not `plausible` (a period over
        31 days) is not learned: False. At most `MOST_LEARNED_LIMITS` (8) learned limits are
        kept: beyond them, one that the other limits imply goes first, else the one the server
        named longest ago. Raises ``TypeError`` if ``limit`` is not a
        `RateLimit`.
        """
        if not isinstance(limit, RateLimit):
            raise TypeError(f"limit must be a RateLimit, got {type(limit).__name__}")
        if not plausible(limit):
            return False
        now = self._clock()
        self._tidy(now)
        window = next((w for w in self._windows if w.period == limit.period), None)
        until = now + learned_lifetime(limit)
        enforced = window.limit if window is not None else None
        if enforced is not None and window is not None:
            if limit.calls >= enforced.calls:
                if window.learned is not None and limit.calls == window.learned.calls:
                    window.learned_until = until  # named again: renewed
                return False
        elif any(implies(kept, limit) for kept in self.rate_limits):
            return False
        if window is None:
            window = self._window_learning(limit.period, now)
        window.learned, window.learned_until = limit, until
        keep_few_learned(self._windows, MOST_LEARNED_LIMITS)
        self._fail_hopeless(now)
        return True

    async def aclose(self) -> None:
        """Nothing to release: the limiter runs no task and holds no resource; slots held
        and tasks waiting are left alone. Calling it again is harmless."""

    def __repr__(self) -> str:
        limits = self.rate_limits
        shown = repr(limits[0]) if len(limits) == 1 else repr(list(limits))
        return f"{type(self).__name__}({shown}, in_use={self.in_use}, waiting={self.waiting})"

    def _enforced(self) -> list[Window]:
        return [window for window in self._windows if window.limit is not None]

    def _tidy(self, now: float) -> None:
        """Free the slots whose time has come; let learned limits expire."""
        stale = False
        for window in self._windows:
            window.expire(now)
            if window.learned is not None and now >= window.learned_until:
                window.learned = None
            if window.configured is None and window.learned is None:
                # Its count is kept one period after the limit expired (learned_lifetime).
                stale |= now >= window.learned_until + window.period
        if stale:
            self._windows = [
                w
                for w in self._windows
                if w.configured is not None
                or w.learned is not None
                or now < w.learned_until + w.period
            ]

    def _window_learning(self, period: float, now: float) -> Window:
        """A window for a new period, holding every earlier release that can still matter."""

        def blocked_until(source: Window) -> float:
            # Releases `source` no longer counts, or never counted, were before
            # max(now, source.blocked_until) - source.period: held until that + period.
            return a_little_later(max(source.blocked_until, now), period, -source.period)

        # The source that blocks least, and of those the finest (shortest period).
        source = min(self._windows, key=lambda w: (max(blocked_until(w), now), w.period))
        window = Window(period)
        window.blocked_until = blocked_until(source)
        for deadline, count in zip(source.deadlines, source.counts, strict=True):
            shifted = a_little_later(deadline, period, -source.period)
            if shifted > now:
                window.hold(shifted, count)
        bisect.insort(self._windows, window, key=lambda w: w.period)
        return window

    def _outlook(self, now: float, ahead: int = 0) -> _Outlook:
        """When a slot can next be granted to the waiter with ``ahead`` waiters before it."""
        self._tidy(now)
        earliest, binding, known = self._paused_until, self._pause_limit, True
        for window in self._windows:
            limit = window.limit
            if limit is None:
                continue
            # How many held slots must free first. After `learn` tightened a limit, more
            # slots may be held than its `calls`: several must free.
            excess = self._in_flight + window.cooling + ahead - limit.calls
            if excess < 0:
                at = now
            elif excess < window.cooling:
                at = window.frees_at(excess)
            else:
                # A slot still in flight frees no sooner than a period from now.
                at, known = now + window.period, False
            at = max(at, window.blocked_until)
            if at > earliest:
                earliest, binding = at, limit
        earliest = max(earliest, now)
        return _Outlook(earliest if known and ahead == 0 else None, earliest, binding)

    def _next_expiry(self) -> float:
        return min(
            (w.learned_until for w in self._windows if w.learned is not None), default=math.inf
        )

    def _exhausted(self, now: float, outlook: _Outlook, max_wait: float) -> QuotaExhaustedError:
        return quota_exhausted(outlook.earliest - now, outlook.limit, max_wait)

    def _fail_hopeless(self, now: float) -> None:
        """Give `QuotaExhaustedError` to queued waiters that can no longer be served in time.

        The head is left alone: it looks again when it wakes, which is soon enough.
        """
        ahead = 1
        for waiter in list(self._waiters)[1:]:
            if waiter.deadline < math.inf and not waiter.turn.done():
                outlook = self._outlook(now, ahead)
                if outlook.earliest > waiter.deadline:
                    waiter.turn.set_exception(self._exhausted(now, outlook, waiter.max_wait))
                    continue
            ahead += 1

    def _grant(self) -> None:
        self._granted += 1
        self._in_flight += 1

    async def _acquire(self, max_wait: float | None) -> Grant:
        wait = check_max_wait(max_wait)
        now = self._clock()
        if not self._waiters or wait < math.inf:
            outlook = self._outlook(now, ahead=len(self._waiters))
            if outlook.earliest - now > wait:
                raise self._exhausted(now, outlook, wait)
            if not self._waiters and outlook.ready is not None and outlook.ready <= now:
                self._grant()
                return NO_WAIT
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), now, wait)
        self._waiters.append(waiter)
        started, binding = now, None
        try:
            if self._waiters[0] is not waiter:
                await waiter.turn
                binding = self._binding
            while True:
                now = self._clock()
                outlook = self._outlook(now)
                if outlook.earliest > waiter.deadline:
                    raise self._exhausted(now, outlook, wait)
                if outlook.ready is not None and outlook.ready <= now:
                    break
                binding = self._binding = outlook.limit
                if outlook.ready is None:
                    self._released = loop.create_future()
                    await self._released
                else:
                    # Nothing makes this wait shorter but a learned limit expiring: releases
                    # free slots later than the ones already cooling, and pause/learn only
                    # push `ready` back.
                    await asyncio.sleep(delay_until(min(outlook.ready, self._next_expiry()), now))
            self._grant()
        finally:
            waited = self._clock() - started
            self._waited_seconds += waited
            self._leave(waiter)
        return Grant(waited, binding) if waited > 0 else NO_WAIT

    def _leave(self, waiter: _Waiter) -> None:
        if self._waiters[0] is waiter:
            self._waiters.popleft()
            # A waiter woken to become head and cancelled (or failed) before it ran lands
            # here too, so the turn it was handed is passed on instead of lost.
            if self._waiters:
                head = self._waiters[0].turn
                if not head.done():
                    head.set_result(None)
        else:
            self._waiters.remove(waiter)

    def _release(self) -> None:
        self._in_flight -= 1
        now = self._clock()
        for window in self._windows:
            window.hold(now + window.period)
        released, self._released = self._released, None
        if released is not None and not released.done():
            released.set_result(None)


class _Slot(contextlib.AbstractAsyncContextManager[Grant]):
    """One ``async with limiter.slot()``: acquires on entry, releases on any exit."""

    def __init__(self, limiter: SlidingWindowLimiter, max_wait: float | None) -> None:
        self._limiter = limiter
        self._max_wait = max_wait
        self._held = False

    async def __aenter__(self) -> Grant:
        if self._held:
            raise RuntimeError("this slot is already held; call slot() again for another")
        grant = await self._limiter._acquire(self._max_wait)
        self._held = True
        return grant

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
