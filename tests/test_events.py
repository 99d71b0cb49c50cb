"""Events: what a session does, for progress, metrics and tracing, in virtual time."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fakes import opportunity, session_for
from virtual_time import virtual

import leadsq_async as lsq
from leadsq_async import _transport


def rate_limited() -> httpx.Response:
    message = "API calls exceeded the limit of 25 in 5 second(s)"
    envelope = {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": message,
    }
    return httpx.Response(429, json=envelope)


@virtual
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
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
        "RateLimited",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
        "PageFetched",
        "RequestSent",
        "ResponseReceived",
        "PageFetched",
    ]
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


@virtual
async def test_no_event_is_built_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a listener the transport builds no event object at all."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an event was built")

    for name in ("RequestSent", "ResponseReceived", "PageFetched", "RetryScheduled"):
        monkeypatch.setattr(_transport, name, refuse)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    async with session_for(handler) as session:
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 1


@virtual
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
    assert len(heard) == 3
    assert any("listener failed" in record.getMessage() for record in caplog.records)


def test_subscribe_refuses_what_cannot_be_called() -> None:
    """A listener that is not callable is refused at once."""
    session = lsq.Session("a", "b", host="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="callable"):
        session.events.subscribe("print")  # type: ignore[arg-type]
