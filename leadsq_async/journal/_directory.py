"""A journal directory's life: its lock, its files opened and truncated, each lead's rows
and journal line appended and fsynced, and the rows read back (the format is `_format`'s)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Set
from pathlib import Path
from typing import IO, TypeVar

from leadsq_async import Activity, LeadResult, Opportunity, structure, unstructure

from ._format import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    ALL_FILES,
    CHECKPOINT,
    FAILED,
    OPPORTUNITIES,
    CrawlSettings,
    JournalEntry,
    check_header,
    dump_row,
    failed_for_good,
    header_of,
    read_journal,
)
from ._lock import DirectoryLock, LockHeld

__all__ = ["CrawlDirectory", "CrawlError", "DirectoryInUse", "naming"]

T = TypeVar("T")


class CrawlError(Exception):
    """The crawl directory cannot be used as asked (the message says why and what to do)."""


class DirectoryInUse(CrawlError):
    """Another crawl holds the directory's lock: running both would write rows twice.

    Attributes:
        directory: the directory.
        holder: the process id of the crawl that holds it, when known.
    """

    def __init__(self, directory: Path, holder: int | None) -> None:
        who = "another crawl" if holder is None else f"another crawl (process {holder})"
        super().__init__(
            f"{directory} is in use by {who}: two crawls in one directory would save rows "
            "twice. Wait for that crawl to end, or stop it, then run this command again"
        )
        self.directory = directory
        self.holder = holder

    def __reduce__(self) -> tuple[type[DirectoryInUse], tuple[Path, int | None]]:
        return type(self), (self.directory, self.holder)


class CrawlDirectory:
    """A crawl's output directory, open for appending one lead at a time.

    Use `start` for a new crawl or `resume` to carry one on; then `record` each
    lead's result, and `close`. From `start` or `resume` until `close` the
    crawl holds the directory's lock: no other crawl can open it meanwhile.
    """

    def __init__(self, directory: Path, settings: CrawlSettings, lock: DirectoryLock) -> None:
        self.directory = directory
        self.settings = settings
        #: What ``resume(repair=True)`` dropped from a damaged journal; None when nothing.
        self.repaired: str | None = None
        self._done: set[str] = set()
        self._failed: dict[str, JournalEntry] = {}
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
        crawl._open(journal_size=0, header=header_of(settings))
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
            repair: when a journal line breaks the rules (see "How it works: the
                journal"), keep the lines before it and drop it and the rest,
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
        with naming(journal_path), open(journal_path, "rb") as journal:
            header = journal.readline()
            if not header.endswith(b"\n"):
                # The header never reached the disk, so no lead was journaled either.
                return cls._start(directory, settings, lock, overwrite=True)
            problem = check_header(header, settings, journal_path)
            if problem is not None:
                raise CrawlError(problem)
            read = read_journal(journal, header, directory, settings)
        crawl = cls(directory, settings, lock)
        crawl._done, crawl._failed, crawl._ends = read.done, read.failed, read.ends
        if read.damage is not None:
            number, problem = read.damage
            kept = f"{len(read.done)} done and {len(read.failed)} failed"
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
                f"journaled before it ({kept}), dropped {read.lines - number + 1} journal "
                f"lines and {read.bytes_past} bytes of data after the rows kept; "
                "the other leads are crawled again"
            )
        crawl._open(journal_size=read.size, header=None)
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
                    _append_synced(self._journal, header)
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
    def done(self) -> Set[str]:
        """The leads whose rows are in the data files (a live view: do not change it)."""
        return self._done

    @property
    def failed(self) -> list[JournalEntry]:
        """The leads whose latest try failed, in the order they were journaled."""
        return list(self._failed.values())

    def settled(self, *, retry_failed: bool = False) -> Set[str]:
        """The leads a resumed crawl does not request again: those done, and those that
        failed for good, unless ``retry_failed`` (a live view: do not change it)."""
        if retry_failed:
            return self._done
        return _Union(self._done, {lead for lead, e in self._failed.items() if not e.transient})

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
            _append_synced(self._journal, dump_row(entry.to_json()))
        # A lead may appear again on resume (a failed one retried): the latest entry wins.
        self._failed.pop(entry.lead_id, None)
        if entry.done:
            self._done.add(entry.lead_id)
        else:
            self._failed[entry.lead_id] = entry
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
            for entry in self._failed.values():
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

    # Reading the rows back.

    def opportunities(self) -> Iterator[Opportunity]:
        """The opportunities of the leads journaled as done, in the order they were written.

        Raises:
            OSError: the file cannot be read (the error names it).
        """
        with (
            naming(self.directory / OPPORTUNITIES),
            open(self.directory / OPPORTUNITIES, "rb") as lines,
        ):
            for line in lines:
                yield structure(json.loads(line), Opportunity)

    def activities(self) -> Iterator[tuple[str, Activity]]:
        """With activities: each activity of the leads done, with its opportunity's id.

        Raises:
            OSError: a file cannot be read (the error names it).
        """
        if not self.settings.with_activities:
            return
        directory = self.directory
        with (
            naming(directory / ACTIVITIES),
            open(directory / ACTIVITY_INDEX, "rb") as index,
            open(directory / ACTIVITIES, "rb") as rows,
        ):
            for line in index:
                entry = json.loads(line)
                for _ in entry["ActivityIds"]:
                    yield entry["OpportunityId"], structure(json.loads(next(rows)), Activity)

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


class _Union(Set[str]):
    """Two sets seen as one, without copying either (the first can hold millions)."""

    def __init__(self, first: Set[str], second: Set[str]) -> None:
        self._first, self._second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second

    def __iter__(self) -> Iterator[str]:
        yield from self._first
        yield from (item for item in self._second if item not in self._first)

    def __len__(self) -> int:
        return len(self._first) + sum(item not in self._first for item in self._second)


def _under_lock(directory: Path, open_it: Callable[[DirectoryLock], T]) -> T:
    """``open_it(lock)`` with ``directory``'s lock taken; the lock is let go if it fails.

    Raises:
        DirectoryInUse: another crawl holds it.
        OSError: the directory or its lock file cannot be created.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        lock = DirectoryLock.acquire(directory)
    except LockHeld as held:
        raise DirectoryInUse(directory, held.holder) from None
    try:
        return open_it(lock)
    except BaseException:
        lock.release()
        raise


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
        # Of the same class: OSError picks it from errno.
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _append_synced(file: IO[bytes], line: bytes) -> None:
    file.write(line)
    file.flush()
    os.fsync(file.fileno())


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
