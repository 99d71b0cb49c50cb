"""Properties of a windowed feed walk against servers that fail windows, cap what paging
reaches and serve rows past their edges: it ends, yields each row at most once, and when
it does not raise, yields every row of its range."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_feeds import DAY, FeedServer, lead_row, session_for

import leadsq_async as lsq

SPAN = timedelta(hours=12)


async def walk(
    server: FeedServer, window: timedelta, page_size: int, limit: int | None
) -> tuple[list[str], lsq.WindowError | None]:
    got: list[str] = []
    try:
        async with session_for(server) as session:
            feed = session.leads_modified(
                DAY, DAY + SPAN, window=window, page_size=page_size, limit=limit
            )
            async for lead in feed:
                got.append(lead.lead_id)
    except lsq.WindowError as error:
        return got, error
    return got, None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seconds=st.lists(st.integers(min_value=-60, max_value=int(SPAN.total_seconds()) + 60)),
    window_minutes=st.integers(min_value=1, max_value=24 * 60),
    page_size=st.integers(min_value=1, max_value=7),
    fails_over_minutes=st.none() | st.integers(min_value=2, max_value=600),
    reach=st.none() | st.integers(min_value=1, max_value=20),
    slop=st.sampled_from([0, 1]),
    limit=st.none() | st.integers(min_value=0, max_value=30),
)
def test_a_window_walk_yields_each_row_of_its_range_once(
    seconds: list[int],
    window_minutes: int,
    page_size: int,
    fails_over_minutes: int | None,
    reach: int | None,
    slop: int,
    limit: int | None,
) -> None:
    """Each lead at most once; without a WindowError and a limit, exactly the leads in
    [since, until); with a server that serves a second past each edge, those too at most."""
    moments = [DAY + timedelta(seconds=second) for second in seconds]
    rows = [(moment, lead_row(n, moment)) for n, moment in enumerate(moments)]
    rows.sort(key=lambda row: row[0])

    def fails(since: datetime, until: datetime) -> bool:
        return fails_over_minutes is not None and until - since > timedelta(
            minutes=fails_over_minutes
        )

    server = FeedServer(rows, list_key="Leads", fails=fails, reach=reach, slop=slop)
    got, error = asyncio.run(walk(server, timedelta(minutes=window_minutes), page_size, limit))
    assert len(got) == len(set(got))
    assert limit is None or len(got) <= limit
    edge = timedelta(seconds=slop)
    near = {f"lead-{n}" for n, m in enumerate(moments) if DAY - edge <= m < DAY + SPAN + edge}
    inside = {f"lead-{n}" for n, m in enumerate(moments) if DAY <= m < DAY + SPAN}
    assert set(got) <= near
    if error is None and limit is None:
        assert inside <= set(got)
    if error is not None:
        assert error.until - error.since <= timedelta(minutes=1)


def test_the_server_of_the_property_answers_as_documented() -> None:
    """FeedServer serves FromDate..ToDate inclusive: a row in ToDate's second is served."""
    row = lead_row(0, DAY)
    server = FeedServer([(DAY, row)], list_key="Leads")
    body = {
        "Parameter": {"FromDate": "2026-02-28 23:00:00", "ToDate": "2026-03-01 00:00:00"},
        "Paging": {"PageIndex": 1, "PageSize": 10},
    }
    answer = server(httpx.Request("POST", "http://127.0.0.1/v2/x", json=body))
    assert answer.json() == {"RecordCount": 1, "Leads": [row]}
