"""`Session`: the facade. It checks arguments, builds the transport, hands out walks.

Everything that sends lives below it: `_transport` (limiter, HTTP, retries),
`_paging` (walking pages), `_crawl` and `_fanout` (fan-out over many ids). The account-wide feeds
(`_feeds`, with `Lead`) are imported by the four feed methods when first called: most
programs never read them, and they need not pay for importing them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from . import _crawl
from ._closing import AsyncClosing
from ._crawl import LeadResult, OpportunityResult
from ._endpoints import ACTIVITIES_OF_OPPORTUNITY, OPPORTUNITIES_OF_LEAD
from ._event_hub import EventHub
from ._fanout import Crawl
from ._limits import RateLimit, as_rate_limits
from ._paging import Paginator
from ._ratelimit import RateLimiter, SlidingWindowLimiter
from ._records import Activity, Opportunity
from ._retry import RetryPolicy
from ._transport import DEFAULT_TIMEOUT, SessionStats, Transport

if TYPE_CHECKING:
    from ._leads import Lead

__all__ = ["Session"]


class Session(AsyncClosing):
    """An asynchronous LeadSquared API session; use it with ``async with``.

    Args:
        access_key: the account's access key.
        secret_key: the account's secret key. It travels in a header only and
            is never shown in a repr, an exception or a log line.
        host: a region host such as ``api-in21.leadsquared.com`` (see
            `REGION_HOSTS`), or a full base URL such as ``http://127.0.0.1:8000``
            for a local server. Plain http is refused unless the host is loopback.
        rate_limit: the account's plan: a `RateLimit` (default 25 per 5 s), or several
            (``[RateLimit(10, 5), RateLimit(10_000, 86_400)]``). The session makes its
            own limiter of them.
        limiter: a limiter to share instead (a `SlidingWindowLimiter` several sessions
            use, a `RedisLimiter` several processes use), which the session does not
            close. Give ``rate_limit`` or ``limiter``, not both.
        timeout: seconds, or an ``httpx.Timeout``, for each request: each phase
            of it, and the whole of it (an ``httpx.Timeout``'s largest value).
        retry: how transient failures are retried, and the total deadline of
            one request: a slot further away (a spent quota) raises
            `QuotaExhaustedError` at once.
        wait_for_quota: wait for a spent quota instead (for long-running workers).
        client: an ``httpx.AsyncClient`` to send with, left open at the end; give it
            ``limits=httpx.Limits(keepalive_expiry=30)``, as the session's own has.
        look_ahead: how many pages a walk fetches ahead of the one it yields.
        max_response_bytes: the largest answer read (64 MiB); a larger one fails.

    Retries, deadlines and the limiter keep time with the running event loop's clock
    (a loop with virtual time, such as looptime's, runs them in virtual time).

    Raises:
        TypeError, ValueError: for a bad argument, before anything is sent: a limiter
            given as ``rate_limit`` (a `TypeError` that says to use ``limiter=``), or
            both ``rate_limit`` and ``limiter`` (a `ValueError`).
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        host: str = "api.leadsquared.com",
        rate_limit: RateLimit | Sequence[RateLimit] | None = None,
        limiter: RateLimiter | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        wait_for_quota: bool = False,
        client: httpx.AsyncClient | None = None,
        look_ahead: int = 4,
        max_response_bytes: int = 64 * 2**20,
    ) -> None:
        self._access_key_hint = access_key[:4] if isinstance(access_key, str) else ""
        shared, owns_limiter = limiter_for(rate_limit, limiter)
        self._transport = Transport.build(
            access_key,
            secret_key,
            host=host,
            limiter=shared,
            owns_limiter=owns_limiter,
            timeout=timeout,
            retry=retry,
            wait_for_quota=wait_for_quota,
            client=client,
            look_ahead=look_ahead,
            max_response_bytes=max_response_bytes,
        )

    def __repr__(self) -> str:
        hint, limit = self._access_key_hint, self.limiter.rate_limit
        return f"<Session {self.base_url} access_key={hint}… rate_limit={limit}>"

    @property
    def base_url(self) -> str:
        """The base URL every endpoint's path is joined to."""
        return str(self._transport.base_url)

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every request of this session goes through."""
        return self._transport.limiter

    @property
    def look_ahead(self) -> int:
        """How many pages a walk fetches ahead of the one it yields."""
        return self._transport.look_ahead

    @property
    def events(self) -> EventHub:
        """Subscribe here to what the session does: ``session.events.subscribe(listener)``."""
        return self._transport.events

    @property
    def stats(self) -> SessionStats:
        """What this session did so far: requests, rate-limit answers, retries, failures."""
        return self._transport.stats

    async def aclose(self) -> None:
        """Cancel the pages still being fetched ahead, and close what the session created."""
        await self._transport.aclose()

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
        """The opportunities of a lead (``GetOpportunitiesOfLead``), page after page:
        ``async for`` the `Paginator`, or use its ``.pages()`` or ``.collect()``.

        Args:
            lead_id: the lead's id (``ProspectId``).
            opportunity_type: only opportunities of this type code.
            page_size: rows per request; by default the largest the API honours.
            limit: stop after this many records, sending no request beyond them.
            columns: only these fields (the id is always added).
            sort_by: the field to sort by.
            descending: with ``sort_by``, largest (most recent) first; else smallest.

        Raises:
            TypeError, ValueError: for a bad argument, before anything is sent.
            LeadSquaredError: while iterating, for a call that failed for good.
        """
        query = {"columns": columns, "sort_by": sort_by, "descending": descending}
        ids = (lead_id, opportunity_type)
        return _crawl.records_of(
            self._transport, OPPORTUNITIES_OF_LEAD, *ids, page_size, limit, query
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
        query = {"columns": columns, "sort_by": sort_by, "descending": descending}
        ids = (opportunity_id, activity_event_code)
        endpoint = ACTIVITIES_OF_OPPORTUNITY
        return _crawl.records_of(self._transport, endpoint, *ids, page_size, limit, query)

    def paginate(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        list_key: str = "List",
        page_size: int | None = None,
        limit: int | None = None,
    ) -> Paginator[dict[str, Any]]:
        """Any list endpoint that pages with ``PageIndex``/``PageSize``, rows as the dicts
        sent, through the same limiter, retries, look-ahead and stop rules.

        Args:
            path: under ``/v2/``: ``"LeadManagement.svc/Leads.RecentlyModified"``.
            params: the query string's parameters.
            body: the JSON body; its ``Paging`` is set for each page.
            list_key: the key of the answer that holds the rows.
            page_size: rows per request (default 1000).
            limit: stop after this many rows.

        Raises:
            TypeError, ValueError: for a bad argument (a path outside ``/v2/``).
        """
        return _crawl.rows_of(self._transport, path, params, body, list_key, page_size, limit)

    def crawl_opportunities(
        self,
        lead_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        page_size: int | None = None,
        opportunity_type: str | None = None,
        with_activities: bool = False,
    ) -> Crawl[LeadResult]:
        """The opportunities of many leads, one `LeadResult` per lead as each finishes:
        ``async with session.crawl_opportunities(ids) as results: async for ...``.

        Args:
            lead_ids: any iterable or async iterable of lead ids, consumed lazily.
            concurrency: leads crawled at once; by default twice the calls of the
                shortest-period limit (at most 100). No more tasks than ids start.
            page_size: rows per request (default: the largest the API honours).
            opportunity_type: only opportunities of this type code.
            with_activities: also fetch each opportunity's `LeadResult.activities`.

        Raises:
            TypeError, ValueError: for bad arguments, at the call.
            QuotaExhaustedError: a spent quota, raised once the leads already started
                have gone as far as their requests got slots and their results are
                delivered; a lead that got no slot has no result.
            LeadSquaredError: another `account_wide` failure, which ends the crawl at once.
        """
        options = (concurrency, page_size, opportunity_type, with_activities)
        return _crawl.crawl_opportunities(self._transport, lead_ids, *options)

    def crawl_activities(
        self,
        opportunity_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        page_size: int | None = None,
        activity_event_code: str | None = None,
    ) -> Crawl[OpportunityResult]:
        """The activities of many opportunities, one `OpportunityResult` each as it finishes.

        Arguments and errors are those of `crawl_opportunities`.
        """
        options = (concurrency, page_size, activity_event_code)
        return _crawl.crawl_activities(self._transport, opportunity_ids, *options)

    def leads_modified(
        self,
        since: datetime,
        until: datetime,
        *,
        columns: Iterable[str] | str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        window: timedelta | None = None,
    ) -> Paginator[Lead]:
        """Every lead modified in [since, until) (``Leads.RecentlyModified``), window after
        window in time order, each lead once: see the feeds guide.

        Args:
            since: an aware datetime, inclusive (to the second).
            until: an aware datetime, exclusive.
            columns: only these fields (``ProspectID`` and ``ModifiedOn`` are always added).
            page_size: rows per request; by default the most the API serves (5,000).
            limit: stop after this many leads, sending no request beyond them.
            window: the first window's length (default one day; it grows while sparse).

        Raises:
            TypeError, ValueError: a naive datetime, ``until`` not after ``since``, or
                another bad argument, before anything is sent.
            WindowError: while iterating, a window the server cannot serve even at one minute.
            LeadSquaredError: while iterating, for a call that failed for good.
        """
        options = (columns, page_size, limit, window)
        from . import _feeds  # the account-wide feeds load on first use

        return _feeds.leads_modified(self._transport, since, until, *options)

    def activities_modified(
        self,
        since: datetime,
        until: datetime,
        *,
        event_code: str | int | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        window: timedelta | None = None,
    ) -> Paginator[Activity]:
        """Every activity created or modified in [since, until), window after window:
        ``RetrieveRecentlyModified``, or with ``event_code`` only that type's
        (``CustomActivity/RetrieveByActivityEvent``).

        Arguments and errors are those of `leads_modified`; the first window is 6 hours
        without ``event_code``, one day with it.
        """
        options = (event_code, page_size, limit, window)
        from . import _feeds

        return _feeds.activities_modified(self._transport, since, until, *options)

    def opportunities_of_type(
        self,
        opportunity_type: str | int,
        *,
        modified_since: datetime | None = None,
        columns: Iterable[str] | str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> Paginator[Opportunity]:
        """The opportunities of one type (``Retrieve/BySearchParameter``), most recently
        modified first.

        Args:
            opportunity_type: the type's event code, such as ``12002``.
            modified_since: an aware datetime: only opportunities modified at or after it.
                The walk ends at the first older row, sending no request beyond its page,
                while the server sorts as asked; otherwise it reads every row.
            columns: only these fields (the id, ``ProspectId`` and ``ModifiedOn`` are added).
            page_size: rows per request; by default 1,000.
            limit: stop after this many opportunities.

        Raises:
            TypeError, ValueError: for a bad argument, before anything is sent.
            LeadSquaredError: while iterating (an `APIError` if the account refuses the
                search: only administrators may call it).
        """
        options = (modified_since, columns, page_size, limit)
        from . import _feeds

        return _feeds.opportunities_of_type(self._transport, opportunity_type, *options)

    def opportunities_by_id(
        self,
        opportunity_type: str | int,
        ids: Iterable[str],
        *,
        columns: Iterable[str] | str | None = None,
        limit: int | None = None,
    ) -> Paginator[Opportunity]:
        """The opportunities of one type with these ids (``GetOpportunitiesById``), 2,000
        ids a request; an id the API does not return is left out, not an error.

        Args:
            opportunity_type: their type's event code.
            ids: the opportunity ids (``ProspectActivityId``); repeats are asked once.
            columns: the fields to return; the API requires a list, so by default
                ``CreatedOn``, ``ModifiedOn``, ``Owner`` and ``Status`` (the ids are added).
            limit: stop after this many opportunities.

        Raises:
            TypeError, ValueError: for a bad argument, before anything is sent.
            LeadSquaredError: while iterating, for a call that failed for good.
        """
        from . import _feeds

        return _feeds.opportunities_by_id(self._transport, opportunity_type, ids, columns, limit)


def limiter_for(
    rate_limit: RateLimit | Sequence[RateLimit] | None, limiter: RateLimiter | None
) -> tuple[RateLimiter, bool]:
    """The limiter for ``Session(rate_limit=, limiter=)``, and whether the session owns it.

    Raises:
        TypeError: ``rate_limit`` is not a `RateLimit` or a non-empty sequence of them (a
            limiter there is told to go in ``limiter=``), or ``limiter`` is no limiter.
        ValueError: both are given, or the sequence is empty.
    """
    if limiter is not None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError(
                "limiter must be a rate limiter (a SlidingWindowLimiter, a RedisLimiter), "
                f"not {type(limiter).__name__}"
            )
        if rate_limit is not None:
            raise ValueError(
                "give rate_limit or limiter, not both: a shared limiter keeps its own limits"
            )
        return limiter, False
    if isinstance(rate_limit, RateLimiter):
        raise TypeError(
            f"rate_limit takes RateLimit values; to share a {type(rate_limit).__name__}, "
            "pass it as Session(limiter=...)"
        )
    return SlidingWindowLimiter(
        as_rate_limits(RateLimit() if rate_limit is None else rate_limit)
    ), True
