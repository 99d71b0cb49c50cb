"""The four account-wide walks against the emulator's account, in process on virtual time.

Every lead, activity and opportunity comes once, field by field as the account holds it; a
day of scripted changes walked in adjacent windows finds each change once, boundary seconds
included; the index lag, the failing windows, the page caps and the search's quirks are met
as the feeds guide says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest
from emulator_in_process import client_of, now, virtual_app

import leadsq_async as lsq
from leadsq_async import unstructure
from leadsq_async.testing import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
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


@pytest.fixture
def app() -> EmulatorApp:
    """An app of its own for each test, serving a small account."""
    return virtual_app(DATA.copy())


@pytest.fixture
async def session(app: EmulatorApp) -> AsyncIterator[lsq.Session]:
    """A session calling ``app`` in process, on the loop's clock."""
    async with (
        client_of(app) as client,
        lsq.Session(
            DEFAULT_ACCESS_KEY,
            DEFAULT_SECRET_KEY,
            host="http://127.0.0.1:9",
            client=client,
            clock=now,
            rate_limit=lsq.RateLimit(25, 5),
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
    for since, until in zip(bounds, bounds[1:]):
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
    for since, until in zip(bounds, bounds[1:]):
        inside = {lead for lead, moment in changed_leads.items() if since <= moment < until}
        assert {lead.lead_id async for lead in session.leads_modified(since, until)} == inside
