"""Building a request: the path, query and JSON body that ask an endpoint for one page.

No I/O here. `PageQuery` holds a paged call's checked arguments, and
`build_request` adds a page's position to make the `WireRequest` the transport
sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ._checks import check_text
from ._endpoints import Endpoint

__all__ = ["MAX_ID_LENGTH", "PageQuery", "WireRequest", "build_request", "check_id"]


class WireRequest(NamedTuple):
    """One POST to send: the path under the base URL, its query and JSON body."""

    path: str
    params: dict[str, str]
    json: dict[str, Any]


class PageQuery(NamedTuple):
    """Everything about a paged call except the page's position.

    Built by the session from the caller's arguments, after checking them, so a
    bad argument fails before anything is sent.
    """

    endpoint: Endpoint[Any]
    id_value: str | None
    filter_value: str | None = None
    columns: tuple[str, ...] | None = None
    sort_by: str | None = None
    descending: bool = True
    params: tuple[tuple[str, str], ...] = ()
    body: str | None = None

    @property
    def asked(self) -> str | None:
        """Whose rows the query asks for, as the query string names them."""
        return None if self.id_value is None else f"{self.endpoint.id_parameter}={self.id_value}"

    @classmethod
    def checked(
        cls,
        endpoint: Endpoint[Any],
        id_value: object,
        *,
        filter_value: object = None,
        columns: Iterable[str] | str | None = None,
        sort_by: object = None,
        descending: object = True,
    ) -> PageQuery:
        """Check the caller's arguments and build the query.

        Raises:
            TypeError: an id, filter, column or sort name that is not a str.
            ValueError: an empty id, filter, column or sort name.
        """
        id_value = check_id(endpoint.id_parameter, id_value)
        if filter_value is not None:
            filter_value = check_text(endpoint.filter_parameter, filter_value)
        if sort_by is not None:
            sort_by = check_text("sort_by", sort_by)
        if not isinstance(descending, bool):
            raise TypeError(f"descending must be a bool, not {type(descending).__name__}")
        if not descending and sort_by is None:
            raise ValueError("descending=False needs sort_by: the field to sort on")
        return cls(
            endpoint,
            id_value,
            filter_value,
            _checked_columns(columns, endpoint.required_columns),
            sort_by,
            descending,
        )

    @classmethod
    def raw(
        cls,
        endpoint: Endpoint[Any],
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> PageQuery:
        """The query of `Session.paginate`: the caller's own query string and body.

        Raises:
            TypeError: parameters that are not str to str, or a body that is not
                a JSON object.
        """
        pairs = tuple((params or {}).items())
        for name, value in pairs:
            check_text("a parameter name", name)
            if not isinstance(value, str):
                raise TypeError(f"parameter {name} must be a str, not {type(value).__name__}")
        if body is not None and not isinstance(body, Mapping):
            raise TypeError(f"body must be a JSON object (a Mapping), not {type(body).__name__}")
        try:
            # Kept as text: the query is frozen, and each page gets its own copy.
            text = None if body is None else json.dumps(dict(body))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"body must be JSON-serialisable: {exc}") from None
        return cls(endpoint, None, params=pairs, body=text)


def _checked_columns(
    columns: Iterable[str] | str | None, required: tuple[str, ...]
) -> tuple[str, ...] | None:
    if columns is None:
        return None
    names = columns.split(",") if isinstance(columns, str) else list(columns)
    checked = tuple(check_text("a column name", name).strip() for name in names)
    if not checked:
        raise ValueError("columns must name at least one field")
    # Without its id a row can be neither a record nor told apart from a row
    # seen on an earlier page; without ProspectId its record has no lead_id.
    missing = tuple(key for key in required if key not in checked)
    return (*missing, *checked)


#: The longest id sent: LeadSquared's ids are 36-character GUIDs, and a much
#: longer one only makes a URL no server takes.
MAX_ID_LENGTH = 256


def check_id(name: str, value: object) -> str:
    """An id the API can take: a non-empty str of printable characters, at most
    `MAX_ID_LENGTH` of them.

    Raises:
        TypeError: not a str.
        ValueError: empty, too long, or holding control characters.
    """
    value = check_text(name, value)
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{name} is {len(value):,} characters long; ids are {MAX_ID_LENGTH} at most"
        )
    if not value.isprintable():
        raise ValueError(f"{name} holds control characters: {value[:40]!r}")
    return value


def build_request(query: PageQuery, page_index: int, page_size: int) -> WireRequest:
    """The POST that asks for one page (``PageIndex`` is 1-based)."""
    endpoint = query.endpoint
    params = dict(query.params)
    if query.id_value is not None:
        params[endpoint.id_parameter] = query.id_value
    if query.filter_value is not None:
        params[endpoint.filter_parameter] = query.filter_value
    body: dict[str, Any] = {} if query.body is None else json.loads(query.body)
    body["Paging"] = {"PageIndex": page_index, "PageSize": page_size}
    if query.columns is not None:
        body["Columns"] = {"Include_CSV": ",".join(query.columns)}
    if query.sort_by is not None:
        body["Sorting"] = {
            "ColumnName": query.sort_by,
            "Direction": "1" if query.descending else "0",
        }
    return WireRequest(endpoint.path, params, body)
