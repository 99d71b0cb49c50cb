"""Load LeadSquared into a warehouse with dlt: the `leadsquared` source (the ``dlt`` extra).

::

    import dlt
    from leadsq_async.dlt import leadsquared

    pipeline = dlt.pipeline("leadsquared", destination="duckdb", dataset_name="leadsquared_data")
    pipeline.run(leadsquared(lead_ids))  # keys from .dlt/secrets.toml [sources.leadsquared]

Laid out as dlt's verified sources are: the source here, its parts in `helpers`, its names
and configuration in `settings`. How a load goes, and resumes: docs/warehouse.md.
"""

# No ``from __future__ import annotations``: dlt reads the source's annotations itself.
from collections.abc import AsyncIterable, Callable, Iterable, Sequence

import dlt
from dlt.extract import DltResource

from leadsq_async import RateLimit, RateLimiter, RetryPolicy
from leadsq_async._hosts import base_url
from leadsq_async._secrets import auth_headers
from leadsq_async.journal import CrawlSettings

from .helpers import LoadProgress, Plan, lead_results, transformers
from .rows import ACTIVITY_COLUMNS, OPPORTUNITY_COLUMNS
from .settings import (
    CHECKPOINT_DIRECTORY,
    LEAD_RESULTS,
    SOURCE_NAME,
    LeadSquaredConfiguration,
    checked_rate_limit,
)

__all__ = [
    "CHECKPOINT_DIRECTORY",
    "LeadSquaredAccountConfiguration",
    "LeadSquaredConfiguration",
    "LoadProgress",
    "SyncProgress",
    "SyncWork",
    "failed_leads",
    "leadsquared",
    "leadsquared_account",
]

RateLimitSetting = str | RateLimit | Sequence[RateLimit] | Callable[[], RateLimiter]


def _checked_ids(lead_ids: object) -> Iterable[str] | AsyncIterable[str]:
    if isinstance(lead_ids, (str, bytes)):
        raise TypeError("lead_ids must be an iterable of ids, not a single str")
    if not isinstance(lead_ids, (Iterable, AsyncIterable)):
        raise TypeError(
            f"lead_ids must be an iterable or async iterable, not {type(lead_ids).__name__}"
        )
    return lead_ids


def _checked_concurrency(concurrency: object) -> int | None:
    if concurrency is None:
        return None
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    return concurrency


@dlt.source(
    name=SOURCE_NAME,
    section=SOURCE_NAME,
    max_table_nesting=0,
    spec=LeadSquaredConfiguration,
)
def leadsquared(
    lead_ids: Iterable[str] | AsyncIterable[str],
    *,
    access_key: str = dlt.secrets.value,
    secret_key: str = dlt.secrets.value,
    host: str = "api.leadsquared.com",
    rate_limit: RateLimitSetting = "25/5",
    with_activities: bool = True,
    opportunity_type: str | None = None,
    concurrency: int | None = None,
    timeout: float = 30.0,
    max_attempts: int = 5,
    progress: LoadProgress | None = None,
) -> list[DltResource]:
    """The opportunities (and activities) of many leads, as a dlt source.

    Every argument but ``lead_ids`` and ``progress`` may instead come from dlt's
    configuration, section ``sources.leadsquared``: ``.dlt/secrets.toml``,
    ``.dlt/config.toml`` or environment variables such as
    ``SOURCES__LEADSQUARED__ACCESS_KEY``.

    Resources:

    - ``opportunities``: one row per opportunity, every key as the API sent it,
      primary key ``OpportunityId``, merged;
    - ``activities`` (with ``with_activities``): one row per activity with its
      ``OpportunityId``, primary key ``ProspectActivityId``, merged.

    Make a new source for each ``pipeline.run``: the ids are read once.

    Args:
        lead_ids: the leads, any iterable or async iterable of ids, read lazily.
            Repeated ids are fetched once.
        access_key: the account's access key.
        secret_key: the account's secret key (never logged, never in dlt's trace).
        host: the account's region host, or a base URL such as the emulator's.
        rate_limit: the plan's limits: ``"CALLS/SECONDS"`` (several separated by
            commas: ``"10/5, 10000/1d"``), a `RateLimit` or a list of them; or,
            to share a limit with other sessions or processes, a function that
            makes a limiter, such as ``lambda: lsq.RedisLimiter(url)``: it is
            called in the crawl's event loop, and the limiter closed after it.
        with_activities: also fetch every opportunity's activities.
        opportunity_type: only opportunities of this type code.
        concurrency: leads crawled at once (default: twice the limit's calls).
        timeout: seconds to wait for each answer.
        max_attempts: tries of one request before a transient failure counts.
        progress: told of the crawl's progress, for a display.

    Returns:
        A dlt source (``DltSource``), for ``pipeline.run``.

    Raises:
        TypeError, ValueError: for a bad argument, when the source is made.
    """
    auth_headers(access_key, secret_key)
    base_url(host)
    # Custom fields stay as sent: detecting ISO dates would split a custom date field into
    # a timestamp column and a text one, as the API sends dates in several formats.
    schema = dlt.current.source_schema()
    schema.remove_type_detection("iso_timestamp")
    if not isinstance(with_activities, bool):
        raise TypeError(f"with_activities must be a bool, not {type(with_activities).__name__}")
    if opportunity_type is not None and not isinstance(opportunity_type, str):
        raise TypeError(f"opportunity_type must be a str, not {type(opportunity_type).__name__}")
    plan = Plan(
        lead_ids=_checked_ids(lead_ids),
        access_key=access_key,
        secret_key=secret_key,
        host=host,
        rate_limit=checked_rate_limit(rate_limit),
        settings=CrawlSettings(with_activities=with_activities, opportunity_type=opportunity_type),
        concurrency=_checked_concurrency(concurrency),
        timeout=timeout,
        retry=RetryPolicy(attempts=max_attempts),
        progress=progress,
    )
    opportunity_rows, activity_rows = transformers(schema.naming)
    crawl = dlt.resource(lead_results(plan), name=LEAD_RESULTS, selected=False)
    resources = [
        crawl,
        dlt.transformer(
            opportunity_rows,
            data_from=crawl,
            name="opportunities",
            primary_key="OpportunityId",
            write_disposition="merge",
            columns=OPPORTUNITY_COLUMNS,
        ),
    ]
    if with_activities:
        resources.append(
            dlt.transformer(
                activity_rows,
                data_from=crawl,
                name="activities",
                primary_key="ProspectActivityId",
                write_disposition="merge",
                columns=ACTIVITY_COLUMNS,
            )
        )
    return resources


from .account import (  # noqa: E402 - it uses the above
    LeadSquaredAccountConfiguration,
    SyncProgress,
    SyncWork,
    leadsquared_account,
)


def failed_leads(pipeline: dlt.Pipeline) -> dict[str, str]:
    """The leads whose latest try failed in ``pipeline``'s loads: lead id -> why.

    A lead stays listed until a load fetches it. To try only those again::

        pipeline.run(leadsquared(failed_leads(pipeline)))
    """
    sources = pipeline.state.get("sources", {})
    resources = sources.get(SOURCE_NAME, {}).get("resources", {})
    failed = resources.get(LEAD_RESULTS, {}).get("failed", {})
    return {lead: f"{entry['error']}: {entry['message']}" for lead, entry in failed.items()}
