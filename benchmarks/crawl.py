"""Crawls against a strict sliding-window server, side by side in one run.

The emulator is served on a loopback socket with the top plan's limit (25
calls in any 5-second window, counted where requests arrive) and a simulated
network round trip. Each variant crawls the same leads, needing R requests at
the least, and is measured by:

- crawl time / optimum, where the optimum is the earliest the last of R
  requests can be answered without exceeding the window:
  ``floor((R - 1) / calls) * period + round trip``;
- crawl time / safe optimum, the same for a client that cannot see the
  server's clock and so must assume a request arrived as late as its answer
  came back: each wave then costs ``period + round trip``;
- requests / R, and the rate-limit answers drawn.

Three comparisons:

1. `AGAINST_AIOLIMITER`: this library's crawl, against a hand-written httpx loop paced by
   ``aiolimiter.AsyncLimiter(25, 5)`` that waits a second and retries when it
   is refused (50 ms round trip);
2. `SLOTS_AT_300_MS`: ``Session.crawl_opportunities`` against a hand-written
   ``asyncio.gather`` over the leads with the same session, at 300 ms; and
   the same crawl with each slot's period counted from the send instead of
   from the answer (`CountedFromTheSend`), the only way to approach the
   window optimum at that latency;
3. `SLOTS_AT_300_TO_600_MS`: the same crawls when the round trip varies between 300 and
   600 ms.

Counting from the send is refused in both: the time from a send to the
server's count varies even when the simulated network's does not (connections
opening, scheduling at both ends), and each refusal pauses every task for a
period. This is why no client that keeps this library's guarantee (never more than
25 in any window, whatever the latency) comes within 5% of the window optimum
at 300 ms: it cannot tell when a request reached the server, so each slot
waits a period after the answer, and each wave of 25 costs ``period + round
trip``, 1.06 times the optimum at 300 ms.

Run it with ``python -m benchmarks.crawl`` from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import httpx
from aiolimiter import AsyncLimiter

import leadsq_async as lsq
from leadsq_async import RetryPolicy
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

CALLS, PERIOD = 25, 5.0
OPPORTUNITIES_PATH = "OpportunityManagement.svc/GetOpportunitiesOfLead"

# The comparisons, by what each measures (their tables' titles).
AGAINST_AIOLIMITER = "Against httpx paced by AsyncLimiter(25, 5), 50 ms round trip"
SLOTS_AT_300_MS = "Slots counted from the answer or from the send, 300 ms round trip"
SLOTS_AT_300_TO_600_MS = "Slots counted from the answer or from the send, 300 to 600 ms round trip"
#: What each comparison puts side by side, a sentence under its table's title.
DESCRIPTIONS = {
    AGAINST_AIOLIMITER: "This library's crawl beside a hand-written httpx loop paced by "
    "`aiolimiter.AsyncLimiter(25, 5)`, which waits a second and tries again when refused.",
    SLOTS_AT_300_MS: "`Session.crawl_opportunities` beside an `asyncio.gather` over the leads "
    "with the same session, and the same crawl with each slot's period counted from the send "
    "instead of from the answer.",
    SLOTS_AT_300_TO_600_MS: "The library's crawl and the crawl counting slots from the send, "
    "when the round trip varies from one request to the next.",
}


@attrs.frozen(kw_only=True)
class Cost:
    """What one crawl cost, as ratios to the least it could: the benchmarks' common figures."""

    name: str
    seconds: float
    requests: int
    minimum: int
    optimum: float
    safe_optimum: float

    @property
    def time_ratio(self) -> float:
        return self.seconds / self.optimum

    @property
    def safe_time_ratio(self) -> float:
        return self.seconds / self.safe_optimum

    @property
    def request_ratio(self) -> float:
        return self.requests / self.minimum


@attrs.frozen(kw_only=True)
class Outcome(Cost):
    """What one variant's crawl cost, and how the server's window took it."""

    rejections: int
    most_in_window: int


def workload(leads: int, seed: int = 7) -> Dataset:
    """A dataset whose leads need one page each, plus the 2500-row lead (3 pages)."""
    return Dataset.generate(seed, thousands=2500, other_leads=leads, hundreds=30)


def minimum_requests(data: Dataset, page_size: int = 1000) -> int:
    """Pages needed to read every lead's opportunities: one at least per lead."""
    return sum(max(1, -(-len(rows) // page_size)) for rows in data.opportunities.values())


def optimum(requests: int, round_trip: float) -> float:
    """The earliest the last request can be answered within the window."""
    return lsq.RateLimit(CALLS, PERIOD).least_time(requests) + round_trip


def safe_optimum(requests: int, round_trip: float) -> float:
    """The same when each wave must also wait out the previous wave's round trip."""
    return lsq.RateLimit(CALLS, PERIOD + round_trip).least_time(requests) + round_trip


async def measure(
    name: str, emulator: RunningEmulator, crawl: Callable[[], Awaitable[Any]]
) -> Outcome:
    """Run one crawl against a freshly reset emulator and read its statistics."""
    emulator.app.wait_idle(timeout=30.0)
    emulator.app.reset()
    latency = emulator.config.latency
    started = time.perf_counter()
    await crawl()
    seconds = time.perf_counter() - started
    stats = emulator.stats
    minimum = minimum_requests(emulator.data)
    return Outcome(
        name=name,
        seconds=seconds,
        requests=stats.total,
        minimum=minimum,
        rejections=stats.rate_limited,
        most_in_window=stats.most_accepted_in_window,
        optimum=optimum(minimum, latency),
        safe_optimum=safe_optimum(minimum, latency),
    )


def session_for(
    emulator: RunningEmulator,
    limiter: lsq.RateLimiter | None = None,
    retry: RetryPolicy | None = None,
) -> lsq.Session:
    return lsq.Session(
        emulator.access_key,
        emulator.secret_key,
        host=emulator.url,
        rate_limit=lsq.RateLimit(CALLS, PERIOD) if limiter is None else None,
        limiter=limiter,
        retry=retry,
    )


async def library_crawl(
    emulator: RunningEmulator,
    rate_limit: lsq.RateLimiter | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """This library: one crawl call over every lead."""
    async with session_for(emulator, rate_limit, retry) as session:
        async for result in session.crawl_opportunities(list(emulator.data.opportunities)):
            if result.error is not None:
                raise result.error


async def gather_crawl(emulator: RunningEmulator) -> None:
    """The same session, with a hand-written asyncio.gather over every lead."""
    async with session_for(emulator) as session:
        await asyncio.gather(
            *(session.opportunities_of_lead(lead).collect() for lead in emulator.data.opportunities)
        )


class CountedFromTheSend:
    """A rate limiter whose slots cool down from the send instead of from the answer.

    It takes a slot of this library's sliding-window limiter and gives it back
    at once, as the request leaves: no more than 25 requests *leave* in any
    window. They also *arrive* no more than 25 to a window only if every
    request takes exactly as long to be counted, which nothing guarantees.
    """

    def __init__(self) -> None:
        self._inner = lsq.SlidingWindowLimiter(lsq.RateLimit(CALLS, PERIOD))

    @property
    def rate_limits(self) -> tuple[lsq.RateLimit, ...]:
        return self._inner.rate_limits

    @property
    def rate_limit(self) -> lsq.RateLimit:
        return self._inner.rate_limit

    @contextlib.asynccontextmanager
    async def slot(self, *, max_wait: float | None = None) -> AsyncIterator[lsq.Grant]:
        async with self._inner.slot(max_wait=max_wait) as grant:
            pass
        yield grant

    async def pause(self, seconds: float, *, limit: lsq.RateLimit | None = None) -> None:
        await self._inner.pause(seconds, limit=limit)

    async def learn(self, limit: lsq.RateLimit) -> bool:
        return await self._inner.learn(limit)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def send_counted_crawl(emulator: RunningEmulator) -> None:
    """This library's crawl, but with slots counted from the send (`CountedFromTheSend`).

    Everything else is the same, so the difference is the counting alone. A
    rate-limit answer pauses every task for a period and is retried, up to 50
    times, so the crawl completes whatever it draws.
    """
    await library_crawl(emulator, CountedFromTheSend(), RetryPolicy(attempts=50, deadline=600.0))


async def aiolimiter_crawl(emulator: RunningEmulator) -> None:
    """A hand-written httpx loop paced by AsyncLimiter(25, 5), as integrators write it."""
    limiter = AsyncLimiter(CALLS, PERIOD)
    url = f"{emulator.base_url}{OPPORTUNITIES_PATH}"
    headers = {"x-LSQ-AccessKey": emulator.access_key, "x-LSQ-SecretKey": emulator.secret_key}

    async def one_lead(client: httpx.AsyncClient, lead_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            async with limiter:
                response = await client.post(
                    url,
                    params={"leadId": lead_id},
                    headers=headers,
                    json={"Paging": {"PageIndex": page, "PageSize": 1000}},
                )
            body = response.json()
            if response.status_code == 429 or body.get("Status") == "Error":
                await asyncio.sleep(1.0)  # refused: wait a little and try the page again
                continue
            rows.extend(body["List"])
            if len(rows) >= body["RecordCount"] or not body["List"]:
                return rows
            page += 1

    async with httpx.AsyncClient(timeout=60.0) as client:
        await asyncio.gather(*(one_lead(client, lead) for lead in emulator.data.opportunities))


async def compare(
    round_trip: float, leads: int, variants: dict[str, Any], *, jitter: float = 0.0
) -> list[Outcome]:
    """Each variant's crawl in turn, against one emulator; ``jitter`` adds up to that many
    seconds to each request's round trip (the optimum counts only ``round_trip``)."""
    config = EmulatorConfig(
        rate_limit_calls=CALLS, rate_limit_period=PERIOD, latency=round_trip, jitter=jitter
    )
    app = EmulatorApp(workload(leads), config)
    outcomes = []
    with serve_in_thread(app) as emulator:
        for name, crawl in variants.items():
            outcomes.append(await measure(name, emulator, functools.partial(crawl, emulator)))
            # Let the server's window empty so the next variant starts from nothing.
            await asyncio.sleep(PERIOD + round_trip)
    return outcomes


def report(title: str, outcomes: list[Outcome]) -> None:
    print(title)
    print(
        f"  {'variant':<34} {'time/optimum':>12} {'time/safe opt.':>14} "
        f"{'requests/min':>12} {'rejections':>10} {'max in window':>13}"
    )
    for o in outcomes:
        print(
            f"  {o.name:<34} {o.time_ratio:>12.3f} {o.safe_time_ratio:>14.3f} "
            f"{o.request_ratio:>12.3f} {o.rejections:>10d} {o.most_in_window:>10d}/{CALLS}"
        )


def run(leads: int = 170) -> dict[str, list[Outcome]]:
    """Every comparison; returns their outcomes by comparison."""
    results = {
        AGAINST_AIOLIMITER: asyncio.run(
            compare(
                0.05,
                leads,
                {
                    "leadsq-async crawl": library_crawl,
                    "httpx + AsyncLimiter(25, 5)": aiolimiter_crawl,
                },
            )
        ),
        SLOTS_AT_300_MS: asyncio.run(
            compare(
                0.3,
                leads,
                {
                    "leadsq-async crawl_opportunities": library_crawl,
                    "same Session, asyncio.gather": gather_crawl,
                    "same, slots counted from the send": send_counted_crawl,
                },
            )
        ),
        SLOTS_AT_300_TO_600_MS: asyncio.run(
            compare(
                0.3,
                leads,
                {
                    "leadsq-async crawl_opportunities": library_crawl,
                    "same, slots counted from the send": send_counted_crawl,
                },
                jitter=0.3,
            )
        ),
    }
    for title, outcomes in results.items():
        report(f"Crawl against a strict 25-per-5-s window, {title}", outcomes)
    return results


if __name__ == "__main__":
    run()
