"""Typed records for the rows the API sends, and the cattrs converter that builds them.

A record is a typed, read-only view of one row, and it keeps the row itself:

- every standard key of the row has a typed attribute (the tables in
  `Opportunity` and `Activity` give the key behind each one);
- every other key (``mx_Custom_N``, ``O_mx_Custom_N``, keys this library does
  not know) is kept verbatim, in the row's order, in the mapping ``extra``;
- ``unstructure(record)`` gives back exactly the row the API sent: the same
  keys in the same order with the same values, odd ones included.

How the typed view reads a value (it never raises: a value it cannot read
becomes ``None`` there, while ``extra`` and ``unstructure`` keep it as sent):

- ``str`` (the required ids): the string as sent; ``""`` when the key is missing or holds no string
  (``null``, ``""`` or a number); filtering on ``!= ""`` finds rows without an id
- ``str | None`` (text): the string as sent; ``""``, ``null`` or a non-string give ``None``
- ``bool | None`` (flags): ``"0"``/``"1"`` (also ``"true"``/``"false"``, JSON ``true``/``false``,
  ``0``/``1``)
- ``int | None`` (numbers, codes, counts): a decimal integer string such as ``"12005"`` or
  ``"-3"``, or a JSON number without a fraction (``true``/``false`` read as 1/0, as Python compares
  them)
- ``float | None``: a decimal number string or a JSON number; ``NaN`` and infinities give ``None``
- ``datetime | None``: an aware UTC datetime from any date format in LEADSQUARED_API.md (see
  `parse_date`)

The record keeps its own shallow copy of the row (rows are flat JSON; a nested
object the API sent is shared, not copied), and ``unstructure`` returns a new
dict each time. The row is the record's source of truth: the attrs constructor
(all attributes plus ``row``, keyword-only) and ``attrs.evolve`` trust that the
typed attributes agree with it, and ``unstructure`` returns the row unchanged.

The converter is the library's own ``cattrs.Converter`` (the global one is never
touched): it holds a hook for each attribute type, and cattrs generates from them
each record class's hook; ``benchmarks/structuring.py`` measures what a page
costs next to ``json.loads`` of it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from itertools import filterfalse, repeat
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn_from_attrs, override

from ._dates import read_date

__all__ = [
    "Activity",
    "Opportunity",
    "structure",
    "structure_rows",
    "unstructure",
]

T = TypeVar("T")

_API_KEY = "leadsq_api_key"


def _dict_repr(mapping: Mapping[str, Any]) -> str:
    return repr(dict(mapping))


class _Record:
    """What both record classes share: the row they were built from, and ``extra``."""

    # __weakref__ lives here, not in each record class, so that a record class and its
    # plain twin (see _make_structure_hook) add the same slots and share one layout.
    __slots__ = ("__weakref__",)
    extra: Mapping[str, Any]
    _row: dict[str, Any]

    def extra_json(self, key: str) -> dict[str, Any] | list[Any] | None:
        """The custom field ``key`` decoded, when it holds a JSON object or array.

        Some custom fields carry a JSON document encoded as a string; ``extra``
        keeps that string verbatim, and this decodes it. Returns ``None`` when
        the key is missing or its value is not a string holding a JSON object or
        array. Never raises.
        """
        value = self.extra.get(key)
        if type(value) is not str or value.lstrip()[:1] not in ("{", "["):
            return None
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested beyond the stack
            return None
        return decoded if isinstance(decoded, (dict, list)) else None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy the row alone, and rebuild the typed view from it: ``extra``
        # is a read-only proxy, which cannot be pickled.
        return (structure, (self._row, type(self)))


@attrs.frozen(kw_only=True)
class Opportunity(_Record):
    """One opportunity of a lead, as ``GetOpportunitiesOfLead`` lists it.

    Build records with `structure` (the session does it for you). Records
    compare equal when their rows and typed views are equal, and hash by
    their typed view.

    | attribute | row key |
    |---|---|
    | ``opportunity_id`` | ``OpportunityId`` |
    | ``lead_id`` | ``ProspectId`` |
    | ``first_name`` | ``FirstName`` |
    | ``last_name`` | ``LastName`` |
    | ``email_address`` | ``EmailAddress`` |
    | ``phone`` | ``Phone`` |
    | ``do_not_call`` | ``DoNotCall`` |
    | ``do_not_email`` | ``DoNotEmail`` |
    | ``lead_name`` | ``LeadName`` |
    | ``lead_owner`` | ``LeadOwner`` (a name) |
    | ``opportunity_event_type`` | ``OpportunityEventType`` |
    | ``opportunity_event`` | ``OpportunityEvent`` (the opportunity type's code) |
    | ``opportunity_note`` | ``OpportunityNote`` |
    | ``score`` | ``Score`` |
    | ``created_on`` | ``PACreatedOn`` |
    | ``modified_on`` | ``PAModifiedOn`` |
    | ``ip_latitude`` | ``IP_Latitude`` |
    | ``ip_longitude`` | ``IP_Longitude`` |
    | ``created_by_name`` | ``PACreatedByName`` |
    | ``status`` | ``Status`` |
    | ``owner_id`` | ``Owner`` (a user id) |
    | ``owner_name`` | ``OwnerName`` |
    | ``total`` | ``Total`` |
    | ``extra`` | every other key, verbatim |
    """

    opportunity_id: str = attrs.field(metadata={_API_KEY: "OpportunityId"})
    lead_id: str = attrs.field(metadata={_API_KEY: "ProspectId"})
    first_name: str | None = attrs.field(metadata={_API_KEY: "FirstName"})
    last_name: str | None = attrs.field(metadata={_API_KEY: "LastName"})
    email_address: str | None = attrs.field(metadata={_API_KEY: "EmailAddress"})
    phone: str | None = attrs.field(metadata={_API_KEY: "Phone"})
    do_not_call: bool | None = attrs.field(metadata={_API_KEY: "DoNotCall"})
    do_not_email: bool | None = attrs.field(metadata={_API_KEY: "DoNotEmail"})
    lead_name: str | None = attrs.field(metadata={_API_KEY: "LeadName"})
    lead_owner: str | None = attrs.field(metadata={_API_KEY: "LeadOwner"})
    opportunity_event_type: int | None = attrs.field(metadata={_API_KEY: "OpportunityEventType"})
    opportunity_event: int | None = attrs.field(metadata={_API_KEY: "OpportunityEvent"})
    opportunity_note: str | None = attrs.field(metadata={_API_KEY: "OpportunityNote"})
    score: int | None = attrs.field(metadata={_API_KEY: "Score"})
    created_on: datetime | None = attrs.field(metadata={_API_KEY: "PACreatedOn"})
    modified_on: datetime | None = attrs.field(metadata={_API_KEY: "PAModifiedOn"})
    ip_latitude: float | None = attrs.field(metadata={_API_KEY: "IP_Latitude"})
    ip_longitude: float | None = attrs.field(metadata={_API_KEY: "IP_Longitude"})
    created_by_name: str | None = attrs.field(metadata={_API_KEY: "PACreatedByName"})
    status: str | None = attrs.field(metadata={_API_KEY: "Status"})
    owner_id: str | None = attrs.field(metadata={_API_KEY: "Owner"})
    owner_name: str | None = attrs.field(metadata={_API_KEY: "OwnerName"})
    total: int | None = attrs.field(metadata={_API_KEY: "Total"})
    extra: Mapping[str, Any] = attrs.field(hash=False, repr=_dict_repr)
    """Every key of the row without a typed attribute, verbatim, in the row's order."""
    _row: dict[str, Any] = attrs.field(hash=False, repr=False)


@attrs.frozen(kw_only=True)
class Activity(_Record):
    """One activity of an opportunity, as ``GetActivitiesOfOpportunity`` lists it.

    Build records with `structure` (the session does it for you). Records
    compare equal when their rows and typed views are equal, and hash by
    their typed view. The ``O_`` keys describe the opportunity the activity
    belongs to.

    | attribute | row key |
    |---|---|
    | ``activity_id`` | ``ProspectActivityId`` |
    | ``lead_id`` | ``ProspectId`` |
    | ``first_name`` | ``FirstName`` |
    | ``last_name`` | ``LastName`` |
    | ``email_address`` | ``EmailAddress`` |
    | ``phone`` | ``Phone`` |
    | ``do_not_call`` | ``DoNotCall`` |
    | ``do_not_email`` | ``DoNotEmail`` |
    | ``lead_name`` | ``LeadName`` |
    | ``lead_owner`` | ``LeadOwner`` (a name) |
    | ``activity_type`` | ``ActivityType`` |
    | ``activity_event`` | ``ActivityEvent`` (the activity type's code) |
    | ``score`` | ``Score`` |
    | ``created_on`` | ``PACreatedOn`` |
    | ``modified_on`` | ``PAModifiedOn`` |
    | ``activity_event_note`` | ``ActivityEvent_Note`` |
    | ``ip_latitude`` | ``IP_Latitude`` |
    | ``ip_longitude`` | ``IP_Longitude`` |
    | ``created_by_name`` | ``PACreatedByName`` |
    | ``status`` | ``Status`` |
    | ``opportunity_activity_id`` | ``O_ProspectActivityId`` |
    | ``total`` | ``Total`` |
    | ``opportunity_activity_event_name`` | ``O_ActivityEventName`` |
    | ``opportunity_activity_event`` | ``O_ActivityEvent`` |
    | ``opportunity_status`` | ``O_Status`` |
    | ``opportunity_owner_id`` | ``O_Owner`` (a user id) |
    | ``extra`` | every other key (``O_mx_Custom_N`` too), verbatim |
    """

    activity_id: str = attrs.field(metadata={_API_KEY: "ProspectActivityId"})
    lead_id: str = attrs.field(metadata={_API_KEY: "ProspectId"})
    first_name: str | None = attrs.field(metadata={_API_KEY: "FirstName"})
    last_name: str | None = attrs.field(metadata={_API_KEY: "LastName"})
    email_address: str | None = attrs.field(metadata={_API_KEY: "EmailAddress"})
    phone: str | None = attrs.field(metadata={_API_KEY: "Phone"})
    do_not_call: bool | None = attrs.field(metadata={_API_KEY: "DoNotCall"})
    do_not_email: bool | None = attrs.field(metadata={_API_KEY: "DoNotEmail"})
    lead_name: str | None = attrs.field(metadata={_API_KEY: "LeadName"})
    lead_owner: str | None = attrs.field(metadata={_API_KEY: "LeadOwner"})
    activity_type: int | None = attrs.field(metadata={_API_KEY: "ActivityType"})
    activity_event: int | None = attrs.field(metadata={_API_KEY: "ActivityEvent"})
    score: int | None = attrs.field(metadata={_API_KEY: "Score"})
    created_on: datetime | None = attrs.field(metadata={_API_KEY: "PACreatedOn"})
    modified_on: datetime | None = attrs.field(metadata={_API_KEY: "PAModifiedOn"})
    activity_event_note: str | None = attrs.field(metadata={_API_KEY: "ActivityEvent_Note"})
    ip_latitude: float | None = attrs.field(metadata={_API_KEY: "IP_Latitude"})
    ip_longitude: float | None = attrs.field(metadata={_API_KEY: "IP_Longitude"})
    created_by_name: str | None = attrs.field(metadata={_API_KEY: "PACreatedByName"})
    status: str | None = attrs.field(metadata={_API_KEY: "Status"})
    opportunity_activity_id: str | None = attrs.field(metadata={_API_KEY: "O_ProspectActivityId"})
    total: int | None = attrs.field(metadata={_API_KEY: "Total"})
    opportunity_activity_event_name: str | None = attrs.field(
        metadata={_API_KEY: "O_ActivityEventName"}
    )
    opportunity_activity_event: int | None = attrs.field(metadata={_API_KEY: "O_ActivityEvent"})
    opportunity_status: str | None = attrs.field(metadata={_API_KEY: "O_Status"})
    opportunity_owner_id: str | None = attrs.field(metadata={_API_KEY: "O_Owner"})
    extra: Mapping[str, Any] = attrs.field(hash=False, repr=_dict_repr)
    """Every key of the row without a typed attribute, verbatim, in the row's order."""
    _row: dict[str, Any] = attrs.field(hash=False, repr=False)


_RECORD_CLASSES: tuple[type[Any], ...] = (Opportunity, Activity)

# --- reading one value: the converter's hook for each attribute type -------------------
# Each takes the value the row holds and the attribute's type (which cattrs passes and
# they ignore), and never raises.
#
# Number texts are memoised: scores, codes, counts and coordinates repeat. Only exact
# strings are looked up in the memos and stored there: a value of another type that
# compares equal to one (Decimal(5) == 5, UserString("5") == "5") would otherwise read
# as whatever was read before it.

_FLAGS: dict[str, bool] = {
    "0": False,
    "1": True,
    "false": False,
    "true": True,
    "False": False,
    "True": True,
}
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_MEMO_SIZE = 4096
_int_memo: dict[str, int | None] = {}
_float_memo: dict[str, float | None] = {}


def _remember(memo: dict[str, T], text: str, number: T) -> T:
    if len(memo) >= _MEMO_SIZE:  # a crude bound: the values that repeat come back at once
        memo.clear()
    memo[text] = number
    return number


def _read_id(value: object, _: object) -> str:
    return value if type(value) is str else ""


def _read_text(value: object, _: object) -> str | None:
    return value if type(value) is str and value else None


def _read_flag(value: object, _: object) -> bool | None:
    if type(value) is str:
        return _FLAGS.get(value)
    if type(value) in (bool, int, float) and value in (0, 1):
        return bool(value)
    return None


def _read_int(value: object, _: object) -> int | None:
    # JSON gives str, int, float or bool; anything else holds no number.
    if type(value) is str:
        try:
            return _int_memo[value]
        except KeyError:
            number = int(value) if _INTEGER.fullmatch(value) else None
            return _remember(_int_memo, value, number)
    if type(value) is float:
        return int(value) if value.is_integer() else None
    if type(value) is int or type(value) is bool:
        return int(value)
    return None


def _read_float(value: object, _: object) -> float | None:
    if type(value) is str:
        try:
            return _float_memo[value]
        except KeyError:
            number = _finite(float(value)) if _DECIMAL.fullmatch(value) else None
            return _remember(_float_memo, value, number)
    if type(value) is float:
        return _finite(value)
    if type(value) is int or type(value) is bool:
        try:
            return float(value)
        except OverflowError:  # an integer beyond 1e308
            return None
    return None


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None


# The library's own converter (the global one is never touched): how each attribute type
# is read, and for each record class the hook that builds records from rows.
_converter = cattrs.Converter(detailed_validation=False, forbid_extra_keys=False)
_converter.register_structure_hook(str, _read_id)
_converter.register_structure_hook(str | None, _read_text)
_converter.register_structure_hook(bool | None, _read_flag)
_converter.register_structure_hook(int | None, _read_int)
_converter.register_structure_hook(float | None, _read_float)
_converter.register_structure_hook(datetime | None, read_date)


# --- the structure hook of a record class ----------------------------------------------
# cattrs generates, with make_dict_structure_fn_from_attrs, a function that reads each
# typed attribute from its row key with the hook of its type. The function fills a plain
# slotted shell of the record class, setting every attribute as cattrs sets the fields
# that take no part in __init__ (they are listed here as init=False); the wrapper below
# adds extra and the row, and turns the shell into the record class. Both classes add
# the same slots to the same base, so CPython allows the __class__ change. Calling the
# frozen attrs __init__ instead (make_dict_structure_fn on the record class) doubles the
# cost: it takes every attribute as a keyword and sets each through object.__setattr__.


def _make_structure_hook(cls: type[Any]) -> Callable[[Mapping[str, Any], object], Any]:
    attrs.resolve_types(cls)
    typed = [field for field in attrs.fields(cls) if _API_KEY in field.metadata]
    shell = type(
        f"_{cls.__name__}Shell",
        cls.__bases__,
        {"__slots__": cls.__dict__["__slots__"], "__init__": object.__init__},
    )
    renames: dict[str, Any] = {
        field.name: override(rename=field.metadata[_API_KEY]) for field in typed
    }
    fill: Callable[[Mapping[str, Any]], Any] = make_dict_structure_fn_from_attrs(
        [field.evolve(init=False) for field in typed],
        shell,
        _converter,
        _cattrs_include_init_false=True,
        **renames,
    )
    is_typed_key = frozenset(field.metadata[_API_KEY] for field in typed).__contains__
    every_key_null = dict.fromkeys(field.metadata[_API_KEY] for field in typed)

    def structure_row(row: Mapping[str, Any], _: object = None) -> Any:
        if type(row) is not dict:
            row = _as_dict(row)
        try:
            record: Any = fill(row)
        except KeyError:  # a standard key is missing: it reads as null
            record = fill({**every_key_null, **row})
        record.extra = MappingProxyType({key: row[key] for key in filterfalse(is_typed_key, row)})
        record._row = row.copy()
        record.__class__ = cls
        return record

    return structure_row


def _as_dict(row: object) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise TypeError(f"a row must be a mapping, not {type(row).__name__}")
    return dict(row)


def _unstructure_record(record: Opportunity | Activity) -> dict[str, Any]:
    return record._row.copy()


for _cls in _RECORD_CLASSES:
    _converter.register_structure_hook(_cls, _make_structure_hook(_cls))
    _converter.register_unstructure_hook(_cls, _unstructure_record)


def _check_record_class(cls: object) -> None:
    if cls not in _RECORD_CLASSES:
        raise TypeError(f"{cls!r} is not a record class (Opportunity or Activity)")


def structure(row: Mapping[str, Any], cls: type[T]) -> T:
    """Build a record of class ``cls`` from one row, as the API sends it.

    The record keeps a copy of the row (a shallow one: rows are flat JSON), so
    changing ``row`` afterwards does not change the record. Values the typed
    view cannot read become ``None`` there and never raise.

    Raises:
        TypeError: ``row`` is not a mapping, or ``cls`` is not `Opportunity`
            or `Activity`.
    """
    _check_record_class(cls)
    return _converter.structure(row, cls)


def structure_rows(rows: Iterable[Mapping[str, Any]], cls: type[T]) -> list[T]:
    """Build a record of class ``cls`` from each row of a page, in order.

    The same as ``[structure(row, cls) for row in rows]``, faster: the
    paginator's path for every page.

    Raises:
        TypeError: a row is not a mapping, or ``cls`` is not `Opportunity`
            or `Activity`.
    """
    _check_record_class(cls)
    return list(map(_converter.get_structure_hook(cls), rows, repeat(cls)))


def unstructure(record: Opportunity | Activity) -> dict[str, Any]:
    """The row a record was built from: exactly the dict the API sent.

    Same keys, same order, same values (including those the typed view could
    not read). Returns a new dict on every call; changing it does not change
    the record.

    Raises:
        TypeError: ``record`` is not an `Opportunity` or `Activity`.
    """
    _check_record_class(type(record))
    result: dict[str, Any] = _converter.unstructure(record)
    return result
