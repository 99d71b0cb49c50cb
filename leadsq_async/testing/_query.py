"""The JSON body of a list call (Paging, Sorting, Columns) and the page it selects. No I/O."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from leadsq_async.testing._dates import parse_date

Row = dict[str, Any]

INVALID_INPUT = "MXInvalidInputException"
_DIGITS = re.compile(r"\s*\d+\s*")
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


class ApiError(Exception):
    """A request the API refuses with its error envelope (validation and business errors)."""

    def __init__(self, status: int, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.exception_type = exception_type
        self.message = message


def envelope(exception_type: str, message: str) -> dict[str, str]:
    """The API's error body."""
    return {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}


def _invalid(message: str) -> ApiError:
    return ApiError(500, INVALID_INPUT, message)


def _bad_request(message: str) -> ApiError:
    return ApiError(
        400, INVALID_INPUT, f"The request body is not as per API specification: {message}"
    )


def parse_body(raw: bytes) -> Mapping[str, Any]:
    """The request's JSON object; an empty body is an empty object.

    Raises:
        ApiError: 400 when the body is not a JSON object.
    """
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:  # also UnicodeDecodeError
        raise _bad_request(f"not valid JSON ({error})") from None
    if not isinstance(body, dict):
        raise _bad_request("expected a JSON object")
    for section in ("Paging", "Sorting", "Columns"):
        if body.get(section) is not None and not isinstance(body[section], dict):
            raise _bad_request(f"{section} must be an object")
    return body


def _positive_int(paging: Mapping[str, Any], name: str) -> int | None:
    value = paging.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise _invalid(f"Invalid data type for Paging.{name}: {value!r} is not an integer")
    if number < 1:
        raise _invalid(f"Paging.{name} must be 1 or more, got {number}")
    return number


def _sort_key(value: object) -> tuple[int, float, str]:
    """Order nulls first, then numbers, then dates by their real time, then text."""
    if value is None or value == "":
        return (0, 0.0, "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    if isinstance(value, str):
        return _text_key(value)
    return (3, 0.0, json.dumps(value, sort_keys=True))


@functools.lru_cache(maxsize=1 << 18)
def _text_key(value: str) -> tuple[int, float, str]:
    if _NUMBER.fullmatch(value):
        return (1, float(value.replace(",", "")), "")
    when = parse_date(value)
    if when is not None:
        return (2, when, "")
    return (3, 0.0, value.casefold())


def _lookup(row: Row, column: str, folded: str) -> object:
    if column in row:
        return row[column]
    for key, value in row.items():
        if key.casefold() == folded:
            return value
    return None


def _created(row: Row) -> float:
    value = row.get("PACreatedOn")
    when = parse_date(value) if isinstance(value, str) else None
    return -math.inf if when is None else when


@attrs.frozen
class ListQuery:
    """What one list call asks for: which rows (a window), in which order, which columns."""

    start: int
    size: int
    sort_column: str | None = None
    descending: bool = False
    columns: frozenset[str] | None = None

    @classmethod
    def from_body(
        cls,
        body: Mapping[str, Any],
        *,
        default_size: int,
        cap: int,
        cap_mode: Literal["clamp", "refuse"],
    ) -> ListQuery:
        """Read Paging, Sorting and Columns.

        Paging is either ``PageIndex``/``PageSize`` (1-based page number) or
        ``Offset``/``RowCount`` (``Offset`` is the 1-based number of the first row), each an
        int or a string of digits. A size above ``cap`` is clamped or refused.

        Raises:
            ApiError: 500 ``MXInvalidInputException`` for a bad value or a refused size.
        """
        paging = body.get("Paging") or {}
        by_page = ("PageIndex" in paging) or ("PageSize" in paging)
        by_offset = ("Offset" in paging) or ("RowCount" in paging)
        if by_page and by_offset:
            raise _invalid("Paging takes PageIndex/PageSize or Offset/RowCount, not both")
        size_name = "RowCount" if by_offset else "PageSize"
        size = _positive_int(paging, size_name) or default_size
        if size > cap:
            if cap_mode == "refuse":
                raise _invalid(f"Paging.{size_name} must not exceed {cap}, got {size}")
            size = cap
        if by_offset:
            start = (_positive_int(paging, "Offset") or 1) - 1
        else:
            start = ((_positive_int(paging, "PageIndex") or 1) - 1) * size

        sorting = body.get("Sorting") or {}
        column = sorting.get("ColumnName")
        if column is not None and not isinstance(column, str):
            raise _invalid(f"Invalid data type for Sorting.ColumnName: {column!r}")
        direction = sorting.get("Direction", "0")
        if direction not in (0, 1, "0", "1") or isinstance(direction, bool):
            raise _invalid(f"Sorting.Direction must be '0' or '1', got {direction!r}")

        include = (body.get("Columns") or {}).get("Include_CSV")
        if include is not None and not isinstance(include, str):
            raise _invalid(f"Invalid data type for Columns.Include_CSV: {include!r}")
        names = frozenset(n.strip().casefold() for n in (include or "").split(",") if n.strip())
        return cls(
            start=start,
            size=size,
            sort_column=(column or "").strip() or None,
            descending=str(direction) == "1",
            columns=names or None,
        )

    def select(
        self, rows: Sequence[Row], *, keep: Sequence[str], by_created: bool = True
    ) -> tuple[int, list[Row]]:
        """Return (RecordCount, the page's rows) for all matching ``rows``.

        Rows come most recently created first (ties by ``keep[0]``, the row id) unless a sort
        column is given; ties in that column keep this default order (with ``by_created``
        False, the order of ``rows``). The page's rows are copies narrowed to the asked columns
        plus the ``keep`` keys, with ``Total`` (when a row has it) set to the record count.
        """
        id_key = keep[0]
        if by_created:
            ordered = sorted(rows, key=lambda row: (-_created(row), str(row.get(id_key, ""))))
        else:
            ordered = list(rows)
        if self.sort_column is not None:
            column, folded = self.sort_column, self.sort_column.casefold()
            # sort() with reverse=True stays stable: ties keep the default order.
            ordered.sort(
                key=lambda row: _sort_key(_lookup(row, column, folded)), reverse=self.descending
            )
        count = len(ordered)
        page = ordered[self.start : self.start + self.size]
        kept = {key.casefold() for key in keep}
        served = []
        for row in page:
            if self.columns is None:
                copy = dict(row)
            else:
                wanted = self.columns | kept
                copy = {key: value for key, value in row.items() if key.casefold() in wanted}
            if "Total" in copy:
                copy["Total"] = str(count)
            served.append(copy)
        return count, served
