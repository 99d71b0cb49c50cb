"""Events: what a session does, for progress, metrics and tracing, in virtual time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fakes import opportunity, session_for

import leadsq_async as lsq
from leadsq_async import _events


def rate_limited() -> httpx.Response:
    message = "API calls exceeded the limit of 25 in 5 second(s)"
    envelope = {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": message,
    }
    return httpx.Response(429, json=envelope)


@pytest.mark.looptime
async def test_a_walk_reports_requests_answers_retries_refusals_and_pages() -> None:
    """A busy answer, a refusal, then two pages: every step is an event, in order."""
    answers: list[httpx.Response] = [httpx.Response(503, text="busy"), rate_limited()]
    rows = [opportunity(n) for n in range(3)]

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        paging = json.loads(request.content)["Paging"]
        start = (paging["PageIndex"] - 1) * paging["PageSize"]
        page = rows[start : start + paging["PageSize"]]
        return httpx.Response(200, json={"RecordCount": 3, "List": page})

    events: list[lsq.Event] = []
    async with session_for(handler, look_ahead=0) as session:
        session.events.subscribe(events.append)
        await session.opportunities_of_lead("lead-1", page_size=2).collect()
    kinds = [type(event).__name__ for event in events]
    assert kinds == [
        "SlotGranted",
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "SlotGranted",
        "RequestSent",
        "ResponseReceived",
        "RateLimited",
        "RetryScheduled",
        "SlotGranted",
        "RequestSent",
        "ResponseReceived",
        "PageFetched",
        "SlotGranted",
        "RequestSent",
        "ResponseReceived",
        "PageFetched",
    ]
    grants = [e for e in events if isinstance(e, lsq.SlotGranted)]
    # The try after the refusal waited out its 5-second pause, which the refusal named.
    assert [(g.waited, g.limit) for g in grants] == [
        (0.0, None),
        (0.0, None),
        (5.0, lsq.RateLimit(25, 5)),
        (0.0, None),
    ]
    events = [e for e in events if not isinstance(e, lsq.SlotGranted)]
    retry = events[2]
    assert isinstance(retry, lsq.RetryScheduled)
    assert retry.error_type == "ServerError"
    assert retry.attempt == 1
    refused = events[5]
    assert isinstance(refused, lsq.RateLimited)
    assert refused.limit == lsq.RateLimit(25, 5)
    assert [e.attempt for e in events if isinstance(e, lsq.RequestSent)] == [1, 2, 3, 1]
    pages = [e for e in events if isinstance(e, lsq.PageFetched)]
    assert [(p.page_index, p.rows, p.record_count, p.page_size) for p in pages] == [
        (1, 2, 3, 2),
        (2, 1, 3, 2),
    ]
    assert all(p.id_value == "lead-1" for p in pages)


@pytest.mark.looptime
async def test_no_event_is_built_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a listener the transport builds no event object at all."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an event was built")

    # The transport takes each event's class from _events when it builds one.
    for name in ("SlotGranted", "RequestSent", "ResponseReceived", "PageFetched", "RetryScheduled"):
        monkeypatch.setattr(_events, name, refuse)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    async with session_for(handler) as session:
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 1


@pytest.mark.looptime
async def test_a_failing_listener_is_logged_and_the_walk_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener that raises does not fail the request; the others still hear."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    def broken(event: lsq.Event) -> None:
        raise RuntimeError("exporter down")

    heard: list[lsq.Event] = []
    async with session_for(handler) as session:
        session.events.subscribe(broken)
        unsubscribe = session.events.subscribe(heard.append)
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 1
        unsubscribe()
        await session.opportunities_of_lead("lead-1").collect()
    assert len(heard) == 4
    assert any("listener failed" in record.getMessage() for record in caplog.records)


def test_subscribe_refuses_what_cannot_be_called() -> None:
    """A listener that is not callable is refused at once."""
    session = lsq.Session("a", "b", host="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="callable"):
        session.events.subscribe("print")  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_every_grant_says_how_long_it_waited_and_on_which_limit() -> None:
    """SlotGranted comes from the limiter: a burst past 2 per 5 s waits whole periods on it."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    limit = lsq.RateLimit(2, 5)
    grants: list[lsq.SlotGranted] = []
    async with session_for(handler, rate_limit=[limit, lsq.RateLimit(100, 3600)]) as session:
        session.events.subscribe(
            lambda event: grants.append(event) if isinstance(event, lsq.SlotGranted) else None
        )
        walks = [session.opportunities_of_lead(f"lead-{n}").collect() for n in range(5)]
        await asyncio.gather(*walks)
    assert [(g.waited, g.limit) for g in grants] == [
        (0.0, None),
        (0.0, None),
        (5.0, limit),
        (5.0, limit),
        (10.0, limit),
    ]
    assert all(g.endpoint == "OpportunityManagement.svc/GetOpportunitiesOfLead" for g in grants)


def waits_into(waits: list[float]) -> Callable[[lsq.Event], None]:
    def listen(event: lsq.Event) -> None:
        if isinstance(event, lsq.SlotGranted):
            waits.append(event.waited)

    return listen


@pytest.mark.looptime
async def test_a_shared_limiter_reports_its_grants_to_each_session() -> None:
    """Two sessions on one limiter: each hears the grants of its own requests."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    limiter = lsq.SlidingWindowLimiter(lsq.RateLimit(1, 5))
    heard: dict[str, list[float]] = {"a": [], "b": []}
    async with (
        session_for(handler, limiter=limiter) as a,
        session_for(handler, limiter=limiter) as b,
    ):
        for name, session in (("a", a), ("b", b)):
            session.events.subscribe(waits_into(heard[name]))
        await asyncio.gather(
            a.opportunities_of_lead("x").collect(), b.opportunities_of_lead("y").collect()
        )
    assert heard == {"a": [0.0], "b": [5.0]}
