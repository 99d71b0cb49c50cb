"""The account-wide feeds against small servers that follow the documented shapes, and
misbehave on purpose: windows exact at their edges, split when they fail, never truncated."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import leadsq_async as lsq

UTC = timezone.utc
DAY = datetime(2026, 3, 1, tzinfo=UTC)
LEADS = "LeadManagement.svc/Leads.RecentlyModified"
ACTIVITIES = "ProspectActivity.svc/RetrieveRecentlyModified"
BY_EVENT = "ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent"
SEARCH = "OpportunityManagement.svc/Retrieve/BySearchParameter"
BY_ID = "OpportunityManagement.svc/GetOpportunitiesById"
BARE_500 = {"Message": "There was an error processing the request."}

Body = dict[str, Any]


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def lead_row(number: int, modified: datetime) -> Body:
    """A lead as the leads feed sends it: a LeadPropertyList of {Attribute, Value} pairs."""
    pairs = {
        "ProspectID": f"lead-{number}",
        "FirstName": f"First {number}",
        "EmailAddress": f"lead{number}@example.com",
        "Score": str(number),
        "ModifiedOn": text(modified),
        "mx_City": "Pune",
    }
    return {"LeadPropertyList": [{"Attribute": k, "Value": v} for k, v in pairs.items()]}


class FeedServer:
    """A windowed feed over ``rows`` (each with its modification time), as documented: POST,
    ``Parameter.FromDate``/``ToDate`` inclusive to the second, paged by PageIndex/PageSize.

    Knobs make it misbehave: ``fails(since, until)`` answers the bare 500; ``reach`` serves
    no row past that many of a window while RecordCount counts them all; ``slop`` serves
    rows that many seconds outside the window too (the same row in two windows).
    """

    def __init__(
        self,
        rows: list[tuple[datetime, Body]],
        *,
        list_key: str,
        fails: Callable[[datetime, datetime], bool] = lambda since, until: False,
        reach: int | None = None,
        slop: int = 0,
    ) -> None:
        self.rows, self.list_key, self.fails = rows, list_key, fails
        self.reach, self.slop = reach, slop
        self.bodies: list[Body] = []

    def windows_asked(self) -> list[tuple[str, str]]:
        return [(b["Parameter"]["FromDate"], b["Parameter"]["ToDate"]) for b in self.bodies]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        parameter, paging = body["Parameter"], body["Paging"]
        since = datetime.fromisoformat(parameter["FromDate"]).replace(tzinfo=UTC)
        to_date = datetime.fromisoformat(parameter["ToDate"]).replace(tzinfo=UTC)
        if self.fails(since, to_date + timedelta(seconds=1)):
            return httpx.Response(500, json=BARE_500)
        slop = timedelta(seconds=self.slop)
        match = [row for moment, row in self.rows if since - slop <= moment <= to_date + slop]
        start = (paging["PageIndex"] - 1) * paging["PageSize"]
        stop = start + paging["PageSize"]
        if self.reach is not None:
            stop = min(stop, self.reach)
        answer = {"RecordCount": len(match), self.list_key: match[start:stop]}
        return httpx.Response(200, json=answer)


def session_for(handler: Callable[[httpx.Request], Any], **kwargs: Any) -> lsq.Session:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    retry = lsq.RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.002)
    return lsq.Session(
        "access-key",
        "secret-key-0123456789",
        host="http://127.0.0.1:9",
        client=client,
        retry=retry,
        rate_limit=lsq.RateLimit(calls=100_000, period=1),
        **kwargs,
    )


def leads_every(minutes: int, count: int) -> list[tuple[datetime, Body]]:
    moments = [DAY + timedelta(minutes=minutes * n) for n in range(count)]
    return [(moment, lead_row(n, moment)) for n, moment in enumerate(moments)]


async def test_leads_come_flattened_typed_and_whole() -> None:
    """Each LeadPropertyList becomes a Lead whose unstructure is the flattened row exactly."""
    server = FeedServer(leads_every(60, 3), list_key="Leads")
    async with session_for(server) as session:
        leads = await session.leads_modified(DAY, DAY + timedelta(days=1)).collect()
    assert [lead.lead_id for lead in leads] == ["lead-0", "lead-1", "lead-2"]
    assert leads[1].score == 1
    assert leads[1].modified_on == DAY + timedelta(hours=1)
    assert leads[1].extra == {"mx_City": "Pune"}
    pairs = lead_row(1, DAY + timedelta(hours=1))["LeadPropertyList"]
    assert lsq.unstructure(leads[1]) == {pair["Attribute"]: pair["Value"] for pair in pairs}
    (body,) = server.bodies
    assert body["Parameter"] == {"FromDate": "2026-03-01 00:00:00", "ToDate": "2026-03-01 23:59:59"}
    assert body["Paging"] == {"PageIndex": 1, "PageSize": 5000}


async def test_a_naive_datetime_is_refused_before_anything_is_sent() -> None:
    """since without a zone: ValueError at the call, and no request."""
    server = FeedServer([], list_key="Leads")
    async with session_for(server) as session:
        with pytest.raises(ValueError, match="naive"):
            session.leads_modified(datetime(2026, 3, 1), DAY + timedelta(days=1))
    assert server.bodies == []


async def test_a_row_in_a_boundary_second_comes_from_one_window_only() -> None:
    """A row modified at 01:00:00 exactly falls in [01:00, 02:00), not in [00:00, 01:00)."""
    server = FeedServer(leads_every(30, 5), list_key="Leads")
    async with session_for(server) as session:
        walk = session.leads_modified(DAY, DAY + timedelta(hours=2), window=timedelta(hours=1))
        leads = await walk.collect()
    # 00:00, 00:30, 01:00, 01:30 are in [00:00, 02:00); 02:00 is not.
    assert [lead.lead_id for lead in leads] == ["lead-0", "lead-1", "lead-2", "lead-3"]
    assert server.windows_asked()[:2] == [
        ("2026-03-01 00:00:00", "2026-03-01 00:59:59"),
        ("2026-03-01 01:00:00", "2026-03-01 01:59:59"),
    ]


async def test_a_row_repeated_across_windows_is_yielded_once() -> None:
    """A server that serves rows a second beyond each edge: every lead still comes once."""
    server = FeedServer(leads_every(30, 8), list_key="Leads", slop=1)
    async with session_for(server) as session:
        walk = session.leads_modified(DAY, DAY + timedelta(hours=4), window=timedelta(hours=1))
        leads = await walk.collect()
    assert [lead.lead_id for lead in leads] == [f"lead-{n}" for n in range(8)]


@pytest.mark.looptime
async def test_a_window_that_fails_is_split_until_it_is_served() -> None:
    """A bare 500 for any window over two hours: a day is walked in halves, every row once,
    in time order."""
    rows = leads_every(45, 32)  # 24 hours of leads
    server = FeedServer(rows, list_key="Leads", fails=lambda s, u: u - s > timedelta(hours=2))
    async with session_for(server) as session:
        leads = await session.leads_modified(DAY, DAY + timedelta(days=1)).collect()
    assert [lead.lead_id for lead in leads] == [f"lead-{n}" for n in range(32)]
    served = [
        (since, to_date)
        for since, to_date in server.windows_asked()
        if datetime.fromisoformat(to_date) - datetime.fromisoformat(since) < timedelta(hours=2)
    ]
    assert served == sorted(served)
    assert len(served) == 16


@pytest.mark.looptime
async def test_a_one_minute_window_that_still_fails_raises_naming_it() -> None:
    """A bare 500 for every window holding 03:00: WindowError naming that minute and the
    endpoint, after the rows before it were yielded."""
    broken = DAY + timedelta(hours=3)
    server = FeedServer(leads_every(30, 12), list_key="Leads", fails=lambda s, u: s <= broken < u)
    got: list[str] = []

    async def walk(session: lsq.Session) -> None:
        async for lead in session.leads_modified(DAY, DAY + timedelta(hours=6)):
            got.append(lead.lead_id)

    async with session_for(server) as session:
        with pytest.raises(lsq.WindowError) as caught:
            await walk(session)
    error = caught.value
    assert error.endpoint == LEADS
    assert error.until - error.since <= timedelta(minutes=1)
    assert error.since <= broken < error.until
    assert "2026-03-01 03:0" in str(error)
    assert LEADS in str(error)
    assert got == [f"lead-{n}" for n in range(6)]  # 00:00 to 02:30


async def test_rows_beyond_what_paging_reaches_are_not_truncated() -> None:
    """A server that serves only the first 10 rows of any window while RecordCount counts
    them all: the window is split until each part is reached whole."""
    server = FeedServer(leads_every(10, 40), list_key="Leads", reach=10)
    async with session_for(server) as session:
        walk = session.leads_modified(DAY, DAY + timedelta(hours=8), page_size=5)
        leads = await walk.collect()
    assert sorted(lead.lead_id for lead in leads) == sorted(f"lead-{n}" for n in range(40))
    assert len(leads) == 40


async def test_a_window_whose_rows_move_out_while_walked_is_walked_again() -> None:
    """A row modified during the walk leaves the window and the rows after it move up a
    page: the window is walked once more, so no row of it is skipped."""
    server = FeedServer(leads_every(1, 6), list_key="Leads")

    def handler(request: httpx.Request) -> httpx.Response:
        answer = server(request)
        if len(server.bodies) == 1:  # lead-0 is modified (to now) once page 1 is served
            server.rows = server.rows[1:]
        return answer

    async with session_for(handler, look_ahead=0) as session:
        walk = session.leads_modified(DAY, DAY + timedelta(hours=1), page_size=2)
        leads = await walk.collect()
    assert sorted(lead.lead_id for lead in leads) == [f"lead-{n}" for n in range(6)]


def activity_rows(count: int) -> list[tuple[datetime, Body]]:
    moments = [DAY + timedelta(hours=n) for n in range(count)]
    return [
        (
            moment,
            {
                "Id": f"act-{n}",
                "EventCode": 164,
                "EventName": "Custom Object Activity",
                "RelatedProspectId": f"lead-{n}",
                "CreatedOn": text(moment),
                "ModifiedOn": text(moment),
            },
        )
        for n, moment in enumerate(moments)
    ]


async def test_activities_without_an_event_code_come_from_the_recent_feed() -> None:
    """RetrieveRecentlyModified: rows under ProspectActivities, read by Id and EventCode."""
    server = FeedServer(activity_rows(3), list_key="ProspectActivities")
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return server(request)

    async with session_for(handler) as session:
        walk = session.activities_modified(DAY, DAY + timedelta(hours=6))
        activities = await walk.collect()
    assert [a.activity_id for a in activities] == ["act-0", "act-1", "act-2"]
    assert activities[2].activity_event == 164
    assert activities[2].lead_id == "lead-2"
    assert activities[2].modified_on == DAY + timedelta(hours=2)
    assert set(paths) == {f"/v2/{ACTIVITIES}"}
    assert server.bodies[0]["Parameter"]["IncludeCustomFields"] == 1


async def test_activities_of_one_event_code_come_from_the_event_feed() -> None:
    """RetrieveByActivityEvent: Parameter.ActivityEvent as a number, rows under List, read
    by ProspectActivityId and RelatedProspectId."""
    row = {
        "ProspectActivityId": "act-9",
        "RelatedProspectId": "lead-9",
        "ActivityEvent": "167",
        "CreatedOn": "2026-03-01 10:04:00",
        "ModifiedOn": "2026-03-01 10:13:46",
        "mx_Custom_3": '{"Status":"Pending"}',
    }
    server = FeedServer([(DAY + timedelta(hours=10), row)], list_key="List")
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return server(request)

    async with session_for(handler) as session:
        walk = session.activities_modified(DAY, DAY + timedelta(days=1), event_code="167")
        (activity,) = await walk.collect()
    assert (activity.activity_id, activity.lead_id, activity.activity_event) == (
        "act-9",
        "lead-9",
        167,
    )
    assert lsq.unstructure(activity) == row
    assert paths == [f"/v2/{BY_EVENT}"]
    assert server.bodies[0]["Parameter"]["ActivityEvent"] == 167


def opportunity_row(number: int, modified: datetime) -> Body:
    return {
        "ProspectActivityId": f"opp-{number}",
        "RelatedProspectId": f"lead-{number}",
        "ActivityEvent": "12002",
        "ModifiedOn": text(modified),
        "Status": "Open",
    }


class SearchServer:
    """``Retrieve/BySearchParameter`` over opportunities; it refuses an AdvancedSearch that
    does not restate the event code, and sorts by ModifiedOn unless ``ignores_sorting``."""

    def __init__(self, rows: list[Body], *, ignores_sorting: bool = False) -> None:
        self.rows, self.ignores_sorting = rows, ignores_sorting
        self.bodies: list[Body] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        search = json.loads(body["AdvancedSearch"])
        (condition,) = search["Conditions"][0]["RowCondition"]
        if condition["RSO"] != str(body["OpportunityEventCode"]):
            envelope = {
                "Status": "Error",
                "ExceptionType": "MXInvalidInputException",
                "ExceptionMessage": "AdvancedSearch criteria does not match ActivityEvent passed",
            }
            return httpx.Response(500, json=envelope)
        rows = list(self.rows)
        sorting = body["Sorting"]
        if not self.ignores_sorting and sorting["ColumnName"] == "ModifiedOn":
            rows.sort(key=lambda row: row["ModifiedOn"], reverse=sorting["Direction"] == 1)
        paging = body["Paging"]
        start = (paging["PageIndex"] - 1) * paging["PageSize"]
        page = rows[start : start + paging["PageSize"]]
        return httpx.Response(200, json={"RecordCount": len(rows), "List": page})


async def test_the_search_restates_the_event_code_and_sorts_newest_first() -> None:
    """OpportunityEventCode, an AdvancedSearch whose condition restates it, Sorting by
    ModifiedOn most recent first: every opportunity, newest first, read by
    ProspectActivityId."""
    rows = [opportunity_row(n, DAY + timedelta(hours=n)) for n in range(5)]
    server = SearchServer(rows)
    async with session_for(server) as session:
        opportunities = await session.opportunities_of_type("12002", page_size=2).collect()
    assert [o.opportunity_id for o in opportunities] == [f"opp-{n}" for n in (4, 3, 2, 1, 0)]
    assert opportunities[0].lead_id == "lead-4"
    body = server.bodies[0]
    assert body["OpportunityEventCode"] == 12002
    assert body["Sorting"] == {"ColumnName": "ModifiedOn", "Direction": 1}


async def test_modified_since_ends_at_the_first_older_row_and_asks_no_further_page() -> None:
    """Rows newest first: the walk stops on the page holding the first row older than
    modified_since, and sends no request beyond it."""
    rows = [opportunity_row(n, DAY + timedelta(hours=n)) for n in range(20)]
    server = SearchServer(rows)
    async with session_for(server) as session:
        walk = session.opportunities_of_type(
            12002, modified_since=DAY + timedelta(hours=14), page_size=4
        )
        opportunities = await walk.collect()
    assert [o.opportunity_id for o in opportunities] == [f"opp-{n}" for n in range(19, 13, -1)]
    assert [body["Paging"]["PageIndex"] for body in server.bodies] == [1, 2]


async def test_a_search_that_ignores_sorting_loses_no_row_after_modified_since() -> None:
    """Rows in no order by ModifiedOn: the walk reads to the end and yields exactly the rows
    modified at or after modified_since."""
    order = [3, 15, 1, 18, 7, 12, 0, 19, 9, 14, 5, 16, 2, 11, 8, 17, 4, 13, 6, 10]
    rows = [opportunity_row(n, DAY + timedelta(hours=n)) for n in order]
    server = SearchServer(rows, ignores_sorting=True)
    async with session_for(server) as session:
        walk = session.opportunities_of_type(
            12002, modified_since=DAY + timedelta(hours=12), page_size=4
        )
        opportunities = await walk.collect()
    assert sorted(o.opportunity_id for o in opportunities) == sorted(
        f"opp-{n}" for n in range(12, 20)
    )
    assert len(server.bodies) == 5


async def test_opportunities_by_id_ask_two_thousand_ids_a_request_and_skip_absent_ones() -> None:
    """4,500 ids: three requests of at most 2,000; the top-level list answer is read, and ids
    the server does not return are simply absent."""
    asked: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        (search,) = json.loads(request.content)["SearchParameters"]
        asked.append(search["ProspectActivityId"])
        assert search["EventCode"] == "12003"
        assert "ProspectActivityId" in search["Columns"]["Include_CSV"].split(",")
        found = [
            {"ProspectId": "lead-1", "ProspectActivityId": id_, "ModifiedOn": "4/6/2023 3:23:34 PM"}
            for id_ in search["ProspectActivityId"]
            if int(id_.split("-")[1]) % 3 == 0
        ]
        answer = [{"EventCode": "12003", "RecordCount": len(found), "Opportunities": found}]
        return httpx.Response(200, json=answer)

    ids = [f"opp-{n}" for n in range(4500)]
    async with session_for(handler) as session:
        opportunities = await session.opportunities_by_id("12003", ids).collect()
    assert [len(chunk) for chunk in asked] == [2000, 2000, 500]
    assert [o.opportunity_id for o in opportunities] == [f"opp-{n}" for n in range(0, 4500, 3)]
    assert opportunities[0].modified_on == datetime(2023, 4, 6, 15, 23, 34, tzinfo=UTC)


async def test_a_feed_walk_stops_at_its_limit_without_another_request() -> None:
    """limit=3 over pages of 2: two requests, three leads."""
    server = FeedServer(leads_every(5, 20), list_key="Leads")
    async with session_for(server, look_ahead=0) as session:
        walk = session.leads_modified(DAY, DAY + timedelta(days=1), page_size=2, limit=3)
        leads = await walk.collect()
    assert [lead.lead_id for lead in leads] == ["lead-0", "lead-1", "lead-2"]
    assert len(server.bodies) == 2


async def test_a_limit_of_zero_sends_nothing() -> None:
    """limit=0 over ten years of windows: no request, no lead."""
    server = FeedServer(leads_every(5, 20), list_key="Leads")
    async with session_for(server) as session:
        walk = session.leads_modified(DAY - timedelta(days=3650), DAY, limit=0)
        assert await walk.collect() == []
    assert server.bodies == []
