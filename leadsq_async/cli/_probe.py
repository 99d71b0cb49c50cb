"""``leadsq-async probe``: ask a real account, in at most 20 calls, what the documentation
leaves open about its account-wide feeds.

It asks each feed for a page larger than documented (the largest page it serves),
counts the rows of one day, checks that the opportunity search takes the
event-code condition and sorts by ``ModifiedOn`` both ways, whether it refuses a
search that does not restate the code, and how ``GetOpportunitiesById`` answers an
id it does not have; and it lists every call it made and every rate-limit message
it saw. A check that fails is a finding too: the probe reports it and goes on.
Each request is tried once, so the calls listed are all the calls made.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import attrs
import click

from leadsq_async import (
    APIError,
    Event,
    LeadSquaredError,
    Page,
    PageFetched,
    RateLimited,
    RateLimitError,
    RequestSent,
    ResponseReceived,
    Session,
    parse_date,
)

from ._options import ApiOptions, api_options, scrub

__all__ = ["MAX_CALLS", "ProbeReport", "probe", "run_probe"]

MAX_CALLS = 20
"""The most requests one probe sends."""

ASKED_PAGE = 5000
"""The page size asked for to learn the largest page a feed serves."""

LEADS = "LeadManagement.svc/Leads.RecentlyModified"
ACTIVITIES = "ProspectActivity.svc/RetrieveRecentlyModified"
BY_EVENT = "ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent"
SEARCH = "OpportunityManagement.svc/Retrieve/BySearchParameter"
BY_ID = "OpportunityManagement.svc/GetOpportunitiesById"


@attrs.frozen
class _Span:
    """The rows modified in [since, until), as the probe asks the feeds for them."""

    since: datetime
    until: datetime

    @property
    def from_date(self) -> str:
        return f"{self.since:%Y-%m-%d %H:%M:%S}"

    @property
    def to_date(self) -> str:
        return f"{self.until - timedelta(seconds=1):%Y-%m-%d %H:%M:%S}"  # inclusive

    def __str__(self) -> str:
        return f"[{self.since:%Y-%m-%d %H:%M:%S}, {self.until:%Y-%m-%d %H:%M:%S}) UTC"


def _event_condition(code: int) -> str:
    """The ``AdvancedSearch`` of the API's documented sample, which the probe checks: its one
    condition restates the event code."""
    row = {"SubConOp": "And", "LSO": "ActivityEvent", "LSO_Type": "PAEvent", "Operator": "eq"}
    return json.dumps(
        {
            "GrpConOp": "And",
            "Conditions": [
                {"Type": "Activity", "ConOp": "and", "RowCondition": [{**row, "RSO": str(code)}]}
            ],
            "QueryTimeZone": "UTC",
        },
        separators=(",", ":"),
    )


@attrs.define
class Call:
    """One request the probe sent, and what came back."""

    endpoint: str
    page_size: int | None = None
    status: int | None = None
    rows: int | None = None
    record_count: int | None = None
    seconds: float | None = None


@attrs.define
class ProbeReport:
    """What the probe found (check name -> value), the calls it made, the rate-limit
    messages it saw, and the checks it left out and why."""

    findings: dict[str, Any] = attrs.Factory(dict)
    calls: list[Call] = attrs.Factory(list)
    rate_limit_messages: list[str] = attrs.Factory(list)
    skipped: dict[str, str] = attrs.Factory(dict)

    def listen(self, event: Event) -> None:
        """Record the session's events: one `Call` per request sent."""
        if isinstance(event, RequestSent):
            self.calls.append(Call(event.endpoint))
        elif isinstance(event, ResponseReceived) and self.calls:
            self.calls[-1].status, self.calls[-1].seconds = event.status, round(event.seconds, 3)
        elif isinstance(event, PageFetched) and self.calls:
            call = self.calls[-1]
            call.page_size, call.rows, call.record_count = (
                event.page_size,
                event.rows,
                event.record_count,
            )
        elif isinstance(event, RateLimited):
            self.rate_limit_messages.append(f"{event.endpoint}: limit {event.limit}")

    def as_json(self) -> dict[str, Any]:
        return {
            "findings": self.findings,
            "skipped": self.skipped,
            "rate_limit_messages": self.rate_limit_messages,
            "calls": [attrs.asdict(call) for call in self.calls],
        }


def _largest_page(page: Page[dict[str, Any]], asked: int) -> dict[str, Any]:
    served, count = len(page.items), page.record_count
    # Fewer rows than asked while more match: the page is clamped to what came.
    clamped = count is not None and served < min(count, asked)
    return {
        "asked": asked,
        "served": served,
        "record_count": count,
        "largest_page": served if clamped else None,
        "note": "clamped" if clamped else "served whole (the largest page is at least this)",
    }


def _order(rows: list[dict[str, Any]]) -> list[datetime]:
    return [
        moment
        for moment in (parse_date(row.get("ModifiedOn", row.get("PAModifiedOn"))) for row in rows)
        if moment is not None
    ]


async def run_probe(
    session: Session,
    *,
    day: date,
    opportunity_type: str | None = None,
    activity_event: str | None = None,
) -> ProbeReport:
    """Probe the account behind ``session`` (see the module's documentation).

    Raises:
        LeadSquaredError: an account-wide failure (bad keys, the wrong region, a spent
            quota): nothing else can be learned then.
    """
    report = ProbeReport()
    session.events.subscribe(report.listen)
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    window = _Span(start, start + timedelta(days=1))
    year = _Span(start - timedelta(days=365), window.until)

    async def first_page(
        path: str, body: dict[str, Any], key: str, size: int
    ) -> Page[dict[str, Any]] | None:
        walk = session.paginate(path, body=body, list_key=key, page_size=size, limit=size)
        async for page in walk.pages():
            return page
        return None

    async def check(name: str, calls: int, step: Callable[[], Awaitable[Any]]) -> None:
        if len(report.calls) + calls > MAX_CALLS:
            report.skipped[name] = f"the probe sends at most {MAX_CALLS} calls"
            return
        try:
            report.findings[name] = await step()
        except RateLimitError as error:
            report.rate_limit_messages.append(str(error))
            report.findings[name] = {"error": str(error)}
        except LeadSquaredError as error:
            if error.account_wide and not report.findings:
                raise
            report.findings[name] = {"error": f"{type(error).__name__}: {error}"}

    def dates(span: _Span) -> dict[str, Any]:
        return {"FromDate": span.from_date, "ToDate": span.to_date}

    async def leads_page() -> Any:
        body = {"Parameter": dates(year), "Sorting": {"ColumnName": "ModifiedOn", "Direction": "0"}}
        page = await first_page(LEADS, body, "Leads", ASKED_PAGE)
        return None if page is None else _largest_page(page, ASKED_PAGE)

    async def leads_day() -> Any:
        page = await first_page(LEADS, {"Parameter": dates(window)}, "Leads", 1)
        return None if page is None else {"window": str(window), "rows": page.record_count}

    async def activities_day(path: str, key: str, parameter: dict[str, Any]) -> Any:
        body = {"Parameter": {**dates(window), **parameter}}
        page = await first_page(path, body, key, ASKED_PAGE)
        return None if page is None else {"window": str(window), **_largest_page(page, ASKED_PAGE)}

    await check("leads: largest page", 2, leads_page)
    await check("leads: rows in one day", 2, leads_day)
    await check(
        "activities: one day, largest page",
        2,
        lambda: activities_day(ACTIVITIES, "ProspectActivities", {}),
    )
    if activity_event is None:
        report.skipped["activities of one event"] = "no --activity-event given"
    else:
        await check(
            "activities of one event: one day, largest page",
            2,
            lambda: activities_day(BY_EVENT, "List", {"ActivityEvent": int(activity_event)}),
        )
    if opportunity_type is None:
        report.skipped["opportunity search"] = "no --opportunity-type given"
        return report
    code = int(opportunity_type)
    found: list[dict[str, Any]] = []

    def search(direction: int, condition: str | None = None) -> dict[str, Any]:
        return {
            "OpportunityEventCode": code,
            "AdvancedSearch": _event_condition(code) if condition is None else condition,
            "Sorting": {"ColumnName": "ModifiedOn", "Direction": direction},
        }

    async def newest_first() -> Any:
        page = await first_page(SEARCH, search(1), "List", ASKED_PAGE)
        if page is None:
            return None
        found.extend(page.items)
        order = _order(page.items)
        sorted_ = None if len(order) < 2 else order == sorted(order, reverse=True)
        return {"accepted": True, "newest_first": sorted_, **_largest_page(page, ASKED_PAGE)}

    async def oldest_first() -> Any:
        page = await first_page(SEARCH, search(0), "List", 1000)
        order = [] if page is None else _order(page.items)
        return {"oldest_first": None if len(order) < 2 else order == sorted(order)}

    async def strictness() -> Any:
        loose = json.dumps({"GrpConOp": "And", "Conditions": [], "QueryTimeZone": "UTC"})
        try:
            page = await first_page(SEARCH, search(1, loose), "List", 1)
        except APIError as error:  # a business error: the search was refused for what it asked
            return {"refused": True, "message": str(error)}
        return {"refused": False, "record_count": None if page is None else page.record_count}

    async def by_id() -> Any:
        ids = [str(row.get("ProspectActivityId") or row.get("OpportunityId")) for row in found[:2]]
        absent = str(uuid.uuid4())
        body = {
            "SearchParameters": [
                {
                    "EventCode": str(code),
                    "ProspectActivityId": [*ids, absent],
                    "Columns": {"Include_CSV": "ProspectActivityId,ModifiedOn"},
                }
            ]
        }
        page = await first_page(BY_ID, body, "[*].Opportunities", 2000)
        rows = [] if page is None else page.items
        returned = {row.get("ProspectActivityId") for row in rows}
        return {
            "asked": len(ids) + 1,
            "returned": len(rows),
            "absent_id_left_out": absent not in returned,
        }

    await check("search: event-code condition, newest first", 2, newest_first)
    await check("search: oldest first", 2, oldest_first)
    await check("search: refuses a condition without the event code", 1, strictness)
    if found:
        await check("opportunities by id", 1, by_id)
    else:
        report.skipped["opportunities by id"] = "the search returned no opportunity id"
    return report


def _table(report: ProbeReport) -> str:
    lines = ["check                                              finding"]
    for name, value in report.findings.items():
        lines.append(f"{name:<50} {json.dumps(value)}")
    for name, why in report.skipped.items():
        lines.append(f"{name:<50} skipped: {why}")
    lines.append("")
    lines.append(f"rate-limit messages: {'; '.join(report.rate_limit_messages) or 'none'}")
    lines.append("")
    lines.append(f"{len(report.calls)} calls:")
    lines.append(f"{'#':>3} {'endpoint':<58} {'size':>5} {'status':>6} {'rows':>6} {'count':>7}")
    for number, call in enumerate(report.calls, 1):
        cells = (call.page_size, call.status, call.rows, call.record_count)
        size, status, rows, count = ("-" if value is None else str(value) for value in cells)
        lines.append(f"{number:>3} {call.endpoint:<58} {size:>5} {status:>6} {rows:>6} {count:>7}")
    return "\n".join(lines)


@click.command()
@api_options
@click.option(
    "--day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="The UTC day whose rows are counted (default: yesterday).",
)
@click.option(
    "--opportunity-type",
    metavar="CODE",
    help="An opportunity type's event code (such as 12000), to probe the search and "
    "GetOpportunitiesById.",
)
@click.option("--activity-event", metavar="CODE", help="An activity type's event code.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def probe(
    api: ApiOptions,
    day: datetime | None,
    opportunity_type: str | None,
    activity_event: str | None,
    as_json: bool,
) -> None:
    """Ask the account, in at most 20 calls, what its feeds serve: the largest page of
    each, the rows of one day, whether the opportunity search takes the event-code
    condition and the ModifiedOn sort; every call is listed."""
    for name, value in (
        ("--opportunity-type", opportunity_type),
        ("--activity-event", activity_event),
    ):
        if value is not None and not value.isdigit():
            raise click.BadParameter(f"an event code such as 12000, not {value!r}", param_hint=name)
    when = day.date() if day is not None else datetime.now(timezone.utc).date() - timedelta(days=1)

    async def main() -> ProbeReport:
        async with attrs.evolve(api, max_attempts=1).session() as session:
            return await run_probe(
                session, day=when, opportunity_type=opportunity_type, activity_event=activity_event
            )

    report = asyncio.run(main())
    text = json.dumps(report.as_json(), indent=2) if as_json else _table(report)
    click.echo(scrub(text))
