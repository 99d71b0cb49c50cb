"""The account-wide sync (`leadsquared_account`, ``leadsq-async sync``) against the emulator,
into DuckDB and the real PostgreSQL: a first sync, a day's changes (1% of rows modified, 0.5%
added, 0.1% deleted, a lead with opportunities among them), a second sync with reconcile equal
to the emulator's account field by field, then a sync killed with SIGKILL and run again.

The emulator serves a small account at a fast rate limit, with no index lag, so each sync
takes a second or so. Its clock is the real one (dlt runs the sync in a loop of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import psycopg2
import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from sync_fixtures import (
    ACCOUNT_TYPES,
    next_second,
    oldest_change,
    pipeline_in,
    small_dataset,
    sync_source,
)

import leadsq_async as lsq
from leadsq_async.dlt.account_session import SharedSession
from leadsq_async.dlt.account_work import merged
from leadsq_async.testing import (
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

TYPES = ACCOUNT_TYPES
COMMAND = [sys.executable, "-m", "leadsq_async.cli"]
NAMING = NamingConvention()
# A lead's name, email and phone, copied into its opportunities' and activities' rows: a change
# of the lead shows there without moving their ModifiedOn, so no cursor sees it (docs:
# warehouse.md); the leads table holds them current.
LEAD_COPIES = {"FirstName", "LastName", "EmailAddress", "Phone", "LeadName"}
SEARCH = "OpportunityManagement.svc/Retrieve/BySearchParameter"
ACTIVITIES_OF_OPPORTUNITY = "OpportunityManagement.svc/GetActivitiesOfOpportunity"
KEYS = {"leads": "ProspectID", "opportunities": "OpportunityId", "activities": "ProspectActivityId"}
Query = Callable[[str], list[dict[str, Any]]]


@pytest.fixture(autouse=True)
def _dlt_in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture
def emulator(small_account: RunningEmulator) -> RunningEmulator:
    return small_account


@contextlib.contextmanager
def duckdb_warehouse(directory: Path) -> Iterator[tuple[Any, str, Query, dict[str, str]]]:
    path = directory / "leadsquared.duckdb"

    def query(sql: str) -> list[dict[str, Any]]:
        with duckdb.connect(str(path), read_only=True) as connection:
            cursor = connection.execute(sql)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    yield dlt.destinations.duckdb(str(path)), "leadsquared_account", query, {}


@contextlib.contextmanager
def postgres_warehouse(url: str) -> Iterator[tuple[Any, str, Query, dict[str, str]]]:
    dataset = f"lsq_sync_{uuid.uuid4().hex[:12]}"

    def query(sql: str) -> list[dict[str, Any]]:
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        connection.close()
        return rows

    try:
        environment = {"DESTINATION__POSTGRES__CREDENTIALS": url}
        yield dlt.destinations.postgres(url), dataset, query, environment
    finally:
        connection = psycopg2.connect(url)
        connection.autocommit = True
        with connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):
                cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.close()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Any, str, Query, dict[str, str]]]:
    with (
        duckdb_warehouse(tmp_path)
        if request.param == "duckdb"
        else postgres_warehouse(request.getfixturevalue("postgres_url")) as w
    ):
        yield w


def canonical(value: object) -> object:
    """A value as text, as the emulator's rows hold it ('' and None both no value)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return f"{value.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    # Flags are sent as 1/0 or true/false and typed as booleans.
    return {"1": "true", "0": "false", "True": "true", "False": "false"}.get(text, text)


def expected_activity(row: dict[str, Any]) -> dict[str, Any]:
    """An activity of the account (as RetrieveByActivityEvent sends it) in the fields the
    activities feed sends of it."""
    fields = {
        "ProspectActivityId": row["ProspectActivityId"],
        "Id": row["ProspectActivityId"],
        "RelatedProspectId": row["RelatedProspectId"],
        "EventCode": row["ActivityEvent"],
        "Note": row["ActivityEvent_Note"],
        "Status": row["Status"],
        "CreatedOn": row["CreatedOn"],
        "ModifiedOn": row["ModifiedOn"],
    }
    fields.update((key, value) for key, value in row.items() if key.startswith("mx_"))
    return fields


def expected_tables(emulator: RunningEmulator) -> dict[str, dict[str, dict[str, Any]]]:
    """Per table, id -> the fields the warehouse must hold, as the account stands now."""
    account = emulator.account
    opportunities = {}
    for row in account.opportunities():
        opportunities[row["ProspectActivityId"]] = {
            "OpportunityId": row["ProspectActivityId"],
            **row,
        }
    return {
        "leads": {row["ProspectID"]: row for row in account.leads()},
        "opportunities": opportunities,
        "activities": {
            row["ProspectActivityId"]: expected_activity(row) for row in account.activities()
        },
    }


def assert_exact(query: Query, dataset: str, emulator: RunningEmulator) -> set[str]:
    """The live rows of each table equal the account's, field by field, each once; returns the
    ids marked deleted."""
    deleted: set[str] = set()
    for table, expected in expected_tables(emulator).items():
        key = NAMING.normalize_path(KEYS[table])
        rows = query(f"SELECT * FROM {dataset}.{table}")
        ids = [row[key] for row in rows]
        assert len(ids) == len(set(ids)), f"{table}: a row is there twice"
        live = {row[key]: row for row in rows if row["_lsq_deleted_at"] is None}
        deleted |= {row[key] for row in rows if row["_lsq_deleted_at"] is not None}
        assert set(live) == set(expected), table
        for row_id, fields in expected.items():
            held = live[row_id]
            for field, value in fields.items():
                if table != "leads" and field in LEAD_COPIES:
                    continue
                column = NAMING.normalize_path(field)
                assert canonical(held[column]) == canonical(value), (table, row_id, field)
    return deleted


def scripted_changes(emulator: RunningEmulator, seed: int) -> dict[str, set[str]]:
    """1% of the rows modified, 0.5% added, 0.1% deleted (a lead with opportunities among
    them); returns the ids deleted, per table, those of the deleted lead's rows included."""
    account = emulator.account
    chance = random.Random(seed)
    leads = [row["ProspectID"] for row in account.leads()]
    opportunities = [row["ProspectActivityId"] for row in account.opportunities()]
    activities = [row["ProspectActivityId"] for row in account.activities()]
    rows = len(leads) + len(opportunities) + len(activities)
    with_opportunities = sorted({row["RelatedProspectId"] for row in account.opportunities()})
    doomed = chance.choice(with_opportunities)
    deleted = {
        "leads": {doomed},
        "opportunities": {
            row["ProspectActivityId"]
            for row in account.opportunities()
            if row["RelatedProspectId"] == doomed
        },
        "activities": {
            row["ProspectActivityId"]
            for row in account.activities()
            if row["RelatedProspectId"] == doomed
        },
    }
    account.delete_lead(doomed)
    lone = chance.choice([a for a in activities if a not in deleted["activities"]])
    account.delete_activity(lone)
    deleted["activities"].add(lone)
    alive = [lead for lead in leads if lead != doomed]
    for _ in range(max(1, rows // 100)):
        kind = chance.randrange(3)
        if kind == 0:
            account.modify_lead(chance.choice(alive), FirstName=f"Changed{chance.random():.6f}")
        elif kind == 1:
            pick = chance.choice([o for o in opportunities if o not in deleted["opportunities"]])
            account.modify_opportunity(pick, Status=f"Won {chance.random():.6f}")
        else:
            pick = chance.choice([a for a in activities if a not in deleted["activities"]])
            account.modify_activity(pick, ActivityEvent_Note=f"Note {chance.random():.6f}")
    for number in range(max(1, rows // 200)):
        kind = number % 3
        if kind == 0:
            account.add_lead()
        elif kind == 1:
            # To a lead that has some: the emulator derives a generated lead's owner from its
            # first opportunity, so a first one would change the lead unseen.
            owner = chance.choice([lead for lead in with_opportunities if lead != doomed])
            account.add_opportunity(owner, chance.choice(TYPES[:3]))
        else:
            account.add_activity(chance.choice(alive))
    next_second()
    return deleted


def test_sync_modify_reconcile_kill_and_rerun_stays_exact(
    emulator: RunningEmulator,
    warehouse: tuple[Any, str, Query, dict[str, str]],
    tmp_path: Path,
) -> None:
    destination, dataset, query, environment = warehouse
    start = oldest_change(emulator)
    pipelines = tmp_path / "dlt" / "pipelines"
    pipeline = dlt.pipeline(
        pipeline_name="leadsquared_account",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=str(pipelines),
    )
    next_second()
    pipeline.run(sync_source(emulator, start))
    assert not assert_exact(query, dataset, emulator)
    columns = {t: pipeline.default_schema.get_table_columns(t) for t in KEYS}
    for table in KEYS:
        assert columns[table]["modified_on"]["data_type"] == "timestamp", table
        assert columns[table]["_lsq_deleted_at"]["data_type"] == "timestamp", table
    assert columns["leads"]["score"]["data_type"] == "bigint"
    custom = [name for name in columns["leads"] if name.startswith("mx_")]
    assert custom
    assert all(columns["leads"][name]["data_type"] == "text" for name in custom)

    deleted = scripted_changes(emulator, seed=1)
    pipeline.run(sync_source(emulator, start, reconcile=True))
    marked = assert_exact(query, dataset, emulator)
    assert marked == set().union(*deleted.values())

    # A third sync, killed with SIGKILL midway, then run again: still exact.
    more = scripted_changes(emulator, seed=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LSQ_", "DESTINATION"))}
    env.update(
        environment,
        LSQ_HOST=emulator.url,
        LSQ_ACCESS_KEY=emulator.access_key,
        LSQ_SECRET_KEY=emulator.secret_key,
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    args = ["sync", "--dataset", dataset, "--since", start.isoformat(), "--lag", "0s"]
    args += ["--index-lag", "0s", "--reconcile", "--quiet"]
    args += [f"--opportunity-type={code}" for code in TYPES]
    args += ["--destination", "duckdb" if not environment else "postgres", "--rate-limit", "20/1"]
    before = emulator.stats.total
    process = subprocess.Popen([*COMMAND, *args], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    while emulator.stats.total < before + 5:
        assert process.poll() is None, "the sync ended before it could be killed"
        assert time.monotonic() < deadline, "the sync made no request"
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=10)

    pipeline.run(sync_source(emulator, start, reconcile=True))
    marked = assert_exact(query, dataset, emulator)
    assert marked == set().union(*deleted.values(), *more.values())


def test_opportunity_activities_come_through_their_opportunities(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """With with_opportunity_activities, the activities of the opportunities a run read are
    merged into activities with their OpportunityId, and only those."""
    start = oldest_change(emulator)
    pipeline = pipeline_in(tmp_path, "opportunity_activities")
    source = sync_source(
        emulator,
        start,
        opportunity_types=["12001"],
        with_leads=False,
        with_activities=False,
        with_opportunity_activities=True,
    )
    next_second()
    pipeline.run(source)

    opportunities = {row["ProspectActivityId"] for row in emulator.account.opportunities(12001)}
    expected = {
        (activity["ProspectActivityId"], opportunity)
        for rows in emulator.data.opportunities.values()
        for row in rows
        if (opportunity := row["OpportunityId"]) in opportunities
        for activity in emulator.data.activities.get(opportunity, [])
    }
    assert expected
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("activities")
        held = client.execute_sql(f"SELECT prospect_activity_id, opportunity_id FROM {table}")
    assert held is not None
    assert sorted(map(tuple, held)) == sorted(expected)


def test_a_sync_starts_where_the_last_walk_ended_not_at_an_old_cursor(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """On a quiet account, whose latest change is long before the first sync, a second sync
    walks from where the first one's walk ended, not from the cursor (the latest row): one
    call per feed, where walking again from the cursor costs a call per time window."""
    pipeline = pipeline_in(tmp_path, "quiet")
    types = ["12001", "12002"]
    pipeline.run(sync_source(emulator, oldest_change(emulator), opportunity_types=types))
    newest = max(row["ModifiedOn"] for row in emulator.account.activities())
    assert dt.datetime.now(dt.timezone.utc) - dt.datetime.strptime(
        newest, "%Y-%m-%d %H:%M:%S"
    ).replace(tzinfo=dt.timezone.utc) > dt.timedelta(days=7)
    emulator.stats.reset()
    pipeline.run(sync_source(emulator, oldest_change(emulator), opportunity_types=types))
    # The leads feed, the activities feed, and one search per type.
    assert emulator.stats.total == 2 + len(types), emulator.stats.by_endpoint


class _Heard:
    """A sync's progress that keeps the session's requests and answers, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def sync_started(self, session: lsq.Session, work: Any) -> None:
        def hear(event: lsq.Event) -> None:
            if isinstance(event, lsq.RequestSent):
                self.events.append(("sent", event.endpoint))
            elif isinstance(event, lsq.ResponseReceived):
                self.events.append(("answered", event.endpoint))

        session.events.subscribe(hear)


def test_the_opportunity_types_are_searched_at_once(tmp_path: Path) -> None:
    """Each type's search is its own walk, and the walks go at once: at a 0.2 s round trip,
    every type's first page is asked before any is answered, not one type after another."""
    app = EmulatorApp(small_dataset(), EmulatorConfig(rate_limits=["2000/1"], latency=0.2))
    heard = _Heard()
    pipeline = pipeline_in(tmp_path, "types_at_once")
    with serve_in_thread(app) as running:
        source = sync_source(running, oldest_change(running), progress=heard)
        pipeline.run(source.with_resources("opportunities"))
        assert running.stats.by_endpoint == {SEARCH: len(TYPES)}
    searches = [what for what, endpoint in heard.events if endpoint == SEARCH]
    assert searches == ["sent"] * len(TYPES) + ["answered"] * len(TYPES)
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("opportunities")
        held = client.execute_sql(f"SELECT count(*) FROM {table}")
    assert held is not None
    assert held[0][0] == len(app.account.opportunities())


def test_the_activities_of_the_opportunities_read_are_fetched_many_at_once(
    tmp_path: Path,
) -> None:
    """At a 0.1 s round trip, the activities of the opportunities a run read are asked for
    many at a time, as crawl's workers ask, not one opportunity after another; each comes
    once, with its opportunity's id."""
    app = EmulatorApp(small_dataset(), EmulatorConfig(rate_limits=["2000/1"], latency=0.1))
    heard = _Heard()
    pipeline = pipeline_in(tmp_path, "activities_at_once")
    with serve_in_thread(app) as running:
        source = sync_source(
            running,
            opportunity_types=["12001"],
            with_leads=False,
            with_activities=False,
            with_opportunity_activities=True,
            progress=heard,
        )
        pipeline.run(source)
        opportunities = len(running.account.opportunities(12001))
    in_flight, most = 0, 0
    for what, endpoint in heard.events:
        if endpoint == ACTIVITIES_OF_OPPORTUNITY:
            in_flight += 1 if what == "sent" else -1
            most = max(most, in_flight)
    assert opportunities > 10
    assert most >= 10, most
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("activities")
        held = client.execute_sql(f"SELECT prospect_activity_id, opportunity_id FROM {table}")
    assert held is not None
    assert len(held) == len({row[0] for row in held})
    assert {row[1] for row in held} <= {
        row["ProspectActivityId"] for row in app.account.opportunities(12001)
    }


async def _ticks(
    name: str, count: int, every: float, ended: list[str]
) -> AsyncGenerator[str, None]:
    try:
        for number in range(count):
            await asyncio.sleep(every)
            if name == "bad" and number == 1:
                raise RuntimeError("bad walk")
            yield f"{name}{number}"
    finally:
        ended.append(name)


@pytest.mark.looptime
async def test_merged_walks_go_at_once_each_in_its_order() -> None:
    ended: list[str] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    walks = [_ticks("a", 3, 1.0, ended), _ticks("b", 2, 1.4, ended)]
    items = [item async for item in merged(walks)]
    assert items == ["a0", "b0", "a1", "b1", "a2"]
    assert loop.time() - start == pytest.approx(3.0)
    assert sorted(ended) == ["a", "b"]


@pytest.mark.looptime
async def test_a_merged_walk_that_fails_cancels_the_others_and_raises() -> None:
    ended: list[str] = []
    walks = [_ticks("slow", 5, 10.0, ended), _ticks("bad", 3, 1.0, ended)]
    taken: list[str] = []

    async def take() -> None:
        async for item in merged(walks):
            taken.append(item)

    with pytest.raises(RuntimeError, match="bad walk"):
        await take()
    assert taken == ["bad0"]
    assert sorted(ended) == ["bad", "slow"]


@pytest.mark.looptime
async def test_closing_a_merge_early_closes_every_walk() -> None:
    ended: list[str] = []
    merge = merged([_ticks("a", 5, 1.0, ended), _ticks("b", 5, 1.0, ended)])
    assert await merge.__anext__() == "a0"
    await merge.aclose()
    assert sorted(ended) == ["a", "b"]


@pytest.mark.looptime
async def test_a_walk_that_fails_first_stops_the_others_and_closes_the_session() -> None:
    """Three walks on one shared session: the one asking for an item when another fails is
    cancelled and waited for, the one between two items is closed, the session is closed
    with the last of them, and only then does the failure reach the caller (dlt)."""
    happened: list[str] = []

    @contextlib.asynccontextmanager
    async def open_session() -> AsyncIterator[str]:
        happened.append("opened")
        yield "session"
        await asyncio.sleep(0.5)  # closing takes a while, as httpx's does
        happened.append("closed")

    shared = SharedSession(open_session, None)

    async def items(name: str, every: float, fails: bool = False) -> AsyncGenerator[str, None]:
        async with shared.use():
            try:
                for number in range(3):
                    await asyncio.sleep(every)
                    if fails:
                        raise RuntimeError(f"{name} refused")
                    yield f"{name}{number}"
            finally:
                happened.append(f"{name} ended")

    failing = shared.walk(items("failing", 2.0, fails=True))
    asking = shared.walk(items("asking", 10.0))
    idle = shared.walk(items("idle", 0.1))
    assert await idle.__anext__() == "idle0"  # then nobody asks it for more
    pending = asyncio.ensure_future(asking.__anext__())
    with pytest.raises(RuntimeError, match="failing refused"):
        await failing.__anext__()
    happened.append("raised")
    assert pending.cancelled()
    assert happened[0] == "opened"
    assert happened[-2:] == ["closed", "raised"]
    assert set(happened[1:-2]) == {"failing ended", "asking ended", "idle ended"}
    assert [item async for item in idle] == []  # a walk of a failed run yields no more


def test_spent_quota_exits_75_saying_when_to_run_again(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A daily quota spent midway: exit code 75, the time to run again, nothing committed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSQ_")}
    env.update(
        LSQ_HOST=emulator.url,
        LSQ_ACCESS_KEY=emulator.access_key,
        LSQ_SECRET_KEY=emulator.secret_key,
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    result = subprocess.run(
        [*COMMAND, "sync", "--opportunity-type", "12000", "--rate-limit", "3/1d", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 75, result.stderr
    assert "the daily quota of 3 calls is spent" in result.stderr
    assert "run it again after" in result.stderr
    assert emulator.stats.total == 3
    database = tmp_path / "leadsquared.duckdb"
    if database.exists():
        with duckdb.connect(str(database), read_only=True) as connection:
            tables = connection.execute("SELECT table_name FROM information_schema.tables")
            assert not {"leads", "opportunities", "activities"} & {t for (t,) in tables.fetchall()}
