"""Session and paginator logic against httpx.MockTransport handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

import httpx
import pytest
from fakes import FAST_RETRY, SECRET, FakeServer, opportunity, session_for
from task_check import no_task_left_behind

import leadsq_async as lsq

pytestmark = pytest.mark.usefixtures(no_task_left_behind.__name__)


def now() -> float:
    """The running loop's clock: virtual under looptime."""
    return asyncio.get_running_loop().time()


async def collect_with(server: FakeServer, **kwargs: Any) -> list[lsq.Opportunity]:
    async with session_for(server) as session:
        return await session.opportunities_of_lead("lead-1", **kwargs).collect()


@pytest.mark.looptime
async def test_keys_travel_in_headers_never_in_the_url() -> None:
    """The keys go in x-LSQ-* headers; the URL carries only the id."""
    server = FakeServer([opportunity(1)])
    await collect_with(server)
    request = server.requests[0]
    assert request.headers["x-LSQ-SecretKey"] == SECRET
    assert request.headers["x-LSQ-AccessKey"] == "access-key"
    assert SECRET not in str(request.url)
    assert request.url.params["leadId"] == "lead-1"
    assert request.method == "POST"


@pytest.mark.looptime
async def test_every_row_of_every_page_is_yielded_in_order() -> None:
    """A walk yields each row of every page once, in the server's order."""
    server = FakeServer([opportunity(n) for n in range(23)])
    records = await collect_with(server, page_size=5)
    assert [r.opportunity_id for r in records] == [f"opp-{n:05d}" for n in range(23)]


@pytest.mark.looptime
async def test_walk_stops_at_record_count_without_an_extra_request() -> None:
    """When the rows reach RecordCount exactly, no further page is asked for."""
    server = FakeServer([opportunity(n) for n in range(20)])
    await collect_with(server, page_size=5)
    assert sorted(index for index, _ in server.pages_asked) == [1, 2, 3, 4]


@pytest.mark.looptime
async def test_walk_stops_on_an_empty_first_page() -> None:
    """A lead without opportunities costs one request."""
    server = FakeServer([])
    assert await collect_with(server) == []
    assert len(server.requests) == 1


@pytest.mark.looptime
async def test_walk_stops_on_a_short_page_when_record_count_overstates() -> None:
    """A short page ends the walk even if RecordCount promised more."""

    async def handler(request: httpx.Request) -> httpx.Response:
        index = json.loads(request.content)["Paging"]["PageIndex"]
        rows = [opportunity(n) for n in range(5)] if index == 1 else [opportunity(9)]
        return httpx.Response(200, json={"RecordCount": 100, "List": rows})

    async with session_for(handler, look_ahead=0) as session:
        records = await session.opportunities_of_lead("lead-1", page_size=5).collect()
    assert len(records) == 6


@pytest.mark.looptime
async def test_default_page_size_is_the_largest_the_api_honours() -> None:
    """Without page_size, pages of 1000 rows are asked for."""
    server = FakeServer([opportunity(1)])
    await collect_with(server)
    assert server.pages_asked == [(1, 1000)]


@pytest.mark.looptime
async def test_pages_after_the_first_are_fetched_ahead_concurrently() -> None:
    """Once page 1 told RecordCount, later pages are in flight together."""
    server = FakeServer([opportunity(n) for n in range(50)])
    async with session_for(server, look_ahead=4) as session:
        await session.opportunities_of_lead("lead-1", page_size=5).collect()
    assert server.most_in_flight == 4


@pytest.mark.looptime
async def test_pages_expose_index_record_count_and_items() -> None:
    """pages() yields Page objects with index, record_count and items."""
    server = FakeServer([opportunity(n) for n in range(7)])
    async with session_for(server) as session:
        pages = [p async for p in session.opportunities_of_lead("lead-1", page_size=3).pages()]
    assert [p.index for p in pages] == [1, 2, 3]
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert {p.record_count for p in pages} == {7}


@pytest.mark.looptime
async def test_limit_caps_records_and_sends_nothing_beyond() -> None:
    """limit=10 yields ten records from one request of ten rows."""
    server = FakeServer([opportunity(n) for n in range(500)])
    records = await collect_with(server, limit=10)
    assert len(records) == 10
    assert server.pages_asked == [(1, 10)]


@pytest.mark.looptime
async def test_limit_across_pages_asks_only_the_pages_it_needs() -> None:
    """limit=12 with pages of 5 asks for three pages and yields twelve records."""
    server = FakeServer([opportunity(n) for n in range(500)])
    records = await collect_with(server, limit=12, page_size=5)
    assert len(records) == 12
    assert sorted(index for index, _ in server.pages_asked) == [1, 2, 3]


@pytest.mark.looptime
async def test_limit_zero_sends_nothing() -> None:
    """limit=0 yields nothing and sends no request."""
    server = FakeServer([opportunity(1)])
    assert await collect_with(server, limit=0) == []
    assert server.requests == []


@pytest.mark.looptime
async def test_clamped_page_size_is_detected_and_every_row_yielded_once() -> None:
    """A server that clamps pages to 300 rows still yields every row exactly once."""
    server = FakeServer([opportunity(n) for n in range(1000)], clamp=300)
    records = await collect_with(server)
    ids = [r.opportunity_id for r in records]
    assert ids == [f"opp-{n:05d}" for n in range(1000)]
    assert server.pages_asked[0] == (1, 1000)
    assert {size for _, size in server.pages_asked[1:]} == {300}


@pytest.mark.looptime
async def test_clamp_is_remembered_for_the_next_walk() -> None:
    """After a clamp, the session asks that endpoint for the clamped size."""
    server = FakeServer([opportunity(n) for n in range(700)], clamp=300)
    async with session_for(server) as session:
        await session.opportunities_of_lead("lead-1").collect()
        server.pages_asked.clear()
        await session.opportunities_of_lead("lead-1").collect()
    assert server.pages_asked[0] == (1, 300)


@pytest.mark.looptime
async def test_server_ignoring_page_index_raises_instead_of_looping() -> None:
    """Pages that repeat page 1 raise PagingError."""
    server = FakeServer([opportunity(n) for n in range(20)])
    server.ignore_page_index = True
    with pytest.raises(lsq.PagingError, match="PageIndex"):
        await collect_with(server, page_size=5)
    assert len(server.requests) <= 5


@pytest.mark.looptime
async def test_rows_repeated_by_an_insert_ahead_are_yielded_once() -> None:
    """A row shifted onto the next page by an insert is not yielded twice."""
    rows = [opportunity(n) for n in range(10)]

    async def handler(request: httpx.Request) -> httpx.Response:
        paging = json.loads(request.content)["Paging"]
        index, size = paging["PageIndex"], paging["PageSize"]
        start = (index - 1) * size
        body = {"RecordCount": len(rows), "List": rows[start : start + size]}
        if index == 1:
            rows.insert(0, opportunity(99))  # arrives after page 1 was served
        return httpx.Response(200, json=body)

    async with session_for(handler, look_ahead=0) as session:
        records = await session.opportunities_of_lead("lead-1", page_size=5).collect()
    ids = [r.opportunity_id for r in records]
    assert ids == [f"opp-{n:05d}" for n in range(10)]


@pytest.mark.looptime
async def test_breaking_out_early_cancels_pages_fetched_ahead() -> None:
    """A break stops the look-ahead: no request stays in flight, no task is left."""
    server = FakeServer([opportunity(n) for n in range(100)])
    server.gate = asyncio.Event()  # pages after the first never answer
    async with session_for(server, look_ahead=3) as session:
        async for _ in session.opportunities_of_lead("lead-1", page_size=10):
            break
        for _ in range(5):
            await asyncio.sleep(0)
        assert server.in_flight == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.looptime
async def test_transient_server_error_is_retried() -> None:
    """A bare 500 is retried and the walk completes."""
    answers = [httpx.Response(500, json={"Message": "There was an error processing the request."})]

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop()
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    async with session_for(handler) as session:
        records = await session.opportunities_of_lead("lead-1").collect()
        assert session.stats.retries == 1
    assert len(records) == 1


@pytest.mark.looptime
async def test_business_error_is_never_retried() -> None:
    """A 500 with the envelope raises APIError after a single request."""
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        body = {
            "Status": "Error",
            "ExceptionType": "MXInvalidInputException",
            "ExceptionMessage": "Lead does not exist in the system",
        }
        return httpx.Response(500, json=body)

    async with session_for(handler) as session:
        with pytest.raises(lsq.APIError, match="Lead does not exist"):
            await session.opportunities_of_lead("lead-1").collect()
    assert calls == 1


@pytest.mark.looptime
async def test_retries_stop_after_the_configured_attempts() -> None:
    """A server that keeps failing is tried `attempts` times, then the error raises."""
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="<html><title>503 Service Unavailable</title></html>")

    async with session_for(handler) as session:
        with pytest.raises(lsq.ServerError, match="Service Unavailable"):
            await session.opportunities_of_lead("lead-1").collect()
    assert calls == FAST_RETRY.attempts


@pytest.mark.looptime
async def test_dropped_connection_is_a_retried_transport_error() -> None:
    """A dropped connection is retried, and raises TransportError when retries are spent."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    async with session_for(handler) as session:
        with pytest.raises(lsq.TransportError, match="RemoteProtocolError") as info:
            await session.opportunities_of_lead("lead-1").collect()
        assert session.stats.requests == FAST_RETRY.attempts
    assert info.value.__cause__ is None
    assert info.value.transient


@pytest.mark.looptime
async def test_timeout_raises_request_timeout() -> None:
    """A read timeout becomes RequestTimeoutError once the retries are spent."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with session_for(handler, retry=lsq.RetryPolicy(attempts=1)) as session:
        with pytest.raises(lsq.RequestTimeoutError):
            await session.opportunities_of_lead("lead-1").collect()


def rate_limited(status: int, limit: int = 25, period: str = "5") -> httpx.Response:
    message = f"API calls exceeded the limit of {limit} in {period} second(s)"
    body = {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": message,
    }
    return httpx.Response(status, json=body)


@pytest.mark.parametrize("status", [429, 200])
@pytest.mark.looptime
async def test_rate_limit_answer_pauses_the_limiter_and_retries(status: int) -> None:
    """A rate-limit answer (429, or 200 with the envelope) pauses the limiter, then retries."""
    answers = [rate_limited(status, limit=50, period="0.05")]
    limiter = lsq.SlidingWindowLimiter(lsq.RateLimit(calls=50, period=0.05))

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop()
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    paused: list[float] = []
    real_pause = limiter.pause

    async def spy(seconds: float, *, limit: lsq.RateLimit | None = None) -> None:
        paused.append(seconds)
        await real_pause(seconds, limit=limit)

    limiter.pause = spy  # type: ignore[method-assign]
    async with session_for(handler, limiter=limiter) as session:
        records = await session.opportunities_of_lead("lead-1").collect()
        assert session.stats.rate_limited == 1
    assert len(records) == 1
    assert paused == [0.05]


@pytest.mark.looptime
async def test_lower_limit_in_the_message_is_adopted_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """'limit of 10 in 5 second(s)' tightens a 25-per-5 limiter and logs one warning."""
    answers = [rate_limited(429, limit=10), rate_limited(200, limit=10)]
    limiter = lsq.SlidingWindowLimiter(lsq.RateLimit(calls=25, period=5.0))

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop()
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    limiter.pause = _no_pause  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="leadsq_async")
    async with session_for(handler, limiter=limiter) as session:
        await session.opportunities_of_lead("lead-1").collect()
    assert limiter.rate_limit == lsq.RateLimit(calls=10, period=5.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "10 calls per 5" in warnings[0].getMessage()


async def _no_pause(seconds: float, *, limit: lsq.RateLimit | None = None) -> None:
    return None


@pytest.mark.looptime
async def test_rate_limit_error_raises_when_retries_are_spent() -> None:
    """A server that answers only rate-limit errors ends in RateLimitError."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return rate_limited(429)

    limiter = lsq.SlidingWindowLimiter(lsq.RateLimit(calls=25, period=0.001))
    async with session_for(handler, limiter=limiter) as session:
        with pytest.raises(lsq.RateLimitError) as info:
            await session.opportunities_of_lead("lead-1").collect()
    assert info.value.limit == lsq.RateLimit(25, 5.0)


@pytest.mark.looptime
async def test_secret_never_appears_in_logs_at_any_level(caplog: pytest.LogCaptureFixture) -> None:
    """With every logger at DEBUG, no log line holds the secret key."""
    caplog.set_level(logging.DEBUG)
    answers = [httpx.Response(503, text="busy")]

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop()
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    async with session_for(handler) as session:
        await session.opportunities_of_lead("lead-1").collect()
    assert caplog.records
    assert all(SECRET not in record.getMessage() for record in caplog.records)


@pytest.mark.looptime
async def test_secret_never_appears_in_repr_or_errors() -> None:
    """The session's repr and every error's str and repr leave the secret out."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.headers['x-LSQ-SecretKey']}", request=request)

    async with session_for(handler) as session:
        assert SECRET not in repr(session)
        with pytest.raises(lsq.TransportError) as info:
            await session.opportunities_of_lead("lead-1").collect()
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


@pytest.mark.looptime
async def test_client_passed_in_is_left_open() -> None:
    """A session closes only the client it created."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(FakeServer([])))
    async with lsq.Session("a", SECRET, host="http://127.0.0.1:9", client=client):
        pass
    assert not client.is_closed
    await client.aclose()


@pytest.mark.looptime
async def test_own_client_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session closes the client it created."""
    made: list[httpx.AsyncClient] = []
    real_init = httpx.AsyncClient.__init__

    def recording_init(client: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        made.append(client)
        real_init(client, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", recording_init)
    session = lsq.Session("a", SECRET, host="http://127.0.0.1:9")
    assert [client.is_closed for client in made] == [False]
    await session.aclose()
    assert [client.is_closed for client in made] == [True]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"page_size": 0}, ValueError),
        ({"page_size": "10"}, TypeError),
        ({"limit": -1}, ValueError),
        ({"limit": 1.5}, TypeError),
    ],
)
@pytest.mark.looptime
async def test_bad_paging_arguments_raise_before_any_request(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A bad page_size or limit raises at the call, with nothing sent."""
    server = FakeServer([opportunity(1)])
    async with session_for(server) as session:
        with pytest.raises(error):
            session.opportunities_of_lead("lead-1", **kwargs)
    assert server.requests == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"rate_limit": 25}, TypeError),
        ({"look_ahead": -1}, ValueError),
        ({"host": "http://example.com"}, ValueError),
    ],
)
def test_bad_session_arguments_raise_at_construction(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A bad timeout, rate limit, look-ahead or host raises when the session is built."""
    with pytest.raises(error):
        lsq.Session("a", SECRET, **kwargs)


@pytest.mark.looptime
async def test_paginate_walks_any_list_endpoint_with_its_own_list_key() -> None:
    """session.paginate pages a raw endpoint by PageIndex/PageSize, rows as the dicts sent."""
    leads = [{"ProspectID": f"L{n}", "mx_City": "Pune"} for n in range(7)]
    bodies: list[dict[str, Any]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/LeadManagement.svc/Leads.RecentlyModified"
        body = json.loads(request.content)
        bodies.append(body)
        index, size = body["Paging"]["PageIndex"], body["Paging"]["PageSize"]
        page = leads[(index - 1) * size : index * size]
        return httpx.Response(200, json={"RecordCount": len(leads), "Leads": page})

    parameter = {"FromDate": "2026-01-01 00:00:00", "ToDate": "2026-12-01 00:00:00"}
    async with session_for(handler) as session:
        walk = session.paginate(
            "LeadManagement.svc/Leads.RecentlyModified",
            body={"Parameter": parameter},
            list_key="Leads",
            page_size=3,
        )
        rows = await walk.collect()
    assert rows == leads
    assert all(body["Parameter"] == parameter for body in bodies)
    assert sorted(body["Paging"]["PageIndex"] for body in bodies) == [1, 2, 3]


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/v2/x",
        "/v2/x",
        "https://evil.example/x",
        "../v1/x",
        "a?b=1",
        "",
        "https:/v1/LeadManagement.svc/Leads.Get",
        "localhost:80/x",
        "mailto:someone",
        "%2e%2e/v1/x",
        "a/%2E%2E/%2e%2e/v1/x",
        "a/./b",
        "a//b",
        "a%2f..%2f..%2fv1",
        "a#b",
        "a\\..\\b",
    ],
)
def test_paginate_refuses_a_path_that_leaves_the_api(path: str) -> None:
    """A path that could leave /v2/ on the configured host is refused before sending."""
    session = lsq.Session("a", "b", host="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="path"):
        session.paginate(path)


def test_descending_without_sort_by_is_refused() -> None:
    """descending=False orders nothing without sort_by, so it is refused, not ignored."""
    session = lsq.Session("a", "b", host="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="sort_by"):
        session.opportunities_of_lead("lead-1", descending=False)


def test_errors_show_the_public_class_path() -> None:
    """An error's class reads leadsq_async.APIError, not the private module's path."""
    assert repr(lsq.APIError).endswith("'leadsq_async.APIError'>")
    assert lsq.RedisLimiter.__module__ == "leadsq_async"


def test_look_ahead_is_read_only() -> None:
    """Session.look_ahead can be read but not set after construction."""
    session = lsq.Session("a", "b", host="http://127.0.0.1:9", look_ahead=2)
    assert session.look_ahead == 2
    with pytest.raises(AttributeError):
        session.look_ahead = 5  # type: ignore[misc]


def test_a_loopback_http_session_loads_no_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a session for http://127.0.0.1 does no TLS set-up."""

    def no_tls(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("certificates loaded")

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", no_tls)
    monkeypatch.setattr(ssl, "create_default_context", no_tls)
    lsq.Session("a", "b", host="http://127.0.0.1:9")


@pytest.mark.looptime
async def test_retries_wait_on_the_injected_clock_and_respect_the_deadline() -> None:
    """Backoff sleeps and the total deadline run on the session's clock (virtual here)."""
    tries: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        tries.append(now())
        return httpx.Response(503, text="busy")

    retry = lsq.RetryPolicy(attempts=100, deadline=60.0, backoff=10.0, max_backoff=10.0)
    async with session_for(handler, retry=retry) as session:
        with pytest.raises(lsq.ServerError):
            await session.opportunities_of_lead("lead-1").collect()
    # Measured on a real clock, the virtual minutes would pass in no time: 100 tries.
    assert len(tries) < 100
    assert tries[-1] - tries[0] < 60.0


@pytest.mark.looptime
async def test_async_with_a_paginator_ends_the_look_ahead_before_going_on() -> None:
    """Leaving `async with paginator as records:` leaves no fetch running."""
    server = FakeServer([opportunity(n) for n in range(100)])
    server.gate = asyncio.Event()  # pages after the first never answer
    async with session_for(server, look_ahead=3) as session:
        async with session.opportunities_of_lead("lead-1", page_size=10) as records:
            async for _ in records:
                break
        assert server.in_flight == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.looptime
async def test_the_url_of_a_path_is_built_once_not_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Joining the base URL costs more than decoding a small page: once per path."""
    joins: list[str] = []
    real_join = httpx.URL.join

    def counting_join(url: httpx.URL, other: str) -> httpx.URL:
        joins.append(other)
        return real_join(url, other)

    monkeypatch.setattr(httpx.URL, "join", counting_join)
    async with session_for(FakeServer([opportunity(n) for n in range(30)])) as session:
        for _ in range(3):
            assert len(await session.opportunities_of_lead("lead-1", page_size=5).collect()) == 30
        assert session.stats.requests == 18
    assert joins == ["OpportunityManagement.svc/GetOpportunitiesOfLead"]
