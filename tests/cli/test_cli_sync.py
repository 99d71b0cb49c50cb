"""``leadsq-async sync``'s progress off a terminal, run in process against an account of its
own: requests done of about how many, and an ETA, as crawl's plain lines show them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cli_fixtures import point_in_process_commands_at

from leadsq_async.cli import _display
from leadsq_async.cli._app import main
from leadsq_async.testing import (
    RunningEmulator,
)

pytest.importorskip("dlt")


@pytest.fixture
def account(small_account: RunningEmulator) -> RunningEmulator:
    return small_account


@pytest.fixture
def sync_env(account: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The command pointed at the account, dlt's directory and the working one the test's."""
    return point_in_process_commands_at(account, tmp_path, monkeypatch)


def test_sync_reports_requests_and_an_eta_as_it_goes(
    account: RunningEmulator,
    sync_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plain lines of a real sync count its requests of about how many it needs, and give
    an ETA that moves; "ETA -" only until the walks can tell; the totals announced are
    the requests the sync made, give or take a fifth."""
    monkeypatch.setattr(_display, "PLAIN_INTERVAL", 0.2)
    newest = max(row["ModifiedOn"] for row in account.account.activities())
    since = dt.datetime.strptime(newest, "%Y-%m-%d %H:%M:%S") - dt.timedelta(days=400)
    args = ["sync", "--since", since.isoformat(), "--lag", "0s", "--index-lag", "0s"]
    for code in ("12000", "12001", "12002"):
        args += ["--opportunity-type", code]
    exit_code = main([*args, "--rate-limit", "10/0.5"])
    stderr = capsys.readouterr().err
    assert exit_code == 0, stderr
    made = int(re.search(r": ([\d,]+) requests in ", stderr.splitlines()[-1])[1])  # type: ignore[index]
    lines = [line for line in stderr.splitlines() if line.startswith("sync: ")]
    done = [int(re.match(r"sync: ([\d,]+)", line)[1].replace(",", "")) for line in lines]  # type: ignore[index]
    assert len(set(done)) >= 3, stderr
    assert done == sorted(done), stderr
    etas = [re.search(r", ETA (\S+), ", line)[1] for line in lines]  # type: ignore[index]
    estimated = [eta for eta in etas if eta != "-"]
    assert len(set(estimated)) >= 2, stderr
    assert etas[len(etas) - len(estimated) :] == estimated, stderr  # no "-" once estimated
    totals = [int(total) for total in re.findall(r" of about (\d+) requests", stderr)]
    assert len(totals) == len(estimated), stderr
    assert all(0.8 * made <= total <= 1.2 * made for total in totals), (made, stderr)


def test_sync_shows_crawls_bar_in_requests_with_an_eta(
    account: RunningEmulator, sync_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--progress shows crawl's bar off a terminal too: the requests done of about how many
    and an ETA, and, a sync having no ids, no count of leads; no plain lines."""
    newest = max(row["ModifiedOn"] for row in account.account.activities())
    since = dt.datetime.strptime(newest, "%Y-%m-%d %H:%M:%S") - dt.timedelta(days=400)
    args = ["sync", "--since", since.isoformat(), "--lag", "0s", "--index-lag", "0s"]
    exit_code = main([*args, "--opportunity-type", "12000", "--progress", "--rate-limit", "10/0.5"])
    stderr = capsys.readouterr().err
    assert exit_code == 0, stderr
    made = account.stats.total
    bars = re.findall(r"(\d+)/~(\d+) requests, ETA (\S+)", stderr)
    assert bars, stderr
    assert any(int(done) == made for done, _, _ in bars), (made, bars)
    assert not re.search(r"\d+(/\d+)? leads?\b", stderr), stderr
    assert not [line for line in stderr.splitlines() if line.startswith("sync: ")]
