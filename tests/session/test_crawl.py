"""The fan-out machinery behind Session.crawl_*, without HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import httpx
import pytest
from fakes import opportunity, session_for

import leadsq_async as lsq
from leadsq_async._fanout import Crawl


@pytest.mark.looptime
async def test_crawl_ends_when_a_call_below_swallows_the_cancellation() -> None:
    """A worker whose call swallows its cancellation does not keep the crawl from closing."""
    first_call: set[asyncio.Task[Any]] = set()
    both_waiting = asyncio.Event()

    async def work(item: str) -> str:
        task = asyncio.current_task()
        assert task is not None
        if task not in first_call:
            first_call.add(task)
            if len(first_call) == 2:
                both_waiting.set()
            # As a library with a shielded clean-up may do on Python 3.10.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)
        return item

    async def consume() -> None:
        async for _ in Crawl(
            map(str, itertools.count()), work, concurrency=2, spawn=asyncio.ensure_future
        ):
            pass

    consumer = asyncio.ensure_future(consume())
    await both_waiting.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer, timeout=2)


async def test_crawl_surfaces_an_error_reading_the_ids() -> None:
    """An id source that fails raises its error from the crawl, after the ids before it."""

    def ids() -> Any:
        yield "a"
        raise OSError("the ids file went away")

    async def work(item: str) -> str:
        return item

    seen: list[str] = []

    async def consume() -> None:
        async for result in Crawl(ids(), work, concurrency=1, spawn=asyncio.ensure_future):
            seen.append(result)

    with pytest.raises(OSError, match="went away"):
        await consume()
    assert seen == ["a"]


@pytest.mark.looptime
async def test_results_finished_before_the_ids_failed_come_before_the_error() -> None:
    """Every result finished when reading the ids fails is delivered, then the error."""

    def ids() -> Any:
        yield from ("a", "b", "c", "d", "e")
        raise OSError("the ids file went away")

    async def work(item: str) -> str:
        await asyncio.sleep(1)
        return item

    seen: list[str] = []

    async def consume_slowly() -> None:
        async for result in Crawl(ids(), work, concurrency=5, spawn=asyncio.ensure_future):
            seen.append(result)
            await asyncio.sleep(10)  # the others finish meanwhile

    with pytest.raises(OSError, match="went away"):
        await consume_slowly()
    assert sorted(seen) == ["a", "b", "c", "d", "e"]


@pytest.mark.looptime
async def test_a_cancellation_inside_one_ids_work_is_that_ids_failure() -> None:
    """A CancelledError raised in one lead's work (by a listener), not by the crawl, fails
    that lead, reported as its result; the crawl goes on with the others."""

    def cancel_lead_3(event: lsq.Event) -> None:
        if isinstance(event, lsq.PageFetched) and event.id_value == "lead-3":
            raise asyncio.CancelledError

    leads = [f"lead-{n}" for n in range(8)]

    async def handler(request: httpx.Request) -> httpx.Response:
        return lead_rows(request)

    async with session_for(handler) as session:
        session.events.subscribe(cancel_lead_3)
        async with session.crawl_opportunities(leads) as results:
            by_id = {result.lead_id: result async for result in results}
    assert sorted(by_id) == leads
    assert by_id["lead-3"].error is not None
    assert isinstance(by_id["lead-3"].error.__cause__, asyncio.CancelledError)
    assert "cancelled" in str(by_id["lead-3"].error)
    assert all(by_id[lead].error is None for lead in leads if lead != "lead-3")


def lead_rows(request: httpx.Request) -> httpx.Response:
    """Every lead has one opportunity named after it."""
    lead = request.url.params["leadId"]
    return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1, lead)]})


@pytest.mark.looptime
async def test_leaving_the_async_with_block_cancels_the_work_at_once() -> None:
    """`async with session.crawl_opportunities(ids) as results:` cancels every task on exit."""
    started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(3600)
        return lead_rows(request)

    async with session_for(handler) as session:
        async with session.crawl_opportunities(f"lead-{n}" for n in range(10)) as results:
            waiting = asyncio.ensure_future(results.__anext__())
            await started.wait()
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        assert not session._transport.tasks
        assert session.limiter.in_flight == 0  # type: ignore[attr-defined]


@pytest.mark.looptime
async def test_an_account_wide_error_ends_the_crawl_after_a_handful_of_requests() -> None:
    """Wrong keys over a million ids cost at most the first wave of slots, then raise."""
    sent = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        await asyncio.sleep(0.01)
        return httpx.Response(401, json={"Status": "Error", "ExceptionMessage": "Invalid keys"})

    async def crawl_all(session: lsq.Session) -> None:
        async with session.crawl_opportunities(f"lead-{n}" for n in range(1_000_000)) as results:
            async for _ in results:
                pass

    async with session_for(handler, rate_limit=lsq.RateLimit(25, 5)) as session:
        with pytest.raises(lsq.AuthenticationError):
            await crawl_all(session)
    assert sent <= 25


@pytest.mark.looptime
async def test_a_per_id_failure_stays_a_result_and_the_crawl_goes_on() -> None:
    """ "Lead does not exist" ends one lead; the others come back with their records."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["leadId"] == "lead-2":
            envelope = {"Status": "Error", "ExceptionMessage": "Lead does not exist"}
            return httpx.Response(500, json=envelope)
        return lead_rows(request)

    async with (
        session_for(handler) as session,
        session.crawl_opportunities(["lead-1", "lead-2", "lead-3"]) as results,
    ):
        by_id = {result.lead_id: result async for result in results}
    assert isinstance(by_id["lead-2"].error, lsq.APIError)
    assert not by_id["lead-2"].error.transient
    assert [r.lead_id for r in by_id["lead-3"].records] == ["lead-3"]


@pytest.mark.looptime
async def test_a_huge_limit_crawling_three_ids_starts_three_tasks() -> None:
    """RateLimit(calls=10**7, period=1) over three ids starts no more tasks than ids."""
    most = 0
    crawls: list[Crawl[lsq.LeadResult]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal most
        most = max(most, len(crawls[0]._tasks))
        return lead_rows(request)

    limit = lsq.RateLimit(calls=10**7, period=1)
    async with session_for(handler, rate_limit=limit) as session:
        crawls.append(session.crawl_opportunities(["a", "b", "c"]))
        async with crawls[0] as results:
            found = sorted([result.lead_id async for result in results])
    assert found == ["a", "b", "c"]
    assert crawls[0]._concurrency == 100
    assert most <= 3


def test_default_concurrency_follows_the_shortest_limit_with_a_cap() -> None:
    """Twice the calls of the rate limit, at least 4, at most 100."""
    session = lsq.Session("a", "b", host="http://127.0.0.1:9", rate_limit=lsq.RateLimit(10, 5))
    assert session.crawl_opportunities([])._concurrency == 20
    huge = lsq.Session("a", "b", host="http://127.0.0.1:9", rate_limit=lsq.RateLimit(10**7, 1))
    assert huge.crawl_opportunities([])._concurrency == 100
