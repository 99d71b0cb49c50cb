"""The lock that keeps two crawls out of one journal directory: ``flock`` on ``DIR/.lock``,
which the kernel drops when the process ends, however it ends (see docs/how-it-works/journal.md)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

__all__ = ["LOCK", "DirectoryLock", "LockHeld"]

#: The lock file's name in a crawl directory (hidden: it is not part of the crawl's output).
LOCK = ".lock"

if sys.platform == "win32":  # pragma: no cover - Windows is not a target; import it cheaply
    import msvcrt

    def _try_lock(descriptor: int) -> None:
        msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _try_lock(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)


class LockHeld(Exception):
    """Another process (or another crawl in this one) holds the lock.

    Attributes:
        path: the lock file.
        holder: the process id the lock file names, if it names one.
    """

    def __init__(self, path: Path, holder: int | None) -> None:
        who = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"{path} is held by {who}")
        self.path = path
        self.holder = holder


class DirectoryLock:
    """An exclusive lock on a directory, held until `release` (or the process ends)."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, directory: Path) -> DirectoryLock:
        """Take the lock of ``directory`` (which must exist) at once, or fail.

        Raises:
            LockHeld: someone holds it.
            OSError: the lock file cannot be created or locked.
        """
        path = directory / LOCK
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _try_lock(descriptor)
        except OSError as exc:
            holder = _holder(descriptor)
            os.close(descriptor)
            if isinstance(exc, (BlockingIOError, PermissionError)):
                raise LockHeld(path, holder) from None
            raise
        try:
            # Who holds it, for the message of the crawl that is refused.
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk, say: the lock holds all the same
        return cls(path, descriptor)

    def release(self) -> None:
        """Let the lock go (closing the file drops it); a second call does nothing."""
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self._descriptor)
            self._descriptor = None


def _holder(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0)
    except (OSError, AttributeError):  # no pread on Windows; a locked region there
        return None
    try:
        return int(text.strip() or b"-")
    except ValueError:
        return None
