"""The rows of the account-wide tables: a lead, an opportunity or an activity as the feeds
send it, its standard fields typed as in the per-lead source (under whichever key the feed
uses), its primary key set, and ``_lsq_deleted_at`` null while it is live."""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any

from dlt.common.normalizers.naming import NamingConvention

from leadsq_async import Activity, Lead, Opportunity

from .rows import KeyGuard, typed_row

__all__ = [
    "DELETED_AT",
    "FEED_ACTIVITY_COLUMNS",
    "FEED_OPPORTUNITY_COLUMNS",
    "LEAD_COLUMNS",
    "AccountRows",
    "feed_activity_row",
    "feed_opportunity_row",
    "lead_row",
]

#: The column set on a row whose id the account no longer serves (UTC; null while live).
DELETED_AT = "_lsq_deleted_at"

# Where the feeds name a typed field otherwise than the per-lead endpoints (the records read
# either key; see the record classes' tables).
_FEED_KEYS = {
    "PACreatedOn": "CreatedOn",
    "PAModifiedOn": "ModifiedOn",
    "ActivityEvent": "EventCode",
    "ProspectId": "RelatedProspectId",
}

_DLT_TYPES: dict[type, str] = {
    bool: "bool",
    int: "bigint",
    float: "double",
    datetime: "timestamp",
}

Record = Lead | Opportunity | Activity


def _typed(cls: type[Record]) -> list[tuple[tuple[str, ...], str, str]]:
    """(row keys, attribute, dlt type) of each typed field of ``cls`` that is not text."""
    hints = typing.get_type_hints(cls)
    typed: list[tuple[tuple[str, ...], str, str]] = []
    for key, attribute in cls.typed_keys().items():
        kind = (typing.get_args(hints[attribute]) or (hints[attribute],))[0]
        if kind in _DLT_TYPES:
            keys: tuple[str, ...] = (key, _FEED_KEYS[key]) if key in _FEED_KEYS else (key,)
            typed.append((keys, attribute, _DLT_TYPES[kind]))
    return typed


_LEAD_TYPED = _typed(Lead)
_OPPORTUNITY_TYPED = _typed(Opportunity)
_ACTIVITY_TYPED = _typed(Activity)


def _columns(
    typed: list[tuple[tuple[str, ...], str, str]], primary_key: str
) -> dict[str, dict[str, Any]]:
    columns: dict[str, dict[str, Any]] = {primary_key: {"data_type": "text", "nullable": False}}
    for keys, _, data_type in typed:
        for key in keys:
            columns[key] = {"data_type": data_type, "nullable": True}
    columns[DELETED_AT] = {"data_type": "timestamp", "nullable": True}
    return columns


LEAD_COLUMNS = _columns(_LEAD_TYPED, "ProspectID")
FEED_OPPORTUNITY_COLUMNS = _columns(_OPPORTUNITY_TYPED, "OpportunityId")
FEED_ACTIVITY_COLUMNS = _columns(_ACTIVITY_TYPED, "ProspectActivityId")


def _typed_row(
    record: Record, typed: list[tuple[tuple[str, ...], str, str]], primary_key: str, key_value: str
) -> dict[str, Any]:
    """The row as the per-lead source types it (under each key the feed may use), its primary
    key set, and not marked deleted."""
    row = typed_row(record, [(key, attribute) for keys, attribute, _ in typed for key in keys])
    row[primary_key] = key_value
    row[DELETED_AT] = None
    return row


def lead_row(lead: Lead) -> dict[str, Any]:
    """The ``leads`` row of a lead of the leads feed."""
    return _typed_row(lead, _LEAD_TYPED, "ProspectID", lead.lead_id)


def feed_opportunity_row(opportunity: Opportunity) -> dict[str, Any]:
    """The ``opportunities`` row of an opportunity of the search: its id also under
    ``OpportunityId``, the table's primary key."""
    return _typed_row(opportunity, _OPPORTUNITY_TYPED, "OpportunityId", opportunity.opportunity_id)


def feed_activity_row(activity: Activity, opportunity_id: str | None = None) -> dict[str, Any]:
    """The ``activities`` row of an activity of a feed: its id also under
    ``ProspectActivityId`` (``RetrieveRecentlyModified`` sends ``Id``), and the id of the
    opportunity it was fetched through, if any, under ``OpportunityId``."""
    row = _typed_row(activity, _ACTIVITY_TYPED, "ProspectActivityId", activity.activity_id)
    if opportunity_id is not None:
        row["OpportunityId"] = opportunity_id
    return row


class AccountRows:
    """The rows of one run, each key kept apart once dlt makes it a column name: a key that
    would collide with another is renamed (`KeyGuard`), and the primary key, the typed fields
    and the columns this source adds are never the one renamed."""

    def __init__(self, naming: NamingConvention) -> None:
        self._leads = KeyGuard(naming, LEAD_COLUMNS)
        self._opportunities = KeyGuard(naming, FEED_OPPORTUNITY_COLUMNS)
        self._activities = KeyGuard(naming, [*FEED_ACTIVITY_COLUMNS, "OpportunityId"])

    def lead(self, lead: Lead) -> dict[str, Any]:
        return self._leads(lead_row(lead))

    def opportunity(self, opportunity: Opportunity) -> dict[str, Any]:
        return self._opportunities(feed_opportunity_row(opportunity))

    def activity(self, activity: Activity, opportunity_id: str | None = None) -> dict[str, Any]:
        return self._activities(feed_activity_row(activity, opportunity_id))
