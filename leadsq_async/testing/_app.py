"""The emulator as a plain ASGI application: routing, keys, rate limits, faults, latency. A
request goes: inbound half of the latency -> route (404, 405) -> keys (401) -> region (401)
-> rate limits (429 or 200 envelope) -> fault draw -> body, parameters and data (400, 500
envelope, the bare 500 of a window too large, or the page) -> "slow" delay -> outbound half
of the latency -> answer, dropped or truncated; the admin route (``_admin``) only checks the
keys.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import math
import random
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import attrs

from leadsq_async import RateLimit
from leadsq_async.testing import _feeds
from leadsq_async.testing._account import Account
from leadsq_async.testing._admin import ADMIN_PATH, admin
from leadsq_async.testing._answers import (
    BARE_500,
    CDN_PAGES,
    Answer,
    InjectedDisconnect,
    Receive,
    Send,
    html_answer,
    json_answer,
    read_body,
    start,
)
from leadsq_async.testing._clock import EmulatorClock
from leadsq_async.testing._config import EmulatorConfig, refusal_message
from leadsq_async.testing._data import Dataset
from leadsq_async.testing._per_lead import ACTIVITIES_OF_OPPORTUNITY, OPPORTUNITIES_OF_LEAD, list_of
from leadsq_async.testing._query import ApiError, envelope, parse_body
from leadsq_async.testing._stats import EmulatorStats, SlidingWindow

__all__ = ["EmulatorApp", "InjectedDisconnect"]

Scope = MutableMapping[str, Any]
Handler = Callable[[Account, Mapping[str, str], Mapping[str, Any], EmulatorConfig], object]


def _feed(
    serve: Callable[[Account, Mapping[str, Any], EmulatorConfig], object],
) -> Handler:
    return lambda account, _query, body, config: serve(account, body, config)


# Path (case-folded) -> the endpoint's name, as in the statistics, and its handler.
_ROUTES: dict[str, tuple[str, Handler]] = {
    f"/v2/{name.casefold()}": (name, handler)
    for name, handler in (
        (
            "OpportunityManagement.svc/GetOpportunitiesOfLead",
            functools.partial(list_of, OPPORTUNITIES_OF_LEAD),
        ),
        (
            "OpportunityManagement.svc/GetActivitiesOfOpportunity",
            functools.partial(list_of, ACTIVITIES_OF_OPPORTUNITY),
        ),
        ("LeadManagement.svc/Leads.RecentlyModified", _feed(_feeds.leads_modified)),
        ("ProspectActivity.svc/RetrieveRecentlyModified", _feed(_feeds.activities_modified)),
        (
            "ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent",
            _feed(_feeds.activities_of_event),
        ),
        (
            "OpportunityManagement.svc/Retrieve/BySearchParameter",
            _feed(_feeds.search_opportunities),
        ),
        ("OpportunityManagement.svc/GetOpportunitiesById", _feed(_feeds.opportunities_by_id)),
    )
}


class EmulatorApp:
    """An ASGI application that answers like LeadSquared's API for one emulated account: the
    per-lead endpoints (GetOpportunitiesOfLead, GetActivitiesOfOpportunity) and the
    account-wide ones (Leads.RecentlyModified, RetrieveRecentlyModified,
    CustomActivity/RetrieveByActivityEvent, Retrieve/BySearchParameter, GetOpportunitiesById),
    all from the same records.

    Serve it with uvicorn (``serve_in_thread``, ``EmulatorServer``) or call it in process with
    ``httpx.ASGITransport(app=app)``. ``config`` may be changed at any time; ``stats`` counts
    what was answered; ``data`` is the dataset served; ``account`` changes it while it runs,
    from any thread (and so does the admin route, ``/_emulator/account``).

    In process, a "drop" or "truncate" fault raises ``InjectedDisconnect`` (an
    httpx.RemoteProtocolError) from the client call, and a "slow" fault only delays the answer
    (ASGITransport applies no timeouts).

    Its time is the serving event loop's (``asyncio.get_running_loop().time()``, see
    ``clock``): rate-limit windows, latency, "slow" answers and the index lag all run on it,
    so in process on a virtual-time loop (the ``looptime`` pytest plugin) a 5-second window or
    a day-long quota costs nothing. Its now, which a change stamps on ``ModifiedOn``, is the
    real UTC time when the app was made plus the loop time elapsed since.
    """

    def __init__(self, data: Dataset | None = None, config: EmulatorConfig | None = None) -> None:
        self.data = Dataset.generate() if data is None else data
        self.config = EmulatorConfig() if config is None else config
        self.stats = EmulatorStats()
        self.clock = EmulatorClock()
        self.account = Account(self.data, self.clock)
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
        with self._lock, self.account.lock:
            self.config.update_from(self._initial_config)
            self.data.restore(self._initial_data)
            self.account.shapes.clear()
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
        self.clock.serve_on(asyncio.get_running_loop())
        # Names match case-insensitively; reversed, so the first of a repeated name wins.
        query = {
            name.casefold(): value
            for name, value in reversed(
                parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            )
        }
        if scope["path"].casefold() == ADMIN_PATH:
            await self._admin(scope, receive, send, query)
            return
        route = _ROUTES.get(scope["path"].casefold())
        endpoint = route[0] if route is not None else None
        self.stats._started(
            keys_in_url="accesskey" in query or "secretkey" in query, endpoint=endpoint
        )
        finished = False
        try:
            config = self.config
            with self._lock:
                jitter = self._jitter_rng.uniform(0.0, config.jitter) if config.jitter else 0.0
            transit = (config.latency + jitter) / 2
            if transit:
                await asyncio.sleep(transit)
            handled = await self._handle(scope, receive, query, config, route)
            if handled is None:
                return
            answer, fault = handled
            if fault == "slow":
                await asyncio.sleep(config.slow_seconds)
            if transit:
                await asyncio.sleep(transit)
            await start(send, answer, fault)
            # Count the answer before its last byte leaves: a client that has read it may
            # look at the statistics at once.
            self.stats._answered(answer.status, refused_by=answer.refused_by, endpoint=endpoint)
            self.stats._finished()
            finished = True
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
        finally:
            if not finished:
                self.stats._finished()

    async def _admin(
        self, scope: Scope, receive: Receive, send: Send, query: dict[str, str]
    ) -> None:
        raw = await read_body(receive)
        if raw is None:
            return
        answer = self._check_keys(scope, query, self.config) or admin(
            self.account, scope["method"], raw
        )
        await start(send, answer, None)
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})

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
        self,
        scope: Scope,
        receive: Receive,
        query: dict[str, str],
        config: EmulatorConfig,
        route: tuple[str, Handler] | None,
    ) -> tuple[Answer, str | None] | None:
        if route is None:
            return html_answer(404, "404 Not Found", "Endpoint not found."), None
        if scope["method"] != "POST":
            allow = (b"allow", b"POST")
            return html_answer(405, "405 Method Not Allowed", "Method not allowed.", allow), None
        raw = await read_body(receive)
        if raw is None:
            return None
        refusal = self._check_keys(scope, query, config)
        if refusal is not None:
            return refusal, None
        refusing = self._admit(config)
        if refusing is not None:
            refused = envelope("MXAPIRateLimitExceededException", refusal_message(refusing))
            return json_answer(config.rate_limit_status, refused, refused_by=refusing), None
        fault = self._draw_fault(config)
        if fault in ("500", "502", "503"):
            status = int(fault)
            if status == 500:
                return json_answer(500, BARE_500), fault
            return html_answer(status, CDN_PAGES[status], ""), fault
        if fault == "drop":
            return Answer(200, b""), fault
        try:
            payload = route[1](self.account, query, parse_body(raw), config)
        except ApiError as error:
            return json_answer(error.status, envelope(error.exception_type, error.message)), fault
        except _feeds.WindowTooLarge:
            return json_answer(500, BARE_500), fault
        return json_answer(200, payload), fault

    def _check_keys(
        self, scope: Scope, query: dict[str, str], config: EmulatorConfig
    ) -> Answer | None:
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
            return json_answer(401, envelope("MXUnAuthorizedAccessException", message))
        if config.wrong_region_host is not None:
            message = (
                "This account belongs to another region. Send API calls to "
                f"https://{config.wrong_region_host}/v2/"
            )
            return json_answer(401, envelope("MXUnAuthorizedAccessException", message))
        return None

    def _admit(self, config: EmulatorConfig) -> RateLimit | None:
        """Accept the request if, for every limit, fewer than ``calls`` were accepted in
        (now - period, now]; else return the refusing limit that frees last."""
        now = self.clock.monotonic()
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
