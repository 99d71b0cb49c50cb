"""The transport against servers and inputs that misbehave on purpose (issue 12's attacks).

Keys must never leave the configured host nor show in any spelling; no object reachable
from an error may hold them; a request is bounded in time and size whatever the server
does; an id the API cannot take fails alone, before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import traceback
import urllib.parse
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes import FAST_RETRY, SECRET, opportunity, session_for
from task_check import no_task_left_behind

import leadsq_async as lsq
from leadsq_async.testing import RunningEmulator

pytestmark = pytest.mark.usefixtures(no_task_left_behind.__name__)


def spellings(secret: str) -> list[str]:
    """The spellings of a secret a server may echo back."""
    return [
        secret,
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        "".join(f"\\u{ord(char):04x}" for char in secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret).lower(),
        "".join(f"&#{ord(char)};" for char in secret),
    ]


SLASHED = "s3cr3t/Key+never=shown"


def assert_no_spelling(text: str, secret: str = SLASHED) -> None:
    for spelling in spellings(secret):
        assert spelling.lower() not in text.lower(), spelling


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through attributes, containers, exception
    chains and arguments (not traceback frames, which hold whatever was live)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        value = stack.pop()
        if id(value) in seen or isinstance(value, (type, type(reachable), type(json))):
            continue
        seen.add(id(value))
        yield value
        if isinstance(value, (str, bytes, int, float, bool)) or value is None:
            continue
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
            continue
        if isinstance(value, BaseException):
            stack.extend([value.__cause__, value.__context__, *value.args])
        stack.extend(getattr(value, "__dict__", {}).values())
        for name in getattr(type(value), "__slots__", ()):
            stack.append(getattr(value, name, None))
        if isinstance(value, httpx.Headers):
            stack.extend(value.raw)


@pytest.mark.looptime
async def test_keys_never_follow_a_redirect_even_with_a_following_client() -> None:
    """An app's client with follow_redirects=True still sends the keys to the API host only."""
    hosts: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "127.0.0.1":
            return httpx.Response(302, headers={"Location": "http://evil.example/steal"})
        return httpx.Response(200, json={"RecordCount": 0, "List": []})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=True)
    session = lsq.Session("access", SECRET, host="http://127.0.0.1:9", client=client)
    async with session:
        with pytest.raises(lsq.ResponseError, match="redirect") as info:
            await session.opportunities_of_lead("lead-1").collect()
    await client.aclose()
    assert hosts == ["127.0.0.1"]
    assert info.value.account_wide


@pytest.mark.looptime
async def test_a_secret_echoed_in_any_spelling_is_scrubbed_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """JSON-escaped, \\u-escaped, URL-encoded or HTML-escaped, the secret shows nowhere."""
    echo = " ".join(spellings(SLASHED))
    answers = [
        httpx.Response(503, text=f"busy {echo}"),
        httpx.Response(500, json={"Status": "Error", "ExceptionMessage": f"bad key {echo}"}),
    ]

    async def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    caplog.set_level(logging.DEBUG)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    # A key with a slash and a plus, the characters escaped most.
    session = lsq.Session(
        "access-key", SLASHED, host="http://127.0.0.1:9", client=client, retry=FAST_RETRY
    )
    async with client, session:
        with pytest.raises(lsq.APIError) as info:
            await session.opportunities_of_lead("lead-1").collect()
    error = info.value
    shown = [str(error), repr(error), error.body, *traceback.format_exception(error)]
    shown += [record.getMessage() for record in caplog.records]
    assert any("retrying" in record.getMessage() for record in caplog.records)
    for text in shown:
        assert_no_spelling(text)


def test_a_non_ascii_secret_is_refused_without_showing_it() -> None:
    """A secret no header can carry fails at Session(), and the message leaves it out."""
    with pytest.raises(ValueError, match="outside ASCII") as info:
        lsq.Session("access", "sécret-kéy-123", host="http://127.0.0.1:9")
    assert "sécret" not in str(info.value)


@pytest.mark.looptime
async def test_no_object_reachable_from_a_transport_error_holds_the_key() -> None:
    """The httpx exception (whose request holds the headers) is not chained to the error."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    async with session_for(handler, retry=lsq.RetryPolicy(attempts=1)) as session:
        with pytest.raises(lsq.TransportError) as info:
            await session.opportunities_of_lead("lead-1").collect()
    error = info.value
    assert error.__context__ is None
    assert error.__cause__ is None
    for value in reachable(error):
        assert not isinstance(value, httpx.Request)
        if isinstance(value, (str, bytes)):
            assert SECRET not in str(value)


@pytest.mark.looptime
async def test_an_id_the_api_cannot_take_fails_alone_before_sending() -> None:
    """A 100 KB id is that id's failure in a crawl; the other ids are crawled."""
    asked: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        lead = request.url.params["leadId"]
        asked.append(lead)
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1, lead)]})

    huge = "L" * 100_000
    async with (
        session_for(handler) as session,
        session.crawl_opportunities(["lead-1", huge, "lead-2"]) as results,
    ):
        by_id = {result.lead_id: result async for result in results}
    assert isinstance(by_id[huge].error, ValueError)
    assert "100,000 characters" in str(by_id[huge].error)
    assert sorted(asked) == ["lead-1", "lead-2"]


@pytest.mark.slow
async def test_the_timeout_bounds_the_whole_request_not_each_read() -> None:
    """A server that trickles a byte every 0.2 s cannot hold a timeout=1 request for long."""

    stop = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        with contextlib.suppress(ConnectionError, OSError):
            while not stop.is_set():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.2)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    retry = lsq.RetryPolicy(attempts=1)
    started = loop.time()
    async with (
        server,
        lsq.Session(
            "a", SECRET, host=f"http://127.0.0.1:{port}", timeout=1, retry=retry
        ) as session,
    ):
        with pytest.raises(lsq.RequestTimeoutError, match="whole request"):
            await session.opportunities_of_lead("lead-1").collect()
        assert session.limiter.in_flight == 0  # type: ignore[attr-defined]
        elapsed = loop.time() - started
        stop.set()
        await asyncio.gather(*handlers)
    assert elapsed < 5


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body of about inflated/1000 bytes that inflates to ``inflated`` bytes."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b"\0" * 2**20
    parts = [packer.compress(block) for _ in range(inflated // len(block))]
    return b"".join([*parts, packer.flush()])


@pytest.mark.looptime
async def test_an_answer_larger_than_the_cap_fails_that_call_without_reading_it_all() -> None:
    """A gzip body that inflates to 64 MiB fails at a 1 MiB cap, read no further."""
    bomb = gzip_bomb(64 * 2**20)
    assert len(bomb) < 2**20
    sent = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=bomb)

    async with session_for(handler, max_response_bytes=2**20) as session:
        with pytest.raises(lsq.MalformedResponseError, match="larger than 1,048,576 bytes"):
            await session.opportunities_of_lead("lead-1").collect()
    assert sent == 1  # not retried: the same answer would come again


def test_max_response_bytes_is_checked() -> None:
    """A cap below 1 KiB, or not an int, is refused before anything is sent."""
    with pytest.raises(ValueError, match="max_response_bytes"):
        lsq.Session("a", "b", host="http://127.0.0.1:9", max_response_bytes=10)


_ = (FAST_RETRY, Any)


@pytest.mark.slow
async def test_a_network_error_names_the_host_and_port() -> None:
    """Nothing listening: the error says where it tried, not only 'ConnectError'."""
    retry = lsq.RetryPolicy(attempts=1)
    async with lsq.Session("a", SECRET, host="http://127.0.0.1:9", retry=retry) as session:
        with pytest.raises(lsq.TransportError) as info:
            await session.opportunities_of_lead("lead-1").collect()
    assert "ConnectError" in str(info.value)
    assert "at 127.0.0.1:9" in str(info.value)


@pytest.mark.slow
async def test_a_plain_http_server_given_without_a_scheme_gets_a_hint(
    lsq_emulator: RunningEmulator,
) -> None:
    """host='127.0.0.1:PORT' tries TLS on a plain-http server: the error says to add http://."""
    where = f"127.0.0.1:{httpx.URL(lsq_emulator.url).port}"
    retry = lsq.RetryPolicy(attempts=1)
    async with lsq.Session("a", SECRET, host=where, retry=retry) as session:
        with pytest.raises(lsq.TransportError) as info:
            await session.opportunities_of_lead("lead-1").collect()
    assert f"give the host as http://{where}" in str(info.value)


@pytest.mark.looptime
async def test_an_error_names_the_id_it_was_asked_for() -> None:
    """'Lead does not exist' says which lead, without the caller adding it."""

    async def handler(request: httpx.Request) -> httpx.Response:
        envelope = {"Status": "Error", "ExceptionMessage": "Lead does not exist in the system"}
        return httpx.Response(500, json=envelope)

    async with session_for(handler) as session:
        with pytest.raises(lsq.APIError) as info:
            await session.opportunities_of_lead("LEAD-ID").collect()
    assert "leadId=LEAD-ID" in str(info.value)
    assert info.value.asked == "leadId=LEAD-ID"
