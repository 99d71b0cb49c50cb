"""What a feed walk says it has left (`PageIterator.pages_left`, a sync's ETA): once its first
page came, the pages fetched and the pages it says are left add up to the pages it fetches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_feeds import DAY, FeedServer, lead_row, session_for

import leadsq_async as lsq


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("page_size", "fetched"),
    [
        # 144 rows a day, over a quarter page: a day a window, two pages each.
        (100, 60),
        # Windows of 1, 2, 4 and 8 days while they hold under a quarter page, then the rest.
        (5000, 5),
    ],
)
async def test_pages_fetched_and_left_add_up_to_the_walk(page_size: int, fetched: int) -> None:
    """Leads every ten minutes for 30 days: before page 1 nothing is told; after it, at every
    page, fetched + left is what the walk fetches in all; 0 is left at the end."""
    moments = [DAY + timedelta(minutes=10 * n) for n in range(30 * 144)]
    server = FeedServer([(m, lead_row(n, m)) for n, m in enumerate(moments)], list_key="Leads")
    pages: list[lsq.PageFetched] = []
    sums: list[int] = []
    async with session_for(server) as session:
        session.events.subscribe(
            lambda event: pages.append(event) if isinstance(event, lsq.PageFetched) else None
        )
        walk = session.leads_modified(DAY, DAY + timedelta(days=30), page_size=page_size).pages()
        assert walk.pages_left is None
        async for _page in walk:
            left = walk.pages_left
            assert left is not None
            sums.append(len(pages) + left)
        assert walk.pages_left == 0
    assert len(server.bodies) == len(pages) == fetched
    assert sums == [fetched] * len(sums)
