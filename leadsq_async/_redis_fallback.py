"""`Fallback`: what a `RedisLimiter` made with ``fallback=True`` keeps to while Redis
cannot be used: an in-process limiter of each process's share of every limit, tried
again against Redis 30 seconds later, and kept across outages so that its slots still
count if Redis fails again."""

from __future__ import annotations

import logging
from typing import Final

from ._aio import LoopClock
from ._errors import RateLimiterUnavailableError
from ._limits import RateLimit, implies
from ._ratelimit import SlidingWindowLimiter

__all__ = ["Fallback", "learned_into"]

logger = logging.getLogger("leadsq_async")

# After Redis failed, how long a process keeps to its local fallback limiter
# before it tries Redis again.
RETRY_SECONDS: Final = 30.0


class Fallback:
    """The local limiter of one `RedisLimiter`, and when to try Redis again."""

    def __init__(self, *, enabled: bool, processes: int, address: str) -> None:
        self.enabled = enabled
        self._processes = processes
        self._address = address
        self._clock = LoopClock()
        self._local: SlidingWindowLimiter | None = None
        self._retry_redis_at = 0.0
        self._falling_back = False

    @property
    def kept(self) -> SlidingWindowLimiter | None:
        """The local limiter, once made, whether or not it is in use now."""
        return self._local

    def current(self) -> SlidingWindowLimiter | None:
        """The local limiter while falling back, until it is time to try Redis again."""
        if self._local is not None and self._clock() < self._retry_redis_at:
            return self._local
        return None

    def share(self, limit: RateLimit) -> RateLimit:
        """This process's share of ``limit`` while it falls back."""
        return RateLimit(max(1, limit.calls // self._processes), limit.period)

    async def fall_back(
        self, error: RateLimiterUnavailableError, limits: tuple[RateLimit, ...]
    ) -> SlidingWindowLimiter:
        """The local limiter to use, Redis having failed with ``error``; ``error`` itself
        when falling back is off.

        Coming from Redis, the local limiter first holds one period of the shortest limit,
        as a key Redis lost does: the slots granted in Redis just before are not its own.
        """
        if not self.enabled:
            raise error
        self._retry_redis_at = self._clock() + RETRY_SECONDS
        if self._local is None:
            self._local = SlidingWindowLimiter([self.share(limit) for limit in limits])
        if not self._falling_back:
            self._falling_back = True
            await self._local.pause(limits[0].period)
            logger.warning(
                "%s; falling back to an in-process rate limit of %s until it answers again",
                error,
                " and ".join(str(self.share(limit)) for limit in limits),
            )
        return self._local

    def answered(self) -> None:
        """Redis answered a script: the outage, if any, is over."""
        if self._falling_back:
            self._falling_back = False
            logger.warning("the rate limiter's Redis at %s answers again", self._address)

    async def aclose(self) -> None:
        if self._local is not None:
            await self._local.aclose()


def learned_into(
    limits: tuple[RateLimit, ...], limit: RateLimit
) -> tuple[tuple[RateLimit, ...], bool]:
    """``limits`` with ``limit`` learned, as `RedisLimiter.learn` does; and whether that
    changed them."""
    same = [known for known in limits if known.period == limit.period]
    if same and same[0].calls <= limit.calls:
        return limits, False
    if not same and any(implies(known, limit) for known in limits):
        return limits, False
    others = [known for known in limits if known.period != limit.period]
    return tuple(sorted([*others, limit], key=lambda known: known.period)), True
