"""How a command ends: its exit code, which failures a later run can finish, and what it says.

The exit codes, the same for ``opportunities``, ``activities``, ``crawl`` and ``load``::

    0    done
    1    done, except ids that failed for good (the API refused them: a lead that does
         not exist, an id it does not take); or an error that needs a fix before
         anything can work (bad keys, the wrong host, a file that cannot be read)
    2    a usage error (and a crawl directory another crawl is using)
    75   stopped, or done except ids that failed for now: the same command later can
         finish the work (a spent quota, transient failures, an unavailable shared
         rate limiter, a full disk); for ``crawl``, with --resume. EX_TEMPFAIL of sysexits.h
    130  interrupted (SIGINT or SIGTERM)

An id's failure is *for good* when trying again cannot help: the error is not transient
(``LeadSquaredError.transient``), or the id is one the API cannot take (``ValueError``,
``TypeError``). It is *for now* when the retries were spent on failures that may pass:
dropped connections, timeouts, 5xx answers, rate-limit refusals. Failures that concern the
whole account never become an id's result: the crawl raises them and the command stops.
"""

from __future__ import annotations

import datetime as dt
import errno
from collections.abc import Callable
from pathlib import Path

import attrs

from leadsq_async import (
    AuthenticationError,
    LeadSquaredError,
    QuotaExhaustedError,
    RateLimiterUnavailableError,
)
from leadsq_async._limits import StatedLimit
from leadsq_async.journal import CrawlError, DirectoryInUse, failed_for_good

from ._counts import format_duration, plural
from ._options import scrub

__all__ = [
    "CARRY_ON",
    "DONE",
    "EXIT_CODES_HELP",
    "FAILED_FOR_GOOD",
    "FAILURES_IN_A_ROW",
    "INTERRUPTED",
    "PROG",
    "TEMPORARY_FAILURE",
    "USAGE",
    "CommandFailed",
    "FailureStreak",
    "Failures",
    "FailuresInARow",
    "Interrupted",
    "can_finish_later",
    "crawl_failures",
    "error_line",
    "exit_code_of",
    "export_failures",
    "failed_for_good",
    "is_disk_full",
    "quota_name",
    "quota_resumes_at",
    "resume_time",
    "stop_advice",
    "stop_reason",
    "stopped",
]


class CommandFailed(Exception):
    """A command ends with one line on stderr (the message says why) and ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(Exception):
    """The command was stopped by SIGINT or SIGTERM, cleanly.

    Attributes:
        signal_name: ``SIGINT`` or ``SIGTERM``.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name


def error_line(error: BaseException, scrub: Callable[[str], str]) -> str:
    """One line saying what went wrong, for stderr."""
    if isinstance(error, LeadSquaredError):
        text = str(error)
    elif isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        text = f"{error.strerror}{where}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(scrub(text).split())


#: The command's name, as messages start with it.
PROG = "leadsq-async"

DONE = 0
FAILED_FOR_GOOD = 1
USAGE = 2
#: EX_TEMPFAIL of sysexits.h: "a temporary failure; the user is invited to retry later".
TEMPORARY_FAILURE = 75
#: 128 + SIGINT, as shells report a process SIGINT stopped.
INTERRUPTED = 130

#: The epilog of ``leadsq-async --help`` (``\b`` keeps click from rewrapping the lines).
EXIT_CODES_HELP = """\b
Exit codes (opportunities, activities, crawl and load):
  0    done
  1    done, except ids that failed for good (the API refused them: they are
       listed on stderr, or in crawl's failed.jsonl); or an error to fix first
       (bad keys, the wrong host, a leads file with no id)
  2    a usage error (a host name that does not exist, an unknown --destination);
       crawl on a directory another crawl is using, load of a pipeline another
       load holds
  75   stopped with work the same command can finish later (crawl: with --resume):
       a spent quota, ids that failed for now (timeouts, dropped connections,
       5xx, ten in a row), an unavailable shared rate limiter, a full disk
  130  interrupted (Ctrl-C or SIGTERM)
"""

#: Ids in a row that fail for now, none done between them, after which a command stops:
#: then the API or the network is down, not one id, and going on would spend the
#: retries (and the quota) of every id left on failures.
FAILURES_IN_A_ROW = 10

#: The errors of a full disk (or of a spent disk quota).
_DISK_FULL = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a full disk (or a spent disk quota)."""
    return isinstance(error, OSError) and error.errno in _DISK_FULL


def can_finish_later(error: BaseException) -> bool:
    """Whether the command that ``error`` stopped can finish its work if run again later.

    True for a spent quota, an unavailable shared rate limiter, a transient failure and a
    full disk; False for what needs a fix first (bad keys, a request the API refuses).
    """
    if isinstance(error, (QuotaExhaustedError, RateLimiterUnavailableError)):
        return True
    if isinstance(error, LeadSquaredError):
        return error.transient
    return is_disk_full(error)


def exit_code_of(error: BaseException) -> int:
    """The exit code of a command that ``error`` stopped: 2 for a crawl directory another
    crawl is using, else 75 or 1 (see `can_finish_later`)."""
    if isinstance(error, DirectoryInUse):
        return USAGE
    if isinstance(error, CrawlError):
        return FAILED_FOR_GOOD
    return TEMPORARY_FAILURE if can_finish_later(error) else FAILED_FOR_GOOD


@attrs.define
class Failures:
    """How many ids failed, for good and for now."""

    for_good: int = 0
    for_now: int = 0

    def add(self, error: BaseException) -> None:
        """Count one id's failure."""
        if failed_for_good(error):
            self.for_good += 1
        else:
            self.for_now += 1

    @property
    def exit_code(self) -> int:
        """75 if some failed for now, else 1 if some failed for good, else 0."""
        if self.for_now:
            return TEMPORARY_FAILURE
        return FAILED_FOR_GOOD if self.for_good else DONE


class FailuresInARow(Exception):
    """Many ids in a row failed for now, none done between them: the API or the network
    is down, not one id.

    Attributes:
        count: how many in a row.
        last: the last one's error.
    """

    def __init__(self, count: int, last: BaseException, line: str, noun: str) -> None:
        super().__init__(
            f"{count} {noun}s in a row failed for now, none done between them (the last: "
            f"{line}): the API or the network seems to be down"
        )
        self.count = count
        self.last = last


class FailureStreak:
    """Counts the ids in a row that fail for now; at ``limit`` the command must stop."""

    def __init__(self, noun: str, limit: int = FAILURES_IN_A_ROW) -> None:
        self._noun = noun
        self._limit = limit
        self._count = 0

    def add(self, error: BaseException | None, line: str = "") -> None:
        """Count one id's outcome: ``error`` (shown as ``line``), or None when it was done.

        Raises:
            FailuresInARow: this is the ``limit``-th id in a row to fail for now.
        """
        if error is None or failed_for_good(error):
            # An answer came, even one refusing the id: the API is up.
            self._count = 0
            return
        self._count += 1
        if self._count >= self._limit:
            raise FailuresInARow(self._count, error, line or str(error), self._noun)


def export_failures(failures: Failures, kind: str) -> str:
    """The last line of an export some ids of which failed: how many, for good and for now."""
    noun = "opportunities" if kind == "opportunity" else f"{kind}s"
    total = failures.for_good + failures.for_now
    failed = f"{total} {kind if total == 1 else noun} failed (see the lines above)"
    if not failures.for_now:
        return f"{failed}, for good: the API refused {'it' if total == 1 else 'them'}"
    if not failures.for_good:
        return (
            f"{failed}, for now (retries spent on timeouts, dropped connections or server "
            f"errors): run the command again for {'it' if total == 1 else 'them'}"
        )
    return (
        f"{failed}: {failures.for_now} for now (timeouts, dropped connections or server "
        f"errors: run the command again for those), {failures.for_good} for good (the API "
        "refused them)"
    )


def stop_reason(error: LeadSquaredError) -> str:
    """Why a failure of the whole account stops a crawl, in words."""
    if isinstance(error, RateLimiterUnavailableError):
        return "no lead can be crawled without the shared rate limiter"
    return "it concerns every lead, not one"


def stop_advice(error: LeadSquaredError, again: str = "run the same command with --resume") -> str:
    """What to do about a failure of the whole account before carrying on (``again``: how
    to carry on)."""
    if isinstance(error, AuthenticationError):
        return f"fix the keys (or the host: --host, LSQ_HOST), then {again} to carry on"
    if isinstance(error, RateLimiterUnavailableError):
        return f"{again} once it is back"
    return f"{again} to carry on"


#: How each command that goes through many leads is carried on after it stopped.
CARRY_ON = {"crawl": "run the same command with --resume", "load": "run the same command"}


def stopped(error: BaseException, command: str, saved: str) -> CommandFailed:
    """Why ``command`` (``crawl`` or ``load``) stopped, as its last line, with its exit code:
    the one set of stop rules of both. ``saved`` says what is kept."""
    again = CARRY_ON[command]
    if isinstance(error, Interrupted):
        return CommandFailed(f"interrupted: {saved}; {again} to carry on", exit_code=INTERRUPTED)
    if isinstance(error, QuotaExhaustedError):
        when = resume_time(error.retry_at)
        advice = (
            f"resume after {when} with --resume, or pass --wait-for-quota to wait"
            if command == "crawl"
            else f"{again} after {when}"
        )
        return CommandFailed(
            f"{quota_name(error.limit)} is spent; the {command} stopped ({saved}): {advice}",
            exit_code=TEMPORARY_FAILURE,
        )
    if isinstance(error, FailuresInARow):
        return CommandFailed(
            f"{scrub(str(error))}; the {command} stopped ({saved}): {again} to carry on",
            exit_code=TEMPORARY_FAILURE,
        )
    if isinstance(error, LeadSquaredError):
        return CommandFailed(
            f"{error_line(error, scrub)}; {stop_reason(error)}, so the {command} stopped "
            f"({saved}): {stop_advice(error, again)}",
            exit_code=exit_code_of(error),
        )
    # A file could not be written (or the leads file read): the lead being written is
    # not journaled, so carrying on drops its rows and fetches it again.
    fix = "free some space there" if is_disk_full(error) else "fix that"
    return CommandFailed(
        f"{error_line(error, scrub)}; the {command} stopped ({saved}): {fix}, then {again} "
        "to carry on",
        exit_code=exit_code_of(error),
    )


def crawl_failures(failures: Failures, path: Path) -> str:
    """What a crawl done but for failed leads says: how many, how, and where they are listed."""
    for_now, for_good = failures.for_now, failures.for_good
    if not for_now:
        them = "it" if for_good == 1 else "them"
        return (
            f"{plural(for_good, 'lead')} failed for good (the API refused {them}): see {path}; "
            f"--resume --retry-failed requests {them} again"
        )
    them = "it" if for_now == 1 else "them"
    now = (
        f"{plural(for_now, 'lead')} failed for now (retries spent on timeouts, dropped "
        f"connections or server errors)"
    )
    if not for_good:
        return f"{now}: see {path}; run the same command with --resume to request {them} again"
    return (
        f"{now} and {plural(for_good, 'lead')} for good (the API refused "
        f"{'it' if for_good == 1 else 'them'}): see {path}; --resume requests those that "
        "failed for now again, --resume --retry-failed all of them"
    )


def quota_name(limit: StatedLimit | None) -> str:
    """``the daily quota of 10,000 calls``, ``the quota of 6 calls per 4 s``: ``limit``,
    named as a quota; ``the account's rate limit`` when it is not known."""
    if limit is None:
        return "the account's rate limit"
    calls = f"{limit.calls:,} {'call' if limit.calls == 1 else 'calls'}"
    named = {86_400.0: "daily", 3_600.0: "hourly"}.get(limit.period)
    if named is not None:
        return f"the {named} quota of {calls}"
    return f"the quota of {limit}"


def quota_resumes_at(retry_at: dt.datetime, now: dt.datetime | None = None) -> str:
    """``14:04 UTC``: the minute by which the quota allows a call again, rounded up.

    The date comes first (``2024-05-02 14:04 UTC``) when it is not today's, in UTC.
    """
    now = _utc_now() if now is None else now
    at = _minute_after(retry_at)
    if at.date() != now.astimezone(dt.timezone.utc).date():
        return f"{at:%Y-%m-%d %H:%M} UTC"
    return f"{at:%H:%M} UTC"


def resume_time(retry_at: dt.datetime, now: dt.datetime | None = None) -> str:
    """``14:04 UTC (in 3h12m)``: `quota_resumes_at`, and how long from ``now`` that is."""
    now = _utc_now() if now is None else now
    wait = max(0.0, (_minute_after(retry_at) - now).total_seconds())
    return f"{quota_resumes_at(retry_at, now)} (in {format_duration(wait)})"


def _minute_after(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC, rounded up to the minute."""
    utc = moment.astimezone(dt.timezone.utc)
    minute = utc.replace(second=0, microsecond=0)
    return minute if minute == utc else minute + dt.timedelta(minutes=1)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
