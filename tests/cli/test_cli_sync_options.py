"""``leadsq-async sync``'s options and exit codes, run against an account of its own: usage
errors (exit code 2) that name their culprit and send nothing, a sync the API refuses (1), a
sync interrupted (130) then run again, ``--full-refresh``, ``--dataset`` and
``--pipeline-name``. No output ever shows the secret key.

The syncs run in this process (`run_in_process`), but for the interrupted one: a signal needs a
process of its own. Each walks a small account at a fast limit with no lag, in a second or so.
"""

from __future__ import annotations

import datetime as dt
import gc
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cli_fixtures import env_for, run_in_process
from sync_fixtures import ACCOUNT_TYPES, next_second, oldest_change

from leadsq_async.cli._sync import parse_duration
from leadsq_async.testing import (
    RunningEmulator,
)

pytest.importorskip("dlt")

TYPES = ACCOUNT_TYPES
DATABASE = "leadsquared.duckdb"
#: The tables of a sync and the column of each one's id.
KEYS = {
    "leads": "prospect_id",
    "opportunities": "opportunity_id",
    "activities": "prospect_activity_id",
}
STOPPED = "the sync stopped (what earlier syncs committed is kept)"


@pytest.fixture
def account(small_account: RunningEmulator) -> RunningEmulator:
    return small_account


def environment(
    emulator: RunningEmulator, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a sync of ``emulator`` into ``directory`` (dlt's directory too),
    which becomes the working one."""
    monkeypatch.chdir(directory)
    return {
        **env_for(emulator, rate_limit="2000/1"),
        "DLT_DATA_DIR": str(directory / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }


@pytest.fixture
def env(
    account: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment that points a sync at ``account``, into ``tmp_path``."""
    return environment(account, tmp_path, monkeypatch)


def sync_args(emulator: RunningEmulator, *more: str) -> list[str]:
    """``sync`` of every opportunity type from the account's first change, with no lag."""
    args = ["sync", "--since", oldest_change(emulator).isoformat(), "--lag", "0s"]
    args += ["--index-lag", "0s", "--quiet", *(f"--opportunity-type={code}" for code in TYPES)]
    return [*args, *more]


def synced(emulator: RunningEmulator, env: dict[str, str], *more: str) -> int:
    """Run a sync of ``emulator`` that must succeed; return the requests it made."""
    before = emulator.stats.total
    result = run_in_process(*sync_args(emulator, *more), env=env)
    assert result.returncode == 0, result.stderr
    assert emulator.secret_key not in result.stdout + result.stderr
    return emulator.stats.total - before


def query(sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` in the working directory's DuckDB file."""
    with duckdb.connect(DATABASE, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def ids(table: str, dataset: str = "leadsquared_account") -> list[str]:
    """The ids of the rows in ``table``, sorted, each as often as a row holds it."""
    return sorted(row_id for (row_id,) in query(f"SELECT {KEYS[table]} FROM {dataset}.{table}"))


def account_ids(emulator: RunningEmulator) -> dict[str, list[str]]:
    """Per table, the ids of the account's rows, sorted."""
    account = emulator.account
    return {
        "leads": sorted(row["ProspectID"] for row in account.leads()),
        "opportunities": sorted(row["ProspectActivityId"] for row in account.opportunities()),
        "activities": sorted(row["ProspectActivityId"] for row in account.activities()),
    }


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The command's error lines on stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("leadsq-async: error: ")]


# Usage errors: exit code 2, a line that names the culprit, and no request.


def assert_refused_before_sending(
    result: subprocess.CompletedProcess[str], culprit: str, emulator: RunningEmulator
) -> None:
    """Exit code 2, one error line that names ``culprit``, no secret, and no request."""
    assert result.returncode == 2, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert culprit in errors[0]
    assert emulator.secret_key not in result.stdout + result.stderr
    assert emulator.stats.total == 0


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--lag", "10x"], "'--lag'"),
        (["--index-lag", "abc"], "'--index-lag'"),
        (["--lag", "99999999999d"], "'--lag'"),
        (["--lag", "3651d"], "lag must be at most 3650 days"),
        (["--index-lag", "999999d"], "index_lag must be at most 3650 days"),
        (["--since", "not-a-date"], "'--since'"),
        (["--opportunity-type", "abc"], "'abc'"),
    ],
    ids=[
        "lag",
        "index-lag",
        "lag-too-long",
        "lag-past-accounts",
        "index-lag-before-year-1",
        "since",
        "opportunity-type",
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it_before_any_request(
    emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    culprit: str,
) -> None:
    """A bad value exits 2 with one error line naming the option (or the value); the
    account hears nothing, and no pipeline is left behind."""
    env = environment(emulator, tmp_path, monkeypatch)
    result = run_in_process("sync", "--opportunity-type", "12002", *args, env=env)
    assert_refused_before_sending(result, culprit, emulator)
    assert not list(tmp_path.rglob("state.json"))


@pytest.mark.parametrize(
    ("args", "unset", "culprit"),
    [
        ([], None, "Missing option '--opportunity-type'"),
        (["--opportunity-type", "12002"], "LSQ_ACCESS_KEY", "no access key"),
        (["--opportunity-type", "12002"], "LSQ_SECRET_KEY", "no secret key"),
    ],
    ids=["no-opportunity-type", "no-access-key", "no-secret-key"],
)
def test_a_missing_option_is_a_usage_error_naming_it_before_any_request(
    emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    unset: str | None,
    culprit: str,
) -> None:
    """No opportunity type, or a key missing, exits 2 with the error line that names it,
    and the account hears nothing."""
    env = environment(emulator, tmp_path, monkeypatch)
    if unset is not None:
        del env[unset]
    result = run_in_process("sync", *args, env=env)
    assert_refused_before_sending(result, culprit, emulator)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("0", 0),
        ("90s", 90),
        ("0s", 0),
        ("10m", 600),
        ("1.5m", 90),
        ("2h", 7200),
        ("1d", 86_400),
        (" 3 d ", 3 * 86_400),
        ("999999999d", 999_999_999 * 86_400),
    ],
)
def test_parse_duration_reads_seconds_minutes_hours_and_days(text: str, seconds: int) -> None:
    """Plain seconds, or a number with s, m, h or d, spaces allowed around."""
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10x", "abc", "-5s", "5 s m", "1e3", "10M", "m", "1,5m"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    """Anything but a plain number with an optional unit s, m, h or d is refused."""
    with pytest.raises(ValueError, match="is not a duration such as 10m"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999999d", "1000000000d", "1" + "0" * 400])
def test_parse_duration_refuses_a_duration_too_long_for_a_timedelta(text: str) -> None:
    """A duration past timedelta's range (or float's) is a ValueError saying it is too long,
    not an OverflowError."""
    with pytest.raises(ValueError, match="too long a duration: at most 999999999 days"):
        parse_duration(text)


# A sync the API refuses: exit code 1.


@pytest.mark.parametrize("refusal", ["wrong keys", "wrong region"])
def test_a_sync_the_api_refuses_exits_1_saying_it_stopped(
    account: RunningEmulator,
    env: dict[str, str],
    refusal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys the account refuses (its own are others, or it lives in another region): exit 1,
    one error line saying the sync stopped, that what earlier syncs committed is kept and
    to fix the keys or the host, and the secret key nowhere. The walks still running when
    the first was refused are stopped before dlt tears its loop down: asyncio logs nothing,
    and no connection is left open."""
    secret = env["LSQ_SECRET_KEY"]
    if refusal == "wrong keys":
        account.config.secret_key = "another-secret-key"
    else:
        account.config.wrong_region_host = "api-us11.leadsquared.com"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_in_process(*sync_args(account), env=env)
        gc.collect()
    assert result.returncode == 1, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert STOPPED in errors[0]
    assert "fix the keys (or the host: --host, LSQ_HOST)" in errors[0]
    assert secret not in result.stdout + result.stderr
    assert account.stats.total > 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


def test_a_sync_the_server_fails_for_now_exits_75_to_be_run_again(
    account: RunningEmulator, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A server that answers 500 to every request, with one try a request: exit 75, as crawl
    gives for a failure that time may mend, saying to run the same command again; the walks
    stopped cleanly, as for a refusal."""
    account.config.fault_rate = 1.0
    account.config.fault_kinds = {"500"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_in_process(*sync_args(account, "--max-attempts", "1"), env=env)
        gc.collect()
    assert result.returncode == 75, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f"{STOPPED}: run the same command to carry on"), errors[0]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


# A sync interrupted: exit code 130, and the same command carries on.


def test_an_interrupted_sync_exits_130_and_the_same_command_then_syncs_each_row_once(
    account: RunningEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """SIGINT while the sync's requests go: exit 130 and the "interrupted" line at once; the
    same command run again exits 0, and the tables hold every row of the account once."""
    args = sync_args(account)
    account.config.latency = 0.05  # a slow account, so that the signal comes midway
    with subprocess.Popen(
        [sys.executable, "-m", "leadsq_async.cli", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            deadline = time.monotonic() + 30
            while account.stats.total < 5:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the sync made no request"
                time.sleep(0.01)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, stderr
    assert "leadsq-async: interrupted: what earlier syncs committed is kept" in stderr
    assert account.secret_key not in stdout + stderr

    account.config.latency = 0.0
    result = run_in_process(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert {table: ids(table) for table in KEYS} == account_ids(account)


# --full-refresh, --dataset, --pipeline-name.


def test_full_refresh_drops_a_deleted_activity_and_reads_everything_again(
    account: RunningEmulator, env: dict[str, str]
) -> None:
    """After an activity is deleted, ``--full-refresh`` rebuilds the tables from --since: the
    deleted activity's row is gone (not marked), every other row is there once, at the cost
    of the first sync."""
    first = synced(account, env)
    doomed = account.account.activities()[0]["ProspectActivityId"]
    assert doomed in ids("activities")
    account.account.delete_activity(doomed)
    next_second()
    refresh = synced(account, env, "--full-refresh")
    assert doomed not in ids("activities")
    assert {table: ids(table) for table in KEYS} == account_ids(account)
    assert refresh == first


def test_the_tables_land_in_the_dataset_named(
    account: RunningEmulator, env: dict[str, str]
) -> None:
    """``--dataset elsewhere``: the three tables are in that schema, with every row, and
    there is no schema of the default name."""
    synced(account, env, "--dataset", "elsewhere")
    schemas = {schema for (schema,) in query("SELECT schema_name FROM information_schema.schemata")}
    assert "elsewhere" in schemas
    assert "leadsquared_account" not in schemas
    assert {table: ids(table, "elsewhere") for table in KEYS} == account_ids(account)


def test_each_pipeline_name_keeps_cursors_of_its_own(
    account: RunningEmulator, env: dict[str, str]
) -> None:
    """A second pipeline's first sync reads everything again, as the first pipeline's first
    sync did, while the first pipeline's next sync reads only from its cursors."""
    first = synced(account, env, "--pipeline-name", "first")
    again = synced(account, env, "--pipeline-name", "first")
    other = synced(account, env, "--pipeline-name", "second")
    assert again < first / 4
    assert other == first
