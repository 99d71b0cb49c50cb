"""Ids that fail, for good or for now, and the exit codes that say which.

Run by ``main`` in process (``run_in_process``: an environment and streams of its own)
against the emulator over loopback; the command as a process of its own is test_cli.py's.
A lead "whose connection keeps failing" is served by an emulator that drops the connection
of every request naming one id, before answering anything.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_fixtures import CALLS, PERIOD, env_for
from cli_fixtures import run_in_process as run
from test_cli import (
    UNKNOWN_LEAD,
    assert_crawl_matches,
    assert_one_error_line,
    crawl_args,
    key,
    rows_of,
    small_leads,
)

from leadsq_async import RateLimit
from leadsq_async.testing import EmulatorApp, RunningEmulator
from leadsq_async.testing._app import InjectedDisconnect
from leadsq_async.testing._server import serve_in_thread

#: Nothing listens on the discard port: every connection is refused at once.
NOBODY_LISTENS = "http://127.0.0.1:9"


class DropsConnections(EmulatorApp):
    """The emulator, but every request naming an id in ``dropping`` loses its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.dropping: set[str] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Drop the connection for an id in ``dropping``; answer as the emulator otherwise."""
        query = scope.get("query_string", b"").decode("latin-1") if scope["type"] == "http" else ""
        if any(identifier in query for identifier in self.dropping):
            # What the emulator's "drop" fault does: uvicorn refuses this header value before
            # writing a byte, so the connection closes with no answer at all.
            with contextlib.suppress(Exception):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"x-emulator-fault", b"drop\r\n")],
                    }
                )
            raise InjectedDisconnect("Server disconnected without sending a response.")
        await super().__call__(scope, receive, send)


@pytest.fixture(scope="module")
def dropping_server() -> Iterator[RunningEmulator]:
    """One emulator that drops connections, for the module."""
    with serve_in_thread(DropsConnections()) as running:
        yield running


@pytest.fixture
def dropping(dropping_server: RunningEmulator) -> RunningEmulator:
    """The dropping emulator, reset, with a fast rate limit and nothing dropped yet."""
    dropping_server.app.wait_idle(timeout=30.0)
    dropping_server.app.reset()
    assert isinstance(dropping_server.app, DropsConnections)
    dropping_server.app.dropping.clear()
    dropping_server.config.rate_limits = (RateLimit(CALLS, PERIOD),)
    return dropping_server


@pytest.fixture
def emulator(lsq_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with a fast rate limit, so that tests stay quick."""
    lsq_emulator.config.rate_limits = (RateLimit(CALLS, PERIOD),)
    return lsq_emulator


@pytest.fixture
def env(emulator: RunningEmulator) -> dict[str, str]:
    """The environment that points the command at the emulator."""
    return env_for(emulator)


def write_ids(path: Path, ids: list[str]) -> Path:
    """``ids`` one per line in ``path``."""
    path.write_text("".join(f"{identifier}\n" for identifier in ids))
    return path


def failed_entries(out: Path) -> list[dict[str, Any]]:
    """The lines of the crawl's failed.jsonl."""
    return [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]


def last_line(result: Any) -> str:
    """The last line of a command's stderr."""
    lines: list[str] = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


# Exit codes in --help.


def test_help_lists_the_exit_codes(env: dict[str, str]) -> None:
    """leadsq-async --help explains each exit code: 0, 1, 2, 75 and 130."""
    result = run("--help", env=env)
    assert result.returncode == 0, result.stderr
    for code in (0, 1, 2, 75, 130):
        assert re.search(rf"^\s+{code}\s+\w", result.stdout, re.MULTILINE), code


# Failed for good.


def test_resume_does_not_request_a_lead_that_failed_for_good(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """A lead that does not exist is final: exit 1 naming failed.jsonl; --resume skips it."""
    leads = write_ids(tmp_path / "leads.txt", [*small_leads(emulator)[:3], UNKNOWN_LEAD])
    out = tmp_path / "crawl"
    first = run(*crawl_args(leads, out), env=env)
    assert first.returncode == 1, first.stderr
    assert f"1 lead failed for good (the API refused it): see {out / 'failed.jsonl'}" in (
        last_line(first)
    )
    assert [(e["lead_id"], e["error"], e["transient"]) for e in failed_entries(out)] == [
        (UNKNOWN_LEAD, "APIError", False)
    ]
    emulator.stats.reset()
    again = run(*crawl_args(leads, out, "--resume"), env=env)
    assert again.returncode == 1, again.stderr
    assert emulator.stats.total == 0
    assert "1 lead failed for good" in last_line(again)
    assert [entry["lead_id"] for entry in failed_entries(out)] == [UNKNOWN_LEAD]


def test_retry_failed_requests_a_lead_that_failed_for_good_again(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """--resume --retry-failed requests the lead again: once it exists, the crawl is done."""
    leads = [*small_leads(emulator)[:3], UNKNOWN_LEAD]
    leads_file = write_ids(tmp_path / "leads.txt", leads)
    out = tmp_path / "crawl"
    assert run(*crawl_args(leads_file, out), env=env).returncode == 1
    emulator.data.add_opportunity(UNKNOWN_LEAD)
    result = run(*crawl_args(leads_file, out, "--resume", "--retry-failed"), env=env)
    assert result.returncode == 0, result.stderr
    assert "crawled 1 lead, skipped 3" in result.stderr
    assert failed_entries(out) == []
    assert_crawl_matches(out, emulator, leads)


def test_retry_failed_without_resume_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    """--retry-failed alone: exit 2 naming --resume, and the directory is not created."""
    leads = write_ids(tmp_path / "leads.txt", ["some-lead"])
    result = run(*crawl_args(leads, tmp_path / "crawl", "--retry-failed"), env=env)
    assert result.returncode == 2
    assert "--resume" in assert_one_error_line(result, env["LSQ_SECRET_KEY"])
    assert not (tmp_path / "crawl").exists()


@pytest.mark.parametrize("command", ["opportunities", "activities"])
def test_an_id_that_failed_for_good_exits_1(
    emulator: RunningEmulator, env: dict[str, str], command: str
) -> None:
    """An id the API refuses: its line, then one saying it failed for good; exit code 1."""
    good = (
        emulator.data.leads_by_shape["one"]
        if command == "opportunities"
        else emulator.data.opportunities_by_shape["one"]
    )
    result = run(command, UNKNOWN_LEAD, good, env=env)
    assert result.returncode == 1, result.stderr
    assert "failed (see the lines above), for good: the API refused it" in last_line(result)


# Failed for now: one id whose connection keeps dropping.


def test_a_lead_whose_connection_keeps_dropping_fails_alone(
    dropping: RunningEmulator, tmp_path: Path
) -> None:
    """Its lead fails for now (exit 75), every other lead is saved; --resume requests it only."""
    env = env_for(dropping)
    assert isinstance(dropping.app, DropsConnections)
    leads = small_leads(dropping)
    broken = leads[len(leads) // 2]
    dropping.app.dropping.add(broken)
    leads_file = write_ids(tmp_path / "leads.txt", leads)
    out = tmp_path / "crawl"
    first = run(*crawl_args(leads_file, out, "--max-attempts", "2"), env=env)
    assert first.returncode == 75, first.stderr
    assert "1 lead failed for now" in last_line(first)
    assert "--resume" in last_line(first)
    assert [(e["lead_id"], e["error"], e["transient"]) for e in failed_entries(out)] == [
        (broken, "TransportError", True)
    ]
    assert_crawl_matches(out, dropping, [lead for lead in leads if lead != broken])
    dropping.app.dropping.clear()
    resumed = run(*crawl_args(leads_file, out, "--resume"), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"crawled 1 lead, skipped {len(leads) - 1}" in resumed.stderr
    assert failed_entries(out) == []
    assert_crawl_matches(out, dropping, leads)


@pytest.mark.parametrize("command", ["opportunities", "activities"])
def test_an_id_whose_connection_keeps_dropping_fails_alone(
    dropping: RunningEmulator, command: str
) -> None:
    """opportunities and activities: that id fails for now (exit 75); the others' rows print."""
    env = env_for(dropping)
    assert isinstance(dropping.app, DropsConnections)
    data = dropping.data
    if command == "opportunities":
        ids = small_leads(dropping)[:6]
        rows = {lead: data.opportunities[lead] for lead in ids}
    else:
        ids = list(data.opportunities_by_shape.values())
        rows = {opportunity: data.activities[opportunity] for opportunity in ids}
    broken = ids[2]
    dropping.app.dropping.add(broken)
    result = run(command, *ids, "--max-attempts", "2", env=env)
    assert result.returncode == 75, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    kind = "lead" if command == "opportunities" else "opportunity"
    assert lines[0].startswith(f"leadsq-async: error: {kind} {broken}: ")
    assert "failed (see the lines above), for now" in lines[1]
    expected = Counter(key(row) for i in ids if i != broken for row in rows[i])
    assert rows_of(result.stdout.splitlines()) == expected


# Failed for now, all of them: the API or the network is down.


def test_crawl_stops_when_leads_keep_failing_for_now_in_a_row(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Nothing answers: after 10 leads in a row fail for now, the crawl stops with exit 75."""
    env = {**env, "LSQ_HOST": NOBODY_LISTENS}
    leads = write_ids(tmp_path / "leads.txt", [f"lead-{n}" for n in range(60)])
    out = tmp_path / "crawl"
    args = ["--max-attempts", "1", "--concurrency", "2"]
    result = run("crawl", "--leads-file", str(leads), "--out", str(out), *args, env=env)
    assert result.returncode == 75, result.stderr
    line = assert_one_error_line(result, env["LSQ_SECRET_KEY"])
    assert "10 leads in a row failed for now, none done between them (the last: " in line
    assert "the API or the network seems to be down" in line
    assert "--resume" in line
    failed = failed_entries(out)
    assert 10 <= len(failed) < 15
    assert all(entry["transient"] for entry in failed)


# Account-wide failures.


def test_bad_keys_stop_the_crawl_at_once_with_exit_1(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """A 401 concerns every lead: one line saying so and what to check, exit 1."""
    leads = write_ids(tmp_path / "leads.txt", small_leads(emulator))
    env = {**env, "LSQ_SECRET_KEY": "wrong-secret-b1e4"}
    result = run(*crawl_args(leads, tmp_path / "crawl"), env=env)
    assert result.returncode == 1
    line = assert_one_error_line(result, "wrong-secret-b1e4")
    assert "it concerns every lead, not one, so the crawl stopped" in line
    assert "fix the keys (or the host: --host, LSQ_HOST)" in line
    assert not failed_entries(tmp_path / "crawl")
