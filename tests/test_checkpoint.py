"""The crawl directory in process: its lock.

The command's end-to-end behaviour is in test_cli.py and test_cli_crawl_guards.py; these
tests build the same files from hand-made results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leadsq_async import Activity, LeadResult, Opportunity, structure
from leadsq_async.cli._checkpoint import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    CHECKPOINT,
    OPPORTUNITIES,
    CrawlDirectory,
    CrawlSettings,
    DirectoryInUse,
)

SETTINGS = CrawlSettings(with_activities=True, opportunity_type=None)
LEADS = ["lead-a", "lead-b", "lead-c", "lead-d"]


def result(lead: str, opportunities: int = 2) -> LeadResult:
    """A lead's result with ``opportunities`` rows, each with two activities."""
    records = [
        structure(
            {"OpportunityId": f"{lead}-o{n}", "ProspectId": lead, "Note": "x" * n}, Opportunity
        )
        for n in range(opportunities)
    ]
    activities = {
        record.opportunity_id: [
            structure({"ProspectActivityId": f"{record.opportunity_id}-a{n}"}, Activity)
            for n in range(2)
        ]
        for record in records
    }
    return LeadResult(lead, records, activities)


def crawl(directory: Path, leads: list[str]) -> None:
    """A finished crawl of ``leads`` in ``directory``."""
    output = CrawlDirectory.start(directory, SETTINGS, overwrite=False)
    try:
        for lead in leads:
            output.record(result(lead))
    finally:
        output.close()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every crawl file's bytes."""
    names = (CHECKPOINT, OPPORTUNITIES, ACTIVITIES, ACTIVITY_INDEX)
    return {name: (directory / name).read_bytes() for name in names}


def journal(directory: Path) -> list[dict[str, Any]]:
    """The journal's lines as JSON, the header first."""
    return [json.loads(line) for line in (directory / CHECKPOINT).read_text().splitlines()]


def rewrite_journal(directory: Path, lines: list[dict[str, Any]]) -> None:
    """Replace the journal with ``lines``."""
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    (directory / CHECKPOINT).write_text(text)


def resumed(directory: Path) -> CrawlDirectory:
    """The crawl in ``directory``, resumed and closed again."""
    output = CrawlDirectory.resume(directory, SETTINGS)
    output.close()
    return output


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A crawl of four leads, finished."""
    out = tmp_path / "crawl"
    crawl(out, LEADS)
    return out


# One crawl per directory.


OPEN_AGAIN: dict[str, Callable[[Path], CrawlDirectory]] = {
    "resume": lambda directory: CrawlDirectory.resume(directory, SETTINGS),
    "overwrite": lambda directory: CrawlDirectory.start(directory, SETTINGS, overwrite=True),
}


@pytest.mark.parametrize("second", list(OPEN_AGAIN))
def test_a_second_crawl_is_refused_while_one_uses_the_directory(
    directory: Path, second: str
) -> None:
    """While a crawl has DIR open, another (--resume or --overwrite) is refused, files unchanged."""
    first = CrawlDirectory.resume(directory, SETTINGS)
    before = snapshot(directory)
    try:
        with pytest.raises(DirectoryInUse) as refused:
            OPEN_AGAIN[second](directory)
    finally:
        first.close()
    assert refused.value.exit_code == 2
    assert str(directory) in str(refused.value)
    assert f"process {os.getpid()}" in str(refused.value)
    assert snapshot(directory) == before
    assert resumed(directory).done == set(LEADS)  # free once the first one closed


def test_the_lock_of_a_killed_crawl_dies_with_it(directory: Path) -> None:
    """A crawl killed with SIGKILL leaves no lock behind: the next --resume runs."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from leadsq_async.cli._checkpoint import CrawlDirectory, CrawlSettings\n"
            "settings = CrawlSettings(with_activities=True, opportunity_type=None)\n"
            "CrawlDirectory.resume(Path(sys.argv[1]), settings)\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(DirectoryInUse, match=f"process {holder.pid}"):
            CrawlDirectory.resume(directory, SETTINGS)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert resumed(directory).done == set(LEADS)
