"""``leadsq-async sync``'s options and exit codes: usage errors (exit code 2) that name their
culprit and send nothing, and never show the secret key."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cli_fixtures import env_for, run_in_process

from leadsq_async.cli._sync import parse_duration
from leadsq_async.testing import RunningEmulator

pytest.importorskip("dlt")


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


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The command's error lines on stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("leadsq-async: error: ")]


# Usage errors: exit code 2, a line that names the culprit, and no request.


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--lag", "10x"], "'--lag'"),
        (["--index-lag", "abc"], "'--index-lag'"),
        (["--lag", "99999999999d"], "'--lag'"),
        (["--since", "not-a-date"], "'--since'"),
        (["--opportunity-type", "abc"], "'abc'"),
    ],
    ids=["lag", "index-lag", "lag-too-long", "since", "opportunity-type"],
)
def test_a_bad_option_is_a_usage_error_naming_it_before_any_request(
    emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    culprit: str,
) -> None:
    """A bad value exits 2 with one error line naming the option (or the value), and the
    account hears nothing."""
    env = environment(emulator, tmp_path, monkeypatch)
    result = run_in_process("sync", "--opportunity-type", "12002", *args, env=env)
    assert result.returncode == 2, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert culprit in errors[0]
    assert emulator.secret_key not in result.stdout + result.stderr
    assert emulator.stats.total == 0


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
    assert result.returncode == 2, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert culprit in errors[0]
    assert emulator.secret_key not in result.stdout + result.stderr
    assert emulator.stats.total == 0


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
