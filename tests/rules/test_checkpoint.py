"""The crawl directory in process: its lock, its journal's checks, ``--repair``, a full disk.

The command's end-to-end behaviour is in test_cli.py and test_cli_crawl_guards.py; these
tests build the same files from hand-made results, so that each rule can be broken on
purpose, line by line.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.journal import write_journal
from leadsq_async import (
    Activity,
    APIError,
    LeadResult,
    Opportunity,
    ServerError,
    structure,
)
from leadsq_async.cli._outcomes import exit_code_of
from leadsq_async.journal import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    CHECKPOINT,
    OPPORTUNITIES,
    CrawlDirectory,
    CrawlError,
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


def resumed(directory: Path, *, repair: bool = False) -> CrawlDirectory:
    """The crawl in ``directory``, resumed and closed again."""
    output = CrawlDirectory.resume(directory, SETTINGS, repair=repair)
    output.close()
    return output


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A crawl of four leads, finished."""
    out = tmp_path / "crawl"
    crawl(out, LEADS)
    return out


# One crawl per directory.


def test_the_refusal_pickles_with_the_directory_and_its_holder(directory: Path) -> None:
    """DirectoryInUse crosses processes (a ProcessPoolExecutor) whole, as any exception."""
    first = CrawlDirectory.resume(directory, SETTINGS)
    try:
        with pytest.raises(DirectoryInUse) as refused:
            CrawlDirectory.resume(directory, SETTINGS)
    finally:
        first.close()
    again = pickle.loads(pickle.dumps(refused.value))
    assert (str(again), again.directory, again.holder) == (
        str(refused.value),
        directory,
        os.getpid(),
    )


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
    assert exit_code_of(refused.value) == 2  # the command's code for it
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
            "from leadsq_async.journal import CrawlDirectory, CrawlSettings\n"
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


# The journal's offsets are checked before any file is changed.


def shift(by: Callable[[dict[str, int], list[dict[str, Any]]], None], line: int) -> Any:
    """A damage: ``by(ends, lines)`` changes the ``ends`` of journal line ``line``."""

    def damage(lines: list[dict[str, Any]]) -> None:
        by(lines[line - 1]["ends"], lines)

    return damage


DAMAGES = {
    # The end of a lead's rows inside a row of the next lead: --resume cut it in two.
    "mid-line": (
        3,
        shift(lambda ends, _: ends.update({OPPORTUNITIES: ends[OPPORTUNITIES] - 5}), 3),
    ),
    # Beyond the file, on a line that is not the last (the last one was checked already).
    "past the end": (
        3,
        shift(lambda ends, _: ends.update({ACTIVITIES: ends[ACTIVITIES] + 10**6}), 3),
    ),
    # At a line boundary, but before the line above: --resume dropped leads journaled as done.
    "backwards": (
        4,
        shift(lambda ends, lines: ends.update({OPPORTUNITIES: lines[1]["ends"][OPPORTUNITIES]}), 4),
    ),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_resume_refuses_offsets_that_do_not_match_the_files(directory: Path, case: str) -> None:
    """A journal line whose offsets cannot be right is named, and no file is changed."""
    number, damage = DAMAGES[case]
    lines = journal(directory)
    damage(lines)
    rewrite_journal(directory, lines)
    before = snapshot(directory)
    with pytest.raises(CrawlError) as refused:
        CrawlDirectory.resume(directory, SETTINGS)
    message = str(refused.value)
    assert f"{directory / CHECKPOINT} is damaged at line {number}" in message
    assert "--repair" in message
    assert snapshot(directory) == before


def test_resume_refuses_a_failed_lead_that_moved_the_offsets(directory: Path) -> None:
    """A failed lead wrote no rows: a journal line that says it did is refused."""
    lines = journal(directory)
    lines[2].update(status="failed", error={"type": "APIError", "message": "no"})
    rewrite_journal(directory, lines)
    with pytest.raises(CrawlError, match=r"damaged at line 3: .* though lead lead-b failed"):
        CrawlDirectory.resume(directory, SETTINGS)


def test_resume_refuses_a_lead_journaled_as_done_twice(tmp_path: Path) -> None:
    """A lead done twice (two crawls at once did that) has its rows twice: refused."""
    out = tmp_path / "crawl"
    crawl(out, [*LEADS[:2], LEADS[0]])
    with pytest.raises(CrawlError, match=r"lead-a is journaled as done twice \(lines 2 and 4\)"):
        CrawlDirectory.resume(out, SETTINGS)


def test_repair_keeps_the_leads_journaled_before_the_first_bad_line(directory: Path) -> None:
    """--repair keeps lines and rows up to the bad line, drops the rest, and resumes from there."""
    kept = journal(directory)[1]["ends"]
    lines = journal(directory)
    DAMAGES["mid-line"][1](lines)
    rewrite_journal(directory, lines)
    output = CrawlDirectory.resume(directory, SETTINGS, repair=True)
    try:
        assert output.done == {"lead-a"}
        assert output.repaired is not None
        assert "damaged at line 3" in output.repaired
        for name, end in kept.items():
            assert (directory / name).stat().st_size == end
        output.record(result("lead-b"))
    finally:
        output.close()
    assert len(journal(directory)) == 3
    assert resumed(directory).done == {"lead-a", "lead-b"}  # consistent again, no --repair


def test_repair_changes_nothing_in_a_sound_journal(directory: Path) -> None:
    """--repair on a journal with nothing wrong keeps every lead and byte."""
    before = snapshot(directory)
    output = resumed(directory, repair=True)
    assert output.repaired is None
    assert output.done == set(LEADS)
    assert snapshot(directory) == before


# Failed for good, failed for now.


def test_resume_settles_the_leads_that_failed_for_good_only(tmp_path: Path) -> None:
    """A lead refused by the API is settled (not crawled again), one that failed for now is not."""
    out = tmp_path / "crawl"
    output = CrawlDirectory.start(out, SETTINGS, overwrite=False)
    try:
        output.record(result(LEADS[0]))
        output.record(LeadResult(LEADS[1], error=APIError("Lead does not exist in the system")))
        output.record(LeadResult(LEADS[2], error=ServerError("502 Bad Gateway")))
        output.record(LeadResult(LEADS[3], error=ValueError("not an id")))
    finally:
        output.close()
    again = resumed(out)
    assert again.settled() == {LEADS[0], LEADS[1], LEADS[3]}
    assert again.settled(retry_failed=True) == {LEADS[0]}
    assert [(entry.lead_id, entry.transient) for entry in again.failed] == [
        (LEADS[1], False),
        (LEADS[2], True),
        (LEADS[3], False),
    ]


def test_a_failed_lead_journaled_before_transient_was_recorded_is_crawled_again(
    directory: Path,
) -> None:
    """An older journal's failed lead (no "transient") is resumed as before: requested again."""
    lines = journal(directory)
    lines.append({**lines[-1], "lead_id": "lead-e", "status": "failed"})
    lines[-1].update(opportunities=0, activities=0, error={"type": "APIError", "message": "no"})
    rewrite_journal(directory, lines)
    again = resumed(directory)
    assert again.failed[0].transient
    assert "lead-e" not in again.settled()


def test_failed_report_says_whether_each_lead_failed_for_good(directory: Path) -> None:
    """failed.jsonl gives each failed lead's error, message and "transient"."""
    output = CrawlDirectory.resume(directory, SETTINGS)
    try:
        output.record(LeadResult("lead-e", error=APIError("Lead does not exist in the system")))
        output.record(LeadResult("lead-f", error=ServerError("503 Service Unavailable")))
        path = output.write_failed_report()
    finally:
        output.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {
            "lead_id": "lead-e",
            "error": "APIError",
            "message": "Lead does not exist in the system",
            "transient": False,
        },
        {
            "lead_id": "lead-f",
            "error": "ServerError",
            "message": "503 Service Unavailable",
            "transient": True,
        },
    ]


# A full disk names the file, and what was journaled stays.


class _FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left (shared by every such file)."""

    room = 0

    def write(self, data: Any) -> int:
        if _FullDisk.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(bytes(data)[: _FullDisk.room])
        assert written is not None
        _FullDisk.room -= written
        return written


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> type[_FullDisk]:
    """Files the crawl opens to append to sit on a disk with ``_FullDisk.room`` bytes free."""

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "ab":
            return io.BufferedWriter(_FullDisk(path, "a"))
        return real_open(path, mode, *args, **kwargs)

    real_open = builtins.open
    _FullDisk.room = 10**9
    monkeypatch.setattr(builtins, "open", fake_open)
    return _FullDisk


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_full_disk_names_the_file_and_keeps_what_was_journaled(
    tmp_path: Path,
    full_disk: type[_FullDisk],
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    """ENOSPC while a lead is written names the file; --resume keeps the leads before it."""
    out = tmp_path / "crawl"
    output = CrawlDirectory.start(out, SETTINGS, overwrite=False)
    try:
        output.record(result(LEADS[0]))
        if failing == "write":
            full_disk.room = 100  # part of the next lead's rows
        else:

            def fsync(_descriptor: int) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(OSError, match="No space left on device") as stopped:
            output.record(result(LEADS[1], opportunities=40))
    finally:
        output.close()
        monkeypatch.undo()
    assert stopped.value.errno == errno.ENOSPC
    assert stopped.value.filename == str(out / OPPORTUNITIES)
    assert resumed(out).done == {LEADS[0]}
    assert len((out / OPPORTUNITIES).read_text().splitlines()) == 2


# Memory.


def test_resuming_holds_the_leads_not_the_journals_lines(tmp_path: Path) -> None:
    """Resuming a journal of 10,000 leads peaks under 400 bytes a lead: the journal is read a
    line at a time, and a lead done is kept as its id alone (it peaked at 1,290 bytes)."""
    leads = 10_000
    write_journal(tmp_path, leads)
    settings = CrawlSettings(with_activities=False, opportunity_type=None)
    tracemalloc.start()
    try:
        output = CrawlDirectory.resume(tmp_path, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert len(output.done) == leads
    finally:
        output.close()
    assert peak / leads < 400
