"""The output directory of ``leadsq-async crawl`` and the journal that makes it resumable.

A crawl directory holds::

    checkpoint.jsonl               the journal: a header, then one line per lead handled
    opportunities.jsonl            every opportunity row, exactly as the API sent it
    activities.jsonl               (--with-activities) every activity row, as sent
    opportunity_activities.jsonl   (--with-activities) which activities belong to which
                                   opportunity: activity rows do not always say
    failed.jsonl                   the leads whose last try failed, why, and whether
                                   for good (rebuilt from the journal at the end of
                                   every run)

Why the output holds every record exactly once, even after ``kill -9``:

1. One writer appends each lead's rows to the data files, all of a lead's rows
   together, then flushes and fsyncs them.
2. Only then does it append the lead's journal line, which records the end
   offset of every data file, and fsyncs the journal. A lead is done when, and
   only when, its journal line is complete on disk.
3. ``--resume`` reads the journal up to its last complete line, truncates every
   data file to the offsets that line records (dropping the rows of a lead that
   was being written when the process died), and crawls again every lead that
   is not journaled as done, but those that failed for good (unless
   ``--retry-failed``): trying them again cannot help.

So a lead's rows are either all in the files and journaled, or not there at
all and crawled again; and no lead journaled as done is crawled twice.

Two more rules keep that true when something outside the crawl goes wrong:

- Only one crawl at a time uses a directory: each holds its lock (`_lock`)
  from before it reads the journal until it closes.
- ``--resume`` trusts no offset it has not checked. A journal line must name,
  for every data file, an offset within the file, at the end of a line, and no
  smaller than the line before it; a failed lead must not move any; a lead is
  done once only. The first line that breaks a rule stops the resume with a
  message naming it, before any file is changed; with ``--repair`` the crawl
  instead keeps the lines before it (and the rows they journal), drops the
  rest, and crawls those leads again.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import attrs

from ._aio import AnyIterator
from ._crawl import LeadResult
from ._lock import DirectoryLock, LockHeld
from ._records import unstructure

T = TypeVar("T")

__all__ = [
    "CHECKPOINT",
    "CrawlDirectory",
    "CrawlError",
    "CrawlSettings",
    "DirectoryInUse",
    "JournalEntry",
    "dump_row",
    "failed_for_good",
    "naming",
]

CHECKPOINT = "checkpoint.jsonl"
OPPORTUNITIES = "opportunities.jsonl"
ACTIVITIES = "activities.jsonl"
ACTIVITY_INDEX = "opportunity_activities.jsonl"
FAILED = "failed.jsonl"
ALL_FILES = (CHECKPOINT, OPPORTUNITIES, ACTIVITIES, ACTIVITY_INDEX, FAILED)

_FORMAT = "leadsq-async crawl checkpoint"
_VERSION = 1


def dump_row(row: Mapping[str, Any]) -> bytes:
    """One JSON Lines line for ``row``: compact, UTF-8, keys in the order they came."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


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
            failures that may pass), so that ``--resume`` requests it again; False when
            it failed for good. A journal written before this was recorded reads True:
            its failed leads were all requested again.
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


class PendingIds(AsyncIterator[str]):
    """The ids neither settled by an earlier run (``done``) nor seen before in this one.

    Each id skipped is handed to ``skipped``. What is not a str passes through, for the
    crawl to fail it as the id it is. A class rather than a generator, so that it can
    take ids from an async source without nesting async generators.
    """

    def __init__(
        self,
        ids: Iterable[str] | AsyncIterable[str],
        done: set[str],
        skipped: Callable[[str], object],
    ) -> None:
        self._ids = AnyIterator(ids)
        self._done = done
        self._seen: set[str] = set()
        self._skipped = skipped

    async def __anext__(self) -> str:
        while True:
            item = await self._ids.__anext__()
            if not isinstance(item, str):
                return item
            if item in self._done or item in self._seen:
                self._skipped(item)
                continue
            self._seen.add(item)
            return item


def failed_for_good(error: BaseException) -> bool:
    """Whether an id's failure is final: trying the id again cannot help."""
    return not getattr(error, "transient", False)


class CrawlError(Exception):
    """The crawl directory cannot be used as asked (the message says why and what to do)."""

    #: The command's exit code when this ends it.
    exit_code = 1


class DirectoryInUse(CrawlError):
    """Another crawl holds the directory's lock: running both would write rows twice."""

    exit_code = 2


class CrawlDirectory:
    """A crawl's output directory, open for appending one lead at a time.

    Use `start` for a new crawl or `resume` to carry one on; then `record` each
    lead's result, and `close`. From `start` or `resume` until `close` the
    crawl holds the directory's lock: no other crawl can open it meanwhile.
    """

    def __init__(self, directory: Path, settings: CrawlSettings, lock: DirectoryLock) -> None:
        self.directory = directory
        self.settings = settings
        #: lead id -> its latest journal entry.
        self.entries: dict[str, JournalEntry] = {}
        #: What ``resume(repair=True)`` dropped from a damaged journal; None when nothing.
        self.repaired: str | None = None
        self._ends = dict.fromkeys(settings.data_files, 0)
        self._files: dict[str, IO[bytes]] = {}
        self._journal: IO[bytes] | None = None
        self._lock: DirectoryLock | None = lock

    # Opening.

    @classmethod
    def start(cls, directory: Path, settings: CrawlSettings, *, overwrite: bool) -> CrawlDirectory:
        """Start a new crawl in ``directory``, creating it if needed.

        Raises:
            DirectoryInUse: another crawl has the directory open.
            CrawlError: the directory holds a crawl already and ``overwrite`` is False.
            OSError: a file cannot be created or written (the error names it).
        """
        return _under_lock(
            directory, lambda lock: cls._start(directory, settings, lock, overwrite=overwrite)
        )

    @classmethod
    def _start(
        cls, directory: Path, settings: CrawlSettings, lock: DirectoryLock, *, overwrite: bool
    ) -> CrawlDirectory:
        existing = [name for name in ALL_FILES if (directory / name).exists()]
        if existing and not overwrite:
            raise CrawlError(
                f"{directory} already holds a crawl ({', '.join(existing)}): pass --resume to "
                "carry it on, --overwrite to start again, or choose another --out directory"
            )
        for name in existing:
            (directory / name).unlink()
        crawl = cls(directory, settings, lock)
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "with_activities": settings.with_activities,
            "opportunity_type": settings.opportunity_type,
        }
        crawl._open(journal_size=0, header=dump_row(header))
        return crawl

    @classmethod
    def resume(
        cls, directory: Path, settings: CrawlSettings, *, repair: bool = False
    ) -> CrawlDirectory:
        """Carry on the crawl in ``directory`` (or start one if it holds none).

        Reads the journal up to its last complete line, checks every line's
        offsets against the data files and the lines before it, truncates the
        data files to the offsets of the last line, and remembers which leads
        are done.

        Args:
            repair: when a journal line breaks the rules (see the module's
                docstring), keep the lines before it and drop it and the rest,
                with the data past the offsets kept, instead of refusing;
                `repaired` then says what was dropped.

        Raises:
            DirectoryInUse: another crawl has the directory open.
            CrawlError: the directory holds a crawl made with other settings, or a
                journal that does not match its data files (and not ``repair``);
                no file was changed.
            OSError: a file cannot be read or written (the error names it).
        """
        return _under_lock(
            directory, lambda lock: cls._resume(directory, settings, lock, repair=repair)
        )

    @classmethod
    def _resume(
        cls, directory: Path, settings: CrawlSettings, lock: DirectoryLock, *, repair: bool
    ) -> CrawlDirectory:
        journal_path = directory / CHECKPOINT
        if not journal_path.exists():
            strays = [name for name in settings.data_files if (directory / name).exists()]
            if strays:
                raise CrawlError(
                    f"{directory} holds {', '.join(strays)} but no {CHECKPOINT}, so there is "
                    "nothing to resume from: pass --overwrite to start again"
                )
            return cls._start(directory, settings, lock, overwrite=False)
        lines = list(_complete_lines(journal_path.read_bytes()))
        if not lines:
            # The header never reached the disk, so no lead was journaled either.
            return cls._start(directory, settings, lock, overwrite=True)
        header_size, header = lines[0]
        _check_header(header, settings, directory)
        crawl = cls(directory, settings, lock)
        journal_size = header_size
        ends = crawl._ends
        damage: tuple[int, str] | None = None
        with _Offsets(directory, settings.data_files) as offsets:
            for number, (size, line) in enumerate(lines[1:], start=2):
                try:
                    entry = JournalEntry.from_json(line, settings.data_files)
                except ValueError as exc:
                    if number == len(lines):
                        break  # a last line cut short: that lead was never journaled
                    damage = (number, f"it is not a journal entry ({exc})")
                    break
                problem = offsets.check(number, entry)
                if problem is not None:
                    damage = (number, problem)
                    break
                crawl.entries[entry.lead_id] = entry
                ends = entry.ends
                journal_size += size
            crawl._ends = dict(ends)
            dropped = offsets.bytes_past(ends)
        if damage is not None:
            number, problem = damage
            kept = f"{len(crawl.done)} done and {len(crawl.failed)} failed"
            if not repair:
                raise CrawlError(
                    f"{journal_path} is damaged at line {number}: {problem}. Nothing was "
                    f"changed. Run the same command with --repair to keep the leads the lines "
                    f"before it journal ({kept}) with their rows, drop the rest of the journal "
                    "and the data after those rows, and crawl the other leads again; or with "
                    "--overwrite to start again"
                )
            crawl.repaired = (
                f"{journal_path} was damaged at line {number} ({problem}): kept the leads "
                f"journaled before it ({kept}), dropped {len(lines) - number + 1} journal "
                f"lines and {dropped} bytes of data after the rows kept; "
                "the other leads are crawled again"
            )
        crawl._open(journal_size=journal_size, header=None)
        return crawl

    def _open(self, *, journal_size: int, header: bytes | None) -> None:
        journal_path = self.directory / CHECKPOINT
        try:
            with naming(journal_path):
                if header is not None:
                    journal_path.write_bytes(b"")
                _truncate(journal_path, journal_size)
                self._journal = open(journal_path, "ab")  # noqa: SIM115 - closed by close()
                if header is not None:
                    self._append_synced(self._journal, header)
            for name, end in self._ends.items():
                path = self.directory / name
                with naming(path):
                    path.touch()
                    _truncate(path, end)
                    self._files[name] = open(path, "ab")  # noqa: SIM115 - closed by close()
            _sync_directory(self.directory)
        except BaseException:
            self.close()
            raise

    # What the journal says.

    @property
    def done(self) -> set[str]:
        """The leads whose rows are in the data files."""
        return {lead for lead, entry in self.entries.items() if entry.done}

    @property
    def failed(self) -> list[JournalEntry]:
        """The leads whose latest try failed, in the order they were journaled."""
        return [entry for entry in self.entries.values() if not entry.done]

    def settled(self, *, retry_failed: bool = False) -> set[str]:
        """The leads a resumed crawl does not request again: those done, and those that
        failed for good, unless ``retry_failed``."""
        return {
            lead
            for lead, entry in self.entries.items()
            if entry.done or not (retry_failed or entry.transient)
        }

    # Writing.

    def record(self, result: LeadResult, error_message: str | None = None) -> JournalEntry:
        """Write one lead's rows (if it succeeded) and journal it, durably.

        ``error_message`` overrides ``str(result.error)`` in the journal (the
        caller scrubs it). No ``await`` happens in here, so a cancelled crawl
        never leaves a lead half written.

        Raises:
            OSError: a file cannot be written (a full disk, say); the error names
                it. The lead is not journaled: stop, and resume later.
        """
        if result.error is not None:
            entry = JournalEntry(
                result.lead_id,
                done=False,
                ends=dict(self._ends),
                error_type=type(result.error).__name__,
                error_message=error_message if error_message is not None else str(result.error),
                transient=not failed_for_good(result.error),
            )
        else:
            activities = self._write_rows(result)
            entry = JournalEntry(
                result.lead_id,
                done=True,
                ends=dict(self._ends),
                opportunities=len(result.records),
                activities=activities,
            )
        assert self._journal is not None, "the crawl directory is closed"
        with naming(self.directory / CHECKPOINT):
            self._append_synced(self._journal, dump_row(entry.to_json()))
        # A lead may appear again on resume (a failed one retried): the latest entry wins.
        self.entries.pop(entry.lead_id, None)
        self.entries[entry.lead_id] = entry
        return entry

    def _write_rows(self, result: LeadResult) -> int:
        opportunities = self._files[OPPORTUNITIES]
        with naming(self.directory / OPPORTUNITIES):
            opportunities.writelines(dump_row(unstructure(record)) for record in result.records)
        written = 0
        if self.settings.with_activities:
            activities, index = self._files[ACTIVITIES], self._files[ACTIVITY_INDEX]
            for opportunity_id, rows in result.activities.items():
                with naming(self.directory / ACTIVITIES):
                    activities.writelines(dump_row(unstructure(activity)) for activity in rows)
                with naming(self.directory / ACTIVITY_INDEX):
                    index.write(
                        dump_row(
                            {
                                "OpportunityId": opportunity_id,
                                "ProspectId": result.lead_id,
                                "ActivityIds": [activity.activity_id for activity in rows],
                            }
                        )
                    )
                written += len(rows)
        for name, file in self._files.items():
            with naming(self.directory / name):
                file.flush()
                os.fsync(file.fileno())
                self._ends[name] = file.tell()
        return written

    @staticmethod
    def _append_synced(file: IO[bytes], line: bytes) -> None:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())

    def write_failed_report(self) -> Path:
        """Rewrite ``failed.jsonl`` from the journal: the leads whose latest try failed,
        each with ``transient`` (false: failed for good).

        Written to a temporary file and renamed, so a reader never sees half of it.

        Raises:
            OSError: the file cannot be written (the error names it).
        """
        path = self.directory / FAILED
        temporary = path.with_name(f".{FAILED}.tmp")
        with naming(path), open(temporary, "wb") as file:
            for entry in self.failed:
                file.write(
                    dump_row(
                        {
                            "lead_id": entry.lead_id,
                            "error": entry.error_type,
                            "message": entry.error_message,
                            "transient": entry.transient,
                        }
                    )
                )
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        return path

    def close(self) -> None:
        """Close every file (what was recorded is already on disk) and let the lock go."""
        for file in (*self._files.values(), self._journal):
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()
        self._files.clear()
        self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _under_lock(directory: Path, open_it: Callable[[DirectoryLock], T]) -> T:
    """``open_it(lock)`` with ``directory``'s lock taken; the lock is let go if it fails."""
    lock = _lock(directory)
    try:
        return open_it(lock)
    except BaseException:
        lock.release()
        raise


def _lock(directory: Path) -> DirectoryLock:
    """Create ``directory`` if needed and take its lock.

    Raises:
        DirectoryInUse: another crawl holds it.
        OSError: the directory or its lock file cannot be created.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return DirectoryLock.acquire(directory)
    except LockHeld as held:
        who = "another crawl" if held.holder is None else f"another crawl (process {held.holder})"
        raise DirectoryInUse(
            f"{directory} is in use by {who}: two crawls in one directory would save rows "
            "twice. Wait for that crawl to end, or stop it, then run this command again"
        ) from None


@contextlib.contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """Give an `OSError` raised inside that names no file (a failed write or fsync) ``path``.

    A full disk then says which file it stopped: ``No space left on device: DIR/...``.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise _named(exc, path) from exc


def _named(error: OSError, path: Path | str) -> OSError:
    """``error`` again, naming ``path`` (of the same class: OSError picks it from errno)."""
    return OSError(error.errno, error.strerror or str(error), str(path))


class _Offsets:
    """Checks each journal line's offsets against the data files and the lines before it."""

    def __init__(self, directory: Path, names: Iterable[str]) -> None:
        self._directory = directory
        # Unbuffered: each check reads one byte, where a buffered file would read a block.
        self._files: dict[str, io.FileIO | None] = {}
        self._sizes: dict[str, int] = {}
        #: data file -> its end after the last line accepted, and the line that put it there.
        self._ends: dict[str, tuple[int, int]] = {}
        self._done_at: dict[str, int] = {}
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

    def check(self, number: int, entry: JournalEntry) -> str | None:
        """Why journal line ``number``, read as ``entry``, cannot be trusted; None if it can.

        A line that can be trusted becomes the one the next line is checked against.
        """
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
        if entry.done:
            first = self._done_at.get(entry.lead_id)
            if first is not None:
                return (
                    f"lead {entry.lead_id} is journaled as done twice (lines {first} and "
                    f"{number}), so its rows may be in the files twice"
                )
            self._done_at[entry.lead_id] = number
        for name, end in entry.ends.items():
            if end != self._ends[name][0]:
                self._ends[name] = (end, number)
        return None

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
            raise _named(exc, self._directory / name) from exc


def _read_byte(file: io.FileIO, offset: int) -> bytes:
    """The byte at ``offset`` of ``file``: one system call where there is ``pread``."""
    if hasattr(os, "pread"):
        return os.pread(file.fileno(), 1, offset)
    file.seek(offset)  # pragma: no cover - Windows
    return file.read(1)  # pragma: no cover


def _complete_lines(data: bytes) -> Iterator[tuple[int, object]]:
    """Each complete line's size in bytes and its JSON; stops at the first torn line."""
    start = 0
    while (end := data.find(b"\n", start)) != -1:
        try:
            value = json.loads(data[start:end])
        except ValueError:
            value = None
        yield end + 1 - start, value
        start = end + 1


def _check_header(header: object, settings: CrawlSettings, directory: Path) -> None:
    if (
        not isinstance(header, dict)
        or header.get("format") != _FORMAT
        or header.get("version") != _VERSION
    ):
        raise CrawlError(
            f"{directory / CHECKPOINT} is not a leadsq-async crawl checkpoint of version "
            f"{_VERSION}: pass --overwrite to start again"
        )
    made_with = CrawlSettings(
        with_activities=bool(header.get("with_activities")),
        opportunity_type=_optional_text(header.get("opportunity_type")),
    )
    if made_with != settings:
        raise CrawlError(
            f"the crawl in {directory} was made with {made_with.describe()}; "
            "resume it with the same options"
        )


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)
        file.flush()
        os.fsync(file.fileno())


def _sync_directory(directory: Path) -> None:
    """Make the files' names durable too (not possible on every platform)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
