"""Writers for the rows that ``opportunities`` and ``activities`` print: JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import IO, Any, Protocol

from leadsq_async.journal import dump_row

__all__ = ["FORMATS", "CsvWriter", "JsonLinesWriter", "RowWriter", "writer_for"]

FORMATS = ("jsonl", "csv")


class RowWriter(Protocol):
    """Takes rows one at a time; `finish` writes whatever is still held."""

    def write(self, row: Mapping[str, Any]) -> None:
        """Write (or hold) one row."""

    def end_of_id(self) -> None:
        """The rows of one id are all in: let a reader of the output see them, if it can."""

    def finish(self) -> None:
        """Write what is held and flush."""


class JsonLinesWriter:
    """One compact JSON object per line, UTF-8, written as each row comes.

    The stream is flushed after each id's rows, so that a program reading a
    pipe gets each id's rows as it finishes, not when a buffer fills or the
    command ends; one write per id, not per row.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row as a line."""
        self._stream.write(dump_row(row))

    def end_of_id(self) -> None:
        """Flush the stream: the id's rows reach the reader now."""
        self._stream.flush()

    def finish(self) -> None:
        """Flush the stream."""
        self._stream.flush()


class CsvWriter:
    """CSV with a header row that names every key any row had.

    Rows carry different keys (custom fields are on some rows only), so the
    header is known only once every row is in: the rows are held in memory
    and written by `finish`. Columns come in the order keys were first seen;
    ``null`` is an empty cell, text is written as sent, and any other value
    (a number, true/false, a nested object) as its JSON.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._rows: list[Mapping[str, Any]] = []
        self._columns: dict[str, None] = {}

    def write(self, row: Mapping[str, Any]) -> None:
        """Hold one row until `finish`."""
        self._rows.append(row)
        self._columns.update(dict.fromkeys(row))

    def end_of_id(self) -> None:
        """Nothing: a row written now could lack a column found later."""

    def finish(self) -> None:
        """Write the header and every row held, then flush."""
        text = io.TextIOWrapper(self._stream, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text)
            columns = list(self._columns)
            if columns:
                writer.writerow(columns)
            for row in self._rows:
                writer.writerow([_cell(row.get(column)) for column in columns])
            text.flush()
        finally:
            # Leave the caller's stream open: the wrapper would close it.
            text.detach()
        self._rows.clear()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def writer_for(output_format: str, stream: IO[bytes]) -> RowWriter:
    """The writer for ``output_format`` ("jsonl" or "csv").

    Raises:
        ValueError: an unknown format.
    """
    if output_format == "jsonl":
        return JsonLinesWriter(stream)
    if output_format == "csv":
        return CsvWriter(stream)
    raise ValueError(f"unknown format {output_format!r}; choose one of {', '.join(FORMATS)}")
