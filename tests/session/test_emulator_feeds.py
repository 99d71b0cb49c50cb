"""The emulator's account-wide endpoints, called in process: the shapes of the samples, the
windows to the second, the search's strictness, GetOpportunitiesById, the page caps and the
window too large for a feed; and that they serve the same account as the per-lead endpoints."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from emulator_in_process import (
    ALL_TIME,
    BY_EVENT,
    BY_IDS,
    EVERYTHING,
    LEADS,
    OPPORTUNITIES,
    RECENT,
    SEARCH,
    client_of,
    condition,
    search_body,
    virtual_app,
)

from leadsq_async.testing import Dataset, EmulatorApp, RunningEmulator

DATA = Dataset.generate(seed=3, thousands=40, hundreds=30, other_leads=12)


@pytest.fixture
def app() -> EmulatorApp:
    """An app of its own for each test, serving a small account."""
    return virtual_app(DATA.copy())


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["Status"] == "Error"
    return response.status_code, body["ExceptionMessage"]


def opportunities_of_type(data: Dataset, code: str) -> dict[str, str]:
    """Opportunity id -> its lead id, for every opportunity of type ``code``."""
    return {
        row["OpportunityId"]: lead
        for lead, rows in data.opportunities.items()
        for row in rows
        if row["OpportunityEvent"] == code
    }


def activity_ids(data: Dataset) -> set[str]:
    tables = [*data.activities.values(), *data.lead_activities.values()]
    return {row["ProspectActivityId"] for rows in tables for row in rows}


# Leads.RecentlyModified


@pytest.mark.looptime
async def test_leads_come_as_property_lists_with_their_dates(app: EmulatorApp) -> None:
    """Each lead is a LeadPropertyList of {Attribute, Value} with its standard fields, and
    CreatedOn no later than ModifiedOn, both UTC to the second."""
    async with client_of(app) as client:
        body = ok(await client.post(LEADS, json={"Parameter": ALL_TIME, "Paging": EVERYTHING}))
    assert body["RecordCount"] == len(DATA.opportunities)
    lead = {pair["Attribute"]: pair["Value"] for pair in body["Leads"][0]["LeadPropertyList"]}
    standard = {"ProspectID", "FirstName", "LastName", "EmailAddress", "Phone", "OwnerId"}
    assert standard | {"ProspectStage", "Score", "CreatedOn", "ModifiedOn"} <= set(lead)
    assert len(lead["ModifiedOn"]) == len("2026-01-01 00:00:00")
    assert lead["CreatedOn"] <= lead["ModifiedOn"]


# ProspectActivity.svc/RetrieveRecentlyModified


@pytest.mark.looptime
async def test_recently_modified_activities_are_every_activity(app: EmulatorApp) -> None:
    """Over all time the feed serves every activity of the account, those on opportunities
    and those on none, under ProspectActivities, in the sample's shape."""
    async with client_of(app) as client:
        body = ok(await client.post(RECENT, json={"Parameter": ALL_TIME, "Paging": EVERYTHING}))
    rows = body["ProspectActivities"]
    assert DATA.lead_activities
    assert {row["Id"] for row in rows} == activity_ids(DATA)
    assert body["RecordCount"] == len(rows) == DATA.activity_count()
    row = rows[0]
    assert {"Id", "EventCode", "EventName", "CreatedOn", "ModifiedOn", "RelatedProspectId"} <= set(
        row
    )
    assert isinstance(row["EventCode"], int)
    assert not any(key.startswith("mx_") for row in rows for key in row)


@pytest.mark.looptime
async def test_custom_fields_come_when_asked(app: EmulatorApp) -> None:
    """IncludeCustomFields 1 adds the activities' mx_ fields."""
    parameter = {**ALL_TIME, "IncludeCustomFields": 1}
    async with client_of(app) as client:
        body = ok(await client.post(RECENT, json={"Parameter": parameter, "Paging": EVERYTHING}))
    assert any(key.startswith("mx_") for row in body["ProspectActivities"] for key in row)


@pytest.mark.looptime
async def test_a_window_holds_its_edges_to_the_second(app: EmulatorApp) -> None:
    """FromDate and ToDate are both included, to the second: an activity modified at second S
    is in [S, S] and in [S - 5, S], not in [S - 5, S - 1] nor in [S + 1, S + 5]."""
    activity = next(iter(DATA.lead_activities.values()))[0]
    changed = app.account.modify_activity(activity["ProspectActivityId"], Status="Done")
    second = app.clock.now().replace(microsecond=0)
    assert changed["PAModifiedOn"] == f"{second:%Y-%m-%d %H:%M:%S}"

    def window(start: int, end: int) -> dict[str, Any]:
        edges = [f"{second + dt.timedelta(seconds=n):%Y-%m-%d %H:%M:%S}" for n in (start, end)]
        return {"Parameter": {"FromDate": edges[0], "ToDate": edges[1]}, "Paging": EVERYTHING}

    async with client_of(app) as client:
        found = {
            edges: [
                row["Id"]
                for row in ok(await client.post(RECENT, json=window(*edges)))["ProspectActivities"]
            ]
            for edges in ((0, 0), (-5, 0), (-5, -1), (1, 5))
        }
    assert found == {
        (0, 0): [activity["ProspectActivityId"]],
        (-5, 0): [activity["ProspectActivityId"]],
        (-5, -1): [],
        (1, 5): [],
    }


@pytest.mark.looptime
async def test_a_window_over_the_limit_gets_the_bare_500(app: EmulatorApp) -> None:
    """With window_row_limit N, a window of N rows is served and one of N + 1 is answered the
    bare 500 "There was an error processing the request", with no envelope."""
    total = DATA.activity_count()
    app.config.window_row_limit = total
    async with client_of(app) as client:
        served = await client.post(RECENT, json={"Parameter": ALL_TIME, "Paging": EVERYTHING})
        app.config.window_row_limit = total - 1
        refused = await client.post(RECENT, json={"Parameter": ALL_TIME, "Paging": EVERYTHING})
        leads = await client.post(LEADS, json={"Parameter": ALL_TIME})
    assert ok(served)["RecordCount"] == total
    assert refused.status_code == 500
    assert refused.json() == {"Message": "There was an error processing the request."}
    assert leads.status_code == 200  # 13 leads in their window: under the limit


@pytest.mark.looptime
async def test_activity_pages_are_capped_at_1000() -> None:
    """PageSize 1500 serves 1000 activities, and page 2 starts at the 1001st."""
    data = Dataset.generate(seed=4, thousands=0, hundreds=1200, other_leads=0)
    async with client_of(virtual_app(data)) as client:
        pages = [
            ok(await client.post(RECENT, json={"Parameter": ALL_TIME, "Paging": paging}))
            for paging in ({"PageIndex": 1, "PageSize": 1500}, {"PageIndex": 2, "PageSize": 1500})
        ]
    assert [len(page["ProspectActivities"]) for page in pages] == [
        1000,
        data.activity_count() - 1000,
    ]


# ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent


@pytest.mark.looptime
async def test_activities_of_one_event_as_the_sample_shows(app: EmulatorApp) -> None:
    """Parameter.ActivityEvent picks one type, listed under List with ProspectActivityId,
    RelatedProspectId and ActivityEvent as text; RemoveEmptyValue drops null and "" values."""
    tables = [*DATA.activities.values(), *DATA.lead_activities.values()]
    wanted = {
        row["ProspectActivityId"]
        for rows in tables
        for row in rows
        if row["ActivityEvent"] == "202"
    }
    parameter = {**ALL_TIME, "ActivityEvent": 202}
    async with client_of(app) as client:
        body = ok(await client.post(BY_EVENT, json={"Parameter": parameter, "Paging": EVERYTHING}))
        bare = ok(
            await client.post(
                BY_EVENT,
                json={"Parameter": {**parameter, "RemoveEmptyValue": True}, "Paging": EVERYTHING},
            )
        )
    rows = body["List"]
    assert {row["ProspectActivityId"] for row in rows} == wanted
    assert all(row["ActivityEvent"] == "202" and row["RelatedProspectId"] for row in rows)
    assert any(value in (None, "") for row in rows for value in row.values())
    assert not any(value in (None, "") for row in bare["List"] for value in row.values())


@pytest.mark.looptime
async def test_activities_of_one_event_need_the_event(app: EmulatorApp) -> None:
    """Without Parameter.ActivityEvent the answer is the 500 envelope naming it."""
    async with client_of(app) as client:
        response = await client.post(BY_EVENT, json={"Parameter": ALL_TIME})
    status, message = error_of(response)
    assert status == 500
    assert "ActivityEvent" in message


# OpportunityManagement.svc/Retrieve/BySearchParameter


@pytest.mark.looptime
async def test_the_search_serves_one_type_newest_change_first(app: EmulatorApp) -> None:
    """The sample's search, sorted by ModifiedOn with Direction 1, serves every opportunity of
    that type, most recent change first, each with its id and its lead."""
    async with client_of(app) as client:
        body = ok(await client.post(SEARCH, json=search_body("12005")))
    wanted = opportunities_of_type(DATA, "12005")
    rows = body["List"]
    assert body["RecordCount"] == len(rows) == len(wanted) > 0
    assert {row["ProspectActivityId"]: row["RelatedProspectId"] for row in rows} == wanted
    modified = [row["ModifiedOn"] for row in rows]
    assert modified == sorted(modified, reverse=True)
    assert {row["OpportunityEvent"] for row in rows} == {"12005"}


@pytest.mark.looptime
async def test_a_leads_opportunities_agree_with_the_type_feed(app: EmulatorApp) -> None:
    """The opportunities GetOpportunitiesOfLead lists for a lead, per type, are exactly those
    the search lists with that lead, with the same dates."""
    lead = DATA.leads_by_shape["page"]
    async with client_of(app) as client:
        listed = ok(
            await client.post(OPPORTUNITIES, params={"leadId": lead}, json={"Paging": EVERYTHING})
        )["List"]
        searched = [
            row
            for code in ("12000", "12001", "12002", "12003", "12004", "12005")
            for row in ok(await client.post(SEARCH, json=search_body(code)))["List"]
            if row["RelatedProspectId"] == lead
        ]
    assert len(listed) == 100
    by_id = {row["ProspectActivityId"]: row for row in searched}
    assert set(by_id) == {row["OpportunityId"] for row in listed}
    for row in listed:
        found = by_id[row["OpportunityId"]]
        assert found["OpportunityEvent"] == row["OpportunityEvent"]
        assert found["Status"] == row["Status"]


@pytest.mark.parametrize(
    "search",
    [condition("12001"), json.dumps({"GrpConOp": "And", "Conditions": []})],
    ids=["another code", "no condition"],
)
@pytest.mark.looptime
async def test_a_search_that_does_not_restate_its_code_is_refused(
    app: EmulatorApp, search: str
) -> None:
    """An AdvancedSearch whose condition is on another event code, or on none, is answered the
    500 envelope "AdvancedSearch criteria does not match ActivityEvent passed"."""
    async with client_of(app) as client:
        response = await client.post(SEARCH, json=search_body("12005", AdvancedSearch=search))
    assert error_of(response) == (
        500,
        "AdvancedSearch criteria does not match ActivityEvent passed",
    )


@pytest.mark.looptime
async def test_a_lenient_search_serves_without_the_condition(app: EmulatorApp) -> None:
    """With search_strict False, a search with no condition serves the type's opportunities;
    one on another code is refused all the same."""
    app.config.search_strict = False
    empty = json.dumps({"GrpConOp": "And", "Conditions": []})
    async with client_of(app) as client:
        served = ok(await client.post(SEARCH, json=search_body("12005", AdvancedSearch=empty)))
        other = await client.post(
            SEARCH, json=search_body("12005", AdvancedSearch=condition("12001"))
        )
    assert served["RecordCount"] == len(opportunities_of_type(DATA, "12005"))
    assert other.status_code == 500


@pytest.mark.looptime
async def test_the_search_filters_on_modified_on(app: EmulatorApp) -> None:
    """A ModifiedOn condition (gt, a UTC date) beside the code narrows the rows."""
    async with client_of(app) as client:
        rows = ok(await client.post(SEARCH, json=search_body("12001")))["List"]
        middle = sorted(row["ModifiedOn"] for row in rows)[len(rows) // 2]
        document = json.loads(condition("12001"))
        document["Conditions"][0]["RowCondition"].append(
            {"SubConOp": "And", "LSO": "ModifiedOn", "Operator": "gt", "RSO": middle}
        )
        body = search_body("12001", AdvancedSearch=json.dumps(document))
        newer = ok(await client.post(SEARCH, json=body))["List"]
    assert {row["ProspectActivityId"] for row in newer} == {
        row["ProspectActivityId"] for row in rows if row["ModifiedOn"] > middle
    }


@pytest.mark.looptime
async def test_the_search_columns_id_key_and_sorting_quirks(app: EmulatorApp) -> None:
    """Columns narrows rows to the id; search_id_key names it OpportunityId instead; a search
    that ignores Sorting serves the oldest change first."""
    columns = {"Columns": {"Include_CSV": "ProspectActivityId"}}
    async with client_of(app) as client:
        narrow = ok(await client.post(SEARCH, json=search_body("12002", **columns)))["List"]
        app.config.search_id_key = "OpportunityId"
        renamed = ok(await client.post(SEARCH, json=search_body("12002")))["List"]
        app.config.search_ignores_sorting = True
        unsorted = ok(await client.post(SEARCH, json=search_body("12002")))["List"]
    assert {tuple(row) for row in narrow} == {("ProspectActivityId",)}
    assert all("OpportunityId" in row and "ProspectActivityId" not in row for row in renamed)
    modified = [row["ModifiedOn"] for row in unsorted]
    assert modified == sorted(modified) != sorted(modified, reverse=True)


@pytest.mark.looptime
async def test_opportunity_pages_are_capped_at_1000() -> None:
    """A search with PageSize 1500 serves 1000 rows and says how many there are."""
    data = Dataset.generate(seed=5, thousands=1100, hundreds=0, other_leads=0, opportunity_types=1)
    async with client_of(virtual_app(data)) as client:
        body = search_body("12000", Paging={"PageIndex": 1, "PageSize": 1500})
        page = ok(await client.post(SEARCH, json=body))
    assert (len(page["List"]), page["RecordCount"]) == (1000, 1 + 100 + 101 + 1100 + 5)


# OpportunityManagement.svc/GetOpportunitiesById


@pytest.mark.looptime
async def test_opportunities_by_id_per_event_code(app: EmulatorApp) -> None:
    """The answer is a top-level list of {EventCode, RecordCount, Opportunities}, one per
    search parameter; unknown ids, and ids of another type, are absent; dates come as the
    sample shows them (4/6/2023 3:23:30 PM)."""
    of_3 = list(opportunities_of_type(DATA, "12003"))[:3]
    of_1 = list(opportunities_of_type(DATA, "12001"))[:1]
    columns = {"Include_CSV": "CreatedOn,ModifiedOn,Owner"}
    body = {
        "SearchParameters": [
            {
                "EventCode": "12003",
                "ProspectActivityId": [*of_3, "no-such-id", *of_1],
                "Columns": columns,
            },
            {"EventCode": "12001", "ProspectActivityId": of_1, "Columns": columns},
        ]
    }
    async with client_of(app) as client:
        answer = ok(await client.post(BY_IDS, json=body))
    assert [(part["EventCode"], part["RecordCount"]) for part in answer] == [
        ("12003", 3),
        ("12001", 1),
    ]
    assert {row["ProspectActivityId"] for row in answer[0]["Opportunities"]} == set(of_3)
    row = answer[1]["Opportunities"][0]
    assert set(row) == {"ProspectActivityId", "CreatedOn", "ModifiedOn", "Owner"}
    assert "/" in row["CreatedOn"]
    assert row["CreatedOn"].endswith(("AM", "PM"))


@pytest.mark.looptime
async def test_opportunities_by_id_take_at_most_2000_ids(app: EmulatorApp) -> None:
    """2,000 ids for one event code are served; 2,001 are refused with the 500 envelope."""
    ids = [f"id-{n}" for n in range(2001)]
    async with client_of(app) as client:
        served = await client.post(
            BY_IDS,
            json={"SearchParameters": [{"EventCode": "12001", "ProspectActivityId": ids[:2000]}]},
        )
        refused = await client.post(
            BY_IDS, json={"SearchParameters": [{"EventCode": "12001", "ProspectActivityId": ids}]}
        )
    assert ok(served) == [{"EventCode": "12001", "RecordCount": 0, "Opportunities": []}]
    status, message = error_of(refused)
    assert status == 500
    assert "2000" in message


@pytest.mark.looptime
async def test_the_statistics_count_each_endpoint(app: EmulatorApp) -> None:
    """by_endpoint counts the requests per endpoint, refused_by_endpoint the refusals, and
    summary() says both."""
    app.config.rate_limit_calls = 3
    async with client_of(app) as client:
        for _ in range(2):
            await client.post(SEARCH, json=search_body("12005"))
        await client.post(RECENT, json={"Parameter": ALL_TIME})
        refused = await client.post(RECENT, json={"Parameter": ALL_TIME})
    assert refused.status_code == 429
    assert app.stats.by_endpoint == {
        "OpportunityManagement.svc/Retrieve/BySearchParameter": 2,
        "ProspectActivity.svc/RetrieveRecentlyModified": 2,
    }
    assert app.stats.refused_by_endpoint == {"ProspectActivity.svc/RetrieveRecentlyModified": 1}
    summary = app.stats.summary()
    assert summary.splitlines()[0].startswith("4 requests, 3 accepted, 1 refused")
    assert "  ProspectActivity.svc/RetrieveRecentlyModified: 2 requests, 1 refused" in summary


@pytest.mark.looptime
async def test_the_accounts_snapshots_are_what_the_feeds_serve(app: EmulatorApp) -> None:
    """account.leads(), opportunities(code) and activities(code) give the rows the leads feed,
    the search and RetrieveByActivityEvent serve over all time, field by field."""
    app.account.modify_opportunity(next(iter(opportunities_of_type(DATA, "12005"))), Status="Won")
    by_event = {"Parameter": {**ALL_TIME, "ActivityEvent": "201"}, "Paging": EVERYTHING}
    async with client_of(app) as client:
        leads = ok(await client.post(LEADS, json={"Parameter": ALL_TIME, "Paging": EVERYTHING}))
        searched = ok(await client.post(SEARCH, json=search_body("12005")))["List"]
        activities = ok(await client.post(BY_EVENT, json=by_event))["List"]

    def by(key: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {row[key]: row for row in rows}

    flat = [
        {pair["Attribute"]: pair["Value"] for pair in lead["LeadPropertyList"]}
        for lead in leads["Leads"]
    ]
    assert by("ProspectID", app.account.leads()) == by("ProspectID", flat)
    assert by("ProspectActivityId", app.account.opportunities(12005)) == by(
        "ProspectActivityId", searched
    )
    assert by("ProspectActivityId", app.account.activities("201")) == by(
        "ProspectActivityId", activities
    )


def test_the_feeds_over_a_socket(
    lsq_emulator: RunningEmulator, emulator_client: httpx.Client
) -> None:
    """Over real loopback, with an hour's index_lag, an opportunity added now is absent from
    its type's search and present in GetOpportunitiesById; with no lag, the search has it."""
    lsq_emulator.config.index_lag = 3600.0
    lead = lsq_emulator.data.leads_by_shape["one"]
    added = lsq_emulator.account.add_opportunity(lead, "12003")
    searched = emulator_client.post(SEARCH, json=search_body("12003")).json()["List"]
    by_id = emulator_client.post(
        BY_IDS,
        json={
            "SearchParameters": [
                {"EventCode": "12003", "ProspectActivityId": [added["OpportunityId"]]}
            ]
        },
    ).json()
    assert added["OpportunityId"] not in {row["ProspectActivityId"] for row in searched}
    assert [row["ProspectActivityId"] for row in by_id[0]["Opportunities"]] == [
        added["OpportunityId"]
    ]
    lsq_emulator.config.index_lag = 0.0
    searched = emulator_client.post(SEARCH, json=search_body("12003")).json()["List"]
    assert added["OpportunityId"] in {row["ProspectActivityId"] for row in searched}
