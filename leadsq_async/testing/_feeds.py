"""The account-wide endpoints, shaped as LeadSquared's samples show: the leads and activities
modified in a window, the opportunities of one type by search, and opportunities by id. Each
handler takes the account, the request's JSON body and the config and returns the answer's
payload, or raises ``ApiError`` (the 500 envelope) or ``WindowTooLarge`` (the bare 500); the
feeds read the account ``EmulatorConfig.index_lag`` seconds behind, by-id reads as it is.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from leadsq_async.testing._account import Account
from leadsq_async.testing._config import EmulatorConfig
from leadsq_async.testing._data import Record
from leadsq_async.testing._dates import parse_date
from leadsq_async.testing._query import INVALID_INPUT, ApiError, ListQuery
from leadsq_async.testing._rows import Row
from leadsq_async.testing._shapes import (
    event_activity,
    recent_activity,
    searched_opportunity,
    shaped,
)

# Parameter.FromDate and ToDate: UTC, to the second.
_UTC_SECOND = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_MOST_IDS = 2000
SEARCH_MISMATCH = "AdvancedSearch criteria does not match ActivityEvent passed"


class WindowTooLarge(Exception):
    """A window holds more rows than the feed serves: answered with the bare 500."""


def _invalid(message: str) -> ApiError:
    return ApiError(500, INVALID_INPUT, message)


def _utc_second(parameter: Mapping[str, Any], name: str) -> float:
    """Parameter.FromDate or ToDate as UTC epoch seconds.

    Raises:
        ApiError: 500 ``MXInvalidInputException`` when it is missing or not a real
            ``YYYY-MM-DD HH:MM:SS``.
    """
    value = parameter.get(name)
    if value is None or value == "":
        raise _invalid(f"Invalid Input! Parameter Name: {name}")
    when = parse_date(value) if isinstance(value, str) and _UTC_SECOND.fullmatch(value) else None
    if when is None:
        raise _invalid(
            f"Invalid Input! {name} must be a date as YYYY-MM-DD HH:MM:SS, got {value!r}"
        )
    return when


def _parameter(body: Mapping[str, Any]) -> Mapping[str, Any]:
    parameter = body.get("Parameter")
    if not isinstance(parameter, Mapping):
        raise _invalid("Invalid Input! Parameter Name: Parameter")
    return parameter


def _when(value: object) -> float:
    return _when_text(value) if isinstance(value, str) else -math.inf


@functools.lru_cache(maxsize=1 << 16)
def _when_text(value: str) -> float:
    """A date's epoch seconds, read once: every feed request reads every record's date."""
    when = parse_date(value)
    return -math.inf if when is None else when


def _in_window(
    records: Iterable[Record], body: Mapping[str, Any], config: EmulatorConfig, modified: str
) -> list[Record]:
    """The records whose ``modified`` date is within Parameter.FromDate..ToDate, both included;
    raises WindowTooLarge over the configured limit."""
    parameter = _parameter(body)
    since, until = (_utc_second(parameter, name) for name in ("FromDate", "ToDate"))
    rows = [record for record in records if since <= _when(record.row.get(modified)) <= until]
    limit = config.window_row_limit
    if limit is not None and len(rows) > limit:
        raise WindowTooLarge(f"{len(rows)} rows in the window, more than {limit}")
    return rows


def _page(
    rows: list[Row],
    body: Mapping[str, Any],
    config: EmulatorConfig,
    *,
    keep: tuple[str, ...],
    cap: int,
    default_size: int = 100,
) -> tuple[int, list[Row]]:
    """(RecordCount, the page) of ``rows`` as Paging, Sorting and Columns ask, oldest change
    first (by ``ModifiedOn``) when no Sorting is given."""
    selection = ListQuery.from_body(
        body, default_size=default_size, cap=cap, cap_mode=config.page_size_cap_mode
    )
    if selection.sort_column is None:
        selection = attrs.evolve(selection, sort_column="ModifiedOn", descending=False)
    # Ties in the sort column come in id order.
    by_id = sorted(rows, key=lambda row: str(row.get(keep[0], "")))
    return selection.select(by_id, keep=keep, by_created=False)


def leads_modified(account: Account, body: Mapping[str, Any], config: EmulatorConfig) -> object:
    """``LeadManagement.svc/Leads.RecentlyModified``: the leads modified in the window, each a
    ``LeadPropertyList`` of ``{Attribute, Value}``, up to ``leads_page_size_cap`` a page."""
    records = _in_window(account.indexed("lead", config.index_lag), body, config, "ModifiedOn")
    count, page = _page(
        [record.row for record in records],
        body,
        config,
        keep=("ProspectID",),
        cap=config.leads_page_size_cap,
    )
    leads = [
        {"LeadPropertyList": [{"Attribute": key, "Value": value} for key, value in row.items()]}
        for row in page
    ]
    return {"RecordCount": count, "Leads": leads}


def activities_modified(
    account: Account, body: Mapping[str, Any], config: EmulatorConfig
) -> object:
    """``ProspectActivity.svc/RetrieveRecentlyModified``: the activities created or modified in
    the window, list key ``ProspectActivities``; ``mx_`` fields with ``IncludeCustomFields``."""
    parameter = _parameter(body)
    custom = str(parameter.get("IncludeCustomFields", "0")).strip().casefold() in ("1", "true")
    indexed = account.indexed("activity", config.index_lag)
    records = _in_window(indexed, body, config, "PAModifiedOn")
    name = "recent+custom" if custom else "recent"
    rows = [
        shaped(account.shapes, name, record, lambda r: recent_activity(r, custom_fields=custom))
        for record in records
    ]
    count, page = _page(rows, body, config, keep=("Id",), cap=config.page_size_cap)
    return {"RecordCount": count, "ProspectActivities": page}


def activities_of_event(
    account: Account, body: Mapping[str, Any], config: EmulatorConfig
) -> object:
    """``ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent``: one activity type
    (``Parameter.ActivityEvent``) modified in the window, list key ``List``."""
    parameter = _parameter(body)
    wanted = str(parameter.get("ActivityEvent", "")).strip()
    if not wanted:
        raise _invalid("Invalid Input! Parameter Name: ActivityEvent")
    indexed = [
        record
        for record in account.indexed("activity", config.index_lag)
        if str(record.row.get("ActivityEvent")) == wanted
    ]
    records = _in_window(indexed, body, config, "PAModifiedOn")
    rows = [shaped(account.shapes, "event", record, event_activity) for record in records]
    if parameter.get("RemoveEmptyValue") in (True, 1, "1", "true", "True"):
        rows = [{k: v for k, v in row.items() if v not in (None, "")} for row in rows]
    count, page = _page(rows, body, config, keep=("ProspectActivityId",), cap=config.page_size_cap)
    return {"RecordCount": count, "List": page}


_DATE_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "lte": lambda a, b: a <= b,
}


def _conditions(search: object) -> list[Mapping[str, Any]]:
    """The RowConditions of an AdvancedSearch JSON string."""
    if not isinstance(search, str) or not search.strip():
        raise _invalid("Invalid Input! Parameter Name: AdvancedSearch")
    try:
        document = json.loads(search)
        rows = [
            row
            for condition in document.get("Conditions", [])
            for row in condition.get("RowCondition", [])
        ]
    except (ValueError, AttributeError, TypeError):
        raise _invalid("Invalid Input! AdvancedSearch is not a valid search") from None
    if not all(isinstance(row, Mapping) for row in rows):
        raise _invalid("Invalid Input! AdvancedSearch is not a valid search")
    return rows


def _date_test(
    stored: str, compare: Callable[[float, float], bool], bound: float
) -> Callable[[Record], bool]:
    return lambda record: compare(_when(record.row.get(stored)), bound)


def _search_filter(
    conditions: list[Mapping[str, Any]], code: str, strict: bool
) -> Callable[[Record], bool]:
    """A test for the records matching the conditions: the event code restated (required when
    ``strict``), and ``CreatedOn``/``ModifiedOn`` compared with a UTC date."""
    tests: list[Callable[[Record], bool]] = []
    restated = False
    for row in conditions:
        name, operator, value = (
            row.get("LSO"),
            str(row.get("Operator", "")).casefold(),
            row.get("RSO"),
        )
        if name == "ActivityEvent" and operator == "eq" and str(value).strip() == code:
            restated = True
        elif name in ("CreatedOn", "ModifiedOn") and operator in _DATE_OPERATORS:
            bound = parse_date(value) if isinstance(value, str) else None
            if bound is None:
                raise _invalid(f"Invalid Input! {name} must be a date, got {value!r}")
            stored = "PACreatedOn" if name == "CreatedOn" else "PAModifiedOn"
            tests.append(_date_test(stored, _DATE_OPERATORS[operator], bound))
        elif name == "ActivityEvent":
            raise _invalid(SEARCH_MISMATCH)
        else:
            raise _invalid(
                f"the emulator's search takes ActivityEvent eq, and CreatedOn or ModifiedOn "
                f"with {', '.join(_DATE_OPERATORS)}; not {name!r} {operator!r}"
            )
    if strict and not restated:
        raise _invalid(SEARCH_MISMATCH)
    return lambda record: all(test(record) for test in tests)


def _event_code(value: object, name: str) -> str:
    code = str(value).strip() if value is not None else ""
    if not code.isdigit():
        raise _invalid(f"Invalid Input! Parameter Name: {name}")
    return code


def search_opportunities(
    account: Account, body: Mapping[str, Any], config: EmulatorConfig
) -> object:
    """``OpportunityManagement.svc/Retrieve/BySearchParameter``: the opportunities of type
    ``OpportunityEventCode`` matching ``AdvancedSearch``, answered ``{RecordCount, List}``."""
    code = _event_code(body.get("OpportunityEventCode"), "OpportunityEventCode")
    matches = _search_filter(_conditions(body.get("AdvancedSearch")), code, config.search_strict)
    id_key = config.search_id_key
    rows = [
        shaped(account.shapes, id_key, record, lambda r: searched_opportunity(r, id_key))
        for record in account.indexed("opportunity", config.index_lag)
        if str(record.row.get("OpportunityEvent")) == code and matches(record)
    ]
    if config.search_ignores_sorting:
        body = {key: value for key, value in body.items() if key != "Sorting"}
    count, page = _page(rows, body, config, keep=(id_key,), cap=config.page_size_cap)
    return {"RecordCount": count, "List": page}


def opportunities_by_id(
    account: Account, body: Mapping[str, Any], config: EmulatorConfig
) -> object:
    """``OpportunityManagement.svc/GetOpportunitiesById``: up to 2,000 ids per event code,
    answered as a list of ``{EventCode, RecordCount, Opportunities}``; unknown ids are absent."""
    searches = body.get("SearchParameters")
    if not isinstance(searches, list) or not all(isinstance(s, Mapping) for s in searches):
        raise _invalid("Invalid Input! Parameter Name: SearchParameters")
    with account.lock:
        by_id = {record.id: record for record in account.records("opportunity")}
    answer = []
    for search in searches:
        code = _event_code(search.get("EventCode"), "EventCode")
        ids = search.get("ProspectActivityId")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _invalid("Invalid Input! Parameter Name: ProspectActivityId")
        if len(ids) > _MOST_IDS:
            raise _invalid(f"Invalid Input! At most {_MOST_IDS} ProspectActivityId per EventCode")
        found = [
            by_id[i] for i in dict.fromkeys(ids)
            if i in by_id and str(by_id[i].row.get("OpportunityEvent")) == code
        ]  # fmt: skip
        rows = [searched_opportunity(record, "ProspectActivityId", "us") for record in found]
        columns = {"Columns": search["Columns"]} if search.get("Columns") is not None else {}
        narrowed = ListQuery.from_body(
            columns, default_size=max(len(rows), 1), cap=_MOST_IDS, cap_mode="clamp"
        )
        _, page = attrs.evolve(narrowed, sort_column=None).select(
            rows, keep=("ProspectActivityId",)
        )
        answer.append({"EventCode": code, "RecordCount": len(page), "Opportunities": page})
    return answer
