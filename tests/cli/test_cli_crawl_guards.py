"""``leadsq-async crawl`` misused: two runs at once, a damaged journal, a full disk.

Driven as test_cli.py drives the command: a subprocess against the emulator over loopback
(the full disk in process, where a write can be made to fail).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
from pathlib import Path
from typing import Any

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

from leadsq_async.cli._app import main
from leadsq_async.testing import RunningEmulator


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


def damage_third_line(out: Path) -> None:
    """Put the end of line 3's opportunity rows inside a row, as a hand edit might."""
    path = out / "checkpoint.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[2]["ends"]["opportunities.jsonl"] -= 3
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def crawl_files(out: Path) -> dict[str, bytes]:
    """The bytes of every file of the crawl in ``out`` (not its lock)."""
    return {path.name: path.read_bytes() for path in out.glob("*.jsonl")}


def test_resume_refuses_a_damaged_journal_and_repair_keeps_what_is_saved(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path, leads_file: Path
) -> None:
    """Offsets inside a row: --resume exits 1 naming the line; --resume --repair completes."""
    out = tmp_path / "crawl"
    leads = small_leads(emulator)
    first = tmp_path / "first.txt"
    first.write_text("\n".join(leads[:4]) + "\n")
    assert run(*crawl_args(first, out), env=env).returncode == 0
    damage_third_line(out)
    before = crawl_files(out)
    refused = run(*crawl_args(leads_file, out, "--resume"), env=env)
    assert refused.returncode == 1
    line = assert_one_error_line(refused, emulator.secret_key)
    assert f"{out / 'checkpoint.jsonl'} is damaged at line 3" in line
    assert "--repair" in line
    assert crawl_files(out) == before
    repaired = run(*crawl_args(leads_file, out, "--resume", "--repair"), env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stderr.startswith("leadsq-async: warning: ")
    assert "damaged at line 3" in repaired.stderr.splitlines()[0]
    assert_crawl_matches(out, emulator, leads)


def test_repair_without_resume_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    """--repair alone: exit 2, and the directory is not created."""
    leads = tmp_path / "leads.txt"
    leads.write_text("some-lead\n")
    result = run(*crawl_args(leads, tmp_path / "crawl", "--repair"), env=env)
    assert result.returncode == 2
    assert "--resume" in assert_one_error_line(result, env["LSQ_SECRET_KEY"])
    assert not (tmp_path / "crawl").exists()


class _FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left (shared by every such file)."""

    room = 10**9

    def write(self, data: Any) -> int:
        if _FullDisk.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(bytes(data)[: _FullDisk.room])
        assert written is not None
        _FullDisk.room -= written
        return written


def test_a_full_disk_names_the_file_and_says_how_to_resume(
    emulator: RunningEmulator,
    env: dict[str, str],
    tmp_path: Path,
    leads_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ENOSPC mid-crawl: one line naming the file and --resume, exit 75; --resume completes."""
    out = tmp_path / "crawl"
    leads = small_leads(emulator)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "ab" and Path(path).name == "activities.jsonl":
            return io.BufferedWriter(_FullDisk(path, "a"))
        return real_open(path, mode, *args, **kwargs)

    real_open = builtins.open
    _FullDisk.room = 20_000  # a few leads' activities
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", fake_open)
        code = main([*crawl_args(leads_file, out), "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 75, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        f"leadsq-async: error: No space left on device: {out / 'activities.jsonl'}; "
        "the crawl stopped ("
    )
    assert "free some space there, then run the same command with --resume" in lines[0]
    assert 1 < len((out / "checkpoint.jsonl").read_text().splitlines()) < 1 + len(leads)
    assert main([*crawl_args(leads_file, out, "--resume"), "--quiet"]) == 0
    assert_crawl_matches(out, emulator, leads)
