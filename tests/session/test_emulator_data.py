"""The emulator's data and settings, without HTTP: generation, shapes, files, dates, config."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest

from leadsq_async import RateLimit
from leadsq_async.testing import Dataset, EmulatorConfig, sample_rows
from leadsq_async.testing._dates import DATE_STYLES, format_date, parse_date


@pytest.fixture(scope="module")
def data() -> Dataset:
    """The default dataset, as the fixture serves it."""
    return Dataset.generate()


def all_rows(data: Dataset) -> list[dict[str, Any]]:
    rows = [row for rows in data.opportunities.values() for row in rows]
    return rows + [row for rows in data.activities.values() for row in rows]


def style_of(date: str) -> str:
    if date.startswith("/Date("):
        return "wcf"
    if "/" in date:
        return "us"
    return "millis" if "." in date else "plain"


# Generation


def test_same_seed_gives_the_same_rows() -> None:
    """Two datasets generated from one seed are identical."""
    first = Dataset.generate(seed=11, thousands=40, hundreds=40)
    second = Dataset.generate(seed=11, thousands=40, hundreds=40)
    assert first.to_dict() == second.to_dict()


def test_other_seed_gives_other_rows() -> None:
    """Another seed gives other ids."""
    first = Dataset.generate(seed=1, thousands=40, hundreds=40)
    second = Dataset.generate(seed=2, thousands=40, hundreds=40)
    assert set(first.opportunities).isdisjoint(second.opportunities)


def test_lead_shapes_have_their_sizes(data: Dataset) -> None:
    """Leads with 0, 1, a page, a page plus one and thousands of opportunities exist."""
    sizes = {shape: len(data.opportunities[lead]) for shape, lead in data.leads_by_shape.items()}
    assert sizes == {"empty": 0, "one": 1, "page": 100, "page_plus_one": 101, "thousands": 2500}


def test_opportunity_shapes_have_their_sizes(data: Dataset) -> None:
    """Opportunities with 0, 1, a page, a page plus one and hundreds of activities exist."""
    shapes = data.opportunities_by_shape.items()
    sizes = {shape: len(data.activities[opportunity]) for shape, opportunity in shapes}
    assert sizes == {"empty": 0, "one": 1, "page": 25, "page_plus_one": 26, "hundreds": 300}


def test_sizes_are_configurable() -> None:
    """generate() takes the page size and the large sizes."""
    data = Dataset.generate(page_size=10, thousands=50, activity_page_size=5, hundreds=60)
    assert len(data.opportunities[data.leads_by_shape["page_plus_one"]]) == 11
    assert len(data.opportunities[data.leads_by_shape["thousands"]]) == 50
    assert len(data.activities[data.opportunities_by_shape["hundreds"]]) == 60


@pytest.mark.parametrize(
    ("sizes", "error"),
    [
        ({"page_size": 0}, ValueError),
        ({"thousands": -1}, ValueError),
        ({"hundreds": 1.5}, TypeError),
        ({"opportunity_types": 0}, ValueError),
        ({"opportunity_types": 7}, ValueError),
        ({"activities_per_lead": -1}, ValueError),
    ],
)
def test_bad_sizes_are_refused(sizes: dict[str, Any], error: type[Exception]) -> None:
    """Sizes must be ints, at least 1 for page sizes and 0 for the others."""
    with pytest.raises(error):
        Dataset.generate(**sizes)


def test_every_opportunity_has_an_activity_list(data: Dataset) -> None:
    """Every opportunity id is a key of activities (so GetActivitiesOfOpportunity knows it)."""
    opportunity_ids = {row["OpportunityId"] for rows in data.opportunities.values() for row in rows}
    assert opportunity_ids == set(data.activities)


def test_rows_carry_their_ids(data: Dataset) -> None:
    """Opportunity rows carry OpportunityId and ProspectId; activity rows ProspectActivityId."""
    for lead_id, rows in data.opportunities.items():
        assert all(row["ProspectId"] == lead_id and "OpportunityId" in row for row in rows)
    for rows in data.activities.values():
        assert all("ProspectActivityId" in row and "ProspectId" in row for row in rows)


def test_ids_are_guid_shaped(data: Dataset) -> None:
    """Every id is a GUID string."""
    rows = all_rows(data)
    for key in ("ProspectId", "OpportunityId", "ProspectActivityId"):
        values = [row[key] for row in rows if key in row]
        assert all(str(uuid.UUID(value)) == value for value in values)


def test_opportunity_rows_have_the_seed_page_keys(data: Dataset) -> None:
    """Opportunity rows carry every key of the endpoint page's example rows."""
    seed_keys = {
        "ProspectId", "FirstName", "LastName", "EmailAddress", "Phone", "DoNotCall",
        "DoNotEmail", "LeadName", "LeadOwner", "OpportunityEventType", "OpportunityEvent",
        "OpportunityNote", "Score", "PACreatedOn", "PAModifiedOn", "IP_Latitude",
        "IP_Longitude", "PACreatedByName", "mx_Custom_1", "Status", "mx_Custom_2", "Owner",
        "OwnerName", "OpportunityId", "Total",
    }  # fmt: skip
    assert all(seed_keys <= set(row) for rows in data.opportunities.values() for row in rows)


def test_activity_rows_have_the_seed_page_keys(data: Dataset) -> None:
    """Activity rows carry every key of the endpoint page's example row."""
    seed_keys = {
        "ProspectId", "FirstName", "LastName", "EmailAddress", "Phone", "DoNotCall",
        "DoNotEmail", "LeadName", "LeadOwner", "ProspectActivityId", "ActivityType",
        "ActivityEvent", "Score", "PACreatedOn", "PAModifiedOn", "ActivityEvent_Note",
        "IP_Latitude", "IP_Longitude", "PACreatedByName", "Status", "O_ProspectActivityId",
        "Total", "O_ActivityEventName", "O_ActivityEvent", "O_mx_Custom_1", "O_Status", "O_Owner",
    }  # fmt: skip
    assert all(seed_keys <= set(row) for rows in data.activities.values() for row in rows)


def test_custom_keys_are_on_some_rows_only(data: Dataset) -> None:
    """mx_Custom_N keys differ between rows: some rows have mx_Custom_6, others not."""
    rows = data.opportunities[data.leads_by_shape["thousands"]]
    having = sum("mx_Custom_6" in row for row in rows)
    assert 0 < having < len(rows)


def test_names_include_unicode(data: Dataset) -> None:
    """Some lead names are not ASCII."""
    names = {row["LeadName"] for row in all_rows(data)}
    assert any(not name.isascii() for name in names)
    assert any(name.isascii() for name in names)


def test_a_custom_field_holds_a_json_object_in_a_string(data: Dataset) -> None:
    """Some rows hold a JSON object encoded as a string in a custom field."""
    values = [row["mx_Custom_3"] for row in all_rows(data) if "mx_Custom_3" in row]
    objects = []
    for value in values:
        if value.startswith("{"):
            objects.append(json.loads(value))
    assert objects
    assert all(isinstance(obj, dict) for obj in objects)


def test_dates_come_in_all_four_formats(data: Dataset) -> None:
    """PACreatedOn values use each of the four date formats LeadSquared sends."""
    styles = {style_of(row["PACreatedOn"]) for row in all_rows(data)}
    assert styles == {"plain", "millis", "us", "wcf"}


def test_numbers_arrive_as_strings(data: Dataset) -> None:
    """Score, OpportunityEvent and ActivityEvent are strings of digits."""
    for row in all_rows(data):
        event = row.get("OpportunityEvent", row.get("ActivityEvent"))
        assert isinstance(row["Score"], str)
        assert row["Score"].isdigit()
        assert isinstance(event, str)
        assert event.isdigit()


def test_flags_are_zero_or_one_strings(data: Dataset) -> None:
    """DoNotCall and DoNotEmail are "0" or "1", and both occur."""
    rows = all_rows(data)
    assert {row["DoNotCall"] for row in rows} == {"0", "1"}
    assert {row["DoNotEmail"] for row in rows} == {"0", "1"}


def test_missing_values_are_null_or_empty(data: Dataset) -> None:
    """Missing values arrive both as null and as ""."""
    values = [value for row in all_rows(data) for value in row.values()]
    assert None in values
    assert "" in values


# Files and changes


def test_dump_then_load_gives_the_same_dataset(tmp_path: Path) -> None:
    """A dataset written with dump() reads back equal with load(), unicode included."""
    data = Dataset.generate(seed=5, thousands=20, hundreds=20)
    data.dump(tmp_path / "data.json")
    assert Dataset.load(tmp_path / "data.json").to_dict() == data.to_dict()


def test_load_gives_known_opportunities_an_activity_list(tmp_path: Path) -> None:
    """An opportunity in the file without activities gets an empty activity list."""
    path = tmp_path / "mine.json"
    row = {"ProspectId": "L1", "OpportunityId": "O1"}
    path.write_text(json.dumps({"opportunities": {"L1": [row]}}), encoding="utf-8")
    data = Dataset.load(path)
    assert (data.opportunities, data.activities) == ({"L1": [row]}, {"O1": []})


@pytest.mark.parametrize(
    "document",
    [[], {"opportunities": []}, {"opportunities": {"L1": [1]}}, {"activities": {"O1": {}}}],
    ids=["list", "opportunities-list", "row-not-object", "activities-not-list"],
)
def test_load_refuses_a_malformed_file(tmp_path: Path, document: object) -> None:
    """A file that is not a dataset raises ValueError."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError, match="must be"):
        Dataset.load(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"opportunities": ', " is not valid JSON (line 1, column 19: Expecting value)"),
        (b"\xff\xfe{}", " is not UTF-8 text (invalid start byte)"),
        (b'{"opportunities": []}', ": opportunities must be an object mapping ids to lists"),
    ],
    ids=["invalid-json", "not-utf8", "not-a-dataset"],
)
def test_load_errors_name_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    """Whatever is wrong with the file, the ValueError starts with its path."""
    path = tmp_path / "mine.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}{reason}')}"):
        Dataset.load(path)


def test_add_opportunity_generates_the_newest_row(data: Dataset) -> None:
    """add_opportunity() without a row adds a row created after the lead's others."""
    copy = data.copy()
    lead = copy.leads_by_shape["page"]
    newest = max(parse_date(row["PACreatedOn"]) or 0.0 for row in copy.opportunities[lead])
    row = copy.add_opportunity(lead)
    assert (parse_date(row["PACreatedOn"]) or 0.0) > newest
    assert row["ProspectId"] == lead
    assert copy.activities[row["OpportunityId"]] == []
    assert copy.added_at(row["OpportunityId"]) is not None


def test_add_opportunity_refuses_a_duplicate_id(data: Dataset) -> None:
    """Adding an opportunity whose id exists raises ValueError."""
    copy = data.copy()
    existing = copy.opportunities[copy.leads_by_shape["one"]][0]
    with pytest.raises(ValueError, match="already exists"):
        copy.add_opportunity(copy.leads_by_shape["one"], existing)


def test_copy_and_restore_leave_the_original_alone(data: Dataset) -> None:
    """Changes to a copy do not reach the original; restore() brings a dataset back."""
    copy = data.copy()
    snapshot = copy.copy()
    copy.add_opportunity(copy.leads_by_shape["empty"])
    assert data.opportunities[data.leads_by_shape["empty"]] == []
    copy.restore(snapshot)
    assert copy.opportunities[copy.leads_by_shape["empty"]] == []


def test_repr_summarises_instead_of_listing_rows(data: Dataset) -> None:
    """repr(dataset) gives counts, not thousands of rows."""
    assert repr(data).startswith("Dataset(leads=")
    assert len(repr(data)) < 200


# sample_rows


@pytest.mark.parametrize(
    ("kind", "id_key"), [("opportunity", "OpportunityId"), ("activity", "ProspectActivityId")]
)
def test_sample_rows_returns_count_rows_of_the_kind(kind: Any, id_key: str) -> None:
    """sample_rows() returns as many rows as asked, each with its id key."""
    rows = sample_rows(kind, 7)
    assert len(rows) == 7
    assert all(id_key in row and "ProspectId" in row for row in rows)


def test_sample_rows_cover_the_four_date_formats_first() -> None:
    """The first four sample rows use each date format in turn."""
    rows = sample_rows("activity", 4, seed=9)
    assert [style_of(row["PACreatedOn"]) for row in rows] == list(DATE_STYLES)


def test_sample_rows_are_seeded() -> None:
    """The same seed gives the same rows; another seed other rows."""
    assert sample_rows("opportunity", 5, seed=1) == sample_rows("opportunity", 5, seed=1)
    assert sample_rows("opportunity", 5, seed=1) != sample_rows("opportunity", 5, seed=2)


def test_sample_rows_refuses_an_unknown_kind() -> None:
    """An unknown kind raises ValueError."""
    with pytest.raises(ValueError, match="kind"):
        sample_rows("lead", 1)  # type: ignore[arg-type]


# Dates


@pytest.mark.parametrize(
    "text",
    [
        "2026-07-31 05:33:50",
        "2026-07-31 05:33:50.000",
        "7/31/2026 5:33:50 AM",
        "/Date(1785476030000+0000)/",
    ],
)
def test_each_date_format_reads_as_the_same_instant(text: str) -> None:
    """The four formats of one instant read as the same UTC seconds."""
    assert parse_date(text) == 1785476030.0


@pytest.mark.parametrize("style", DATE_STYLES)
def test_written_dates_read_back(style: Any) -> None:
    """format_date() output reads back as the same instant, afternoon hours included."""
    assert parse_date(format_date(1785508430, style)) == 1785508430.0


@pytest.mark.parametrize("text", ["", "soon", "2026-13-01 00:00:00", "13/45/2026 1:00:00 PM"])
def test_non_dates_read_as_none(text: str) -> None:
    """Text that is no date in the four formats reads as None."""
    assert parse_date(text) is None


# Config


def test_config_defaults() -> None:
    """The defaults are the documented ones."""
    config = EmulatorConfig()
    assert (config.rate_limit_calls, config.rate_limit_period, config.rate_limit_status) == (
        25,
        5.0,
        429,
    )
    assert (config.page_size_cap, config.page_size_cap_mode) == (1000, "clamp")
    assert (config.fault_rate, config.fault_seed, config.wrong_region_host) == (0.0, 0, None)
    assert config.fault_kinds == {"500", "502", "503", "drop", "truncate", "slow"}
    assert (config.latency, config.jitter, config.insert_ahead, config.index_lag) == (0, 0, 0, 0)
    assert (config.leads_page_size_cap, config.window_row_limit) == (5000, None)
    assert (config.search_strict, config.search_id_key, config.search_ignores_sorting) == (
        True,
        "ProspectActivityId",
        False,
    )


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("rate_limit_calls", 0, ValueError),
        ("rate_limit_calls", True, TypeError),
        ("rate_limit_period", 0, ValueError),
        ("rate_limit_period", math.inf, ValueError),
        ("rate_limit_status", 503, ValueError),
        ("page_size_cap_mode", "ignore", ValueError),
        ("fault_rate", 1.5, ValueError),
        ("fault_kinds", {"explode"}, ValueError),
        ("fault_kinds", "drop", TypeError),
        ("latency", -0.1, ValueError),
        ("latency", "0.1", TypeError),
        ("insert_ahead", -1, ValueError),
        ("wrong_region_host", "", TypeError),
        ("leads_page_size_cap", 0, ValueError),
        ("window_row_limit", -1, ValueError),
        ("window_row_limit", 1.5, TypeError),
        ("search_strict", 1, TypeError),
        ("search_id_key", "Id", ValueError),
    ],
)
def test_config_refuses_bad_values_at_run_time(field: str, value: object, error: type) -> None:
    """Assigning a bad value raises TypeError or ValueError and keeps the old value."""
    config = EmulatorConfig()
    before = getattr(config, field)
    with pytest.raises(error):
        setattr(config, field, value)
    assert getattr(config, field) == before


def test_config_converts_fault_kinds_to_a_frozenset() -> None:
    """fault_kinds given as a set or list is stored as a frozenset."""
    config = EmulatorConfig()
    config.fault_kinds = ["drop", "slow"]  # type: ignore[assignment]
    assert config.fault_kinds == frozenset({"drop", "slow"})


def test_config_rate_limits_default_to_the_single_limit() -> None:
    """By default rate_limits holds the one limit rate_limit_calls/rate_limit_period describe."""
    assert EmulatorConfig().rate_limits == (RateLimit(25, 5.0),)
    assert EmulatorConfig(rate_limit_calls=3, rate_limit_period=0.5).rate_limits == (
        RateLimit(3, 0.5),
    )


def test_config_rate_limits_take_limits_pairs_and_texts() -> None:
    """RateLimits, (calls, period) pairs and texts are stored as a tuple of RateLimits."""
    config = EmulatorConfig(rate_limits=[RateLimit(10, 5), (200, 20.0), "10000/86400"])
    assert config.rate_limits == (RateLimit(10, 5), RateLimit(200, 20), RateLimit(10_000, 86_400))
    config.rate_limits = RateLimit(7, 1)  # type: ignore[assignment]
    assert config.rate_limits == (RateLimit(7, 1),)


def test_config_first_limit_is_rate_limit_calls_and_period() -> None:
    """rate_limit_calls and rate_limit_period read and replace the first limit only."""
    config = EmulatorConfig(rate_limits=[(25, 5.0), (200, 20.0)], rate_limit_calls=10)
    assert (config.rate_limit_calls, config.rate_limit_period) == (10, 5.0)
    config.rate_limit_period = 1.0
    assert config.rate_limits == (RateLimit(10, 1.0), RateLimit(200, 20.0))


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([], ValueError),
        ("25/5", TypeError),
        ([(25,)], TypeError),
        ([(0, 5.0)], ValueError),
        ([(25, 0)], ValueError),
        (["25 per 5"], ValueError),
        (None, TypeError),
    ],
    ids=["empty", "bare-text", "one-number", "no-calls", "no-period", "bad-text", "none"],
)
def test_config_refuses_bad_rate_limits(value: object, error: type[Exception]) -> None:
    """Bad rate_limits raise TypeError or ValueError and keep the old limits."""
    config = EmulatorConfig(rate_limits=[(25, 5.0), (200, 20.0)])
    with pytest.raises(error):
        config.rate_limits = value  # type: ignore[assignment]
    assert config.rate_limits == (RateLimit(25, 5.0), RateLimit(200, 20.0))


def test_config_copies_keep_every_limit() -> None:
    """attrs.evolve and update_from carry every limit, and equal configs compare equal."""
    config = EmulatorConfig(rate_limits=[(25, 5.0), (200, 20.0)])
    other = EmulatorConfig()
    other.update_from(config)
    assert other == config == attrs.evolve(config)
    assert other != EmulatorConfig()


def test_opportunities_come_in_the_types_asked() -> None:
    """By default opportunities are of the six types 12000 to 12005; opportunity_types=3
    keeps the first three; the rows' ids and dates do not depend on it."""
    every = Dataset.generate(thousands=200, hundreds=0)
    three = Dataset.generate(thousands=200, hundreds=0, opportunity_types=3)
    types = {
        name: {row["OpportunityEvent"] for rows in data.opportunities.values() for row in rows}
        for name, data in (("every", every), ("three", three))
    }
    assert types == {
        "every": {"12000", "12001", "12002", "12003", "12004", "12005"},
        "three": {"12000", "12001", "12002"},
    }
    assert every.leads_by_shape == three.leads_by_shape


def test_other_leads_have_activities_on_no_opportunity() -> None:
    """Each of the other leads has 0 to activities_per_lead activities of its own, with ids of
    their own, counted by activity_count."""
    data = Dataset.generate(thousands=0, hundreds=0, other_leads=40, activities_per_lead=5)
    sizes = [len(rows) for rows in data.lead_activities.values()]
    assert sizes
    assert max(sizes) <= 5
    assert set(data.lead_activities) <= set(data.opportunities)
    on_opportunities = sum(map(len, data.activities.values()))
    assert data.activity_count() == on_opportunities + sum(sizes)
