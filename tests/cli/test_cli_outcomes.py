"""How a command ends, in process: which failures are final, the exit codes, the lines
that say when a spent quota allows more. The commands themselves: test_cli_failures.py
and test_cli_quota.py."""

from __future__ import annotations

import datetime as dt
import errno
from pathlib import Path

import pytest

from leadsq_async import (
    APIError,
    AuthenticationError,
    QuotaExhaustedError,
    RateLimit,
    RateLimiterUnavailableError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from leadsq_async.cli._outcomes import (
    Failures,
    FailuresInARow,
    FailureStreak,
    can_finish_later,
    crawl_failures,
    exit_code_of,
    failed_for_good,
    quota_name,
    quota_resumes_at,
    resume_time,
)

UTC = dt.timezone.utc
NOON = dt.datetime(2025, 3, 14, 12, 0, 30, tzinfo=UTC)
SOON = NOON + dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (APIError("Lead does not exist in the system"), True),
        (ValueError("not an id"), True),
        (TypeError("not a str"), True),
        (ServerError("502 Bad Gateway"), False),
        (TransportError("RemoteProtocolError: dropped"), False),
        (RequestTimeoutError("no answer in time"), False),
    ],
)
def test_an_id_fails_for_good_exactly_when_trying_again_cannot_help(
    error: Exception, final: bool
) -> None:
    """Not transient (or no LeadSquaredError at all) is final; transient is for now."""
    assert failed_for_good(error) is final


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (QuotaExhaustedError("spent", retry_at=SOON), 75),
        (RateLimiterUnavailableError("no Redis", address="127.0.0.1:6379/0"), 75),
        (ServerError("503"), 75),
        (OSError(errno.ENOSPC, "No space left on device"), 75),
        (AuthenticationError("Invalid access key or secret key."), 1),
        (OSError(errno.EACCES, "Permission denied"), 1),
        (ValueError("not a text file of ids"), 1),
    ],
)
def test_a_stop_exits_75_when_running_again_later_can_finish(
    error: BaseException, code: int
) -> None:
    """A spent quota, a lost limiter, a transient error, a full disk: 75; a needed fix: 1."""
    assert can_finish_later(error) is (code == 75)
    assert exit_code_of(error) == code


def test_failures_for_now_outweigh_failures_for_good() -> None:
    """0 with none; 1 with failures for good only; 75 once any failed for now."""
    failures = Failures()
    assert failures.exit_code == 0
    failures.add(APIError("Lead does not exist"))
    assert failures.exit_code == 1
    failures.add(ServerError("502"))
    assert (failures.for_good, failures.for_now, failures.exit_code) == (1, 1, 75)


def test_a_streak_of_failures_for_now_stops_at_its_limit() -> None:
    """Three in a row stop a streak of three; a done id or a refused one starts it again."""
    streak = FailureStreak("lead", limit=3)
    for outcome in (ServerError("502"), ServerError("502"), None, APIError("no such lead")):
        streak.add(outcome)
    streak.add(ServerError("502"))
    streak.add(ServerError("502"))
    with pytest.raises(FailuresInARow, match=r"^3 leads in a row failed for now") as stopped:
        streak.add(TransportError("dropped"), "the line shown")
    assert stopped.value.count == 3
    assert "(the last: the line shown)" in str(stopped.value)


@pytest.mark.parametrize(
    ("limit", "name"),
    [
        (RateLimit(10_000, 86_400), "the daily quota of 10,000 calls"),
        (RateLimit(1_000, 3_600), "the hourly quota of 1,000 calls"),
        (RateLimit(6, 4), "the quota of 6 calls per 4 s"),
        (None, "the account's rate limit"),
    ],
)
def test_a_spent_limit_is_named_as_a_quota(limit: RateLimit | None, name: str) -> None:
    """A day's limit is "the daily quota", others by their calls and period."""
    assert quota_name(limit) == name


def test_the_resume_time_is_rounded_up_to_the_minute() -> None:
    """12:03:01 shows as 12:04 (resuming then is never early); 12:04:00 stays 12:04."""
    assert quota_resumes_at(NOON.replace(minute=3, second=1), NOON) == "12:04 UTC"
    assert quota_resumes_at(NOON.replace(minute=4, second=0), NOON) == "12:04 UTC"
    assert resume_time(NOON.replace(hour=15, minute=11, second=59), NOON) == (
        "15:12 UTC (in 3h11m)"
    )


def test_a_resume_time_on_another_day_names_the_date() -> None:
    """A quota that frees tomorrow says which day, in UTC, whatever the zone given."""
    tomorrow_at_utc_plus_5 = dt.datetime(
        2025, 3, 15, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))
    )
    assert quota_resumes_at(tomorrow_at_utc_plus_5, NOON) == "21:30 UTC"  # today, in UTC
    assert quota_resumes_at(NOON + dt.timedelta(hours=13), NOON) == "2025-03-15 01:01 UTC"


def test_a_crawl_with_both_kinds_of_failures_says_what_each_resume_requests() -> None:
    """Failed for now and for good: the line counts both and names both ways to resume."""
    line = crawl_failures(Failures(for_good=1, for_now=2), Path("crawl/failed.jsonl"))
    assert line.startswith("2 leads failed for now (")
    assert "and 1 lead for good (the API refused it): see crawl/failed.jsonl" in line
    assert line.endswith("--resume --retry-failed all of them")
