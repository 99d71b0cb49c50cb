"""Typed records: structuring rows the way the API sends them, and back, exactly."""

from __future__ import annotations

import copy
import json
import pickle
import random
import re
import weakref
from collections import OrderedDict, UserString
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import attrs
import cattrs
import pytest

from leadsq_async import _dates, _readers, _structure
from leadsq_async._dates import parse_date
from leadsq_async._records import Activity, Opportunity
from leadsq_async._structure import structure, structure_rows, unstructure

UTC = timezone.utc

# The example rows of the two endpoint pages (seeds/000_... and seeds/004_...).
SEED_OPPORTUNITY: dict[str, Any] = {
    "ProspectId": "69e1c27e-dd08-4b53-b509-f353ad1c7f4d",
    "FirstName": "Manish",
    "LastName": "Garg",
    "EmailAddress": "manish@mailinator.com",
    "Phone": "+91-99999999",
    "DoNotCall": "0",
    "DoNotEmail": "0",
    "LeadName": "Manish Garg",
    "LeadOwner": "Rohan Sane",
    "OpportunityEventType": "2",
    "OpportunityEvent": "12005",
    "OpportunityNote": "",
    "Score": "0",
    "PACreatedOn": "2020-09-16 05:43:00",
    "PAModifiedOn": "2020-09-16 07:26:09",
    "IP_Latitude": None,
    "IP_Longitude": None,
    "PACreatedByName": "Rajesh Aggarwal",
    "mx_Custom_1": "Manish Garg - Loan",
    "Status": "Open",
    "mx_Custom_2": "Prospecting",
    "mx_Custom_6": "2500000",
    "mx_Custom_8": "2020-11-06 05:45:00",
    "Owner": "a4dfa1c5-c6d2-11ea-92ae-0a6d35d1ff1e",
    "OwnerName": "Rajesh Aggarwal",
    "OpportunityId": "4597c076-be5a-4ba2-9b08-ecd21626750f",
    "Total": "2",
}
SEED_ACTIVITY: dict[str, Any] = {
    "ProspectId": "69e1c27e-dd08-4b53-b509-f353ad1c7f4d",
    "FirstName": "Manish",
    "LastName": "Garg",
    "EmailAddress": "manish@mailinator.com",
    "Phone": "+91-9999999999",
    "DoNotCall": "0",
    "DoNotEmail": "0",
    "LeadName": "Manish Garg",
    "LeadOwner": "Rohan Sane",
    "ProspectActivityId": "4ff82538-3e7c-4bc2-ab0d-81957e91865c",
    "ActivityType": "2",
    "ActivityEvent": "168",
    "Score": "0",
    "PACreatedOn": "2020-10-16 05:57:37",
    "PAModifiedOn": "2020-10-16 06:10:54",
    "ActivityEvent_Note": None,
    "IP_Latitude": None,
    "IP_Longitude": None,
    "PACreatedByName": "Rajesh Aggarwal",
    "Status": None,
    "O_ProspectActivityId": "",
    "Total": "1",
    "O_ActivityEventName": "",
    "O_ActivityEvent": "",
    "O_mx_Custom_1": "",
    "O_Status": "",
    "O_Owner": "",
}

# One instant, 2026-07-31 05:33:50 UTC, in every format the API is known to send.
INSTANT = datetime(2026, 7, 31, 5, 33, 50, tzinfo=UTC)
SAME_INSTANT = [
    "2026-07-31 05:33:50",
    "2026-07-31 05:33:50.000",
    "2026-07-31 05:33:50.000000",
    "7/31/2026 5:33:50 AM",
    "07/31/2026 05:33:50 am",
    "7/31/2026 05:33:50",
    "7/31/2026  5:33:50\tAM",
    "/Date(1785476030000+0000)/",
    "/Date(1785476030000)/",
    "2026-07-31T05:33:50",
    "2026-07-31T05:33:50Z",
    "2026-07-31T05:33:50.000Z",
    "2026-07-31T05:33:50+00:00",
    "2026-07-31T11:03:50+05:30",
    "2026-07-31T11:03:50+0530",
    "2026-07-31 00:33:50-05:00",
    " 2026-07-31 05:33:50 ",
]

SEED_ROWS = [(SEED_OPPORTUNITY, Opportunity), (SEED_ACTIVITY, Activity)]
TYPED_KEYS = {
    Opportunity: [key for key in SEED_OPPORTUNITY if not key.startswith("mx_")],
    Activity: [key for key in SEED_ACTIVITY if key != "O_mx_Custom_1"],
}
ID_ATTRIBUTES = {Opportunity: ("opportunity_id", "lead_id"), Activity: ("activity_id", "lead_id")}


def typed_attributes(cls: type[Any]) -> list[str]:
    return [field.name for field in attrs.fields(cls) if field.name not in ("extra", "_row")]


def opportunity(**changes: Any) -> Opportunity:
    return structure({**SEED_OPPORTUNITY, **changes}, Opportunity)


def test_seed_opportunity_row_structures_to_its_typed_values() -> None:
    """The opportunity row of the API's page gives the expected value for every attribute."""
    expected = Opportunity(
        opportunity_id="4597c076-be5a-4ba2-9b08-ecd21626750f",
        lead_id="69e1c27e-dd08-4b53-b509-f353ad1c7f4d",
        first_name="Manish",
        last_name="Garg",
        email_address="manish@mailinator.com",
        phone="+91-99999999",
        do_not_call=False,
        do_not_email=False,
        lead_name="Manish Garg",
        lead_owner="Rohan Sane",
        opportunity_event_type=2,
        opportunity_event=12005,
        opportunity_note=None,
        score=0,
        created_on=datetime(2020, 9, 16, 5, 43, 0, tzinfo=UTC),
        modified_on=datetime(2020, 9, 16, 7, 26, 9, tzinfo=UTC),
        ip_latitude=None,
        ip_longitude=None,
        created_by_name="Rajesh Aggarwal",
        status="Open",
        owner_id="a4dfa1c5-c6d2-11ea-92ae-0a6d35d1ff1e",
        owner_name="Rajesh Aggarwal",
        total=2,
        extra={
            "mx_Custom_1": "Manish Garg - Loan",
            "mx_Custom_2": "Prospecting",
            "mx_Custom_6": "2500000",
            "mx_Custom_8": "2020-11-06 05:45:00",
        },
        row=SEED_OPPORTUNITY,
    )
    assert structure(SEED_OPPORTUNITY, Opportunity) == expected


def test_seed_activity_row_structures_to_its_typed_values() -> None:
    """The activity row of the API's page gives the expected value for every attribute."""
    expected = Activity(
        activity_id="4ff82538-3e7c-4bc2-ab0d-81957e91865c",
        lead_id="69e1c27e-dd08-4b53-b509-f353ad1c7f4d",
        first_name="Manish",
        last_name="Garg",
        email_address="manish@mailinator.com",
        phone="+91-9999999999",
        do_not_call=False,
        do_not_email=False,
        lead_name="Manish Garg",
        lead_owner="Rohan Sane",
        activity_type=2,
        activity_event=168,
        score=0,
        created_on=datetime(2020, 10, 16, 5, 57, 37, tzinfo=UTC),
        modified_on=datetime(2020, 10, 16, 6, 10, 54, tzinfo=UTC),
        activity_event_note=None,
        ip_latitude=None,
        ip_longitude=None,
        created_by_name="Rajesh Aggarwal",
        status=None,
        opportunity_activity_id=None,
        total=1,
        opportunity_activity_event_name=None,
        opportunity_activity_event=None,
        opportunity_status=None,
        opportunity_owner_id=None,
        extra={"O_mx_Custom_1": ""},
        row=SEED_ACTIVITY,
    )
    assert structure(SEED_ACTIVITY, Activity) == expected


@pytest.mark.parametrize("text", SAME_INSTANT)
def test_every_date_format_reads_as_the_same_aware_utc_instant(text: str) -> None:
    """Each date format the API sends gives the same instant, with tzinfo UTC."""
    moment = opportunity(PACreatedOn=text).created_on
    assert moment == INSTANT
    assert moment is not None
    assert moment.tzinfo is UTC


def test_dotnet_date_offset_is_informational() -> None:
    """The +HHMM after a .NET date's milliseconds is not applied: the number is UTC."""
    assert parse_date("/Date(1785476030000+0530)/") == INSTANT
    assert parse_date("/Date(1785476030000-0800)/") == INSTANT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7/31/2026 12:00:00 AM", datetime(2026, 7, 31, 0, 0, 0, tzinfo=UTC)),
        ("7/31/2026 12:00:00 PM", datetime(2026, 7, 31, 12, 0, 0, tzinfo=UTC)),
        ("7/31/2026 11:59:59 PM", datetime(2026, 7, 31, 23, 59, 59, tzinfo=UTC)),
        ("7/31/2026", datetime(2026, 7, 31, tzinfo=UTC)),
        ("2026-07-31", datetime(2026, 7, 31, tzinfo=UTC)),
        ("2026-07-31 05:33:50.1234567", INSTANT + timedelta(microseconds=123456)),
        ("2026-07-31T05:33:50.5Z", INSTANT + timedelta(microseconds=500000)),
        ("/Date(-1000)/", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_date_variants_read_as_expected(text: str, expected: datetime) -> None:
    """Noon and midnight in 12-hour time, bare dates, long fractions, pre-epoch .NET dates."""
    assert parse_date(text) == expected


@pytest.mark.parametrize("hour", range(24))
def test_us_dates_read_every_hour_alike_on_both_clocks(hour: int) -> None:
    """Each hour reads the same on a 12- or 24-hour clock, with or without leading zeros."""
    twelve, meridiem = hour % 12 or 12, "AM" if hour < 12 else "PM"
    texts = [
        f"7/31/2026 {twelve}:05:09 {meridiem}",
        f"07/31/2026 {twelve:02}:5:9 {meridiem.lower()}",
        f"7/31/2026 {hour}:05:09",
        f"7/31/2026 {hour:02}:05:09",
        f"7/031/2026 {twelve:03}:005:009 {meridiem}",
    ]
    expected = datetime(2026, 7, 31, hour, 5, 9, tzinfo=UTC)
    assert [parse_date(text) for text in texts] == [expected] * len(texts)


@pytest.mark.parametrize(
    "value",
    [
        "",
        None,
        "yesterday",
        "2026-13-01 00:00:00",
        "2026-02-30 00:00:00",
        "2026-07-31 25:00:00",
        "2026-07-31x05:33:50",
        "7/31/2026 13:00:00 PM",
        "7/31/2026 5:33 AM",
        "7/31/2026 :33:50 AM",
        "7/31/2026 :33:50",
        "6/31/2026 5:33:50 AM",
        "13/31/2026 5:33:50 AM",
        "7/31/2026 0:33:50 AM",
        "2/29/2026",
        "13/31/2026",
        "/Date(abc)/",
        "/Date(99999999999999999)/",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00",
        "2026-07-31T05:33:50+25:00",
        "２０２６-07-31 05:33:50",
        1785476030000,
        {"date": "2026-07-31"},
    ],
)
def test_unreadable_dates_read_as_none(value: object) -> None:
    """Garbage, impossible dates and non-strings give None instead of raising."""
    assert opportunity(PACreatedOn=value).created_on is None


_PYTHON_310_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?\+00:00")


def test_dates_never_rely_on_the_wider_fromisoformat_of_python_311(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fromisoformat is only fed what Python 3.10 accepts, so 3.10 reads every format too."""
    fed: list[str] = []

    def python_310_fromisoformat(text: str) -> datetime:
        fed.append(text)
        assert _PYTHON_310_ISO.fullmatch(text), f"Python 3.10 rejects {text!r}"
        return datetime.fromisoformat(text)

    monkeypatch.setattr(_dates, "_fromisoformat", python_310_fromisoformat)
    assert [parse_date(text) for text in SAME_INSTANT] == [INSTANT] * len(SAME_INSTANT)
    assert fed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", False), ("1", True), ("true", True), ("false", False), (1, True), (False, False)],
)
def test_flags_read_as_bool(value: object, expected: bool) -> None:
    """ "0"/"1" (and JSON booleans or 0/1) read as False/True."""
    assert opportunity(DoNotCall=value).do_not_call is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("12005", 12005), ("-3", -3), ("+7", 7), (42, 42), (42.0, 42)],
)
def test_numeric_strings_read_as_int(value: object, expected: int) -> None:
    """Integer strings and integral JSON numbers read as int."""
    assert opportunity(Score=value).score == expected
    assert type(opportunity(Score=value).score) is int


@pytest.mark.parametrize(("value", "expected"), [("12.9716", 12.9716), ("-7", -7.0), (77.5, 77.5)])
def test_coordinates_read_as_float(value: object, expected: float) -> None:
    """Latitude and longitude strings or JSON numbers read as float."""
    assert opportunity(IP_Latitude=value).ip_latitude == expected


@pytest.mark.parametrize("cls", [Opportunity, Activity])
@pytest.mark.parametrize("empty", ["", None])
def test_empty_string_and_null_read_as_none_in_every_typed_attribute(
    cls: type[Any], empty: object
) -> None:
    """ "" and null give None in every typed attribute, and "" in the two required ids."""
    record = structure(dict.fromkeys(TYPED_KEYS[cls], empty), cls)
    for name in typed_attributes(cls):
        expected = "" if name in ID_ATTRIBUTES[cls] else None
        assert getattr(record, name) == expected, name


@pytest.mark.parametrize("cls", [Opportunity, Activity])
def test_missing_keys_read_as_none_and_missing_ids_as_empty_string(cls: type[Any]) -> None:
    """A row without the standard keys gives None everywhere, "" for the ids, no extra."""
    record = structure({}, cls)
    assert [getattr(record, name) for name in ID_ATTRIBUTES[cls]] == ["", ""]
    assert all(
        getattr(record, name) is None
        for name in typed_attributes(cls)
        if name not in ID_ATTRIBUTES[cls]
    )
    assert record.extra == {}


# key: (value the typed view cannot read, the attribute it gives None to)
ODD_VALUES: dict[str, tuple[Any, str]] = {
    "Score": ("abc", "score"),
    "Total": ("1.5", "total"),
    "OpportunityEvent": ("9" * 5000, "opportunity_event"),
    "DoNotCall": ("maybe", "do_not_call"),
    "DoNotEmail": (2, "do_not_email"),
    "IP_Latitude": ("north", "ip_latitude"),
    "IP_Longitude": (float("nan"), "ip_longitude"),
    "PACreatedOn": ("yesterday", "created_on"),
    "PAModifiedOn": ({"when": "now"}, "modified_on"),
    "FirstName": (42, "first_name"),
    "Status": (["Open"], "status"),
}


def test_unreadable_values_read_as_none_and_stay_verbatim() -> None:
    """Values the typed view cannot read give None there, never raise, and round-trip."""
    row = {**SEED_OPPORTUNITY, **{key: value for key, (value, _) in ODD_VALUES.items()}}
    record = structure(row, Opportunity)
    assert {name: getattr(record, name) for _, name in ODD_VALUES.values()} == {
        name: None for _, name in ODD_VALUES.values()
    }
    assert unstructure(record) == row


def test_an_id_that_is_not_a_string_reads_as_empty_string() -> None:
    """A required id sent as a number gives "" in the typed view and stays verbatim."""
    record = opportunity(OpportunityId=12345)
    assert record.opportunity_id == ""
    assert unstructure(record)["OpportunityId"] == 12345


def test_unreadable_number_texts_stay_none_after_the_memo_is_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Numbers read the same before and after their memo fills up and starts over."""
    monkeypatch.setattr(_readers, "_MEMO_SIZE", 8)
    values = [str(n) for n in range(20)] + ["x", None, "", 3, 3.0, True]
    expected = [*range(20), None, None, None, 3, 3, 1]
    for _ in range(3):
        assert [opportunity(Score=value).score for value in values] == expected


@pytest.mark.parametrize(
    ("key", "attribute", "json_value", "lookalike"),
    [
        ("Score", "score", 5, Decimal(5)),
        ("Score", "score", 5.0, Fraction(5)),
        ("IP_Latitude", "ip_latitude", 1.5, Decimal("1.5")),
        # A number no other test reads, so the memo holds it first in this test.
        ("IP_Latitude", "ip_latitude", "4861.25", UserString("4861.25")),
    ],
)
def test_a_value_that_is_no_json_type_reads_as_none_whatever_was_read_before(
    key: str, attribute: str, json_value: object, lookalike: object
) -> None:
    """A non-JSON value equal to a JSON one reads as None, before and after the JSON one."""
    first = getattr(opportunity(**{key: lookalike}), attribute)
    assert getattr(opportunity(**{key: json_value}), attribute) is not None
    assert [first, getattr(opportunity(**{key: lookalike}), attribute)] == [None, None]


def test_non_finite_numbers_read_as_none() -> None:
    """NaN and infinities, as text or as JSON numbers, give no coordinate."""
    for value in ("NaN", "inf", "1e999", float("inf"), float("nan"), 10**400):
        assert opportunity(IP_Latitude=value).ip_latitude is None, value


@pytest.mark.parametrize(("row", "cls"), SEED_ROWS)
def test_unstructure_returns_the_seed_row_exactly(row: dict[str, Any], cls: type[Any]) -> None:
    """unstructure gives back the very row: equal, same key order, same value objects."""
    back = unstructure(structure(row, cls))
    assert back == row
    assert list(back) == list(row)
    assert all(back[key] is row[key] for key in row)


def random_value(rng: random.Random) -> Any:
    makers: list[Callable[[], Any]] = [
        lambda: None,
        lambda: "",
        lambda: rng.choice(["0", "1", "2", "-7", "12005", "1.5", "abc", "true"]),
        lambda: "".join(rng.choice("aé再0:/- \u2028\U0001f600") for _ in range(rng.randrange(12))),
        lambda: rng.choice([*SAME_INSTANT, "2026-13-01 00:00:00", "/Date(x)/"]),
        lambda: rng.randrange(-(10**20), 10**20),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.choice([True, False, float("inf"), float("nan")]),
        lambda: {"nested": [1, {"deep": None}], "text": "x"},
        lambda: [1, "two", None],
        lambda: json.dumps({"source": "web"}),
    ]
    return rng.choice(makers)()


@pytest.mark.parametrize("cls", [Opportunity, Activity])
def test_unstructure_returns_random_rows_exactly(cls: type[Any]) -> None:
    """Rows with any subset of keys, in any order, holding any JSON value, round-trip."""
    rng = random.Random(20260731)
    keys = [*TYPED_KEYS[cls], "mx_Custom_1", "mx_Custom_42", "O_mx_Custom_3", "Unknown", "ümlaut"]
    for _ in range(500):
        chosen = rng.sample(keys, rng.randrange(len(keys) + 1))
        row = {key: random_value(rng) for key in chosen}
        back = unstructure(structure(row, cls))
        assert list(back) == list(row)
        assert all(back[key] is row[key] for key in row)


def test_custom_and_unknown_keys_are_kept_verbatim_in_extra_in_row_order() -> None:
    """Keys without a typed attribute land in extra, unchanged, in the row's order."""
    row = {
        "mx_Custom_9": {"nested": True},
        "OpportunityId": "o-1",
        "NewKeyFromTheFuture": "200,000",
        "O_mx_Custom_1": "",
        "mx_Custom_1": None,
    }
    extra = structure(row, Opportunity).extra
    assert list(extra.items()) == [
        ("mx_Custom_9", {"nested": True}),
        ("NewKeyFromTheFuture", "200,000"),
        ("O_mx_Custom_1", ""),
        ("mx_Custom_1", None),
    ]


def test_extra_json_decodes_a_json_object_held_in_a_string() -> None:
    """A custom field holding an encoded JSON object is decoded on request."""
    record = opportunity(mx_Custom_3='{"source": "web", "policy": {"term": 20}}')
    assert record.extra["mx_Custom_3"] == '{"source": "web", "policy": {"term": 20}}'
    assert record.extra_json("mx_Custom_3") == {"source": "web", "policy": {"term": 20}}


@pytest.mark.parametrize(
    "value",
    ["Prospecting", "{not json", '"a string"', "12", None, {"a": 1}, "[" * 100_000 + "]" * 100_000],
)
def test_extra_json_gives_none_for_anything_but_an_encoded_object_or_array(value: object) -> None:
    """Plain text, broken or too deep JSON, JSON scalars and non-strings decode to None."""
    assert opportunity(mx_Custom_3=value).extra_json("mx_Custom_3") is None
    assert opportunity().extra_json("missing") is None


def test_records_are_frozen() -> None:
    """Assigning an attribute raises, and extra cannot be changed either."""
    record = opportunity()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.status = "Won"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.extra["mx_Custom_1"] = "changed"  # type: ignore[index]


@pytest.mark.parametrize(("row", "cls"), SEED_ROWS)
def test_records_are_slotted_instances_of_their_class(row: dict[str, Any], cls: type[Any]) -> None:
    """A structured record is exactly of its class and has slots, no __dict__."""
    record = structure(row, cls)
    assert type(record) is cls
    assert not hasattr(record, "__dict__")
    assert "__slots__" in cls.__dict__


def test_records_can_be_weakly_referenced() -> None:
    """Records support weak references."""
    record = opportunity()
    assert weakref.ref(record)() is record


def test_structure_keeps_its_own_copy_of_the_row() -> None:
    """Changing the row after structuring changes neither the record nor its unstructure."""
    row = dict(SEED_OPPORTUNITY)
    record = structure(row, Opportunity)
    row["Status"] = "Won"
    row["mx_Custom_1"] = "changed"
    assert record.status == "Open"
    assert record.extra["mx_Custom_1"] == "Manish Garg - Loan"
    assert unstructure(record) == SEED_OPPORTUNITY


def test_unstructure_returns_a_new_dict_each_time() -> None:
    """Changing what unstructure returned does not change the record."""
    record = opportunity()
    unstructure(record)["Status"] = "Won"
    assert unstructure(record)["Status"] == "Open"
    assert unstructure(record) is not unstructure(record)


def test_records_from_equal_rows_are_equal_and_hash_alike() -> None:
    """Two records of equal rows compare equal and have the same hash."""
    first, second = opportunity(), structure(dict(SEED_OPPORTUNITY), Opportunity)
    assert first == second
    assert hash(first) == hash(second)


def test_records_differing_only_in_how_a_value_was_sent_are_unequal() -> None:
    """Score "0" and Score 0 read alike but are different rows, so different records."""
    as_text, as_number = opportunity(Score="0"), opportunity(Score=0)
    assert as_text.score == as_number.score
    assert as_text != as_number


def test_records_holding_nested_values_are_hashable() -> None:
    """The hash covers the typed view only, so unhashable raw values do not matter."""
    record = opportunity(mx_Custom_9={"nested": [1, 2]}, Status=["Open"])
    assert hash(record) == hash(opportunity(mx_Custom_9={"nested": [1, 2]}, Status=["Open"]))


def test_repr_shows_the_typed_view_and_extra_but_not_the_row() -> None:
    """The repr names typed attributes and extra once, without dumping the raw row again."""
    text = repr(opportunity())
    assert text.startswith("Opportunity(opportunity_id='4597c076-be5a-4ba2-9b08-ecd21626750f'")
    assert text.count("Manish Garg - Loan") == 1
    assert "OpportunityId" not in text
    assert "extra={'mx_Custom_1': 'Manish Garg - Loan'" in text


@pytest.mark.parametrize(("row", "cls"), SEED_ROWS)
def test_records_survive_pickle_and_copy(row: dict[str, Any], cls: type[Any]) -> None:
    """pickle, copy and deepcopy give an equal record with the same row."""
    record = structure(row, cls)
    for twin in (pickle.loads(pickle.dumps(record)), copy.copy(record), copy.deepcopy(record)):
        assert twin == record
        assert unstructure(twin) == row


def test_the_global_cattrs_converter_is_left_alone() -> None:
    """The library's converter is its own: the global one knows nothing of API rows."""
    assert _structure._converter() is not cattrs.global_converter
    with pytest.raises(cattrs.ClassValidationError):
        cattrs.structure(SEED_OPPORTUNITY, Opportunity)


def test_structure_goes_through_the_library_converter() -> None:
    """The record hooks are registered on the library's converter."""
    hook = _structure._converter().get_structure_hook(Opportunity)
    assert hook(SEED_OPPORTUNITY, Opportunity) == opportunity()
    assert _structure._converter().unstructure(opportunity()) == SEED_OPPORTUNITY


@pytest.mark.parametrize("row", [None, "OpportunityId", [("OpportunityId", "o-1")], 42])
def test_structure_raises_type_error_for_a_row_that_is_not_a_mapping(row: Any) -> None:
    """Only a mapping is a row."""
    with pytest.raises(TypeError, match="mapping"):
        structure(row, Opportunity)


@pytest.mark.parametrize("cls", [dict, str, attrs.make_class("Other", ["a"]), "Opportunity"])
def test_structure_raises_type_error_for_a_class_that_is_not_a_record_class(cls: Any) -> None:
    """Only Opportunity and Activity can be structured."""
    with pytest.raises(TypeError, match="not a record class"):
        structure(SEED_OPPORTUNITY, cls)


def test_structure_accepts_any_mapping() -> None:
    """A read-only or ordered mapping structures like the dict it holds."""
    for row in (MappingProxyType(SEED_OPPORTUNITY), OrderedDict(SEED_OPPORTUNITY)):
        record = structure(row, Opportunity)
        assert record == opportunity()
        assert type(unstructure(record)) is dict


def test_structure_rows_builds_one_record_per_row_in_order() -> None:
    """A page structures to the same records as its rows one by one."""
    rows = [SEED_OPPORTUNITY, {**SEED_OPPORTUNITY, "OpportunityId": "o-2"}, {}]
    assert structure_rows(rows, Opportunity) == [structure(row, Opportunity) for row in rows]


def test_structure_rows_raises_type_error_for_a_row_that_is_not_a_mapping() -> None:
    """A page holding something other than a mapping is refused."""
    with pytest.raises(TypeError, match="mapping"):
        structure_rows([SEED_ACTIVITY, ["not", "a", "row"]], Activity)  # type: ignore[list-item]


def test_structure_rows_raises_type_error_for_a_class_that_is_not_a_record_class() -> None:
    """A page can only be structured into Opportunity or Activity."""
    with pytest.raises(TypeError, match="not a record class"):
        structure_rows([SEED_OPPORTUNITY], dict)


@pytest.mark.parametrize("value", [SEED_OPPORTUNITY, None, "record", object()])
def test_unstructure_raises_type_error_for_anything_but_a_record(value: Any) -> None:
    """Only records can be unstructured."""
    with pytest.raises(TypeError, match="not a record class"):
        unstructure(value)
