"""What the emulator sends: JSON and HTML answers, and the faults that break one off."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import httpx

from leadsq_async import RateLimit

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json; charset=utf-8"
_HTML = b"text/html; charset=utf-8"
BARE_500 = {"Message": "There was an error processing the request."}
CDN_PAGES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
}


class InjectedDisconnect(httpx.RemoteProtocolError):
    """Raised by the app for a "drop" or "truncate" fault, after sending what it sends.

    Over a socket, uvicorn answers an app that raises after starting its answer by closing the
    connection, so the client sees its own httpx.RemoteProtocolError. In process, through
    ``httpx.ASGITransport``, this exception itself reaches the caller; it is an
    httpx.RemoteProtocolError too, so client code handles both the same way.
    """


@attrs.frozen
class Answer:
    """One answer: status, body, content type, headers, and the limit that refused it."""

    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    refused_by: RateLimit | None = None


def json_answer(status: int, payload: object, *, refused_by: RateLimit | None = None) -> Answer:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Answer(status, body, refused_by=refused_by)


def html_answer(status: int, title: str, text: str, *headers: tuple[bytes, bytes]) -> Answer:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{text}</body></html>"
    return Answer(status, page.encode(), _HTML, headers)


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def start(send: Send, answer: Answer, fault: str | None) -> None:
    """Send the status and headers, or fail as the fault says (raising)."""
    body = answer.body
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(body)).encode()),
        *answer.headers,
    ]
    if fault == "drop":
        # uvicorn checks header values before writing a byte and refuses this one, so the
        # connection closes with no answer at all (it would otherwise write the status line
        # at once, before any body).
        illegal = [(b"x-emulator-fault", b"drop\r\n")]
        with contextlib.suppress(Exception):  # refused as intended
            await send({"type": "http.response.start", "status": 200, "headers": illegal})
        raise InjectedDisconnect("Server disconnected without sending a response.")
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    if fault == "truncate":
        part = body[: len(body) // 2]
        await send({"type": "http.response.body", "body": part, "more_body": True})
        raise InjectedDisconnect(
            "peer closed connection without sending complete message body "
            f"(received {len(part)} bytes, expected {len(body)})"
        )
