"""``leadsq-async probe``: what the feeds serve, in at most 20 calls, every call reported."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import leadsq_async as lsq
from leadsq_async.cli._app import main
from leadsq_async.cli._probe import MAX_CALLS, run_probe
from leadsq_async.testing import RunningEmulator

DAY = date(2026, 3, 1)
START = datetime(2026, 3, 1, tzinfo=timezone.utc)
REFUSAL = {
    "Status": "Error",
    "ExceptionType": "MXInvalidInputException",
    "ExceptionMessage": "AdvancedSearch criteria does not match ActivityEvent passed",
}


def opportunity(number: int) -> dict[str, Any]:
    modified = START - timedelta(hours=number)
    return {"ProspectActivityId": f"opp-{number}", "ModifiedOn": f"{modified:%Y-%m-%d %H:%M:%S}"}


class Account:
    """Every feed the probe asks, as documented, with a leads feed that clamps pages to
    1,000 rows and a search that refuses a condition not restating the event code."""

    def __init__(self) -> None:
        self.opportunities = [opportunity(n) for n in range(30)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        path = request.url.path.removeprefix("/v2/")
        size = body.get("Paging", {}).get("PageSize", 0)
        if path == "LeadManagement.svc/Leads.RecentlyModified":
            leads = [
                {"LeadPropertyList": [{"Attribute": "ProspectID", "Value": f"l{n}"}]}
                for n in range(min(size, 1000))
            ]
            return self.page("Leads", leads, 1500)
        if path == "ProspectActivity.svc/RetrieveRecentlyModified":
            return self.page("ProspectActivities", [{"Id": f"a{n}"} for n in range(42)], 42)
        if path == "OpportunityManagement.svc/Retrieve/BySearchParameter":
            conditions = json.loads(body["AdvancedSearch"])["Conditions"]
            if not conditions:
                return httpx.Response(500, json=REFUSAL)
            rows = sorted(self.opportunities, key=lambda row: row["ModifiedOn"])
            if body["Sorting"]["Direction"] == 1:
                rows.reverse()
            return self.page("List", rows[:size], len(rows))
        if path == "OpportunityManagement.svc/GetOpportunitiesById":
            (search,) = body["SearchParameters"]
            wanted = set(search["ProspectActivityId"])
            found = [row for row in self.opportunities if row["ProspectActivityId"] in wanted]
            group = {"EventCode": search["EventCode"], "RecordCount": len(found)}
            return httpx.Response(200, json=[{**group, "Opportunities": found}])
        return httpx.Response(404, json={"Message": "no such API"})

    @staticmethod
    def page(key: str, rows: list[dict[str, Any]], count: int) -> httpx.Response:
        return httpx.Response(200, json={"RecordCount": count, key: rows})


def session_for(handler: Any) -> lsq.Session:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return lsq.Session(
        "access-key",
        "secret-key-0123456789",
        host="http://127.0.0.1:9",
        client=client,
        retry=lsq.RetryPolicy(attempts=1),
        rate_limit=lsq.RateLimit(calls=1000, period=1),
    )


async def test_the_probe_finds_each_feeds_page_and_the_searchs_rules() -> None:
    """The leads clamp is found, the day's activities counted, the search's sort and
    strictness seen, an absent id left out; each call is listed."""
    async with session_for(Account()) as session:
        report = await run_probe(session, day=DAY, opportunity_type="12002")
    findings = report.findings
    assert findings["leads: largest page"]["largest_page"] == 1000
    assert findings["activities: one day, largest page"]["record_count"] == 42
    assert findings["activities: one day, largest page"]["largest_page"] is None
    newest = findings["search: event-code condition, newest first"]
    assert newest["accepted"] is True
    assert newest["newest_first"] is True
    assert findings["search: oldest first"] == {"oldest_first": True}
    assert findings["search: refuses a condition without the event code"]["refused"] is True
    by_id = findings["opportunities by id"]
    assert by_id == {"asked": 3, "returned": 2, "absent_id_left_out": True}
    assert len(report.calls) == 7
    assert all(call.status == 200 for call in report.calls[:2])


async def test_rate_limit_answers_are_reported_and_the_probe_keeps_to_its_budget() -> None:
    """A server that refuses every call for the rate limit: each refusal's message is in the
    report, and no more than 20 calls are sent."""
    sent: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        envelope = {
            "Status": "Error",
            "ExceptionType": "MXAPIRateLimitExceededException",
            # A short period: each refusal pauses the session that long.
            "ExceptionMessage": "API calls exceeded the limit of 5 in 0.01 second(s)",
        }
        return httpx.Response(429, json=envelope)

    async with session_for(refuse) as session:
        report = await run_probe(session, day=DAY, opportunity_type="12002", activity_event="168")
    assert len(sent) == len(report.calls) <= MAX_CALLS
    assert report.rate_limit_messages
    assert any("limit of 5 in 0.01 second" in message for message in report.rate_limit_messages)


def test_the_probe_command_prints_json_with_every_call(
    emulator: RunningEmulator,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Against the emulator: JSON with the leads feed's findings and every call listed,
    never the secret key."""
    for name, value in env.items():
        if name.startswith("LSQ_"):
            monkeypatch.setenv(name, value)
    code = main(["probe", "--json", "--day", "2026-03-01"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["findings"]["leads: largest page"]["asked"] == 5000
    assert len(report["calls"]) <= MAX_CALLS
    assert len(report["calls"]) == emulator.stats.total
    assert emulator.secret_key not in out
