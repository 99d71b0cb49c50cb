"""A crawl over several "days" of a daily quota, side by side in one run.

LeadSquared's plans enforce a short limit and a daily quota at once (Pro: 10 per
5 s and 10,000 a day). A real day is too long to measure, so the emulator is
served on a loopback socket with both scaled down: 25 calls in any 1 second and
200 in any 20 seconds (the "day"), counted where requests arrive, with a 50 ms
simulated round trip. The leads crawled need R = 800 requests at the least, four
days' quota. Two clients crawl them in turn, each against a freshly reset
emulator:

- **both limits**: ``Session(rate_limit=[RateLimit(25, 1), RateLimit(200, 20)])``,
  which must draw no refusal and finish within 1.05 times the optimum;
- **short limit only**: ``Session(rate_limit=RateLimit(25, 1))``, which does not
  know the quota and must learn it from a refusal ("API calls exceeded the limit
  of 200 in 20 second(s)").

Each is measured by:

- time / optimum, where the optimum is the earliest the last of R requests can
  be answered under both limits, ``least_time(limits, R) + round trip``: waves
  of 25 a second until a day's 200 are spent, then the next day, 67 s + one
  round trip for R = 800;
- time / safe optimum, the same for a client that cannot see the server's
  clock and so counts each period from the answer, as this library does: each
  wave of the binding limit, of 25 within a day or the first of a new day,
  then costs its period plus a round trip,
  ``least_time([25 per (1 s + rtt), 200 per (20 s + rtt)], R) + rtt``;
- requests / R (a refused request is sent again), and the refusals drawn.

Where the both-limits client's time goes, traced once (68.33 s for an optimum
of 67.05 s) by following its last answer back through the slot releases that
freed each grant, ten waves to the first: 67.00 s of periods (three days and
seven waves of the last day, as in the optimum); 1.20 s of the eleven round
trips on that chain, 109 ms on average where 50 ms are simulated (the chain
runs through the slowest answers of the waves; all round trips: median 64 ms,
one in ten over 120 ms, the client's and the emulator's work on top of the
simulated network, both in this process); 0.06 s of the limiter's timer waking
late, 4 ms of its 0.1% bucket rounding (at most 20 ms of a 20-second period, per
day); and 0.07 s before and during the first wave's grants, as the crawl starts.

What the short-limit client pays to learn: on the first day it sends a ninth
wave, refused until the first refusal comes back. It then keeps to the quota,
but cannot know when the day's first requests reached the server (it counted
only the last second), so it waits a whole day from the refusal: its second day
starts some 9 seconds (the ninth wave, 8 s and a round trip) later than the
optimum's, once. Later days follow at one period and a round trip each.

Run it with ``python -m benchmarks.quota`` from the repository root (about two
and a half minutes).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

import attrs

import leadsq_async as lsq
from benchmarks.crawl import Cost
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

SHORT = lsq.RateLimit(25, 1.0)
DAY = lsq.RateLimit(200, 20.0)
LIMITS = (SHORT, DAY)
DAYS = 4
ROUND_TRIP = 0.05
PAGE_SIZE = 1000
SEED = 11
# Dataset.generate's shaped leads need 8 pages (the one of 2500 opportunities takes 3);
# each further lead has at most 12 opportunities, one page.
OTHER_LEADS = DAYS * DAY.calls - 8
#: The both-limits client must finish within this multiple of the optimum.
TARGET = 1.05
CLIENTS = {"both limits": LIMITS, "short limit only": (SHORT,)}


@attrs.frozen(kw_only=True)
class Outcome(Cost):
    """What one client's crawl cost, which limits refused it, and which it kept to at the end."""

    refused_by: dict[lsq.RateLimit, int]
    limits_after: tuple[lsq.RateLimit, ...]

    @property
    def refusals(self) -> int:
        return sum(self.refused_by.values())


def dataset() -> Dataset:
    """The leads crawled: the same every run."""
    return Dataset.generate(SEED, other_leads=OTHER_LEADS)


def pages_needed(data: Dataset) -> int:
    """The fewest requests that fetch every lead's opportunities, PAGE_SIZE rows a page."""
    return sum(max(1, math.ceil(len(rows) / PAGE_SIZE)) for rows in data.opportunities.values())


def optimum(requests: int) -> float:
    """The earliest the last request can be answered under every limit."""
    return lsq.least_time(LIMITS, requests) + ROUND_TRIP


def safe_optimum(requests: int) -> float:
    """The same when every period is counted from the answer: each costs a round trip more."""
    stretched = [lsq.RateLimit(limit.calls, limit.period + ROUND_TRIP) for limit in LIMITS]
    return lsq.least_time(stretched, requests) + ROUND_TRIP


async def crawl(emulator: RunningEmulator, limits: Sequence[lsq.RateLimit]) -> lsq.Session:
    """One crawl over every lead, the largest first; raises if any lead failed or came
    back short. Returns the (closed) session, for the limits it ended with."""
    data = emulator.data
    # The lead of 2500 opportunities first: its pages 2 and 3 wait for page 1's answer.
    leads = sorted(data.opportunities, key=lambda lead: -len(data.opportunities[lead]))
    session = lsq.Session(
        emulator.access_key, emulator.secret_key, host=emulator.url, rate_limit=list(limits)
    )
    async with session:
        async for result in session.crawl_opportunities(leads, page_size=PAGE_SIZE):
            if result.error is not None:
                raise result.error
            if len(result.records) != len(data.opportunities[result.lead_id]):
                raise RuntimeError(f"lead {result.lead_id}: wrong number of opportunities")
    return session


async def measure(name: str, emulator: RunningEmulator, limits: Sequence[lsq.RateLimit]) -> Outcome:
    """Run one crawl against a freshly reset emulator and read its statistics."""
    emulator.app.wait_idle(timeout=30.0)
    emulator.app.reset()  # the rate-limit windows too: nothing is left of the other crawl
    started = time.perf_counter()
    session = await crawl(emulator, limits)
    seconds = time.perf_counter() - started
    stats = emulator.stats
    minimum = pages_needed(emulator.data)
    return Outcome(
        name=name,
        seconds=seconds,
        requests=stats.total,
        minimum=minimum,
        refused_by=stats.rate_limited_by,
        limits_after=session.limiter.rate_limits,
        optimum=optimum(minimum),
        safe_optimum=safe_optimum(minimum),
    )


async def compare() -> list[Outcome]:
    """Each client's crawl in turn, against one emulator enforcing both limits."""
    config = EmulatorConfig(rate_limits=LIMITS, latency=ROUND_TRIP)
    with serve_in_thread(EmulatorApp(dataset(), config)) as emulator:
        return [await measure(name, emulator, limits) for name, limits in CLIENTS.items()]


def run() -> list[Outcome]:
    """Both clients, one after the other."""
    return asyncio.run(compare())


def title(outcomes: list[Outcome]) -> str:
    return (
        f"A {DAYS}-day crawl under {SHORT} and {DAY} (the day), "
        f"{ROUND_TRIP * 1000:g} ms round trip, R = {outcomes[0].minimum} requests"
    )


def refusals(outcome: Outcome) -> str:
    """``0``, or ``3 (200 calls per 20 s)``: how many, and the limits they named."""
    named = ", ".join(
        f"{count} of {limit}" if len(outcome.refused_by) > 1 else str(limit)
        for limit, count in outcome.refused_by.items()
    )
    return f"{outcome.refusals} ({named})" if named else "0"


def verdict(outcomes: list[Outcome]) -> str:
    """Whether the both-limits client met the target, and against which optimum."""
    both = outcomes[0]
    met = [
        label
        for label, ratio in (("optimum", both.time_ratio), ("safe optimum", both.safe_time_ratio))
        if ratio <= TARGET
    ]
    if both.refusals or not met:
        return f"{both.name}: target missed ({TARGET}x the optimum with 0 refusals)"
    return f"{both.name}: within {TARGET}x of the {' and of the '.join(met)}, 0 refusals"


def table(outcomes: list[Outcome]) -> str:
    """The figures as printed: one line per client."""
    lines = [
        title(outcomes),
        f"  {'client':<18} {'time/optimum':>12} {'time/safe opt.':>14} "
        f"{'requests/min':>12}  {'refusals':<26} limits at the end",
    ]
    for o in outcomes:
        after = ", ".join(map(str, o.limits_after))
        lines.append(
            f"  {o.name:<18} {o.time_ratio:>12.3f} {o.safe_time_ratio:>14.3f} "
            f"{o.request_ratio:>12.3f}  {refusals(o):<26} {after}"
        )
    lines.append(f"  {verdict(outcomes)}")
    return "\n".join(lines)


def markdown(outcomes: list[Outcome]) -> list[str]:
    """The docs page's section, as lines."""
    rows = [
        "## A daily quota, scaled down",
        "",
        f"The emulator enforces {SHORT} and {DAY} at once, a scaled-down day, with a "
        f"{ROUND_TRIP * 1000:g} ms round trip; the leads need R = {outcomes[0].minimum} "
        f"requests, {DAYS} days' quota. One client is configured with both limits, the "
        "other with the short one only, and learns the quota from the server's refusal. "
        "The *optimum* is the earliest the last answer can arrive under both limits, "
        "`least_time(limits, R) + round trip`; the *safe optimum* the same when every "
        "period, a wave of 25 or a day, also waits out a round trip.",
        "",
        "| client | time / optimum | time / safe optimum | requests / minimum | refusals |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| {o.name} | {o.time_ratio:.3f} | {o.safe_time_ratio:.3f} | {o.request_ratio:.3f} "
        f"| {refusals(o)} |"
        for o in outcomes
    ]
    return [
        *rows,
        "",
        f"{verdict(outcomes)}. The client that knows only the short limit is refused once "
        "it has spent the first day, learns the quota from the message, and from then on "
        "keeps to it; not knowing when that day began at the server, it waits a whole day "
        "from the refusal: the time it had spent in the first day (some 9 s) is lost, once.",
        "",
    ]


if __name__ == "__main__":
    print(table(run()))
