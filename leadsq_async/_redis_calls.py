"""`ScriptCalls`: how a `RedisLimiter` runs the Lua scripts of its key: with the head
of arguments every script takes (time, lease, epoch, the configured limits), Redis'
failures turned into `RateLimiterUnavailableError`, the limits in force and the epoch
each reply reports taken in, and calls a cancelled caller left finishing in the
background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from . import _redis_scripts as scripts
from ._errors import RateLimiterUnavailableError
from ._limits import RateLimit
from ._redis_learn import LEARN

try:
    from redis import asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - only without the `redis` extra
    aioredis = None  # type: ignore[assignment]
    RedisConnectionError = RedisError = OSError  # type: ignore[assignment,misc]

__all__ = ["MICROSECONDS", "InFlight", "ScriptCalls", "address_of", "to_microseconds"]

logger = logging.getLogger("leadsq_async")

MICROSECONDS: Final = 1_000_000


class ScriptCalls:
    """The scripts of one key, and the state their replies report.

    ``now`` gives the scripts' time (-1: Redis' own clock); ``on_answer`` is called
    whenever Redis answers, ``on_lost`` when a reply shows that Redis lost the key.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        key: str,
        configured: tuple[RateLimit, ...],
        *,
        lease: float,
        address: str,
        now: Callable[[], int],
        on_answer: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.acquire = client.register_script(scripts.ACQUIRE)
        self.release = client.register_script(scripts.RELEASE)
        self.renew = client.register_script(scripts.RENEW)
        self.pause = client.register_script(scripts.PAUSE)
        self.learn = client.register_script(LEARN)
        #: The limits in force, as the last reply reported them.
        self.limits = configured
        self._configured = configured
        self._keys = [key, f"{key}:state"]
        self._lease = lease
        self._address = address
        self._now = now
        self._on_answer = on_answer
        self._on_lost = on_lost
        self._reported_limits: list[int] = []
        # The state's epoch as last seen: another one means Redis lost the state.
        self._epoch = ""
        self._background: set[asyncio.Task[Any]] = set()
        self._calls: set[asyncio.Future[Any]] = set()

    async def drain(self) -> None:
        """Wait for the calls under way and the work left in the background."""
        while self._background or self._calls:
            await asyncio.gather(*self._background, *self._calls, return_exceptions=True)

    def start(self, script: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        """Run `script` with the shared head of arguments; its result, once the limits
        and epoch it reports are taken in."""
        head = [
            self._now(),
            to_microseconds(self._lease),
            self._epoch,
            uuid.uuid4().hex,
            len(self._configured),
        ]
        for limit in self._configured:
            head += [limit.calls, to_microseconds(limit.period)]
        arguments = [*head, *args]
        call = asyncio.ensure_future(
            self._translate(lambda: script(keys=self._keys, args=arguments))
        )
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        return call

    async def run(self, script: Callable[..., Awaitable[Any]], *args: Any) -> list[int]:
        """Run a script; a cancelled caller leaves it to finish in the background.

        Raises:
            RateLimiterUnavailableError: Redis failed or could not be reached.
        """
        call = self.start(script, *args)
        try:
            result: list[int] = await asyncio.shield(call)
        except asyncio.CancelledError:
            self.in_background(_wait_quietly(call))
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
        self._on_answer()
        result, epoch, limits = reply
        self._take_in(epoch.decode() if isinstance(epoch, bytes) else str(epoch), limits)
        return [int(value) for value in result]

    def _take_in(self, epoch: str, limits: list[int]) -> None:
        """Remember the limits in force and the epoch a script reported."""
        if limits != self._reported_limits:
            self._reported_limits = limits
            self.limits = tuple(
                RateLimit(int(calls), period_us / MICROSECONDS)
                for calls, period_us in zip(limits[::2], limits[1::2], strict=True)
            )
        if epoch == self._epoch:
            return
        if self._epoch:
            logger.warning(
                "the rate limiter's Redis at %s lost the shared limit (restarted empty, "
                "or its key was deleted): no slot for %s s, and longer limits count from zero",
                self._address,
                f"{min(self.limits[0].period, scripts.RECOVERY_SECONDS):g}",
            )
            self._on_lost()
        self._epoch = epoch

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class InFlight:
    """This process's slots in flight, renewed every ``lease / 3`` while any is, so that
    only the slots of a process that died expire by their lease."""

    def __init__(self, calls: ScriptCalls, lease: float, channel: str) -> None:
        self._calls = calls
        self._lease = lease
        self._channel = channel
        self._tokens: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    def add(self, token: str) -> None:
        self._tokens.add(token)
        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew_while_in_flight())

    async def release(self, token: str) -> None:
        """Give back the slot of ``token``, its request done; the processes waiting hear."""
        self._tokens.discard(token)
        try:
            await self._calls.run(self._calls.release, token, 1, self._channel)
        except RateLimiterUnavailableError as exc:
            # The request is done; its slot expires by its lease, which is safe.
            logger.warning("could not release a rate-limit slot: %s", exc)

    async def forget(self, token: str, *, after: asyncio.Future[Any]) -> None:
        """Give back the slot ``after`` may have granted (its caller left), once Redis ran it."""
        with contextlib.suppress(Exception):
            await after
        try:
            await self._calls.run(self._calls.release, token, 0, self._channel)
        except RateLimiterUnavailableError as exc:
            # Then the slot expires by its lease.
            logger.debug("could not give back an unused rate-limit slot: %s", exc)

    async def renew(self, *, again: bool) -> None:
        """Renew the leases; ``again``: count the slots anew (Redis lost them)."""
        if not self._tokens:
            return
        try:
            await self._calls.run(self._calls.renew, int(again), *self._tokens)
        except RateLimiterUnavailableError as exc:
            logger.warning("could not renew rate-limit slots in flight: %s", exc)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)

    async def _renew_while_in_flight(self) -> None:
        try:
            while self._tokens:
                await asyncio.sleep(self._lease / 3)
                await self.renew(again=False)
        finally:
            self._renewer = None


async def _wait_quietly(call: asyncio.Future[Any]) -> None:
    with contextlib.suppress(Exception):
        await call


def to_microseconds(seconds: float, *, least: int = 1) -> int:
    """Seconds in the scripts' unit; at least 1 by default: a period or lease that rounds
    to 0 would hold no slot at all."""
    return max(least, round(seconds * MICROSECONDS))


def address_of(client: aioredis.Redis) -> str:
    """Where `client` connects, without its password."""
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        where = f"unix://{options['path']}"
    else:
        where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
    return f"{where}/{options.get('db', 0)}"
