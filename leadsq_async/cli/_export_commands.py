"""``leadsq-async opportunities`` and ``activities``: rows of many ids, to a stream."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import IO, Any

import click

from leadsq_async import QuotaExhaustedError, Session
from leadsq_async.journal import naming

from ._display import ExportProgress, export_total, progress_display, stdout_is_terminal
from ._export import FORMATS, RowWriter, writer_for
from ._ids import STDIN, IdReader, ids_from
from ._ids import ids_file as open_ids_file
from ._options import ApiOptions, api_options, scrub
from ._outcomes import (
    PROG,
    TEMPORARY_FAILURE,
    Failures,
    FailuresInARow,
    export_failures,
    quota_name,
    resume_time,
)
from ._run import (
    CommandFailed,
    error_line,
    fetch_activities,
    fetch_opportunities,
    run_interruptibly,
)

__all__ = ["activities", "opportunities"]


def _output_options(function: Any) -> Any:
    function = click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        metavar="N",
        help="How many ids are fetched at once [default: twice the rate limit's calls].",
    )(function)
    function = click.option(
        "--out",
        "out",
        type=click.Path(dir_okay=False, allow_dash=True),
        default=STDIN,
        metavar="PATH",
        help="Write the rows to PATH (replacing it) instead of standard output.",
    )(function)
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="jsonl",
        show_default=True,
        help="jsonl: one JSON object per line, each row exactly as the API sent it. "
        "csv: a header naming every key any row had, then one line per row (rows are "
        "held in memory until the end, to know every column).",
    )(function)


@contextlib.contextmanager
def _output_stream(path: str) -> Iterator[IO[bytes]]:
    if path == STDIN:
        yield sys.stdout.buffer
        with naming("standard output"):
            sys.stdout.buffer.flush()
        return
    # Closing flushes too: on a full disk it fails again, and must name the file as well.
    with naming(path), open(path, "wb") as file:
        yield file


class _NamingWriter:
    """A `RowWriter` whose failed writes name the output (a full disk then says which file)."""

    def __init__(self, writer: RowWriter, name: str) -> None:
        self._writer = writer
        self._name = name

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row."""
        with naming(self._name):
            self._writer.write(row)

    def end_of_id(self) -> None:
        """Let the reader see the id's rows."""
        with naming(self._name):
            self._writer.end_of_id()

    def finish(self) -> None:
        """Write what is held and flush."""
        with naming(self._name):
            self._writer.finish()


def _report_failure(kind: str) -> Any:
    def report(identifier: str, error: BaseException) -> None:
        # Through sys.stderr, which a live progress bar redirects above itself (err=True
        # would write under it, into the bar's line).
        line = f"{PROG}: error: {kind} {identifier}: {error_line(error, scrub)}"
        click.echo(line, file=sys.stderr)

    return report


def _ids_given(ids: tuple[str, ...], file: str | None, what: str, option: str) -> None:
    if not ids and file is None:
        raise click.UsageError(
            f"no {what} ids: give them as arguments, with {option} PATH, or - to read "
            "them from standard input"
        )


def _export(
    kind: str,
    ids: tuple[str, ...],
    ids_file: str | None,
    output_format: str,
    out: str,
    api: ApiOptions,
    fetch: Callable[
        [Session, IdReader, RowWriter, Callable[[str, BaseException], None]],
        Awaitable[Failures],
    ],
) -> int:
    """Run ``fetch`` over the ids (arguments, then ``ids_file``), writing rows to ``out``.

    ``fetch(session, ids, writer, report)`` returns how many ids failed, and how;
    the command then exits 1 (all for good) or 75 (some for now), after the rows
    of the others.
    """

    # A bar on a terminal, unless the rows go to that terminal too.
    rows_on_terminal = out == STDIN and stdout_is_terminal()
    ids_noun = (kind, "opportunities" if kind == "opportunity" else f"{kind}s")
    display = progress_display(
        noun=ids_noun, force=False if rows_on_terminal else None, lines=False
    )
    total = export_total(ids, ids_file)

    async def work() -> Failures:
        with open_ids_file(ids_file) as file, _output_stream(out) as stream:
            name = "standard output" if out == STDIN else out
            writer = _NamingWriter(writer_for(output_format, stream), name)
            reader = IdReader(ids_from(ids, file))
            async with api.session() as session, contextlib.aclosing(reader):
                progress = ExportProgress(session, kind, total, display)
                async with progress.tracking():
                    failures = await fetch(
                        session,
                        reader,
                        progress.writer(writer),
                        progress.report(_report_failure(kind)),
                    )
            writer.finish()
        return failures

    try:
        failures = run_interruptibly(work())
    except QuotaExhaustedError as error:
        raise CommandFailed(
            f"{quota_name(error.limit)} is spent; the command stopped: run it again after "
            f"{resume_time(error.retry_at)}",
            exit_code=TEMPORARY_FAILURE,
        ) from None
    except FailuresInARow as error:
        raise CommandFailed(
            f"{scrub(str(error))}; the command stopped: run it again later",
            exit_code=TEMPORARY_FAILURE,
        ) from None
    if failures.exit_code:
        raise CommandFailed(export_failures(failures, kind), exit_code=failures.exit_code)
    return 0


@click.command()
@click.argument("lead_ids", nargs=-1, metavar="[LEAD_ID]...")
@click.option(
    "--leads-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="PATH",
    help="Also read lead ids from PATH, one per line (- for standard input).",
)
@click.option(
    "--opportunity-type",
    metavar="CODE",
    help="Only opportunities of this type code (OpportunityEvent), such as 12002.",
)
@_output_options
@api_options
def opportunities(
    lead_ids: tuple[str, ...],
    leads_file: str | None,
    opportunity_type: str | None,
    output_format: str,
    out: str,
    concurrency: int | None,
    api: ApiOptions,
) -> int:
    """Print the opportunities of each lead as JSON Lines (or CSV).

    LEAD_ID is a lead's ProspectId; - reads ids from standard input, one per
    line, fetching each as it comes. Each lead's rows come together, leads in
    the order they finish (JSON Lines: written out as each finishes). A lead
    that fails gets an error line on stderr while the others carry on; the
    exit code is then 1 if every failure is for good (the API refused the
    lead), 75 if some may pass when run again (see leadsq-async --help).
    """
    _ids_given(lead_ids, leads_file, "lead", "--leads-file")
    fetch = functools.partial(
        fetch_opportunities, concurrency=concurrency, opportunity_type=opportunity_type
    )
    return _export("lead", lead_ids, leads_file, output_format, out, api, fetch)


@click.command()
@click.argument("opportunity_ids", nargs=-1, metavar="[OPPORTUNITY_ID]...")
@click.option(
    "--opportunities-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="PATH",
    help="Also read opportunity ids from PATH, one per line (- for standard input).",
)
@click.option(
    "--activity-event-code",
    metavar="CODE",
    help="Only activities with this event code (ActivityEvent), such as 168.",
)
@click.option(
    "--with-opportunity-id",
    is_flag=True,
    help="Add an OpportunityId key first in each row: activity rows do not always say "
    "which opportunity they belong to. Without it, rows are exactly as the API sent them.",
)
@_output_options
@api_options
def activities(
    opportunity_ids: tuple[str, ...],
    opportunities_file: str | None,
    activity_event_code: str | None,
    with_opportunity_id: bool,
    output_format: str,
    out: str,
    concurrency: int | None,
    api: ApiOptions,
) -> int:
    """Print the activities of each opportunity as JSON Lines (or CSV).

    OPPORTUNITY_ID is an opportunity's OpportunityId; - reads ids from
    standard input, one per line, fetching each as it comes. Each
    opportunity's rows come together, in the order they finish (JSON Lines:
    written out as each finishes). An opportunity that fails gets an error
    line on stderr while the others carry on; the exit code is then 1 if
    every failure is for good, 75 if some may pass when run again.
    """
    _ids_given(opportunity_ids, opportunities_file, "opportunity", "--opportunities-file")
    fetch = functools.partial(
        fetch_activities,
        concurrency=concurrency,
        activity_event_code=activity_event_code,
        with_opportunity_id=with_opportunity_id,
    )
    return _export(
        "opportunity", opportunity_ids, opportunities_file, output_format, out, api, fetch
    )
