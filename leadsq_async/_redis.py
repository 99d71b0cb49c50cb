"""`RedisLimiter`: one account's rate limits shared by every process and host, keeping
the in-process limiter's rule in Redis for every limit at once (the Lua scripts of
`_redis_scripts`, run by `_redis_calls`, each change atomic and on Redis' own clock);
a process waits for a release (`_redis_listener`) and, if asked to, falls back to an
in-process share when Redis fails (`_redis_fallback`). See "How the rate limiters work".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Final

from ._aio import LoopClock
from ._checks import check_instance, check_int, check_max_wait, check_seconds, check_text
from ._closing import AsyncClosing
from ._errors import RateLimiterUnavailableError
from ._limits import (
    MOST_LEARNED_LIMITS,
    NO_WAIT,
    Grant,
    RateLimit,
    learned_lifetime,
    parse_rate_limits,
    plausible,
    quota_exhausted,
)
from ._redis_calls import MICROSECONDS, InFlight, ScriptCalls, address_of, to_microseconds
from ._redis_fallback import Fallback, learned_into
from ._redis_listener import ReleaseListener

try:
    from redis import asyncio as aioredis
except ImportError:  # pragma: no cover - only without the `redis` extra
    aioredis = None  # type: ignore[assignment]

__all__ = ["DEFAULT_KEY", "RateLimiterUnavailableError", "RedisLimiter"]

logger = logging.getLogger("leadsq_async")

DEFAULT_KEY: Final = "leadsq-async:ratelimit:default"
"""The Redis key used when none is given: every process using it shares one limit."""

# How long a client made from a URL waits to connect to Redis, or for its answer,
# before Redis counts as unusable. Without a bound, redis-py before 8 waits for
# ever on a Redis that stopped answering but left the connection open.
_SOCKET_TIMEOUT_SECONDS: Final = 5.0
_DEFAULT_RATE_LIMIT: Final = RateLimit()


class RedisLimiter(AsyncClosing):
    """A rate limiter shared through Redis by every process and host using the same key.

    Give it to ``Session(limiter=...)`` in every process that uses the account:
    together they never send more than a limit's `calls` requests in any of its
    `period`-second windows, for every limit, and a free slot goes to a waiting
    process as soon as every limit allows it. A rate-limit answer seen by one
    process pauses all of them, and a limit learned from the server is kept to
    by all of them.

    Within a process, waiters are served first come, first served. Close the
    limiter with `aclose` (or ``async with``) once no slot is held; a `Session`
    does not close a limiter it was given.

    A key new to Redis, or one Redis lost (it restarted without persistence),
    grants no slot for one period of the shortest limit, and longer limits such
    as a daily quota count from zero again: see the guide to several processes.

    Args:
        redis: a Redis URL (``redis://[:password@]host:6379/0``, ``rediss://`` or
            ``unix://``), in which case the limiter makes its client and closes it
            in `aclose`; it counts Redis as unusable after 5 seconds without an
            answer, unless the URL sets ``socket_timeout`` or
            ``socket_connect_timeout``. Or a ``redis.asyncio.Redis`` client, which
            stays yours to close and configure (give it a ``socket_timeout``:
            without one, redis-py before 8 waits for ever on a Redis that stops
            answering).
        rate_limit: the account's limit, or several (``[RateLimit(10, 5),
            RateLimit(10_000, 86_400)]``, or as text: ``"10/5, 10000/1d"``); of two
            with one period, the lower counts. Every process on one key should be
            given the same.
        key: the Redis key of the shared limit. Processes share a limit exactly
            when they use the same Redis and the same key, so key it by account,
            e.g. ``f"leadsq-async:ratelimit:{access_key}"`` (never the secret key).
        lease: seconds a slot in flight stays held without news from its process.
            The limiter renews its slots every ``lease / 3`` seconds while their
            requests last, so this only bounds how long a crashed process keeps
            its slots (they count as released ``lease`` after its last renewal).
        fallback: when Redis cannot be used, keep going with an in-process
            limiter of ``calls // fallback_processes`` calls per `period` (at
            least 1) for each limit, logging one warning, and try Redis again 30
            seconds later. Off by default: then `RateLimiterUnavailableError` is raised.
        fallback_processes: how many processes at most share the key, which sets
            each one's share of the limits while it falls back.

    The process waits on its event loop's clock (between asks, for renewals, for
    the fallback's timer); deadlines shared with other processes are on Redis' clock.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value (before any I/O).
        ImportError: the ``redis`` extra is not installed
            (``pip install 'leadsq-async[redis]'``).
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        rate_limit: str | RateLimit | Sequence[RateLimit | str] = _DEFAULT_RATE_LIMIT,
        *,
        key: str = DEFAULT_KEY,
        lease: float = 30.0,
        fallback: bool = False,
        fallback_processes: int = 4,
    ) -> None:
        configured = parse_rate_limits(rate_limit)
        lease = check_seconds("lease", lease)
        key = check_text("key", key)
        fallback = check_instance("fallback", fallback, bool)
        fallback_processes = check_int("fallback_processes", fallback_processes, minimum=1)
        if aioredis is None:  # pragma: no cover - only without the `redis` extra
            raise ImportError(
                "RedisLimiter needs the redis package: pip install 'leadsq-async[redis]'"
            )
        if isinstance(redis, str):
            # The URL's own socket_timeout and socket_connect_timeout win over these.
            self._client: aioredis.Redis = aioredis.from_url(
                redis,
                socket_timeout=_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=_SOCKET_TIMEOUT_SECONDS,
            )
            self._owns_client = True
        elif isinstance(redis, aioredis.Redis):
            self._client = redis
            self._owns_client = False
        else:
            raise TypeError(
                f"redis must be a URL or a redis.asyncio.Redis client, not {type(redis).__name__}"
            )

        self._key = key
        self._channel = f"{key}:released"
        self._clock = LoopClock()
        self._lease = float(lease)
        self._address = address_of(self._client)
        self._fallback = Fallback(
            enabled=fallback, processes=fallback_processes, address=self._address
        )
        self._scripts = ScriptCalls(
            self._client,
            key,
            configured,
            lease=self._lease,
            address=self._address,
            now=self._shared_now,
            on_answer=self._on_answer,
            on_lost=self._on_lost,
        )

        # One waiter at a time asks Redis; asyncio.Lock queues the others in
        # arrival order and drops the cancelled ones.
        self._queue = asyncio.Lock()
        # Waiters are numbered as they come; when Redis fails, every waiter that
        # came before the failure fails at once instead of asking Redis in turn.
        self._arrivals = 0
        self._failure: tuple[int, RateLimiterUnavailableError] | None = None
        self._listener = ReleaseListener(self._client, self._channel)
        self._in_flight = InFlight(self._scripts, self._lease, self._channel)
        self._waiting = 0
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RedisLimiter(address={self._address!r}, key={self._key!r}, "
            f"rate_limits={list(self._scripts.limits)!r})"
        )

    @property
    def rate_limits(self) -> tuple[RateLimit, ...]:
        """Every limit in force for the processes on the key, shortest period first.

        The configured limits, tightened or joined by limits learned from the
        server (by any process), as last seen in Redis. While falling back, each
        process keeps to a share of each.
        """
        return self._scripts.limits

    @property
    def rate_limit(self) -> RateLimit:
        """The limit of the shortest period in force (see `rate_limits`)."""
        return self._scripts.limits[0]

    @property
    def waiting(self) -> int:
        """Tasks of this process waiting for a slot (in Redis, or of the fallback's)."""
        local = self._fallback.kept
        return self._waiting + (local.waiting if local is not None else 0)

    @property
    def key(self) -> str:
        """The Redis key of the shared limit."""
        return self._key

    @property
    def address(self) -> str:
        """Where Redis is, such as ``127.0.0.1:6379/0`` (never with a password)."""
        return self._address

    def slot(
        self, *, max_wait: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[Grant]:
        """Hold one slot for the body: wait for it, then release it on exit.

        ``async with limiter.slot() as grant: <send one request, read its whole
        answer>``; the `Grant` says how long the slot was waited for, and on which limit.
        Entry waits, first come first served within the process, until every
        limit has a slot free in Redis and no pause is in force; the slot stays
        held for each limit's `period` after the body exits, however it exits.
        A waiter cancelled before its grant takes no slot and blocks nobody.

        Args:
            max_wait: None to wait as long as it takes. Otherwise, once the
                earliest moment a slot can be granted is more than `max_wait`
                seconds after the call, raise `QuotaExhaustedError` instead of
                waiting (at once, if it is so when asked).

        Raises:
            QuotaExhaustedError: no slot within `max_wait`; none was taken.
            RateLimiterUnavailableError: Redis cannot be used and ``fallback`` is off.
            TypeError, ValueError: `max_wait` is not None or a number >= 0.
            RuntimeError: the limiter is closed.
        """
        return self._hold(check_max_wait(max_wait))

    async def pause(self, seconds: float, *, limit: RateLimit | None = None) -> None:
        """Grant no slot to any process on the key for `seconds` from now.

        Call it when a rate-limit answer arrives: every process waits it out.
        A pause never shortens one already in force. `limit` is the limit the
        answer named, reported by `QuotaExhaustedError` when the pause is what
        keeps a slot too far away.

        Raises:
            TypeError, ValueError: `seconds` is not a finite number >= 0, or
                `limit` is not a `RateLimit` or None.
            RateLimiterUnavailableError: Redis cannot be used and ``fallback`` is off.
        """
        seconds = check_seconds("seconds", seconds, allow_zero=True)
        if limit is not None:
            check_instance("limit", limit, RateLimit)
        local = self._fallback.current()
        if local is None:
            named = (0, 0) if limit is None else (limit.calls, to_microseconds(limit.period))
            try:
                await self._scripts.run(
                    self._scripts.pause, to_microseconds(seconds, least=0), *named
                )
            except RateLimiterUnavailableError as exc:
                local = await self._fallback.fall_back(exc, self._scripts.limits)
            else:
                return
        await local.pause(seconds, limit=limit)

    async def learn(self, limit: RateLimit) -> bool:
        """Keep every process on the key to `limit`, a limit the server named.

        As `SlidingWindowLimiter.learn` does: it tightens the limit of the same
        period (fewer calls), or joins the others as a new one unless one of
        them implies it; the others stay. A new limit counts the releases
        another limit still counts, moved to its own period, and grants nothing
        until the ones before could no longer matter. A learned limit lasts
        `learned_lifetime` (an hour, or two of its periods if longer) after the
        server last named it. At most `MOST_LEARNED_LIMITS` (8) are kept on the key,
        by the in-process rule: one the others imply goes first, then the one named
        longest ago.

        Returns:
            True if the limits changed by this call, False if they already
            included one as tight (perhaps learned by another process), or if
            `limit` is not `plausible` (a period over 31 days).

        Raises:
            TypeError: `limit` is not a `RateLimit`.
            RateLimiterUnavailableError: Redis cannot be used and ``fallback`` is off.
        """
        check_instance("limit", limit, RateLimit)
        if not plausible(limit):
            return False  # nor is it sent to Redis, whose scripts count in int64 microseconds
        local = self._fallback.current()
        if local is None:
            try:
                changed, *_ = await self._scripts.run(
                    self._scripts.learn,
                    limit.calls,
                    to_microseconds(limit.period),
                    to_microseconds(learned_lifetime(limit)),
                    MOST_LEARNED_LIMITS,
                )
            except RateLimiterUnavailableError as exc:
                local = await self._fallback.fall_back(exc, self._scripts.limits)
            else:
                kept = self._fallback.kept
                if changed and kept is not None:
                    await kept.learn(self._fallback.share(limit))
                return bool(changed)
        limits, changed = learned_into(self._scripts.limits, limit)
        if changed:  # the local limiter keeps few learned limits; so does what is reported
            await local.learn(self._fallback.share(limit))
            periods = {held.period for held in local.rate_limits}
            limits = tuple(known for known in limits if known.period in periods)
        self._scripts.limits = limits
        return changed

    async def aclose(self) -> None:
        """Stop listening to Redis, and close the client if the limiter made it.

        Call it once no slot is held. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        await self._listener.aclose()
        await self._in_flight.aclose()
        # Releases under way, and clean-ups that outlived a cancelled caller, finish first.
        await self._scripts.drain()
        await self._fallback.aclose()
        if self._owns_client:
            await self._client.aclose()

    # -- taking and giving back slots in Redis ---------------------------------

    @contextlib.asynccontextmanager
    async def _hold(self, max_wait: float) -> AsyncIterator[Grant]:
        if self._closed:
            raise RuntimeError("this RedisLimiter is closed")
        local = self._fallback.current()
        if local is None:
            started = self._clock()
            self._waiting += 1
            try:
                taken = await self._take(max_wait)
            finally:
                self._waiting -= 1
            if taken is not None:
                token, limit, waited = taken
                try:
                    yield Grant(self._clock() - started, limit) if waited else NO_WAIT
                finally:
                    await self._in_flight.release(token)
                return
            local = self._fallback.kept
            assert local is not None  # _take returns None only after falling back
        async with local.slot(max_wait=max_wait) as grant:
            yield grant

    async def _take(self, max_wait: float) -> tuple[str, RateLimit | None, bool] | None:
        """Wait for a slot in Redis: its token, the limit last waited on, and whether it
        waited (behind others, or for a slot); None if the limiter fell back meanwhile."""
        queued = self._queue.locked()
        self._arrivals += 1
        arrival = self._arrivals
        deadline = None if max_wait == math.inf else (self._clock() + max_wait, max_wait)
        try:
            if deadline is not None and self._queue.locked():
                # Others are waiting ahead: whether a slot is too far away is
                # known now, not once they are served.
                await self._ask(uuid.uuid4().hex, deadline, looking=True)
            async with self._queue:
                if self._fallback.current() is not None:
                    return None
                failure = self._failure
                if failure is None or arrival > failure[0]:
                    token, binding, waited = await self._acquire(deadline)
                    return token, binding, waited or queued
        except RateLimiterUnavailableError as exc:
            self._failure = (self._arrivals, exc)
            await self._fallback.fall_back(exc, self._scripts.limits)
            return None
        # Redis failed while this caller waited in line: it fails too, at once.
        failed = failure[1]
        raise RateLimiterUnavailableError(failed.message, address=failed.address) from failed

    async def _acquire(
        self, deadline: tuple[float, float] | None
    ) -> tuple[str, RateLimit | None, bool]:
        token = uuid.uuid4().hex
        binding, waited = None, False
        while True:
            listening = self._listener.listening
            if listening:
                self._listener.expect()
            answer = await self._ask(token, deadline, looking=False)
            if answer is None:
                self._in_flight.add(token)
                return token, binding, waited
            (wait, binding), waited = answer, True
            if not listening and await self._listener.start():
                continue  # a release may have come before we listened: ask again
            await self._listener.nap(wait, wake=listening)

    async def _ask(
        self, token: str, deadline: tuple[float, float] | None, *, looking: bool
    ) -> tuple[float, RateLimit | None] | None:
        """Ask Redis for a slot (or only look): None if granted, else how long to wait
        and the limit that binds (None for a pause that named none).

        Raises:
            QuotaExhaustedError: the earliest grant is past `deadline` (a time on
                the limiter's clock, and the `max_wait` it came from).
            RateLimiterUnavailableError: Redis failed or could not be reached.
        """
        # If we leave before the answer is in, the script may still grant a
        # slot that nobody will use: it is then given back.
        pending = self._scripts.start(self._scripts.acquire, token, int(looking))
        try:
            reply: list[int] = await asyncio.shield(pending)
        except BaseException:
            if not looking:
                self._scripts.in_background(self._in_flight.forget(token, after=pending))
            raise
        granted, ready_us, again_us, calls, period_us = reply
        if granted:
            return None
        ready = ready_us / MICROSECONDS
        limit = RateLimit(calls, period_us / MICROSECONDS) if calls else None
        if deadline is not None:
            left = deadline[0] - self._clock()
            if ready > left:
                raise quota_exhausted(ready, limit, deadline[1])
            # Looked at again by the deadline: a slot in flight may not free by then.
            return min(again_us / MICROSECONDS, max(left, 0.0)), limit
        return again_us / MICROSECONDS, limit

    def _on_answer(self) -> None:
        self._failure = None
        self._fallback.answered()

    def _on_lost(self) -> None:
        # Our slots in flight were lost with the rest: they count again.
        self._scripts.in_background(self._in_flight.renew(again=True))

    def _shared_now(self) -> int:
        """The time for the scripts, in microseconds; -1 for Redis' own clock.

        Overridden by tests that run Redis-backed limiters on a simulated clock.
        """
        return -1
