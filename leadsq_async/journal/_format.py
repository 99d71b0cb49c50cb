"""The journal's format: its file names, its header and entries, and the rules a resume
checks every entry against before it trusts an offset (no file is opened for writing here)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_INDEX",
    "ALL_FILES",
    "CHECKPOINT",
    "FAILED",
    "OPPORTUNITIES",
    "CrawlSettings",
    "JournalEntry",
    "JournalRead",
    "check_header",
    "dump_row",
    "failed_for_good",
    "header_of",
    "lines_of",
    "read_journal",
]

#: The journal: a header, then one line per lead handled.
CHECKPOINT = "checkpoint.jsonl"
#: Every opportunity row, exactly as the API sent it.
OPPORTUNITIES = "opportunities.jsonl"
#: With activities: every activity row, as sent.
ACTIVITIES = "activities.jsonl"
#: With activities: which activities belong to which opportunity (activity rows do not
#: always say).
ACTIVITY_INDEX = "opportunity_activities.jsonl"
#: The leads whose last try failed, rebuilt from the journal at the end of every run.
FAILED = "failed.jsonl"
#: Every file a crawl directory may hold, the journal first.
ALL_FILES = (CHECKPOINT, OPPORTUNITIES, ACTIVITIES, ACTIVITY_INDEX, FAILED)

_FORMAT = "leadsq-async crawl checkpoint"
_VERSION = 1


def dump_row(row: Mapping[str, Any]) -> bytes:
    """One JSON Lines line for ``row``: compact, UTF-8, keys in the order they came."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def failed_for_good(error: BaseException) -> bool:
    """Whether an id's failure is final: trying the id again cannot help."""
    return not getattr(error, "transient", False)


@attrs.frozen
class CrawlSettings:
    """What a crawl fetches; a resumed crawl must fetch the same."""

    with_activities: bool
    opportunity_type: str | None

    @property
    def data_files(self) -> tuple[str, ...]:
        """The data files this crawl writes, in the order their rows are written."""
        if self.with_activities:
            return (OPPORTUNITIES, ACTIVITIES, ACTIVITY_INDEX)
        return (OPPORTUNITIES,)

    def describe(self) -> str:
        """The command-line options that select these settings."""
        words = ["--with-activities" if self.with_activities else "no --with-activities"]
        if self.opportunity_type is None:
            words.append("no --opportunity-type")
        else:
            words.append(f"--opportunity-type {self.opportunity_type}")
        return ", ".join(words)


def header_of(settings: CrawlSettings) -> bytes:
    """The journal's first line, for a crawl made with ``settings``."""
    return dump_row(
        {
            "format": _FORMAT,
            "version": _VERSION,
            "with_activities": settings.with_activities,
            "opportunity_type": settings.opportunity_type,
        }
    )


@attrs.frozen
class JournalEntry:
    """One journal line: a lead handled, and where the data files ended after it.

    Attributes:
        lead_id: the lead.
        done: True when its rows are in the data files; False when it failed.
        ends: data file name -> its size in bytes once this lead was written.
        opportunities: how many opportunity rows were written for it.
        activities: how many activity rows were written for it.
        error_type: for a failed lead, the exception's class name.
        error_message: for a failed lead, what went wrong.
        transient: for a failed lead, whether it failed for now (retries spent on
            failures that may pass), so that a resumed crawl requests it again; False
            when it failed for good. A journal written before this was recorded reads
            True: its failed leads were all requested again.
    """

    lead_id: str
    done: bool
    ends: dict[str, int]
    opportunities: int = 0
    activities: int = 0
    error_type: str | None = None
    error_message: str | None = None
    transient: bool = True

    def to_json(self) -> dict[str, Any]:
        """The journal line's JSON object."""
        line: dict[str, Any] = {
            "lead_id": self.lead_id,
            "status": "done" if self.done else "failed",
            "opportunities": self.opportunities,
            "activities": self.activities,
            "ends": self.ends,
        }
        if not self.done:
            line["error"] = {
                "type": self.error_type,
                "message": self.error_message,
                "transient": self.transient,
            }
        return line

    @classmethod
    def from_json(cls, line: object, data_files: Iterable[str]) -> JournalEntry:
        """Read a journal line back.

        Raises:
            ValueError: the line is not a journal entry for these data files.
        """
        if not isinstance(line, dict):
            raise ValueError("not a JSON object")
        lead_id, status, ends = line.get("lead_id"), line.get("status"), line.get("ends")
        if not isinstance(lead_id, str) or status not in ("done", "failed"):
            raise ValueError("no lead_id or status")
        if not isinstance(ends, dict):
            raise ValueError("no ends")
        checked = {}
        for name in data_files:
            end = ends.get(name)
            if isinstance(end, bool) or not isinstance(end, int) or end < 0:
                raise ValueError(f"no end offset for {name}")
            checked[name] = end
        error = line.get("error")
        if not isinstance(error, dict):
            error = {}
        return cls(
            lead_id,
            status == "done",
            checked,
            opportunities=_count(line.get("opportunities")),
            activities=_count(line.get("activities")),
            error_type=_optional_text(error.get("type")),
            error_message=_optional_text(error.get("message")),
            transient=error.get("transient") is not False,
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@attrs.define
class JournalRead:
    """What a journal says, read up to its last complete line or its first damaged one.

    Only the ids of the leads done are kept, and the entries of those whose latest try
    failed: memory grows with the leads, not with the journal's lines.

    Attributes:
        done: the leads whose rows are in the data files.
        failed: lead id -> the entry of its latest try, when that failed; in journal order.
        ends: the data files' ends after the last entry trusted.
        size: the bytes of the journal up to and with that entry.
        damage: the first line that cannot be trusted (its number) and why; None if none.
        lines: how many complete lines the journal holds.
        bytes_past: how many bytes the data files hold past ``ends``.
    """

    done: set[str]
    failed: dict[str, JournalEntry]
    ends: dict[str, int]
    size: int
    damage: tuple[int, str] | None = None
    lines: int = 0
    bytes_past: int = 0


def read_journal(
    journal: IO[bytes], header: bytes, directory: Path, settings: CrawlSettings
) -> JournalRead:
    """Read and check every entry after ``header`` (the journal's first line, read already).

    Raises:
        OSError: a data file cannot be read (the error names it).
    """
    read = JournalRead(set(), {}, dict.fromkeys(settings.data_files, 0), len(header))
    number = 1
    with _Offsets(directory, settings.data_files) as offsets:
        line = journal.readline()
        while line.endswith(b"\n"):
            number += 1
            following = journal.readline()
            try:
                entry = JournalEntry.from_json(_json(line), settings.data_files)
            except ValueError as exc:
                if not following.endswith(b"\n"):
                    break  # a last line cut short: that lead was never journaled
                read.damage = (number, f"it is not a journal entry ({exc})")
                break
            problem = offsets.check(entry, read.done)
            if problem is None and entry.done and entry.lead_id in read.done:
                first = _done_at(journal, entry.lead_id, settings)
                problem = (
                    f"lead {entry.lead_id} is journaled as done twice (lines {first} and "
                    f"{number}), so its rows may be in the files twice"
                )
            if problem is not None:
                read.damage = (number, problem)
                break
            offsets.accept(number, entry)
            read.failed.pop(entry.lead_id, None)
            if entry.done:
                read.done.add(entry.lead_id)
            else:
                read.failed[entry.lead_id] = entry
            read.ends = dict(entry.ends)
            read.size += len(line)
            line = following
        if read.damage is not None:
            journal.seek(0)
            read.lines = sum(1 for _ in lines_of(journal))
        read.bytes_past = offsets.bytes_past(read.ends)
    return read


def check_header(header: bytes, settings: CrawlSettings, where: Path) -> str | None:
    """Why ``header`` (the first line of ``where``) does not open a journal of a crawl made
    with ``settings``; None if it does."""
    value = _json(header)
    if (
        not isinstance(value, dict)
        or value.get("format") != _FORMAT
        or value.get("version") != _VERSION
    ):
        return (
            f"{where} is not a leadsq-async crawl checkpoint of version {_VERSION}: "
            "pass --overwrite to start again"
        )
    made_with = CrawlSettings(
        with_activities=bool(value.get("with_activities")),
        opportunity_type=_optional_text(value.get("opportunity_type")),
    )
    if made_with != settings:
        return (
            f"the crawl in {where.parent} was made with {made_with.describe()}; "
            "resume it with the same options"
        )
    return None


def _json(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _done_at(journal: IO[bytes], lead_id: str, settings: CrawlSettings) -> int:
    """The number of the first line journaling ``lead_id`` as done (only when it is found
    twice: rereading beats remembering every lead's line)."""
    journal.seek(0)
    for number, line in enumerate(journal, start=1):
        if number > 1 and lead_id.encode() in line:
            try:
                entry = JournalEntry.from_json(_json(line), settings.data_files)
            except ValueError:
                continue
            if entry.done and entry.lead_id == lead_id:
                return number
    raise AssertionError("a lead found done is on a line")  # pragma: no cover


class _Offsets:
    """Checks each journal line's offsets against the data files and the lines before it."""

    def __init__(self, directory: Path, names: Iterable[str]) -> None:
        self._directory = directory
        # Unbuffered: each check reads one byte, where a buffered file would read a block.
        self._files: dict[str, io.FileIO | None] = {}
        self._sizes: dict[str, int] = {}
        #: data file -> its end after the last line accepted, and the line that put it there.
        self._ends: dict[str, tuple[int, int]] = {}
        for name in names:
            try:
                file: io.FileIO | None = io.FileIO(directory / name, "r")
            except FileNotFoundError:
                file = None
            self._files[name] = file
            self._sizes[name] = 0 if file is None else os.fstat(file.fileno()).st_size
            self._ends[name] = (0, 1)

    def __enter__(self) -> _Offsets:
        return self

    def __exit__(self, *_: object) -> None:
        for file in self._files.values():
            if file is not None:
                file.close()

    def check(self, entry: JournalEntry, done: set[str]) -> str | None:
        """Why ``entry``'s offsets cannot be trusted; None if they can."""
        for name, end in entry.ends.items():
            before, line = self._ends[name]
            if end == before:
                continue
            where = f"it puts the end of {name} at byte {end}"
            if not entry.done:
                return f"{where}, not at byte {before}, though lead {entry.lead_id} failed"
            if end > self._sizes[name]:
                return f"{where}, past the end of the file ({self._sizes[name]} bytes)"
            if end < before:
                return f"{where}, before byte {before}, where line {line} put it"
            if not self._at_line_end(name, end):
                return f"{where}, in the middle of a line"
        return None

    def accept(self, number: int, entry: JournalEntry) -> None:
        """Make line ``number`` (trusted) the one the next line is checked against."""
        for name, end in entry.ends.items():
            if end != self._ends[name][0]:
                self._ends[name] = (end, number)

    def bytes_past(self, ends: Mapping[str, int]) -> int:
        """How many bytes the data files hold past ``ends``."""
        return sum(max(0, self._sizes[name] - end) for name, end in ends.items())

    def _at_line_end(self, name: str, end: int) -> bool:
        file = self._files[name]
        if file is None:
            return False
        try:
            return _read_byte(file, end - 1) == b"\n"
        except OSError as exc:  # not `with naming()`: this runs for every line of the journal
            raise OSError(exc.errno, exc.strerror or str(exc), str(self._directory / name)) from exc


def _read_byte(file: io.FileIO, offset: int) -> bytes:
    """The byte at ``offset`` of ``file``: one system call where there is ``pread``."""
    if hasattr(os, "pread"):
        return os.pread(file.fileno(), 1, offset)
    file.seek(offset)  # pragma: no cover - Windows
    return file.read(1)  # pragma: no cover


def lines_of(journal: IO[bytes]) -> Iterator[bytes]:
    """The journal's complete lines (a torn last one left out)."""
    for line in journal:
        if line.endswith(b"\n"):
            yield line
