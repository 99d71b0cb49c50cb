"""The tables' rows: each row as the API sent it, its standard fields typed, checked for
its primary key, and its keys kept apart once dlt normalizes them into column names."""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from dlt.common.normalizers.json.relational import DataItemNormalizer
from dlt.common.normalizers.naming import NamingConvention

from leadsq_async import Activity, Lead, LeadResult, Opportunity, unstructure

__all__ = [
    "ACTIVITY_COLUMNS",
    "OPPORTUNITY_COLUMNS",
    "KeyGuard",
    "activity_row",
    "missing_primary_key",
    "opportunity_row",
    "typed_row",
]

logger = logging.getLogger("leadsq_async")

_DLT_TYPES: dict[type, str] = {
    bool: "bool",
    int: "bigint",
    float: "double",
    datetime: "timestamp",
    str: "text",
}


def _typed_keys(cls: type[Opportunity | Activity]) -> dict[str, tuple[str, type]]:
    """Row key -> (attribute, type) for each typed field of a record class."""
    hints = typing.get_type_hints(cls)
    return {
        key: (attribute, (typing.get_args(hints[attribute]) or (hints[attribute],))[0])
        for key, attribute in cls.typed_keys().items()  # X of X | None
    }


def _column_hints(cls: type[Opportunity | Activity], primary_key: str) -> dict[str, dict[str, Any]]:
    return {
        key: {"data_type": _DLT_TYPES[kind], "nullable": key != primary_key}
        for key, (_, kind) in _typed_keys(cls).items()
    }


_OPPORTUNITY_TYPED = [
    (key, attribute)
    for key, (attribute, kind) in _typed_keys(Opportunity).items()
    if kind is not str
]
_ACTIVITY_TYPED = [
    (key, attribute) for key, (attribute, kind) in _typed_keys(Activity).items() if kind is not str
]
OPPORTUNITY_COLUMNS = _column_hints(Opportunity, "OpportunityId")
ACTIVITY_COLUMNS = {
    "OpportunityId": {"data_type": "text", "nullable": False},
    **_column_hints(Activity, "ProspectActivityId"),
}


def typed_row(
    record: Opportunity | Activity | Lead, typed: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """The row the API sent, with each standard field's value as the record reads it.

    A value the record cannot read stays as sent (dlt then keeps it in a variant
    column), except an empty string, which is no value.
    """
    row = unstructure(record)
    for key, attribute in typed:
        if key in row:
            value = getattr(record, attribute)
            if value is not None:
                row[key] = value
            elif row[key] == "":
                row[key] = None
    return row


def opportunity_row(record: Opportunity) -> dict[str, Any]:
    """The ``opportunities`` row of an opportunity: every key as sent, standard ones typed."""
    return typed_row(record, _OPPORTUNITY_TYPED)


def activity_row(opportunity_id: str, record: Activity) -> dict[str, Any]:
    """The ``activities`` row of an activity: ``OpportunityId`` first, then the row as sent.

    Activity rows do not always say which opportunity they belong to
    (``O_ProspectActivityId`` is often empty), so the crawl's own knowledge is added.
    """
    row = {"OpportunityId": opportunity_id}
    row.update(typed_row(record, _ACTIVITY_TYPED))
    row["OpportunityId"] = opportunity_id
    return row


def missing_primary_key(result: LeadResult) -> Exception | None:
    """Why ``result``'s rows cannot be loaded: a row without its primary key (absent,
    null or empty), which dlt would refuse for the whole load; None when every row has it."""
    for record in result.records:
        if not record.opportunity_id:
            return ValueError(
                f"an opportunity of lead {result.lead_id} came without its OpportunityId, "
                "the opportunities table's primary key: the lead is not loaded"
            )
    for opportunity_id, activities in result.activities.items():
        if any(not activity.activity_id for activity in activities):
            return ValueError(
                f"an activity of opportunity {opportunity_id} (lead {result.lead_id}) came "
                "without its ProspectActivityId, the activities table's primary key: the "
                "lead is not loaded"
            )
    return None


#: What a renamed key gets: ``_2`` (then ``_3``, ...) after its name.
RENAMED_SUFFIX = "_{}"


class KeyGuard:
    """Renames the keys of a row that dlt would make one column, so that none is lost.

    dlt names a column after its key, normalized (``mx_Custom_1`` and ``mx_custom_1`` are
    both ``mx_custom_1``), and of keys that collide keeps one value. Here the standard
    fields (``protected``: the typed keys and the primary key) keep their name, other keys
    keep theirs in the row's order, and each later key that collides gets ``_2`` after its
    name (``_3`` if that collides too): ``mx_custom_1`` beside ``mx_Custom_1`` loads as
    column ``mx_custom_1_2``. Each renamed key is logged once per guard (one a load).
    """

    def __init__(self, naming: NamingConvention, protected: Iterable[str]) -> None:
        self._naming = naming
        self._protected = frozenset(protected)
        self._columns: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()

    def column(self, key: str) -> str:
        """The column dlt makes of ``key``."""
        column = self._columns.get(key)
        if column is None:
            blank = not key or key.isspace()
            name = DataItemNormalizer.EMPTY_KEY_IDENTIFIER if blank else key
            column = self._columns[key] = self._naming.normalize_path(name)
        return column

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row``, with the keys that collide renamed (``row`` itself when none does)."""
        column = self.column
        if len({column(key) for key in row}) == len(row):
            return row
        taken = {column(key) for key in row if key in self._protected}
        renamed: dict[str, str] = {}
        for key in row:
            if key in self._protected:
                continue
            if column(key) not in taken:
                taken.add(column(key))
                continue
            number = 2
            while column(new := key + RENAMED_SUFFIX.format(number)) in taken or new in row:
                number += 1
            taken.add(column(new))
            renamed[key] = new
            self._warn(key, new)
        return {renamed.get(key, key): value for key, value in row.items()}

    def _warn(self, key: str, new: str) -> None:
        if (key, new) in self._warned:
            return
        self._warned.add((key, new))
        logger.warning(
            "a row holds key %r and another that dlt makes the same column, %r: %r is loaded as %r",
            key,
            self.column(key),
            key,
            new,
        )
