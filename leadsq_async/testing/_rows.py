"""Realistic LeadSquared rows from a seeded random source, shaped like the documented samples:
numbers as strings, "0"/"1" flags, null and "", custom keys that depend on the opportunity
type or activity event, unicode names, a JSON object inside a string, and dates in each of
the four formats.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from leadsq_async.testing._dates import DATE_STYLES, DateStyle, format_date, parse_date

Row = dict[str, Any]

START = 1546300800  # 2019-01-01 00:00:00 UTC
END = 1782777600  # 2026-06-30 00:00:00 UTC
DAY = 86400

_FIRST_NAMES = (
    "Manish", "Priya", "Rahul", "Ananya", "Vikram", "Sneha", "Arjun", "Kavya", "Rohit", "Divya",
    "José", "Zoë", "Łukasz", "Søren", "Émilie", "Jürgen", "Ольга", "राहुल", "芳", "Nguyễn",
)  # fmt: skip
_LAST_NAMES = (
    "Garg", "Sharma", "Iyer", "Reddy", "Patel", "Nair", "Menon", "Kapoor", "D'Souza", "Rao",
    "Núñez", "Müller", "Kowalczyk", "Ivanova", "शर्मा", "王", "Đặng", "Çelik", "Ó Briain", "Björk",
)  # fmt: skip
_OWNER_NAMES = ("Rajesh Aggarwal", "Rohan Sane", "Meera Nair", "Ivan Petrović")
_STAGES = ("New", "Prospecting", "Negotiation", "Documentation", "Closed")
_STATUSES = ("Open", "Open", "Open", "Won", "Lost")
_NOTES = ("", "", "", "Update note", "Call back tomorrow 📞", "Prefers Hindi: हिंदी", "N/A")
# Opportunity type code -> name; each type has its own custom fields (see _opportunity_custom).
OPPORTUNITY_TYPES = {
    "12000": "Sales",
    "12001": "Home Loan",
    "12002": "Insurance",
    "12003": "Car Loan",
    "12004": "Education Loan",
    "12005": "Credit Card",
}
# Activity event code -> name; some events carry custom fields (see _activity_custom).
ACTIVITY_EVENTS = {
    "168": "Opportunity Note",
    "169": "Stage Change",
    "201": "Inbound Phone Call",
    "202": "Site Visit",
    "21": "Email Opened",
}
_DATE_STYLE_WEIGHTS = (6, 2, 2, 1)

# An opportunity type drawn from the seed's stream -> the types with the same custom fields.
_FAMILIES = {"12001": ("12001", "12003"), "12002": ("12002", "12004"), "12005": ("12005", "12000")}

OPPORTUNITY_SHAPES = ("empty", "one", "page", "page_plus_one", "thousands")
ACTIVITY_SHAPES = ("empty", "one", "page", "page_plus_one", "hundreds")


class RowMaker:
    """Builds realistic rows from one seeded random source."""

    def __init__(
        self,
        rng: random.Random,
        types: tuple[str, ...] = tuple(OPPORTUNITY_TYPES),
        type_rng: random.Random | None = None,
    ) -> None:
        self.rng = rng
        self.types = types
        # Picks each opportunity's type within the family ``rng`` draws (see opportunity), so
        # the rest of the rows stay those the same seed always gave.
        self.type_rng = random.Random(0) if type_rng is None else type_rng
        self.owners = [(self.guid(), name) for name in _OWNER_NAMES]

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def style(self) -> DateStyle:
        return self.rng.choices(DATE_STYLES, _DATE_STYLE_WEIGHTS)[0]

    def created(self) -> int:
        return self.rng.randrange(START, END)

    def lead(self, lead_id: str | None = None) -> Row:
        rng = self.rng
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        number = rng.randrange(10**9)
        return {
            "ProspectId": lead_id or self.guid(),
            "FirstName": first,
            "LastName": last,
            "EmailAddress": rng.choice((f"lead{number}@mailinator.com",) * 5 + ("", None)),
            "Phone": rng.choice((f"+91-99{number:08d}"[:14],) * 4 + (None,)),
            "DoNotCall": rng.choice("0001"),
            "DoNotEmail": rng.choice("001"),
            "LeadName": f"{first} {last}",
            "LeadOwner": rng.choice(self.owners)[1],
        }

    def opportunity(
        self, lead: Row, created: int, total: int, style: DateStyle | None = None
    ) -> Row:
        rng = self.rng
        style = style or self.style()
        family = rng.choice(tuple(_FAMILIES))
        kin = [code for code in _FAMILIES[family] if code in self.types]
        code = self.type_rng.choice(kin or self.types)
        owner_id, owner_name = rng.choice(self.owners)
        row: Row = dict(lead)
        row.update(
            {
                "OpportunityEventType": "2",
                "OpportunityEvent": code,
                "OpportunityNote": rng.choice(_NOTES),
                "Score": str(rng.choice((0, 0, 5, 10, 25, 120))),
                "PACreatedOn": format_date(created, style),
                "PAModifiedOn": format_date(created + rng.randrange(90 * DAY), style),
                "IP_Latitude": rng.choice((None, None, "12.9716", "")),
                "IP_Longitude": rng.choice((None, None, "77.5946", "")),
                "PACreatedByName": rng.choice((*_OWNER_NAMES, "System")),
                "mx_Custom_1": f"{lead['LeadName']} - {OPPORTUNITY_TYPES.get(code, code)}",
                "Status": rng.choice(_STATUSES),
                "mx_Custom_2": rng.choice(_STAGES),
            }
        )
        row.update(self._opportunity_custom(code, created, style))
        row.update(
            {
                "Owner": owner_id,
                "OwnerName": owner_name,
                "OpportunityId": self.guid(),
                "Total": str(total),
            }
        )
        return row

    def _opportunity_custom(self, code: str, created: int, style: DateStyle) -> Row:
        rng = self.rng
        follow_up = format_date(created + rng.randrange(60 * DAY), style)
        if code in ("12001", "12003"):
            amount = rng.randrange(1, 500) * 10000
            shown = f"{amount:,}" if rng.random() < 0.3 else str(amount)
            return {"mx_Custom_6": shown, "mx_Custom_8": follow_up}
        if code in ("12002", "12004"):
            details = {"source": rng.choice(("web", "walk-in", "partner")), "policy": {"term": 20}}
            return {"mx_Custom_3": json.dumps(details), "mx_Custom_8": follow_up}
        return {
            "mx_Custom_4": rng.choice("01"),
            "mx_Custom_5": str(rng.randrange(300, 900)),
            "mx_Custom_11": rng.choice((None, "")),
        }

    def activity(
        self,
        lead: Row,
        opportunity: Row | None,
        created: int,
        total: int,
        style: DateStyle | None = None,
    ) -> Row:
        """An activity of ``lead``; with ``opportunity``, one GetActivitiesOfOpportunity lists
        (half of those name it in their ``O_`` fields)."""
        rng = self.rng
        style = style or self.style()
        code = rng.choice(tuple(ACTIVITY_EVENTS))
        linked = rng.random() < 0.5
        if opportunity is None:
            linked, opportunity = False, {}
        row: Row = dict(lead)
        row.update(
            {
                "ProspectActivityId": self.guid(),
                "ActivityType": "2",
                "ActivityEvent": code,
                "Score": str(rng.choice((0, 0, 1, 3, 10))),
                "PACreatedOn": format_date(created, style),
                "PAModifiedOn": format_date(created + rng.randrange(7 * DAY), style),
                "ActivityEvent_Note": rng.choice((None, None, "Spoke to the lead", "再来电")),
                "IP_Latitude": rng.choice((None, None, "19.0760")),
                "IP_Longitude": rng.choice((None, None, "72.8777")),
                "PACreatedByName": rng.choice((*_OWNER_NAMES, "System")),
                "Status": rng.choice((None, None, "Active", "")),
                "O_ProspectActivityId": opportunity["OpportunityId"] if linked else "",
                "Total": str(total),
                "O_ActivityEventName": OPPORTUNITY_TYPES.get(opportunity["OpportunityEvent"], "")
                if linked
                else "",
                "O_ActivityEvent": opportunity["OpportunityEvent"] if linked else "",
                "O_mx_Custom_1": opportunity["mx_Custom_1"] if linked else "",
                "O_Status": opportunity["Status"] if linked else "",
                "O_Owner": opportunity["Owner"] if linked else "",
            }
        )
        if code == "201":
            call = {"direction": rng.choice(("inbound", "outbound")), "recording": None}
            row.update({"mx_Custom_1": str(rng.randrange(5, 900)), "mx_Custom_2": json.dumps(call)})
        elif code == "202":
            row["mx_Custom_3"] = format_date(created + rng.randrange(14 * DAY), style)
        return row

    def opportunities(self, lead: Row, count: int) -> list[Row]:
        return [self.opportunity(lead, self.created(), count) for _ in range(count)]

    def activities(self, opportunity: Row, count: int) -> list[Row]:
        lead = lead_part(opportunity)
        start = parse_date(opportunity["PACreatedOn"]) or START
        return [
            self.activity(lead, opportunity, int(start) + self.rng.randrange(120 * DAY), count)
            for _ in range(count)
        ]


def check_size(name: str, value: int, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


_LEAD_KEYS = (
    "ProspectId", "FirstName", "LastName", "EmailAddress", "Phone", "DoNotCall", "DoNotEmail",
    "LeadName", "LeadOwner",
)  # fmt: skip


def lead_part(row: Mapping[str, Any]) -> Row:
    return {key: row[key] for key in _LEAD_KEYS if key in row}


_PROSPECT_STAGES = ("Prospect", "Opportunity", "Customer", "Prospect", "Invalid")
_SOURCES = ("Website", "Referral", "Walk-in", "Google Ads", None)


def modified_lead(lead_id: str, seed: int, rows: list[Row]) -> Row:
    """The lead ``lead_id`` as Leads.RecentlyModified sends it, flattened to attribute: value.

    Its name, email and phone are those of its opportunities' rows, when it has any (else drawn
    from ``seed`` and the id); its other fields, ``CreatedOn`` and ``ModifiedOn`` (UTC,
    ``YYYY-MM-DD HH:MM:SS``) are drawn from ``seed`` and the id alone, so a lead keeps them
    however the rest of the dataset changes.
    """
    rng = random.Random(f"{seed}:lead:{lead_id}")
    modified = rng.randrange(START, END)
    maker = RowMaker(rng)
    lead = lead_part(rows[0]) if rows else maker.lead(lead_id)
    return lead_record(maker, lead_id, lead, rng.randrange(START, modified + 1), modified)


def lead_record(
    maker: RowMaker, lead_id: str, lead: Mapping[str, Any], created: int, modified: int
) -> Row:
    """A lead as Leads.RecentlyModified sends it, from the lead part of its rows."""
    rng = maker.rng
    owner_id, owner_name = rng.choice(maker.owners)
    return {
        "ProspectID": lead_id,
        "FirstName": lead.get("FirstName"),
        "LastName": lead.get("LastName"),
        "EmailAddress": lead.get("EmailAddress"),
        "Phone": lead.get("Phone"),
        "OwnerId": owner_id,
        "OwnerIdName": owner_name,
        "ProspectStage": rng.choice(_PROSPECT_STAGES),
        "Score": str(rng.choice((0, 0, 10, 35, 120))),
        "Source": rng.choice(_SOURCES),
        "mx_City": rng.choice(("Mumbai", "Bengaluru", "São Paulo", "", None)),
        "CreatedOn": format_date(created, "plain"),
        "ModifiedOn": format_date(modified, "plain"),
    }


def latest_created(rows: list[Row]) -> int:
    times = [parse_date(row.get("PACreatedOn") or "") for row in rows]
    return int(max((t for t in times if t is not None), default=END))


def sample_rows(
    kind: Literal["opportunity", "activity"], count: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Return ``count`` realistic rows of one kind, the same for the same seed.

    The rows belong to one lead (and, for activities, one opportunity) and are shaped like the
    emulator's data; the first four use each of the four date formats in turn.

    Raises:
        ValueError: ``kind`` is not "opportunity" or "activity", or ``count`` < 0.
        TypeError: ``count`` is not an int.
    """
    check_size("count", count)
    maker = RowMaker(random.Random(seed))
    lead = maker.lead()
    styles = [DATE_STYLES[i] if i < len(DATE_STYLES) else None for i in range(count)]
    if kind == "opportunity":
        return [maker.opportunity(lead, maker.created(), count, style) for style in styles]
    if kind == "activity":
        opportunity = maker.opportunity(lead, maker.created(), 1)
        start = int(parse_date(opportunity["PACreatedOn"]) or START)
        return [
            maker.activity(lead, opportunity, start + maker.rng.randrange(120 * DAY), count, style)
            for style in styles
        ]
    raise ValueError(f"kind must be 'opportunity' or 'activity', got {kind!r}")
