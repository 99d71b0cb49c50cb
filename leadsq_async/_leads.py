"""`Lead`: a lead as the leads feed (``Leads.RecentlyModified``) sends it, typed and whole.

The feed sends each lead as a ``LeadPropertyList`` of ``{Attribute, Value}``
pairs; `flatten_lead` turns that into the flat row ``{Attribute: Value}``, and
`Lead` is the typed, read-only view of that row, built like `Opportunity` and
`Activity` (``structure(row, Lead)``) with every attribute it does not type kept
in ``extra``, so that ``unstructure(lead)`` gives back the flattened row exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from ._errors import MalformedResponseError
from ._records import _ALSO, _API_KEY, _own_fields_first, _RowRecord

__all__ = ["Lead", "flatten_lead"]


@attrs.frozen(kw_only=True, field_transformer=_own_fields_first)
class Lead(_RowRecord):
    """One lead, as the leads feed lists it (flattened from its ``LeadPropertyList``).

    Build records with ``structure(row, Lead)`` (the session does it for you).
    Values are read as in `Opportunity`: a value the typed view cannot read is
    ``None`` there and kept as sent in the row.

    | attribute | row key |
    |---|---|
    | ``lead_id`` | ``ProspectID`` (``ProspectId`` where an answer spells it so) |
    | ``prospect_auto_id`` | ``ProspectAutoId`` |
    | ``first_name`` | ``FirstName`` |
    | ``last_name`` | ``LastName`` |
    | ``email_address`` | ``EmailAddress`` |
    | ``phone`` | ``Phone`` |
    | ``mobile`` | ``Mobile`` |
    | ``owner_id`` | ``OwnerId`` (a user id) |
    | ``owner_email_address`` | ``OwnerIdEmailAddress`` |
    | ``prospect_stage`` | ``ProspectStage`` |
    | ``score`` | ``Score`` |
    | ``lead_type`` | ``LeadType`` (``OT_0``... where object types are on) |
    | ``can_update`` | ``CanUpdate`` |
    | ``do_not_call`` | ``DoNotCall`` |
    | ``do_not_email`` | ``DoNotEmail`` |
    | ``created_by`` | ``CreatedBy`` (a user id) |
    | ``created_on`` | ``CreatedOn`` |
    | ``modified_by`` | ``ModifiedBy`` (a user id) |
    | ``modified_on`` | ``ModifiedOn`` |
    | ``extra`` | every other attribute (``mx_`` fields too), verbatim |
    """

    lead_id: str = attrs.field(metadata={_API_KEY: "ProspectID", _ALSO: ("ProspectId",)})
    prospect_auto_id: int | None = attrs.field(metadata={_API_KEY: "ProspectAutoId"})
    first_name: str | None = attrs.field(metadata={_API_KEY: "FirstName"})
    last_name: str | None = attrs.field(metadata={_API_KEY: "LastName"})
    email_address: str | None = attrs.field(metadata={_API_KEY: "EmailAddress"})
    phone: str | None = attrs.field(metadata={_API_KEY: "Phone"})
    mobile: str | None = attrs.field(metadata={_API_KEY: "Mobile"})
    owner_id: str | None = attrs.field(metadata={_API_KEY: "OwnerId"})
    owner_email_address: str | None = attrs.field(metadata={_API_KEY: "OwnerIdEmailAddress"})
    prospect_stage: str | None = attrs.field(metadata={_API_KEY: "ProspectStage"})
    score: int | None = attrs.field(metadata={_API_KEY: "Score"})
    lead_type: str | None = attrs.field(metadata={_API_KEY: "LeadType"})
    can_update: bool | None = attrs.field(metadata={_API_KEY: "CanUpdate"})
    do_not_call: bool | None = attrs.field(metadata={_API_KEY: "DoNotCall"})
    do_not_email: bool | None = attrs.field(metadata={_API_KEY: "DoNotEmail"})
    created_by: str | None = attrs.field(metadata={_API_KEY: "CreatedBy"})
    created_on: datetime | None = attrs.field(metadata={_API_KEY: "CreatedOn"})
    modified_by: str | None = attrs.field(metadata={_API_KEY: "ModifiedBy"})
    modified_on: datetime | None = attrs.field(metadata={_API_KEY: "ModifiedOn"})


def flatten_lead(row: Mapping[str, Any], *, endpoint: str) -> dict[str, Any]:
    """The flat row of one lead of the feed: its ``LeadPropertyList`` pairs as
    ``{Attribute: Value}``, in their order, then any other key the lead carries.

    A lead sent already flat (as other lead endpoints send them) is taken as it is.

    Raises:
        MalformedResponseError: a ``LeadPropertyList`` that is not a list of
            ``{Attribute, Value}`` objects with a text ``Attribute``.
    """
    pairs = row.get("LeadPropertyList")
    if pairs is None and "LeadPropertyList" not in row:
        return dict(row)
    if not isinstance(pairs, list):
        raise MalformedResponseError(
            "a lead's LeadPropertyList is not a list", endpoint=endpoint, status=200
        )
    flat: dict[str, Any] = {}
    for pair in pairs:
        name = pair.get("Attribute") if isinstance(pair, dict) else None
        if not isinstance(name, str):
            raise MalformedResponseError(
                "a lead's LeadPropertyList holds an item that is no {Attribute, Value} pair",
                endpoint=endpoint,
                status=200,
            )
        flat[name] = pair.get("Value")
    for key, value in row.items():
        if key != "LeadPropertyList":
            flat.setdefault(key, value)
    return flat
