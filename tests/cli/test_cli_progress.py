"""The commands' progress on stderr, as a user sees it: subprocesses against the emulator.

On a terminal (stderr a pseudo-terminal here) the exports show a bar of requests;
off a terminal, ``crawl`` writes a plain line every 5 seconds.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from leadsq_async.testing import RunningEmulator

COMMAND = [sys.executable, "-m", "leadsq_async.cli"]
UNKNOWN_LEAD = "00000000-0000-4000-8000-000000000000"
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def environment(emulator: RunningEmulator, rate_limit: str) -> dict[str, str]:
    """The environment that points the command at the emulator, both at ``rate_limit``."""
    calls, period = rate_limit.split("/")
    emulator.config.rate_limit_calls = int(calls)
    emulator.config.rate_limit_period = float(period)
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LSQ_")}
    variables.update(
        LSQ_HOST=emulator.url,
        LSQ_ACCESS_KEY=emulator.access_key,
        LSQ_SECRET_KEY=emulator.secret_key,
        LSQ_RATE_LIMIT=rate_limit,
        PYTHONUNBUFFERED="1",
    )
    return variables


def small_leads(emulator: RunningEmulator) -> list[str]:
    """Every lead but the big generated ones: one request each."""
    shaped = set(emulator.data.leads_by_shape.values())
    return [lead for lead in emulator.data.opportunities if lead not in shaped]


def run_on_terminal(*args: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run the command with stderr on a pseudo-terminal; its exit code and the screen's lines
    (each redraw of the bar a line of its own, escape sequences removed)."""
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process = subprocess.run(
            [*COMMAND, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    screen = _ESCAPE.sub("", b"".join(chunks).decode("utf-8", "replace"))
    return process.returncode, [line for line in re.split(r"[\r\n]+", screen) if line.strip()]


def test_opportunities_with_out_shows_a_bar_of_requests_on_a_terminal(
    lsq_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A bar counts requests and leads with an ETA; an error line stands on a line of its own."""
    env = environment(lsq_emulator, "50/0.5")
    leads = [*small_leads(lsq_emulator)[:10], UNKNOWN_LEAD]
    ids = tmp_path / "leads.txt"
    ids.write_text("\n".join(leads) + "\n")
    out = tmp_path / "rows.jsonl"

    code, lines = run_on_terminal(
        "opportunities", "--leads-file", str(ids), "--out", str(out), env=env
    )

    assert code == 1
    rows = sum(len(lsq_emulator.data.opportunities[lead]) for lead in leads[:-1])
    assert len(out.read_text().splitlines()) == rows
    bars = [line for line in lines if " requests, " in line and " leads, ETA " in line]
    assert bars, lines
    # The unknown lead's request fetched no page: ten requests did the work.
    assert re.search(r"10/~?10 requests, 11/11 leads, ETA 0s", bars[-1]), bars[-1]
    assert any("waiting for the rate limit" in line for line in lines)
    errors = [line for line in lines if "error: lead " in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"leadsq-async: error: lead {UNKNOWN_LEAD}: ")


def test_activities_with_out_shows_a_bar_of_opportunities(
    lsq_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """activities counts opportunities, in the bar's own words."""
    env = environment(lsq_emulator, "50/0.5")
    lead = lsq_emulator.data.leads_by_shape["page"]
    opportunities = [row["OpportunityId"] for row in lsq_emulator.data.opportunities[lead]][:3]
    out = tmp_path / "rows.jsonl"

    code, lines = run_on_terminal("activities", *opportunities, "--out", str(out), env=env)

    assert code == 0
    assert any(re.search(r"3/3 opportunities, ETA", line) for line in lines), lines


def test_opportunities_to_a_pipe_shows_no_progress(
    lsq_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Off a terminal an export's stderr holds its error lines only."""
    env = environment(lsq_emulator, "50/0.5")
    out = tmp_path / "rows.jsonl"
    leads = small_leads(lsq_emulator)[:5]
    result = subprocess.run(
        [*COMMAND, "opportunities", *leads, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""


@pytest.mark.slow
def test_crawl_off_a_terminal_writes_a_line_every_five_seconds(
    lsq_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A crawl of 21 requests at 3 a second into a pipe writes a line at 5 s, then its summary."""
    env = environment(lsq_emulator, "3/1")
    ids = tmp_path / "leads.txt"
    ids.write_text("\n".join(small_leads(lsq_emulator)) + "\n")
    result = subprocess.run(
        [*COMMAND, "crawl", "--leads-file", str(ids), "--out", str(tmp_path / "crawl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    *progress, summary = result.stderr.splitlines()
    assert progress, summary
    for line in progress:
        assert re.fullmatch(
            r"\d+ of about 21 requests, \d+/21 leads, [\d,]+ records, [\d.]+ of 3 req/s, "
            r"ETA \w+, \d+s elapsed; waiting for the rate limit \d+% of the time",
            line,
        ), line
    assert "5s elapsed" in progress[0]
    assert summary.startswith("crawled 21 leads in ")
