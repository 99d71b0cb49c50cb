"""`Session`: the keys, the HTTP client and the rate limiter, and one way to send.

Every request goes the same way: take a rate-limit slot, POST, read the whole
answer, give the slot back (it stays held for the limiter's period), decode,
and on a transient failure try again, taking a fresh slot each time. A
rate-limit answer pauses the limiter for every task that shares it, and a
lower limit named in its message is adopted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Coroutine, Iterable
from typing import Any, TypeVar

import attrs
import httpx

from ._closing import AsyncClosing
from ._crawl import (
    ID_ERRORS,
    LeadResult,
    OpportunityResult,
    check_concurrency,
    check_ids,
    crawl,
    gather_limited,
)
from ._endpoints import ACTIVITIES_OF_OPPORTUNITY, OPPORTUNITIES_OF_LEAD, Endpoint
from ._errors import LeadSquaredError, RateLimitError, RequestTimeout, TransportError
from ._paging import Paginator
from ._ratelimit import RateLimit, RateLimiter, SlidingWindowLimiter
from ._records import Activity, Opportunity
from ._retry import RetryPolicy
from ._wire import PageQuery, RawPage, auth_headers, base_url, build_request, decode_page, scrub

__all__ = ["Session", "SessionStats"]

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


class Session(AsyncClosing):
    """An asynchronous LeadSquared API session; use it with ``async with``.

    Args:
        access_key: the account's access key.
        secret_key: the account's secret key. It travels in a header only and
            is never shown in a repr, an exception or a log line.
        host: a region host such as ``api-in21.leadsquared.com`` (see
            `REGION_HOSTS`), or a full base URL such as ``http://127.0.0.1:8000``
            for a local server. Plain http is refused unless the host is loopback.
        rate_limit: the account's plan as a `RateLimit` (default 25 calls per
            5 s), or a limiter to share, such as a `SlidingWindowLimiter` used by
            several sessions or a `RedisRateLimit` shared by several processes.
            A limiter passed in is not closed by the session.
        timeout: seconds, or an ``httpx.Timeout``, for each request.
        retry: how transient failures are retried.
        client: an ``httpx.AsyncClient`` to send with, for apps that own one;
            the session then leaves it open when it closes. The client the
            session makes otherwise keeps idle connections for 30 seconds (or
            two periods), not httpx's 5, so that waves a period apart reuse
            them; give yours ``limits=httpx.Limits(keepalive_expiry=30)`` too.
        look_ahead: how many pages a walk fetches ahead of the one it yields.

    Raises:
        TypeError, ValueError: for a bad argument, before anything is sent.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        host: str = "api.leadsquared.com",
        rate_limit: RateLimit | RateLimiter | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        look_ahead: int = 4,
    ) -> None:
        self._headers = auth_headers(access_key, secret_key)
        self._secrets = (secret_key,)
        self._access_key_hint = access_key[:4]
        self._base_url = base_url(host)
        self._timeout = _checked_timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        self._retry = retry or RetryPolicy()
        if isinstance(look_ahead, bool) or not isinstance(look_ahead, int):
            raise TypeError(f"look_ahead must be an int, not {type(look_ahead).__name__}")
        if look_ahead < 0:
            raise ValueError(f"look_ahead must be at least 0, not {look_ahead}")
        self.look_ahead = look_ahead
        self._limiter, self._owns_limiter = _limiter_for(rate_limit)
        if client is not None and not isinstance(client, httpx.AsyncClient):
            raise TypeError(f"client must be an httpx.AsyncClient, not {type(client).__name__}")
        self._owns_client = client is None
        self._client = (
            client if client is not None else _client_for(self._timeout, self._limiter.rate_limit)
        )
        self._page_sizes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.stats = SessionStats()
        """What this session did so far: requests, rate-limit answers, retries, failures."""

    def __repr__(self) -> str:
        return (
            f"<Session {self._base_url} access_key={self._access_key_hint}… "
            f"rate_limit={self._limiter.rate_limit}>"
        )

    @property
    def base_url(self) -> str:
        """The base URL every endpoint's path is joined to."""
        return str(self._base_url)

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every request of this session goes through."""
        return self._limiter

    async def aclose(self) -> None:
        """Cancel the pages still being fetched ahead, and close what the session created."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()
        if self._owns_limiter:
            await self._limiter.aclose()

    def opportunities_of_lead(
        self,
        lead_id: str,
        opportunity_type: str | None = None,
        *,
        page_size: int | None = None,
        limit: int | None = None,
        columns: Iterable[str] | str | None = None,
        sort_by: str | None = None,
        descending: bool = True,
    ) -> Paginator[Opportunity]:
        """The opportunities of a lead (``GetOpportunitiesOfLead``), page after page.

        Args:
            lead_id: the lead's id (``ProspectId``).
            opportunity_type: only opportunities of this type code.
            page_size: rows per request; by default the largest the API honours.
            limit: stop after this many records, sending no request beyond them.
            columns: only these fields (the id is always added).
            sort_by: the field to sort by.
            descending: most recent (largest) first, else oldest first.

        Returns:
            A `Paginator`: ``async for`` it, or use ``.pages()`` or ``.collect()``.

        Raises:
            TypeError, ValueError: for a bad argument, before anything is sent.
            LeadSquaredError: while iterating, for a call that failed for good.
        """
        return self._paginate(
            OPPORTUNITIES_OF_LEAD,
            lead_id,
            opportunity_type,
            page_size=page_size,
            limit=limit,
            columns=columns,
            sort_by=sort_by,
            descending=descending,
        )

    def activities_of_opportunity(
        self,
        opportunity_id: str,
        activity_event_code: str | None = None,
        *,
        page_size: int | None = None,
        limit: int | None = None,
        columns: Iterable[str] | str | None = None,
        sort_by: str | None = None,
        descending: bool = True,
    ) -> Paginator[Activity]:
        """The activities of an opportunity (``GetActivitiesOfOpportunity``), page after page.

        Arguments and errors are those of `opportunities_of_lead`, with the
        opportunity's id and an optional activity event code.
        """
        return self._paginate(
            ACTIVITIES_OF_OPPORTUNITY,
            opportunity_id,
            activity_event_code,
            page_size=page_size,
            limit=limit,
            columns=columns,
            sort_by=sort_by,
            descending=descending,
        )

    def crawl_opportunities(
        self,
        lead_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        page_size: int | None = None,
        opportunity_type: str | None = None,
        with_activities: bool = False,
    ) -> AsyncGenerator[LeadResult, None]:
        """The opportunities of many leads, one `LeadResult` per lead as each finishes.

        Args:
            lead_ids: any iterable or async iterable of lead ids, consumed lazily.
            concurrency: how many leads are crawled at once; by default twice
                the rate limit's calls, enough to keep every slot busy.
            page_size: rows per request (default: the largest the API honours).
            opportunity_type: only opportunities of this type code.
            with_activities: also fetch every opportunity's activities, through
                the same limiter, into `LeadResult.activities`.

        Raises:
            TypeError, ValueError: for bad arguments, at the call.
        """
        ids = check_ids(lead_ids)
        limit = self._crawl_concurrency(concurrency)
        self._paginate(OPPORTUNITIES_OF_LEAD, "check", opportunity_type, page_size=page_size)
        activity_slots = asyncio.Semaphore(limit)

        async def one_lead(lead_id: str) -> LeadResult:
            try:
                walk = self.opportunities_of_lead(lead_id, opportunity_type, page_size=page_size)
                records = await walk.collect()
                activities: dict[str, list[Activity]] = {}
                if with_activities:
                    ids = [record.opportunity_id for record in records]
                    found = await gather_limited(ids, self._activities, activity_slots)
                    activities = dict(zip(ids, found, strict=True))
            except ID_ERRORS as error:
                return LeadResult(lead_id, error=error)
            return LeadResult(lead_id, records, activities)

        return crawl(ids, one_lead, concurrency=limit, spawn=self._spawn)

    def crawl_activities(
        self,
        opportunity_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        page_size: int | None = None,
        activity_event_code: str | None = None,
    ) -> AsyncGenerator[OpportunityResult, None]:
        """The activities of many opportunities, one `OpportunityResult` each as it finishes.

        Arguments and errors are those of `crawl_opportunities`.
        """
        ids = check_ids(opportunity_ids)
        limit = self._crawl_concurrency(concurrency)
        self._paginate(ACTIVITIES_OF_OPPORTUNITY, "check", activity_event_code, page_size=page_size)

        async def one_opportunity(opportunity_id: str) -> OpportunityResult:
            try:
                walk = self.activities_of_opportunity(
                    opportunity_id, activity_event_code, page_size=page_size
                )
                return OpportunityResult(opportunity_id, await walk.collect())
            except ID_ERRORS as error:
                return OpportunityResult(opportunity_id, error=error)

        return crawl(ids, one_opportunity, concurrency=limit, spawn=self._spawn)

    async def _activities(self, opportunity_id: str) -> list[Activity]:
        return await self.activities_of_opportunity(opportunity_id).collect()

    def _crawl_concurrency(self, concurrency: int | None) -> int:
        if concurrency is None:
            return max(2 * self._limiter.rate_limit.calls, 4)
        return check_concurrency(concurrency)

    def _paginate(
        self,
        endpoint: Endpoint[T],
        id_value: str,
        filter_value: str | None,
        *,
        page_size: int | None = None,
        limit: int | None = None,
        columns: Iterable[str] | str | None = None,
        sort_by: str | None = None,
        descending: bool = True,
    ) -> Paginator[T]:
        query = PageQuery.checked(
            endpoint,
            id_value,
            filter_value=filter_value,
            columns=columns,
            sort_by=sort_by,
            descending=descending,
        )
        return Paginator(self, query, page_size=page_size, limit=limit)

    # What the paginator needs (see _paging.PageSource); private, for the paginator only.

    def _page_size_for(self, endpoint: Endpoint[Any], asked: int | None = None) -> int:
        """The page size to ask ``endpoint`` for: ``asked`` (by default the largest the
        API honours), but never more than the endpoint was seen to serve."""
        size = endpoint.max_page_size if asked is None else asked
        return min(size, self._page_sizes.get(endpoint.path, size))

    def _learn_page_size(self, endpoint: Endpoint[Any], page_size: int) -> None:
        """Remember that ``endpoint`` serves at most ``page_size`` rows a page."""
        self._page_sizes[endpoint.path] = self._page_size_for(endpoint, page_size)

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coroutine`` as a task that `aclose` cancels if it is still running."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fetch_page(self, query: PageQuery, page_index: int, page_size: int) -> RawPage:
        """Fetch one page through the rate limiter, retrying transient failures.

        Raises:
            LeadSquaredError: the last failure, once it is not transient or the
                retry policy's attempts or time are spent.
        """
        if self._closed:
            raise RuntimeError("the session is closed")
        request = build_request(query, page_index, page_size)
        url = self._base_url.join(request.path)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._send_once(url, request.params, request.json, request.path)
            except RateLimitError as error:
                await self._on_rate_limited(error)
                failure: LeadSquaredError = error
            except LeadSquaredError as error:
                failure = error
            if not self._retry.should_retry(failure, attempt, time.monotonic() - started):
                self.stats.failures += 1
                raise failure
            self.stats.retries += 1
            logger.info(
                "retrying %s (try %d of %d) after: %s",
                request.path,
                attempt + 1,
                self._retry.attempts,
                failure,
            )
            if not isinstance(failure, RateLimitError):
                await asyncio.sleep(self._retry.delay(attempt))

    async def _send_once(
        self, url: httpx.URL, params: dict[str, str], body: dict[str, Any], endpoint: str
    ) -> RawPage:
        async with self._limiter.slot():
            self.stats.requests += 1
            try:
                response = await self._client.post(
                    url, params=params, json=body, headers=self._headers, timeout=self._timeout
                )
            except httpx.TimeoutException as exc:
                # `from None`: httpx's exception holds the request, headers and
                # secret included.
                raise RequestTimeout(
                    f"no answer in time ({type(exc).__name__})", endpoint=endpoint
                ) from None
            except httpx.RequestError as exc:
                detail = scrub(str(exc), self._secrets) or "no detail"
                raise TransportError(f"{type(exc).__name__}: {detail}", endpoint=endpoint) from None
        logger.debug("POST %s -> %d", endpoint, response.status_code)
        return decode_page(
            response.status_code, response.content, endpoint=endpoint, secrets=self._secrets
        )

    async def _on_rate_limited(self, error: RateLimitError) -> None:
        self.stats.rate_limited += 1
        stated = error.limit
        if stated is not None:
            configured = self._limiter.rate_limit
            if await self._limiter.lower(stated):
                logger.warning(
                    "LeadSquared enforces %s, less than the configured %s: "
                    "the rate limiter now keeps to it",
                    stated,
                    configured,
                )
        await self._limiter.pause(self._limiter.rate_limit.period)


def _limiter_for(rate_limit: RateLimit | RateLimiter | None) -> tuple[RateLimiter, bool]:
    if rate_limit is None:
        return SlidingWindowLimiter(RateLimit()), True
    if isinstance(rate_limit, RateLimit):
        return SlidingWindowLimiter(rate_limit), True
    if isinstance(rate_limit, RateLimiter):
        return rate_limit, False
    raise TypeError(
        f"rate_limit must be a RateLimit or a rate limiter, not {type(rate_limit).__name__}"
    )


def _client_for(timeout: httpx.Timeout, limit: RateLimit) -> httpx.AsyncClient:
    """The client a session makes: it keeps connections open from one wave to the next.

    A saturated session leaves each connection idle for a whole ``period``
    between requests. httpx closes a connection idle for 5 seconds by default,
    so under a 5-second period every wave would open its connections anew and
    pay the TCP and TLS handshakes (two round trips or more) on top of the
    period. A connection the server closed meanwhile is noticed before it is
    used, and a request that loses that race is retried as a dropped connection.
    """
    limits = httpx.Limits(
        max_connections=100,  # httpx's default, as is the next
        max_keepalive_connections=20,
        keepalive_expiry=max(30.0, 2 * limit.period),
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits)


def _checked_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be seconds or an httpx.Timeout, not {type(timeout).__name__}"
        )
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
    return httpx.Timeout(float(timeout))
