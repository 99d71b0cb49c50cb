"""The slots one limit holds: `Window` counts the released slots of one period by when
they free again, in at most about `BUCKETS_PER_PERIOD` buckets, and enforces the
configured or learned limit of that period (see "How the rate limiters work")."""

from __future__ import annotations

import math
from collections import deque

from ._limits import BUCKETS_PER_PERIOD, RateLimit, implies, learned_lifetime

__all__ = ["Window", "a_little_later", "keep_few_learned"]


def a_little_later(*terms: float) -> float:
    """The sum of ``terms``, a few units in the last place later: no earlier than the sum
    of the exact values they were rounded from (a deadline ``r + Q`` moved to ``r + P``
    must not come before ``r + P`` computed directly)."""
    total = math.fsum(terms)
    return total + 4 * math.ulp(max(abs(total), *map(abs, terms)))


class Window:
    """The slots held under one period: counts of released slots by when they free again.

    The limit it enforces is the configured one, or a learned one with fewer calls; a
    window with neither (a learned limit that expired) enforces nothing, but still counts
    releases for a while in case the server names its limit again.
    """

    __slots__ = (
        "blocked_until",
        "bucket_start",
        "configured",
        "cooling",
        "counts",
        "deadlines",
        "learned",
        "learned_until",
        "merge_within",
        "period",
    )

    def __init__(self, period: float, configured: RateLimit | None = None) -> None:
        self.period = period
        self.merge_within = period / BUCKETS_PER_PERIOD
        self.configured = configured
        self.learned: RateLimit | None = None
        self.learned_until = -math.inf
        # No grant before this: releases the window was made too late to count (see learn).
        self.blocked_until = -math.inf
        # Buckets of released slots: deadlines ascending, counts beside them.
        self.deadlines: deque[float] = deque()
        self.counts: deque[int] = deque()
        self.cooling = 0
        self.bucket_start = -math.inf

    @property
    def limit(self) -> RateLimit | None:
        """The limit enforced, or None for a window kept only for its count."""
        if self.learned is None:
            return self.configured
        if self.configured is None or self.learned.calls < self.configured.calls:
            return self.learned
        return self.configured

    def hold(self, deadline: float, count: int = 1) -> None:
        """Hold ``count`` released slots until ``deadline`` (or a little later)."""
        if self.deadlines:
            # Later than asked is always safe, and keeps the deadlines sorted.
            deadline = max(deadline, self.deadlines[-1])
            if deadline - self.bucket_start < self.merge_within:
                self.deadlines[-1] = deadline
                self.counts[-1] += count
                self.cooling += count
                return
        self.deadlines.append(deadline)
        self.counts.append(count)
        self.cooling += count
        self.bucket_start = deadline

    def expire(self, now: float) -> None:
        deadlines, counts = self.deadlines, self.counts
        while deadlines and deadlines[0] <= now:
            deadlines.popleft()
            self.cooling -= counts.popleft()

    def frees_at(self, index: int) -> float:
        """When released slot ``index`` (0 for the first to free) frees."""
        for deadline, count in zip(self.deadlines, self.counts, strict=True):
            if index < count:
                return deadline
            index -= count
        raise IndexError(index)


def keep_few_learned(windows: list[Window], most: int) -> None:
    """Forget learned limits beyond ``most``: first one that the other limits imply (a
    configured limit of its period included), then the one named longest ago (whose
    lifetime started first). A window left with no limit is dropped with its count."""
    while True:
        learned = [w for w in windows if w.learned is not None]
        if len(learned) <= most:
            return

        def implied(window: Window) -> bool:
            assert window.learned is not None
            others = (w.limit for w in windows if w is not window)
            return window.limit is not window.learned or any(
                implies(other, window.learned) for other in others if other is not None
            )

        def named_at(window: Window) -> float:
            assert window.learned is not None
            return window.learned_until - learned_lifetime(window.learned)

        evicted = min(learned, key=lambda w: (not implied(w), named_at(w)))
        evicted.learned = None
        if evicted.configured is None:
            windows.remove(evicted)
