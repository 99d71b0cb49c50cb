"""The dlt source and ``leadsq-async load``, against the emulator, into DuckDB and PostgreSQL.

Each test loads a few small leads (some 20 requests a lead at most) under a fast emulator
rate limit, into a DuckDB file of its own or a PostgreSQL schema of its own (dropped after).
The PostgreSQL tests need the server on 127.0.0.1:5432 (database ``test``, user
``postgres``): they are skipped when it does not answer, and fail instead under ``CI``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import dlt
import duckdb
import psycopg2
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

import leadsq_async as lsq
from leadsq_async.dlt import CHECKPOINT_DIRECTORY, failed_leads, leadsquared
from leadsq_async.testing import Dataset, RunningEmulator

CALLS, PERIOD = 100, 0.5
UNKNOWN_LEAD = "00000000-0000-4000-8000-000000000000"
COMMAND = [sys.executable, "-m", "leadsq_async.cli"]
PIPELINE = "leadsquared"


@pytest.fixture(autouse=True)
def _dlt_in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """dlt works in the test's directory (a pipeline's DuckDB file goes where it first ran),
    with no anonymous telemetry (and no waiting for it at exit)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture
def emulator(lsq_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with a fast rate limit, so that loads take a second or two."""
    lsq_emulator.config.rate_limit_calls = CALLS
    lsq_emulator.config.rate_limit_period = PERIOD
    return lsq_emulator


def small_leads(emulator: RunningEmulator, count: int = 12) -> list[str]:
    """``count`` leads with 0 to 12 opportunities each (not the shaped ones)."""
    shaped = set(emulator.data.leads_by_shape.values())
    return [lead for lead in emulator.data.opportunities if lead not in shaped][:count]


def expected_opportunities(data: Dataset, leads: list[str]) -> set[str]:
    """The ids of the emulator's opportunities of ``leads``."""
    return {row["OpportunityId"] for lead in leads for row in data.opportunities[lead]}


def expected_activities(data: Dataset, leads: list[str]) -> set[tuple[str, str]]:
    """(activity id, opportunity id) of every activity of ``leads``' opportunities."""
    return {
        (activity["ProspectActivityId"], opportunity)
        for opportunity in expected_opportunities(data, leads)
        for activity in data.activities[opportunity]
    }


def requests_for(data: Dataset, leads: list[str]) -> int:
    """The fewest requests that fetch ``leads`` with their activities: one a lead, one an
    opportunity (every list fits in one page)."""
    return len(leads) + len(expected_opportunities(data, leads))


@attrs.frozen
class Warehouse:
    """A destination a test loads into, and a way to read it back."""

    name: str
    destination: Any
    dataset: str
    query: Callable[[str], list[tuple[Any, ...]]]
    environment: dict[str, str]

    def opportunity_ids(self) -> list[str]:
        """Every opportunity id loaded, repeats included."""
        return [
            row[0] for row in self.query(f"SELECT opportunity_id FROM {self.dataset}.opportunities")
        ]

    def activity_pairs(self) -> list[tuple[str, str]]:
        """(activity id, opportunity id) of every activity loaded, repeats included."""
        sql = f"SELECT prospect_activity_id, opportunity_id FROM {self.dataset}.activities"
        return [(row[0], row[1]) for row in self.query(sql)]


def duckdb_warehouse(directory: Path) -> Warehouse:
    """A DuckDB file where ``leadsq-async load`` puts it by default: the working directory."""
    path = directory / f"{PIPELINE}.duckdb"

    def query(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(path), read_only=True) as connection:
            return connection.execute(sql).fetchall()

    return Warehouse("duckdb", dlt.destinations.duckdb(str(path)), "leadsquared_data", query, {})


@contextlib.contextmanager
def postgres_warehouse(url: str) -> Iterator[Warehouse]:
    """A schema of the test database of its own, dropped (with dlt's staging schema) after."""
    dataset = f"lsq_test_{uuid.uuid4().hex[:12]}"

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        connection.close()
        return rows

    environment = {"DESTINATION__POSTGRES__CREDENTIALS": url}
    try:
        yield Warehouse("postgres", dlt.destinations.postgres(url), dataset, query, environment)
    finally:
        connection = psycopg2.connect(url)
        connection.autocommit = True
        with connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):
                cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.close()


@contextlib.contextmanager
def warehouse_of(request: pytest.FixtureRequest, directory: Path) -> Iterator[Warehouse]:
    """The warehouse the fixture's parameter names: a DuckDB file, or a PostgreSQL schema."""
    if request.param == "duckdb":
        yield duckdb_warehouse(directory)
    else:
        with postgres_warehouse(request.getfixturevalue("postgres_url")) as warehouse:
            yield warehouse


WAREHOUSES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=WAREHOUSES)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """Each destination in turn: a DuckDB file, then a PostgreSQL schema."""
    with warehouse_of(request, tmp_path) as warehouse:
        yield warehouse


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    """A directory of dlt pipelines of the test's own (their state and checkpoints)."""
    return tmp_path / "dlt" / "pipelines"


def pipeline_into(warehouse: Warehouse, pipelines_dir: Path) -> dlt.Pipeline:
    """The pipeline `leadsq-async load` would use, in the test's own directory."""
    return dlt.pipeline(
        pipeline_name=PIPELINE,
        destination=warehouse.destination,
        dataset_name=warehouse.dataset,
        pipelines_dir=str(pipelines_dir),
    )


def source_for(emulator: RunningEmulator, leads: list[str], **options: Any) -> Any:
    """The source over ``leads``, pointed at the emulator."""
    arguments: dict[str, Any] = {
        "access_key": emulator.access_key,
        "secret_key": emulator.secret_key,
        "host": emulator.url,
        "rate_limit": f"{CALLS}/{PERIOD}",
        **options,
    }
    return leadsquared(leads, **arguments)


@pytest.fixture
def duckdb_pipeline(tmp_path: Path, pipelines_dir: Path) -> dlt.Pipeline:
    """A pipeline into a DuckDB file of the test's own."""
    return pipeline_into(duckdb_warehouse(tmp_path), pipelines_dir)


def duckdb_tables(tmp_path: Path) -> set[str]:
    """The tables of the test's DuckDB file (none if nothing created it)."""
    if not (tmp_path / f"{PIPELINE}.duckdb").exists():
        return set()
    rows = duckdb_warehouse(tmp_path).query("SELECT table_name FROM information_schema.tables")
    return {row[0] for row in rows}


def table_rows(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    """The rows ``sql`` selects in the pipeline's dataset."""
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


# What a load holds: one load into each warehouse, shared by the tests that only read it.


@attrs.frozen
class Load:
    """A load of small leads with their activities, and what it cost."""

    warehouse: Warehouse
    leads: list[str]
    data: Dataset
    requests: int
    rate_limited: int


@pytest.fixture(scope="module", params=WAREHOUSES)
def first_load(
    request: pytest.FixtureRequest,
    lsq_emulator_server: RunningEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Load]:
    """The leads loaded once into each warehouse, from the emulator at its defaults."""
    emulator = lsq_emulator_server
    emulator.app.wait_idle(timeout=30.0)
    emulator.app.reset()
    emulator.config.rate_limit_calls, emulator.config.rate_limit_period = CALLS, PERIOD
    directory = tmp_path_factory.mktemp("first-load")
    with warehouse_of(request, directory) as warehouse:
        leads = small_leads(emulator)
        pipeline = pipeline_into(warehouse, directory / "dlt" / "pipelines")
        pipeline.run(source_for(emulator, leads))
        stats = emulator.stats
        yield Load(warehouse, leads, emulator.data.copy(), stats.accepted, stats.rate_limited)


def test_load_holds_every_row_of_the_emulator_once(first_load: Load) -> None:
    """Each opportunity and activity of the leads is loaded exactly once, activities with
    their opportunity's id."""
    warehouse, data, leads = first_load.warehouse, first_load.data, first_load.leads
    opportunities = warehouse.opportunity_ids()
    assert len(opportunities) == len(expected_opportunities(data, leads))
    assert set(opportunities) == expected_opportunities(data, leads)
    activities = warehouse.activity_pairs()
    assert len(activities) == len(expected_activities(data, leads))
    assert set(activities) == expected_activities(data, leads)


def test_one_crawl_feeds_both_tables(first_load: Load) -> None:
    """The load sends the requests of one crawl with activities, not one crawl per table."""
    assert first_load.requests == requests_for(first_load.data, first_load.leads)
    assert first_load.rate_limited == 0


def test_standard_fields_are_typed_and_custom_fields_kept_as_sent(first_load: Load) -> None:
    """Dates load as timestamps, flags as booleans, numbers as numbers, mx_Custom_N as text."""
    warehouse = first_load.warehouse
    rows = {
        row["OpportunityId"]: row
        for lead in first_load.leads
        for row in first_load.data.opportunities[lead]
    }
    custom = sorted({key for row in rows.values() for key in row if key.startswith("mx_Custom_")})
    columns = ", ".join(key.lower() for key in custom)
    loaded = warehouse.query(
        "SELECT opportunity_id, pa_created_on, do_not_call, score, opportunity_event, "
        f"ip_latitude, {columns} FROM {warehouse.dataset}.opportunities",
    )
    assert len(loaded) == len(rows)
    for opportunity_id, created_on, do_not_call, score, event, latitude, *values in loaded:
        record = lsq.structure(rows[opportunity_id], lsq.Opportunity)
        assert created_on == record.created_on
        assert do_not_call is record.do_not_call
        assert score == record.score
        assert event == record.opportunity_event
        assert latitude == record.ip_latitude
        assert values == [rows[opportunity_id].get(key) for key in custom]


def test_second_load_merges_without_duplicates(
    emulator: RunningEmulator, warehouse: Warehouse, pipelines_dir: Path
) -> None:
    """A second load of the same leads updates the rows that changed and adds none."""
    leads = small_leads(emulator)
    pipeline = pipeline_into(warehouse, pipelines_dir)
    pipeline.run(source_for(emulator, leads))
    rows = emulator.data.opportunities[leads[1]]
    changed = {**rows[0], "Status": "Changed since"}
    rows[0] = changed
    emulator.data.opportunities[leads[1]] = rows

    pipeline.run(source_for(emulator, leads))

    opportunities = warehouse.opportunity_ids()
    assert sorted(opportunities) == sorted(expected_opportunities(emulator.data, leads))
    assert sorted(warehouse.activity_pairs()) == sorted(expected_activities(emulator.data, leads))
    status = warehouse.query(
        f"SELECT status FROM {warehouse.dataset}.opportunities "
        f"WHERE opportunity_id = '{changed['OpportunityId']}'"
    )
    assert status == [("Changed since",)]


def test_without_activities_only_opportunities_are_loaded(
    emulator: RunningEmulator, duckdb_pipeline: dlt.Pipeline, tmp_path: Path
) -> None:
    """with_activities=False loads the opportunities table alone, one request a lead."""
    leads = small_leads(emulator)
    duckdb_pipeline.run(source_for(emulator, leads, with_activities=False))
    assert emulator.stats.accepted == len(leads)
    tables = duckdb_tables(tmp_path)
    assert "opportunities" in tables
    assert "activities" not in tables


# Failures.


def test_failed_lead_is_not_loaded_and_stays_listed_until_a_load_fetches_it(
    emulator: RunningEmulator, duckdb_pipeline: dlt.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """A lead that fails is skipped with a warning and kept in the state; fetched later, it
    loads and leaves the list."""
    leads = small_leads(emulator, 4)
    with caplog.at_level(logging.WARNING, logger="leadsq_async"):
        duckdb_pipeline.run(source_for(emulator, [*leads, UNKNOWN_LEAD]))
    assert set(failed_leads(duckdb_pipeline)) == {UNKNOWN_LEAD}
    assert "Lead does not exist" in failed_leads(duckdb_pipeline)[UNKNOWN_LEAD]
    assert any(UNKNOWN_LEAD in record.getMessage() for record in caplog.records)
    assert set(table_rows(duckdb_pipeline, "SELECT opportunity_id FROM opportunities")) == {
        (opportunity,) for opportunity in expected_opportunities(emulator.data, leads)
    }

    added = emulator.data.add_opportunity(UNKNOWN_LEAD)
    duckdb_pipeline.run(source_for(emulator, list(failed_leads(duckdb_pipeline))))

    assert failed_leads(duckdb_pipeline) == {}
    loaded = table_rows(duckdb_pipeline, "SELECT opportunity_id FROM opportunities")
    assert (added["OpportunityId"],) in loaded


def test_bad_keys_stop_the_load_with_the_authentication_error(
    emulator: RunningEmulator, duckdb_pipeline: dlt.Pipeline, tmp_path: Path
) -> None:
    """An account-wide failure raises (caused by AuthenticationError), loads nothing, and
    does not show the secret key."""
    secret = "not-the-secret-key-" + uuid.uuid4().hex
    source = source_for(emulator, small_leads(emulator), secret_key=secret)
    with pytest.raises(PipelineStepFailed) as raised:
        duckdb_pipeline.run(source)
    causes = []
    error: BaseException | None = raised.value
    while error is not None:
        causes.append(error)
        error = error.__cause__
    assert any(isinstance(cause, lsq.AuthenticationError) for cause in causes)
    assert secret not in str(raised.value)
    assert duckdb_pipeline.has_pending_data is False
    assert "opportunities" not in duckdb_tables(tmp_path)


def test_secret_key_is_in_no_file_the_pipeline_keeps(
    emulator: RunningEmulator, duckdb_pipeline: dlt.Pipeline, pipelines_dir: Path
) -> None:
    """State, schemas, trace, checkpoint and packages never hold the secret key."""
    duckdb_pipeline.run(source_for(emulator, [*small_leads(emulator, 3), UNKNOWN_LEAD]))
    files = [path for path in pipelines_dir.rglob("*") if path.is_file()]
    assert files
    secret = emulator.secret_key.encode()
    assert [path for path in files if secret in path.read_bytes()] == []


# Configuration.


def test_keys_and_settings_come_from_dlt_configuration(
    emulator: RunningEmulator, duckdb_pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no keys passed, they (and the host and rate limit) come from dlt's environment
    variables."""
    monkeypatch.setenv("SOURCES__LEADSQUARED__ACCESS_KEY", emulator.access_key)
    monkeypatch.setenv("SOURCES__LEADSQUARED__SECRET_KEY", emulator.secret_key)
    monkeypatch.setenv("SOURCES__LEADSQUARED__HOST", emulator.url)
    monkeypatch.setenv("SOURCES__LEADSQUARED__RATE_LIMIT", f"{CALLS}/{PERIOD}")
    monkeypatch.setenv("SOURCES__LEADSQUARED__WITH_ACTIVITIES", "false")
    leads = small_leads(emulator, 3)
    duckdb_pipeline.run(leadsquared(leads))
    loaded = table_rows(duckdb_pipeline, "SELECT opportunity_id FROM opportunities")
    assert {row[0] for row in loaded} == expected_opportunities(emulator.data, leads)
    assert emulator.stats.accepted == len(leads)


def test_rate_limit_function_makes_the_limiter_in_the_crawl_and_closes_it(
    emulator: RunningEmulator, duckdb_pipeline: dlt.Pipeline
) -> None:
    """A function given as rate_limit is called once; every request takes a slot of its
    limiter, which is closed after the crawl."""
    made: list[Any] = []

    def make() -> lsq.RateLimiter:
        limiter = Counting(lsq.RateLimit(CALLS, PERIOD))
        made.append(limiter)
        return limiter

    leads = small_leads(emulator, 4)
    duckdb_pipeline.run(source_for(emulator, leads, rate_limit=make))
    assert len(made) == 1
    assert made[0].slots == emulator.stats.accepted == requests_for(emulator.data, leads)
    assert made[0].closed


class Counting(lsq.SlidingWindowLimiter):
    """A limiter that counts the slots it grants and remembers being closed."""

    slots = 0
    closed = False

    def slot(self, *args: Any, **kwargs: Any) -> Any:
        self.slots += 1
        return super().slot(*args, **kwargs)

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


def test_a_limiter_itself_is_refused_for_a_function_that_makes_it(
    emulator: RunningEmulator,
) -> None:
    """A limiter object cannot cross into dlt's event loop: the source asks for a function."""
    with pytest.raises(TypeError, match="function that makes the limiter"):
        source_for(emulator, ["x"], rate_limit=lsq.SlidingWindowLimiter())


def test_importing_the_package_does_not_import_dlt() -> None:
    """`import leadsq_async` stays httpx, attrs and cattrs: dlt comes with leadsq_async.dlt only."""
    code = "import sys, leadsq_async, leadsq_async.cli; print('dlt' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# Interrupted loads, and the command.


def run_load(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``leadsq-async load`` to its end."""
    return subprocess.run(
        [*COMMAND, "load", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def command_environment(
    emulator: RunningEmulator, tmp_path: Path, warehouse: Warehouse | None = None
) -> dict[str, str]:
    """The command's environment: the emulator's keys, a dlt directory of the test's own."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("LSQ_", "DESTINATION"))}
    variables.update(
        LSQ_HOST=emulator.url,
        LSQ_ACCESS_KEY=emulator.access_key,
        LSQ_SECRET_KEY=emulator.secret_key,
        LSQ_RATE_LIMIT=f"{emulator.config.rate_limit_calls}/{emulator.config.rate_limit_period}",
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
        PYTHONUNBUFFERED="1",
    )
    if warehouse is not None:
        variables.update(warehouse.environment)
    return variables


def journal_lines(pipelines_dir: Path) -> int:
    """How many complete lines the checkpoint's journal of the command's pipeline holds."""
    try:
        path = pipelines_dir / PIPELINE / CHECKPOINT_DIRECTORY / "checkpoint.jsonl"
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def journaled_leads(pipelines_dir: Path) -> set[str]:
    """The leads the checkpoint's journal holds as fetched."""
    path = pipelines_dir / PIPELINE / CHECKPOINT_DIRECTORY / "checkpoint.jsonl"
    lines = path.read_bytes().split(b"\n")[1:-1]  # past the header, up to the last full line
    entries = [json.loads(line) for line in lines]
    return {entry["lead_id"] for entry in entries if entry["status"] == "done"}


def test_killed_load_resumes_without_asking_again_for_leads_it_fetched(
    emulator: RunningEmulator, warehouse: Warehouse, tmp_path: Path, pipelines_dir: Path
) -> None:
    """After kill -9 midway, the same command loads every row once, asking the API only for
    the leads the killed one had not fetched."""
    emulator.config.rate_limit_calls, emulator.config.rate_limit_period = 20, 0.5
    leads = small_leads(emulator, 16)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))
    env = command_environment(emulator, tmp_path, warehouse)
    args = ["--leads-file", "leads.txt", "--with-activities", "--concurrency", "2"]
    args += ["--destination", warehouse.name, "--dataset", warehouse.dataset]

    process = subprocess.Popen([*COMMAND, "load", *args], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    while journal_lines(pipelines_dir) < 5:
        assert process.poll() is None, "the load ended before it could be killed"
        assert time.monotonic() < deadline, "the load fetched no lead"
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=10)
    fetched = journaled_leads(pipelines_dir)
    assert 4 <= len(fetched) < len(leads)
    killed_run = emulator.stats.accepted

    result = run_load(*args, cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    assert f"skipped {len(fetched)}" in result.stderr
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )
    assert sorted(warehouse.activity_pairs()) == sorted(expected_activities(emulator.data, leads))
    left = [lead for lead in leads if lead not in fetched]
    assert emulator.stats.accepted - killed_run == requests_for(emulator.data, left)


def test_load_command_writes_a_duckdb_file_in_the_working_directory(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """By default the command loads into ./leadsquared.duckdb and ends with one summary line."""
    leads = small_leads(emulator, 5)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in [*leads, leads[0]]))
    result = run_load(
        "--leads-file", "leads.txt", cwd=tmp_path, env=command_environment(emulator, tmp_path)
    )
    assert result.returncode == 0, result.stderr
    warehouse = duckdb_warehouse(tmp_path)
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("loaded into duckdb dataset leadsquared_data: crawled 5 leads")
    assert "skipped 1" in lines[0]


def test_load_command_names_failed_leads_and_exits_1(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A lead that fails gets a warning line; the others load; the exit code is 1."""
    leads = small_leads(emulator, 3)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in [*leads, UNKNOWN_LEAD]))
    result = run_load(
        "--leads-file", "leads.txt", cwd=tmp_path, env=command_environment(emulator, tmp_path)
    )
    assert result.returncode == 1
    warnings = [
        line for line in result.stderr.splitlines() if line.startswith("leadsq-async: warning")
    ]
    assert len(warnings) == 1
    assert UNKNOWN_LEAD in warnings[0]
    assert result.stderr.splitlines()[-1].startswith("leadsq-async: error: 1 lead failed")
    warehouse = duckdb_warehouse(tmp_path)
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )


@pytest.mark.slow
def test_load_command_keeps_every_rate_limit_given(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """--rate-limit repeated (here in LSQ_RATE_LIMIT): the load keeps to both, no refusal."""
    emulator.config.rate_limits = (lsq.RateLimit(25, 1), lsq.RateLimit(6, 4))
    leads = small_leads(emulator, 8)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))
    env = {**command_environment(emulator, tmp_path), "LSQ_RATE_LIMIT": "25/1 6/4"}
    result = run_load("--leads-file", "leads.txt", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert emulator.stats.rate_limited == 0
    assert sorted(duckdb_warehouse(tmp_path).opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )


def test_load_command_with_bad_keys_gives_one_error_line(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Bad keys stop the load with one error line, no traceback, no secret."""
    (tmp_path / "leads.txt").write_text(f"{small_leads(emulator, 1)[0]}\n")
    env = command_environment(emulator, tmp_path)
    env["LSQ_SECRET_KEY"] = secret = "wrong-" + uuid.uuid4().hex
    result = run_load("--leads-file", "leads.txt", cwd=tmp_path, env=env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leadsq-async: error: HTTP 401")
    assert secret not in result.stderr + result.stdout


def test_load_command_finishes_a_load_killed_after_its_crawl(
    emulator: RunningEmulator, tmp_path: Path, pipelines_dir: Path
) -> None:
    """When only dlt's load step was left, the command finishes it and asks the API nothing."""
    leads = small_leads(emulator, 4)
    warehouse = duckdb_warehouse(tmp_path)
    # What a load killed after its crawl leaves: an extracted package, not yet loaded.
    pipeline_into(warehouse, pipelines_dir).extract(source_for(emulator, leads))
    asked = emulator.stats.accepted
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))

    result = run_load(
        "--leads-file", "leads.txt", cwd=tmp_path, env=command_environment(emulator, tmp_path)
    )

    assert result.returncode == 0, result.stderr
    assert "finished the interrupted load" in result.stderr
    assert emulator.stats.accepted == asked
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )


def test_load_command_without_dlt_says_which_extra_to_install(tmp_path: Path) -> None:
    """Without dlt, `load` fails with one line naming the extra; the other commands work."""
    (tmp_path / "leads.txt").write_text("lead\n")
    code = (
        "import sys; sys.modules['dlt'] = None\n"
        "from leadsq_async.cli import main\n"
        "main(sys.argv[1:])"
    )
    env = {**os.environ, "LSQ_ACCESS_KEY": "key", "LSQ_SECRET_KEY": "secret"}
    result = subprocess.run(
        [sys.executable, "-c", code, "load", "--leads-file", "leads.txt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "leadsq-async: error: the load command needs dlt: "
        'pip install -e ".[dlt]" in your clone of leadsq-async\n'
    )
    helped = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0
    assert "load" in helped.stdout


def test_load_command_shows_crawls_progress_bar(emulator: RunningEmulator, tmp_path: Path) -> None:
    """--progress shows crawl's bar on stderr: the leads done of the total and the rows."""
    leads = small_leads(emulator, 5)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))
    rows = len(expected_opportunities(emulator.data, leads))
    result = run_load(
        "--leads-file",
        "leads.txt",
        "--progress",
        cwd=tmp_path,
        env=command_environment(emulator, tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stderr
    assert f"{rows} records" in result.stderr


def test_load_command_stops_on_sigint_with_130_and_keeps_what_it_fetched(
    emulator: RunningEmulator, tmp_path: Path, pipelines_dir: Path
) -> None:
    """Ctrl-C midway ends the load with exit code 130 and one line; the leads it had
    fetched are kept for the next run."""
    emulator.config.rate_limit_calls, emulator.config.rate_limit_period = 10, 0.5
    leads = small_leads(emulator, 16)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))
    process = subprocess.Popen(
        [*COMMAND, "load", "--leads-file", "leads.txt", "--with-activities"],
        cwd=tmp_path,
        env=command_environment(emulator, tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while journal_lines(pipelines_dir) < 3:
        assert process.poll() is None, "the load ended before it could be interrupted"
        assert time.monotonic() < deadline, "the load fetched no lead"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 130
    assert stderr.splitlines() == [
        "leadsq-async: interrupted: the leads fetched so far are kept; run the same command "
        "to carry on"
    ]
    assert 2 <= len(journaled_leads(pipelines_dir)) < len(leads)


def test_the_source_needs_nothing_of_the_command_line_extra() -> None:
    """leadsq_async.dlt imports without rich (the cli extra): the checkpoint is the library's."""
    program = "import sys; sys.modules['rich'] = None; import leadsq_async.dlt"
    subprocess.run([sys.executable, "-c", program], check=True, capture_output=True)


# Two loads on one pipeline.


class _HoldsAfterFirstLead:
    """A load's progress that stops the crawl after its first lead until ``go_on``."""

    def __init__(self) -> None:
        self.fetched = threading.Event()
        self.go_on = threading.Event()

    def crawl_started(self, session: lsq.Session) -> None:
        pass

    def lead_skipped(self, lead_id: str) -> None:
        pass

    def lead_crawled(self, result: lsq.LeadResult) -> None:
        self.fetched.set()
        assert self.go_on.wait(60), "the test never let the first load go on"


def test_a_second_load_on_a_pipeline_in_use_stops_with_2_and_leaves_the_first_alone(
    emulator: RunningEmulator, tmp_path: Path, pipelines_dir: Path
) -> None:
    """While a load crawls, a second `load` of the same pipeline exits 2 saying another load
    holds it, and deletes nothing: the first one then loads every row once."""
    leads = small_leads(emulator, 6)
    (tmp_path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))
    warehouse = duckdb_warehouse(tmp_path)
    first = pipeline_into(warehouse, pipelines_dir)
    progress = _HoldsAfterFirstLead()
    failures: list[BaseException] = []

    def load_first() -> None:
        try:
            first.run(source_for(emulator, leads, with_activities=False, progress=progress))
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    thread = threading.Thread(target=load_first)
    thread.start()
    try:
        assert progress.fetched.wait(60), "the first load fetched no lead"
        journal = pipelines_dir / first.pipeline_name / CHECKPOINT_DIRECTORY / "checkpoint.jsonl"
        before = journal.read_bytes()
        second = run_load(
            "--leads-file", "leads.txt", cwd=tmp_path, env=command_environment(emulator, tmp_path)
        )
        after = journal.read_bytes()
    finally:
        progress.go_on.set()
        thread.join(timeout=120)

    assert second.returncode == 2, second.stderr
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert "another load holds the pipeline leadsquared" in lines[0]
    assert "starting anew" not in second.stderr
    assert after == before  # the first load's journal, untouched
    assert not failures, failures
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )


# Warehouse rows a load cannot take as they are.


def _replace_rows(
    emulator: RunningEmulator, lead: str, change: Callable[[dict[str, Any]], Any]
) -> None:
    """Change the emulator's opportunity rows of ``lead`` (copies: the rows are shared with
    the snapshot the emulator is reset to)."""
    rows = emulator.data.opportunities[lead]
    for number, row in enumerate(rows):
        copy = dict(row)
        change(copy)
        rows[number] = copy


def test_a_row_without_its_opportunity_id_fails_its_lead_and_never_reaches_dlt(
    emulator: RunningEmulator,
    duckdb_pipeline: dlt.Pipeline,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lead with an opportunity row lacking OpportunityId (absent, or null) is listed in
    failed_leads with a warning, and not loaded; the other leads load, and once the row is
    mended the next load fetches it."""
    leads = [lead for lead in small_leads(emulator, 6) if emulator.data.opportunities[lead]]
    absent, null = leads[:2]
    pristine = {lead: list(emulator.data.opportunities[lead]) for lead in (absent, null)}

    def drop_the_id(row: dict[str, Any]) -> None:
        if row["OpportunityId"] == pristine[absent][0]["OpportunityId"]:
            del row["OpportunityId"]
        elif row["OpportunityId"] == pristine[null][-1]["OpportunityId"]:
            row["OpportunityId"] = None

    _replace_rows(emulator, absent, drop_the_id)
    _replace_rows(emulator, null, drop_the_id)
    with caplog.at_level(logging.WARNING, logger="leadsq_async"):
        duckdb_pipeline.run(source_for(emulator, leads, with_activities=False))

    failed = failed_leads(duckdb_pipeline)
    assert sorted(failed) == sorted([absent, null])
    assert all("without its OpportunityId" in why for why in failed.values())
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert absent in warned
    assert null in warned
    warehouse = duckdb_warehouse(tmp_path)
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads[2:])
    )

    emulator.data.opportunities.update(pristine)
    duckdb_pipeline.run(source_for(emulator, list(failed), with_activities=False))
    assert failed_leads(duckdb_pipeline) == {}
    assert sorted(warehouse.opportunity_ids()) == sorted(
        expected_opportunities(emulator.data, leads)
    )


def test_keys_that_dlt_makes_one_column_are_renamed_never_lost(
    emulator: RunningEmulator,
    duckdb_pipeline: dlt.Pipeline,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A row with OpportunityId and opportunityId, mx_Custom_1 and mx_custom_1 keeps every
    opportunity and every value: the later key of each pair gets _2, warned once a load."""
    leads = [
        lead for lead in small_leads(emulator, 6) if len(emulator.data.opportunities[lead]) > 1
    ]
    lead = leads[0]

    def collide(row: dict[str, Any]) -> None:
        row["opportunityId"] = "same-for-all"
        row["mx_custom_1"] = "lower " + row["OpportunityId"]

    _replace_rows(emulator, lead, collide)
    rows = {row["OpportunityId"]: row for row in emulator.data.opportunities[lead]}
    with caplog.at_level(logging.WARNING, logger="leadsq_async"):
        duckdb_pipeline.run(source_for(emulator, [lead], with_activities=False))

    loaded = table_rows(
        duckdb_pipeline,
        "SELECT opportunity_id, opportunity_id_2, mx_custom_1, mx_custom_1_2 FROM opportunities",
    )
    assert sorted(loaded) == sorted(
        (key, "same-for-all", row["mx_Custom_1"], "lower " + key) for key, row in rows.items()
    )
    warnings = [
        record.getMessage() for record in caplog.records if "same column" in record.getMessage()
    ]
    assert len(warnings) == 2, warnings  # one for each key renamed, not one a row
    assert any("'opportunityId' is loaded as 'opportunityId_2'" in line for line in warnings)
    assert any("'mx_custom_1' is loaded as 'mx_custom_1_2'" in line for line in warnings)
