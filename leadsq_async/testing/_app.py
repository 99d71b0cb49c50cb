"""The emulator as a plain ASGI application: routing, keys, rate limits, faults, latency.

One request goes: inbound half of the latency -> route (404, 405) -> keys (401) -> region
(401) -> rate limits (429 or 200 envelope) -> fault draw -> body, parameters and data (400,
500 envelope, or the page) -> "slow" delay -> outbound half of the latency -> answer, dropped
or truncated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal
from urllib.parse import parse_qsl

import attrs
import httpx

from leadsq_async import RateLimit
from leadsq_async.testing._config import EmulatorConfig, refusal_message
from leadsq_async.testing._data import Dataset
from leadsq_async.testing._dates import parse_date
from leadsq_async.testing._query import INVALID_INPUT, ApiError, ListQuery, envelope, parse_body
from leadsq_async.testing._rows import Row
from leadsq_async.testing._stats import EmulatorStats, SlidingWindow

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json; charset=utf-8"
_HTML = b"text/html; charset=utf-8"
_BARE_500 = {"Message": "There was an error processing the request."}
_CDN_PAGES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
}


@attrs.frozen
class _Endpoint:
    """One emulated endpoint. The emulator keeps its own table, apart from the client's, so a
    wrong path or parameter name in the client fails against it instead of agreeing with it."""

    kind: Literal["opportunity", "activity", "leads"]
    id_param: str  # "" for none
    filter_param: str  # "" for none
    filter_key: str
    keep: tuple[str, ...]  # the row id first, then the other keys Include_CSV never removes
    default_size: int
    entity: str
    max_size: int | None = None  # the endpoint's own largest page, below the config's cap


_ENDPOINTS = {
    "/v2/opportunitymanagement.svc/getopportunitiesoflead": _Endpoint(
        kind="opportunity",
        id_param="leadId",
        filter_param="opportunityType",
        filter_key="OpportunityEvent",
        keep=("OpportunityId", "ProspectId"),
        default_size=100,
        entity="Lead",
    ),
    "/v2/opportunitymanagement.svc/getactivitiesofopportunity": _Endpoint(
        kind="activity",
        id_param="opportunityId",
        filter_param="activityEventCode",
        filter_key="ActivityEvent",
        keep=("ProspectActivityId", "ProspectId"),
        default_size=25,
        entity="Opportunity",
    ),
    "/v2/leadmanagement.svc/leads.recentlymodified": _Endpoint(
        kind="leads",
        id_param="",
        filter_param="",
        filter_key="",
        keep=("ProspectID",),
        default_size=100,
        entity="Lead",
        max_size=5000,
    ),
}
# Leads.RecentlyModified's Parameter.FromDate and ToDate: UTC, to the second.
_UTC_SECOND = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _utc_second(parameter: Mapping[str, Any], name: str) -> float:
    """Parameter.FromDate or ToDate as UTC epoch seconds.

    Raises:
        ApiError: 500 ``MXInvalidInputException`` when it is missing or not a real
            ``YYYY-MM-DD HH:MM:SS``.
    """
    value = parameter.get(name)
    if value is None or value == "":
        raise ApiError(500, INVALID_INPUT, f"Invalid Input! Parameter Name: {name}")
    when = parse_date(value) if isinstance(value, str) and _UTC_SECOND.fullmatch(value) else None
    if when is None:
        message = f"Invalid Input! {name} must be a date as YYYY-MM-DD HH:MM:SS, got {value!r}"
        raise ApiError(500, INVALID_INPUT, message)
    return when


class InjectedDisconnect(httpx.RemoteProtocolError):
    """Raised by the app for a "drop" or "truncate" fault, after sending what it sends.

    Over a socket, uvicorn answers an app that raises after starting its answer by closing the
    connection, so the client sees its own httpx.RemoteProtocolError. In process, through
    ``httpx.ASGITransport``, this exception itself reaches the caller; it is an
    httpx.RemoteProtocolError too, so client code handles both the same way.
    """


@attrs.frozen
class _Answer:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    refused_by: RateLimit | None = None


def _json_answer(status: int, payload: object, *, refused_by: RateLimit | None = None) -> _Answer:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return _Answer(status, body, refused_by=refused_by)


def _html_answer(status: int, title: str, text: str, *headers: tuple[bytes, bytes]) -> _Answer:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{text}</body></html>"
    return _Answer(status, page.encode(), _HTML, headers)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class EmulatorApp:
    """An ASGI application that answers like LeadSquared's two opportunity list endpoints, and
    ``LeadManagement.svc/Leads.RecentlyModified`` over the dataset's leads (``Dataset.leads``).

    Serve it with uvicorn (``serve_in_thread``, ``EmulatorServer``) or call it in process with
    ``httpx.ASGITransport(app=app)``. ``config`` may be changed at any time; ``stats`` counts
    what was answered; ``data`` is the dataset served (changes to it show at once).

    In process, a "drop" or "truncate" fault raises ``InjectedDisconnect`` (an
    httpx.RemoteProtocolError) from the client call, and a "slow" fault only delays the answer
    (ASGITransport applies no timeouts).

    ``clock`` and ``sleep`` are what the app reads the time with and waits with: for the
    rate-limit windows, the latency, "slow" answers and the index lag (``data`` is given the
    same clock, for the times ``Dataset.add_opportunity`` notes). They must agree with each
    other, as the defaults do (asyncio's loop clock is ``time.monotonic``). Pass the running
    loop's clock (``asyncio.get_running_loop().time``) to drive the app in process on a
    virtual-time event loop, where a 5-second window or a day-long quota costs nothing. A
    server in another thread needs the defaults: ``clock`` is called from that thread.
    """

    def __init__(
        self,
        data: Dataset | None = None,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.data = Dataset.generate() if data is None else data
        self.config = EmulatorConfig() if config is None else config
        self.stats = EmulatorStats()
        self._clock = clock
        self._sleep = sleep
        self.data._use_clock(clock)
        self._initial_data = self.data.copy()
        self._initial_config = attrs.evolve(self.config)
        self._lock = threading.Lock()
        # Accepted arrivals, one window per configured period (limits of one period share it).
        self._windows: dict[float, SlidingWindow] = {}
        self._fault_seed = self.config.fault_seed
        self._fault_rng = random.Random(self._fault_seed)
        self._jitter_rng = random.Random(self._fault_seed)

    def __repr__(self) -> str:
        return f"EmulatorApp(data={self.data!r}, config={self.config!r})"

    def reset(self) -> None:
        """Put config, data, statistics, the rate-limit windows and the fault draws back to how
        they were when the app was created."""
        with self._lock:
            self.config.update_from(self._initial_config)
            self.data.restore(self._initial_data)
            self._windows.clear()
            self._reseed(self.config.fault_seed)
        self.stats.reset()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no request is in flight; True if so within ``timeout`` seconds.

        For a server in another thread (a client that timed out leaves its request running
        there). Never call it from the event loop that runs this app. ``timeout`` is real time,
        whatever the app's clock.
        """
        return self.stats._wait_idle(timeout)

    def _reseed(self, seed: int) -> None:
        self._fault_seed = seed
        self._fault_rng.seed(seed)
        self._jitter_rng.seed(seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (http and lifespan scopes)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"the LeadSquared emulator serves HTTP only, not {scope['type']}")
        # Names match case-insensitively; reversed, so the first of a repeated name wins.
        query = {
            name.casefold(): value
            for name, value in reversed(
                parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            )
        }
        self.stats._started(keys_in_url="accesskey" in query or "secretkey" in query)
        finished = False
        try:
            config = self.config
            with self._lock:
                jitter = self._jitter_rng.uniform(0.0, config.jitter) if config.jitter else 0.0
            transit = (config.latency + jitter) / 2
            if transit:
                await self._sleep(transit)
            handled = await self._handle(scope, receive, query, config)
            if handled is None:
                return
            answer, fault = handled
            if fault == "slow":
                await self._sleep(config.slow_seconds)
            if transit:
                await self._sleep(transit)
            await self._start(send, answer, fault)
            # Count the answer before its last byte leaves: a client that has read it may
            # look at the statistics at once.
            self.stats._answered(answer.status, refused_by=answer.refused_by)
            self.stats._finished()
            finished = True
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
        finally:
            if not finished:
                self.stats._finished()

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(
        self, scope: Scope, receive: Receive, query: dict[str, str], config: EmulatorConfig
    ) -> tuple[_Answer, str | None] | None:
        endpoint = _ENDPOINTS.get(scope["path"].casefold())
        if endpoint is None:
            return _html_answer(404, "404 Not Found", "Endpoint not found."), None
        if scope["method"] != "POST":
            allow = (b"allow", b"POST")
            return _html_answer(405, "405 Method Not Allowed", "Method not allowed.", allow), None
        raw = await _read_body(receive)
        if raw is None:
            return None
        refusal = self._check_keys(scope, query, config)
        if refusal is not None:
            return refusal, None
        refusing = self._admit(config)
        if refusing is not None:
            refused = envelope("MXAPIRateLimitExceededException", refusal_message(refusing))
            return _json_answer(config.rate_limit_status, refused, refused_by=refusing), None
        fault = self._draw_fault(config)
        if fault in ("500", "502", "503"):
            status = int(fault)
            if status == 500:
                return _json_answer(500, _BARE_500), fault
            return _html_answer(status, _CDN_PAGES[status], ""), fault
        if fault == "drop":
            return _Answer(200, b""), fault
        try:
            return self._list(endpoint, query, raw, config), fault
        except ApiError as error:
            return _json_answer(error.status, envelope(error.exception_type, error.message)), fault

    def _check_keys(
        self, scope: Scope, query: dict[str, str], config: EmulatorConfig
    ) -> _Answer | None:
        headers = {
            name.decode("latin-1").casefold(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        access = headers.get("x-lsq-accesskey", query.get("accesskey", ""))
        secret = headers.get("x-lsq-secretkey", query.get("secretkey", ""))
        good = hmac.compare_digest(access.encode(), config.access_key.encode())
        good &= hmac.compare_digest(secret.encode(), config.secret_key.encode())
        if not good:
            message = "Invalid access key or secret key."
            return _json_answer(401, envelope("MXUnAuthorizedAccessException", message))
        if config.wrong_region_host is not None:
            message = (
                "This account belongs to another region. Send API calls to "
                f"https://{config.wrong_region_host}/v2/"
            )
            return _json_answer(401, envelope("MXUnAuthorizedAccessException", message))
        return None

    def _admit(self, config: EmulatorConfig) -> RateLimit | None:
        """Accept the request if, for every limit, fewer than ``calls`` were accepted in
        (now - period, now]; else return the refusing limit that frees last."""
        now = self._clock()
        limits = config.rate_limits
        with self._lock:
            windows = {limit.period: self._windows.get(limit.period) for limit in limits}
            self._windows = {
                period: SlidingWindow() if window is None else window
                for period, window in windows.items()
            }
            refusing: RateLimit | None = None
            frees_at = -math.inf
            for limit in limits:
                window = self._windows[limit.period]
                count = window.count_at(now, limit.period)
                if count >= limit.calls:
                    # The arrival whose expiry leaves calls - 1 in the window.
                    at = window.time_at(count - limit.calls) + limit.period
                    if at > frees_at:
                        refusing, frees_at = limit, at
            if refusing is not None:
                return refusing
            for window in self._windows.values():
                window.add(now)
        self.stats._accept(now, limits[0].period)
        return None

    def _draw_fault(self, config: EmulatorConfig) -> str | None:
        if not config.fault_rate or not config.fault_kinds:
            return None
        with self._lock:
            if config.fault_seed != self._fault_seed:
                self._reseed(config.fault_seed)
            if self._fault_rng.random() >= config.fault_rate:
                return None
            kind = self._fault_rng.choice(sorted(config.fault_kinds))
        self.stats._fault(kind)
        return kind

    def _list(
        self, endpoint: _Endpoint, query: dict[str, str], raw: bytes, config: EmulatorConfig
    ) -> _Answer:
        body = parse_body(raw)
        cap = config.page_size_cap
        if endpoint.max_size is not None:
            cap = min(cap, endpoint.max_size)
        if endpoint.kind == "leads":
            return self._leads(endpoint, body, cap, config)
        entity_id = query.get(endpoint.id_param.casefold(), "").strip()
        if not entity_id:
            raise ApiError(
                500, INVALID_INPUT, f"Invalid Input! Parameter Name: {endpoint.id_param}"
            )
        selection = ListQuery.from_body(
            body,
            default_size=endpoint.default_size,
            cap=cap,
            cap_mode=config.page_size_cap_mode,
        )
        rows = self._rows(endpoint, entity_id, config)
        wanted = query.get(endpoint.filter_param.casefold(), "").strip()
        if wanted:
            rows = [row for row in rows if str(row.get(endpoint.filter_key)) == wanted]
        record_count, page = selection.select(rows, keep=endpoint.keep)
        if page:
            for _ in range(config.insert_ahead):
                if endpoint.kind == "opportunity":
                    self.data.add_opportunity(entity_id)
                else:
                    self.data.add_activity(entity_id)
        return _json_answer(200, {"RecordCount": record_count, "List": page})

    def _leads(
        self, endpoint: _Endpoint, body: Mapping[str, Any], cap: int, config: EmulatorConfig
    ) -> _Answer:
        """Leads.RecentlyModified: the leads whose ModifiedOn is within Parameter.FromDate and
        ToDate (both included), oldest change first unless Sorting says otherwise, each sent as
        a LeadPropertyList."""
        parameter = body.get("Parameter")
        if not isinstance(parameter, Mapping):
            raise ApiError(500, INVALID_INPUT, "Invalid Input! Parameter Name: Parameter")
        since, until = (_utc_second(parameter, name) for name in ("FromDate", "ToDate"))
        selection = ListQuery.from_body(
            body,
            default_size=endpoint.default_size,
            cap=cap,
            cap_mode=config.page_size_cap_mode,
        )
        if selection.sort_column is None:
            selection = attrs.evolve(selection, sort_column="ModifiedOn", descending=False)
        rows = [
            lead
            for lead in self.data.leads()
            if since <= (parse_date(lead["ModifiedOn"]) or -math.inf) <= until
        ]
        record_count, page = selection.select(rows, keep=endpoint.keep)
        leads = [
            {"LeadPropertyList": [{"Attribute": key, "Value": value} for key, value in row.items()]}
            for row in page
        ]
        return _json_answer(200, {"RecordCount": record_count, "Leads": leads})

    def _rows(self, endpoint: _Endpoint, entity_id: str, config: EmulatorConfig) -> list[Row]:
        table = self.data.opportunities if endpoint.kind == "opportunity" else self.data.activities
        rows = table.get(entity_id)
        if rows is None:
            message = f"{endpoint.entity} does not exist in the system"
            raise ApiError(500, INVALID_INPUT, message)
        if endpoint.kind == "opportunity" and config.index_lag:
            horizon = self._clock() - config.index_lag
            rows = [row for row in rows if self._indexed(row, horizon)]
        return rows

    def _indexed(self, row: Row, horizon: float) -> bool:
        opportunity_id = row.get("OpportunityId")
        added = self.data.added_at(opportunity_id) if isinstance(opportunity_id, str) else None
        return added is None or added <= horizon

    async def _start(self, send: Send, answer: _Answer, fault: str | None) -> None:
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
