"""The ``leadsq-async`` command, driven as a subprocess against the emulator over loopback.

The emulator enforces 50 calls per 0.5 s here (and the command keeps to the same), so a
crawl of every lead but the one with thousands of opportunities takes a few seconds. The
thread that reads ids is also tested in process, where its queue can be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from leadsq_async.cli._ids import THREAD_NAME, IdReader
from leadsq_async.testing import RunningEmulator

UNKNOWN_LEAD = "00000000-0000-4000-8000-000000000000"
COMMAND = [sys.executable, "-m", "leadsq_async.cli"]
STUCK_CLEANUP = Path(__file__).resolve().parents[1] / "stuck_cleanup.py"


def run(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the command to its end."""
    return subprocess.run(
        [*COMMAND, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def start(*args: str, env: dict[str, str], stdin: bool = False) -> subprocess.Popen[str]:
    """Start the command in the background; with ``stdin``, its standard input is a pipe."""
    return subprocess.Popen(
        [*COMMAND, *args],
        env=env,
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def feed(process: subprocess.Popen[str], ids: Iterable[str], *, close: bool = False) -> None:
    """Write ``ids`` to the process's standard input, one per line, and flush (or close) it."""
    assert process.stdin is not None
    process.stdin.write("".join(f"{identifier}\n" for identifier in ids))
    if close:
        process.stdin.close()
    else:
        process.stdin.flush()


class LineReader:
    """The lines of a stream, read by a thread, so a test can wait for them with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def take(self, count: int, timeout: float = 30) -> list[str]:
        """The next ``count`` lines; fails if they do not all come within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while len(lines) < count:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{len(lines)} lines of {count} came within {timeout} s")
            assert line is not None, f"the stream ended after {len(lines)} lines of {count}"
            lines.append(line)
        return lines

    def rest(self, timeout: float = 60) -> list[str]:
        """Every line left, up to the end of the stream."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end within {timeout} s"
        lines = []
        while not self._lines.empty() and (line := self._lines.get_nowait()) is not None:
            lines.append(line)
        return lines


def stop(process: subprocess.Popen[str], *readers: LineReader) -> None:
    """Kill the process if it still runs, let ``readers`` reach the end, close every pipe."""
    process.kill()
    process.wait(timeout=10)
    for reader in readers:
        reader.rest()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def key(row: dict[str, Any]) -> str:
    """A row as text, to compare rows as multisets."""
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def rows_of(lines: Iterable[str]) -> Counter[str]:
    """The rows of JSON Lines text, as a multiset."""
    return Counter(key(json.loads(line)) for line in lines if line.strip())


def file_rows(path: Path) -> Counter[str]:
    """The rows of a JSON Lines file, as a multiset."""
    with open(path, encoding="utf-8") as file:
        return rows_of(file)


def small_leads(emulator: RunningEmulator) -> list[str]:
    """Every lead but the one with thousands of opportunities."""
    thousands = emulator.data.leads_by_shape["thousands"]
    return [lead for lead in emulator.data.opportunities if lead != thousands]


def expected_opportunities(emulator: RunningEmulator, leads: Iterable[str]) -> Counter[str]:
    """The emulator's opportunity rows of ``leads``."""
    return Counter(key(row) for lead in leads for row in emulator.data.opportunities[lead])


def expected_activities(emulator: RunningEmulator, leads: Iterable[str]) -> Counter[str]:
    """The emulator's activity rows of every opportunity of ``leads``."""
    return Counter(
        key(activity)
        for lead in leads
        for opportunity in emulator.data.opportunities[lead]
        for activity in emulator.data.activities[opportunity["OpportunityId"]]
    )


def assert_crawl_matches(out: Path, emulator: RunningEmulator, leads: list[str]) -> None:
    """Every row of ``leads`` is in the crawl's files exactly once, and nothing else is."""
    assert file_rows(out / "opportunities.jsonl") == expected_opportunities(emulator, leads)
    assert file_rows(out / "activities.jsonl") == expected_activities(emulator, leads)
    with open(out / "opportunity_activities.jsonl", encoding="utf-8") as file:
        index = [json.loads(line) for line in file]
    assert len(index) == sum(len(emulator.data.opportunities[lead]) for lead in leads)
    for entry in index:
        rows = emulator.data.activities[entry["OpportunityId"]]
        assert sorted(entry["ActivityIds"]) == sorted(row["ProspectActivityId"] for row in rows)


def journal_lines(out: Path) -> int:
    """How many complete lines the crawl's journal holds."""
    try:
        return (out / "checkpoint.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_journal(process: subprocess.Popen[str], out: Path, lines: int) -> None:
    """Wait until the crawl has journaled ``lines`` lines (header included)."""
    deadline = time.monotonic() + 30
    while journal_lines(out) < lines:
        assert process.poll() is None, "the crawl ended before it could be interrupted"
        assert time.monotonic() < deadline, "the crawl journaled nothing"
        time.sleep(0.01)


def wait_for_delivery(process: subprocess.Popen[str], number: signal.Signals) -> None:
    """Wait until the process has taken the signal ``number`` sent to it.

    Two signals sent back to back are often merged into one by the kernel, while
    the first is still pending; this tells them apart (Linux only: elsewhere, a
    short sleep does it most of the time).
    """
    status = Path(f"/proc/{process.pid}/status")
    if not status.exists():
        time.sleep(0.05)
        return
    bit = 1 << (number - 1)
    deadline = time.monotonic() + 10
    while process.poll() is None:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        if not (int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)) & bit:
            return
        assert time.monotonic() < deadline, f"{number.name} still pending after 10 s"
        time.sleep(0.001)


def assert_one_error_line(result: subprocess.CompletedProcess[str], secret: str) -> str:
    """stderr is exactly one ``leadsq-async: error:`` line: no traceback, no secret."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leadsq-async: error: ")
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def leads_file(tmp_path: Path, emulator: RunningEmulator) -> Path:
    """A file of every lead id but the biggest, one per line."""
    path = tmp_path / "leads.txt"
    path.write_text("".join(f"{lead}\n" for lead in small_leads(emulator)))
    return path


def crawl_args(leads_file: Path | str, out: Path, *extra: str) -> list[str]:
    """The arguments of a crawl with activities."""
    where = ["--leads-file", str(leads_file), "--out", str(out)]
    return ["crawl", *where, "--with-activities", *extra]


# opportunities and activities


def test_opportunities_prints_each_row_as_the_api_sent_it(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """Each output line is one of the leads' rows, exactly as sent; none is missing."""
    leads = small_leads(emulator)[:3]
    result = run("opportunities", *leads, env=env)
    assert result.returncode == 0, result.stderr
    assert rows_of(result.stdout.splitlines()) == expected_opportunities(emulator, leads)


def test_opportunities_csv_has_a_column_for_every_key(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """--format csv writes a header naming every key any row had, then each row's values."""
    lead = emulator.data.leads_by_shape["page"]
    result = run("opportunities", lead, "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    expected = emulator.data.opportunities[lead]
    assert set(table[0]) == {name for row in expected for name in row}
    by_id = {row["OpportunityId"]: row for row in expected}
    assert len(table) == len(expected)
    for written in table:
        sent = by_id[written["OpportunityId"]]
        assert {k: v for k, v in written.items() if k in sent} == {
            k: "" if v is None else v for k, v in sent.items()
        }


def test_opportunities_reads_ids_from_stdin(emulator: RunningEmulator, env: dict[str, str]) -> None:
    """An argument - reads lead ids from standard input, one per line."""
    leads = small_leads(emulator)[5:8]
    result = run("opportunities", "-", env=env, stdin="\n".join(leads) + "\n\n")
    assert result.returncode == 0, result.stderr
    assert rows_of(result.stdout.splitlines()) == expected_opportunities(emulator, leads)


def test_opportunities_prints_a_leads_rows_while_stdin_is_still_open(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """Ids piped in are fetched as they come, and a lead's rows flushed before stdin ends."""
    first = emulator.data.leads_by_shape["page_plus_one"]
    rest = small_leads(emulator)[5:9]
    # Buffered, as stdout is when a program reads the pipe: only a flush lets rows out early.
    env = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}
    process = start("opportunities", "-", env=env, stdin=True)
    assert process.stdout is not None
    output = LineReader(process.stdout)
    try:
        feed(process, [first])
        early = output.take(len(emulator.data.opportunities[first]))
        assert rows_of(early) == expected_opportunities(emulator, [first])
        feed(process, rest, close=True)
        assert rows_of(output.rest()) == expected_opportunities(emulator, rest)
        assert process.wait(timeout=60) == 0
    finally:
        stop(process, output)


def test_opportunities_writes_to_out_path(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """--out PATH gets the rows and standard output stays empty."""
    leads = small_leads(emulator)[5:7]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(leads))
    out = tmp_path / "rows.jsonl"
    result = run("opportunities", "--leads-file", str(ids), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert file_rows(out) == expected_opportunities(emulator, leads)


def test_opportunities_reports_a_failed_lead_and_prints_the_others(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """An unknown lead gets an error line and exit code 1; the other lead's rows still come."""
    lead = emulator.data.leads_by_shape["one"]
    result = run("opportunities", UNKNOWN_LEAD, lead, env=env)
    assert result.returncode == 1
    assert f"lead {UNKNOWN_LEAD}: " in result.stderr
    assert "Lead does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert rows_of(result.stdout.splitlines()) == expected_opportunities(emulator, [lead])


def test_activities_prints_the_rows_of_each_opportunity(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """activities prints every activity row of the opportunities given, as sent."""
    shapes = emulator.data.opportunities_by_shape
    ids = [shapes["page"], shapes["page_plus_one"]]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(ids[1] + "\n")
    result = run("activities", ids[0], "--opportunities-file", str(ids_file), env=env)
    assert result.returncode == 0, result.stderr
    expected = Counter(key(row) for i in ids for row in emulator.data.activities[i])
    assert rows_of(result.stdout.splitlines()) == expected


def test_activities_with_opportunity_id_says_which_opportunity(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """--with-opportunity-id adds OpportunityId first, and leaves the rest of the row as sent."""
    opportunity = emulator.data.opportunities_by_shape["page"]
    result = run("activities", opportunity, "--with-opportunity-id", env=env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(next(iter(row.items())) == ("OpportunityId", opportunity) for row in rows)
    bare = Counter(key({k: v for k, v in row.items() if k != "OpportunityId"}) for row in rows)
    assert bare == Counter(key(row) for row in emulator.data.activities[opportunity])


# reading ids


class CountingIds:
    """Ids without end, counting how many were read."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        self.read += 1
        return f"lead-{self.read}"


async def wait_until(condition: Any, timeout: float = 10) -> None:
    """Wait (on the loop) until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def reader_threads() -> list[threading.Thread]:
    """The threads of `IdReader` still running."""
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


async def test_id_reader_raises_a_read_error_after_the_ids_read_before_it() -> None:
    """An error raised while the thread reads ids is raised on the loop, after the ids before it."""

    def ids() -> Iterator[str]:
        yield from ("a", "b")
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    async with contextlib.aclosing(IdReader(ids())) as reader:
        assert [await reader.__anext__(), await reader.__anext__()] == ["a", "b"]
        with pytest.raises(UnicodeDecodeError):
            await reader.__anext__()


@pytest.mark.slow
async def test_id_reader_reads_no_further_ahead_than_its_queue_holds() -> None:
    """With ids coming faster than they are taken, the thread waits: memory stays bounded."""
    ids = CountingIds()
    async with contextlib.aclosing(IdReader(ids, read_ahead=3)) as reader:
        assert await reader.__anext__() == "lead-1"
        await wait_until(lambda: ids.read >= 4)
        await asyncio.sleep(0.2)
        # 1 taken, 3 in the queue, 1 read and waiting for a place.
        assert ids.read <= 5


async def test_id_reader_thread_ends_when_closed_with_its_queue_full() -> None:
    """aclose() makes room in the queue, so a thread waiting to put an id wakes and ends."""
    ids = CountingIds()
    reader = IdReader(ids, read_ahead=3)
    await reader.__anext__()
    await wait_until(lambda: ids.read >= 5)
    await reader.aclose()
    await wait_until(lambda: not reader_threads())
    assert ids.read == 5
    with pytest.raises(StopAsyncIteration):
        await reader.__anext__()


# crawl


def test_crawl_writes_every_row_as_sent_and_reports_failed_leads(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path, leads_file: Path
) -> None:
    """The files hold each row of the emulator exactly once; failed.jsonl names the bad lead."""
    with open(leads_file, "a") as file:
        file.write(f"{UNKNOWN_LEAD}\n")
    out = tmp_path / "crawl"
    result = run(*crawl_args(leads_file, out), env=env)
    assert result.returncode == 1
    assert "1 lead failed" in result.stderr
    assert_crawl_matches(out, emulator, small_leads(emulator))
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert [(entry["lead_id"], entry["error"]) for entry in failed] == [(UNKNOWN_LEAD, "APIError")]
    assert "Lead does not exist" in failed[0]["message"]
    assert emulator.stats.rate_limited == 0


def test_crawl_refuses_a_directory_that_holds_a_crawl(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """Without --resume or --overwrite, a second crawl into the same directory is refused."""
    leads = tmp_path / "leads.txt"
    leads.write_text(emulator.data.leads_by_shape["one"] + "\n")
    out = tmp_path / "crawl"
    assert run(*crawl_args(leads, out), env=env).returncode == 0
    before = (out / "opportunities.jsonl").read_bytes()
    result = run(*crawl_args(leads, out), env=env)
    line = assert_one_error_line(result, emulator.secret_key)
    assert "--resume" in line
    assert result.returncode == 1
    assert (out / "opportunities.jsonl").read_bytes() == before


def test_crawl_resume_refuses_other_settings(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """Resuming a crawl made with --with-activities without it is refused, files untouched."""
    leads = tmp_path / "leads.txt"
    leads.write_text(emulator.data.leads_by_shape["one"] + "\n")
    out = tmp_path / "crawl"
    assert run(*crawl_args(leads, out), env=env).returncode == 0
    result = run("crawl", "--leads-file", str(leads), "--out", str(out), "--resume", env=env)
    line = assert_one_error_line(result, emulator.secret_key)
    assert "--with-activities" in line


@pytest.mark.parametrize(
    ("sigints", "stop_line"),
    [(1, "leadsq-async: interrupted: "), (2, "leadsq-async: aborted: ")],
    ids=["one SIGINT", "two SIGINTs"],
)
def test_crawl_interrupted_by_sigint_then_resumed_holds_every_record_once(
    emulator: RunningEmulator,
    env: dict[str, str],
    tmp_path: Path,
    leads_file: Path,
    sigints: int,
    stop_line: str,
) -> None:
    """SIGINT stops the crawl (a second one at once) with 130; --resume then completes it."""
    out = tmp_path / "crawl"
    leads = small_leads(emulator)
    process = start(*crawl_args(leads_file, out, "--concurrency", "2"), env=env)
    wait_for_journal(process, out, 4)
    for _ in range(sigints):
        process.send_signal(signal.SIGINT)
        wait_for_delivery(process, signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 130
    assert stderr.startswith(stop_line), stderr
    assert "--resume" in stderr
    assert "Traceback" not in stderr
    assert journal_lines(out) < 1 + len(leads)
    result = run(*crawl_args(leads_file, out, "--resume"), env=env)
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr
    assert_crawl_matches(out, emulator, leads)


def test_crawl_journals_a_lead_while_stdin_is_still_open(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """crawl --leads-file - crawls each lead as its id comes, not once stdin ends."""
    out = tmp_path / "crawl"
    leads = small_leads(emulator)
    process = start(*crawl_args("-", out), env=env, stdin=True)
    assert process.stderr is not None
    try:
        feed(process, leads[:1])
        wait_for_journal(process, out, 2)
        feed(process, leads[1:], close=True)
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        stop(process)
    assert_crawl_matches(out, emulator, leads)


def test_crawl_reads_a_leads_file_that_is_a_pipe_once(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path, leads_file: Path
) -> None:
    """--leads-file naming a pipe (a FIFO, or <(producer)) is crawled, not used up counting."""
    fifo = tmp_path / "leads.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'cat "$1" > "$2"', "sh", str(leads_file), str(fifo)])
    try:
        result = run(*crawl_args(fifo, tmp_path / "crawl"), env=env)
        assert writer.wait(timeout=10) == 0
    finally:
        writer.kill()
        writer.wait()
    assert result.returncode == 0, result.stderr
    assert_crawl_matches(tmp_path / "crawl", emulator, small_leads(emulator))


def test_sigint_stops_a_command_waiting_for_stdin(env: dict[str, str]) -> None:
    """Ctrl-C ends the command at once while it waits for the next id on standard input."""
    process = start("opportunities", "-", env=env, stdin=True)
    assert process.stderr is not None
    errors = LineReader(process.stderr)
    try:
        feed(process, [UNKNOWN_LEAD])
        assert UNKNOWN_LEAD in errors.take(1)[0]  # the command runs, waiting for more ids
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert errors.rest() == ["leadsq-async: interrupted\n"]
    finally:
        stop(process, errors)


@pytest.mark.parametrize("where", ["in-loop", "after-loop"])
def test_second_sigint_ends_a_stuck_clean_up_at_once(tmp_path: Path, where: str) -> None:
    """A SIGINT while the first one's clean-up hangs runs on_abort and exits with 130 at once."""
    marker = tmp_path / "aborted.txt"
    process = subprocess.Popen(
        [sys.executable, str(STUCK_CLEANUP), where, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert process.stdout is not None
    output = LineReader(process.stdout)
    try:
        assert output.take(1) == ["started\n"]
        process.send_signal(signal.SIGINT)
        assert output.take(1) == ["stuck\n"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 130
    finally:
        stop(process, output)
    assert marker.read_text() == "aborted"


def test_crawl_killed_then_resumed_holds_every_record_once(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path, leads_file: Path
) -> None:
    """After kill -9 in the middle of a crawl, --resume completes it with no loss or duplicate."""
    out = tmp_path / "crawl"
    leads = small_leads(emulator)
    process = start(*crawl_args(leads_file, out, "--concurrency", "2"), env=env)
    wait_for_journal(process, out, 6)
    process.kill()
    process.communicate(timeout=10)
    assert journal_lines(out) < 1 + len(leads)
    result = run(*crawl_args(leads_file, out, "--resume"), env=env)
    assert result.returncode == 0, result.stderr
    assert_crawl_matches(out, emulator, leads)


def test_crawl_resume_drops_rows_that_were_written_but_not_journaled(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """Rows past the journal's offsets and a torn last journal line (a crash mid-lead) vanish."""
    leads = [emulator.data.leads_by_shape["one"], *small_leads(emulator)[5:8]]
    leads_file = tmp_path / "leads.txt"
    leads_file.write_text("\n".join(leads) + "\n")
    out = tmp_path / "crawl"
    first = tmp_path / "first.txt"
    first.write_text(leads[0] + "\n")
    assert run(*crawl_args(first, out), env=env).returncode == 0
    # What a process killed while writing the next lead leaves behind.
    stray = emulator.data.opportunities[leads[1]][0]
    with open(out / "opportunities.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps(stray) + "\n" + '{"half a ro')
    with open(out / "activities.jsonl", "a", encoding="utf-8") as file:
        file.write('{"ProspectActivityId":"stray"}\n')
    with open(out / "checkpoint.jsonl", "a", encoding="utf-8") as file:
        file.write(f'{{"lead_id":"{leads[1]}","status":"do')
    result = run(*crawl_args(leads_file, out, "--resume"), env=env)
    assert result.returncode == 0, result.stderr
    assert_crawl_matches(out, emulator, leads)


# errors


def test_bad_keys_give_one_error_line_without_the_secret(
    emulator: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """A 401 ends the crawl with one line naming it and exit code 1; the secret never shows."""
    secret = "wrong-secret-7f3a9c"
    leads = tmp_path / "leads.txt"
    leads.write_text(emulator.data.leads_by_shape["one"] + "\n")
    env = {**env, "LSQ_SECRET_KEY": secret}
    result = run("crawl", "--leads-file", str(leads), "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 1
    line = assert_one_error_line(result, secret)
    assert "401" in line


def test_secret_given_as_a_flag_is_never_printed(
    emulator: RunningEmulator, env: dict[str, str]
) -> None:
    """A wrong secret passed with --secret-key appears nowhere in the output."""
    secret = "flag-secret-5be21d"
    lead = emulator.data.leads_by_shape["one"]
    result = run("opportunities", lead, "--secret-key", secret, env=env)
    assert result.returncode == 1
    assert_one_error_line(result, secret)


def test_unreachable_host_fails_the_lead_for_now(env: dict[str, str]) -> None:
    """A host where nothing listens: the lead's line names the connection, then exit 75."""
    env = {**env, "LSQ_HOST": "http://127.0.0.1:9"}
    result = run("opportunities", "some-lead", "--max-attempts", "1", env=env)
    assert result.returncode == 75
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("leadsq-async: error: lead some-lead: ")
    assert "Connect" in lines[0]
    assert "1 lead failed (see the lines above), for now" in lines[1]
    assert "Traceback" not in result.stderr
    assert env["LSQ_SECRET_KEY"] not in result.stderr


def test_malformed_host_gives_one_error_line(env: dict[str, str]) -> None:
    """A host plain http would expose the keys to is a usage error, before anything is sent."""
    result = run("opportunities", "some-lead", "--host", "http://example.com", env=env)
    assert result.returncode == 2
    assert "plain http" in assert_one_error_line(result, env["LSQ_SECRET_KEY"])


@pytest.mark.parametrize("text", ["25", "0/5", "25/0", "many/5"])
def test_bad_rate_limit_is_a_usage_error(env: dict[str, str], text: str) -> None:
    """--rate-limit that is not CALLS/SECONDS (both > 0): one line and exit code 2."""
    result = run("opportunities", "some-lead", "--rate-limit", text, env=env)
    assert result.returncode == 2
    assert "--rate-limit" in assert_one_error_line(result, env["LSQ_SECRET_KEY"])


def test_missing_access_key_is_a_usage_error(env: dict[str, str]) -> None:
    """No access key anywhere: one line naming how to give it, exit code 2."""
    env = {k: v for k, v in env.items() if k != "LSQ_ACCESS_KEY"}
    result = run("opportunities", "some-lead", env=env)
    assert result.returncode == 2
    assert "LSQ_ACCESS_KEY" in assert_one_error_line(result, env["LSQ_SECRET_KEY"])


def test_no_ids_is_a_usage_error(env: dict[str, str]) -> None:
    """opportunities with no id at all: one line, exit code 2."""
    result = run("opportunities", env=env)
    assert result.returncode == 2
    assert_one_error_line(result, env["LSQ_SECRET_KEY"])


# help, demo and emulator


def _options_of(command: str) -> list[str]:
    from leadsq_async.cli._app import cli

    group: Any = cli
    target = group.commands[command] if command else group
    return [name for param in target.params for name in param.opts if name.startswith("--")]


@pytest.mark.parametrize(
    "command", ["", "opportunities", "activities", "crawl", "demo", "emulator"]
)
def test_help_documents_every_option(env: dict[str, str], command: str) -> None:
    """--help of each command names every one of its options, and shows no secret."""
    secret = "env-secret-0c4e8b"
    env = {**env, "LSQ_SECRET_KEY": secret}
    result = run(*([command] if command else []), "--help", env=env)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for option in _options_of(command):
        assert option in text
    assert secret not in result.stdout


def test_demo_crawls_the_built_in_emulator(env: dict[str, str], tmp_path: Path) -> None:
    """demo runs to completion: no rejection drawn, and every row matches the emulator's."""
    out = tmp_path / "demo"
    result = run("demo", "--leads", "8", "--rate-limit", "5/0.5", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "rejections drawn from the emulator: 0." in result.stdout
    assert "matches the emulator's data: yes." in result.stdout
    assert len((out / "checkpoint.jsonl").read_text().splitlines()) == 1 + 8


def _lines_until(stream: Any, text: str) -> Iterator[str]:
    for line in stream:
        yield line
        if text in line:
            return


def test_emulator_command_serves_the_emulator(env: dict[str, str], tmp_path: Path) -> None:
    """emulator prints its URL and keys, answers the command, and stops on SIGINT."""
    ids = tmp_path / "leads.txt"
    args = ["--port", "0", "--other-leads", "2", "--thousands", "3", "--lead-ids", str(ids)]
    process = start("emulator", *args, env=env)
    try:
        assert process.stdout is not None
        banner = "".join(_lines_until(process.stdout, "Ctrl-C"))
        url = banner.split("listening on ", 1)[1].split()[0]
        assert "demo-access-key" in banner
        assert "demo-secret-key" in banner
        lead = ids.read_text().split()[1]
        served = {**env, "LSQ_HOST": url}
        result = run("opportunities", lead, env=served)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1  # the "one" lead: one opportunity
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert process.returncode == 0
