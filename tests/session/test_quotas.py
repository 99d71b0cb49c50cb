"""Several limits and daily quotas, session side, against the emulator in virtual time.

A spent quota fails fast with `QuotaExhaustedError` (or is waited out with
``wait_for_quota=True``); a limit learned from a refusal is added beside the
configured ones, never replacing them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from emulator_in_process import client_of, session_on, virtual_app
from fakes import opportunity, session_for

import leadsq_async as lsq
from leadsq_async.testing import Dataset, EmulatorConfig

DATA = Dataset.generate(seed=7, thousands=30, hundreds=30, other_leads=120)
SMALL_LEADS = sorted(lead for lead, rows in DATA.opportunities.items() if 0 < len(rows) <= 12)


def now() -> float:
    """The running loop's clock: the session's, virtual under looptime."""
    return asyncio.get_running_loop().time()


async def crawl_all(session: lsq.Session, leads: list[str]) -> list[lsq.LeadResult]:
    async with session.crawl_opportunities(leads) as results:
        return [result async for result in results]


@pytest.mark.looptime
async def test_a_spent_daily_quota_fails_fast_naming_the_limit_and_when() -> None:
    """With 10 calls a day configured, the 11th request is not sent: QuotaExhaustedError."""
    quota = lsq.RateLimit(10, 86_400)
    app = virtual_app(DATA, EmulatorConfig(rate_limits=["25/5"]))
    async with (
        client_of(app) as client,
        session_on(client, rate_limit=[lsq.RateLimit(25, 5), quota]) as session,
    ):
        before = dt.datetime.now(dt.timezone.utc)
        with pytest.raises(lsq.QuotaExhaustedError) as info:
            await crawl_all(session, SMALL_LEADS[:20])
    assert app.stats.total == 10
    error = info.value
    assert error.limit == quota
    assert error.account_wide
    assert not error.transient
    assert error.retry_at.tzinfo is not None
    assert error.retry_at - before > dt.timedelta(hours=23)


@pytest.mark.looptime
async def test_a_spent_quota_delivers_every_lead_granted_its_requests_then_raises() -> None:
    """A quota of 25 calls under 50 leads at once: the 25 leads granted a request come back
    finished, then QuotaExhaustedError; the leads refused a slot get no result at all."""
    quota = lsq.RateLimit(25, 86_400)
    leads = SMALL_LEADS[:80]
    app = virtual_app(DATA, EmulatorConfig(rate_limits=["100/5"], latency=0.2))
    delivered: list[lsq.LeadResult] = []

    async def crawl(session: lsq.Session) -> None:
        async with session.crawl_opportunities(leads, concurrency=50) as results:
            async for result in results:
                delivered.append(result)

    async with (
        client_of(app) as client,
        session_on(client, rate_limit=[lsq.RateLimit(100, 5), quota]) as session,
    ):
        with pytest.raises(lsq.QuotaExhaustedError) as info:
            await crawl(session)
    assert app.stats.total == 25
    assert info.value.limit == quota
    assert [result.error for result in delivered] == [None] * 25
    for result in delivered:
        rows = DATA.opportunities[result.lead_id]
        assert len(result.records) == len(rows)


@pytest.mark.looptime
async def test_a_spent_quota_ends_the_crawl_without_waiting_for_more_ids() -> None:
    """Ids that come slowly (an hour after the first 30): once the quota is spent and the
    leads granted their calls are delivered, the crawl raises, not waiting for the source."""
    quota = lsq.RateLimit(25, 86_400)
    app = virtual_app(DATA, EmulatorConfig(rate_limits=["100/5"], latency=0.2))
    delivered: list[lsq.LeadResult] = []

    async def slow_ids() -> AsyncIterator[str]:
        for lead in SMALL_LEADS[:30]:
            yield lead
        await asyncio.sleep(3600)
        yield SMALL_LEADS[30]

    async def crawl(session: lsq.Session) -> None:
        async with session.crawl_opportunities(slow_ids(), concurrency=50) as results:
            async for result in results:
                delivered.append(result)

    async with (
        client_of(app) as client,
        session_on(client, rate_limit=[lsq.RateLimit(100, 5), quota]) as session,
    ):
        started = now()
        with pytest.raises(lsq.QuotaExhaustedError):
            await crawl(session)
        assert now() - started < 1
    assert len(delivered) == app.stats.total == 25


@pytest.mark.looptime
async def test_wait_for_quota_waits_for_the_next_slot_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """wait_for_quota=True waits out a spent (scaled) quota, emitting QuotaWait, and warns
    once for the wait however many tasks wait."""
    app = virtual_app(DATA, EmulatorConfig(rate_limits=["25/5", "4/600"]))
    events: list[lsq.Event] = []
    limits = [lsq.RateLimit(25, 5), lsq.RateLimit(4, 600)]
    async with (
        client_of(app) as client,
        session_on(client, rate_limit=limits, wait_for_quota=True) as session,
    ):
        session.events.subscribe(events.append)
        started = now()
        results = await crawl_all(session, SMALL_LEADS[:6])
        took = now() - started
    assert all(result.error is None for result in results)
    assert app.stats.rate_limited == 0
    assert sum(isinstance(event, lsq.QuotaWait) for event in events) == 2
    assert 600 <= took < 700
    warned = [r for r in caplog.records if "is spent: waiting until" in r.getMessage()]
    assert len(warned) == 1


@pytest.mark.looptime
async def test_a_learned_limit_is_added_and_the_configured_one_stays() -> None:
    """Learning '60 in 6 s' while configured 25 per 1 s keeps both: a second crawl after an
    idle spell draws no refusal (it drew 26 when learning replaced the short limit)."""
    app = virtual_app(DATA, EmulatorConfig(rate_limits=["25/1", "60/6"]))
    leads = SMALL_LEADS[:80]
    async with (
        client_of(app) as client,
        session_on(client, rate_limit=lsq.RateLimit(25, 1)) as session,
    ):
        first = await crawl_all(session, leads)
        assert set(session.limiter.rate_limits) == {lsq.RateLimit(25, 1), lsq.RateLimit(60, 6)}
        refusals = app.stats.rate_limited
        await asyncio.sleep(30)
        second = await crawl_all(session, leads)
    # The first crawl learns the quota from refusals (those in flight at the first one are
    # refused too); the second, after an idle spell, draws none: both limits are kept.
    assert refusals > 0
    assert app.stats.rate_limited == refusals
    assert all(result.error is None for result in first + second)


@pytest.mark.looptime
async def test_a_refusal_naming_a_day_fails_fast_instead_of_pausing_a_day() -> None:
    """'1 in 86400 second(s)' ends the call within the retry deadline, not a day later."""
    app = virtual_app(DATA, EmulatorConfig(rate_limits=["1/86400"]))
    async with client_of(app) as client, session_on(client) as session:
        started = now()
        await session.opportunities_of_lead(SMALL_LEADS[0]).collect()
        with pytest.raises(lsq.QuotaExhaustedError) as info:
            await session.opportunities_of_lead(SMALL_LEADS[1]).collect()
        assert now() - started < lsq.RetryPolicy().deadline
    assert info.value.limit == lsq.RateLimit(1, 86_400)


def test_several_limits_are_taken_as_a_sequence() -> None:
    """Session(rate_limit=[...]) enforces each; an empty list is refused."""
    limits = [lsq.RateLimit(10, 5), lsq.RateLimit(10_000, 86_400)]
    session = lsq.Session("a", "b", host="http://127.0.0.1:9", rate_limit=limits)
    assert session.limiter.rate_limits == tuple(limits)
    with pytest.raises(ValueError, match="at least one"):
        lsq.Session("a", "b", host="http://127.0.0.1:9", rate_limit=[])


async def test_a_limiter_to_share_goes_in_limiter() -> None:
    """Session(limiter=) shares the limiter given, and leaves it open."""
    limiter = lsq.SlidingWindowLimiter(lsq.RateLimit(10, 5))
    async with lsq.Session("a", "b", host="http://127.0.0.1:9", limiter=limiter) as session:
        assert session.limiter is limiter
    async with limiter.slot() as grant:  # still usable: the session did not close it
        assert grant == lsq.Grant(0.0, None)


def test_a_limiter_given_as_rate_limit_is_refused_with_the_way_to_share_it() -> None:
    """rate_limit= takes RateLimit values; a limiter there is a TypeError naming limiter=."""
    with pytest.raises(TypeError, match=r"Session\(limiter=\.\.\.\)"):
        lsq.Session(
            "a",
            "b",
            host="http://127.0.0.1:9",
            rate_limit=lsq.SlidingWindowLimiter(),  # type: ignore[arg-type]
        )


def test_rate_limit_and_limiter_together_are_refused_before_anything_is_sent() -> None:
    """Both at once would leave one of them unused: a ValueError when the session is made."""
    with pytest.raises(ValueError, match="not both"):
        lsq.Session(
            "a",
            "b",
            host="http://127.0.0.1:9",
            rate_limit=lsq.RateLimit(10, 5),
            limiter=lsq.SlidingWindowLimiter(),
        )


def test_what_is_no_limiter_is_refused_as_limiter() -> None:
    with pytest.raises(TypeError, match="limiter must be a rate limiter"):
        lsq.Session("a", "b", limiter=lsq.RateLimit(10, 5))  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_a_refusal_naming_an_absurd_limit_is_taken_as_naming_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """'1 in 10000000000000 second(s)' is not learned: the session pauses for its own shortest
    period, retries, and says so once."""
    refusal = {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": "API calls exceeded the limit of 1 in 10000000000000 second(s)",
    }
    answers = [httpx.Response(429, json=refusal) for _ in range(2)]

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop()
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    caplog.set_level(logging.WARNING, logger="leadsq_async")
    refused: list[lsq.RateLimited] = []
    async with session_for(handler, rate_limit=lsq.RateLimit(10, 5)) as session:
        session.events.subscribe(
            lambda event: refused.append(event) if isinstance(event, lsq.RateLimited) else None
        )
        started = now()
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 1
        assert now() - started == 10.0  # two pauses of the configured 5 s
        assert session.limiter.rate_limits == (lsq.RateLimit(10, 5),)
    assert [(event.limit, event.pause) for event in refused] == [(None, 5.0), (None, 5.0)]
    told = [r for r in caplog.records if "not believed" in r.getMessage()]
    assert len(told) == 1
