"""A feed walk looking ahead: once its windows' size is settled it fetches the next windows'
first pages ahead, and what it says it has left (`PageIterator.pages_left`, a sync's ETA)
adds up, with the pages fetched, to the pages it fetches."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest
from test_feeds import DAY, FeedServer, lead_row, session_for

import leadsq_async as lsq


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("page_size", "fetched"),
    [
        # 144 rows a day, over a quarter page: a day a window, two pages each.
        (100, 20),
        # Windows of 1, 2 and 4 days while they hold under a quarter page, then the rest.
        (5000, 4),
    ],
)
async def test_pages_fetched_and_left_add_up_to_the_walk(page_size: int, fetched: int) -> None:
    """Leads every ten minutes for 10 days: before page 1 nothing is told; after it, at every
    page, fetched + left is what the walk fetches in all; 0 is left at the end."""
    moments = [DAY + timedelta(minutes=10 * n) for n in range(10 * 144)]
    server = FeedServer([(m, lead_row(n, m)) for n, m in enumerate(moments)], list_key="Leads")
    pages: list[lsq.PageFetched] = []
    sums: list[int] = []
    async with session_for(server) as session:
        session.events.subscribe(
            lambda event: pages.append(event) if isinstance(event, lsq.PageFetched) else None
        )
        walk = session.leads_modified(DAY, DAY + timedelta(days=10), page_size=page_size).pages()
        assert walk.pages_left is None
        async for _page in walk:
            left = walk.pages_left
            assert left is not None
            sums.append(len(pages) + left)
        assert walk.pages_left == 0
    assert len(server.bodies) == len(pages) == fetched
    assert sums == [fetched] * len(sums)


@pytest.mark.looptime
async def test_windows_of_a_settled_size_are_fetched_ahead() -> None:
    """Hour windows of six leads, a page of 20 (over a quarter page: the size stays), half a
    second a round trip: the 24 windows of a day go four at a time, not one after another,
    and every lead still comes once, in order, from windows that tile the day."""
    moments = [DAY + timedelta(minutes=10 * n) for n in range(144)]
    server = FeedServer([(m, lead_row(n, m)) for n, m in enumerate(moments)], list_key="Leads")
    in_flight, most = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.5)
        in_flight -= 1
        return server(request)

    loop = asyncio.get_running_loop()
    async with session_for(slow) as session:
        started = loop.time()
        walk = session.leads_modified(
            DAY, DAY + timedelta(days=1), page_size=20, window=timedelta(hours=1)
        )
        leads = [lead.lead_id async for lead in walk]
        elapsed = loop.time() - started
    assert leads == [f"lead-{n}" for n in range(144)]
    asked = server.windows_asked()
    assert len(asked) == 24
    assert sorted(asked) == [
        (f"2026-03-01 {hour:02}:00:00", f"2026-03-01 {hour:02}:59:59") for hour in range(24)
    ]
    assert most == 4  # four windows ahead (as many as pages are), never more
    # One after another, they would take 12 s.
    assert elapsed <= 24 / 4 * 0.5 + 1.0, elapsed


@pytest.mark.looptime
async def test_a_window_ahead_that_fails_is_split_and_those_after_it_asked_again() -> None:
    """Hour windows fetched ahead; the one of 10:00 fails while over half an hour: it is
    walked in halves, the windows ahead of it are dropped and asked again at half an hour
    (never again at the size that failed), and every lead comes once, in order."""
    moments = [DAY + timedelta(minutes=10 * n) for n in range(144)]
    ten = DAY + timedelta(hours=10)

    def fails(since: datetime, until: datetime) -> bool:
        return until - since > timedelta(minutes=30) and since <= ten < until

    rows = [(m, lead_row(n, m)) for n, m in enumerate(moments)]
    server = FeedServer(rows, list_key="Leads", fails=fails)
    async with session_for(server) as session:
        walk = session.leads_modified(
            DAY, DAY + timedelta(days=1), page_size=20, window=timedelta(hours=1)
        )
        leads = [lead.lead_id async for lead in walk]
    assert leads == [f"lead-{n}" for n in range(144)]
    asked = [
        (datetime.fromisoformat(since), datetime.fromisoformat(to) + timedelta(seconds=1))
        for since, to in server.windows_asked()
    ]
    half = asked.index(
        (ten.replace(tzinfo=None), (ten + timedelta(minutes=30)).replace(tzinfo=None))
    )
    assert all(until - since <= timedelta(minutes=30) for since, until in asked[half:]), asked
    eleven = (ten + timedelta(hours=1)).replace(tzinfo=None)
    assert (eleven, eleven + timedelta(minutes=30)) in asked[half:]  # asked again
    assert any(since > ten.replace(tzinfo=None) for since, _ in asked[:half])  # fetched ahead
