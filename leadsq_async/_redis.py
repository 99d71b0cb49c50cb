"""`RedisLimiter`: one account's rate limits shared by every process and host.

LeadSquared counts calls per account, so processes that share the keys must
share the limits. This limiter keeps the in-process limiter's rule, in Redis,
for every limit at once (a short one and a daily quota, say):

    a slot is held from its grant until a limit's `period` after its release,
    and a slot is granted only while every limit holds fewer than its `calls`,

so no limit sees more than `calls` requests in any `period`-second window,
whatever the latency, across every process that uses the same Redis and key.
The Lua scripts in `_redis_scripts` keep the slots, each change atomic, on
Redis' own clock; their module docstring describes the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any, Final

from . import _redis_scripts as scripts
from ._aio import LoopClock, cancel_and_wait
from ._checks import check_instance, check_int, check_seconds, check_text
from ._closing import AsyncClosing
from ._errors import QuotaExhaustedError, RateLimiterUnavailableError
from ._limits import (
    NO_WAIT,
    Grant,
    RateLimit,
    implies,
    learned_lifetime,
    parse_rate_limits,
    utc_now,
)
from ._ratelimit import SlidingWindowLimiter, to_max_wait

try:
    from redis import asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - only without the `redis` extra
    aioredis = None  # type: ignore[assignment]
    RedisConnectionError = RedisError = OSError  # type: ignore[assignment,misc]

__all__ = ["DEFAULT_KEY", "RateLimiterUnavailableError", "RedisLimiter"]

logger = logging.getLogger("leadsq_async")

DEFAULT_KEY: Final = "leadsq-async:ratelimit:default"
"""The Redis key used when none is given: every process using it shares one limit."""

_MICROSECONDS: Final = 1_000_000
# After Redis failed, how long a process keeps to its local fallback limiter
# before it tries Redis again.
_FALLBACK_RETRY_SECONDS: Final = 30.0
# How long a client made from a URL waits to connect to Redis, or for its answer,
# before Redis counts as unusable. Without a bound, redis-py before 8 waits for
# ever on a Redis that stopped answering but left the connection open.
_SOCKET_TIMEOUT_SECONDS: Final = 5.0
# How long the listener waits for a release at a time; any finite wait will do.
_LISTEN_SECONDS: Final = 60.0
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

        self._configured = configured
        self._limits = configured
        self._reported_limits: list[int] = []
        self._key = key
        self._keys = [key, f"{key}:state"]
        self._channel = f"{key}:released"
        self._clock = LoopClock()
        self._lease = float(lease)
        self._address = _address(self._client)
        self._fallback = fallback
        self._fallback_processes = fallback_processes
        # The state's epoch as last seen: another one means Redis lost the state.
        self._epoch = ""

        self._acquire_script = self._client.register_script(scripts.ACQUIRE)
        self._release_script = self._client.register_script(scripts.RELEASE)
        self._renew_script = self._client.register_script(scripts.RENEW)
        self._pause_script = self._client.register_script(scripts.PAUSE)
        self._learn_script = self._client.register_script(scripts.LEARN)

        # One waiter at a time asks Redis; asyncio.Lock queues the others in
        # arrival order and drops the cancelled ones.
        self._queue = asyncio.Lock()
        # Waiters are numbered as they come; when Redis fails, every waiter that
        # came before the failure fails at once instead of asking Redis in turn.
        self._arrivals = 0
        self._failure: tuple[int, RateLimiterUnavailableError] | None = None
        self._released = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._listener_ready: asyncio.Future[bool] | None = None
        self._in_flight: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._calls: set[asyncio.Future[Any]] = set()
        self._local: SlidingWindowLimiter | None = None
        self._retry_redis_at = 0.0
        self._falling_back = False
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RedisLimiter(address={self._address!r}, key={self._key!r}, "
            f"rate_limits={list(self._limits)!r})"
        )

    @property
    def rate_limits(self) -> tuple[RateLimit, ...]:
        """Every limit in force for the processes on the key, shortest period first.

        The configured limits, tightened or joined by limits learned from the
        server (by any process), as last seen in Redis. While falling back, each
        process keeps to a share of each.
        """
        return self._limits

    @property
    def rate_limit(self) -> RateLimit:
        """The limit of the shortest period in force (see `rate_limits`)."""
        return self._limits[0]

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
        return self._hold(to_max_wait(max_wait))

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
        local = self._local_limiter()
        if local is None:
            named = (0, 0) if limit is None else (limit.calls, _to_microseconds(limit.period))
            try:
                await self._run(self._pause_script, _to_microseconds(seconds, least=0), *named)
            except RateLimiterUnavailableError as exc:
                local = self._fall_back(exc)
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
        server last named it.

        Returns:
            True if the limits changed by this call, False if they already
            included one as tight (perhaps learned by another process).

        Raises:
            TypeError: `limit` is not a `RateLimit`.
            RateLimiterUnavailableError: Redis cannot be used and ``fallback`` is off.
        """
        check_instance("limit", limit, RateLimit)
        local = self._local_limiter()
        if local is None:
            try:
                changed, *_ = await self._run(
                    self._learn_script,
                    limit.calls,
                    _to_microseconds(limit.period),
                    _to_microseconds(learned_lifetime(limit)),
                )
            except RateLimiterUnavailableError as exc:
                local = self._fall_back(exc)
            else:
                if changed and self._local is not None:
                    await self._local.learn(self._share(limit))
                return bool(changed)
        self._limits, changed = _with(self._limits, limit)
        if changed:
            await local.learn(self._share(limit))
        return changed

    async def aclose(self) -> None:
        """Stop listening to Redis, and close the client if the limiter made it.

        Call it once no slot is held. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(task for task in (self._listener, self._renewer) if task)
        # Releases under way, and clean-ups that outlived a cancelled caller, finish first.
        while self._background or self._calls:
            await asyncio.gather(*self._background, *self._calls, return_exceptions=True)
        if self._local is not None:
            await self._local.aclose()
        if self._owns_client:
            await self._client.aclose()

    # -- taking and giving back slots in Redis ---------------------------------

    @contextlib.asynccontextmanager
    async def _hold(self, max_wait: float) -> AsyncIterator[Grant]:
        if self._closed:
            raise RuntimeError("this RedisLimiter is closed")
        local = self._local_limiter()
        if local is None:
            started = self._clock()
            taken = await self._take(max_wait)
            if taken is not None:
                token, limit = taken
                waited = self._clock() - started
                try:
                    yield Grant(waited, limit) if waited > 0 else NO_WAIT
                finally:
                    await self._give_back(token)
                return
            local = self._local
            assert local is not None  # _take returns None only after falling back
        async with local.slot(max_wait=max_wait) as grant:
            yield grant

    async def _take(self, max_wait: float) -> tuple[str, RateLimit | None] | None:
        """Wait for a slot in Redis: its token and the limit last waited on, or None if
        the limiter fell back meanwhile."""
        self._arrivals += 1
        arrival = self._arrivals
        deadline = None if max_wait == math.inf else (self._clock() + max_wait, max_wait)
        try:
            if deadline is not None and self._queue.locked():
                # Others are waiting ahead: whether a slot is too far away is
                # known now, not once they are served.
                await self._ask(uuid.uuid4().hex, deadline, looking=True)
            async with self._queue:
                if self._local_limiter() is not None:
                    return None
                failure = self._failure
                if failure is None or arrival > failure[0]:
                    return await self._acquire(deadline)
        except RateLimiterUnavailableError as exc:
            self._failure = (self._arrivals, exc)
            self._fall_back(exc)
            return None
        # Redis failed while this caller waited in line: it fails too, at once.
        failed = failure[1]
        raise RateLimiterUnavailableError(failed.message, address=failed.address) from failed

    async def _acquire(self, deadline: tuple[float, float] | None) -> tuple[str, RateLimit | None]:
        token = uuid.uuid4().hex
        binding = None
        while True:
            listening = self._listening()
            if listening:
                # Cleared before asking, so a release after the answer wakes us.
                self._released.clear()
            answer = await self._ask(token, deadline, looking=False)
            if answer is None:
                self._in_flight.add(token)
                self._keep_renewing()
                return token, binding
            wait, binding = answer
            if not listening and await self._start_listening():
                continue  # a release may have come before we listened: ask again
            await self._nap(wait, wake=listening)

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
        pending = self._start(self._acquire_script, token, int(looking))
        try:
            reply: list[int] = await asyncio.shield(pending)
        except BaseException:
            if not looking:
                self._in_background(self._forget(token, after=pending))
            raise
        granted, ready_us, again_us, calls, period_us = reply
        if granted:
            return None
        ready = ready_us / _MICROSECONDS
        limit = RateLimit(calls, period_us / _MICROSECONDS) if calls else None
        if deadline is not None:
            left = deadline[0] - self._clock()
            if ready > left:
                raise _exhausted(ready, limit, deadline[1])
            # Looked at again by the deadline: a slot in flight may not free by then.
            return min(again_us / _MICROSECONDS, max(left, 0.0)), limit
        return again_us / _MICROSECONDS, limit

    async def _nap(self, seconds: float, *, wake: bool) -> None:
        """Sleep `seconds`, or until a release (by any process) if `wake`."""
        if not wake:
            await asyncio.sleep(seconds)
            return
        sleeping = asyncio.ensure_future(asyncio.sleep(seconds))
        released = asyncio.ensure_future(self._released.wait())
        try:
            await asyncio.wait((sleeping, released), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            released.cancel()
            await asyncio.gather(sleeping, released, return_exceptions=True)

    async def _forget(self, token: str, *, after: asyncio.Future[Any]) -> None:
        """Give back the slot `after` may have granted, once Redis has run it."""
        with contextlib.suppress(Exception):
            await after
        try:
            await self._run(self._release_script, token, 0, self._channel)
        except RateLimiterUnavailableError as exc:
            # Then the slot expires by its lease.
            logger.debug("could not give back an unused rate-limit slot: %s", exc)

    async def _give_back(self, token: str) -> None:
        self._in_flight.discard(token)
        try:
            await self._run(self._release_script, token, 1, self._channel)
        except RateLimiterUnavailableError as exc:
            # The request is done; its slot expires by its lease, which is safe.
            logger.warning("could not release a rate-limit slot: %s", exc)

    def _shared_now(self) -> int:
        """The time for the scripts, in microseconds; -1 for Redis' own clock.

        Overridden by tests that run Redis-backed limiters on a simulated clock.
        """
        return -1

    def _start(self, script: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        """Run `script` with the shared head of arguments; its result, once the limiter
        has taken in the limits and epoch it reports."""
        head = [
            self._shared_now(),
            _to_microseconds(self._lease),
            self._epoch,
            uuid.uuid4().hex,
            len(self._configured),
        ]
        for limit in self._configured:
            head += [limit.calls, _to_microseconds(limit.period)]
        arguments = [*head, *args]
        call = asyncio.ensure_future(
            self._translate(lambda: script(keys=self._keys, args=arguments))
        )
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        return call

    async def _run(self, script: Callable[..., Awaitable[Any]], *args: Any) -> list[int]:
        """Run a script; a cancelled caller leaves it to finish in the background.

        Raises:
            RateLimiterUnavailableError: Redis failed or could not be reached.
        """
        call = self._start(script, *args)
        try:
            result: list[int] = await asyncio.shield(call)
        except asyncio.CancelledError:
            self._in_background(_wait_quietly(call))
            raise
        return result

    async def _translate(self, call: Callable[[], Awaitable[Any]]) -> list[int]:
        try:
            try:
                reply = await call()
            except RedisConnectionError:
                # A connection Redis closed while it sat in the pool (a restart, an
                # idle timeout) fails its next command though Redis answers. redis-py
                # has dropped it, so the second run goes over a new one. Every script
                # is safe to run twice: a second acquire finds its slot granted, a
                # second learn finds the limit learned, a second release only holds
                # more.
                reply = await call()
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailableError(
                f"the rate limiter's Redis at {self._address} failed: {type(exc).__name__}: {exc}",
                address=self._address,
            ) from exc
        self._failure = None
        if self._falling_back:
            self._falling_back = False
            logger.warning("the rate limiter's Redis at %s answers again", self._address)
        result, epoch, limits = reply
        self._take_in(epoch.decode() if isinstance(epoch, bytes) else str(epoch), limits)
        return [int(value) for value in result]

    def _take_in(self, epoch: str, limits: list[int]) -> None:
        """Remember the limits in force and the epoch a script reported."""
        if limits != self._reported_limits:
            self._reported_limits = limits
            self._limits = tuple(
                RateLimit(int(calls), period_us / _MICROSECONDS)
                for calls, period_us in zip(limits[::2], limits[1::2], strict=True)
            )
        if epoch == self._epoch:
            return
        if self._epoch:
            logger.warning(
                "the rate limiter's Redis at %s lost the shared limit (restarted empty, "
                "or its key was deleted): no slot for %s s, and longer limits count from zero",
                self._address,
                f"{min(self._limits[0].period, scripts.RECOVERY_SECONDS):g}",
            )
            if self._in_flight:
                # Our slots in flight were lost with the rest: they count again.
                self._in_background(self._renew(again=True))
        self._epoch = epoch

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- slots in flight are renewed so only a dead process's expire ----------

    def _keep_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew_while_in_flight())

    async def _renew_while_in_flight(self) -> None:
        try:
            while self._in_flight:
                await asyncio.sleep(self._lease / 3)
                await self._renew(again=False)
        finally:
            self._renewer = None

    async def _renew(self, *, again: bool) -> None:
        if not self._in_flight:
            return
        try:
            await self._run(self._renew_script, int(again), *self._in_flight)
        except RateLimiterUnavailableError as exc:
            logger.warning("could not renew rate-limit slots in flight: %s", exc)

    # -- waking waiters when any process releases ------------------------------

    def _listening(self) -> bool:
        ready = self._listener_ready
        return (
            self._listener is not None
            and not self._listener.done()
            and ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.result()
        )

    async def _start_listening(self) -> bool:
        """Subscribe to the release channel; True once Redis confirmed it."""
        if self._listener is None or self._listener.done():
            self._listener_ready = asyncio.get_running_loop().create_future()
            self._listener = asyncio.ensure_future(self._listen(self._listener_ready))
        assert self._listener_ready is not None
        return await asyncio.shield(self._listener_ready)

    async def _listen(self, ready: asyncio.Future[bool]) -> None:
        # Any: redis-py leaves PubSub.aclose untyped.
        pubsub: Any = self._client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            while True:
                # A bounded wait: redis-py before 8 cuts a wait without one at the
                # client's socket timeout, as if Redis had failed.
                message = await pubsub.get_message(timeout=_LISTEN_SECONDS)
                if message is None:
                    continue
                if message["type"] == "subscribe" and not ready.done():
                    ready.set_result(True)
                # A release wakes the waiters, and so does a subscription renewed
                # by redis-py after it reconnected: releases made meanwhile were lost.
                if message["type"] in ("subscribe", "message"):
                    self._released.set()
        except (RedisError, OSError) as exc:
            # Waiters fall back to sleeping until the next known expiry.
            logger.debug("stopped listening for rate-limit releases: %s", exc)
        finally:
            if not ready.done():
                ready.set_result(False)
            self._released.set()
            await pubsub.aclose()

    # -- falling back to an in-process limiter ---------------------------------

    def _local_limiter(self) -> SlidingWindowLimiter | None:
        """The local limiter while falling back, until it is time to try Redis again."""
        if self._local is not None and self._clock() < self._retry_redis_at:
            return self._local
        return None

    def _fall_back(self, error: RateLimiterUnavailableError) -> SlidingWindowLimiter:
        if not self._fallback:
            raise error
        self._retry_redis_at = self._clock() + _FALLBACK_RETRY_SECONDS
        if self._local is None:
            # Kept across outages: its slots still count if Redis fails again.
            self._local = SlidingWindowLimiter([self._share(limit) for limit in self._limits])
        if not self._falling_back:
            self._falling_back = True
            logger.warning(
                "%s; falling back to an in-process rate limit of %s until it answers again",
                error,
                " and ".join(str(self._share(limit)) for limit in self._limits),
            )
        return self._local

    def _share(self, limit: RateLimit) -> RateLimit:
        return RateLimit(max(1, limit.calls // self._fallback_processes), limit.period)


def _with(limits: tuple[RateLimit, ...], limit: RateLimit) -> tuple[tuple[RateLimit, ...], bool]:
    """`limits` with `limit` learned, as `learn` does; and whether that changed them."""
    same = [known for known in limits if known.period == limit.period]
    if same and same[0].calls <= limit.calls:
        return limits, False
    if not same and any(implies(known, limit) for known in limits):
        return limits, False
    others = [known for known in limits if known.period != limit.period]
    return tuple(sorted([*others, limit], key=lambda known: known.period)), True


def _exhausted(seconds: float, limit: RateLimit | None, max_wait: float) -> QuotaExhaustedError:
    """The error for a slot `seconds` away, worded as `SlidingWindowLimiter` words it."""
    retry_at = utc_now() + timedelta(seconds=seconds)
    what = f"{limit} is spent" if limit else "the rate limiter is paused"
    return QuotaExhaustedError(
        f"{what}: no slot before {retry_at:%Y-%m-%d %H:%M:%S} UTC "
        f"(in {seconds:,.0f} s), more than the {max_wait:g} s allowed to wait",
        retry_at=retry_at,
        limit=limit,
    )


async def _wait_quietly(call: asyncio.Future[Any]) -> None:
    with contextlib.suppress(Exception):
        await call


def _to_microseconds(seconds: float, *, least: int = 1) -> int:
    # At least 1 by default: a period or lease that rounds to 0 would hold no slot at all.
    return max(least, round(seconds * _MICROSECONDS))


def _address(client: aioredis.Redis) -> str:
    """Where `client` connects, without its password."""
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        where = f"unix://{options['path']}"
    else:
        where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
    return f"{where}/{options.get('db', 0)}"
