"""What a crawl has done and has left, in requests, measured from the session's events.

The work unit is the request, not the id: one lead may need one request and
another a hundred. `Workload` counts them from `PageFetched` events. An id's
first page tells how many pages its walk takes (``record_count`` over the page
size); with activities, each of a lead's opportunities is one more walk, whose
length is known once its own first page came and is estimated from the mean
walk until then; the ids not started yet are estimated from the mean id so far.

`Meter` listens to a session (`Session.events`, never polling it) and adds the
pace: requests per second over at least one rate-limit period, the share of the
time the crawl waited for the rate limit (as the limiter says it did, in
`SlotGranted` events, and the pauses it announces in `RateLimited` and `QuotaWait`),
the retries and refusals, and an ETA: the least time the session's limits allow
for the requests left (`least_time`, each slot held for a round trip and a period,
the slots granted lately counted first), plus a round trip and any pause.
"""

from __future__ import annotations

import bisect
import collections
import datetime as _dt
import math
import time
from collections.abc import Callable, Iterable

import attrs

from leadsq_async import (
    Event,
    PageFetched,
    QuotaWait,
    RateLimit,
    RateLimited,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
    Session,
    SlotGranted,
)
from leadsq_async._limits import least_time

from ._counts import CrawlCounts

__all__ = ["ACTIVITIES", "OPPORTUNITIES", "Meter", "Workload"]

#: The endpoints' paths, as events name them (the API's, as docs/LEADSQUARED_API names them).
OPPORTUNITIES = "OpportunityManagement.svc/GetOpportunitiesOfLead"
ACTIVITIES = "OpportunityManagement.svc/GetActivitiesOfOpportunity"

#: How much the latest round trip weighs in the running mean.
_LATENCY_WEIGHT = 0.2
#: The measured rate an ETA may go by spans this many windows (one window: one wave).
_RATE_WINDOWS = 4


@attrs.define
class _Walk:
    """The pages of one id's walk: fetched, and how many it takes as far as known."""

    per_page: int
    pages: int = 0
    expected: int = 1
    last: int | None = None
    record_count: int | None = None
    rows: int = 0

    @property
    def remaining(self) -> int:
        return max(self.expected - self.pages, 0)

    def add(self, event: PageFetched) -> None:
        self.pages += 1
        self.rows += event.rows
        if event.record_count is not None:
            self.record_count = event.record_count
        if event.rows < self.per_page:
            # A short page is the walk's last, wherever the others are.
            self.last = event.page_index
        if self.last is not None:
            known = self.last
        elif self.record_count is not None:
            known = max(-(-self.record_count // self.per_page), event.page_index)
        else:
            known = event.page_index + 1  # a full page and no count: one more at least
        self.expected = max(self.pages, known)


def _first_walk(event: PageFetched) -> _Walk:
    per_page, count = event.page_size, event.record_count
    if count is not None and 0 < event.rows < per_page and event.rows < count:
        per_page = event.rows  # the server clamps pages: the walk asks for this many from now
    return _Walk(per_page=max(per_page, 1))


class Workload:
    """The requests a crawl of ids needs: fetched, known to come, and estimated.

    Args:
        endpoint: the path the ids are walked on.
        child_endpoint: with it, each record of an id's walk is walked there too
            (a lead's opportunities, then each opportunity's activities).
    """

    def __init__(self, endpoint: str, child_endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self.child_endpoint = child_endpoint
        #: Pages fetched: the requests that did their work.
        self.pages = 0
        #: Ids whose first page came.
        self.started = 0
        #: Ids that ended (failed) before their first page.
        self.ended_unstarted = 0
        self._walks: dict[str, _Walk] = {}
        self._children: dict[str, int] = {}
        self._child_walks: dict[str, _Walk] = {}
        self._child_walks_started = 0
        self._child_pages = 0  # the pages every child walk started takes, as far as known

    def add(self, event: PageFetched) -> None:
        """Count a page."""
        self.pages += 1
        id_value = event.id_value
        if id_value is None:
            return
        if event.endpoint == self.endpoint:
            walk = self._walk(self._walks, id_value, event)
            if event.page_index == 1:
                self.started += 1
            if walk is None:
                return
            if self.child_endpoint is not None:
                count = walk.record_count
                self._children[id_value] = walk.rows if count is None else count
            elif not walk.remaining:
                # Nothing more will come for it: a million ids take no memory.
                del self._walks[id_value]
        elif event.endpoint == self.child_endpoint:
            walk = self._child_walks.get(id_value)
            before = 0 if walk is None or event.page_index == 1 else walk.expected
            walk = self._walk(self._child_walks, id_value, event)
            if event.page_index == 1:
                self._child_walks_started += 1
            if walk is not None:
                self._child_pages += walk.expected - before

    def end(self, id_value: str, children: Iterable[str] = (), *, failed: bool = False) -> None:
        """An id is done, or ``failed``: forget its walks (``children``: its child walks' ids).

        Only a failed id needs it when there is no child endpoint: a walk that ends
        is forgotten by itself, and a failed id may have ended before its first page.
        """
        if self._walks.pop(id_value, None) is None and failed:
            self.ended_unstarted += 1
        self._children.pop(id_value, None)
        for child in children:
            self._child_walks.pop(child, None)

    @property
    def known(self) -> float:
        """Requests still to come for the ids started: known, and estimated for child walks
        not started yet (at the mean length of a child walk so far)."""
        left: float = sum(walk.remaining for walk in self._walks.values())
        left += sum(walk.remaining for walk in self._child_walks.values())
        pending = max(sum(self._children.values()) - len(self._child_walks), 0)
        if pending:
            started = self._child_walks_started
            left += pending * (self._child_pages / started if started else 1.0)
        return left

    def left(self, total: int | None, skipped: int = 0) -> float | None:
        """Requests still to come, with ids not started at the mean id so far.

        None when that cannot be told: ``total`` unknown, or ids left and none started.
        """
        if total is None:
            return None
        unstarted = max(total - skipped - self.started - self.ended_unstarted, 0)
        known = self.known
        if not unstarted:
            return known
        if not self.started:
            return None
        return known + unstarted * (self.pages + known) / self.started

    @staticmethod
    def _walk(walks: dict[str, _Walk], id_value: str, event: PageFetched) -> _Walk | None:
        walk = walks.get(id_value)
        if event.page_index == 1:
            walk = walks[id_value] = _first_walk(event)
        if walk is not None:
            walk.add(event)
        return walk


class Meter:
    """Listens to a session's events: the requests done and left, the pace, what slows it.

    Call `listen` to start (it returns the function that stops), `end` as each id
    ends, and `sample` a few times a second (`track` does both).

    Args:
        session: the session to listen to.
        endpoint: the path the ids are walked on (a lead's opportunities by default).
        child_endpoint: with it, each record is walked there too (`Workload`).
        clock: seconds, monotonic: the clock of the loop the session runs on.
        wall: the current UTC time, to place a quota's ``retry_at``.
    """

    def __init__(
        self,
        session: Session,
        *,
        endpoint: str = OPPORTUNITIES,
        child_endpoint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], _dt.datetime] | None = None,
    ) -> None:
        self._session = session
        self._clock = clock
        self._wall = wall or (lambda: _dt.datetime.now(_dt.timezone.utc))
        self.workload = Workload(endpoint, child_endpoint)
        self.started = clock()
        #: Requests sent, retries included.
        self.requests = 0
        self.answers = 0
        #: Records the pages fetched so far held (as they arrive, not as ids end).
        self.records = 0
        #: Retries by the failure's class name.
        self.retries: collections.Counter[str] = collections.Counter()
        #: Rate-limit refusals from the server.
        self.refusals = 0
        #: Seconds no request could be sent after a refusal.
        self.paused_seconds = 0.0
        #: Seconds during which some request waited for its slot, as the limiter reported.
        self.waiting_seconds = 0.0
        #: When a spent quota frees again, while the session waits for it.
        self.quota_until: _dt.datetime | None = None
        self.latency: float | None = None
        self._paused_until = -math.inf
        self._quota_until = -math.inf
        self._sends: collections.deque[float] = collections.deque()
        # The spans of time some request waited, merged (the latest last).
        self._waits: list[tuple[float, float]] = []
        self._waited: collections.deque[tuple[float, float]] = collections.deque()
        # When the latest slots of the shortest limit were granted (its calls at most).
        self._grants: collections.deque[float] = collections.deque()

    # Listening.

    def listen(self) -> Callable[[], None]:
        """Subscribe to the session's events; returns the function that unsubscribes."""
        return self._session.events.subscribe(self.hear)

    def hear(self, event: Event) -> None:
        """Take one event into account (the listener `listen` subscribes)."""
        now = self._clock()
        if isinstance(event, RequestSent):
            self.requests += 1
            self._sends.append(now)
        elif isinstance(event, SlotGranted):
            self._grants.append(now)
            if len(self._grants) > self.limits[0].calls:
                self._grants.popleft()
            if event.waited > 0:
                self._waited_between(now - event.waited, now)
        elif isinstance(event, ResponseReceived):
            self.answers += 1
            seconds = event.seconds
            previous = self.latency
            self.latency = (
                seconds if previous is None else previous + _LATENCY_WEIGHT * (seconds - previous)
            )
        elif isinstance(event, PageFetched):
            self.records += event.rows
            self.workload.add(event)
        elif isinstance(event, RetryScheduled):
            self.retries[event.error_type] += 1
        elif isinstance(event, RateLimited):
            self.refusals += 1
            until = now + event.pause
            self.paused_seconds += max(until - max(self._paused_until, now), 0.0)
            self._paused_until = max(self._paused_until, until)
        elif isinstance(event, QuotaWait):
            self.quota_until = event.retry_at
            self._quota_until = now + (event.retry_at - self._wall()).total_seconds()

    def end(self, id_value: str, children: Iterable[str] = (), *, failed: bool = False) -> None:
        """An id is done or ``failed`` (see `Workload.end`)."""
        self.workload.end(id_value, children, failed=failed)

    def sample(self) -> None:
        """Note the time waited so far; call it a few times a second."""
        now = self._clock()
        if self.quota_until is not None and now >= self._quota_until:
            self.quota_until = None
        self._waited.append((now, self.waiting_seconds))
        span = _RATE_WINDOWS * self.window
        while len(self._waited) > 2 and self._waited[1][0] <= now - span:
            self._waited.popleft()

    # The figures.

    @property
    def elapsed(self) -> float:
        """Seconds since the meter started."""
        return self._clock() - self.started

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        """The limits the session's limiter enforces, shortest period first."""
        limiter = self._session.limiter
        # Until every limiter has `rate_limits` (several limits), the one it has.
        limits: tuple[RateLimit, ...] = getattr(limiter, "rate_limits", (limiter.rate_limit,))
        return limits

    @property
    def window(self) -> float:
        """The seconds rates are measured over: the shortest limit's period plus a round
        trip (a slot is held that long, so the window spans one wave of requests), at
        least 1 s."""
        return max(self.limits[0].period + (self.latency or 0.0), 1.0)

    @property
    def requests_per_second(self) -> float:
        """Requests sent over the last `window` seconds, per second (so over a whole
        window even at the start: a first burst is not a rate)."""
        return self._sent_since(self._clock() - self.window) / self.window

    @property
    def measured_rate(self) -> float | None:
        """Requests per second over the last few windows, once one window has passed."""
        elapsed, window = self.elapsed, self.window
        if elapsed < window:
            return None
        if elapsed <= _RATE_WINDOWS * window:
            return self._sent_since(-math.inf) / elapsed  # the first sends included
        span = _RATE_WINDOWS * window
        return self._sent_since(self._clock() - span) / span

    @property
    def waiting_share(self) -> float:
        """The share of the time some request waited for the rate limit."""
        elapsed = self.elapsed
        return min(self.waiting_seconds / elapsed, 1.0) if elapsed > 0 else 0.0

    @property
    def limit_binds(self) -> bool:
        """Whether the rate limit set the pace lately: over the last few windows, some
        request waited for it at least half of the time."""
        if len(self._waited) < 2:
            return True
        (then, waited_then), (now, waited_now) = self._waited[0], self._waited[-1]
        return now <= then or (waited_now - waited_then) / (now - then) >= 0.5

    @property
    def pages(self) -> int:
        """Pages fetched: the requests that did their work."""
        return self.workload.pages

    def requests_left(self, counts: CrawlCounts) -> float | None:
        """Requests still to come (pages, as retries are not known in advance), or None."""
        return self.workload.left(counts.total, counts.skipped)

    def eta(self, counts: CrawlCounts) -> float | None:
        """Seconds left: the least time the session's limits allow for the requests left
        (`least_time`), plus a round trip and any pause or quota being waited for; when the
        rate limit has not set the pace lately, the pace measured if slower. None until
        it can be told. Retries so far weigh in (answers per page fetched)."""
        left = self.requests_left(counts)
        if left is None:
            return None
        if left <= 0:
            return 0.0
        if self.pages:
            left *= max(self.answers / self.pages, 1.0)  # answered: in flight is not retried
        now = self._clock()
        seconds = self._least_time(math.ceil(left), now)
        seconds += max(self._paused_until - now, self._quota_until - now, 0.0)
        if self.limit_binds:
            return seconds
        # Something else sets the pace (the network, the concurrency): the ETA is
        # never sooner than the rate measured allows.
        measured = self.measured_rate
        return max(seconds, left / measured) if measured else seconds

    # Inside.

    def _least_time(self, requests: int, now: float) -> float:
        """The least time the limits allow for ``requests`` more, and the last answer.

        A slot is held for its round trip and then a period, so each limit counts here
        with its period plus a round trip; and the slots granted within the last such
        period still count, as the first of the schedule: it started when the oldest
        of them was granted.
        """
        latency = self.latency or 0.0
        held = [RateLimit(limit.calls, limit.period + latency) for limit in self.limits]
        span = held[0].period
        # A copy first: `load` reads the figures from a thread of its own while the
        # session's loop adds to them (a copy is made at once, under the GIL).
        recent = [at for at in tuple(self._grants) if at > now - span]
        started = recent[0] if recent else now
        schedule = least_time(held, len(recent) + requests)
        return max(schedule - (now - started), 0.0) + latency

    def _waited_between(self, start: float, end: float) -> None:
        """Count [start, end] as time waited, once however many requests waited in it."""
        waits = self._waits
        while waits and waits[-1][1] >= start:
            earlier_start, earlier_end = waits.pop()
            self.waiting_seconds -= earlier_end - earlier_start
            start, end = min(start, earlier_start), max(end, earlier_end)
        waits.append((start, end))
        self.waiting_seconds += end - start
        horizon = self._clock() - _RATE_WINDOWS * self.window
        if len(waits) > 64 and waits[0][1] < horizon:
            del waits[0]  # kept in the total; a later wait reaches back a period at most

    def _sent_since(self, since: float) -> int:
        now = self._clock()
        while self._sends and self._sends[0] < now - _RATE_WINDOWS * self.window:
            self._sends.popleft()
        return len(self._sends) - bisect.bisect_right(self._sends, since)
