"""The whole account into a warehouse, incrementally: the `leadsquared_account` dlt source.

Its tables (``leads``, ``opportunities``, ``activities``) are read through the account-wide
feeds, each from a `dlt.sources.incremental` cursor on ``ModifiedOn``, and merged on their
ids; with ``reconcile`` a run also marks the rows the account no longer serves. How the
cursors stay safe, and what a run costs: docs/warehouse.md.
"""

# No ``from __future__ import annotations``: dlt reads the source's annotations itself.
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue
from dlt.extract import DltResource

from leadsq_async import RateLimit, RateLimiter, RetryPolicy
from leadsq_async._hosts import base_url
from leadsq_async._limits import utc_now
from leadsq_async._secrets import auth_headers

from .account_rows import (
    FEED_ACTIVITY_COLUMNS,
    FEED_OPPORTUNITY_COLUMNS,
    LEAD_COLUMNS,
    AccountRows,
)
from .account_session import SharedSession, SyncProgress
from .account_work import SyncWork, merged
from .helpers import session_for
from .settings import checked_rate_limit

__all__ = [
    "DEFAULT_START",
    "LeadSquaredAccountConfiguration",
    "SyncProgress",
    "SyncWork",
    "leadsquared_account",
]

#: Where a first run starts without ``start_date``: before LeadSquared's first accounts.
DEFAULT_START = datetime(2010, 1, 1, tzinfo=timezone.utc)
ACCOUNT_SOURCE = "leadsquared_account"
# The activities of the run's opportunities, yielded by the opportunities resource.
_OPPORTUNITY_ACTIVITIES = dlt.mark.make_hints(
    table_name="activities",
    primary_key="ProspectActivityId",
    write_disposition="merge",
    columns=FEED_ACTIVITY_COLUMNS,
)
CURSOR = "ModifiedOn"
# The kind of walk that reads one opportunity's activities, in the run's `SyncWork`.
_OPPORTUNITY_WALK = "opportunity activities"
# The most opportunities whose activities are fetched at once (crawl's most workers).
_MOST_LANES = 100


@configspec
class LeadSquaredAccountConfiguration(BaseConfiguration):
    """What `leadsquared_account` reads from dlt's configuration when it is not passed
    (section ``[sources.leadsquared]``, shared with `leadsquared`)."""

    access_key: TSecretStrValue = None  # type: ignore[assignment]
    secret_key: TSecretStrValue = None  # type: ignore[assignment]
    host: str = "api.leadsquared.com"
    rate_limit: str = "25/5"
    opportunity_types: Optional[list[str]] = None  # noqa: UP045
    timeout: float = 30.0
    max_attempts: int = 5


def _aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (its zone cannot be guessed)")
    return value.astimezone(timezone.utc)


#: The longest lag or index lag: LeadSquared's accounts are younger than that.
_LONGEST_LAG = timedelta(days=3650)


def _duration(name: str, value: object) -> timedelta:
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ValueError(f"{name} must be a timedelta of zero or more, not {value!r}")
    if value > _LONGEST_LAG:
        raise ValueError(f"{name} must be at most {_LONGEST_LAG.days} days, not {value}")
    return value


def _codes(value: object) -> tuple[str, ...]:
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            "opportunity_types must be a list of event codes such as ['12002']: no documented "
            "endpoint lists an account's opportunity types"
        )
    codes = tuple(str(code).strip() for code in value)
    for code in codes:
        if not code.isdigit() or not code.isascii():
            raise ValueError(f"an opportunity type is an event code such as 12002, not {code!r}")
    return codes


@dlt.source(
    name=ACCOUNT_SOURCE,
    section="leadsquared",
    max_table_nesting=0,
    spec=LeadSquaredAccountConfiguration,
)
def leadsquared_account(
    *,
    access_key: str = dlt.secrets.value,
    secret_key: str = dlt.secrets.value,
    host: str = "api.leadsquared.com",
    rate_limit: Any = "25/5",
    opportunity_types: Sequence[str] = dlt.config.value,
    start_date: datetime = DEFAULT_START,
    lag: timedelta = timedelta(minutes=10),
    index_lag: timedelta = timedelta(minutes=2),
    with_leads: bool = True,
    with_activities: bool = True,
    with_opportunity_activities: bool = False,
    reconcile: bool = False,
    timeout: float = 30.0,
    max_attempts: int = 5,
    progress: Optional[SyncProgress] = None,  # noqa: UP045
) -> list[DltResource]:
    """The whole account, kept fresh run after run, as a dlt source.

    Resources, each merged on its primary key, each with a `dlt.sources.incremental`
    cursor on ``ModifiedOn`` starting at ``start_date``:

    - ``leads`` (``ProspectID``), through the leads feed, in time windows;
    - ``opportunities`` (``OpportunityId``), through the search of each type, newest first;
    - ``activities`` (``ProspectActivityId``), through the activities feed, in time windows;
      with ``with_opportunity_activities``, also the activities of the opportunities this
      run read (``GetActivitiesOfOpportunity``), with their ``OpportunityId``.

    A run walks from its cursor (or, if later, where the last run's walk ended) minus
    ``lag`` to its start minus ``index_lag``, and commits (with its data) a cursor never
    later than that, and that end. With ``reconcile`` it lists every live
    id and sets ``_lsq_deleted_at`` on the rows the account no longer serves.

    Args:
        access_key: the account's access key, as for `leadsquared`, and from the same
            configuration (``[sources.leadsquared]``).
        secret_key: the account's secret key, likewise.
        host: the region host or base URL, likewise.
        rate_limit: the account's limits, or a function that makes a shared limiter,
            likewise.
        opportunity_types: the account's opportunity type codes (required: no documented
            endpoint lists them); may come from the configuration.
        start_date: an aware datetime, where a first run starts.
        lag: each run starts this far before its cursor, or the last walk's end if later
            (rows seen twice are merged).
        index_lag: each run stops this far behind now: the feeds show a change late.
        with_leads: read the leads.
        with_activities: read the activities.
        with_opportunity_activities: also read the activities of the opportunities
            this run read.
        reconcile: also mark deleted rows (costs a walk of every id; see the docs).
        timeout: each request's wait for an answer, in seconds.
        max_attempts: each request's tries.
        progress: told when the session opens, for a display.

    Raises:
        TypeError, ValueError: for a bad argument, when the source is made.
    """

    auth_headers(access_key, secret_key)
    base_url(host)
    codes = _codes(opportunity_types)
    start = _aware("start_date", start_date)
    lag = _duration("lag", lag)
    index_lag = _duration("index_lag", index_lag)
    for name, flag in (
        ("with_leads", with_leads),
        ("with_activities", with_activities),
        ("with_opportunity_activities", with_opportunity_activities),
        ("reconcile", reconcile),
    ):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
    schema = dlt.current.source_schema()
    schema.remove_type_detection("iso_timestamp")
    rows = AccountRows(schema.naming)
    limits: tuple[RateLimit, ...] | Callable[[], RateLimiter] = checked_rate_limit(rate_limit)
    plan = _SessionPlan(access_key, secret_key, host, limits, timeout, RetryPolicy(max_attempts))
    shared = SharedSession(lambda: session_for(plan), progress)
    clock = utc_now
    until = (_aware("now()", clock()) - index_lag).replace(microsecond=0)

    def cursor() -> Any:
        return dlt.sources.incremental(
            CURSOR,
            initial_value=start,
            lag=lag.total_seconds() or None,
            # Rows at the cursor come again (merged on their id), never left out as seen.
            primary_key=(),
            on_cursor_value_missing="include",
        )

    def range_of(incremental: Any) -> tuple[datetime, datetime, dict[str, Any]]:
        """[the later of the cursor and the end of the last run's walk, minus lag (never
        before start_date), the run's end); and the resource's state, where a finished walk
        records its end. A cursor given an ``end_value`` (a backfill's slice) ends there
        instead, and neither reads nor records a walk's end."""
        end = until
        state = dlt.current.resource_state()
        since = _aware("the cursor", incremental.last_value)
        if incremental.end_value is not None:
            end = min(end, _aware("end_value", incremental.end_value))
            state = {}
        elif WALKED_TO in state:
            since = max(since, datetime.fromisoformat(state[WALKED_TO]) - lag)
        return min(since, end - timedelta(seconds=1)), end, state

    # Each resource counts its walks in the run's work as dlt starts it (for an ETA).
    def leads(modified: Any = cursor()) -> Iterator[AsyncIterator[list[dict[str, Any]]]]:  # noqa: B008
        shared.work.expect("leads")
        since, end, state = range_of(modified)
        yield shared.walk(_leads(shared, rows, since, end), _walk_end(end, state))

    def opportunities(modified: Any = cursor()) -> Iterator[AsyncIterator[Any]]:  # noqa: B008
        shared.work.expect("opportunities", len(codes))
        if with_opportunity_activities:
            shared.work.expect(_OPPORTUNITY_WALK, None)
        since, end, state = range_of(modified)
        walk = _opportunities(shared, rows, codes, since, end, with_opportunity_activities)
        yield shared.walk(walk, _walk_end(end, state))

    def activities(modified: Any = cursor()) -> Iterator[AsyncIterator[list[dict[str, Any]]]]:  # noqa: B008
        shared.work.expect("activities")
        since, end, state = range_of(modified)
        yield shared.walk(_activities(shared, rows, codes, since, end), _walk_end(end, state))

    resources: list[DltResource] = []
    if with_leads:
        resources.append(
            dlt.resource(
                leads,
                name="leads",
                primary_key="ProspectID",
                columns=LEAD_COLUMNS,
                write_disposition="merge",
            )
        )
    resources.append(
        dlt.resource(
            opportunities,
            name="opportunities",
            primary_key="OpportunityId",
            columns=FEED_OPPORTUNITY_COLUMNS,
            write_disposition="merge",
        )
    )
    if with_activities:
        resources.append(
            dlt.resource(
                activities,
                name="activities",
                primary_key="ProspectActivityId",
                columns=FEED_ACTIVITY_COLUMNS,
                write_disposition="merge",
            )
        )
    if reconcile:
        from .reconcile import RECONCILE, deleted_rows

        tables = [r.name for r in resources]
        live_since = start - lag

        def live_until() -> datetime:
            # Every id up to when they are listed, not the run's end: a row modified since
            # is live all the same.
            return _aware("now()", clock()) + timedelta(minutes=1)

        def deletes() -> Iterator[AsyncIterator[Any]]:
            for table in tables:
                shared.work.expect(f"{RECONCILE} {table}", None)
            yield shared.walk(
                deleted_rows(shared, dlt.current.pipeline(), tables, codes, live_since, live_until)
            )

        resources.append(dlt.resource(deletes, name="deleted_rows", write_disposition="merge"))
    return resources


class _SessionPlan:
    """What `helpers.session_for` needs to open the session."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        host: str,
        rate_limit: tuple[RateLimit, ...] | Callable[[], RateLimiter],
        timeout: float,
        retry: RetryPolicy,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.host = host
        self.rate_limit = rate_limit
        self.timeout = timeout
        self.retry = retry

    def __repr__(self) -> str:
        return f"_SessionPlan(host={self.host!r})"


#: A resource's state key: where its last finished walk ended (an ISO 8601 UTC time).
WALKED_TO = "walked_to"


def _walk_end(end: datetime, state: dict[str, Any]) -> Callable[[], None]:
    """What records, once a walk has ended, its end in ``state``, which dlt commits with the
    data: the next run starts there (less ``lag``) even where the cursor, the latest row
    seen, is far behind, on a quiet feed."""

    def ended() -> None:
        state[WALKED_TO] = end.isoformat()

    return ended


async def _leads(
    shared: SharedSession, rows: AccountRows, since: datetime, until: datetime
) -> AsyncGenerator[list[dict[str, Any]], None]:
    async with shared.use() as session:
        async for page in shared.work.walk("leads", session.leads_modified(since, until)):
            yield [rows.lead(lead) for lead in page.items]


async def _activities(
    shared: SharedSession,
    rows: AccountRows,
    codes: tuple[str, ...],
    since: datetime,
    until: datetime,
) -> AsyncGenerator[list[dict[str, Any]], None]:
    async with shared.use() as session:
        walk = shared.work.walk("activities", session.activities_modified(since, until))
        async for page in walk:
            # An opportunity is an activity record too: it belongs in opportunities.
            kept = [
                rows.activity(activity)
                for activity in page.items
                if str(activity.activity_event) not in codes
            ]
            if kept:
                yield kept


async def _opportunities(
    shared: SharedSession,
    rows: AccountRows,
    codes: tuple[str, ...],
    since: datetime,
    until: datetime,
    with_activities: bool,
) -> AsyncGenerator[Any, None]:
    work = shared.work
    async with shared.use() as session:
        # The ids of the opportunities read, when their activities are to follow.
        changed: list[str] = []
        # Each type's search walks one page after another; the types go at once.
        searches = [
            work.walk("opportunities", session.opportunities_of_type(code, modified_since=since))
            for code in codes
        ]
        async for page in merged(searches):
            # A row modified after the run's end is read by the next run: the cursor
            # must not pass the end.
            kept = [o for o in page.items if o.modified_on is None or o.modified_on < until]
            if with_activities:
                changed.extend(o.opportunity_id for o in kept)
            if kept:
                yield [rows.opportunity(o) for o in kept]
        if not with_activities or not changed:
            return
        work.settle(_OPPORTUNITY_WALK, len(changed))
        # Opportunity after opportunity in each lane, the lanes at once, as crawl's workers
        # go: twice the calls of the limit, so that waiting for answers never idles a slot.
        lanes = min(max(2 * session.limiter.rate_limit.calls, 4), _MOST_LANES, len(changed))

        async def lane(ids: list[str]) -> AsyncGenerator[list[dict[str, Any]], None]:
            for opportunity_id in ids:
                walk = session.activities_of_opportunity(opportunity_id)
                activities = [
                    rows.activity(activity, opportunity_id)
                    async for page in work.walk(_OPPORTUNITY_WALK, walk)
                    for activity in page.items
                ]
                if activities:
                    yield activities

        async for activities in merged([lane(changed[n::lanes]) for n in range(lanes)]):
            yield dlt.mark.with_hints(activities, _OPPORTUNITY_ACTIVITIES, True)
