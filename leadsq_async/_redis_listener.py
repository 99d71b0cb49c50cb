"""`ReleaseListener`: wakes a process's waiters for a `RedisLimiter` slot as soon as any
process on the key releases one, by a task subscribed to the key's release channel, so
that a waiter sleeps until a release or its known deadline instead of polling Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from ._aio import cancel_and_wait

try:
    from redis import asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - only without the `redis` extra
    aioredis = None  # type: ignore[assignment]
    RedisError = OSError  # type: ignore[assignment,misc]

__all__ = ["ReleaseListener"]

logger = logging.getLogger("leadsq_async")

# How long the listener waits for a release at a time; any finite wait will do.
_LISTEN_SECONDS: Final = 60.0


class ReleaseListener:
    """Listens on ``channel`` for releases; `nap` sleeps until one (or a timeout)."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._released = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[bool] | None = None

    @property
    def listening(self) -> bool:
        """Whether a subscription is in force, so that a release will wake `nap`."""
        ready = self._ready
        return (
            self._task is not None
            and not self._task.done()
            and ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.result()
        )

    def expect(self) -> None:
        """Forget the releases heard so far: called before asking Redis, so that a release
        after its answer wakes the next `nap`."""
        self._released.clear()

    async def start(self) -> bool:
        """Subscribe to the release channel; True once Redis confirmed it."""
        if self._task is None or self._task.done():
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.ensure_future(self._listen(self._ready))
        assert self._ready is not None
        return await asyncio.shield(self._ready)

    async def nap(self, seconds: float, *, wake: bool) -> None:
        """Sleep ``seconds``, or until a release (by any process) if ``wake``."""
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

    async def aclose(self) -> None:
        """Stop listening."""
        if self._task is not None:
            await cancel_and_wait([self._task])

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
