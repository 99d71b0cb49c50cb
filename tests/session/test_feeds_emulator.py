"""The four account-wide walks against the emulator's account, in process on virtual time.

Every lead, activity and opportunity comes once, field by field as the account holds it; a
day of scripted changes walked in adjacent windows finds each change once, boundary seconds
included; the index lag, the failing windows, the page caps and the search's quirks are met
as the feeds guide says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from emulator_in_process import client_of, session_on, virtual_app

import leadsq_async as lsq
from leadsq_async import unstructure
from leadsq_async._feeds import search_condition
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
)

DATA = Dataset.generate(
    seed=5, page_size=10, thousands=40, activity_page_size=5, hundreds=30, other_leads=12
)
# Before every generated date (2019 on).
EPOCH = dt.datetime(2018, 12, 1, tzinfo=dt.timezone.utc)
YEAR = dt.timedelta(days=366)
UTC = dt.timezone.utc


@pytest.fixture
def app() -> EmulatorApp:
    """An app of its own for each test, serving a small account."""
    return virtual_app(DATA.copy(), EmulatorConfig(rate_limits=["1000/1"]))


@pytest.fixture
async def session(app: EmulatorApp) -> AsyncIterator[lsq.Session]:
    """A session calling ``app`` in process, on the loop's clock."""
    async with (
        client_of(app) as client,
        session_on(
            client,
            rate_limit=lsq.RateLimit(1000, 1),
            retry=lsq.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.01),
        ) as session,
    ):
        yield session


def once(ids: Iterable[str]) -> set[str]:
    """The ids, each checked to come exactly once."""
    counts = Counter(ids)
    repeated = {key: count for key, count in counts.items() if count > 1}
    assert not repeated, repeated
    return set(counts)


def later(app: EmulatorApp) -> dt.datetime:
    """A second past the emulator's now: an ``until`` that takes in every change so far."""
    return app.account.now().replace(microsecond=0) + dt.timedelta(seconds=1)


def types_of(app: EmulatorApp, key: str, rows: list[dict[str, Any]]) -> set[str]:
    return {str(row[key]) for row in rows}


# Every record once, field by field


@pytest.mark.looptime
async def test_every_lead_once_field_by_field(app: EmulatorApp, session: lsq.Session) -> None:
    """leads_modified over all time yields each lead once, its row exactly the account's."""
    leads = await session.leads_modified(EPOCH, later(app)).collect()
    once(lead.lead_id for lead in leads)
    expected = {row["ProspectID"]: row for row in app.account.leads()}
    assert {lead.lead_id: unstructure(lead) for lead in leads} == expected


@pytest.mark.looptime
async def test_every_opportunity_once_field_by_field(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """opportunities_of_type, type by type, yields each opportunity once, as the account
    holds it, most recently modified first."""
    everything = app.account.opportunities()
    codes = types_of(app, "OpportunityEvent", everything)
    assert len(codes) > 1
    walked: dict[str, dict[str, Any]] = {}
    for code in sorted(codes):
        found = await session.opportunities_of_type(code).collect()
        stamps = [o.modified_on for o in found]
        assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]
        ids = once(o.opportunity_id for o in found)
        assert not ids & set(walked)
        walked.update((o.opportunity_id, unstructure(o)) for o in found)
    assert walked == {row["ProspectActivityId"]: row for row in everything}


@pytest.mark.looptime
async def test_every_activity_once_field_by_field(app: EmulatorApp, session: lsq.Session) -> None:
    """activities_modified of each event yields its activities once, as the account holds
    them; without an event code, every activity once, the same ids, leads and dates."""
    everything = app.account.activities()
    until = later(app)
    walked: dict[str, dict[str, Any]] = {}
    for code in sorted(types_of(app, "ActivityEvent", everything)):
        walk = session.activities_modified(EPOCH, until, event_code=code, window=YEAR)
        found = await walk.collect()
        once(a.activity_id for a in found)
        walked.update((a.activity_id, unstructure(a)) for a in found)
    assert walked == {row["ProspectActivityId"]: row for row in everything}
    recent = await session.activities_modified(EPOCH, until).collect()
    once(a.activity_id for a in recent)
    by_id = {row["ProspectActivityId"]: row for row in everything}
    assert {a.activity_id for a in recent} == set(by_id)
    for activity in recent:
        row = by_id[activity.activity_id]
        assert activity.lead_id == row["RelatedProspectId"]
        assert activity.activity_event == int(row["ActivityEvent"])
        assert f"{activity.modified_on:%Y-%m-%d %H:%M:%S}" == row["ModifiedOn"]
        assert f"{activity.created_on:%Y-%m-%d %H:%M:%S}" == row["CreatedOn"]


# A day of changes, in adjacent windows


async def at_second(app: EmulatorApp, moment: dt.datetime) -> None:
    """Sleep (virtually) into the emulator's second ``moment``."""
    wait = (moment - app.account.now()).total_seconds() + 0.25
    assert wait > 0
    await asyncio.sleep(wait)


async def walk_windows(
    session: lsq.Session, bounds: list[dt.datetime]
) -> tuple[list[str], list[str], list[str]]:
    """The ids each feed yields over the adjacent windows between ``bounds``, in order."""
    leads: list[str] = []
    activities: list[str] = []
    for since, until in itertools.pairwise(bounds):
        leads += [lead.lead_id async for lead in session.leads_modified(since, until)]
        activities += [a.activity_id async for a in session.activities_modified(since, until)]
    opportunities: list[str] = []
    for code in ("12000", "12001", "12002", "12003", "12004", "12005"):
        async for found in session.opportunities_of_type(code, modified_since=bounds[0]):
            opportunities.append(found.opportunity_id)
    return leads, activities, opportunities


@pytest.mark.looptime
async def test_a_day_of_changes_in_adjacent_windows_each_found_once(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """A day of added, modified and deleted records, some changed in the very second two
    hourly windows share: walked window by window, each change comes exactly once, in the
    window holding its second; deleted records do not come."""
    account = app.account
    start = account.now().replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    bounds = [start + dt.timedelta(hours=hour) for hour in range(25)]
    leads = [row["ProspectID"] for row in account.leads()]
    opportunities = [row["ProspectActivityId"] for row in account.opportunities()]
    activities = [row["ProspectActivityId"] for row in account.activities()]
    changed_leads: dict[str, dt.datetime] = {}
    changed_activities: dict[str, dt.datetime] = {}
    changed_opportunities: set[str] = set()
    for hour, bound in enumerate(bounds[:-1]):
        # One change in the boundary second itself, one inside the hour.
        for moment in (bound, bound + dt.timedelta(minutes=17, seconds=59)):
            await at_second(app, moment)
            step = len(changed_leads) + len(changed_activities)
            lead = leads[step % len(leads)]
            changed_leads[lead] = moment
            account.modify_lead(lead, FirstName=f"Changed{step}")
            activity = activities[step % len(activities)]
            changed_activities[activity] = moment
            account.modify_activity(activity, Status=f"step {step}")
            opportunity = opportunities[step % len(opportunities)]
            changed_opportunities.add(opportunity)
            account.modify_opportunity(opportunity, Status=f"step {step}")
        if hour == 5:
            added = account.add_lead()
            changed_leads[added["ProspectID"]] = account.now().replace(microsecond=0)
            new = account.add_activity(added["ProspectID"])
            changed_activities[new["ProspectActivityId"]] = account.now().replace(microsecond=0)
        if hour == 9:
            gone = leads[-1]
            account.delete_lead(gone)
            changed_leads.pop(gone, None)
    await at_second(app, bounds[-1] + dt.timedelta(seconds=1))
    found_leads, found_activities, found_opportunities = await walk_windows(session, bounds)
    assert once(found_leads) == set(changed_leads)
    assert once(found_activities) == set(changed_activities) & {
        row["ProspectActivityId"] for row in account.activities()
    }
    assert once(found_opportunities) == changed_opportunities & {
        row["ProspectActivityId"] for row in account.opportunities()
    }
    # Each lead came in the window holding the second of its last change.
    for since, until in itertools.pairwise(bounds):
        inside = {lead for lead, moment in changed_leads.items() if since <= moment < until}
        assert {lead.lead_id async for lead in session.leads_modified(since, until)} == inside


# The quirks


@pytest.mark.looptime
async def test_index_lag_respected_with_until_now_minus_the_lag(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """With a 90-second index lag, a walk up to now minus the lag misses nothing: a change
    younger than the lag comes in the next walk, from where the last one ended."""
    lag = dt.timedelta(seconds=90)
    app.config.index_lag = lag.total_seconds()
    account = app.account
    await asyncio.sleep(lag.total_seconds() * 2)
    first_lead, second_lead = (row["ProspectID"] for row in account.leads()[:2])
    account.modify_lead(first_lead, FirstName="Early")
    await asyncio.sleep(lag.total_seconds() + 5)
    account.modify_lead(second_lead, FirstName="Late")
    moment = account.now() - lag
    since = moment - dt.timedelta(hours=1)
    first = [lead.lead_id async for lead in session.leads_modified(since, moment)]
    assert first == [first_lead]
    # Without the lag taken off, the late change is missed for good by a walk up to now.
    assert second_lead not in [
        lead.lead_id async for lead in session.leads_modified(since, later(app))
    ]
    # Once the lag (and the second of the change) has passed, the next walk finds it.
    await asyncio.sleep(lag.total_seconds() + 2)
    second = [lead.lead_id async for lead in session.leads_modified(moment, account.now() - lag)]
    assert second == [second_lead]


@pytest.mark.looptime
async def test_a_window_over_the_row_limit_is_split_down_to_success(
    app: EmulatorApp, session: lsq.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """window_row_limit answers the bare 500 for a crowded window: the walk splits it until
    each part is served, and every activity still comes once."""
    expected = {row["ProspectActivityId"] for row in app.account.activities()}
    app.config.window_row_limit = 20
    found = await session.activities_modified(EPOCH, later(app), window=YEAR * 8).collect()
    assert once(a.activity_id for a in found) == expected
    assert "walking it as two halves" in caplog.text
    assert app.stats.by_status.get(500, 0) > 0


@pytest.mark.looptime
async def test_a_one_minute_window_still_too_large_raises_window_error(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """Over the row limit within one minute: WindowError names that minute and the endpoint,
    after the activities of the windows before it were yielded."""
    account = app.account
    lead = account.leads()[0]["ProspectID"]
    await asyncio.sleep(3600)
    crowded = account.now().replace(microsecond=0)
    for _ in range(6):
        account.add_activity(lead)
    app.config.window_row_limit = 5
    with pytest.raises(lsq.WindowError) as info:
        await session.activities_modified(crowded - dt.timedelta(hours=1), later(app)).collect()
    error = info.value
    assert error.until - error.since <= dt.timedelta(minutes=1)
    assert error.since <= crowded < error.until
    assert "RetrieveRecentlyModified" in str(error)


@pytest.mark.looptime
async def test_page_caps_clamp_larger_pages_and_nothing_is_lost(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """Pages asked larger than the caps are served at the caps: every lead, activity and
    opportunity still comes once."""
    app.config.leads_page_size_cap = 4
    app.config.page_size_cap = 7
    until = later(app)
    leads = await session.leads_modified(EPOCH, until, page_size=50, window=YEAR * 8).collect()
    assert once(lead.lead_id for lead in leads) == {r["ProspectID"] for r in app.account.leads()}
    activities = await session.activities_modified(EPOCH, until, page_size=50).collect()
    every = {row["ProspectActivityId"] for row in app.account.activities()}
    assert once(a.activity_id for a in activities) == every
    for code in ("12000", "12001"):
        found = await session.opportunities_of_type(code, page_size=50).collect()
        expected = {r["ProspectActivityId"] for r in app.account.opportunities(code)}
        assert once(o.opportunity_id for o in found) == expected
    # The caps were met: the leads took a page per 4 of them at least.
    leads_pages = app.stats.by_endpoint["LeadManagement.svc/Leads.RecentlyModified"]
    assert leads_pages >= -(-len(leads) // 4)


@pytest.mark.looptime
async def test_the_strict_search_accepts_the_clients_condition(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """search_strict refuses a search whose condition does not restate the event code; the
    client's does, so its walk is served."""
    assert app.config.search_strict
    async with client_of(app) as client:
        refused = await client.post(
            "/v2/OpportunityManagement.svc/Retrieve/BySearchParameter",
            json={"OpportunityEventCode": 12000, "AdvancedSearch": search_condition(12001)},
        )
    assert refused.status_code == 500
    found = await session.opportunities_of_type(12000).collect()
    assert {o.opportunity_id for o in found} == {
        r["ProspectActivityId"] for r in app.account.opportunities(12000)
    }


@pytest.mark.looptime
async def test_the_search_id_under_opportunity_id_is_read(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """search_id_key="OpportunityId": the walk reads each opportunity's id from that key."""
    app.config.search_id_key = "OpportunityId"
    found = await session.opportunities_of_type("12001").collect()
    expected = {r["ProspectActivityId"] for r in app.account.opportunities(12001)}
    assert expected
    assert once(o.opportunity_id for o in found) == expected


@pytest.mark.looptime
async def test_a_search_ignoring_sorting_loses_nothing_with_modified_since(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """search_ignores_sorting serves the oldest change first: with modified_since the walk
    reads every page instead of stopping, and yields exactly the opportunities modified since."""
    app.config.search_ignores_sorting = True
    rows = app.account.opportunities(12000)
    stamps = sorted(r["ModifiedOn"] for r in rows)
    middle = dt.datetime.fromisoformat(stamps[len(stamps) // 2]).replace(tzinfo=UTC)
    found = await session.opportunities_of_type(12000, modified_since=middle, page_size=5).collect()
    expected = {
        r["ProspectActivityId"]
        for r in rows
        if dt.datetime.fromisoformat(r["ModifiedOn"]).replace(tzinfo=UTC) >= middle
    }
    assert len(expected) < len(rows)
    assert once(o.opportunity_id for o in found) == expected


@pytest.mark.looptime
async def test_opportunities_by_id_absent_ids_and_more_than_2000(
    app: EmulatorApp, session: lsq.Session
) -> None:
    """opportunities_by_id over 2,000 ids sends one request per 2,000; ids the account does not
    have, or of another type, are simply absent; those it has come as the account holds them."""
    mine = {r["ProspectActivityId"]: r for r in app.account.opportunities(12002)}
    others = [r["ProspectActivityId"] for r in app.account.opportunities(12003)]
    absent = [f"{number:08x}-0000-0000-0000-000000000000" for number in range(2500)]
    ids = [*absent[:1500], *mine, *others, *absent[1500:]]
    before = app.stats.total
    found = await session.opportunities_by_id(12002, ids, columns=["Status", "Owner"]).collect()
    assert app.stats.total - before == -(-len(ids) // 2000) == 2
    assert once(o.opportunity_id for o in found) == set(mine)
    for opportunity in found:
        assert opportunity.status == mine[opportunity.opportunity_id]["Status"]
        assert opportunity.lead_id == mine[opportunity.opportunity_id]["RelatedProspectId"]
