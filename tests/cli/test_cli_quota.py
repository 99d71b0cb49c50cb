"""A spent quota, over real sockets with scaled periods: the command stops and says when to
resume (exit 75), or with ``crawl --wait-for-quota`` waits, saying until when.

The emulator enforces 25 calls per second and a "quota" of 6 calls per 4 seconds, and the
command is told both (``--rate-limit 25/1 --rate-limit 6/4``) with ``--request-deadline 1``:
a slot 4 seconds away is then a spent quota, as a slot hours away is with the defaults.
Each lead crawled here takes one request (no activities, one page each).
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import time
from pathlib import Path

import pytest
from cli_fixtures import env_for
from test_cli import (
    LineReader,
    assert_one_error_line,
    expected_opportunities,
    file_rows,
    journal_lines,
    rows_of,
    run,
    small_leads,
    start,
    stop,
)

from leadsq_async import RateLimit
from leadsq_async.cli._app import main
from leadsq_async.testing import RunningEmulator

pytestmark = pytest.mark.slow

QUOTA_CALLS, QUOTA_PERIOD = 6, 4.0
LIMITS = ["--rate-limit", "25/1", "--rate-limit", f"{QUOTA_CALLS}/{QUOTA_PERIOD:g}"]
FAIL_FAST = ["--request-deadline", "1"]
RESUME_AFTER = re.compile(r"resume after (\d\d):(\d\d) UTC \(in \w+\) with --resume")
RESUMES_AT = re.compile(r"quota spent, resumes at (\d\d):(\d\d) UTC")
SPENT_UNTIL = re.compile(r"the quota is spent until (\d\d):(\d\d) UTC")


@pytest.fixture
def emulator(lsq_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with a short limit and a scaled-down quota."""
    lsq_emulator.config.rate_limits = (RateLimit(25, 1), RateLimit(QUOTA_CALLS, QUOTA_PERIOD))
    return lsq_emulator


@pytest.fixture
def env(emulator: RunningEmulator) -> dict[str, str]:
    """The environment that points the command at the emulator (limits come as flags)."""
    return env_for(emulator, rate_limit=None)


def leads_file(tmp_path: Path, leads: list[str]) -> Path:
    """A file of ``leads``, one per line."""
    path = tmp_path / "leads.txt"
    path.write_text("".join(f"{lead}\n" for lead in leads))
    return path


def assert_minute_is_soon(match: re.Match[str] | None) -> None:
    """The HH:MM matched is now or within the next two minutes, in UTC."""
    assert match is not None
    now = dt.datetime.now(dt.timezone.utc)
    shown = now.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    if shown < now - dt.timedelta(hours=12):
        shown += dt.timedelta(days=1)  # shown just past midnight
    assert now - dt.timedelta(minutes=1) <= shown <= now + dt.timedelta(minutes=2), match[0]


def test_a_spent_quota_stops_the_crawl_and_resume_waits_for_it(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """Quota spent: exit 75, saved, "resume after HH:MM UTC"; --resume --wait-for-quota ends it."""
    leads = small_leads(emulator)[:14]
    file = leads_file(tmp_path, leads)
    out = tmp_path / "crawl"
    crawl = ["crawl", "--leads-file", str(file), "--out", str(out), *LIMITS, *FAIL_FAST]
    stopped = run(*crawl, "--concurrency", "1", env=env)
    ended = time.monotonic()
    assert stopped.returncode == 75, stopped.stderr
    line = assert_one_error_line(stopped, emulator.secret_key)
    assert line.startswith(
        f"leadsq-async: error: the quota of {QUOTA_CALLS} calls per 4 s is spent; the crawl "
        f"stopped ({QUOTA_CALLS} leads are saved in {out}): resume after "
    )
    assert_minute_is_soon(RESUME_AFTER.search(line))
    assert journal_lines(out) == 1 + QUOTA_CALLS
    # The quota frees one period after the first run's requests, all sent before it ended.
    time.sleep(max(0.0, ended + QUOTA_PERIOD - time.monotonic()))
    resumed = run(*crawl, "--resume", "--wait-for-quota", env=env)
    assert resumed.returncode == 0, resumed.stderr
    waits = [line for line in resumed.stderr.splitlines() if "quota spent" in line]
    assert waits, resumed.stderr
    for wait in waits:
        assert wait.startswith("leadsq-async: quota spent, resumes at ")
        assert f": waiting for the quota of {QUOTA_CALLS} calls per 4 s (--wait-for-quota)" in wait
        assert_minute_is_soon(RESUMES_AT.search(wait))
    assert "waiting until" not in resumed.stderr  # the session's own warning is left out
    assert file_rows(out / "opportunities.jsonl") == expected_opportunities(emulator, leads)
    assert emulator.stats.rate_limited == 0


def test_a_spent_daily_quota_saves_every_granted_lead_and_resume_fetches_the_rest(
    emulator: RunningEmulator,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A daily quota of 6 calls under 8 leads at once: the 6 leads granted a call are
    journaled, exit 75; the next day, --resume fetches exactly the others (in process)."""
    leads = small_leads(emulator)[:11]
    daily = (RateLimit(100, 1), RateLimit(QUOTA_CALLS, 86_400))
    emulator.config.rate_limits = daily
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    file, out = leads_file(tmp_path, leads), tmp_path / "crawl"
    limits = ["--rate-limit", "100/1", "--rate-limit", f"{QUOTA_CALLS}/1d"]
    crawl = ["crawl", "--leads-file", str(file), "--out", str(out), *limits, "--quiet"]
    assert main([*crawl, "--concurrency", "8"]) == 75
    stderr = capsys.readouterr().err
    assert f"is spent; the crawl stopped ({QUOTA_CALLS} leads are saved in {out})" in stderr
    assert journal_lines(out) == 1 + QUOTA_CALLS
    assert emulator.stats.total == QUOTA_CALLS
    emulator.app.reset()  # the next day: the emulator's quota is back, its counts at 0
    emulator.config.rate_limits = daily
    assert main([*crawl, "--resume"]) == 0, capsys.readouterr().err
    assert emulator.stats.total == len(leads) - QUOTA_CALLS
    assert file_rows(out / "opportunities.jsonl") == expected_opportunities(emulator, leads)


def test_wait_for_quota_shows_the_wait_in_the_progress_bar(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """--wait-for-quota --progress: the bar says "the quota is spent until HH:MM UTC"."""
    leads = small_leads(emulator)[: QUOTA_CALLS + 2]
    file = leads_file(tmp_path, leads)
    out = tmp_path / "crawl"
    args = ["--wait-for-quota", "--progress", *LIMITS, *FAIL_FAST]
    wide = {**env, "COLUMNS": "200"}  # the line under the bar unwrapped
    result = run("crawl", "--leads-file", str(file), "--out", str(out), *args, env=wide)
    assert result.returncode == 0, result.stderr
    assert_minute_is_soon(SPENT_UNTIL.search(result.stderr))
    assert "leadsq-async: quota spent" not in result.stderr  # the bar shows it: no line
    assert "waiting until" not in result.stderr
    assert file_rows(out / "opportunities.jsonl") == expected_opportunities(emulator, leads)
    assert emulator.stats.rate_limited == 0


def test_sigint_stops_a_crawl_waiting_for_the_quota_at_once(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """Ctrl-C while --wait-for-quota waits: exit 130 within moments, what was done saved."""
    file = leads_file(tmp_path, small_leads(emulator)[: QUOTA_CALLS + 2])
    out = tmp_path / "crawl"
    args = ["--wait-for-quota", "--concurrency", "1", *LIMITS, *FAIL_FAST]
    process = start("crawl", "--leads-file", str(file), "--out", str(out), *args, env=env)
    assert process.stderr is not None
    errors = LineReader(process.stderr)
    try:
        assert "quota spent, resumes at" in errors.take(1)[0]
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert process.wait(timeout=QUOTA_PERIOD) == 130
        assert time.monotonic() - started < QUOTA_PERIOD / 2  # not the quota's end
        assert errors.rest()[-1].startswith(
            f"leadsq-async: interrupted: {QUOTA_CALLS} leads are saved in {out}"
        )
    finally:
        stop(process, errors)
    assert journal_lines(out) == 1 + QUOTA_CALLS


def test_a_spent_quota_stops_opportunities_with_exit_75(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """opportunities prints what the quota allowed, then says when to run again; exit 75."""
    leads = small_leads(emulator)[: QUOTA_CALLS + 2]
    # Both limits from LSQ_RATE_LIMIT, separated by a space.
    env = {**env, "LSQ_RATE_LIMIT": f"25/1 {QUOTA_CALLS}/{QUOTA_PERIOD:g}"}
    result = run("opportunities", *leads, "--concurrency", "1", *FAIL_FAST, env=env)
    assert result.returncode == 75, result.stderr
    line = assert_one_error_line(result, emulator.secret_key)
    assert line.startswith(
        f"leadsq-async: error: the quota of {QUOTA_CALLS} calls per 4 s is spent; the command "
        "stopped: run it again after "
    )
    assert_minute_is_soon(re.search(r"after (\d\d):(\d\d) UTC \(in \w+\)$", line))
    assert rows_of(result.stdout.splitlines()) == expected_opportunities(
        emulator, leads[:QUOTA_CALLS]
    )
    assert emulator.stats.rate_limited == 0
