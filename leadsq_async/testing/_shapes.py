"""The rows the account-wide endpoints send, made from the account's records: an activity as
``RetrieveRecentlyModified`` or ``RetrieveByActivityEvent`` sends it, an opportunity as the
search or ``GetOpportunitiesById`` does, dates rewritten as the samples show them."""

from __future__ import annotations

from collections.abc import Callable

from leadsq_async.testing._data import Record
from leadsq_async.testing._dates import DateStyle, format_date, parse_date
from leadsq_async.testing._rows import ACTIVITY_EVENTS, Row

# The per-lead row keys an opportunity's search row leaves out (its dates are renamed).
_NOT_IN_SEARCH = frozenset({"PACreatedOn", "PAModifiedOn", "Total", "OpportunityId"})


def plain_date(value: object) -> object:
    """A stored date as the feeds send it, UTC ``YYYY-MM-DD HH:MM:SS`` (others as stored)."""
    when = parse_date(value) if isinstance(value, str) else None
    return value if when is None else format_date(int(when), "plain")


def number(value: object) -> object:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else value


def custom(row: Row) -> Row:
    return {key: value for key, value in row.items() if key.startswith("mx_")}


def recent_activity(record: Record, *, custom_fields: bool) -> Row:
    """An activity as ``RetrieveRecentlyModified`` sends it."""
    row = record.row
    code = number(row.get("ActivityEvent"))
    served: Row = {
        "Id": record.id,
        "EventCode": code,
        "EventName": ACTIVITY_EVENTS.get(str(code), ""),
        "ActivityScore": number(row.get("Score") or 0),
        "CreatedOn": plain_date(row.get("PACreatedOn")),
        "ModifiedOn": plain_date(row.get("PAModifiedOn")),
        "ActivityType": number(row.get("ActivityType")),
        "Type": "Inbound",
        "IsEmailType": False,
        "SessionId": record.id,
        "RelatedProspectId": record.lead_id,
        "Note": row.get("ActivityEvent_Note"),
        "Status": row.get("Status"),
    }
    if custom_fields:
        served.update(custom(row))
    return served


def event_activity(record: Record) -> Row:
    """An activity as ``CustomActivity/RetrieveByActivityEvent`` sends it (all text)."""
    row = record.row
    served: Row = {
        "ProspectActivityId": record.id,
        "RelatedProspectId": record.lead_id,
        "ActivityType": row.get("ActivityType"),
        "ActivityEvent": row.get("ActivityEvent"),
        "Status": row.get("Status"),
        "ActivityEvent_Note": row.get("ActivityEvent_Note"),
        "Score": row.get("Score"),
    }
    served.update(custom(row))
    served.update(
        CreatedOn=plain_date(row.get("PACreatedOn")),
        CreatedByName=row.get("PACreatedByName"),
        ModifiedOn=plain_date(row.get("PAModifiedOn")),
    )
    return served


def searched_opportunity(record: Record, id_key: str, date_style: DateStyle = "plain") -> Row:
    """An opportunity as the search (or, in US dates, GetOpportunitiesById) sends it."""
    served: Row = {id_key: record.id, "RelatedProspectId": record.lead_id}
    served.update((k, v) for k, v in record.row.items() if k not in _NOT_IN_SEARCH)
    for key, stored in (("CreatedOn", "PACreatedOn"), ("ModifiedOn", "PAModifiedOn")):
        value = record.row.get(stored)
        when = parse_date(value) if isinstance(value, str) else None
        served[key] = value if when is None else format_date(int(when), date_style)
    return served


def shaped(
    cache: dict[tuple[str, str], tuple[Row, Row]],
    name: str,
    record: Record,
    shape: Callable[[Record], Row],
) -> Row:
    """``shape(record)``, made once per version of the record's row and kept in ``cache``
    (rows are replaced, never changed in place, so the row object names its version)."""
    key = (name, record.id)
    cached = cache.get(key)
    if cached is None or cached[0] is not record.row:
        cached = cache[key] = (record.row, shape(record))
    return cached[1]
