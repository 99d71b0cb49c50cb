"""Exercises the account-wide feeds' public API for mypy --strict only; pytest does not
collect it."""

from __future__ import annotations

import datetime

import leadsq_async as lsq


async def feeds(session: lsq.Session) -> None:
    until = datetime.datetime.now(datetime.timezone.utc)
    since = until - datetime.timedelta(days=1)
    async for lead in session.leads_modified(since, until, columns=["FirstName"]):
        lead_id: str = lead.lead_id
        modified: datetime.datetime | None = lead.modified_on
        row: dict[str, object] = lsq.unstructure(lead)
        print(lead_id, modified, row)
    activities: list[lsq.Activity] = await session.activities_modified(
        since, until, event_code=168, window=datetime.timedelta(hours=1)
    ).collect()
    print(activities)
    async for page in session.opportunities_of_type("12002", modified_since=since).pages():
        opportunities: list[lsq.Opportunity] = page.items
        print(opportunities)
    found = session.opportunities_by_id(12002, ["id-1", "id-2"], columns="Status", limit=10)
    async with found as records:
        async for opportunity in records:
            print(opportunity.opportunity_id)


def window_of(error: lsq.WindowError) -> tuple[datetime.datetime, datetime.datetime, str]:
    return error.since, error.until, error.endpoint


def lead_of(row: dict[str, object]) -> lsq.Lead:
    return lsq.structure(row, lsq.Lead)
