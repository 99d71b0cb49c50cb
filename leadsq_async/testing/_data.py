"""The emulator's data: the account's leads, their opportunities and activities, as API rows,
generated from a seed (see ``_rows``) or loaded from a JSON file a user supplies, with the log
of changes the index-backed reads lag behind."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import attrs

from leadsq_async.testing._rows import (
    ACTIVITY_SHAPES,
    OPPORTUNITY_SHAPES,
    OPPORTUNITY_TYPES,
    START,
    Row,
    RowMaker,
    check_size,
    latest_created,
    lead_part,
    modified_lead,
)


def _rows_by_id(value: object, where: str) -> dict[str, list[Row]]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object mapping ids to lists of rows")
    for key, rows in value.items():
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"{where}[{key!r}] must be a list of row objects")
    return {str(key): list(rows) for key, rows in value.items()}


def _records(value: object, where: str) -> dict[str, Row]:
    if not isinstance(value, dict) or not all(isinstance(row, dict) for row in value.values()):
        raise ValueError(f"{where} must be an object mapping ids to row objects")
    return {str(key): dict(row) for key, row in value.items()}


def _names(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{where} must be an object mapping shape names to ids")
    return {str(key): val for key, val in value.items()}


Kind = Literal["lead", "opportunity", "activity"]


class Record(NamedTuple):
    """One record of the account: its kind, id, row and where it belongs."""

    kind: Kind
    id: str
    row: Row
    lead_id: str
    opportunity_id: str | None = None


@attrs.frozen
class Change:
    """A change to one record at ``at`` (emulator monotonic seconds): ``before`` is the record as
    it was (None for one added)."""

    at: float
    kind: Kind
    id: str
    before: Record | None


@attrs.define(eq=False, repr=False)
class Dataset:
    """Everything the emulator serves: opportunities per lead, activities per opportunity (and,
    derived from them, the leads: see ``leads``).

    Rows are the dicts the API sends; the emulator never changes a stored row (it copies one
    before narrowing its columns), so replace a row rather than editing it in place. A lead is
    known when it is a key of ``opportunities`` (its list may be empty); an opportunity is known
    when it is a key of ``activities``. To change the account while it is served, prefer the
    thread-safe ``EmulatorApp.account``, which also moves ``ModifiedOn`` and logs the change
    for the feeds' index lag.

    Attributes:
        opportunities: lead id -> its opportunity rows.
        activities: opportunity id -> its activity rows.
        lead_records: lead id -> the lead as Leads.RecentlyModified serves it, for leads added
            or changed; the others are derived from ``seed`` (see ``leads``).
        lead_activities: lead id -> its activities that are on no opportunity (the feeds serve
            them beside the opportunities' activities).
        leads_by_shape: For generated data, a lead id for each of "empty" (0 opportunities),
            "one", "page" (exactly one default page, 100), "page_plus_one" and "thousands".
        opportunities_by_shape: For generated data, an opportunity id for each of "empty"
            (0 activities), "one", "page" (exactly one default page, 25), "page_plus_one" and
            "hundreds".
        seed: The seed the rows were generated from (also seeds rows added later).
    """

    opportunities: dict[str, list[Row]] = attrs.field(factory=dict)
    activities: dict[str, list[Row]] = attrs.field(factory=dict)
    leads_by_shape: dict[str, str] = attrs.field(factory=dict)
    opportunities_by_shape: dict[str, str] = attrs.field(factory=dict)
    seed: int = 0
    lead_records: dict[str, Row] = attrs.field(factory=dict)
    lead_activities: dict[str, list[Row]] = attrs.field(factory=dict)
    _added_at: dict[str, float] = attrs.field(factory=dict, init=False)
    _added: int = attrs.field(default=0, init=False)
    _changes: list[Change] = attrs.field(factory=list, init=False)
    # What changes are timed with: the monotonic clock of the EmulatorApp serving it.
    _clock: Callable[[], float] = attrs.field(default=time.monotonic, init=False)

    def __repr__(self) -> str:
        return (
            f"Dataset(leads={len(self.opportunities)}, "
            f"opportunities={sum(map(len, self.opportunities.values()))}, "
            f"activities={self.activity_count()}, seed={self.seed})"
        )

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        page_size: int = 100,
        thousands: int = 2500,
        activity_page_size: int = 25,
        hundreds: int = 300,
        other_leads: int = 20,
        activities_per_lead: int = 3,
        opportunity_types: int = len(OPPORTUNITY_TYPES),
    ) -> Dataset:
        """Build a dataset from ``seed``: the same seed and sizes give the same rows.

        Leads get 0, 1, ``page_size``, ``page_size + 1`` and ``thousands`` opportunities (see
        ``leads_by_shape``), plus ``other_leads`` leads with 0 to 12. One more lead holds five
        opportunities with 0, 1, ``activity_page_size``, ``activity_page_size + 1`` and
        ``hundreds`` activities (see ``opportunities_by_shape``); every other opportunity has
        0 to 4 activities. Each of the ``other_leads`` also has 0 to ``activities_per_lead``
        activities on no opportunity. Opportunities are of the first ``opportunity_types``
        of the types 12000 to 12005 (all six by default).

        Raises:
            TypeError: a size is not an int.
            ValueError: a size is negative, ``page_size``/``activity_page_size`` < 1, or
                ``opportunity_types`` is not 1 to 6.
        """
        for name, value, minimum in (
            ("page_size", page_size, 1),
            ("thousands", thousands, 0),
            ("activity_page_size", activity_page_size, 1),
            ("hundreds", hundreds, 0),
            ("other_leads", other_leads, 0),
            ("activities_per_lead", activities_per_lead, 0),
        ):
            check_size(name, value, minimum)
        check_size("opportunity_types", opportunity_types, 1)
        types = tuple(OPPORTUNITY_TYPES)[:opportunity_types]
        if len(types) < opportunity_types:
            raise ValueError(f"opportunity_types must be at most {len(types)}")
        maker = RowMaker(random.Random(seed), types, random.Random(f"{seed}:types"))
        data = cls(seed=seed)
        lead_sizes = (0, 1, page_size, page_size + 1, thousands)
        for shape, count in zip(OPPORTUNITY_SHAPES, lead_sizes, strict=True):
            lead = maker.lead()
            data.leads_by_shape[shape] = lead["ProspectId"]
            data.opportunities[lead["ProspectId"]] = maker.opportunities(lead, count)
        others = []
        for _ in range(other_leads):
            lead = maker.lead()
            others.append(lead)
            count = maker.rng.randrange(13)
            data.opportunities[lead["ProspectId"]] = maker.opportunities(lead, count)
        for rows in data.opportunities.values():
            for row in rows:
                count = maker.rng.randrange(5)
                data.activities[row["OpportunityId"]] = maker.activities(row, count)
        lead = maker.lead()
        shaped = maker.opportunities(lead, len(ACTIVITY_SHAPES))
        data.opportunities[lead["ProspectId"]] = shaped
        activity_sizes = (0, 1, activity_page_size, activity_page_size + 1, hundreds)
        for shape, row, count in zip(ACTIVITY_SHAPES, shaped, activity_sizes, strict=True):
            data.opportunities_by_shape[shape] = row["OpportunityId"]
            data.activities[row["OpportunityId"]] = maker.activities(row, count)
        for lead in others:
            count = maker.rng.randrange(activities_per_lead + 1)
            rows = [maker.activity(lead, None, maker.created(), count) for _ in range(count)]
            if rows:
                data.lead_activities[lead["ProspectId"]] = rows
        return data

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Dataset:
        """Build a dataset from a JSON-shaped mapping (the format of ``load``).

        Raises:
            ValueError: the mapping does not have that shape.
        """
        if not isinstance(document, Mapping):
            raise ValueError("a dataset document must be a JSON object")
        seed = document.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        data = cls(
            opportunities=_rows_by_id(document.get("opportunities", {}), "opportunities"),
            activities=_rows_by_id(document.get("activities", {}), "activities"),
            leads_by_shape=_names(document.get("leads_by_shape", {}), "leads_by_shape"),
            opportunities_by_shape=_names(
                document.get("opportunities_by_shape", {}), "opportunities_by_shape"
            ),
            seed=seed,
            lead_records=_records(document.get("leads", {}), "leads"),
            lead_activities=_rows_by_id(document.get("lead_activities", {}), "lead_activities"),
        )
        for lead_id in data.lead_records:
            data.opportunities.setdefault(lead_id, [])
        for rows in data.opportunities.values():
            for row in rows:
                opportunity_id = row.get("OpportunityId")
                if isinstance(opportunity_id, str):
                    data.activities.setdefault(opportunity_id, [])
        return data

    def to_dict(self) -> dict[str, Any]:
        """The JSON-shaped mapping ``from_dict`` reads back."""
        return {
            "seed": self.seed,
            "leads_by_shape": dict(self.leads_by_shape),
            "opportunities_by_shape": dict(self.opportunities_by_shape),
            "opportunities": self.opportunities,
            "activities": self.activities,
            "leads": self.lead_records,
            "lead_activities": self.lead_activities,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Read a dataset from a UTF-8 JSON file.

        The file holds ``{"opportunities": {lead id: [row, ...]}, "activities":
        {opportunity id: [row, ...]}}``; ``leads_by_shape``, ``opportunities_by_shape`` and
        ``seed`` are optional, and so are ``leads`` ({lead id: lead}, as Leads.RecentlyModified
        serves it flattened) and ``lead_activities`` ({lead id: [row, ...]}, activities on no
        opportunity). Every ``OpportunityId`` found gets an activity list (empty if the file
        gives none), so GetActivitiesOfOpportunity knows it.

        Raises:
            OSError: the file cannot be read.
            ValueError: it is not UTF-8 JSON of that shape; the message names the file.
        """
        name = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as file:
                document = json.load(file)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno}"
            raise ValueError(f"{name} is not valid JSON ({where}: {error.msg})") from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{name} is not UTF-8 text ({error.reason})") from error
        try:
            return cls.from_dict(document)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from error

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Write the dataset to ``path`` as UTF-8 JSON that ``load`` reads back.

        Raises:
            OSError: the file cannot be written.
        """
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.to_dict(), file, ensure_ascii=False)

    def copy(self) -> Dataset:
        """A copy with its own dicts and lists (the row dicts themselves are shared)."""
        other = Dataset(
            opportunities={key: list(rows) for key, rows in self.opportunities.items()},
            activities={key: list(rows) for key, rows in self.activities.items()},
            leads_by_shape=dict(self.leads_by_shape),
            opportunities_by_shape=dict(self.opportunities_by_shape),
            seed=self.seed,
            lead_records=dict(self.lead_records),
            lead_activities={key: list(rows) for key, rows in self.lead_activities.items()},
        )
        other._added_at = dict(self._added_at)
        other._added = self._added
        other._changes = list(self._changes)
        other._clock = self._clock
        return other

    def restore(self, snapshot: Dataset) -> None:
        """Make this dataset, in place, hold what ``snapshot`` holds (see ``copy``)."""
        fresh = snapshot.copy()
        self.opportunities.clear()
        self.opportunities.update(fresh.opportunities)
        self.activities.clear()
        self.activities.update(fresh.activities)
        self.leads_by_shape.clear()
        self.leads_by_shape.update(fresh.leads_by_shape)
        self.opportunities_by_shape.clear()
        self.opportunities_by_shape.update(fresh.opportunities_by_shape)
        self.seed = fresh.seed
        self.lead_records.clear()
        self.lead_records.update(fresh.lead_records)
        self.lead_activities.clear()
        self.lead_activities.update(fresh.lead_activities)
        self._added_at = fresh._added_at
        self._added = fresh._added
        self._changes = fresh._changes

    def _maker(self) -> RowMaker:
        self._added += 1
        return RowMaker(random.Random(f"{self.seed}:added:{self._added}"))

    def add_opportunity(self, lead_id: str, row: Mapping[str, Any] | None = None) -> Row:
        """Add an opportunity to ``lead_id`` (a new lead is created) and return its row.

        Without ``row``, a realistic one is generated for that lead, created one minute after
        its latest opportunity. The new opportunity gets an empty activity list. The time it
        was added is remembered for ``EmulatorConfig.index_lag``.

        Raises:
            ValueError: ``row`` has no string "OpportunityId", or that id already exists.
        """
        rows = self.opportunities.setdefault(lead_id, [])
        if row is None:
            maker = self._maker()
            lead = lead_part(rows[0]) if rows else maker.lead(lead_id)
            stored = maker.opportunity(lead, latest_created(rows) + 60, len(rows) + 1)
        else:
            stored = dict(row)
        opportunity_id = stored.get("OpportunityId")
        if not isinstance(opportunity_id, str):
            raise ValueError("an opportunity row needs a string 'OpportunityId'")
        if opportunity_id in self.activities:
            raise ValueError(f"opportunity {opportunity_id} already exists")
        rows.append(stored)
        self.activities[opportunity_id] = []
        self._added_at[opportunity_id] = self.note("opportunity", opportunity_id, None)
        return stored

    def add_activity(self, opportunity_id: str, row: Mapping[str, Any] | None = None) -> Row:
        """Add an activity to ``opportunity_id`` and return its row.

        Without ``row``, a realistic one is generated, created one minute after the
        opportunity's latest activity.

        Raises:
            KeyError: the opportunity is unknown (not a key of ``activities``).
        """
        rows = self.activities[opportunity_id]
        if row is not None:
            stored = dict(row)
        else:
            maker = self._maker()
            opportunity = self._find_opportunity(opportunity_id)
            if opportunity is None:
                lead = lead_part(rows[0]) if rows else maker.lead()
                opportunity = maker.opportunity(lead, START, 1)
                opportunity["OpportunityId"] = opportunity_id
            lead = lead_part(opportunity)
            stored = maker.activity(lead, opportunity, latest_created(rows) + 60, len(rows) + 1)
        rows.append(stored)
        activity_id = stored.get("ProspectActivityId")
        if isinstance(activity_id, str):
            self.note("activity", activity_id, None)
        return stored

    def leads(self) -> list[Row]:
        """Every known lead as Leads.RecentlyModified serves it, flattened to attribute: value
        (``ProspectID``, ``FirstName``, ``LastName``, ``EmailAddress``, ``Phone``, ``OwnerId``,
        ``ProspectStage``, ``Score``, ``CreatedOn``, ``ModifiedOn`` and a few more).

        A lead in ``lead_records`` is served as stored there; the others are derived afresh on
        each call from the lead ids (the keys of ``opportunities``), the lead part of their
        opportunity rows and ``seed``: the same dataset gives the same leads.
        """
        return [self.lead(lead_id) for lead_id in self.opportunities]

    def lead(self, lead_id: str) -> Row:
        """The lead ``lead_id`` as ``leads`` gives it (for a known lead)."""
        stored = self.lead_records.get(lead_id)
        if stored is not None:
            return stored
        return modified_lead(lead_id, self.seed, self.opportunities.get(lead_id, []))

    def activity_count(self) -> int:
        """How many activities the account holds, on opportunities or not."""
        on_opportunities = sum(map(len, self.activities.values()))
        return on_opportunities + sum(map(len, self.lead_activities.values()))

    def note(self, kind: Kind, record_id: str, before: Record | None) -> float:
        """Log a change to a record (``before``: as it was, None if new); return its time."""
        at = self._clock()
        self._changes.append(Change(at, kind, record_id, before))
        return at

    def changes_since(self, horizon: float) -> list[Change]:
        """The logged changes later than ``horizon``, oldest first."""
        changes = self._changes
        start = len(changes)
        while start and changes[start - 1].at > horizon:
            start -= 1
        return changes[start:]

    def _find_opportunity(self, opportunity_id: str) -> Row | None:
        for rows in self.opportunities.values():
            for row in rows:
                if row.get("OpportunityId") == opportunity_id:
                    return row
        return None

    def added_at(self, opportunity_id: str) -> float | None:
        """When ``add_opportunity`` added it, by the clock of the ``EmulatorApp`` serving this
        dataset (``time.monotonic()`` by default); None for original rows."""
        return self._added_at.get(opportunity_id)

    def _use_clock(self, clock: Callable[[], float]) -> None:
        """Note the times of added opportunities with ``clock`` (the serving app's)."""
        self._clock = clock
