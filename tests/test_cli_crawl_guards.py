"""``leadsq-async crawl`` misused: two runs at once.

Driven as test_cli.py drives the command: a subprocess against the emulator over loopback.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from test_cli import (
    assert_crawl_matches,
    assert_one_error_line,
    crawl_args,
    run,
    small_leads,
    start,
    wait_for_journal,
)

from leadsq_async.testing import RunningEmulator

CALLS, PERIOD = 50, 0.5


@pytest.fixture
def emulator(lsq_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with a fast rate limit, so that tests stay quick."""
    lsq_emulator.config.rate_limit_calls = CALLS
    lsq_emulator.config.rate_limit_period = PERIOD
    return lsq_emulator


@pytest.fixture
def env(emulator: RunningEmulator) -> dict[str, str]:
    """The environment that points the command at the emulator."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LSQ_")}
    variables.update(
        LSQ_HOST=emulator.url,
        LSQ_ACCESS_KEY=emulator.access_key,
        LSQ_SECRET_KEY=emulator.secret_key,
        LSQ_RATE_LIMIT=f"{CALLS}/{PERIOD}",
        PYTHONUNBUFFERED="1",
    )
    return variables


@pytest.fixture
def leads_file(tmp_path: Path, emulator: RunningEmulator) -> Path:
    """A file of every lead id but the biggest, one per line."""
    path = tmp_path / "leads.txt"
    path.write_text("".join(f"{lead}\n" for lead in small_leads(emulator)))
    return path


def test_a_second_crawl_of_a_directory_in_use_is_refused(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path, leads_file: Path
) -> None:
    """--resume while a crawl runs in DIR: exit 2, files untouched; once it is killed, it runs."""
    out = tmp_path / "crawl"
    leads = small_leads(emulator)
    first = start(
        *crawl_args(leads_file, out, "--concurrency", "1", "--rate-limit", "2/1"), env=env
    )
    try:
        wait_for_journal(first, out, 2)
        second = run(*crawl_args(leads_file, out, "--resume"), env=env)
        assert first.poll() is None, "the first crawl ended before the second was tried"
        journaled = (out / "checkpoint.jsonl").read_bytes()
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 2
    line = assert_one_error_line(second, emulator.secret_key)
    assert f"{out} is in use by another crawl (process {first.pid})" in line
    # Only the first crawl wrote: every line of its journal is its own.
    assert len({json.loads(entry)["lead_id"] for entry in journaled.splitlines()[1:]}) == len(
        journaled.splitlines()[1:]
    )
    result = run(*crawl_args(leads_file, out, "--resume"), env=env)
    assert result.returncode == 0, result.stderr
    assert_crawl_matches(out, emulator, leads)
