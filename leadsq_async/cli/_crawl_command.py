"""``leadsq-async crawl``: many leads' rows into a resumable directory, and how it stops."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from leadsq_async import LeadSquaredError, QuotaExhaustedError
from leadsq_async.journal import CrawlDirectory, CrawlSettings

from ._counts import CrawlCounts, format_duration, plural
from ._display import progress_display
from ._ids import IdReader, read_ids
from ._options import ApiOptions, api_options, leads_file_option, refuse_empty, scrub
from ._outcomes import (
    EXIT_CODES_HELP,
    PROG,
    Failures,
    FailuresInARow,
    crawl_failures,
    exit_code_of,
    stopped,
)
from ._progress import RichDisplay
from ._run import (
    CommandFailed,
    Interrupted,
    crawl_into,
    error_line,
    run_interruptibly,
    stderr_is_terminal,
)

__all__ = ["crawl", "show_cursor"]


def show_cursor() -> None:
    """Show the terminal's cursor again (a progress bar hides it); for a hard exit."""
    with contextlib.suppress(OSError, ValueError):
        if stderr_is_terminal():
            os.write(sys.stderr.fileno(), b"\x1b[?25h\n")
        os.write(
            sys.stderr.fileno(),
            f"{PROG}: aborted: run the same command with --resume to carry on\n".encode(),
        )


@click.command(epilog=EXIT_CODES_HELP)
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
    allow_empty: bool,
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
    the crawl at once: bad keys or host (exit code 1). A spent quota stops it
    once the leads already granted their requests are saved (75: it says when
    to resume; or --wait-for-quota). Only one crawl at a time may use DIR: a
    second is refused with exit code 2.
    """
    _check_flags(resume=resume, overwrite=overwrite, repair=repair, retry_failed=retry_failed)
    settings = CrawlSettings(with_activities=with_activities, opportunity_type=opportunity_type)
    # Open until the command ends; standard input's first id is read here, to tell it empty.
    total, ids = click.get_current_context().with_resource(read_ids(leads_file))
    refuse_empty(total, leads_file, allow_empty)
    # Before touching DIR: bad options leave it alone.
    session = api.session(wait_for_quota=wait_for_quota)
    api.refuse_unknown_host()
    output = _open_output(out, settings, resume=resume, repair=repair, overwrite=overwrite)
    counts = CrawlCounts(total=total)
    display = progress_display(quiet=quiet, force=progress)
    # Off a terminal, a wait for the quota is also one line at once, naming the quota (a
    # plain progress line says it only every few seconds, --quiet never).
    announce = None if isinstance(display, RichDisplay) else _announce

    async def work() -> float:
        async with session:
            reader = IdReader(ids)
            async with contextlib.aclosing(reader):
                meter = await crawl_into(
                    session,
                    output,
                    reader,
                    counts,
                    display,
                    concurrency=concurrency,
                    scrub=scrub,
                    retry_failed=retry_failed,
                    announce=announce,
                )
        return meter.elapsed

    try:
        with _quota_wait_shown_by_the_crawl():
            elapsed = run_interruptibly(work(), on_abort=show_cursor)
    except (Interrupted, QuotaExhaustedError, FailuresInARow, LeadSquaredError, OSError) as error:
        raise stopped(error, "crawl", _saved(output, out)) from None
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
    _raise_for_failures(output, out)
    return 0


def _open_output(
    out: Path, settings: CrawlSettings, *, resume: bool, repair: bool, overwrite: bool
) -> CrawlDirectory:
    """The crawl directory, resumed or started; a repair of its journal is said."""
    if resume:
        output = CrawlDirectory.resume(out, settings, repair=repair)
    else:
        output = CrawlDirectory.start(out, settings, overwrite=overwrite)
    if output.repaired is not None:
        click.echo(f"{PROG}: warning: {output.repaired}", err=True)
    return output


def _saved(output: CrawlDirectory, out: Path) -> str:
    done = len(output.done)
    return f"{done} {'lead is' if done == 1 else 'leads are'} saved in {out}"


def _raise_for_failures(output: CrawlDirectory, out: Path) -> None:
    """Exit 1 if leads failed for good, 75 if some failed for now (after the summary)."""
    failures = Failures(
        for_good=sum(not entry.transient for entry in output.failed),
        for_now=sum(entry.transient for entry in output.failed),
    )
    if failures.exit_code:
        raise CommandFailed(
            crawl_failures(failures, out / "failed.jsonl"), exit_code=failures.exit_code
        )


def _check_flags(*, resume: bool, overwrite: bool, repair: bool, retry_failed: bool) -> None:
    """Refuse the flags that contradict each other, before anything is touched."""
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other: pick one")
    if repair and not resume:
        raise click.UsageError("--repair mends the journal of a crawl being resumed: add --resume")
    if retry_failed and not resume:
        raise click.UsageError(
            "--retry-failed requests again the leads a crawl being resumed failed: add --resume"
        )


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
