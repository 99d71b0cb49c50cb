"""Exercises the public API for mypy --strict only; pytest does not collect it."""

from __future__ import annotations

import datetime

import httpx

import leadsq_async as lsq


async def walk(session: lsq.Session) -> None:
    async for opportunity in session.opportunities_of_lead("lead", opportunity_type="1"):
        opportunity_id: str = opportunity.opportunity_id
        lead_id: str = opportunity.lead_id
        created: datetime.datetime | None = opportunity.created_on
        print(opportunity_id, lead_id, created)
    async for page in session.opportunities_of_lead("lead").pages():
        items: list[lsq.Opportunity] = page.items
        index: int = page.index
        total: int | None = page.record_count
        print(items, index, total)
    async for activity in session.activities_of_opportunity("opp", page_size=100):
        activity_id: str = activity.activity_id
        print(activity_id, activity.lead_id)
    first: list[lsq.Opportunity] = await session.opportunities_of_lead("l", limit=10).collect()
    print(first)
    async for result in session.crawl_opportunities(["a", "b"], with_activities=True):
        records: list[lsq.Opportunity] = result.records
        error: BaseException | None = result.error
        print(result.lead_id, records, error, result.activities)


async def build() -> None:
    limit = lsq.RateLimit(calls=10, period=5)
    async with lsq.Session(
        "access",
        "secret",
        host="http://127.0.0.1:8000",
        rate_limit=limit,
        timeout=httpx.Timeout(10.0),
        retry=lsq.RetryPolicy(attempts=3),
        client=httpx.AsyncClient(),
    ) as session:
        await walk(session)
    shared = lsq.SlidingWindowLimiter(limit)
    async with lsq.Session("access", "secret", limiter=shared), shared.slot() as grant:
        waited: float = grant.waited
        binding: lsq.RateLimit | None = grant.limit
        print(waited, binding)


def round_trip(row: dict[str, object]) -> dict[str, object]:
    record: lsq.Opportunity = lsq.structure(row, lsq.Opportunity)
    return lsq.unstructure(record)


def handle(error: lsq.LeadSquaredError) -> str | None:
    if isinstance(error, lsq.AuthenticationError):
        return error.correct_host
    if isinstance(error, lsq.APIError):
        return error.exception_type
    return None


async def limit_several() -> None:
    pro = [lsq.RateLimit.parse("10/5s"), lsq.RateLimit.parse("10000/1d")]
    limiter: lsq.RateLimiter = lsq.SlidingWindowLimiter(pro)
    limits: tuple[lsq.RateLimit, ...] = limiter.rate_limits
    shortest: lsq.RateLimit = limiter.rate_limit
    changed: bool = await limiter.learn(lsq.RateLimit(5, 5))
    await limiter.pause(5.0, limit=pro[1])
    try:
        async with limiter.slot(max_wait=30.0):
            pass
    except lsq.QuotaExhaustedError as error:
        retry_at: datetime.datetime = error.retry_at
        # Typed by what it offers (`_errors` imports nothing); it is a RateLimit.
        spent = error.limit if isinstance(error.limit, lsq.RateLimit) else None
        calls: int | None = None if error.limit is None else error.limit.calls
        print(calls)
        print(retry_at, spent)
    seconds: float = lsq.least_time(pro, 50_000)
    print(limits, shortest, changed, seconds)
