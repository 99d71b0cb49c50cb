"""The session against the emulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

import leadsq_async as lsq
from leadsq_async.testing import RunningEmulator

FAST = lsq.RetryPolicy(attempts=6, backoff=0.01, max_backoff=0.05)


def session_for(emulator: RunningEmulator, **kwargs: Any) -> lsq.Session:
    kwargs.setdefault("rate_limit", lsq.RateLimit(calls=100, period=0.2))
    kwargs.setdefault("retry", FAST)
    return lsq.Session(emulator.access_key, emulator.secret_key, host=emulator.url, **kwargs)


def fast_window(emulator: RunningEmulator, calls: int = 100, period: float = 0.2) -> None:
    emulator.config.rate_limit_calls = calls
    emulator.config.rate_limit_period = period


@pytest.mark.parametrize("shape", ["empty", "one", "page", "page_plus_one", "thousands"])
async def test_every_opportunity_of_each_lead_shape_arrives_exactly_as_sent(
    lsq_emulator: RunningEmulator, shape: str
) -> None:
    """Each lead shape yields its rows once each, in order, unstructured to exactly the row."""
    fast_window(lsq_emulator)
    lead_id = lsq_emulator.data.leads_by_shape[shape]
    async with session_for(lsq_emulator) as session:
        records = await session.opportunities_of_lead(lead_id, page_size=100).collect()
    expected = lsq_emulator.data.opportunities[lead_id]
    assert sorted(map(lsq.unstructure, records), key=json.dumps) == sorted(expected, key=json.dumps)
    assert len({r.opportunity_id for r in records}) == len(expected)


@pytest.mark.parametrize("shape", ["empty", "one", "page", "page_plus_one", "hundreds"])
async def test_every_activity_of_each_opportunity_shape_arrives(
    lsq_emulator: RunningEmulator, shape: str
) -> None:
    """Each opportunity shape yields all its activities, once each."""
    fast_window(lsq_emulator)
    opportunity_id = lsq_emulator.data.opportunities_by_shape[shape]
    async with session_for(lsq_emulator) as session:
        records = await session.activities_of_opportunity(opportunity_id, page_size=25).collect()
    expected = lsq_emulator.data.activities[opportunity_id]
    assert sorted(r.activity_id for r in records) == sorted(
        row["ProspectActivityId"] for row in expected
    )


async def test_walk_sends_the_minimum_number_of_requests(lsq_emulator: RunningEmulator) -> None:
    """2500 opportunities in pages of 1000 cost exactly three requests."""
    fast_window(lsq_emulator)
    lead_id = lsq_emulator.data.leads_by_shape["thousands"]
    async with session_for(lsq_emulator) as session:
        records = await session.opportunities_of_lead(lead_id).collect()
    assert len(records) == len(lsq_emulator.data.opportunities[lead_id])
    assert lsq_emulator.stats.total == 3


async def test_keys_never_travel_in_the_url(lsq_emulator: RunningEmulator) -> None:
    """The emulator sees no request carrying keys in its URL."""
    fast_window(lsq_emulator)
    async with session_for(lsq_emulator) as session:
        await session.opportunities_of_lead(lsq_emulator.data.leads_by_shape["one"]).collect()
    assert lsq_emulator.stats.keys_in_url == 0
    assert lsq_emulator.stats.total == 1


async def test_clamped_server_still_yields_every_row_once(lsq_emulator: RunningEmulator) -> None:
    """Against a server clamping pages to 300 rows, all 2500 rows arrive once each."""
    fast_window(lsq_emulator)
    lsq_emulator.config.page_size_cap = 300
    lead_id = lsq_emulator.data.leads_by_shape["thousands"]
    async with session_for(lsq_emulator) as session:
        records = await session.opportunities_of_lead(lead_id).collect()
    ids = [r.opportunity_id for r in records]
    assert len(ids) == len(set(ids)) == len(lsq_emulator.data.opportunities[lead_id])


async def test_refused_page_size_is_asked_again_at_1000_and_remembered(
    lsq_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A server refusing pages over 1000 rows costs one refused request, once per session."""
    fast_window(lsq_emulator)
    lsq_emulator.config.page_size_cap_mode = "refuse"
    lead_id = lsq_emulator.data.leads_by_shape["thousands"]
    async with session_for(lsq_emulator) as session:
        with caplog.at_level(logging.WARNING, logger="leadsq_async"):
            records = await session.opportunities_of_lead(lead_id, page_size=5000).collect()
        assert lsq_emulator.stats.total == 1 + 3
        again = await session.opportunities_of_lead(lead_id, page_size=5000).collect()
    assert lsq_emulator.stats.total == 1 + 3 + 3
    expected = sorted(row["OpportunityId"] for row in lsq_emulator.data.opportunities[lead_id])
    assert sorted(r.opportunity_id for r in records) == expected
    assert sorted(r.opportunity_id for r in again) == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "refused pages of 5000 rows" in warnings[0]


async def test_api_error_unrelated_to_page_size_is_raised_after_one_retry_at_1000(
    lsq_emulator: RunningEmulator,
) -> None:
    """An API error that asking for 1000 rows does not cure is raised, and nothing learned."""
    fast_window(lsq_emulator)
    lsq_emulator.config.page_size_cap_mode = "refuse"
    async with session_for(lsq_emulator) as session:
        with pytest.raises(lsq.APIError, match="does not exist"):
            await session.opportunities_of_lead("no-such-lead", page_size=5000).collect()
        assert lsq_emulator.stats.total == 2
        with pytest.raises(lsq.APIError, match="does not exist"):
            await session.opportunities_of_lead("no-such-lead", page_size=1000).collect()
    assert lsq_emulator.stats.total == 3


def connections_opened(caplog: pytest.LogCaptureFixture) -> int:
    """How many TCP connections httpx opened, as its DEBUG log tells."""
    return sum(r.getMessage().startswith("connect_tcp.started") for r in caplog.records)


async def test_connection_idle_for_a_whole_period_is_reused(
    lsq_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the top plan's 5-second period, the next request reuses the connection."""
    fast_window(lsq_emulator, calls=1, period=5.2)
    lead_id = lsq_emulator.data.leads_by_shape["one"]
    async with session_for(lsq_emulator, rate_limit=lsq.RateLimit(1, 5.2)) as session:
        with caplog.at_level(logging.DEBUG, logger="httpcore.connection"):
            for _ in range(2):
                await session.opportunities_of_lead(lead_id).collect()
    assert lsq_emulator.stats.total == 2
    assert connections_opened(caplog) == 1


async def test_rows_inserted_while_paging_do_not_repeat_or_lose_rows(
    lsq_emulator: RunningEmulator,
) -> None:
    """With rows inserted ahead after every page, every original row arrives exactly once."""
    fast_window(lsq_emulator)
    lead_id = lsq_emulator.data.leads_by_shape["thousands"]
    original = {row["OpportunityId"] for row in lsq_emulator.data.opportunities[lead_id]}
    lsq_emulator.config.insert_ahead = 3
    async with session_for(lsq_emulator) as session:
        records = await session.opportunities_of_lead(lead_id, page_size=200).collect()
    ids = [r.opportunity_id for r in records]
    assert len(ids) == len(set(ids))
    assert original <= set(ids)


@pytest.mark.parametrize("status", [429, 200])
async def test_session_never_exceeds_the_server_window(
    lsq_emulator: RunningEmulator, status: int
) -> None:
    """A crawl at full speed draws no rate-limit answer, whatever the answer's status."""
    fast_window(lsq_emulator, calls=5, period=0.3)
    lsq_emulator.config.rate_limit_status = 429 if status == 429 else 200
    lsq_emulator.config.latency = 0.02
    leads = list(lsq_emulator.data.opportunities)[:20]
    async with session_for(lsq_emulator, rate_limit=lsq.RateLimit(5, 0.3)) as session:
        results = [r async for r in session.crawl_opportunities(leads, page_size=100)]
    assert all(r.error is None for r in results)
    assert lsq_emulator.stats.rate_limited == 0
    assert lsq_emulator.stats.most_accepted_in_window == 5


async def test_lower_limit_from_the_server_is_learned(lsq_emulator: RunningEmulator) -> None:
    """A client configured above the account's limit learns the lower one and completes."""
    fast_window(lsq_emulator, calls=3, period=0.3)
    leads = list(lsq_emulator.data.opportunities)[:12]
    async with session_for(lsq_emulator, rate_limit=lsq.RateLimit(30, 0.3)) as session:
        results = [r async for r in session.crawl_opportunities(leads)]
        assert session.limiter.rate_limit == lsq.RateLimit(3, 0.3)
    assert all(r.error is None for r in results)


@pytest.mark.parametrize("kind", ["500", "502", "503", "drop", "truncate"])
async def test_transient_faults_are_retried_and_no_row_is_lost(
    lsq_emulator: RunningEmulator, kind: str
) -> None:
    """With a third of the answers failing, every opportunity still arrives."""
    fast_window(lsq_emulator)
    lsq_emulator.config.fault_rate = 0.3
    lsq_emulator.config.fault_kinds = frozenset({kind})
    lead_id = lsq_emulator.data.leads_by_shape["thousands"]
    retry = lsq.RetryPolicy(attempts=10, backoff=0.01, max_backoff=0.02)
    async with session_for(lsq_emulator, retry=retry) as session:
        records = await session.opportunities_of_lead(lead_id, page_size=250).collect()
        assert session.stats.retries > 0
    assert len({r.opportunity_id for r in records}) == 2500


async def test_slow_answer_times_out_and_is_retried(lsq_emulator: RunningEmulator) -> None:
    """An answer slower than the timeout raises RequestTimeoutError when retries are spent."""
    fast_window(lsq_emulator)
    lsq_emulator.config.fault_rate = 1.0
    lsq_emulator.config.fault_kinds = frozenset({"slow"})
    lsq_emulator.config.slow_seconds = 0.5
    retry = lsq.RetryPolicy(attempts=2, backoff=0.01)
    async with session_for(lsq_emulator, retry=retry, timeout=0.1) as session:
        with pytest.raises(lsq.RequestTimeoutError):
            await session.opportunities_of_lead(lsq_emulator.data.leads_by_shape["one"]).collect()
        assert session.stats.requests == 2


async def test_unknown_lead_is_an_api_error_sent_once(lsq_emulator: RunningEmulator) -> None:
    """An unknown lead raises APIError (500 with the envelope) without a retry."""
    fast_window(lsq_emulator)
    async with session_for(lsq_emulator) as session:
        with pytest.raises(lsq.APIError, match="does not exist") as info:
            await session.opportunities_of_lead("no-such-lead").collect()
    assert info.value.status == 500
    assert info.value.exception_type
    assert lsq_emulator.stats.total == 1


async def test_bad_keys_raise_authentication_error_without_the_secret(
    lsq_emulator: RunningEmulator,
) -> None:
    """Wrong keys raise AuthenticationError, whose text never holds the secret sent."""
    fast_window(lsq_emulator)
    secret = "wrong-secret-value"
    async with lsq.Session("wrong", secret, host=lsq_emulator.url, retry=FAST) as session:
        with pytest.raises(lsq.AuthenticationError) as info:
            await session.opportunities_of_lead("lead").collect()
    assert info.value.status == 401
    assert secret not in str(info.value) + repr(info.value) + info.value.body


async def test_wrong_region_names_the_right_host(lsq_emulator: RunningEmulator) -> None:
    """Calling the wrong region raises AuthenticationError naming the account's host."""
    fast_window(lsq_emulator)
    lsq_emulator.config.wrong_region_host = "api-us11.leadsquared.com"
    async with session_for(lsq_emulator) as session:
        with pytest.raises(lsq.AuthenticationError) as info:
            await session.opportunities_of_lead("lead").collect()
    assert info.value.correct_host == "api-us11.leadsquared.com"


async def test_crawl_reports_a_failing_lead_and_finishes_the_others(
    lsq_emulator: RunningEmulator,
) -> None:
    """An unknown lead among good ones gets its own error; the others complete."""
    fast_window(lsq_emulator)
    good = list(lsq_emulator.data.opportunities)[:5]
    async with session_for(lsq_emulator) as session:
        results = {
            r.lead_id: r async for r in session.crawl_opportunities([*good[:2], "nope", *good[2:]])
        }
    assert isinstance(results["nope"].error, lsq.APIError)
    for lead_id in good:
        assert results[lead_id].error is None
        assert len(results[lead_id].records) == len(lsq_emulator.data.opportunities[lead_id])


async def test_nested_crawl_fetches_every_activity(lsq_emulator: RunningEmulator) -> None:
    """with_activities=True gathers every opportunity's activities in the same crawl."""
    fast_window(lsq_emulator)
    leads = [lead for lead, rows in lsq_emulator.data.opportunities.items() if len(rows) < 20]
    async with session_for(lsq_emulator) as session:
        results = [r async for r in session.crawl_opportunities(leads, with_activities=True)]
    for result in results:
        assert result.error is None
        for opportunity in result.records:
            expected = lsq_emulator.data.activities[opportunity.opportunity_id]
            got = result.activities[opportunity.opportunity_id]
            assert sorted(map(lsq.unstructure, got), key=json.dumps) == sorted(
                expected, key=json.dumps
            )


async def test_crawl_consumes_ids_lazily(lsq_emulator: RunningEmulator) -> None:
    """A crawl never reads far ahead of its concurrency in the id stream."""
    fast_window(lsq_emulator)
    leads = list(lsq_emulator.data.opportunities)[:4]
    taken = 0

    def endless() -> Any:
        nonlocal taken
        while True:
            taken += 1
            yield leads[taken % len(leads)]

    async with session_for(lsq_emulator) as session:
        seen = 0
        async for _ in session.crawl_opportunities(endless(), concurrency=3):
            seen += 1
            if seen == 10:
                break
    assert taken <= 10 + 3 + 3 + 1


async def test_crawl_accepts_an_async_iterable_of_ids(lsq_emulator: RunningEmulator) -> None:
    """Ids may come from an async generator."""
    fast_window(lsq_emulator)
    leads = list(lsq_emulator.data.opportunities)[:3]

    async def ids() -> Any:
        for lead in leads:
            yield lead

    async with session_for(lsq_emulator) as session:
        results = [r async for r in session.crawl_opportunities(ids())]
    assert sorted(r.lead_id for r in results) == sorted(leads)


@pytest.mark.slow
async def test_cancelling_a_crawl_leaves_nothing_running(lsq_emulator: RunningEmulator) -> None:
    """Cancelling the task that iterates a crawl cancels its workers and requests."""
    fast_window(lsq_emulator, calls=2, period=5.0)
    leads = list(lsq_emulator.data.opportunities)

    async with session_for(lsq_emulator, rate_limit=lsq.RateLimit(2, 5.0)) as session:

        async def consume() -> None:
            async for _ in session.crawl_opportunities(leads):
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert all(t.done() for t in session._transport.tasks)
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"lead_ids": "one-lead"}, TypeError),
        ({"lead_ids": 42}, TypeError),
        ({"lead_ids": [], "concurrency": 0}, ValueError),
        ({"lead_ids": [], "page_size": 0}, ValueError),
    ],
)
async def test_bad_crawl_arguments_raise_before_any_request(
    lsq_emulator: RunningEmulator, arguments: dict[str, Any], error: type[Exception]
) -> None:
    """A str of ids, a non-iterable, a zero concurrency or page size raise at the call."""
    async with session_for(lsq_emulator) as session:
        with pytest.raises(error):
            session.crawl_opportunities(**arguments)
    assert lsq_emulator.stats.total == 0


async def test_columns_narrow_the_rows_but_keep_the_ids(lsq_emulator: RunningEmulator) -> None:
    """columns= returns only those fields, plus the record's id and lead id."""
    fast_window(lsq_emulator)
    lead_id = lsq_emulator.data.leads_by_shape["page"]
    async with session_for(lsq_emulator) as session:
        records = await session.opportunities_of_lead(lead_id, columns=["Status"]).collect()
    assert len(records) == 100
    for record in records:
        assert set(lsq.unstructure(record)) == {"OpportunityId", "ProspectId", "Status"}
        assert record.lead_id == lead_id


async def test_sorting_direction_reverses_the_order(lsq_emulator: RunningEmulator) -> None:
    """sort_by with descending=False yields the reverse of descending=True."""
    fast_window(lsq_emulator)
    lead_id = lsq_emulator.data.leads_by_shape["page_plus_one"]
    async with session_for(lsq_emulator) as session:
        newest = await session.opportunities_of_lead(lead_id, sort_by="PACreatedOn").collect()
        oldest = await session.opportunities_of_lead(
            lead_id, sort_by="PACreatedOn", descending=False, page_size=30
        ).collect()
    created = [r.created_on for r in newest]
    assert created == sorted(created, reverse=True)  # type: ignore[type-var]
    assert [r.opportunity_id for r in oldest] == [r.opportunity_id for r in reversed(newest)]


def test_leaving_a_crawl_fed_by_a_paginator_closes_cleanly(lsq_emulator: RunningEmulator) -> None:
    """Breaking out of a crawl whose ids come from a walk reports nothing at loop shutdown."""
    fast_window(lsq_emulator)
    problems: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: problems.append(context))
        lead_id = lsq_emulator.data.leads_by_shape["thousands"]
        async with session_for(lsq_emulator) as session:

            async def opportunity_ids() -> Any:
                async for opportunity in session.opportunities_of_lead(lead_id, page_size=100):
                    yield opportunity.opportunity_id

            seen = 0
            async for _ in session.crawl_activities(opportunity_ids(), concurrency=4):
                seen += 1
                if seen == 5:
                    break

    asyncio.run(main())
    assert problems == []
