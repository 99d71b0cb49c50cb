"""The emulator's account changed while it runs: the Python API in process on virtual time
(ModifiedOn moves with the loop, the feeds' index lag, deletes), a scripted day of changes
walked back through the feeds, and the same over a real socket through the admin route."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from emulator_in_process import (
    ACTIVITIES,
    ALL_TIME,
    EVERYTHING,
    LEADS,
    OPPORTUNITIES,
    RECENT,
    SEARCH,
    client_of,
    now,
    search_body,
    virtual_app,
)

from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    RunningEmulator,
    UnknownRecordError,
)

ADMIN = "/_emulator/account"
DATA = Dataset.generate(seed=9, thousands=30, hundreds=30, other_leads=12)


@pytest.fixture
def app() -> EmulatorApp:
    """An app of its own for each test, serving a small account."""
    return virtual_app(DATA.copy())


def utc(when: dt.datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}"


async def lead_ids(client: httpx.AsyncClient, window: dict[str, str] = ALL_TIME) -> list[str]:
    response = await client.post(LEADS, json={"Parameter": window, "Paging": {"PageSize": 5000}})
    assert response.status_code == 200, response.text
    return [
        {pair["Attribute"]: pair["Value"] for pair in lead["LeadPropertyList"]}["ProspectID"]
        for lead in response.json()["Leads"]
    ]


async def activity_ids(client: httpx.AsyncClient, window: dict[str, str] = ALL_TIME) -> set[str]:
    response = await client.post(RECENT, json={"Parameter": window, "Paging": EVERYTHING})
    assert response.status_code == 200, response.text
    return {row["Id"] for row in response.json()["ProspectActivities"]}


async def searched(client: httpx.AsyncClient, code: str) -> dict[str, dict[str, Any]]:
    response = await client.post(SEARCH, json=search_body(code))
    assert response.status_code == 200, response.text
    return {row["ProspectActivityId"]: row for row in response.json()["List"]}


@pytest.mark.looptime
async def test_now_moves_with_the_loop(app: EmulatorApp) -> None:
    """The emulator's now is UTC, starts at the real time, and moves with the loop's time: a
    virtual day later, exactly a day later."""
    before = app.account.now()
    assert abs(before - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)
    await asyncio.sleep(86_400)
    assert app.account.now() - before == dt.timedelta(days=1)


@pytest.mark.looptime
async def test_a_change_moves_modified_on_to_now(app: EmulatorApp) -> None:
    """Modifying an opportunity, an activity or a lead stamps the emulator's now, to the
    second, and the new values show in the per-lead endpoint and in the feed."""
    lead = DATA.leads_by_shape["one"]
    opportunity = DATA.opportunities[lead][0]
    await asyncio.sleep(3600.4)
    stamp = utc(app.account.now())
    changed = app.account.modify_opportunity(opportunity["OpportunityId"], Status="Won")
    lead_record = app.account.modify_lead(lead, FirstName="Zoë")
    assert (changed["PAModifiedOn"], changed["Status"]) == (stamp, "Won")
    assert lead_record["ModifiedOn"] == stamp
    code = opportunity["OpportunityEvent"]
    async with client_of(app) as client:
        listed = (await client.post(OPPORTUNITIES, params={"leadId": lead})).json()["List"]
        found = (await searched(client, code))[opportunity["OpportunityId"]]
    assert (listed[0]["PAModifiedOn"], listed[0]["Status"], listed[0]["FirstName"]) == (
        stamp,
        "Won",
        "Zoë",
    )
    assert (found["ModifiedOn"], found["Status"]) == (stamp, "Won")


@pytest.mark.looptime
async def test_added_records_show_everywhere(app: EmulatorApp) -> None:
    """A lead added with an opportunity of a given type and activities on both shows in the
    leads feed, GetOpportunitiesOfLead, the type's search, GetActivitiesOfOpportunity and the
    activities feed."""
    account = app.account
    lead = account.add_lead(FirstName="Ada", mx_City="Pune")
    opportunity = account.add_opportunity(lead["ProspectID"], "12004", Status="Open")
    on_it = account.add_activity(opportunity_id=opportunity["OpportunityId"])
    on_lead = account.add_activity(lead["ProspectID"], ActivityEvent="21")
    assert (lead["FirstName"], lead["CreatedOn"]) == ("Ada", lead["ModifiedOn"])
    assert opportunity["OpportunityEvent"] == "12004"
    async with client_of(app) as client:
        leads = await lead_ids(client)
        listed = (await client.post(OPPORTUNITIES, params={"leadId": lead["ProspectID"]})).json()
        found = await searched(client, "12004")
        activities = (
            await client.post(ACTIVITIES, params={"opportunityId": opportunity["OpportunityId"]})
        ).json()
        feed = await activity_ids(client)
    assert lead["ProspectID"] in leads
    assert [row["OpportunityId"] for row in listed["List"]] == [opportunity["OpportunityId"]]
    assert found[opportunity["OpportunityId"]]["RelatedProspectId"] == lead["ProspectID"]
    assert [row["ProspectActivityId"] for row in activities["List"]] == [
        on_it["ProspectActivityId"]
    ]
    assert {on_it["ProspectActivityId"], on_lead["ProspectActivityId"]} <= feed


@pytest.mark.looptime
async def test_deleting_a_lead_deletes_its_opportunities_and_activities(app: EmulatorApp) -> None:
    """After delete_lead, the per-lead endpoints do not know the lead nor its opportunities,
    and no feed serves any of them."""
    lead = DATA.leads_by_shape["page"]
    opportunities = {
        row["OpportunityId"]: row["OpportunityEvent"] for row in DATA.opportunities[lead]
    }
    activities = {
        row["ProspectActivityId"]
        for opportunity in opportunities
        for row in DATA.activities[opportunity]
    }
    assert activities
    app.account.delete_lead(lead)
    some = next(iter(opportunities))
    async with client_of(app) as client:
        of_lead = await client.post(OPPORTUNITIES, params={"leadId": lead})
        of_opportunity = await client.post(ACTIVITIES, params={"opportunityId": some})
        leads = await lead_ids(client)
        feed = await activity_ids(client)
        searched_ids = {
            found for code in set(opportunities.values()) for found in await searched(client, code)
        }
    assert of_lead.json()["ExceptionMessage"] == "Lead does not exist in the system"
    assert of_opportunity.json()["ExceptionMessage"] == "Opportunity does not exist in the system"
    assert lead not in leads
    assert not feed & activities
    assert not searched_ids & set(opportunities)
    with pytest.raises(UnknownRecordError):
        app.account.delete_lead(lead)


@pytest.mark.looptime
async def test_the_feeds_lag_behind_by_the_index_lag(app: EmulatorApp) -> None:
    """With index_lag 120 s, the feeds serve each record as it was 120 s before: a new lead is
    absent, a modified opportunity keeps its old ModifiedOn, a deleted activity is still
    there; from 120 s on, every change shows."""
    app.config.index_lag = 120.0
    opportunity = DATA.opportunities[DATA.leads_by_shape["one"]][0]
    code = opportunity["OpportunityEvent"]
    activity = next(iter(DATA.lead_activities.values()))[0]["ProspectActivityId"]
    account = app.account
    lead = account.add_lead()["ProspectID"]
    changed = account.modify_opportunity(opportunity["OpportunityId"], Status="Lost")
    account.delete_activity(activity)
    async with client_of(app) as client:
        await asyncio.sleep(119.9)
        early = (await lead_ids(client), await searched(client, code), await activity_ids(client))
        await asyncio.sleep(0.1)
        late = (await lead_ids(client), await searched(client, code), await activity_ids(client))
    assert lead not in early[0]
    assert lead in late[0]
    old, new = early[1][opportunity["OpportunityId"]], late[1][opportunity["OpportunityId"]]
    assert (old["Status"], new["Status"]) == (opportunity["Status"], "Lost")
    assert new["ModifiedOn"] == changed["PAModifiedOn"] != old["ModifiedOn"]
    assert activity in early[2]
    assert activity not in late[2]


@pytest.mark.looptime
async def test_a_scripted_day_of_changes_is_walked_back_hour_by_hour(app: EmulatorApp) -> None:
    """Changes made through a virtual day, one every 20 minutes, are each found exactly once
    by hourly windows of the activities and leads feeds, in the hour of the record's last
    change."""
    account = app.account
    app.config.rate_limit_calls = 100
    start = account.now().replace(microsecond=0) + dt.timedelta(seconds=1)
    # Each change lands 10 minutes into its third of an hour, clear of the windows' edges.
    await asyncio.sleep((start - account.now()).total_seconds() + 600)
    leads = list(DATA.opportunities)
    activities = [
        row["ProspectActivityId"] for rows in DATA.lead_activities.values() for row in rows
    ]
    last_change: dict[str, int] = {}  # record id -> the hour of its last change
    for step in range(72):
        if step % 2:
            changed = account.modify_lead(leads[step % len(leads)])["ProspectID"]
        else:
            row = account.modify_activity(activities[step % len(activities)], Status="Checked")
            changed = row["ProspectActivityId"]
        last_change[changed] = step // 3
        await asyncio.sleep(1200)
    async with client_of(app) as client:
        found: dict[int, set[str]] = {}
        for hour in range(24):
            since = start + dt.timedelta(hours=hour)
            window = {"FromDate": utc(since), "ToDate": utc(since + dt.timedelta(seconds=3599))}
            found[hour] = set(await lead_ids(client, window)) | await activity_ids(client, window)
    made = {hour: {key for key, at in last_change.items() if at == hour} for hour in range(24)}
    assert found == made
    assert sum(map(len, found.values())) == len(last_change) >= 18
    assert now() >= 86_400


def test_the_account_changes_from_another_thread_while_served(
    lsq_emulator: RunningEmulator,
) -> None:
    """With the server in its thread, changes made from two more threads while a client walks
    the feeds all land, and every answer is whole."""
    account = lsq_emulator.account
    leads = list(lsq_emulator.data.opportunities)[:10]
    errors: list[BaseException] = []

    def change(offset: int) -> None:
        try:
            for n in range(40):
                lead = account.add_lead()["ProspectID"]
                account.add_opportunity(lead, "12001")
                account.modify_lead(leads[(n + offset) % len(leads)], Score=str(n))
        except BaseException as error:  # handed to the test
            errors.append(error)

    threads = [threading.Thread(target=change, args=(offset,)) for offset in (0, 5)]
    headers = {
        "x-LSQ-AccessKey": lsq_emulator.access_key,
        "x-LSQ-SecretKey": lsq_emulator.secret_key,
    }
    with httpx.Client(base_url=lsq_emulator.base_url, headers=headers) as client:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            answer = client.post(
                "LeadManagement.svc/Leads.RecentlyModified", json={"Parameter": ALL_TIME}
            )
            assert answer.status_code in (200, 429), answer.text
        for thread in threads:
            thread.join()
        final = client.post(
            "LeadManagement.svc/Leads.RecentlyModified",
            json={"Parameter": ALL_TIME, "Paging": {"PageSize": 5000}},
        )
    assert errors == []
    assert final.json()["RecordCount"] == len(lsq_emulator.data.opportunities) == 26 + 80


def test_the_admin_route_changes_the_account(lsq_emulator: RunningEmulator) -> None:
    """POST /_emulator/account adds, modifies and deletes; GET says now and the counts; bad
    keys get 401, an unknown id 404, an unknown action 400; none is counted as an API call."""
    headers = {
        "x-LSQ-AccessKey": lsq_emulator.access_key,
        "x-LSQ-SecretKey": lsq_emulator.secret_key,
    }
    with httpx.Client(base_url=lsq_emulator.url, headers=headers) as client:
        counts = client.get(ADMIN).json()
        added = client.post(ADMIN, json={"action": "add_lead", "fields": {"FirstName": "Grace"}})
        lead = added.json()["row"]["ProspectID"]
        opportunity = client.post(
            ADMIN, json={"action": "add_opportunity", "lead_id": lead, "event_code": "12003"}
        ).json()["row"]
        modified = client.post(
            ADMIN,
            json={
                "action": "modify_opportunity",
                "opportunity_id": opportunity["OpportunityId"],
                "fields": {"Status": "Won"},
            },
        )
        listed = client.post(
            "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead", params={"leadId": lead}
        ).json()["List"]
        deleted = client.post(ADMIN, json={"action": "delete_lead", "lead_id": lead})
        missing = client.post(ADMIN, json={"action": "delete_lead", "lead_id": lead})
        unknown = client.post(ADMIN, json={"action": "truncate_everything"})
        unauthorised = client.get(ADMIN, headers={"x-LSQ-SecretKey": "wrong"})
        after = client.get(ADMIN).json()
    assert added.status_code == 200
    assert added.json()["row"]["FirstName"] == "Grace"
    assert modified.json()["row"]["Status"] == "Won"
    assert modified.json()["row"]["PAModifiedOn"] == modified.json()["now"]
    assert [(row["OpportunityId"], row["Status"]) for row in listed] == [
        (opportunity["OpportunityId"], "Won")
    ]
    assert deleted.status_code == 200
    assert (missing.status_code, unknown.status_code, unauthorised.status_code) == (404, 400, 401)
    assert {key: after[key] for key in ("leads", "opportunities", "activities")} == {
        key: counts[key] for key in ("leads", "opportunities", "activities")
    }
    assert lsq_emulator.stats.total == 1  # the one GetOpportunitiesOfLead call


def test_changes_to_unknown_records_or_ids_are_refused() -> None:
    """An unknown id raises UnknownRecordError (a KeyError); changing an id, or an activity
    with neither lead nor opportunity, raises ValueError; nothing is changed."""
    app = EmulatorApp(DATA.copy())
    account = app.account
    lead = DATA.leads_by_shape["one"]
    opportunity = DATA.opportunities[lead][0]["OpportunityId"]
    for change in (
        lambda: account.modify_opportunity("no-such-id", Status="Won"),
        lambda: account.modify_activity("no-such-id"),
        lambda: account.add_opportunity("no-such-lead"),
        lambda: account.delete_opportunity("no-such-id"),
    ):
        with pytest.raises(UnknownRecordError):
            change()
    refusals: list[tuple[Callable[[], object], str]] = [
        (lambda: account.modify_opportunity(opportunity, OpportunityId="x"), "cannot be set"),
        (lambda: account.modify_lead(lead, ProspectID="other"), "cannot be set"),
        (lambda: account.add_opportunity(lead, OpportunityId="x"), "cannot be set"),
        (account.add_activity, "needs a lead_id or an opportunity_id"),
        (
            lambda: account.add_activity(DATA.leads_by_shape["page"], opportunity_id=opportunity),
            "is not lead",
        ),
        (lambda: account.add_lead(lead), "already exists"),
    ]
    for refused, match in refusals:
        with pytest.raises(ValueError, match=match):
            refused()
    assert app.data.to_dict() == DATA.to_dict()


def test_deleting_an_opportunity_deletes_its_activities_only() -> None:
    """delete_opportunity takes its activities with it and leaves its lead and the lead's
    other opportunities."""
    app = EmulatorApp(DATA.copy())
    lead = DATA.leads_by_shape["page"]
    first, second = DATA.opportunities[lead][:2]
    app.account.delete_opportunity(first["OpportunityId"])
    assert first["OpportunityId"] not in app.data.activities
    assert second["OpportunityId"] in app.data.activities
    assert [row["OpportunityId"] for row in app.data.opportunities[lead]] == [
        row["OpportunityId"] for row in DATA.opportunities[lead][1:]
    ]


def test_the_clock_carries_on_from_loop_to_loop() -> None:
    """Served by one event loop, then another, then none, the emulator's time never goes back,
    and its now stays the real time."""
    app = EmulatorApp(Dataset(opportunities={"lead-1": []}))

    async def served() -> float:
        app.clock.serve_on(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        return app.clock.monotonic()

    readings = [app.clock.monotonic(), asyncio.run(served()), asyncio.run(served())]
    readings.append(app.clock.monotonic())
    assert readings == sorted(readings)
    assert readings[-1] - readings[0] >= 0.02
    assert abs(app.account.now() - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)


@pytest.mark.looptime
async def test_the_feeds_see_a_table_edited_directly_after_they_read_it(app: EmulatorApp) -> None:
    """The feeds keep the records they read until the tables change: an activity and an
    opportunity removed from the tables directly (not through ``account``) are gone from the
    next answers, and one put back is there again."""
    lead = DATA.leads_by_shape["one"]
    [opportunity] = app.data.opportunities[lead]
    code = opportunity["OpportunityEvent"]
    activity_table = next(rows for rows in app.data.activities.values() if rows)
    async with client_of(app) as client:
        activities_before = await activity_ids(client)
        assert opportunity["OpportunityId"] in await searched(client, code)
        removed = activity_table.pop()
        assert await activity_ids(client) == activities_before - {removed["ProspectActivityId"]}
        activity_table.append(removed)
        assert await activity_ids(client) == activities_before
        app.data.opportunities[lead].remove(opportunity)
        assert opportunity["OpportunityId"] not in await searched(client, code)
