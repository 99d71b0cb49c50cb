"""The crawls of a session: the records of one id page by page, and of many ids at once
(`crawl_opportunities`, `crawl_activities`, run by the fan-out engine in `_fanout`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from ._aio import cancel_and_wait
from ._checks import check_int, check_text
from ._endpoints import ACTIVITIES_OF_OPPORTUNITY, OPPORTUNITIES_OF_LEAD, Endpoint, raw_endpoint
from ._errors import LeadSquaredError
from ._fanout import Crawl, checked_ids
from ._paging import Paginator
from ._records import Activity, Opportunity
from ._request import PageQuery
from ._structure import structure_rows
from ._transport import Transport

__all__ = [
    "LeadResult",
    "OpportunityResult",
    "crawl_activities",
    "crawl_opportunities",
    "records_of",
    "rows_of",
]

T = TypeVar("T")
R = TypeVar("R")

#: Most ids a crawl works on at once by default: httpx's default connection pool
#: size, beyond which more tasks would only queue for a connection.
MAX_DEFAULT_CONCURRENCY = 100


@attrs.frozen
class LeadResult:
    """The opportunities of one lead, or why they could not all be had.

    Attributes:
        lead_id: the lead.
        records: its opportunities (empty when ``error`` is set).
        activities: with ``with_activities``, each opportunity's activities by
            opportunity id; else empty.
        error: None, or the exception that ended this lead: a
            `LeadSquaredError` (see its ``transient``), or a ``TypeError`` or
            ``ValueError`` for an id the API cannot take.
    """

    lead_id: str
    records: list[Opportunity] = attrs.field(factory=list)
    activities: dict[str, list[Activity]] = attrs.field(factory=dict)
    error: Exception | None = None


@attrs.frozen
class OpportunityResult:
    """The activities of one opportunity, or why they could not be had.

    Attributes:
        opportunity_id: the opportunity.
        records: its activities (empty when ``error`` is set).
        error: None, or the exception that ended this opportunity (as for
            `LeadResult.error`).
    """

    opportunity_id: str
    records: list[Activity] = attrs.field(factory=list)
    error: Exception | None = None


def records_of(
    transport: Transport,
    endpoint: Endpoint[R],
    id_value: object,
    filter_value: object = None,
    page_size: int | None = None,
    limit: int | None = None,
    query: Mapping[str, Any] | None = None,
) -> Paginator[R]:
    """The paginator over ``endpoint``'s records of one id; ``query`` holds the
    other arguments of `PageQuery.checked` (``columns``, ``sort_by``, ``descending``).

    Raises:
        TypeError, ValueError: for a bad argument, before anything is sent.
    """
    checked = PageQuery.checked(endpoint, id_value, filter_value=filter_value, **(query or {}))
    record_class = endpoint.record_class

    def structure(rows: list[dict[str, Any]]) -> list[R]:
        return structure_rows(rows, record_class)

    return Paginator(transport, checked, structure, page_size=page_size, limit=limit)


def rows_of(
    transport: Transport,
    path: object,
    params: Mapping[str, str] | None,
    body: Mapping[str, Any] | None,
    list_key: object,
    page_size: int | None,
    limit: int | None,
) -> Paginator[dict[str, Any]]:
    """`Session.paginate`, on ``transport``: the rows of any list endpoint, as sent.

    Raises:
        TypeError, ValueError: for a bad argument, before anything is sent.
    """
    query = PageQuery.raw(raw_endpoint(path, list_key), params=params, body=body)
    return Paginator(transport, query, list, page_size=page_size, limit=limit)


def crawl_opportunities(
    transport: Transport,
    lead_ids: object,
    concurrency: int | None,
    page_size: int | None,
    opportunity_type: str | None,
    with_activities: bool,
) -> Crawl[LeadResult]:
    """`Session.crawl_opportunities`, on ``transport``.

    Raises:
        TypeError, ValueError: for bad arguments, at the call.
    """
    ids = checked_ids(lead_ids)
    workers = _concurrency(transport, concurrency)
    _check_options(OPPORTUNITIES_OF_LEAD, opportunity_type, page_size)
    if not isinstance(with_activities, bool):
        raise TypeError(f"with_activities must be a bool, not {type(with_activities).__name__}")
    # The activities of every lead in flight share the crawl's width.
    activity_slots = asyncio.Semaphore(workers)

    async def activities_of(opportunity_id: str) -> list[Activity]:
        async with activity_slots:
            walk = records_of(transport, ACTIVITIES_OF_OPPORTUNITY, opportunity_id)
            return await walk.collect()

    async def one_lead(lead_id: str) -> LeadResult:
        try:
            walk = records_of(
                transport, OPPORTUNITIES_OF_LEAD, lead_id, opportunity_type, page_size
            )
            records = await walk.collect()
            activities: dict[str, list[Activity]] = {}
            if with_activities:
                keys = [record.opportunity_id for record in records]
                found = await _gather(activities_of(key) for key in keys)
                activities = dict(zip(keys, found, strict=True))
        except (LeadSquaredError, TypeError, ValueError) as error:
            return LeadResult(lead_id, error=_per_id(error))
        return LeadResult(lead_id, records, activities)

    return Crawl(ids, one_lead, concurrency=workers, spawn=transport.spawn, failed=LeadResult)


def crawl_activities(
    transport: Transport,
    opportunity_ids: object,
    concurrency: int | None,
    page_size: int | None,
    activity_event_code: str | None,
) -> Crawl[OpportunityResult]:
    """`Session.crawl_activities`, on ``transport``.

    Raises:
        TypeError, ValueError: for bad arguments, at the call.
    """
    ids = checked_ids(opportunity_ids)
    workers = _concurrency(transport, concurrency)
    _check_options(ACTIVITIES_OF_OPPORTUNITY, activity_event_code, page_size)

    async def one_opportunity(opportunity_id: str) -> OpportunityResult:
        try:
            walk = records_of(
                transport, ACTIVITIES_OF_OPPORTUNITY, opportunity_id, activity_event_code, page_size
            )
            return OpportunityResult(opportunity_id, await walk.collect())
        except (LeadSquaredError, TypeError, ValueError) as error:
            return OpportunityResult(opportunity_id, error=_per_id(error))

    return Crawl(
        ids,
        one_opportunity,
        concurrency=workers,
        spawn=transport.spawn,
        failed=OpportunityResult,
    )


def _per_id(error: Exception) -> Exception:
    """``error`` as one id's result; an account-wide failure is raised instead."""
    if isinstance(error, LeadSquaredError) and error.account_wide:
        raise error
    return error


def _concurrency(transport: Transport, concurrency: int | None) -> int:
    if concurrency is None:
        calls = transport.limiter.rate_limit.calls
        return min(max(2 * calls, 4), MAX_DEFAULT_CONCURRENCY)
    return check_int("concurrency", concurrency, minimum=1)


def _check_options(endpoint: Endpoint[Any], filter_value: object, page_size: object) -> None:
    if filter_value is not None:
        check_text(endpoint.filter_parameter, filter_value)
    if page_size is not None:
        check_int("page_size", page_size, minimum=1)


async def _gather(work: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``work`` concurrently; results in order. A failure cancels the rest."""
    tasks = [asyncio.ensure_future(one) for one in work]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await cancel_and_wait(tasks)
