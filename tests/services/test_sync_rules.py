"""What `leadsquared_account` promises of a run, one promise a test, against a small emulated
account: bad arguments refused before anything is sent, the keys and types read from dlt's
configuration, the cursor never past the run's end, ``lag`` reading again what the feeds
showed late, and keys that dlt would make one column kept apart.

The emulator's clock is the real one: dlt runs each sync in an event loop of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import dlt
import pytest
from sync_fixtures import ACCOUNT_TYPES, next_second, oldest_change, pipeline_in, small_dataset
from sync_fixtures import sync_source as source

from leadsq_async.dlt import leadsquared_account
from leadsq_async.testing import (
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

TYPES = ACCOUNT_TYPES
RESOURCES = ("leads", "opportunities", "activities")


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture
def emulator(small_account: RunningEmulator) -> RunningEmulator:
    return small_account


def column(pipeline: dlt.Pipeline, sql: str) -> list[Any]:
    with pipeline.sql_client() as client:
        rows = client.execute_sql(sql.format(dataset=client.fully_qualified_dataset_name()))
    assert rows is not None
    return [row[0] if len(row) == 1 else tuple(row) for row in rows]


def resource_state(pipeline: dlt.Pipeline, resource: str) -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = pipeline.state["sources"]["leadsquared_account"][
        "resources"
    ]
    return resources[resource]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"opportunity_types": None}, TypeError, "no documented endpoint lists"),
        ({"opportunity_types": "12002"}, TypeError, "list of event codes"),
        ({"opportunity_types": ["12002", "Won"]}, ValueError, "event code such as 12002"),
        ({"start_date": dt.datetime(2024, 1, 1)}, ValueError, "start_date must be an aware"),
        ({"lag": dt.timedelta(minutes=-1)}, ValueError, "lag must be a timedelta of zero"),
        ({"index_lag": "2m"}, ValueError, "index_lag must be a timedelta"),
        ({"index_lag": dt.timedelta(days=999999)}, ValueError, "at most 3650 days"),
        ({"lag": dt.timedelta(days=3651)}, ValueError, "lag must be at most 3650 days"),
        ({"with_activities": "no"}, TypeError, "with_activities must be a bool"),
        ({"reconcile": 1}, TypeError, "reconcile must be a bool"),
        ({"rate_limit": "often"}, ValueError, "often"),
        ({"host": "http://api.leadsquared.example"}, ValueError, "plain http is refused"),
        ({"host": "https://user:pass@api.leadsquared.com"}, ValueError, "credentials"),
    ],
)
def test_a_bad_argument_is_refused_when_the_source_is_made_and_nothing_is_sent(
    emulator: RunningEmulator, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        source(emulator, **options)
    assert emulator.secret_key not in str(raised.value)
    assert emulator.stats.total == 0


def test_keys_host_limit_and_types_come_from_dlt_configuration(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With nothing but the start passed, the source reads [sources.leadsquared]: the keys,
    the host, the rate limit and the opportunity types (the section `leadsquared` reads)."""
    monkeypatch.setenv("SOURCES__LEADSQUARED__ACCESS_KEY", emulator.access_key)
    monkeypatch.setenv("SOURCES__LEADSQUARED__SECRET_KEY", emulator.secret_key)
    monkeypatch.setenv("SOURCES__LEADSQUARED__HOST", emulator.url)
    monkeypatch.setenv("SOURCES__LEADSQUARED__RATE_LIMIT", "2000/1")
    monkeypatch.setenv("SOURCES__LEADSQUARED__OPPORTUNITY_TYPES", '["12001", "12002"]')
    pipeline = pipeline_in(tmp_path, "configured")
    configured = leadsquared_account(
        start_date=oldest_change(emulator), lag=dt.timedelta(0), index_lag=dt.timedelta(0)
    )
    pipeline.run(configured.with_resources("opportunities"))
    expected = {
        row["ProspectActivityId"]
        for code in ("12001", "12002")
        for row in emulator.account.opportunities(code)
    }
    assert expected
    held = column(pipeline, "SELECT opportunity_id FROM {dataset}.opportunities")
    assert sorted(held) == sorted(expected)


def test_the_cursor_a_run_commits_is_never_past_its_start_less_the_index_lag(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Rows changed within the index lag (here an hour) are left for a later run, the search's
    included although it serves them, and every cursor and walk end committed is at most the
    run's start less an hour; a run with no index lag then reads them."""
    account = emulator.account
    owner = next(row["RelatedProspectId"] for row in account.opportunities())
    lead = account.add_lead()["ProspectID"]
    opportunity = account.add_opportunity(owner, "12001")["OpportunityId"]
    activity = account.add_activity(owner)["ProspectActivityId"]
    pipeline = pipeline_in(tmp_path, "behind")
    started = dt.datetime.now(dt.timezone.utc)
    pipeline.run(source(emulator, index_lag=dt.timedelta(hours=1)))

    end = started - dt.timedelta(hours=1)
    for resource in RESOURCES:
        state = resource_state(pipeline, resource)
        cursor = state["incremental"]["ModifiedOn"]["last_value"]
        assert cursor <= end, resource
        assert dt.datetime.fromisoformat(state["walked_to"]) <= end, resource
    leads = column(pipeline, "SELECT prospect_id FROM {dataset}.leads")
    opportunities = column(pipeline, "SELECT opportunity_id FROM {dataset}.opportunities")
    activities = column(pipeline, "SELECT prospect_activity_id FROM {dataset}.activities")
    assert lead not in leads
    assert opportunity not in opportunities
    assert activity not in activities
    assert len(opportunities) == len(account.opportunities()) - 1

    next_second()
    pipeline.run(source(emulator))
    assert lead in column(pipeline, "SELECT prospect_id FROM {dataset}.leads")
    assert opportunity in column(pipeline, "SELECT opportunity_id FROM {dataset}.opportunities")
    assert activity in column(pipeline, "SELECT prospect_activity_id FROM {dataset}.activities")


def test_lag_reads_again_a_change_the_feeds_showed_only_after_the_run(tmp_path: Path) -> None:
    """The feeds serve a change 3 s late. A run in the second after it does not see it, and
    the next run starts where that walk ended, past the change: with no lag the change is
    never read, and with a lag of 5 s it is."""
    app = EmulatorApp(small_dataset(), EmulatorConfig(rate_limits=["2000/1"], index_lag=3.0))
    sql = "SELECT first_name FROM {dataset}.leads WHERE prospect_id = '%s'"
    with serve_in_thread(app) as emulator:
        lead = emulator.account.leads()[0]["ProspectID"]
        start = oldest_change(emulator)
        without, within = pipeline_in(tmp_path, "no_lag"), pipeline_in(tmp_path, "lag")

        def both() -> None:
            without.run(source(emulator, start_date=start).with_resources("leads"))
            lagging = source(emulator, start_date=start, lag=dt.timedelta(seconds=5))
            within.run(lagging.with_resources("leads"))

        both()
        next_second()
        changed_at = time.time()
        emulator.account.modify_lead(lead, FirstName="Late")
        next_second()  # the runs end past the change's second, so the next start past it
        both()
        for pipeline in (without, within):
            assert column(pipeline, sql % lead) != ["Late"], "the change showed too soon"
        time.sleep(max(0.0, changed_at + 3.1 - time.time()))
        both()

    assert column(without, sql % lead) != ["Late"]
    assert column(within, sql % lead) == ["Late"]


def test_keys_that_dlt_makes_one_column_never_overwrite_an_id_or_a_typed_field(
    emulator: RunningEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lead sent with keys that dlt names as its id and its ModifiedOn, an opportunity with
    one named as its id and an mx_ field twice, an activity with an mx_ field twice (the
    feed sends no other key of ours): the ids and dates stay the account's, and each
    colliding key loads beside them with _2 after its name."""
    account = emulator.account
    lead = account.leads()[0]["ProspectID"]
    opportunity = account.opportunities()[0]["ProspectActivityId"]
    activity = account.activities()[0]["ProspectActivityId"]
    account.modify_lead(lead, prospect_id="not-the-id", modified_on="not a date")
    account.modify_opportunity(
        opportunity, **{"Opportunity Id": "same-for-all", "mx_custom_1": "lower"}
    )
    account.modify_activity(activity, mx_custom_1="lower")
    next_second()
    pipeline = pipeline_in(tmp_path, "collisions")
    with caplog.at_level(logging.WARNING, logger="leadsq_async"):
        pipeline.run(source(emulator))

    leads = column(
        pipeline, "SELECT prospect_id, prospect_id_2, modified_on_2 FROM {dataset}.leads"
    )
    assert (lead, "not-the-id", "not a date") in leads
    assert len({row[0] for row in leads}) == len(account.leads())
    dates = column(pipeline, "SELECT modified_on FROM {dataset}.leads")
    assert all(isinstance(date, dt.datetime) for date in dates)
    opportunities = column(
        pipeline,
        "SELECT opportunity_id, opportunity_id_2, mx_custom_1, mx_custom_1_2 "
        "FROM {dataset}.opportunities",
    )
    held = {row[0]: row[1:] for row in opportunities}
    assert len(held) == len(account.opportunities())
    assert held[opportunity][0] == "same-for-all"
    assert held[opportunity][2] == "lower"
    activities = column(
        pipeline, "SELECT prospect_activity_id, mx_custom_1_2 FROM {dataset}.activities"
    )
    assert (activity, "lower") in activities
    assert len({row[0] for row in activities}) == len(account.activities())
    warned = [r.getMessage() for r in caplog.records if "same column" in r.getMessage()]
    assert any("'prospect_id' is loaded as 'prospect_id_2'" in line for line in warned)
