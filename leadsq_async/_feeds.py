"""The account-wide feeds: leads, activities and opportunities changed in a time range.

What each feed sends: its endpoint, the JSON body of each window or query, the
windows' sizes, the field that identifies its rows. `_feed_walk` walks them.
The first window of each feed and the most a window grows to are in
`FEED_WINDOWS`; the reasons are in docs/feeds.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ._endpoints import (
    ACTIVITIES_BY_EVENT,
    ACTIVITIES_MODIFIED,
    LEADS_MODIFIED,
    OPPORTUNITIES_BY_ID,
    OPPORTUNITIES_BY_SEARCH,
    Endpoint,
)
from ._feed_walk import FeedPaginator, Plan
from ._leads import Lead
from ._records import Activity, Opportunity
from ._request import _checked_columns, check_id
from ._transport import Transport
from ._windows import Window, aware_utc

__all__ = [
    "FEED_WINDOWS",
    "MAX_IDS_PER_REQUEST",
    "activities_modified",
    "leads_modified",
    "opportunities_by_id",
    "opportunities_of_type",
    "search_condition",
]

FEED_WINDOWS: Mapping[str, tuple[timedelta, timedelta]] = {
    # Leads: 5,000 a page, no failing windows reported.
    LEADS_MODIFIED.path: (timedelta(days=1), timedelta(days=366)),
    # Every activity type at once: integrators saw 7 days fail and 1 day work, and walk 6 h.
    # A window grows only while it holds under a quarter page, where volume cannot fail it.
    ACTIVITIES_MODIFIED.path: (timedelta(hours=6), timedelta(days=32)),
    # One activity type: 7 days of one type served 78,350 rows.
    ACTIVITIES_BY_EVENT.path: (timedelta(days=1), timedelta(days=92)),
}
"""Per windowed feed: the first window's length, and the most a window grows to."""

MAX_IDS_PER_REQUEST = 2000
"""The most opportunity ids one ``GetOpportunitiesById`` request asks for (documented)."""

DEFAULT_ID_COLUMNS = ("CreatedOn", "ModifiedOn", "Owner", "Status")
"""What ``GetOpportunitiesById`` is asked for without ``columns``: it requires a list."""


def _columns(columns: Iterable[str] | str | None, endpoint: Endpoint[Any]) -> str | None:
    checked = _checked_columns(columns, endpoint.required_columns)
    return None if checked is None else ",".join(checked)


def _event_code(name: str, value: object) -> int:
    """An event code as the API takes it: a number, given as an int or a str of digits."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be an int or a str of digits, not {type(value).__name__}")
    text = str(value).strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"{name} must be an event code such as 12000, not {value!r}")
    return int(text)


def _window_range(
    endpoint: Endpoint[Any], since: object, until: object, window: timedelta | None
) -> tuple[Window, timedelta, timedelta]:
    span = Window.checked(since, until)
    first, most = FEED_WINDOWS[endpoint.path]
    if window is not None:
        if not isinstance(window, timedelta) or window < timedelta(seconds=1):
            raise ValueError(f"window must be a timedelta of a second or more, not {window!r}")
        first, most = window, max(window, most)
    return span, first, most


def leads_modified(
    transport: Transport,
    since: object,
    until: object,
    columns: Iterable[str] | str | None,
    page_size: int | None,
    limit: int | None,
    window: timedelta | None,
) -> FeedPaginator[Lead]:
    """`Session.leads_modified`, on ``transport``."""
    endpoint = LEADS_MODIFIED
    span, first, most = _window_range(endpoint, since, until, window)
    csv = _columns(columns, endpoint)

    def body(window: Window | None) -> dict[str, Any]:
        assert window is not None
        text: dict[str, Any] = {
            "Parameter": {"FromDate": window.from_date, "ToDate": window.to_date},
            "Sorting": {"ColumnName": "ModifiedOn", "Direction": "0"},
        }
        if csv is not None:
            text["Columns"] = {"Include_CSV": csv}
        return text

    plan = Plan(endpoint, body, "lead_id", span, first, most, flatten=True)
    return FeedPaginator(transport, plan, page_size=page_size, limit=limit)


def activities_modified(
    transport: Transport,
    since: object,
    until: object,
    event_code: object,
    page_size: int | None,
    limit: int | None,
    window: timedelta | None,
) -> FeedPaginator[Activity]:
    """`Session.activities_modified`, on ``transport``."""
    code = None if event_code is None else _event_code("event_code", event_code)
    endpoint = ACTIVITIES_MODIFIED if code is None else ACTIVITIES_BY_EVENT
    span, first, most = _window_range(endpoint, since, until, window)

    def body(window: Window | None) -> dict[str, Any]:
        assert window is not None
        parameter: dict[str, Any] = {"FromDate": window.from_date, "ToDate": window.to_date}
        if code is None:
            parameter["IncludeCustomFields"] = 1
        else:
            parameter["ActivityEvent"] = code
        return {"Parameter": parameter, "Sorting": {"ColumnName": "ModifiedOn", "Direction": 0}}

    plan = Plan(endpoint, body, "activity_id", span, first, most)
    return FeedPaginator(transport, plan, page_size=page_size, limit=limit)


def search_condition(code: int) -> str:
    """The ``AdvancedSearch`` of every opportunity of one type, as the documented sample
    writes it: its one condition restates the event code, which the API requires."""
    condition = {
        "SubConOp": "And",
        "LSO": "ActivityEvent",
        "LSO_Type": "PAEvent",
        "Operator": "eq",
        "RSO": str(code),
    }
    search = {
        "GrpConOp": "And",
        "Conditions": [{"Type": "Activity", "ConOp": "and", "RowCondition": [condition]}],
        "QueryTimeZone": "UTC",
    }
    return json.dumps(search, separators=(",", ":"))


def opportunities_of_type(
    transport: Transport,
    opportunity_type: object,
    modified_since: object,
    columns: Iterable[str] | str | None,
    page_size: int | None,
    limit: int | None,
) -> FeedPaginator[Opportunity]:
    """`Session.opportunities_of_type`, on ``transport``."""
    code = _event_code("opportunity_type", opportunity_type)
    since = None if modified_since is None else aware_utc("modified_since", modified_since)
    endpoint = OPPORTUNITIES_BY_SEARCH
    search: dict[str, Any] = {
        "OpportunityEventCode": code,
        "AdvancedSearch": search_condition(code),
        "Sorting": {"ColumnName": "ModifiedOn", "Direction": 1},
    }
    csv = _columns(columns, endpoint)
    if csv is not None:
        search["Columns"] = {"Include_CSV": csv}
    plan = Plan(
        endpoint,
        lambda _window: search,
        "opportunity_id",
        bodies=(json.dumps(search),),
        modified_since=since,
        # With a cursor, no page is asked before the last one is read: the walk may end there.
        look_ahead=None if since is None else 0,
    )
    return FeedPaginator(transport, plan, page_size=page_size, limit=limit)


def opportunities_by_id(
    transport: Transport,
    opportunity_type: object,
    ids: Iterable[str],
    columns: Iterable[str] | str | None,
    limit: int | None,
) -> FeedPaginator[Opportunity]:
    """`Session.opportunities_by_id`, on ``transport``."""
    code = _event_code("opportunity_type", opportunity_type)
    if isinstance(ids, str):
        raise TypeError("ids must be an iterable of ids, not one str")
    unique = list(dict.fromkeys(check_id("an opportunity id", value) for value in ids))
    endpoint = OPPORTUNITIES_BY_ID
    csv = _columns(DEFAULT_ID_COLUMNS if columns is None else columns, endpoint)
    chunks: Sequence[list[str]] = [
        unique[start : start + MAX_IDS_PER_REQUEST]
        for start in range(0, len(unique), MAX_IDS_PER_REQUEST)
    ]
    bodies = tuple(
        json.dumps(
            {
                "SearchParameters": [
                    {
                        "EventCode": str(code),
                        "ProspectActivityId": chunk,
                        "Columns": {"Include_CSV": csv},
                    }
                ]
            }
        )
        for chunk in chunks
    )
    plan = Plan(endpoint, lambda _window: {}, "opportunity_id", bodies=bodies)
    return FeedPaginator(transport, plan, page_size=MAX_IDS_PER_REQUEST, limit=limit)
