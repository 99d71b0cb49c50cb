"""Mirroring an account through the account-wide feeds against the per-lead crawl.

One emulated account: 2,000 leads, about 8,000 opportunities of three types and
about 30,000 activities (``Dataset.generate``, plus leads with no opportunity
added through the account's change API to make up 2,000), served on a
loopback socket with the top plan's limit enforced (25 calls in any sliding
5-second window) and a simulated round trip. Figures:

- calls: the calls the feeds need to walk every opportunity and every activity
  (``opportunities_of_type`` for each type, ``activities_modified`` over all
  time), counted by the emulator, against the calls of the per-lead crawl with
  activities (``crawl_opportunities(leads, with_activities=True)``). The crawl
  at full length would take over half an hour at 25 calls per 5 s, so its calls
  are computed from the account: one per page of each lead's opportunities (at
  least one per lead) plus one per page of each opportunity's activities (at
  least one per opportunity). The formula is checked on a sample of leads,
  crawled for real at a time-scaled limit, whose calls the emulator counts.
  The crawl does not reach the activities on no opportunity at all; the feed
  walks them too.
- time: the feed walk's time against the safe optimum for its calls, the
  earliest the last of N calls can be answered by a client that cannot see the
  server's clock: ``floor((N - 1) / 25) * (5 s + round trip) + round trip``
  (see ``benchmarks.crawl``).

Run it with ``python -m benchmarks.feeds`` from the repository root.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import attrs

import leadsq_async as lsq
from benchmarks import crawl
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

CALLS, PERIOD = crawl.CALLS, crawl.PERIOD
ROUND_TRIP = 0.05
LEADS = 2000
TYPES = ("12000", "12001", "12002")
#: The sample's limit, the top plan's scaled down tenfold in time: its calls are what it checks.
SAMPLE_LIMIT = lsq.RateLimit(CALLS, PERIOD / 10)
SAMPLE_LEADS = 60
#: The largest page each per-lead endpoint serves (the crawl asks for it).
PAGE = 1000
#: Before every generated date.
EPOCH = dt.datetime(2018, 12, 1, tzinfo=dt.timezone.utc)
ACTIVITIES = "ProspectActivity.svc/RetrieveRecentlyModified"


@attrs.frozen(kw_only=True)
class Figures:
    """The feeds' calls and time, and the crawl's calls, for one account."""

    leads: int
    opportunities: int
    activities: int
    activities_on_opportunities: int
    feed_calls: int
    activity_calls: int
    feed_seconds: float
    crawl_calls: int
    sample_leads: int
    sample_calls: int
    sample_formula: int
    rejections: int

    @property
    def call_ratio(self) -> float:
        """How many times fewer calls the feeds need than the crawl."""
        return self.crawl_calls / self.feed_calls

    @property
    def safe_optimum(self) -> float:
        return crawl.safe_optimum(self.feed_calls, ROUND_TRIP)

    @property
    def time_ratio(self) -> float:
        """The feed walk's time / the safe optimum for its calls."""
        return self.feed_seconds / self.safe_optimum


def workload(seed: int = 11) -> Dataset:
    """About 8,000 opportunities of three types and 30,000 activities on 1,056 leads (one of
    them with 1,500 opportunities, one opportunity with 1,000 activities)."""
    return Dataset.generate(
        seed,
        opportunity_types=len(TYPES),
        thousands=1500,
        other_leads=1050,
        hundreds=1000,
        activities_per_lead=24,
    )


def pages(rows: int) -> int:
    """Requests to read ``rows`` rows at ``PAGE`` a page: one at least."""
    return max(1, -(-rows // PAGE))


def crawl_calls(data: Dataset, leads: list[str]) -> int:
    """The calls of ``crawl_opportunities(leads, with_activities=True)``: each lead's pages of
    opportunities, and each of their opportunities' pages of activities."""
    total = 0
    for lead in leads:
        rows = data.opportunities.get(lead, [])
        total += pages(len(rows))
        total += sum(pages(len(data.activities.get(row["OpportunityId"], []))) for row in rows)
    return total


def session_for(emulator: RunningEmulator, limit: lsq.RateLimit) -> lsq.Session:
    return lsq.Session(
        emulator.access_key, emulator.secret_key, host=emulator.url, rate_limit=limit
    )


async def walk_feeds(emulator: RunningEmulator) -> tuple[set[str], set[str], float]:
    """Every opportunity (type by type) and every activity through the feeds, at once;
    returns their ids and the seconds taken."""
    until = emulator.app.account.now().replace(microsecond=0) + dt.timedelta(seconds=1)
    async with session_for(emulator, lsq.RateLimit(CALLS, PERIOD)) as session:

        async def of_type(code: str) -> list[str]:
            return [o.opportunity_id async for o in session.opportunities_of_type(code)]

        async def activities() -> list[str]:
            return [a.activity_id async for a in session.activities_modified(EPOCH, until)]

        started = time.perf_counter()
        found = await asyncio.gather(activities(), *(of_type(code) for code in TYPES))
        seconds = time.perf_counter() - started
    activity_ids, *by_type = found
    opportunity_ids = [found_id for ids in by_type for found_id in ids]
    if len(set(activity_ids)) != len(activity_ids):
        raise RuntimeError("an activity came twice")
    if len(set(opportunity_ids)) != len(opportunity_ids):
        raise RuntimeError("an opportunity came twice")
    return set(opportunity_ids), set(activity_ids), seconds


async def crawl_sample(emulator: RunningEmulator, leads: list[str]) -> int:
    """Crawl ``leads`` with activities at the sample's limit; the calls the emulator counted."""
    # Let the top plan's window empty, then count only the sample's calls.
    await asyncio.sleep(PERIOD + ROUND_TRIP)
    emulator.config.rate_limits = (SAMPLE_LIMIT,)
    emulator.stats.reset()
    async with session_for(emulator, SAMPLE_LIMIT) as session:
        async for result in session.crawl_opportunities(leads, with_activities=True):
            if result.error is not None:
                raise result.error
    return emulator.stats.total


async def measure() -> Figures:
    app = EmulatorApp(
        workload(),
        EmulatorConfig(rate_limit_calls=CALLS, rate_limit_period=PERIOD, latency=ROUND_TRIP),
    )
    account = app.account
    while len(account.data.opportunities) < LEADS:
        account.add_lead()
    data = app.data
    leads = list(data.opportunities)
    opportunities = {row["ProspectActivityId"] for row in account.opportunities()}
    every_activity = account.activities()
    activities = {row["ProspectActivityId"] for row in every_activity}
    on_opportunities = sum(len(rows) for rows in data.activities.values())
    with serve_in_thread(app) as emulator:
        # Only the feeds' calls count (nothing was sent before: the window is empty).
        app.stats.reset()
        found_opportunities, found_activities, seconds = await walk_feeds(emulator)
        feed_calls, rejections = emulator.stats.total, emulator.stats.rate_limited
        activity_calls = emulator.stats.by_endpoint.get(ACTIVITIES, 0)
        if found_opportunities != opportunities or found_activities != activities:
            raise RuntimeError("the feeds did not yield every opportunity and activity")
        # The sample: the multi-page lead, the lead of the 1,000-activity opportunity, others.
        shaped = [data.leads_by_shape[shape] for shape in data.leads_by_shape]
        holder = next(
            lead
            for lead, rows in data.opportunities.items()
            if any(len(data.activities.get(r["OpportunityId"], [])) >= PAGE for r in rows)
        )
        sample = list(dict.fromkeys([*shaped, holder, *leads[-SAMPLE_LEADS:], *leads[:10]]))
        sample_calls = await crawl_sample(emulator, sample)
    return Figures(
        leads=len(leads),
        opportunities=len(opportunities),
        activities=len(activities),
        activities_on_opportunities=on_opportunities,
        feed_calls=feed_calls,
        activity_calls=activity_calls,
        feed_seconds=seconds,
        crawl_calls=crawl_calls(data, leads),
        sample_leads=len(sample),
        sample_calls=sample_calls,
        sample_formula=crawl_calls(data, sample),
        rejections=rejections,
    )


def lines(figures: Figures) -> list[str]:
    """The figures as the docs page shows them: a sentence, a blank line, a list."""
    f = figures
    return [
        f"One account of {f.leads:,} leads, {f.opportunities:,} opportunities of {len(TYPES)} "
        f"types and {f.activities:,} activities ({f.activities_on_opportunities:,} of them on "
        f"opportunities), {CALLS} calls per {PERIOD:g} s enforced, "
        f"{ROUND_TRIP * 1000:.0f} ms round trip.",
        "",
        f"- per-lead crawl with activities, calls / the feeds' calls: {f.call_ratio:.1f} "
        f"({f.crawl_calls:,} / {f.feed_calls:,}; expected: at least 50)",
        f"- the crawl's calls are computed from the account; on {f.sample_leads} leads crawled "
        f"(at {SAMPLE_LIMIT.calls} per {SAMPLE_LIMIT.period:g} s), counted / computed: "
        f"{f.sample_calls / f.sample_formula:.3f} ({f.sample_calls} / {f.sample_formula})",
        f"- feed walk time / safe optimum for its {f.feed_calls} calls: {f.time_ratio:.3f} "
        f"({f.rejections} rate-limit answers; {f.activity_calls} of the calls are activity "
        "windows, in time order, the next ones' first pages fetched ahead once the window "
        "size is settled)",
    ]


def run() -> Figures:
    """Measure once; print and return the figures."""
    figures = asyncio.run(measure())
    if figures.sample_calls != figures.sample_formula:
        raise RuntimeError(
            f"the crawl's calls formula is wrong: the sample took {figures.sample_calls} calls, "
            f"the formula says {figures.sample_formula}"
        )
    print("Account-wide feeds against the per-lead crawl")
    print("\n".join(f"  {line}" for line in lines(figures) if line))
    return figures


if __name__ == "__main__":
    run()
