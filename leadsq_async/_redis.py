"""`RedisRateLimit`: one account's rate limit shared by every process and host.

LeadSquared counts calls per account, so processes that share the keys must
share the limit. This limiter keeps the in-process limiter's rule, in Redis:

    a slot is held from its grant until `period` seconds after its release,
    and never more than `calls` slots are held at once,

so at most `calls` requests reach the server in any `period`-second window,
whatever the latency, across every process that uses the same Redis and key.

Redis layout, for ``key`` (default ``leadsq-async:ratelimit:default``):

- ``key``: a sorted set of held slots, scored by when they expire in Redis
  time (microseconds). A slot in flight is the member ``<token>``, scored
  ``now + lease + period`` and renewed while its request lasts, so a crashed
  process's slots expire about `lease` seconds after its last renewal. A
  released slot is the member ``<token>:released``, scored ``release + period``.
- ``key:state``: a hash with ``pause_until`` (Redis time, microseconds) and
  ``calls``/``period`` (microseconds), the lower limit a process learned from
  the server, which every process then keeps to.
- ``key:released``: a pub/sub channel; a release publishes on it, waking the
  processes that wait for a slot to recompute when the next one frees.

Every change is one Lua script (atomic), and every time comes from Redis'
``TIME``, never from a host's clock. Both keys expire when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Final

from ._closing import AsyncClosing
from ._errors import RateLimiterUnavailable
from ._ratelimit import RateLimit, SlidingWindowLimiter, _to_seconds

try:
    from redis import asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - only without the `redis` extra
    aioredis = None  # type: ignore[assignment]
    RedisConnectionError = RedisError = OSError  # type: ignore[assignment,misc]

__all__ = ["DEFAULT_KEY", "RateLimiterUnavailable", "RedisRateLimit"]

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
# The lower limit learned from the server outlives an idle spell of this long.
_STATE_RETENTION_MS: Final = 3_600_000

# Shared head of every script. ARGV[1..3]: the configured calls, period (us) and
# lease (us). It reads Redis' clock and the shared state, and settles the limit
# in force: the configured one, or the shared lower one if its rate is lower.
_PRELUDE: Final = """
local slots, state = KEYS[1], KEYS[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local calls, period, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local shared = redis.call('HMGET', state, 'calls', 'period', 'pause_until')
local shared_calls, shared_period = tonumber(shared[1]), tonumber(shared[2])
if shared_calls and shared_period and shared_calls * period < calls * shared_period then
  calls, period = shared_calls, shared_period
end
local pause_until = tonumber(shared[3]) or 0

-- Idle keys vanish: the slots once the last one expires, the state an hour
-- after its last use (or when its pause ends, if later).
local function keep_alive()
  local last = redis.call('ZRANGE', slots, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', slots, math.floor(tonumber(last[2]) / 1000) + 1000)
  end
  local pause_left = math.max(0, math.floor((pause_until - now) / 1000))
  redis.call('PEXPIRE', state, pause_left + RETENTION_MS)
end
""".replace("RETENTION_MS", str(_STATE_RETENTION_MS))

# ARGV[4]: the token. Returns {granted, wait_us, calls, period_us}; when not
# granted, wait_us is how long until the earliest moment a slot can free.
_ACQUIRE: Final = (
    _PRELUDE
    + """
local token = ARGV[4]
if redis.call('ZSCORE', slots, token) then
  -- granted by an earlier run whose answer was lost (a client retry)
  return {1, 0, calls, period}
end
if pause_until > now then
  return {0, pause_until - now, calls, period}
end
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local held = redis.call('ZCARD', slots)
if held < calls then
  redis.call('ZADD', slots, now + lease + period, token)
  keep_alive()
  return {1, 0, calls, period}
end
-- a lowered limit can leave more slots held than allowed: wait for enough of them
local blocker = redis.call('ZRANGE', slots, held - calls, held - calls, 'WITHSCORES')
return {0, tonumber(blocker[2]) - now, calls, period}
"""
)

# ARGV[4]: the token, ARGV[5]: 1 if its request may have been sent, else 0,
# ARGV[6]: the channel. A used slot stays held for `period`; an unused one goes.
_RELEASE: Final = (
    _PRELUDE
    + """
local token = ARGV[4]
local removed = redis.call('ZREM', slots, token)
if ARGV[5] == '1' then
  redis.call('ZADD', slots, now + period, token .. ':released')
  removed = 1
end
if removed == 1 then
  keep_alive()
  redis.call('PUBLISH', ARGV[6], '')
end
return {calls, period}
"""
)

# ARGV[4..]: tokens of slots in flight. `XX`: a slot already released (renamed)
# or expired is left alone.
_RENEW: Final = (
    _PRELUDE
    + """
for i = 4, #ARGV do
  redis.call('ZADD', slots, 'XX', now + lease + period, ARGV[i])
end
keep_alive()
return {calls, period}
"""
)

# ARGV[4]: seconds to pause, in microseconds. A pause never shortens another.
_PAUSE: Final = (
    _PRELUDE
    + """
local wanted = now + tonumber(ARGV[4])
if wanted > pause_until then
  pause_until = wanted
  redis.call('HSET', state, 'pause_until', pause_until)
end
keep_alive()
return {calls, period}
"""
)

# ARGV[4], ARGV[5]: the limit the server stated (calls, period us). Returns
# {lowered, calls, period_us}. As in the in-process limiter, a longer period
# must also cover the slots released under the old one: the cooling ones are
# held longer, and grants pause for as long, past the ones that already freed.
_LOWER: Final = (
    _PRELUDE
    + """
local new_calls, new_period = tonumber(ARGV[4]), tonumber(ARGV[5])
if new_calls * period >= calls * new_period then
  return {0, calls, period}
end
local longer_by = new_period - period
if longer_by > 0 then
  for _, member in ipairs(redis.call('ZRANGE', slots, 0, -1)) do
    if string.sub(member, -9) == ':released' then
      redis.call('ZINCRBY', slots, longer_by, member)
    end
  end
  if now + longer_by > pause_until then
    pause_until = now + longer_by
    redis.call('HSET', state, 'pause_until', pause_until)
  end
end
redis.call('HSET', state, 'calls', new_calls, 'period', new_period)
keep_alive()
return {1, new_calls, new_period}
"""
)


class RedisRateLimit(AsyncClosing):
    """A rate limiter shared through Redis by every process and host using the same key.

    Give it to ``Session(rate_limit=...)`` in every process that uses the account:
    together they never send more than `calls` requests in any `period`-second
    window, and a free slot goes to a waiting process as soon as it frees. A
    rate-limit answer seen by one process pauses all of them, and a lower limit
    learned from the server is kept to by all of them.

    Within a process, waiters are served first come, first served. Close the
    limiter with `aclose` (or ``async with``) once no slot is held; a `Session`
    does not close a limiter it was given.

    Args:
        redis: a Redis URL (``redis://[:password@]host:6379/0``, ``rediss://`` or
            ``unix://``), in which case the limiter makes its client and closes it
            in `aclose`; it counts Redis as unusable after 5 seconds without an
            answer, unless the URL sets ``socket_timeout`` or
            ``socket_connect_timeout``. Or a ``redis.asyncio.Redis`` client, which
            stays yours to close and configure (give it a ``socket_timeout``:
            without one, redis-py before 8 waits for ever on a Redis that stops
            answering).
        calls: the account's limit: at most this many calls...
        period: ...in any window of this many seconds.
        key: the Redis key of the shared limit. Processes share a limit exactly
            when they use the same Redis and the same key, so key it by account,
            e.g. ``f"leadsq-async:ratelimit:{access_key}"`` (never the secret key).
            All processes on one key should be given the same `calls` and `period`.
        lease: seconds a slot in flight stays held without news from its process.
            The limiter renews its slots every ``lease / 3`` seconds while their
            requests last, so this only bounds how long a crashed process keeps
            its slots (until ``lease + period`` after its last renewal).
        fallback: when Redis cannot be used, keep going with an in-process
            limiter of ``calls // fallback_processes`` calls per `period` (at
            least 1), logging one warning, and try Redis again 30 seconds later.
            Off by default: then `RateLimiterUnavailable` is raised.
        fallback_processes: how many processes at most share the key, which sets
            each one's share of the limit while it falls back.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value (before any I/O).
        ImportError: the ``redis`` extra is not installed
            (``pip install 'leadsq-async[redis]'``).
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        calls: int = 25,
        period: float = 5.0,
        *,
        key: str = DEFAULT_KEY,
        lease: float = 30.0,
        fallback: bool = False,
        fallback_processes: int = 4,
    ) -> None:
        configured = RateLimit(calls, period)
        if _to_seconds(lease, "lease") == 0:
            raise ValueError("lease must be more than 0 seconds, got 0")
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        if not key:
            raise ValueError("key must not be empty")
        if not isinstance(fallback, bool):
            raise TypeError(f"fallback must be a bool, not {type(fallback).__name__}")
        if not isinstance(fallback_processes, int) or isinstance(fallback_processes, bool):
            raise TypeError(
                f"fallback_processes must be an int, not {type(fallback_processes).__name__}"
            )
        if fallback_processes < 1:
            raise ValueError(f"fallback_processes must be at least 1, not {fallback_processes}")
        if aioredis is None:  # pragma: no cover - only without the `redis` extra
            raise ImportError(
                "RedisRateLimit needs the redis package: pip install 'leadsq-async[redis]'"
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
        self._limit = configured
        self._key = key
        self._keys = [key, f"{key}:state"]
        self._channel = f"{key}:released"
        self._lease = float(lease)
        self._head = [
            configured.calls,
            _to_microseconds(configured.period),
            _to_microseconds(self._lease),
        ]
        self._address = _address(self._client)
        self._fallback = fallback
        self._fallback_processes = fallback_processes

        self._acquire_script = self._client.register_script(_ACQUIRE)
        self._release_script = self._client.register_script(_RELEASE)
        self._renew_script = self._client.register_script(_RENEW)
        self._pause_script = self._client.register_script(_PAUSE)
        self._lower_script = self._client.register_script(_LOWER)

        # One waiter at a time asks Redis; asyncio.Lock queues the others in
        # arrival order and drops the cancelled ones.
        self._queue = asyncio.Lock()
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
            f"RedisRateLimit(address={self._address!r}, key={self._key!r}, "
            f"rate_limit={self._limit!r})"
        )

    @property
    def rate_limit(self) -> RateLimit:
        """The limit in force for all processes on the key, as last seen in Redis.

        The configured limit, or a lower one learned from the server (by any
        process). While falling back, each process keeps to a share of it.
        """
        return self._limit

    @property
    def key(self) -> str:
        """The Redis key of the shared limit."""
        return self._key

    @property
    def address(self) -> str:
        """Where Redis is, such as ``127.0.0.1:6379/0`` (never with a password)."""
        return self._address

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body: wait for it, then release it on exit.

        ``async with limiter.slot(): <send one request, read its whole answer>``.
        Entry waits, first come first served within the process, until a slot
        is free in Redis and no pause is in force; the slot stays held for
        `period` seconds after the body exits, however it exits. A waiter
        cancelled before its grant takes no slot and blocks nobody.

        Raises:
            RateLimiterUnavailable: Redis cannot be used and ``fallback`` is off.
            RuntimeError: the limiter is closed.
        """
        if self._closed:
            raise RuntimeError("this RedisRateLimit is closed")
        local = self._local_limiter()
        if local is None:
            token = await self._take()
            if token is not None:
                try:
                    yield
                finally:
                    await self._give_back(token)
                return
            local = self._local
            assert local is not None  # _take returns None only after falling back
        async with local.slot():
            yield

    async def pause(self, seconds: float) -> None:
        """Grant no slot to any process on the key for `seconds` from now (Redis time).

        Call it when a rate-limit answer arrives: every process waits it out.
        A pause never shortens one already in force.

        Raises:
            TypeError, ValueError: `seconds` is not a finite number >= 0.
            RateLimiterUnavailable: Redis cannot be used and ``fallback`` is off.
        """
        seconds = _to_seconds(seconds, "seconds")
        local = self._local_limiter()
        if local is None:
            try:
                reply = await self._run(self._pause_script, round(seconds * _MICROSECONDS))
            except RateLimiterUnavailable as exc:
                local = self._fall_back(exc)
            else:
                self._remember_limit(reply[0], reply[1])
                return
        await local.pause(seconds)

    async def lower(self, limit: RateLimit) -> bool:
        """Adopt `limit` for every process on the key if its rate is lower than the current one.

        Returns:
            True if the limit was lowered by this call, False if the limit in
            force was already as low (perhaps lowered by another process).

        Raises:
            TypeError: `limit` is not a `RateLimit`.
            RateLimiterUnavailable: Redis cannot be used and ``fallback`` is off.
        """
        if not isinstance(limit, RateLimit):
            raise TypeError(f"limit must be a RateLimit, not {type(limit).__name__}")
        local = self._local_limiter()
        if local is None:
            try:
                reply = await self._run(
                    self._lower_script, limit.calls, _to_microseconds(limit.period)
                )
            except RateLimiterUnavailable as exc:
                local = self._fall_back(exc)
            else:
                self._remember_limit(reply[1], reply[2])
                if reply[0] and self._local is not None:
                    await self._local.lower(self._share(self._limit))
                return bool(reply[0])
        if not limit.is_slower_than(self._limit):
            return False
        self._limit = limit
        await local.lower(self._share(limit))
        return True

    async def aclose(self) -> None:
        """Stop listening to Redis, and close the client if the limiter made it.

        Call it once no slot is held. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        tasks = [task for task in (self._listener, self._renewer) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Releases under way, and clean-ups that outlived a cancelled caller, finish first.
        while self._background or self._calls:
            await asyncio.gather(*self._background, *self._calls, return_exceptions=True)
        if self._local is not None:
            await self._local.aclose()
        if self._owns_client:
            await self._client.aclose()

    # -- taking and giving back slots in Redis ---------------------------------

    async def _take(self) -> str | None:
        """Wait for a slot in Redis; its token, or None if the limiter fell back meanwhile."""
        async with self._queue:
            if self._local_limiter() is not None:
                return None
            try:
                return await self._acquire()
            except RateLimiterUnavailable as exc:
                self._fall_back(exc)
                return None

    async def _acquire(self) -> str:
        token = uuid.uuid4().hex
        # The script run whose answer is not in yet: if we leave before it is,
        # it may have granted a slot that nobody will use.
        pending: asyncio.Future[Any] | None = None
        try:
            while True:
                listening = self._listening()
                if listening:
                    # Cleared before asking, so a release after the answer wakes us.
                    self._released.clear()
                pending = self._start(self._acquire_script, token)
                granted, wait_us, calls, period_us = await asyncio.shield(pending)
                pending = None
                self._remember_limit(calls, period_us)
                if granted:
                    self._in_flight.add(token)
                    self._keep_renewing()
                    return token
                wait = wait_us / _MICROSECONDS
                if not listening:
                    if await self._start_listening():
                        continue  # a release may have come before we listened: ask again
                    await asyncio.sleep(wait)
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    # Sleep until the next slot frees by itself, or until a
                    # release (by any process) brings that moment forward.
                    await asyncio.wait_for(self._released.wait(), wait)
        except BaseException:
            if pending is not None:
                self._in_background(self._forget(token, after=pending))
            raise

    async def _forget(self, token: str, *, after: asyncio.Future[Any]) -> None:
        """Give back the slot `after` may have granted, once Redis has run it."""
        with contextlib.suppress(Exception):
            await after
        try:
            await self._run(self._release_script, token, 0, self._channel)
        except RateLimiterUnavailable as exc:
            # Then the slot expires by its lease.
            logger.debug("could not give back an unused rate-limit slot: %s", exc)

    async def _give_back(self, token: str) -> None:
        self._in_flight.discard(token)
        try:
            reply = await self._run(self._release_script, token, 1, self._channel)
        except RateLimiterUnavailable as exc:
            # The request is done; its slot expires by its lease, which is safe.
            logger.warning("could not release a rate-limit slot: %s", exc)
            return
        self._remember_limit(reply[0], reply[1])

    def _start(self, script: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        call = asyncio.ensure_future(
            self._translate(lambda: script(keys=self._keys, args=[*self._head, *args]))
        )
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        return call

    async def _run(self, script: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a script; a cancelled caller leaves it to finish in the background.

        Raises:
            RateLimiterUnavailable: Redis failed or could not be reached.
        """
        call = self._start(script, *args)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            self._in_background(_wait_quietly(call))
            raise

    async def _translate(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            try:
                reply = await call()
            except RedisConnectionError:
                # A connection Redis closed while it sat in the pool (a restart, an
                # idle timeout) fails its next command though Redis answers. redis-py
                # has dropped it, so the second run goes over a new one. Every script
                # is safe to run twice: a second acquire finds its slot granted, a
                # second lower finds the limit lowered (and reports it as not by it).
                reply = await call()
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailable(
                f"the rate limiter's Redis at {self._address} failed: {type(exc).__name__}: {exc}",
                address=self._address,
            ) from exc
        if self._falling_back:
            self._falling_back = False
            logger.warning("the rate limiter's Redis at %s answers again", self._address)
        return reply

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _remember_limit(self, calls: int, period_us: int) -> None:
        if calls != self._limit.calls or _to_microseconds(self._limit.period) != period_us:
            self._limit = RateLimit(int(calls), period_us / _MICROSECONDS)

    # -- slots in flight are renewed so only a dead process's expire ----------

    def _keep_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew_while_in_flight())

    async def _renew_while_in_flight(self) -> None:
        try:
            while self._in_flight:
                await asyncio.sleep(self._lease / 3)
                if self._in_flight:
                    try:
                        await self._run(self._renew_script, *self._in_flight)
                    except RateLimiterUnavailable as exc:
                        logger.warning("could not renew rate-limit slots in flight: %s", exc)
        finally:
            self._renewer = None

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
        if self._local is not None and time.monotonic() < self._retry_redis_at:
            return self._local
        return None

    def _fall_back(self, error: RateLimiterUnavailable) -> SlidingWindowLimiter:
        if not self._fallback:
            raise error
        self._retry_redis_at = time.monotonic() + _FALLBACK_RETRY_SECONDS
        if self._local is None:
            # Kept across outages: its slots still count if Redis fails again.
            self._local = SlidingWindowLimiter(self._share(self._limit))
        if not self._falling_back:
            self._falling_back = True
            logger.warning(
                "%s; falling back to an in-process rate limit of %s until it answers again",
                error,
                self._local.rate_limit,
            )
        return self._local

    def _share(self, limit: RateLimit) -> RateLimit:
        return RateLimit(max(1, limit.calls // self._fallback_processes), limit.period)


async def _wait_quietly(call: asyncio.Future[Any]) -> None:
    with contextlib.suppress(Exception):
        await call


def _to_microseconds(seconds: float) -> int:
    # At least 1: a period or lease that rounds to 0 would hold no slot at all.
    return max(1, round(seconds * _MICROSECONDS))


def _address(client: aioredis.Redis) -> str:
    """Where `client` connects, without its password."""
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        where = f"unix://{options['path']}"
    else:
        where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
    return f"{where}/{options.get('db', 0)}"
