"""Where the command line reads ids from: arguments, a file, or standard input.

The ids are read in a background thread (`IdReader`), never on the event
loop: a producer piping ids in (``producer | leadsq-async opportunities -``)
may take its time over the next line, and a read that waited for it on the
loop would stall every request in flight, the rate limiter's timers and the
progress bar until the line came. Files and arguments take the same path: a
file name may be a pipe too (``--leads-file <(producer)``, a FIFO, a slow
network mount), and one hop to a thread per id costs nothing next to a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import IO

import attrs

__all__ = [
    "STDIN",
    "IdReader",
    "IdsFileError",
    "count_ids",
    "ids_file",
    "ids_from",
    "lines_to_ids",
    "open_ids",
    "read_ids",
    "source_of",
]

#: The file name, or argument, that means "read ids from standard input".
STDIN = "-"

#: The name of the thread that reads the ids (as a thread dump shows it).
THREAD_NAME = "leadsq-async ids"

#: How many ids the reader thread may read ahead of the crawl (then it waits).
READ_AHEAD = 1000


def open_ids(path: str) -> IO[str]:
    """Open an ids file (one id per line), or standard input for ``-``.

    Raises:
        OSError: the file cannot be opened.
    """
    if path == STDIN:
        return sys.stdin
    # utf-8-sig: a file saved by a spreadsheet may start with a byte-order mark.
    return open(path, encoding="utf-8-sig")


@contextlib.contextmanager
def ids_file(path: str | None) -> Iterator[IO[str] | None]:
    """The ids file at ``path`` (standard input for ``-``) while the body runs; None for
    no path."""
    if path is None:
        yield None
        return
    file = open_ids(path)
    try:
        yield file
    finally:
        if file is not sys.stdin:
            file.close()


class IdsFileError(ValueError):
    """Ids come from something that is not a text file of ids; the message names it."""


def source_of(file: IO[str]) -> str:
    """How messages name the ids file ``file``: its path, or "standard input"."""
    name = getattr(file, "name", None)
    if file is sys.stdin or name == "<stdin>" or not isinstance(name, str):
        return "standard input"
    return name


def lines_to_ids(lines: Iterable[str], source: str = "the input") -> Iterator[str]:
    """The ids in ``lines``: one per line, white space around it ignored, blank lines skipped.

    ``source`` names where the lines come from, for the messages.

    Raises:
        IdsFileError: the lines are not UTF-8 text, or one holds a NUL byte (which no
            text file does: a binary file, say, or UTF-16 text).
    """
    lines = iter(lines)
    number = 0
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise IdsFileError(
                f"{source} is not a text file of ids: it is not UTF-8 text (byte "
                f"0x{exc.object[exc.start]:02x} cannot be read); save it as UTF-8 text, "
                "one id per line"
            ) from None
        number += 1
        if number == 1:
            # Standard input is read as a path is (utf-8-sig): a leading byte-order mark is
            # not part of the first id.
            line = line.removeprefix("\ufeff")
        if "\x00" in line:
            raise IdsFileError(
                f"{source} is not a text file of ids: line {number} holds a NUL byte (is it "
                "a binary file, or UTF-16 text?); save it as UTF-8 text, one id per line"
            )
        text = line.strip()
        if text:
            yield text


def count_ids(path: str) -> int | None:
    """How many ids a file holds; None for standard input or a pipe, which can be read only once.

    (``--leads-file <(producer)`` names a pipe: counting it would leave nothing to crawl.)

    Raises:
        OSError: the file cannot be read.
        IdsFileError: it is not a text file of ids.
    """
    if path == STDIN or not stat.S_ISREG(os.stat(path).st_mode):
        return None
    with open_ids(path) as file:
        return sum(1 for _ in lines_to_ids(file, path))


@contextlib.contextmanager
def read_ids(path: str) -> Iterator[tuple[int | None, Iterator[str]]]:
    """How many ids the file at ``path`` (``-``: standard input) holds, and its ids, while
    the body runs.

    The number is None for standard input or a pipe, which can be read only once, unless
    it holds no id: then it is 0, as for an empty file, so that one check refuses both.
    Finding that out waits for the first id, or the end of the input.

    Raises:
        OSError: the file cannot be read.
        IdsFileError: it is not a text file of ids.
    """
    total = count_ids(path)
    with ids_file(path) as file:
        assert file is not None
        ids = lines_to_ids(file, source_of(file))
        if total is None:
            first = next(ids, None)
            if first is None:
                total = 0
            else:
                ids = itertools.chain([first], ids)
        yield total, ids


def ids_from(arguments: Iterable[str], file: IO[str] | None) -> Iterator[str]:
    """The ids given as arguments, then those of ``file``; an argument ``-`` reads stdin.

    Raises:
        IdsFileError: stdin or ``file`` is not a text file of ids.
    """
    for argument in arguments:
        if argument == STDIN:
            yield from lines_to_ids(sys.stdin, "standard input")
        else:
            yield argument
    if file is not None:
        yield from lines_to_ids(file, source_of(file))


class IdReader:
    """The ids of a (sync, maybe blocking) iterable, read by a daemon thread, as an async iterator.

    The thread hands the ids to the event loop through a queue of ``read_ahead``
    places, so memory stays bounded however far ahead the input is; when the
    queue is full the thread waits. An error while reading (a file that is not
    UTF-8, say) is raised by `__anext__` after the ids read before it.

    Not `asyncio.to_thread`: ``asyncio.run`` waits for the default executor's
    threads when it ends, and a thread blocked on reading a terminal or a pipe
    that nobody writes to would then hang Ctrl-C. A daemon thread is left
    behind instead, and dies with the process. Not an async generator either,
    so that the loop's shutdown has nothing of it to close (as with the paginators).

    `aclose` stops the thread (named `THREAD_NAME`) as soon as it is
    done with the read it is blocked on, if any; call it when the ids are no
    longer wanted.
    """

    def __init__(self, ids: Iterable[str], *, read_ahead: int = READ_AHEAD) -> None:
        self._ids = ids
        self._queue: queue.Queue[str | _End] = queue.Queue(maxsize=read_ahead)
        self._ready: asyncio.Event | None = None
        self._closed = False
        self._ended = False

    def __aiter__(self) -> IdReader:
        return self

    async def __anext__(self) -> str:
        if self._ready is None:
            self._start()
        assert self._ready is not None
        while not self._ended:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                # The thread sets the event (on the loop) after each put, so a put
                # that comes after this clear() wakes the wait below.
                self._ready.clear()
                await self._ready.wait()
                continue
            if isinstance(item, _End):
                self._end()
                if item.error is not None:
                    raise item.error
                break
            return item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: the thread ends once its current read, if any, returns."""
        self._closed = True
        self._end()
        # Make room in the queue, so that a thread blocked on putting an id wakes,
        # sees _closed and ends.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def _end(self) -> None:
        self._ended = True
        if self._ready is not None:
            self._ready.set()  # any other task waiting for an id: there are no more

    def _start(self) -> None:
        self._ready = asyncio.Event()
        thread = threading.Thread(
            target=self._read,
            args=(asyncio.get_running_loop(), self._ready),
            name=THREAD_NAME,
            daemon=True,
        )
        thread.start()

    def _read(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event) -> None:
        """The thread: put each id in the queue, then the end (with the error, if any)."""
        try:
            for identifier in self._ids:
                if not self._hand_over(identifier, loop, ready):
                    return
        except Exception as error:
            self._hand_over(_End(error), loop, ready)
        else:
            self._hand_over(_End(None), loop, ready)

    def _hand_over(
        self, item: str | _End, loop: asyncio.AbstractEventLoop, ready: asyncio.Event
    ) -> bool:
        """Put ``item`` in the queue and wake the loop; False when nobody will take it."""
        if self._closed:
            return False
        self._queue.put(item)  # waits while the queue is full
        if self._closed:  # the wait ended because aclose() made room
            return False
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:  # the loop is closed: the command has ended
            return False
        return True


@attrs.frozen
class _End:
    """No more ids: the input ended, or reading it raised ``error``."""

    error: Exception | None
