"""Where the command line reads ids from: arguments, a file, or standard input."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = ["STDIN", "count_ids", "ids_from", "open_ids"]

#: The file name, or argument, that means "read ids from standard input".
STDIN = "-"


def open_ids(path: str) -> IO[str]:
    """Open an ids file (one id per line), or standard input for ``-``.

    Raises:
        OSError: the file cannot be opened.
    """
    if path == STDIN:
        return sys.stdin
    # utf-8-sig: a file saved by a spreadsheet may start with a byte-order mark.
    return open(path, encoding="utf-8-sig")


def lines_to_ids(lines: Iterable[str]) -> Iterator[str]:
    """The ids in ``lines``: one per line, white space around it ignored, blank lines skipped."""
    for line in lines:
        text = line.strip()
        if text:
            yield text


def count_ids(path: str) -> int | None:
    """How many ids a file holds (None for standard input, which can be read only once).

    Raises:
        OSError: the file cannot be read.
    """
    if path == STDIN:
        return None
    with open_ids(path) as file:
        return sum(1 for _ in lines_to_ids(file))


def ids_from(arguments: Iterable[str], file: IO[str] | None) -> Iterator[str]:
    """The ids given as arguments, then those of ``file``; an argument ``-`` reads stdin."""
    for argument in arguments:
        if argument == STDIN:
            yield from lines_to_ids(sys.stdin)
        else:
            yield argument
    if file is not None:
        yield from lines_to_ids(file)
