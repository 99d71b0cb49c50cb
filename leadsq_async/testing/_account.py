"""The account the emulator serves, changed while it runs: add, modify and delete leads,
opportunities and activities through a thread-safe Python API, and read the records as they
stand now or as the index-lagged feeds see them."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from leadsq_async.testing._clock import EmulatorClock
from leadsq_async.testing._data import Dataset, Kind, Record
from leadsq_async.testing._rows import (
    Row,
    RowMaker,
    lead_part,
    lead_record,
)
from leadsq_async.testing._shapes import event_activity, searched_opportunity

# The keys a change may not set: ids, and where a record belongs.
_FIXED = {
    "lead": frozenset({"ProspectID", "ProspectId"}),
    "opportunity": frozenset({"OpportunityId", "ProspectId"}),
    "activity": frozenset({"ProspectActivityId", "ProspectId"}),
}
_LEAD_FIELDS = {
    "ProspectID": "ProspectId", "FirstName": "FirstName", "LastName": "LastName",
    "EmailAddress": "EmailAddress", "Phone": "Phone",
}  # fmt: skip


class UnknownRecordError(KeyError):
    """The account has no lead, opportunity or activity of that id."""


class Account:
    """The emulator's account: every lead, opportunity and activity, changed at run time.

    Every method takes one lock, which the app also holds while it reads, so a test may
    change the account from its own thread while a server answers from another. A change
    stamps ``ModifiedOn`` (``PAModifiedOn`` in the per-lead endpoints' rows) with the
    emulator's now (``now()``, UTC, to the second) and is logged, so that the account-wide
    feeds show it only ``EmulatorConfig.index_lag`` seconds later. Rows are returned as the
    per-lead endpoints store them (opportunities and activities) or as Leads.RecentlyModified
    flattens them (leads); ``fields`` are keys of those rows. Deleting a lead deletes its
    opportunities and activities, as LeadSquared does.
    """

    def __init__(self, data: Dataset, clock: EmulatorClock) -> None:
        self.data = data
        self.clock = clock
        self.lock = threading.RLock()
        # The feeds' rows, shaped once per version of a record (see _feeds).
        self.shapes: dict[tuple[str, str], tuple[Row, Row]] = {}
        # Each kind's records by id, and the tables' fingerprint they were read at.
        self._read: dict[Kind, tuple[tuple[int, ...], dict[str, Record]]] = {}
        data._use_clock(clock.monotonic)

    def now(self) -> dt.datetime:
        """The emulator's now, an aware UTC datetime (it moves with the serving loop's time)."""
        return self.clock.now()

    def _stamp(self) -> str:
        """Now as the API writes a date, UTC to the second (the second ``now()`` is in)."""
        return f"{self.clock.now():%Y-%m-%d %H:%M:%S}"

    def _maker(self) -> RowMaker:
        self.data._added += 1
        return RowMaker(random.Random(f"{self.data.seed}:account:{self.data._added}"))

    # Adding

    def add_lead(self, lead_id: str | None = None, **fields: Any) -> Row:
        """Add a lead created now, with generated fields overridden by ``fields``; return it
        as Leads.RecentlyModified serves it.

        Raises:
            ValueError: ``lead_id`` is already a lead, or ``fields`` sets the id.
        """
        _check_fields("lead", fields)
        with self.lock:
            maker = self._maker()
            lead = maker.lead(lead_id)
            lead_id = lead["ProspectId"]
            if lead_id in self.data.opportunities:
                raise ValueError(f"lead {lead_id} already exists")
            record = lead_record(maker, lead_id, lead, 0, 0)
            stamp = self._stamp()
            record.update(fields, ProspectID=lead_id, CreatedOn=stamp, ModifiedOn=stamp)
            self.data.opportunities[lead_id] = []
            self.data.lead_records[lead_id] = record
            self.data.note("lead", lead_id, None)
            return dict(record)

    def add_opportunity(
        self, lead_id: str, event_code: str | int | None = None, **fields: Any
    ) -> Row:
        """Add an opportunity of type ``event_code`` (drawn if None) to ``lead_id``, created
        now, with generated fields overridden by ``fields``; return its row.

        Raises:
            UnknownRecordError: no such lead.
            ValueError: ``fields`` sets its id or its lead.
        """
        _check_fields("opportunity", fields)
        with self.lock:
            rows = self._lead_rows(lead_id)
            maker = self._maker()
            lead = self._lead_part(lead_id, rows)
            if event_code is not None:
                maker.types = (str(event_code),)
            row = maker.opportunity(lead, 0, len(rows) + 1, "plain")
            stamp = self._stamp()
            row.update(fields)
            row.update(PACreatedOn=stamp, PAModifiedOn=stamp)
            rows.append(row)
            opportunity_id = row["OpportunityId"]
            self.data.activities[opportunity_id] = []
            self.data._added_at[opportunity_id] = self.data.note(
                "opportunity", opportunity_id, None
            )
            return dict(row)

    def add_activity(
        self, lead_id: str | None = None, *, opportunity_id: str | None = None, **fields: Any
    ) -> Row:
        """Add an activity created now to ``lead_id``, or on ``opportunity_id`` (then of its
        lead), with generated fields overridden by ``fields``; return its row.

        Raises:
            UnknownRecordError: no such lead or opportunity.
            ValueError: neither is given, the opportunity is not the lead's, or ``fields`` sets
                its id or its lead.
        """
        _check_fields("activity", fields)
        with self.lock:
            opportunity = None
            if opportunity_id is not None:
                found = self._find_opportunity(opportunity_id)
                if found is None:
                    raise UnknownRecordError(f"no opportunity {opportunity_id}")
                if lead_id is not None and lead_id != found.lead_id:
                    raise ValueError(f"opportunity {opportunity_id} is not lead {lead_id}'s")
                lead_id, opportunity = found.lead_id, found.row
            if lead_id is None:
                raise ValueError("add_activity needs a lead_id or an opportunity_id")
            lead = self._lead_part(lead_id, self._lead_rows(lead_id))
            if opportunity_id is None:
                rows = self.data.lead_activities.setdefault(lead_id, [])
            else:
                rows = self.data.activities.setdefault(opportunity_id, [])
            row = self._maker().activity(lead, opportunity, 0, len(rows) + 1, "plain")
            stamp = self._stamp()
            row.update(fields)
            row.update(PACreatedOn=stamp, PAModifiedOn=stamp)
            rows.append(row)
            self.data.note("activity", row["ProspectActivityId"], None)
            return dict(row)

    # Modifying

    def modify_lead(self, lead_id: str, **fields: Any) -> Row:
        """Set ``fields`` on lead ``lead_id`` and move its ``ModifiedOn`` to now; return it.
        Its name, email and phone also change in its opportunities' and activities' rows.

        Raises:
            UnknownRecordError: no such lead.
            ValueError: ``fields`` sets its id.
        """
        with self.lock:
            self._lead_rows(lead_id)
            _check_fields("lead", fields)
            before = self.data.lead(lead_id)
            record = {**before, **fields, "ModifiedOn": self._stamp()}
            self.data.lead_records[lead_id] = record
            self.data.note("lead", lead_id, Record("lead", lead_id, before, lead_id))
            part = {
                _LEAD_FIELDS[key]: value for key, value in fields.items() if key in _LEAD_FIELDS
            }
            if part:
                self._relabel(lead_id, part)
            return dict(record)

    def _relabel(self, lead_id: str, part: Mapping[str, Any]) -> None:
        """Show a lead's new name, email or phone in the rows of its records (not a change of
        theirs: their ModifiedOn stays)."""
        tables = [self.data.opportunities.get(lead_id, [])]
        tables += [self.data.activities.get(row["OpportunityId"], []) for row in tables[0]]
        tables.append(self.data.lead_activities.get(lead_id, []))
        for rows in tables:
            rows[:] = [{**row, **part} for row in rows]

    def modify_opportunity(self, opportunity_id: str, **fields: Any) -> Row:
        """Set ``fields`` on an opportunity and move its ``ModifiedOn`` to now; return its row.

        Raises:
            UnknownRecordError: no such opportunity.
            ValueError: ``fields`` sets its id or its lead.
        """
        return self._modify("opportunity", opportunity_id, fields)

    def modify_activity(self, activity_id: str, **fields: Any) -> Row:
        """Set ``fields`` on an activity and move its ``ModifiedOn`` to now; return its row.

        Raises:
            UnknownRecordError: no such activity.
            ValueError: ``fields`` sets its id or its lead.
        """
        return self._modify("activity", activity_id, fields)

    def _modify(self, kind: Kind, record_id: str, fields: Mapping[str, Any]) -> Row:
        with self.lock:
            _check_fields(kind, fields)
            found = self._find(kind, record_id)
            rows = self._table_of(found)
            row = {**found.row, **fields, "PAModifiedOn": self._stamp()}
            rows[rows.index(found.row)] = row
            self.data.note(kind, record_id, found)
            return dict(row)

    # Deleting

    def delete_lead(self, lead_id: str) -> None:
        """Delete a lead with its opportunities and activities.

        Raises:
            UnknownRecordError: no such lead.
        """
        with self.lock:
            rows = self._lead_rows(lead_id)
            for row in list(rows):
                self._delete_opportunity(Record("opportunity", row["OpportunityId"], row, lead_id))
            for row in self.data.lead_activities.pop(lead_id, []):
                activity = Record("activity", row["ProspectActivityId"], row, lead_id)
                self.data.note("activity", activity.id, activity)
            before = self.data.lead(lead_id)
            del self.data.opportunities[lead_id]
            self.data.lead_records.pop(lead_id, None)
            self.data.note("lead", lead_id, Record("lead", lead_id, before, lead_id))

    def delete_opportunity(self, opportunity_id: str) -> None:
        """Delete an opportunity with its activities.

        Raises:
            UnknownRecordError: no such opportunity.
        """
        with self.lock:
            self._delete_opportunity(self._find("opportunity", opportunity_id))

    def _delete_opportunity(self, found: Record) -> None:
        for row in self.data.activities.pop(found.id, []):
            activity = Record("activity", row["ProspectActivityId"], row, found.lead_id, found.id)
            self.data.note("activity", activity.id, activity)
        rows = self.data.opportunities[found.lead_id]
        rows.remove(found.row)
        self.data.note("opportunity", found.id, found)

    def delete_activity(self, activity_id: str) -> None:
        """Delete an activity.

        Raises:
            UnknownRecordError: no such activity.
        """
        with self.lock:
            found = self._find("activity", activity_id)
            self._table_of(found).remove(found.row)
            self.data.note("activity", activity_id, found)

    # Reading

    def leads(self) -> list[Row]:
        """Every lead as it stands now, as Leads.RecentlyModified flattens it."""
        with self.lock:
            return [dict(record.row) for record in self.records("lead")]

    def opportunities(self, event_code: str | int | None = None) -> list[Row]:
        """Every opportunity (of type ``event_code``, if given) as it stands now, as the search
        sends it (its id under ``ProspectActivityId``)."""
        with self.lock:
            records = list(self.records("opportunity"))
        code = None if event_code is None else str(event_code)
        return [
            searched_opportunity(record, "ProspectActivityId")
            for record in records
            if code is None or str(record.row.get("OpportunityEvent")) == code
        ]

    def activities(self, event_code: str | int | None = None) -> list[Row]:
        """Every activity (of event ``event_code``, if given) as it stands now, as
        RetrieveByActivityEvent sends it."""
        with self.lock:
            records = list(self.records("activity"))
        code = None if event_code is None else str(event_code)
        return [
            event_activity(record)
            for record in records
            if code is None or str(record.row.get("ActivityEvent")) == code
        ]

    def records(self, kind: Kind) -> Iterator[Record]:
        """Every record of ``kind`` as it stands now, its row as the per-lead endpoints store
        it (hold ``lock`` while iterating)."""
        data = self.data
        if kind == "lead":
            for lead_id in data.opportunities:
                yield Record("lead", lead_id, data.lead(lead_id), lead_id)
        elif kind == "opportunity":
            for lead_id, rows in data.opportunities.items():
                for row in rows:
                    yield Record("opportunity", str(row.get("OpportunityId")), row, lead_id)
        else:
            for lead_id, rows in data.opportunities.items():
                for opportunity in rows:
                    opportunity_id = str(opportunity.get("OpportunityId"))
                    for row in data.activities.get(opportunity_id, []):
                        activity_id = str(row.get("ProspectActivityId"))
                        yield Record("activity", activity_id, row, lead_id, opportunity_id)
            for lead_id, rows in data.lead_activities.items():
                for row in rows:
                    yield Record("activity", str(row.get("ProspectActivityId")), row, lead_id)

    def indexed(self, kind: Kind, lag: float) -> list[Record]:
        """The records of ``kind`` as the index-backed feeds see them: each as it was ``lag``
        seconds ago (a record added since is absent, one deleted since still there)."""
        with self.lock:
            current = self._current(kind)
            if not lag:
                return list(current.values())
            current = dict(current)
            seen: set[str] = set()
            for change in self.data.changes_since(self.clock.monotonic() - lag):
                if change.kind != kind or change.id in seen:
                    continue
                seen.add(change.id)
                if change.before is None:
                    current.pop(change.id, None)
                else:
                    current[change.id] = change.before
            return list(current.values())

    def _current(self, kind: Kind) -> dict[str, Record]:
        """``records(kind)`` by id, read again only when the tables changed: building every
        record anew took most of a feed request's time on a big account (hold ``lock``)."""
        fingerprint = self._fingerprint()
        read = self._read.get(kind)
        if read is None or read[0] != fingerprint:
            read = (fingerprint, {record.id: record for record in self.records(kind)})
            self._read[kind] = read
        return read[1]

    def _fingerprint(self) -> tuple[int, ...]:
        """What changes with any row of the tables: the change log's length, and the
        identity of every table, key and row (a stored row is replaced, never edited), so
        that a test editing the tables directly is seen too."""
        data = self.data
        fingerprint = [id(data._changes), len(data._changes), len(data.lead_records)]
        fingerprint.append(sum(map(id, data.lead_records.values())))
        for table in (data.opportunities, data.activities, data.lead_activities):
            rows = itertools.chain.from_iterable(table.values())
            fingerprint += [id(table), len(table), sum(map(id, table)), sum(map(id, rows))]
        return tuple(fingerprint)

    def _lead_rows(self, lead_id: str) -> list[Row]:
        rows = self.data.opportunities.get(lead_id)
        if rows is None:
            raise UnknownRecordError(f"no lead {lead_id}")
        return rows

    def _lead_part(self, lead_id: str, rows: list[Row]) -> Row:
        if rows:
            return lead_part(rows[0])
        record = self.data.lead(lead_id)
        lead = {part: record.get(key) for key, part in _LEAD_FIELDS.items()}
        lead["LeadName"] = f"{lead['FirstName']} {lead['LastName']}"
        return lead

    def _find_opportunity(self, opportunity_id: str) -> Record | None:
        for record in self.records("opportunity"):
            if record.id == opportunity_id:
                return record
        return None

    def _find(self, kind: Kind, record_id: str) -> Record:
        for record in self.records(kind):
            if record.id == record_id:
                return record
        raise UnknownRecordError(f"no {kind} {record_id}")

    def _table_of(self, found: Record) -> list[Row]:
        data = self.data
        if found.kind == "opportunity":
            return data.opportunities[found.lead_id]
        if found.opportunity_id is not None:
            return data.activities[found.opportunity_id]
        return data.lead_activities[found.lead_id]


def _check_fields(kind: Kind, fields: Mapping[str, Any]) -> None:
    fixed = _FIXED[kind] & set(fields)
    if fixed:
        raise ValueError(f"the {kind}'s {', '.join(sorted(fixed))} cannot be set")
