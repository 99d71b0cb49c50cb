"""Load LeadSquared into a warehouse with dlt: the `leadsquared` source (the ``dlt`` extra).

::

    import dlt
    from leadsq_async.dlt import leadsquared

    pipeline = dlt.pipeline("leadsquared", destination="duckdb", dataset_name="leadsquared_data")
    pipeline.run(leadsquared(lead_ids))  # keys from .dlt/secrets.toml [sources.leadsquared]

How a load goes:

- **One crawl feeds both tables.** A hidden resource, ``lead_results``, runs one
  `Session.crawl_opportunities` and yields each lead's result; the
  ``opportunities`` and ``activities`` resources are dlt transformers of it. dlt
  evaluates a parent resource once for all its transformers, so both tables come
  out of one crawl, one session and one rate budget.
- **Rows as the API sent them, typed.** Every key of every row is kept; the
  standard fields are typed by the records' own readers (dates as UTC
  timestamps, ``"0"``/``"1"`` as booleans, numbers as numbers), custom
  ``mx_Custom_N`` fields arrive as text through dlt's schema evolution. Both
  tables are merged on their primary key, so a second load updates rows rather
  than adding them.
- **An interrupted load resumes.** dlt commits its state only with a finished
  load, so the crawl keeps its own checkpoint (the ``crawl`` command's journal,
  see docs/cli.md) in the pipeline's working directory: each lead's rows are on
  disk, fsynced, before the lead counts as fetched. A load that is killed is
  carried on by the next one, which reads those rows back and asks the API only
  for the leads not fetched yet. Once a crawl's last lead is extracted, the
  crawl's id goes into dlt's state, committed with the data; the next load then
  starts a new crawl.
- **Per-lead failures do not stop the load**: the lead is not loaded, a warning
  is logged, and it is listed in the load's state (`failed_leads`) until a
  later load fetches it. Failures that would fail every lead alike (bad keys,
  the wrong region, a malformed request, an unreachable host) stop the load:
  ``pipeline.run`` raises dlt's ``PipelineStepFailed``, caused by the library's
  exception.
"""

# No ``from __future__ import annotations``: dlt evaluates the configuration spec's
# annotations itself, and dlt 1.5 (for one) in its own namespace, not this module's.
import contextlib
import json
import logging
import os
import shutil
import typing
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Protocol

import attrs
import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue
from dlt.extract import DltResource

from ._checkpoint import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    OPPORTUNITIES,
    CrawlDirectory,
    CrawlError,
    CrawlSettings,
    PendingIds,
)
from ._checks import check_int
from ._crawl import LeadResult, checked_ids
from ._errors import LeadSquaredError
from ._limits import RateLimit, parse_rate_limits
from ._ratelimit import RateLimiter
from ._records import _API_KEY, Activity, Opportunity, structure, unstructure
from ._retry import RetryPolicy
from ._session import Session
from ._wire import auth_headers, base_url

__all__ = ["LeadSquaredConfiguration", "LoadProgress", "failed_leads", "leadsquared"]

logger = logging.getLogger("leadsq_async")

SOURCE_NAME = "leadsquared"
#: The hidden resource that runs the crawl; its dlt state holds the failed leads.
LEAD_RESULTS = "lead_results"
#: Where, in the pipeline's working directory, an unfinished crawl keeps its rows.
CHECKPOINT_DIRECTORY = "leadsquared-crawl"
_CRAWL_ID_FILE = "crawl-id.json"
#: Rows read back from a checkpoint are handed to dlt this many at a time.
_RESUMED_BATCH = 1000

RateLimitSetting = str | RateLimit | Sequence[RateLimit] | Callable[[], RateLimiter]


@configspec
class LeadSquaredConfiguration(BaseConfiguration):
    """What `leadsquared` reads from dlt's configuration when it is not passed.

    In ``.dlt/secrets.toml`` (``[sources.leadsquared]``), ``.dlt/config.toml`` or
    environment variables such as ``SOURCES__LEADSQUARED__SECRET_KEY``.
    """

    # None: required, dlt's way (it names where it looked when a key is missing).
    access_key: TSecretStrValue = None  # type: ignore[assignment]
    secret_key: TSecretStrValue = None  # type: ignore[assignment]
    host: str = "api.leadsquared.com"
    rate_limit: str = "25/5"
    with_activities: bool = True
    opportunity_type: Optional[str] = None  # noqa: UP045 - the form every dlt release reads
    concurrency: Optional[int] = None  # noqa: UP045
    timeout: float = 30.0
    max_attempts: int = 5


class LoadProgress(Protocol):
    """What a load reports as it goes, for a progress display (the command line's).

    Called from the thread and event loop dlt extracts in: keep each call short. An
    exception a call raises stops the load: the crawl unwinds (what it fetched stays
    in the checkpoint) and ``pipeline.run`` raises dlt's ``PipelineStepFailed``,
    caused by it. The command line stops on Ctrl-C that way.
    """

    def crawl_started(self, session: Session) -> None:
        """The crawl's session is open; its ``stats`` and ``limiter`` can be watched."""

    def lead_skipped(self, lead_id: str) -> None:
        """An id fetched by the interrupted load this one carries on, or repeated."""

    def lead_crawled(self, result: LeadResult) -> None:
        """A lead was fetched, or failed (``result.error``)."""


# Rows.


_DLT_TYPES: dict[type, str] = {
    bool: "bool",
    int: "bigint",
    float: "double",
    datetime: "timestamp",
    str: "text",
}


def _typed_keys(cls: type[Any]) -> dict[str, tuple[str, type]]:
    """Row key -> (attribute, type) for each typed field of a record class."""
    hints = typing.get_type_hints(cls)
    keys = {}
    for field in attrs.fields(cls):
        key = field.metadata.get(_API_KEY)
        if key is not None:
            hint = hints[field.name]
            keys[key] = (field.name, (typing.get_args(hint) or (hint,))[0])  # X of X | None
    return keys


def _column_hints(cls: type[Any], primary_key: str) -> dict[str, dict[str, Any]]:
    return {
        key: {"data_type": _DLT_TYPES[kind], "nullable": key != primary_key}
        for key, (_, kind) in _typed_keys(cls).items()
    }


_OPPORTUNITY_TYPED = [
    (key, attribute)
    for key, (attribute, kind) in _typed_keys(Opportunity).items()
    if kind is not str
]
_ACTIVITY_TYPED = [
    (key, attribute) for key, (attribute, kind) in _typed_keys(Activity).items() if kind is not str
]
OPPORTUNITY_COLUMNS = _column_hints(Opportunity, "OpportunityId")
ACTIVITY_COLUMNS = {
    "OpportunityId": {"data_type": "text", "nullable": False},
    **_column_hints(Activity, "ProspectActivityId"),
}


def _typed_row(record: Opportunity | Activity, typed: list[tuple[str, str]]) -> dict[str, Any]:
    """The row the API sent, with each standard field's value as the record reads it.

    A value the record cannot read stays as sent (dlt then keeps it in a variant
    column), except an empty string, which is no value.
    """
    row = unstructure(record)
    for key, attribute in typed:
        if key in row:
            value = getattr(record, attribute)
            if value is not None:
                row[key] = value
            elif row[key] == "":
                row[key] = None
    return row


def opportunity_row(record: Opportunity) -> dict[str, Any]:
    """The ``opportunities`` row of an opportunity: every key as sent, standard ones typed."""
    return _typed_row(record, _OPPORTUNITY_TYPED)


def activity_row(opportunity_id: str, record: Activity) -> dict[str, Any]:
    """The ``activities`` row of an activity: ``OpportunityId`` first, then the row as sent.

    Activity rows do not always say which opportunity they belong to
    (``O_ProspectActivityId`` is often empty), so the crawl's own knowledge is added.
    """
    row = {"OpportunityId": opportunity_id}
    row.update(_typed_row(record, _ACTIVITY_TYPED))
    row["OpportunityId"] = opportunity_id
    return row


# What flows from the crawl to the two tables.


@attrs.frozen
class _Resumed:
    """Rows of leads an interrupted load fetched, read back from its checkpoint."""

    opportunities: list[Opportunity] = attrs.field(factory=list)
    activities: list[tuple[str, Activity]] = attrs.field(factory=list)


@attrs.frozen
class _CrawlEnd:
    """Every lead of the crawl was handed to dlt."""

    crawl_id: str


_Item = LeadResult | _Resumed | _CrawlEnd


def _note_in_state(item: _Item) -> None:
    """Record a failed lead, a lead fetched again, or the crawl's end in dlt's state.

    Both tables' transformers call it with the same items (dlt runs them on the
    main thread, where the state is), so every write is idempotent.
    """
    state = dlt.current.resource_state(LEAD_RESULTS)
    if isinstance(item, _CrawlEnd):
        state["completed_crawl"] = item.crawl_id
    elif isinstance(item, LeadResult):
        failed = state.setdefault("failed", {})
        if item.error is None:
            failed.pop(item.lead_id, None)
        else:
            failed[item.lead_id] = {"error": type(item.error).__name__, "message": str(item.error)}


def _opportunity_rows(item: _Item) -> Iterator[list[dict[str, Any]]]:
    _note_in_state(item)
    if isinstance(item, LeadResult) and item.error is None and item.records:
        yield [opportunity_row(record) for record in item.records]
    elif isinstance(item, _Resumed) and item.opportunities:
        yield [opportunity_row(record) for record in item.opportunities]


def _activity_rows(item: _Item) -> Iterator[list[dict[str, Any]]]:
    _note_in_state(item)
    if isinstance(item, LeadResult) and item.error is None:
        rows = [
            activity_row(opportunity_id, activity)
            for opportunity_id, activities in item.activities.items()
            for activity in activities
        ]
        if rows:
            yield rows
    elif isinstance(item, _Resumed) and item.activities:
        yield [
            activity_row(opportunity_id, activity) for opportunity_id, activity in item.activities
        ]


# The crawl.


@attrs.frozen
class _Plan:
    """Everything the crawl needs, checked when the source is made."""

    lead_ids: Iterable[str] | AsyncIterable[str]
    access_key: str = attrs.field(repr=False)
    secret_key: str = attrs.field(repr=False)
    host: str
    rate_limit: tuple[RateLimit, ...] | Callable[[], RateLimiter]
    settings: CrawlSettings
    concurrency: int | None
    timeout: float
    retry: RetryPolicy
    progress: LoadProgress | None


def _ignore(_: object) -> None:
    return None


def _checked_concurrency(concurrency: int | None) -> int | None:
    return None if concurrency is None else check_int("concurrency", concurrency, minimum=1)


def _stops_the_load(error: BaseException) -> bool:
    """Whether ``error`` concerns the whole account (`LeadSquaredError.account_wide`):
    then no lead can be loaded, and the load stops; any other fails its lead alone."""
    return isinstance(error, LeadSquaredError) and error.account_wide


def _lead_results(plan: _Plan) -> Iterator[AsyncIterator[_Item]]:
    """The parent resource: on dlt's main thread, find the checkpoint; then crawl.

    dlt's state and the pipeline can only be reached here, on the main thread;
    the crawl itself runs in dlt's event loop (dlt iterates the async generator
    this yields).
    """
    completed = dlt.current.resource_state().get("completed_crawl")
    directory = Path(dlt.current.pipeline().working_dir) / CHECKPOINT_DIRECTORY
    yield _crawl(plan, directory, completed)


async def _crawl(plan: _Plan, directory: Path, completed: str | None) -> AsyncIterator[_Item]:
    checkpoint, crawl_id = _open_checkpoint(directory, plan.settings, completed)
    try:
        for resumed in _read_back(checkpoint):
            yield resumed
        async with _session(plan) as session:
            if plan.progress is not None:
                plan.progress.crawl_started(session)
            skipped = plan.progress.lead_skipped if plan.progress else _ignore
            ids = PendingIds(plan.lead_ids, checkpoint.done, skipped)
            results = session.crawl_opportunities(
                ids,
                concurrency=plan.concurrency,
                with_activities=plan.settings.with_activities,
                opportunity_type=plan.settings.opportunity_type,
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    if result.error is not None:
                        if _stops_the_load(result.error):
                            raise result.error
                        logger.warning(
                            "lead %s failed and is not loaded (a later load tries it again): %s",
                            result.lead_id,
                            result.error,
                        )
                    checkpoint.record(result)
                    if plan.progress is not None:
                        plan.progress.lead_crawled(result)
                    yield result
        yield _CrawlEnd(crawl_id)
    finally:
        checkpoint.close()


@contextlib.asynccontextmanager
async def _session(plan: _Plan) -> AsyncIterator[Session]:
    """The crawl's session; a limiter made by the caller's factory is closed after it."""
    limiter: RateLimiter | None = None
    rate_limit: tuple[RateLimit, ...] | None = None
    if isinstance(plan.rate_limit, tuple):
        rate_limit = plan.rate_limit
    else:
        limiter = plan.rate_limit()
    try:
        async with Session(
            plan.access_key,
            plan.secret_key,
            host=plan.host,
            rate_limit=rate_limit,
            limiter=limiter,
            timeout=plan.timeout,
            retry=plan.retry,
        ) as session:
            yield session
    finally:
        if limiter is not None:
            await limiter.aclose()


# The checkpoint.


def _open_checkpoint(
    directory: Path, settings: CrawlSettings, completed: str | None
) -> tuple[CrawlDirectory, str]:
    """Carry on the unfinished crawl in ``directory``, or start a new one there.

    A crawl whose id dlt's state names as completed was extracted whole, and
    its rows went (or, pending, will go) to the destination with that state:
    it is over, and a new one starts.
    """
    crawl_id = _read_crawl_id(directory)
    if crawl_id is not None and crawl_id != completed:
        try:
            checkpoint = CrawlDirectory.resume(directory, settings)
        except CrawlError as error:
            logger.warning(
                "the interrupted load's crawl cannot be carried on (%s): starting anew", error
            )
        else:
            if checkpoint.done:
                logger.info(
                    "carrying on the interrupted load: %d leads fetched before are not asked "
                    "for again",
                    len(checkpoint.done),
                )
            return checkpoint, crawl_id
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    crawl_id = uuid.uuid4().hex
    _write_durably(directory / _CRAWL_ID_FILE, json.dumps({"crawl_id": crawl_id}).encode())
    return CrawlDirectory.start(directory, settings, overwrite=False), crawl_id


def _read_crawl_id(directory: Path) -> str | None:
    try:
        document = json.loads((directory / _CRAWL_ID_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    crawl_id = document.get("crawl_id") if isinstance(document, dict) else None
    return crawl_id if isinstance(crawl_id, str) else None


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _read_back(checkpoint: CrawlDirectory) -> Iterator[_Resumed]:
    """The rows of the leads the checkpoint holds, in batches.

    Its data files hold exactly the rows of the leads journaled as done (resuming
    cut off anything written after the last journal line).
    """
    if not checkpoint.done:
        return
    directory = checkpoint.directory
    batch: list[Any] = []
    with open(directory / OPPORTUNITIES, "rb") as lines:
        for line in lines:
            batch.append(structure(json.loads(line), Opportunity))
            if len(batch) == _RESUMED_BATCH:
                yield _Resumed(opportunities=batch)
                batch = []
    if batch:
        yield _Resumed(opportunities=batch)
    if not checkpoint.settings.with_activities:
        return
    batch = []
    with (
        open(directory / ACTIVITY_INDEX, "rb") as index,
        open(directory / ACTIVITIES, "rb") as activities,
    ):
        for line in index:
            entry = json.loads(line)
            for _ in entry["ActivityIds"]:
                activity = structure(json.loads(next(activities)), Activity)
                batch.append((entry["OpportunityId"], activity))
                if len(batch) == _RESUMED_BATCH:
                    yield _Resumed(activities=batch)
                    batch = []
    if batch:
        yield _Resumed(activities=batch)


# The source.


def _checked_rate_limit(rate_limit: object) -> tuple[RateLimit, ...] | Callable[[], RateLimiter]:
    if isinstance(rate_limit, (str, RateLimit, Sequence)):
        # Several limits as dlt's configuration can hold them: "10/5, 10000/1d".
        return parse_rate_limits(rate_limit)
    if isinstance(rate_limit, RateLimiter):
        raise TypeError(
            "rate_limit takes a function that makes the limiter, such as "
            "lambda: lsq.RedisLimiter(url), not the limiter itself: the crawl runs in "
            "dlt's own event loop, and makes and closes the limiter there"
        )
    if callable(rate_limit):
        return rate_limit
    raise TypeError(
        "rate_limit must be 'CALLS/SECONDS', a RateLimit, several, or a function that makes "
        f"a limiter, not {type(rate_limit).__name__}"
    )


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
    dlt.current.source_schema().remove_type_detection("iso_timestamp")
    if not isinstance(with_activities, bool):
        raise TypeError(f"with_activities must be a bool, not {type(with_activities).__name__}")
    if opportunity_type is not None and not isinstance(opportunity_type, str):
        raise TypeError(f"opportunity_type must be a str, not {type(opportunity_type).__name__}")
    plan = _Plan(
        lead_ids=checked_ids(lead_ids),
        access_key=access_key,
        secret_key=secret_key,
        host=host,
        rate_limit=_checked_rate_limit(rate_limit),
        settings=CrawlSettings(with_activities=with_activities, opportunity_type=opportunity_type),
        concurrency=None
        if concurrency is None
        else check_int("concurrency", concurrency, minimum=1),
        timeout=timeout,
        retry=RetryPolicy(attempts=max_attempts),
        progress=progress,
    )
    crawl = dlt.resource(_lead_results(plan), name=LEAD_RESULTS, selected=False)
    resources = [
        crawl,
        dlt.transformer(
            _opportunity_rows,
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
                _activity_rows,
                data_from=crawl,
                name="activities",
                primary_key="ProspectActivityId",
                write_disposition="merge",
                columns=ACTIVITY_COLUMNS,
            )
        )
    return resources


def failed_leads(pipeline: dlt.Pipeline) -> dict[str, str]:
    """The leads whose latest try failed in ``pipeline``'s loads: lead id -> why.

    A lead stays listed until a load fetches it. To try only those again::

        pipeline.run(leadsquared(failed_leads(pipeline)))
    """
    sources = pipeline.state.get("sources", {})
    resources = sources.get(SOURCE_NAME, {}).get("resources", {})
    failed = resources.get(LEAD_RESULTS, {}).get("failed", {})
    return {lead: f"{entry['error']}: {entry['message']}" for lead, entry in failed.items()}
