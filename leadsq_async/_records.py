"""Typed records for the rows the API sends, and the cattrs converter that builds them.

A record (`Opportunity`, `Activity`) is a typed, read-only view of one row that
keeps the row itself: typed attributes for the standard keys (reading never
raises: a value that cannot be read is ``None`` there), every other key verbatim
in ``extra``, and ``unstructure(record)`` giving back exactly the row sent. The
converter is the library's own, its hooks generated once per class; how values
read and how records are built: docs/records.md.
"""

from __future__ import annotations

import inspect
import json
import linecache
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from ._dates import parse_date
from ._readers import FLAGS, float_memo, int_memo, read_flag, read_float, read_int

__all__ = ["Activity", "Opportunity", "is_record_class", "make_structure_hook", "row_of"]

T = TypeVar("T")

_API_KEY = "leadsq_api_key"
# Other names of the same field in other answers, read when the row lacks the first.
_ALSO = "leadsq_api_also"


def _dict_repr(mapping: Mapping[str, Any]) -> str:
    return repr(dict(mapping))


def _own_fields_first(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    # attrs lists inherited fields first; a record's repr opens with its own (its id
    # first), then the fields every row carries, then extra.
    own = inspect.get_annotations(cls)
    return sorted(
        fields, key=lambda field: (field.name in ("extra", "_row"), field.name not in own)
    )


# The bases are never compared or shown: each record class makes its own __eq__, __hash__
# and __repr__, so the bases' are not made (half of what attrs spends on each).
@attrs.frozen(kw_only=True, field_transformer=_own_fields_first, repr=False, eq=False)
class _RowRecord:
    """What every record class shares: ``extra`` and the row itself."""

    extra: Mapping[str, Any] = attrs.field(hash=False, repr=_dict_repr)
    """Every key of the row without a typed attribute, verbatim, in the row's order."""
    _row: dict[str, Any] = attrs.field(hash=False, repr=False)

    @classmethod
    def typed_keys(cls) -> dict[str, str]:
        """The row keys read into typed attributes: row key -> attribute name, in field order.

        Every other key of a row is kept in ``extra``, verbatim.
        """
        return {
            field.metadata[_API_KEY]: field.name
            for field in attrs.fields(cls)
            if _API_KEY in field.metadata
        }

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
        return (_rebuild, (self._row, type(self)))


@attrs.frozen(kw_only=True, field_transformer=_own_fields_first, repr=False, eq=False)
class _Record(_RowRecord):
    """What both record classes share: the fields every row carries, extra, the row.

    Where the feeds name a field otherwise, the typed attribute reads the first of
    its keys the row has (``ProspectId``, else ``RelatedProspectId``); the keys it
    did not read stay in ``extra``.
    """

    lead_id: str = attrs.field(metadata={_API_KEY: "ProspectId", _ALSO: ("RelatedProspectId",)})
    first_name: str | None = attrs.field(metadata={_API_KEY: "FirstName"})
    last_name: str | None = attrs.field(metadata={_API_KEY: "LastName"})
    email_address: str | None = attrs.field(metadata={_API_KEY: "EmailAddress"})
    phone: str | None = attrs.field(metadata={_API_KEY: "Phone"})
    do_not_call: bool | None = attrs.field(metadata={_API_KEY: "DoNotCall"})
    do_not_email: bool | None = attrs.field(metadata={_API_KEY: "DoNotEmail"})
    lead_name: str | None = attrs.field(metadata={_API_KEY: "LeadName"})
    lead_owner: str | None = attrs.field(metadata={_API_KEY: "LeadOwner"})
    score: int | None = attrs.field(metadata={_API_KEY: "Score"})
    created_on: datetime | None = attrs.field(
        metadata={_API_KEY: "PACreatedOn", _ALSO: ("CreatedOn",)}
    )
    modified_on: datetime | None = attrs.field(
        metadata={_API_KEY: "PAModifiedOn", _ALSO: ("ModifiedOn",)}
    )
    ip_latitude: float | None = attrs.field(metadata={_API_KEY: "IP_Latitude"})
    ip_longitude: float | None = attrs.field(metadata={_API_KEY: "IP_Longitude"})
    created_by_name: str | None = attrs.field(metadata={_API_KEY: "PACreatedByName"})
    status: str | None = attrs.field(metadata={_API_KEY: "Status"})
    total: int | None = attrs.field(metadata={_API_KEY: "Total"})


@attrs.frozen(kw_only=True, field_transformer=_own_fields_first)
class Opportunity(_Record):
    """One opportunity of a lead, as ``GetOpportunitiesOfLead`` lists it.

    Build records with `structure` (the session does it for you). Records
    compare equal when their rows and typed views are equal, and hash by
    their typed view.

    | attribute | row key |
    |---|---|
    | ``opportunity_id`` | ``OpportunityId`` (the feeds: ``ProspectActivityId``) |
    | ``opportunity_event_type`` | ``OpportunityEventType`` |
    | ``opportunity_event`` | ``OpportunityEvent`` (the opportunity type's code) |
    | ``opportunity_note`` | ``OpportunityNote`` |
    | ``owner_id`` | ``Owner`` (a user id) |
    | ``owner_name`` | ``OwnerName`` |
    | ``lead_id`` | ``ProspectId`` (the feeds: ``RelatedProspectId``) |
    | ``first_name`` | ``FirstName`` |
    | ``last_name`` | ``LastName`` |
    | ``email_address`` | ``EmailAddress`` |
    | ``phone`` | ``Phone`` |
    | ``do_not_call`` | ``DoNotCall`` |
    | ``do_not_email`` | ``DoNotEmail`` |
    | ``lead_name`` | ``LeadName`` |
    | ``lead_owner`` | ``LeadOwner`` (a name) |
    | ``score`` | ``Score`` |
    | ``created_on`` | ``PACreatedOn`` (the feeds: ``CreatedOn``) |
    | ``modified_on`` | ``PAModifiedOn`` (the feeds: ``ModifiedOn``) |
    | ``ip_latitude`` | ``IP_Latitude`` |
    | ``ip_longitude`` | ``IP_Longitude`` |
    | ``created_by_name`` | ``PACreatedByName`` |
    | ``status`` | ``Status`` |
    | ``total`` | ``Total`` |
    | ``extra`` | every other key, verbatim |

    The attributes from ``lead_id`` to ``total`` are those of an `Activity` too.
    """

    opportunity_id: str = attrs.field(
        metadata={_API_KEY: "OpportunityId", _ALSO: ("ProspectActivityId",)}
    )
    opportunity_event_type: int | None = attrs.field(metadata={_API_KEY: "OpportunityEventType"})
    opportunity_event: int | None = attrs.field(metadata={_API_KEY: "OpportunityEvent"})
    opportunity_note: str | None = attrs.field(metadata={_API_KEY: "OpportunityNote"})
    owner_id: str | None = attrs.field(metadata={_API_KEY: "Owner"})
    owner_name: str | None = attrs.field(metadata={_API_KEY: "OwnerName"})


@attrs.frozen(kw_only=True, field_transformer=_own_fields_first)
class Activity(_Record):
    """One activity of an opportunity, as ``GetActivitiesOfOpportunity`` lists it.

    Build records with `structure` (the session does it for you). Records
    compare equal when their rows and typed views are equal, and hash by
    their typed view. The ``O_`` keys describe the opportunity the activity
    belongs to.

    | attribute | row key |
    |---|---|
    | ``activity_id`` | ``ProspectActivityId`` (``RetrieveRecentlyModified``: ``Id``) |
    | ``activity_type`` | ``ActivityType`` |
    | ``activity_event`` | ``ActivityEvent``, the type's code (or ``EventCode``) |
    | ``activity_event_note`` | ``ActivityEvent_Note`` |
    | ``opportunity_activity_id`` | ``O_ProspectActivityId`` |
    | ``opportunity_activity_event_name`` | ``O_ActivityEventName`` |
    | ``opportunity_activity_event`` | ``O_ActivityEvent`` |
    | ``opportunity_status`` | ``O_Status`` |
    | ``opportunity_owner_id`` | ``O_Owner`` (a user id) |
    | ``lead_id`` | ``ProspectId`` (the feeds: ``RelatedProspectId``) |
    | ``first_name`` | ``FirstName`` |
    | ``last_name`` | ``LastName`` |
    | ``email_address`` | ``EmailAddress`` |
    | ``phone`` | ``Phone`` |
    | ``do_not_call`` | ``DoNotCall`` |
    | ``do_not_email`` | ``DoNotEmail`` |
    | ``lead_name`` | ``LeadName`` |
    | ``lead_owner`` | ``LeadOwner`` (a name) |
    | ``score`` | ``Score`` |
    | ``created_on`` | ``PACreatedOn`` (the feeds: ``CreatedOn``) |
    | ``modified_on`` | ``PAModifiedOn`` (the feeds: ``ModifiedOn``) |
    | ``ip_latitude`` | ``IP_Latitude`` |
    | ``ip_longitude`` | ``IP_Longitude`` |
    | ``created_by_name`` | ``PACreatedByName`` |
    | ``status`` | ``Status`` |
    | ``total`` | ``Total`` |
    | ``extra`` | every other key (``O_mx_Custom_N`` too), verbatim |

    The attributes from ``lead_id`` to ``total`` are those of an `Opportunity` too.
    """

    activity_id: str = attrs.field(metadata={_API_KEY: "ProspectActivityId", _ALSO: ("Id",)})
    activity_type: int | None = attrs.field(metadata={_API_KEY: "ActivityType"})
    activity_event: int | None = attrs.field(
        metadata={_API_KEY: "ActivityEvent", _ALSO: ("EventCode",)}
    )
    activity_event_note: str | None = attrs.field(metadata={_API_KEY: "ActivityEvent_Note"})
    opportunity_activity_id: str | None = attrs.field(metadata={_API_KEY: "O_ProspectActivityId"})
    opportunity_activity_event_name: str | None = attrs.field(
        metadata={_API_KEY: "O_ActivityEventName"}
    )
    opportunity_activity_event: int | None = attrs.field(metadata={_API_KEY: "O_ActivityEvent"})
    opportunity_status: str | None = attrs.field(metadata={_API_KEY: "O_Status"})
    opportunity_owner_id: str | None = attrs.field(metadata={_API_KEY: "O_Owner"})


# --- the generated structure hooks -----------------------------------------------------
# One function per record class, written out field by field the way attrs writes its
# __init__: no per-field call for text, flags and memoised numbers, the row copied once for
# the record and once more so that popping the typed keys leaves exactly ``extra``.
#
# The record is filled as an instance of a plain slotted twin of its class, then becomes
# the record class: both add the same slots to the same base, so CPython allows the
# __class__ change. attrs' frozen __init__ sets each slot through object.__setattr__,
# which alone costs about half of what json.loads spends on the row; plain slot stores
# cost a seventh of that.
#
# cattrs can generate such hooks itself (make_dict_structure_fn_from_attrs filling the
# twin, with a structure hook per attribute type): issue 10 tried it, and measured
# side by side it cost 1.4-1.65x json.loads against 1.05-1.3x for these. It calls a
# Python hook per attribute, and reads the row by subscript, so extra takes a second
# pass over the keys; popping the typed keys here reads them and leaves extra at once.

_READERS: dict[object, tuple[str, ...]] = {
    str: ("record.{name} = value if value.__class__ is str else ''",),
    str | None: ("record.{name} = value if value.__class__ is str and value else None",),
    bool | None: (
        "record.{name} = flags_get(value) if value.__class__ is str else read_flag(value)",
    ),
    int | None: (
        "try:",
        "    record.{name} = int_memo[value] if value.__class__ is str else read_int(value)",
        "except KeyError:",
        "    record.{name} = read_int(value)",
    ),
    float | None: (
        "try:",
        "    record.{name} = float_memo[value] if value.__class__ is str else read_float(value)",
        "except KeyError:",
        "    record.{name} = read_float(value)",
    ),
    datetime | None: ("record.{name} = parse_date(value)",),
}


def make_structure_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    attrs.resolve_types(cls)
    twin = type(
        f"_{cls.__name__}Twin",
        cls.__bases__,
        {
            "__slots__": cls.__dict__["__slots__"],
            # Plain slot stores: the frozen base's own __setattr__ and __delattr__ would
            # refuse them, and either one alone keeps CPython off its fast path.
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
        },
    )
    lines = [
        "def structure_row(row, _cls=None):",
        "    if row.__class__ is not dict:",
        "        row = as_dict(row)",
        "    rest = row.copy()",
        "    pop = rest.pop",
        "    record = new(Twin)",
    ]
    for field in attrs.fields(cls):
        key = field.metadata.get(_API_KEY)
        if key is not None:
            keys = (key, *field.metadata.get(_ALSO, ()))
            # The feeds' names of the same field are read only when the first is absent.
            for number, key in enumerate(keys):
                default = "None" if number == len(keys) - 1 else "absent"
                indent = "    " if number == 0 else "        "
                if number:
                    lines.append("    if value is absent:")
                lines.append(f"{indent}value = pop({key!r}, {default})")
            lines += [f"    {line.format(name=field.name)}" for line in _READERS[field.type]]
    lines += [
        "    record.extra = MappingProxyType(rest)",
        "    record._row = row.copy()",
        "    record.__class__ = Record",
        "    return record",
    ]
    source = "\n".join(lines) + "\n"
    filename = f"<leadsq_async structure {cls.__name__}>"
    # Registered so that a traceback through the hook shows its source.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {
        "as_dict": _as_dict,
        "new": object.__new__,
        "absent": _ABSENT,
        "Twin": twin,
        "Record": cls,
        "MappingProxyType": MappingProxyType,
        "flags_get": FLAGS.get,
        "read_flag": read_flag,
        "int_memo": int_memo,
        "read_int": read_int,
        "float_memo": float_memo,
        "read_float": read_float,
        "parse_date": parse_date,
    }
    exec(compile(source, filename, "exec"), namespace)
    hook: Callable[[Any, Any], Any] = namespace["structure_row"]
    return hook


_ABSENT: Any = object()


def _as_dict(row: object) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise TypeError(f"a row must be a mapping, not {type(row).__name__}")
    return dict(row)


_BASES = (_RowRecord, _Record)


_REBUILDERS: dict[type[Any], Callable[[Any, Any], Any]] = {}


def _rebuild(row: Mapping[str, Any], cls: type[Any]) -> Any:
    """A record of ``cls`` from its row again: what unpickling and copying call."""
    hook = _REBUILDERS.get(cls)
    if hook is None:
        hook = _REBUILDERS[cls] = make_structure_hook(cls)
    return hook(row, cls)


def is_record_class(cls: object) -> bool:
    """Whether ``cls`` is a record class: `Opportunity`, `Activity`, `Lead` (any class
    built on the row records' base that is not a base itself)."""
    return isinstance(cls, type) and issubclass(cls, _RowRecord) and cls not in _BASES


def row_of(record: _RowRecord) -> dict[str, Any]:
    """A copy of the row ``record`` was built from."""
    return record._row.copy()
