"""The ``leadsq-async`` command: its group, ``opportunities``, ``activities`` and ``crawl``."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import click

from leadsq_async import LeadSquaredError, QuotaExhaustedError, Session
from leadsq_async._secrets import scrub as scrub_secrets
from leadsq_async.journal import CrawlDirectory, CrawlError, CrawlSettings, naming

from ._demo import demo
from ._display import ExportProgress, export_total, progress_display, stdout_is_terminal
from ._export import FORMATS, RowWriter, writer_for
from ._ids import STDIN, IdReader, count_ids, ids_from, lines_to_ids, open_ids, source_of
from ._load import load
from ._options import ApiOptions, api_options, leads_file_option, scrub
from ._outcomes import (
    EXIT_CODES_HELP,
    TEMPORARY_FAILURE,
    Failures,
    FailuresInARow,
    crawl_failures,
    exit_code_of,
    export_failures,
    is_disk_full,
    quota_name,
    resume_time,
    stop_advice,
    stop_reason,
)
from ._probe import probe
from ._progress import CrawlCounts, RichDisplay, format_duration, plural
from ._run import (
    INTERRUPTED_EXIT_CODE,
    CommandFailed,
    Interrupted,
    crawl_into,
    error_line,
    fetch_activities,
    fetch_opportunities,
    run_interruptibly,
    stderr_is_terminal,
)
from ._serve import emulator
from ._sync import sync
from ._worker import enqueue, worker

__all__ = ["cli", "main"]

PROG = "leadsq-async"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadsq-async")
    except PackageNotFoundError:
        return "unknown"


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(_version(), "--version", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Fetch opportunities and activities from the LeadSquared API, within its rate limit.

    Keys come from LSQ_ACCESS_KEY and LSQ_SECRET_KEY (or --access-key and
    --secret-key), the region from LSQ_HOST (or --host). New here? The demo
    command crawls a built-in emulator: no account needed.
    """


# The two fetch commands.


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


@contextlib.contextmanager
def _ids_file(path: str | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    file = open_ids(path)
    try:
        yield file
    finally:
        if file is not sys.stdin:
            file.close()


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
        with _ids_file(ids_file) as file, _output_stream(out) as stream:
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


@cli.command()
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


@cli.command()
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


# The crawl.


def show_cursor() -> None:
    """Show the terminal's cursor again (a progress bar hides it); for a hard exit."""
    with contextlib.suppress(OSError, ValueError):
        if stderr_is_terminal():
            os.write(sys.stderr.fileno(), b"\x1b[?25h\n")
        os.write(
            sys.stderr.fileno(),
            f"{PROG}: aborted: run the same command with --resume to carry on\n".encode(),
        )


@cli.command()
@leads_file_option("crawl")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="The directory to write to (created if needed): opportunities.jsonl, "
    "activities.jsonl, opportunity_activities.jsonl, failed.jsonl and checkpoint.jsonl.",
)
@click.option(
    "--with-activities",
    is_flag=True,
    help="Also fetch every opportunity's activities, into activities.jsonl, and which "
    "activities belong to which opportunity, into opportunity_activities.jsonl.",
)
@click.option(
    "--opportunity-type",
    metavar="CODE",
    help="Only opportunities of this type code (OpportunityEvent), such as 12002.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Carry on the crawl in DIR: skip the leads it has done and those that failed "
    "for good, request again those that failed for now, and keep every record exactly "
    "once, even after a crash or kill -9.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="With --resume: request again the leads that failed for good too (the API "
    "refused them: a lead that did not exist, say, may exist now).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete the crawl in DIR, if any, and start again. Without --resume or "
    "--overwrite, a DIR that holds a crawl is refused.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="With --resume: when the journal does not match the data files (a line damaged "
    "or changed by hand), keep the leads journaled before the first line that does not, "
    "with their rows, drop the rest, and crawl the other leads again. Without it, such a "
    "crawl is refused and nothing is changed.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="How many leads are crawled at once [default: twice the rate limit's calls, "
    "enough to keep every slot busy].",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show the progress bar on stderr even when it is not a terminal, or no progress "
    "at all [default: a bar on a terminal, else a line every 5 seconds].",
)
@click.option(
    "--wait-for-quota",
    is_flag=True,
    help="When a quota is spent (no rate-limit slot within --request-deadline, such as "
    "the daily quota), wait until it allows more, showing when in the progress, "
    "instead of stopping with exit code 75.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@api_options
def crawl(
    leads_file: str,
    out: Path,
    with_activities: bool,
    opportunity_type: str | None,
    resume: bool,
    retry_failed: bool,
    overwrite: bool,
    repair: bool,
    concurrency: int | None,
    progress: bool | None,
    wait_for_quota: bool,
    quiet: bool,
    api: ApiOptions,
) -> int:
    """Crawl the opportunities (and activities) of many leads into a directory.

    Each line of the .jsonl files is a row exactly as the API sent it. The
    crawl keeps to the rate limits and uses all of them. Ctrl-C stops it within
    moments; --resume then carries on where it stopped, so that the files
    hold every record exactly once. Leads that fail are listed with the
    reason in failed.jsonl: for good (the API refused them; exit code 1) or
    for now (retries spent on timeouts, dropped connections, 5xx; exit code
    75), which --resume requests again. A failure of the whole account stops
    the crawl at once: bad keys or host (exit code 1), a spent quota (75: it
    says when to resume; or --wait-for-quota). Only one crawl at a time may
    use DIR: a second is refused with exit code 2.
    """
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other: pick one")
    if repair and not resume:
        raise click.UsageError("--repair mends the journal of a crawl being resumed: add --resume")
    if retry_failed and not resume:
        raise click.UsageError(
            "--retry-failed requests again the leads a crawl being resumed failed: add --resume"
        )
    settings = CrawlSettings(with_activities=with_activities, opportunity_type=opportunity_type)
    total = count_ids(leads_file)
    # Before touching DIR: bad options leave it alone.
    session = api.session(wait_for_quota=wait_for_quota)
    if resume:
        output = CrawlDirectory.resume(out, settings, repair=repair)
    else:
        output = CrawlDirectory.start(out, settings, overwrite=overwrite)
    if output.repaired is not None:
        click.echo(f"{PROG}: warning: {output.repaired}", err=True)
    counts = CrawlCounts(total=total)
    display = progress_display(quiet=quiet, force=progress)
    # Off a terminal, a wait for the quota is also one line at once, naming the quota (a
    # plain progress line says it only every few seconds, --quiet never).
    announce = None if isinstance(display, RichDisplay) else _announce

    async def work() -> float:
        async with session:
            with _ids_file(leads_file) as file:
                assert file is not None
                ids = IdReader(lines_to_ids(file, source_of(file)))
                async with contextlib.aclosing(ids):
                    meter = await crawl_into(
                        session,
                        output,
                        ids,
                        counts,
                        display,
                        concurrency=concurrency,
                        scrub=scrub,
                        retry_failed=retry_failed,
                        announce=announce,
                    )
        return meter.elapsed

    def saved() -> str:
        done = len(output.done)
        return f"{done} {'lead is' if done == 1 else 'leads are'} saved in {out}"

    try:
        with _quota_wait_shown_by_the_crawl():
            elapsed = run_interruptibly(work(), on_abort=show_cursor)
    except Interrupted:
        raise CommandFailed(
            f"interrupted: {saved()}; run the same command with --resume to carry on",
            exit_code=INTERRUPTED_EXIT_CODE,
        ) from None
    except QuotaExhaustedError as error:
        raise CommandFailed(
            f"{quota_name(error.limit)} is spent; the crawl stopped ({saved()}): resume after "
            f"{resume_time(error.retry_at)} with --resume, or pass --wait-for-quota to wait",
            exit_code=TEMPORARY_FAILURE,
        ) from None
    except FailuresInARow as error:
        raise CommandFailed(
            f"{scrub(str(error))}; the crawl stopped ({saved()}): run the same command with "
            "--resume to carry on",
            exit_code=TEMPORARY_FAILURE,
        ) from None
    except LeadSquaredError as error:
        raise CommandFailed(
            f"{error_line(error, scrub)}; {stop_reason(error)}, so the crawl stopped "
            f"({saved()}): {stop_advice(error)}",
            exit_code=exit_code_of(error),
        ) from None
    except OSError as error:
        # A file of DIR could not be written (or the leads file read): the lead being
        # written is not journaled, so --resume drops its rows and crawls it again.
        fix = "free some space there" if is_disk_full(error) else "fix that"
        raise CommandFailed(
            f"{error_line(error, scrub)}; the crawl stopped ({saved()}): {fix}, then run the "
            "same command with --resume to carry on",
            exit_code=exit_code_of(error),
        ) from None
    finally:
        # Not raised from here: it would hide why the crawl stopped, if it did.
        report_error = _finish(output)
    if report_error is not None:
        raise CommandFailed(
            f"{error_line(report_error, scrub)}; every lead is saved in {out}, but not the "
            "list of those that failed: run the same command with --resume to write it",
            exit_code=exit_code_of(report_error),
        )
    if not quiet:
        click.echo(_summary(counts, session.stats.requests, elapsed, out), err=True)
    failures = Failures(
        for_good=sum(not entry.transient for entry in output.failed),
        for_now=sum(entry.transient for entry in output.failed),
    )
    if failures.exit_code:
        raise CommandFailed(
            crawl_failures(failures, out / "failed.jsonl"), exit_code=failures.exit_code
        )
    return 0


def _announce(line: str) -> None:
    click.echo(f"{PROG}: {line}", file=sys.stderr)


@contextlib.contextmanager
def _quota_wait_shown_by_the_crawl() -> Iterator[None]:
    """Leave out the session's own warning that it waits for a spent quota: the crawl
    shows the wait itself (from `QuotaWait` events), in its progress or as one line."""
    logger = logging.getLogger("leadsq_async")
    quota_wait = _QuotaWaitWarning()
    logger.addFilter(quota_wait)
    try:
        yield
    finally:
        logger.removeFilter(quota_wait)


class _QuotaWaitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # The session's message, "the rate limit of ... is spent: waiting until ... UTC".
        return "is spent: waiting until" not in str(record.msg)


def _finish(output: CrawlDirectory) -> OSError | None:
    """Rewrite failed.jsonl and close ``output``; the error writing it, if any."""
    try:
        output.write_failed_report()
    except OSError as error:
        return error
    finally:
        output.close()
    return None


def _summary(counts: CrawlCounts, requests: int, elapsed: float, out: Path) -> str:
    parts = [plural(counts.opportunities, "opportunity", "opportunities")]
    if counts.activities:
        parts.append(plural(counts.activities, "activity", "activities"))
    skipped = (
        f", skipped {counts.skipped} (done or failed for good before, or repeated)"
        if counts.skipped
        else ""
    )
    return (
        f"crawled {plural(counts.crawled, 'lead')}{skipped} in {format_duration(elapsed)}: "
        f"{', '.join(parts)}, {plural(requests, 'request')}; files in {out}"
    )


cli.add_command(emulator)
cli.add_command(demo)
cli.add_command(load)
cli.add_command(probe)
cli.add_command(sync)
cli.add_command(worker)
cli.add_command(enqueue)


# The entry point.


class _StderrHandler(logging.Handler):
    """The library's warnings as ``leadsq-async: warning: ...`` lines, secrets scrubbed."""

    #: The running command's secret keys (set by `main`).
    secrets: set[str] = set()  # noqa: RUF012

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = scrub_secrets(record.getMessage(), self.secrets)
            # sys.stderr, not err=True: above a live progress bar, not into it.
            click.echo(f"{PROG}: {record.levelname.lower()}: {message}", file=sys.stderr)
        except Exception:
            self.handleError(record)


def _setup_logging(secrets: set[str]) -> None:
    logger = logging.getLogger("leadsq_async")
    handlers = [h for h in logger.handlers if isinstance(h, _StderrHandler)]
    if not handlers:
        handlers = [_StderrHandler(logging.WARNING)]
        logger.addHandler(handlers[0])
        logger.propagate = False
    handlers[0].secrets = secrets


def _fail(message: str, code: int) -> int:
    click.echo(f"{PROG}: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Every error ends as one line on stderr, ``leadsq-async: error: ...``, with
    no traceback and never a secret key: exit code 2 for a usage error (and for
    a crawl directory another crawl is using), 130 when interrupted, 75 when
    the same command can finish the work later (a spent quota, a full disk: see
    `_outcomes`), 1 otherwise. Set LSQ_DEBUG=1 to see the traceback of an
    unexpected error.
    """
    # The secret keys the command is given, gathered as its options are read: no
    # line it prints, whatever produced it, may hold one.
    secrets: set[str] = set()
    _setup_logging(secrets)
    hide = functools.partial(scrub_secrets, secrets=secrets)
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False, obj=secrets)
    except click.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # click >= 8.2: no command given
            error.show()
            return error.exit_code
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        return _fail(f"error: {hide(error.format_message())}{where}", error.exit_code)
    except click.ClickException as error:
        return _fail(f"error: {hide(error.format_message())}", error.exit_code)
    except click.Abort:
        return _fail("aborted", INTERRUPTED_EXIT_CODE)
    except CommandFailed as error:
        label = "" if error.exit_code == INTERRUPTED_EXIT_CODE else "error: "
        return _fail(f"{label}{hide(str(error))}", error.exit_code)
    except (LeadSquaredError, CrawlError, ValueError, TypeError, OSError) as error:
        if isinstance(error, BrokenPipeError):
            return _quiet_broken_pipe()
        return _fail(f"error: {error_line(error, hide)}", exit_code_of(error))
    except ModuleNotFoundError as error:
        # uvicorn, for `emulator` and `demo`, is imported only when a server starts.
        return _fail(f'error: this command needs {error.name}: pip install "leadsq-async[cli]"', 1)
    except (KeyboardInterrupt, Interrupted):
        return _fail("interrupted", INTERRUPTED_EXIT_CODE)
    except Exception as error:
        if os.environ.get("LSQ_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(error).__name__}: {error_line(error, hide)} "
            "(set LSQ_DEBUG=1 to see the traceback, and please report it)",
            1,
        )
    return result if isinstance(result, int) else 0


def _quiet_broken_pipe() -> int:
    # The reader of stdout went away (`| head`): nothing is wrong; silence the
    # interpreter's own complaint when it flushes stdout at exit.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 1
