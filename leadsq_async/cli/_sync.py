"""``leadsq-async sync``: keep the whole account in a warehouse through dlt, run after run, at
the cost of what changed (needs the ``dlt`` extra).

dlt runs in the command's main thread; a thread of ours shows its progress as crawl does (a
bar on a terminal, else a line every 5 s), in requests, with an ETA once the sync's walks can
tell what they have left. A sync commits its
cursors with its data only: a stopped sync (Ctrl-C, kill -9, a spent quota) loses nothing, and
the next one repeats what the stopped one had not committed. So the first signal ends the
process at once, with exit code 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from leadsq_async import LeadSquaredError, QuotaExhaustedError, Session

from ._display import progress_display, showing
from ._options import ApiOptions, api_options, scrub
from ._outcomes import TEMPORARY_FAILURE, exit_code_of, quota_name, resume_time, stop_advice
from ._pipelines import cause_of, file_format, pipeline_for
from ._progress import CrawlCounts, Meter, format_duration, plural
from ._run import INTERRUPTED_EXIT_CODE, CommandFailed, error_line

if TYPE_CHECKING:
    from dlt import Pipeline

    from leadsq_async.dlt import SyncWork

__all__ = ["parse_duration", "sync"]

DEFAULT_PIPELINE = "leadsquared_account"
DEFAULT_DATASET = "leadsquared_account"
#: The DuckDB file the tables go to by default, in the working directory.
DEFAULT_DUCKDB_FILE = "leadsquared.duckdb"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*")


def parse_duration(text: str) -> dt.timedelta:
    """``10m``, ``0s``, ``2h``, ``1d`` or plain seconds, as a timedelta.

    Raises:
        ValueError: not a duration, or one longer than a timedelta holds.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 10m, 90s, 2h or 0s")
    try:
        return dt.timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])
    except OverflowError:  # past timedelta's range, or past float's (infinity)
        raise ValueError(
            f"{text!r} is too long a duration: at most {dt.timedelta.max.days} days"
        ) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> dt.timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date such as 2024-01-01 or 2024-01-01T09:00:00+05:30",
            ctx=ctx,
            param=param,
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


class _SyncMeter(Meter):
    """The crawl's meter, for a sync: the requests left are those its walks tell."""

    def __init__(self, session: Session, work: SyncWork, clock: Callable[[], float]) -> None:
        super().__init__(session, clock=clock)
        self.work = work

    def requests_left(self, counts: CrawlCounts) -> float | None:
        return self.work.requests_left()


class _Progress:
    """The sync's progress (`leadsq_async.dlt.SyncProgress`): the crawl's meter on its
    session's events, read on the sync's loop."""

    def __init__(self) -> None:
        self.meter: _SyncMeter | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.counts = CrawlCounts()  # a sync has no ids: only its requests are counted
        self.started = time.monotonic()

    def sync_started(self, session: Session, work: SyncWork) -> None:
        self.loop = asyncio.get_running_loop()
        meter = _SyncMeter(session, work, clock=self.loop.time)
        meter.listen()  # for as long as the session lives: it ends with the sync
        self.meter = meter

    @property
    def count(self) -> int:
        return 0 if self.meter is None else self.meter.requests


@contextlib.contextmanager
def _ending_on_signals() -> Iterator[None]:
    """SIGINT or SIGTERM end the process at once: nothing uncommitted is lost by it."""

    def on_signal(number: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.write(
                sys.stderr.fileno(),
                b"leadsq-async: interrupted: what earlier syncs committed is kept; run the "
                b"same command to carry on\n",
            )
        os._exit(INTERRUPTED_EXIT_CODE)

    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, on_signal) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@click.command()
@click.option(
    "--destination",
    default="duckdb",
    show_default=True,
    metavar="NAME",
    help="Where the tables go: a dlt destination (duckdb, postgres, bigquery, snowflake...). "
    f"DuckDB writes ./{DEFAULT_DUCKDB_FILE}; others take their credentials from dlt's "
    "configuration (DESTINATION__POSTGRES__CREDENTIALS, .dlt/secrets.toml).",
)
@click.option(
    "--dataset", default=DEFAULT_DATASET, show_default=True, metavar="NAME", help="The schema."
)
@click.option(
    "--pipeline-name",
    default=DEFAULT_PIPELINE,
    show_default=True,
    metavar="NAME",
    help="The dlt pipeline: its state holds the cursors.",
)
@click.option(
    "--opportunity-type",
    "opportunity_types",
    multiple=True,
    required=True,
    metavar="CODE",
    help="An opportunity type's code, such as 12002; repeat it for each type.",
)
@click.option("--since", callback=_since, metavar="DATE", help="Where the first sync starts.")
@click.option("--lag", default="10m", show_default=True, callback=_duration, metavar="DURATION",
              help="Each sync starts this far before its cursor.")  # fmt: skip
@click.option("--index-lag", default="2m", show_default=True, callback=_duration,
              metavar="DURATION", help="Each sync stops this far behind now.")  # fmt: skip
@click.option("--reconcile", is_flag=True, help="Also mark the rows deleted in the account.")
@click.option(
    "--full-refresh", is_flag=True, help="Drop the tables and cursors, and sync from --since."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show the progress bar on stderr even when it is not a terminal, or never "
    "[default: a bar when stderr is a terminal, else a line every 5 s].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
@api_options
def sync(
    destination: str,
    dataset: str,
    pipeline_name: str,
    opportunity_types: tuple[str, ...],
    since: dt.datetime | None,
    lag: dt.timedelta,
    index_lag: dt.timedelta,
    reconcile: bool,
    full_refresh: bool,
    progress: bool | None,
    quiet: bool,
    api: ApiOptions,
) -> int:
    """Sync the whole account into a database, incrementally, with dlt.

    Tables leads, opportunities and activities, merged on their ids; each sync reads only
    what changed since the last (its cursors are committed with its data). With
    --reconcile, rows deleted in the account get _lsq_deleted_at. Exit codes: 0 done,
    1 failed, 2 usage, 75 a spent quota (run again at the time given) or a server failing
    for now, 130 interrupted.
    Needs the dlt extra: pip install "leadsq-async[dlt]".
    """
    try:
        import dlt
        from dlt.pipeline.exceptions import PipelineStepFailed

        from leadsq_async.dlt import leadsquared_account
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("dlt"):
            raise
        raise click.ClickException('sync needs dlt: pip install "leadsq-async[dlt]"') from None

    if not api.access_key or not api.secret_key:
        api.session()  # the usage error that names the missing key
    assert api.access_key is not None
    assert api.secret_key is not None
    target: Any = destination
    if destination == "duckdb":
        target = dlt.destinations.duckdb(DEFAULT_DUCKDB_FILE)
    watched = _Progress()
    display = progress_display(noun=None, quiet=quiet, force=progress, prefix="sync: ")
    options: dict[str, Any] = {} if since is None else {"start_date": since}
    try:
        source = leadsquared_account(
            access_key=api.access_key,
            secret_key=api.secret_key,
            host=api.host,
            rate_limit=api.rate_limits,
            opportunity_types=list(opportunity_types),
            lag=lag,
            index_lag=index_lag,
            reconcile=reconcile,
            timeout=api.timeout,
            max_attempts=api.max_attempts,
            progress=watched,
            **options,
        )
    except (TypeError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    # Only once the arguments hold: a usage error leaves no pipeline behind.
    pipeline = pipeline_for(pipeline_name, target, dataset, named=destination)
    with _ending_on_signals(), showing(watched, display):
        _run(pipeline, source, full_refresh, PipelineStepFailed)
    if not quiet:
        elapsed = format_duration(time.monotonic() - watched.started)
        where = f"{pipeline.destination.destination_name} dataset {pipeline.dataset_name}"
        click.echo(
            f"synced into {where}: {plural(watched.count, 'request')} in {elapsed}", err=True
        )
    return 0


def _run(pipeline: Pipeline, source: Any, full_refresh: bool, failed: type[Exception]) -> None:
    try:
        if pipeline.has_pending_data:
            # A sync stopped while loading: its rows and cursors go first.
            pipeline.normalize()
            pipeline.load()
        refresh: Any = "drop_sources" if full_refresh else None
        pipeline.run(source, refresh=refresh, loader_file_format=file_format(pipeline))
    except failed as error:
        quota = cause_of(error, QuotaExhaustedError)
        if isinstance(quota, QuotaExhaustedError):
            raise CommandFailed(
                f"{quota_name(quota.limit)} is spent; the sync stopped (what earlier syncs "
                f"committed is kept): run it again after {resume_time(quota.retry_at)}",
                exit_code=TEMPORARY_FAILURE,
            ) from None
        ours = cause_of(error, LeadSquaredError)
        if isinstance(ours, LeadSquaredError):
            # Bad keys need fixing first; a server that failed for now, only time (exit 75).
            raise CommandFailed(
                f"{error_line(ours, scrub)}; the sync stopped (what earlier syncs committed "
                f"is kept): {stop_advice(ours, 'run the same command')}",
                exit_code=exit_code_of(ours),
            ) from None
        raise CommandFailed(f"the sync failed: {error_line(error, scrub)}") from None
