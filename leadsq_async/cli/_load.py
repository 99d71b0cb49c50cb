"""``leadsq-async load``: crawl leads into a warehouse through dlt (needs the ``dlt`` extra).

dlt runs in the command's main thread: it crawls in an event loop of its own
(see leadsq_async/dlt/), then normalizes and loads. A thread of ours asks that
loop to refresh the progress a few times a second, so that the meter is read
where its events come, never beside them.

Ctrl-C (or SIGTERM): dlt turns it into a clean stop while it normalizes or loads,
but not while it extracts, where a KeyboardInterrupt would tear dlt's event loop
down under the running crawl. So the command catches the first signal itself and
raises `Interrupted` from the progress callback of the next lead to finish, on
the crawl's loop: the crawl unwinds there (workers cancelled, session and
checkpoint closed), and dlt reports the exception as the extract's failure. A
second signal ends the process at once, which the checkpoint survives too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from leadsq_async import LeadResult, LeadSquaredError, Session
from leadsq_async.journal import DirectoryInUse

from ._counts import CrawlCounts, format_duration, plural
from ._ids import IdReader, read_ids
from ._install import install_hint
from ._options import ApiOptions, api_options, leads_file_option, refuse_empty, scrub
from ._outcomes import EXIT_CODES_HELP, USAGE, FailuresInARow, FailureStreak, stopped
from ._pipelines import cause_of, file_format, pipeline_for
from ._progress import Meter
from ._run import INTERRUPTED_EXIT_CODE, CommandFailed, Interrupted, error_line, stderr_is_terminal

if TYPE_CHECKING:
    from dlt import Pipeline

__all__ = ["load"]

DEFAULT_NAME = "leadsquared"
# Not the pipeline's name: DuckDB cannot tell a schema from the database file of the same name.
DEFAULT_DATASET = "leadsquared_data"


class _Progress:
    """The source's progress (`leadsq_async.dlt.LoadProgress`) as the crawl's counts and
    meter; it stops the load, once a signal came, by raising `Interrupted`, or when ten
    leads in a row fail for now, by raising `FailuresInARow` (as crawl stops)."""

    def __init__(self, counts: CrawlCounts) -> None:
        self.counts = counts
        self.meter: Meter | None = None
        #: The loop the crawl runs on: the meter is read there, where its events come.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.signal_name: str | None = None
        # The stop rules of crawl: many leads in a row failing for now stop the load.
        self._streak = FailureStreak("lead")

    def crawl_started(self, session: Session) -> None:
        self.loop = asyncio.get_running_loop()
        meter = Meter(session, clock=self.loop.time)
        meter.listen()  # for as long as the session lives: it ends with the crawl
        self.meter = meter
        self._stop_if_signalled()

    def lead_skipped(self, lead_id: str) -> None:
        self.counts.skip()
        self._stop_if_signalled()

    def lead_crawled(self, result: LeadResult) -> None:
        self.counts.add(result)
        if self.meter is not None:
            self.meter.end(result.lead_id, result.activities, failed=result.error is not None)
        error = result.error
        self._streak.add(error, "" if error is None else scrub(str(error)))
        self._stop_if_signalled()

    def _stop_if_signalled(self) -> None:
        if self.signal_name is not None:
            raise Interrupted(self.signal_name)


@contextlib.contextmanager
def _stopping_on_signals(progress: _Progress) -> Iterator[None]:
    """The first SIGINT or SIGTERM asks ``progress`` to stop the load; a second one ends the
    process at once (exit code 130)."""

    def on_signal(number: int, _frame: FrameType | None) -> None:
        if progress.signal_name is not None:
            _abort()
        progress.signal_name = signal.Signals(number).name

    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, on_signal) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _abort() -> None:
    with contextlib.suppress(OSError, ValueError):
        if stderr_is_terminal():
            os.write(sys.stderr.fileno(), b"\x1b[?25h\n")  # the bar hid the cursor
        os.write(sys.stderr.fileno(), b"leadsq-async: aborted: run the same command to carry on\n")
    os._exit(INTERRUPTED_EXIT_CODE)


@click.command(epilog=EXIT_CODES_HELP)
@leads_file_option("load")
@click.option(
    "--destination",
    default="duckdb",
    show_default=True,
    metavar="NAME",
    help="A dlt destination: duckdb (a file NAME.duckdb, NAME being --pipeline-name, in "
    "the working directory of the pipeline's first load), postgres, bigquery, snowflake "
    "and so on. Its credentials "
    "come from dlt's configuration: environment variables such as "
    "DESTINATION__POSTGRES__CREDENTIALS, or .dlt/secrets.toml.",
)
@click.option(
    "--dataset",
    default=DEFAULT_DATASET,
    show_default=True,
    metavar="NAME",
    help="The dataset (schema) the tables go to.",
)
@click.option(
    "--pipeline-name",
    default=DEFAULT_NAME,
    show_default=True,
    metavar="NAME",
    help="The dlt pipeline: its directory (~/.dlt/pipelines/NAME; /var/dlt/pipelines/NAME "
    "as root) keeps the state and the checkpoint of an interrupted load. One pipeline "
    "loads into one destination: give each destination a name of its own.",
)
@click.option(
    "--with-activities",
    is_flag=True,
    help="Also load every opportunity's activities, into the activities table.",
)
@click.option(
    "--opportunity-type",
    metavar="CODE",
    help="Only opportunities of this type code (OpportunityEvent), such as 12002.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="How many leads are crawled at once [default: twice the rate limit's calls].",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show the progress bar on stderr even when it is not a terminal, or never "
    "[default: when stderr is a terminal].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@api_options
def load(
    leads_file: str,
    destination: str,
    dataset: str,
    pipeline_name: str,
    with_activities: bool,
    opportunity_type: str | None,
    concurrency: int | None,
    progress: bool | None,
    quiet: bool,
    allow_empty: bool,
    api: ApiOptions,
) -> int:
    """Load the opportunities (and activities) of many leads into a database, with dlt.

    Tables opportunities and activities, merged on their ids: a second load
    updates rows, never doubles them. A load that is stopped (Ctrl-C, kill -9,
    a crash) is carried on by the same command, without asking the API again
    for the leads it had fetched. Leads that fail are not loaded, are named in
    a warning, and are tried again by the next load; the exit code is then 1.
    It stops as crawl does (the exit codes below): bad keys at once (1), ten
    leads in a row failing for now or a spent quota with 75. A second load of
    a pipeline another load is using is refused with exit code 2.
    Needs the dlt extra: pip install -e ".[dlt]" in a clone.
    """
    try:
        from dlt.pipeline.exceptions import PipelineStepFailed

        from leadsq_async.dlt import leadsquared
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("dlt"):
            raise
        raise click.ClickException(f"the load command needs dlt: {install_hint('dlt')}") from None
    from ._display import progress_display, showing

    if not api.access_key or not api.secret_key:
        api.session()  # the usage error that names the missing key
    assert api.access_key is not None
    assert api.secret_key is not None
    # Open until the command ends; standard input's first id is read here, to tell it empty.
    total, ids = click.get_current_context().with_resource(read_ids(leads_file))
    counts = CrawlCounts(total=total)
    refuse_empty(total, leads_file, allow_empty)
    api.refuse_unknown_host()
    watcher = _Progress(counts)
    pipeline = pipeline_for(pipeline_name, destination, dataset, named=destination)
    if pipeline.has_pending_data:
        return _finish_pending(pipeline, PipelineStepFailed, quiet=quiet)
    display = progress_display(quiet=quiet, force=progress)
    source = leadsquared(
        IdReader(ids),
        access_key=api.access_key,
        secret_key=api.secret_key,
        host=api.host,
        rate_limit=api.rate_limits,
        with_activities=with_activities,
        opportunity_type=opportunity_type,
        concurrency=concurrency,
        timeout=api.timeout,
        max_attempts=api.max_attempts,
        progress=watcher,
    )
    with _stopping_on_signals(watcher), showing(watcher, display):
        _run(pipeline, source, PipelineStepFailed)
    if not quiet:
        click.echo(_summary(counts, watcher.meter, pipeline), err=True)
    if counts.failed:
        raise CommandFailed(
            f"{plural(counts.failed, 'lead')} failed and {'was' if counts.failed == 1 else 'were'}"
            " not loaded (see the warnings above); the next load tries "
            f"{'it' if counts.failed == 1 else 'them'} again"
        )
    return 0


def _finish_pending(pipeline: Pipeline, step_failed: type[Exception], *, quiet: bool) -> int:
    """Finish the load an interrupted one left: it had fetched every lead, only loading them
    was left. Not pipeline.run(), which first syncs with the destination, and drops the
    pending package if the destination holds no dataset yet (a first load)."""
    _run(pipeline, None, step_failed)
    if not quiet:
        click.echo(
            f"finished the interrupted load into {_where(pipeline)}; the next load "
            "fetches the leads anew",
            err=True,
        )
    return 0


def _run(pipeline: Pipeline, source: Any, step_failed: type[Exception]) -> None:
    """``pipeline.run(source)`` (or, without one, the pending packages' normalize and load),
    its failures as the command's one-line errors."""
    try:
        if source is not None:
            pipeline.run(source, loader_file_format=file_format(pipeline))
        else:
            pipeline.normalize()
            pipeline.load()
    except step_failed as error:
        saved = "the leads fetched so far are kept"
        signalled = cause_of(error, (Interrupted, KeyboardInterrupt, _signal_received()))
        if signalled is not None:
            raise stopped(Interrupted("SIGINT"), "load", saved) from None
        if cause_of(error, DirectoryInUse) is not None:
            raise CommandFailed(
                f"another load holds the pipeline {pipeline.pipeline_name} (its crawl in "
                f"{pipeline.working_dir} is in use): wait for that load to end, or stop it, "
                "then run this command again",
                exit_code=USAGE,
            ) from None
        ours = cause_of(error, (FailuresInARow, LeadSquaredError, OSError))
        if ours is not None:
            raise stopped(ours, "load", saved) from None
        raise CommandFailed(f"the load failed: {error_line(error, scrub)}") from None


def _signal_received() -> type[BaseException]:
    from dlt.common.exceptions import SignalReceivedException

    return SignalReceivedException


def _where(pipeline: Pipeline) -> str:
    return f"{pipeline.destination.destination_name} dataset {pipeline.dataset_name}"


def _written(pipeline: Pipeline) -> str:
    """``; written to /abs/path/NAME.duckdb`` for a destination that is a local file, else
    nothing: where to find what was loaded, wherever the command was run from."""
    if not pipeline.destination.destination_type.endswith(".duckdb"):
        return ""  # a database server: its name is no file here
    with contextlib.suppress(Exception):  # an in-memory database, say
        database = pipeline.sql_client().credentials.database
        if isinstance(database, str) and database and database != ":memory:":
            return f"; written to {os.path.abspath(database)}"
    return ""


def _summary(counts: CrawlCounts, meter: Meter | None, pipeline: Pipeline) -> str:
    parts = [plural(counts.opportunities, "opportunity", "opportunities")]
    if counts.activities:
        parts.append(plural(counts.activities, "activity", "activities"))
    requests = plural(meter.requests, "request") if meter is not None else "no request"
    elapsed = format_duration(meter.elapsed) if meter is not None else "-"
    skipped = f", skipped {counts.skipped} (fetched before or repeated)" if counts.skipped else ""
    return (
        f"loaded into {_where(pipeline)}: crawled {plural(counts.crawled, 'lead')}{skipped} "
        f"in {elapsed}: {', '.join(parts)}, {requests}{_written(pipeline)}"
    )
