"""`Transport`: the one object that sends, and the one way to fetch a page.

It owns the httpx client, the keys, the rate limiter, the retry policy, the
statistics and the tasks that fetch pages ahead, and sends every request the
same way: a rate-limit slot, the POST built by `_request`, the whole answer
read, the slot given back, `_decode`, and on a transient failure another try
with a fresh slot. A rate-limit answer pauses the limiter for every task that
shares it, and a lower limit named in its message is adopted. Its clock is the
running loop's, so retries and deadlines run in virtual time on a loop that has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import attrs
import httpx

from ._aio import cancel_and_wait, within
from ._checks import check_instance, check_int, check_seconds
from ._decode import RawPage, decode_page
from ._errors import (
    LeadSquaredError,
    MalformedResponseError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    TransportError,
)
from ._event_hub import EventHub
from ._hosts import base_url
from ._limits import RateLimit, as_rate_limit, learned_in_words, plausible
from ._ratelimit import RateLimiter
from ._request import PageQuery, WireRequest, build_request
from ._retry import RetryPolicy
from ._secrets import auth_headers, scrub

__all__ = ["SessionStats", "Transport", "checked_timeout"]

logger = logging.getLogger("leadsq_async")

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


@attrs.define
class SessionStats:
    """Counters of what a session did, for progress reports and tests.

    Attributes:
        requests: requests sent (each retry counts).
        rate_limited: rate-limit answers received.
        retries: requests sent again after a failure.
        failures: calls that failed for good.
    """

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    failures: int = 0


class Transport:
    """Sends every request of a session: limiter, HTTP, decoding and retries.

    Built by `Session` from arguments it has checked. ``owns_client`` and
    ``owns_limiter`` say which of the two `aclose` closes.
    """

    def __init__(
        self,
        *,
        base_url: httpx.URL,
        headers: dict[str, str],
        secrets: tuple[str, ...],
        limiter: RateLimiter,
        owns_limiter: bool,
        retry: RetryPolicy,
        timeout: httpx.Timeout,
        client: httpx.AsyncClient | None,
        look_ahead: int,
        max_response_bytes: int = 64 * 2**20,
        wait_for_quota: bool = False,
    ) -> None:
        self.base_url = base_url
        self.max_response_bytes = max_response_bytes
        self.wait_for_quota = wait_for_quota
        self.limiter = limiter
        self.retry = retry
        self.look_ahead = look_ahead
        self.stats = SessionStats()
        self.events = EventHub()
        self._headers = headers
        self._secrets = secrets
        self._owns_limiter = owns_limiter
        self._timeout = timeout
        # The whole request, not only each read: a server that trickles a byte at a
        # time would otherwise hold the request, and its slot, for ever.
        timeouts = (timeout.connect, timeout.read, timeout.write, timeout.pool)
        self._deadline = max((value for value in timeouts if value), default=None)
        self._owns_client = client is None
        self._client = client or _client_for(base_url, timeout, limiter.rate_limit)
        self._quota_announced: datetime | None = None
        self._implausible_told = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._urls: dict[str, httpx.URL] = {}
        port = base_url.port or (443 if base_url.scheme == "https" else 80)
        self._where = f"{base_url.host}:{port}"

    @classmethod
    def build(
        cls,
        access_key: str,
        secret_key: str,
        *,
        host: str,
        limiter: RateLimiter,
        owns_limiter: bool,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        client: httpx.AsyncClient | None,
        look_ahead: int,
        max_response_bytes: int,
        wait_for_quota: bool,
    ) -> Transport:
        """The transport for `Session`'s arguments, checked (the limiter by `Session`).

        Raises:
            TypeError, ValueError: for a bad argument (see `Session`).
        """
        headers = auth_headers(access_key, secret_key)
        url = httpx.URL(base_url(host))
        if client is not None:
            check_instance("client", client, httpx.AsyncClient)
        return cls(
            base_url=url,
            headers=headers,
            secrets=(secret_key,),
            limiter=limiter,
            owns_limiter=owns_limiter,
            retry=RetryPolicy() if retry is None else check_instance("retry", retry, RetryPolicy),
            timeout=checked_timeout(timeout),
            client=client,
            look_ahead=check_int("look_ahead", look_ahead, minimum=0),
            max_response_bytes=check_int("max_response_bytes", max_response_bytes, minimum=1024),
            wait_for_quota=check_instance("wait_for_quota", wait_for_quota, bool),
        )

    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client requests go through."""
        return self._client

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks started with `spawn` that are still running."""
        return frozenset(self._tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coroutine`` as a task that `aclose` cancels if it is still running."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def fetch_page(self, query: PageQuery, page_index: int, page_size: int) -> RawPage:
        """Fetch one page through the rate limiter, retrying transient failures.

        Raises:
            LeadSquaredError: the last failure, once it is not transient or the
                retry policy's attempts or deadline are spent.
        """
        if self._closed:
            raise RuntimeError("the session is closed")
        request = build_request(query, page_index, page_size)
        url = self._urls.get(request.path) or self._url_for(request.path)
        clock = asyncio.get_running_loop().time
        deadline = _Deadline(clock(), self.retry.deadline)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._send_once(url, request, page_index, attempt, query, deadline)
            except QuotaExhaustedError as spent:
                self.stats.failures += 1
                spent.asked = query.asked
                raise
            except RateLimitError as error:
                await self._on_rate_limited(error, request.path)
                failure: LeadSquaredError = error
            except LeadSquaredError as error:
                failure = error
            backoff = 0.0 if isinstance(failure, RateLimitError) else self.retry.delay(attempt)
            # No retry may start after the deadline, backoff included.
            elapsed = clock() - deadline.started + backoff
            if not self.retry.should_retry(failure, attempt, elapsed):
                self.stats.failures += 1
                failure.asked = query.asked
                raise failure
            self.stats.retries += 1
            if self.events.listening:
                from ._events import RetryScheduled  # the events load once listened to

                why, kind = str(failure), type(failure).__name__
                self.events.emit(RetryScheduled(request.path, attempt, backoff, why, kind))
            logger.info(
                "retrying %s (try %d of %d) after: %s",
                request.path,
                attempt + 1,
                self.retry.attempts,
                failure,
            )
            if backoff:
                await asyncio.sleep(backoff)

    async def aclose(self) -> None:
        """Cancel the pages still being fetched ahead, and close what the session created."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._tasks)
        if self._owns_client:
            await self._client.aclose()
        if self._owns_limiter:
            await self.limiter.aclose()

    async def _send_once(
        self,
        url: httpx.URL,
        request: WireRequest,
        page_index: int,
        attempt: int,
        query: PageQuery,
        deadline: _Deadline,
    ) -> RawPage:
        endpoint, events = request.path, self.events
        failure: LeadSquaredError | None = None
        status: int | None = None
        clock = asyncio.get_running_loop().time
        async with contextlib.AsyncExitStack() as slot:
            await self._take_slot(slot, endpoint, deadline)
            self.stats.requests += 1
            sent = clock()
            if events.listening:
                from ._events import RequestSent

                events.emit(RequestSent(endpoint, page_index, attempt))
            try:
                status, body = await within(self._deadline, self._post(url, request))
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                failure = RequestTimeoutError(
                    f"no answer in time ({_timeout_name(exc)}) from {self._where}"
                )
            except httpx.RequestError as exc:
                failure = TransportError(self._describe(exc))
            except LeadSquaredError as exc:  # an answer over the size cap
                failure = exc
            finally:
                # Cancelled too: a listener counting requests in flight must hear the end.
                if events.listening:
                    from ._events import ResponseReceived

                    events.emit(ResponseReceived(endpoint, status, clock() - sent))
        if failure is not None:
            # Raised outside the `except`: the httpx exception, whose request holds the
            # headers and so the secret, is then neither its cause nor its context.
            failure.endpoint = endpoint
            raise failure
        assert status is not None
        logger.debug("POST %s -> %d", endpoint, status)
        list_key = query.endpoint.list_key
        page = decode_page(
            status, body, endpoint=endpoint, secrets=self._secrets, list_key=list_key
        )
        if events.listening:
            from ._events import PageFetched

            size = request.json["Paging"]["PageSize"]
            rows, count = len(page.rows), page.record_count
            events.emit(PageFetched(endpoint, query.id_value, page_index, rows, count, size))
        return page

    def _url_for(self, path: str) -> httpx.URL:
        """``path`` under the base URL, kept; one leaving it (`raw_endpoint` refuses them)."""
        url = self.base_url.join(path)
        if not str(url).startswith(str(self.base_url)):
            raise ValueError(f"{path!r} is not under {self.base_url}")
        if len(self._urls) < 256:
            self._urls[path] = url
        return url

    def _describe(self, exc: httpx.RequestError) -> str:
        """What went wrong on the network, naming where (``ConnectError`` alone doesn't)."""
        detail, where = scrub(str(exc), self._secrets) or "no detail", self._where
        text = f"{type(exc).__name__}: {detail} (at {where})"
        if self.base_url.scheme == "https" and "WRONG_VERSION_NUMBER" in detail:
            # The usual cause: a local server given without its scheme, so TLS was tried.
            text += (
                f"; the server at {where} seems to answer plain http: if it is a local "
                f"server, give the host as http://{where}"
            )
        return text

    async def _post(self, url: httpx.URL, request: WireRequest) -> tuple[int, bytes]:
        """POST and read the whole answer, decoded, refusing one larger than the cap."""
        async with self._client.stream(
            "POST",
            url,
            params=request.params,
            json=request.json,
            headers=self._headers,
            timeout=self._timeout,
            # Whatever the client's own setting: a redirect would carry the keys away.
            follow_redirects=False,
        ) as response:
            chunks, size = [], 0
            # Closed at once if the cap is hit, not left to the loop's finaliser.
            stream = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
            async with contextlib.aclosing(stream) as decoded:
                async for chunk in decoded:
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise MalformedResponseError(
                            f"the answer is larger than {self.max_response_bytes:,} bytes "
                            "(Session(max_response_bytes=)); it was not read further",
                            endpoint=request.path,
                            status=response.status_code,
                        )
                    chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    async def _take_slot(
        self, slot: contextlib.AsyncExitStack, endpoint: str, deadline: _Deadline
    ) -> None:
        """A rate-limit slot, held by ``slot``; a spent quota fails fast, or is waited out.
        `SlotGranted` says what the limiter did to grant it."""
        clock = asyncio.get_running_loop().time
        try:
            max_wait = deadline.remaining(clock())
            grant = await slot.enter_async_context(self.limiter.slot(max_wait=max_wait))
            if self.events.listening:
                from ._events import SlotGranted

                self.events.emit(SlotGranted(endpoint, grant.waited, grant.limit))
            return
        except QuotaExhaustedError as spent:
            spent.endpoint = endpoint
            if not self.wait_for_quota:
                raise
            retry_at, limit = spent.retry_at, as_rate_limit(spent.limit)
        if self.events.listening:
            from ._events import QuotaWait

            self.events.emit(QuotaWait(endpoint, retry_at, limit))
        # Once per wait, not once per task that waits: they wait for slots a moment apart.
        announced = self._quota_announced
        if announced is None or retry_at - announced > timedelta(minutes=1):
            self._quota_announced = retry_at
            logger.warning(
                "the rate limit%s is spent: waiting until %s UTC",
                "" if limit is None else f" of {limit}",
                f"{retry_at:%Y-%m-%d %H:%M}",
            )
        waiting = clock()
        grant = await slot.enter_async_context(self.limiter.slot())
        if self.events.listening:
            from ._events import SlotGranted

            self.events.emit(SlotGranted(endpoint, grant.waited, grant.limit))
        # The wait for a quota is not the request's: its deadline starts again.
        deadline.started += clock() - waiting

    async def _on_rate_limited(self, error: RateLimitError, endpoint: str) -> None:
        """Learn the limit a refusal names, and pause every task for its period."""
        self.stats.rate_limited += 1
        stated = as_rate_limit(error.limit)
        if stated is not None and not plausible(stated):
            # Handled as a refusal that names no limit; said once per session.
            if not self._implausible_told:
                self._implausible_told = True
                logger.warning(
                    "LeadSquared named a rate limit of %s, which is not believed (a period "
                    "over 31 days): the refusal is taken as one that names no limit",
                    stated,
                )
            stated = None
        before = self.limiter.rate_limits
        if stated is not None and await self.limiter.learn(stated):
            logger.warning(
                "LeadSquared enforces %s, which the rate limiter did not keep to: "
                "it keeps to it from now on%s",
                stated,
                learned_in_words(stated, before, self.limiter.rate_limits),
            )
        pause = self.limiter.rate_limit.period if stated is None else stated.period
        if self.events.listening:
            from ._events import RateLimited

            self.events.emit(RateLimited(endpoint, stated, pause))
        await self.limiter.pause(pause, limit=stated)


@attrs.define
class _Deadline:
    """When one request's tries started, for the retry policy's total deadline."""

    started: float
    seconds: float

    def remaining(self, now: float) -> float:
        """Seconds left before the deadline."""
        return max(0.0, self.started + self.seconds - now)


def _timeout_name(exc: BaseException) -> str:
    return "the whole request" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__


def _client_for(url: httpx.URL, timeout: httpx.Timeout, limit: RateLimit) -> httpx.AsyncClient:
    """The client a session makes: no certificates loaded for plain (loopback) http, no
    redirect followed, and connections kept open for twice the limit's period, so a
    saturated session does not pay the handshakes again each wave (see
    docs/how-it-works/paging.md)."""
    limits = httpx.Limits(
        max_connections=100,  # httpx's default, as is the next
        max_keepalive_connections=20,
        keepalive_expiry=max(30.0, 2 * limit.period),
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits, verify=url.scheme == "https")


def checked_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """``Session(timeout=)`` as an ``httpx.Timeout``."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(check_seconds("timeout", timeout))
