"""``leadsq-async load`` as a newcomer meets it, run in process: its progress, how it stops
(the stop rules and exit codes of ``crawl``), and its usage errors."""

from __future__ import annotations

import io
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_fixtures import point_in_process_commands_at

from leadsq_async.cli import _display
from leadsq_async.cli._app import main
from leadsq_async.testing import RunningEmulator

pytest.importorskip("dlt")


def _leads(emulator: RunningEmulator, count: int) -> list[str]:
    shaped = set(emulator.data.leads_by_shape.values())
    return [lead for lead in emulator.data.opportunities if lead not in shaped][:count]


@pytest.fixture
def load_env(emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The command pointed at the emulator, dlt's directory and the working one the test's own."""
    return point_in_process_commands_at(emulator, tmp_path, monkeypatch)


def _leads_file(path: Path, leads: list[str]) -> str:
    (path / "leads.txt").write_text("".join(f"{lead}\n" for lead in leads))
    return "leads.txt"


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("leadsq-async: error")]


def test_load_reports_requests_and_an_eta_as_it_goes(
    emulator: RunningEmulator,
    load_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Off a terminal, the plain lines of a real load count its requests and give an ETA
    that moves; the summary counts the requests and names the file written, absolute."""
    monkeypatch.setattr(_display, "PLAIN_INTERVAL", 0.2)
    leads = _leads_file(load_env, _leads(emulator, 24))
    code = main(["load", "--leads-file", leads, "--rate-limit", "8/0.5"])
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if "elapsed" in line]
    requests = [int(re.match(r"([\d,]+)", line)[1].replace(",", "")) for line in lines]  # type: ignore[index]
    assert len(set(requests)) >= 2, stderr
    assert requests == sorted(requests)
    etas = {re.search(r"ETA (\S+),", line)[1] for line in lines}  # type: ignore[index]
    assert len(etas - {"-"}) >= 2, stderr
    summary = stderr.splitlines()[-1]
    assert re.search(r", [1-9]\d* requests; written to ", summary), summary
    assert summary.endswith(f"written to {load_env / 'leadsquared.duckdb'}")


@pytest.mark.parametrize("command", ["crawl", "load"])
def test_an_unreachable_host_stops_crawl_and_load_alike_with_75(
    emulator: RunningEmulator,
    load_env: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """Nothing listens there: ten leads in a row fail for now, and both commands stop with one
    error line and exit code 75, rather than a warning per lead."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    leads = _leads_file(load_env, _leads(emulator, 23))
    args = [command, "--leads-file", leads, "--host", f"http://127.0.0.1:{port}"]
    args += ["--max-attempts", "1", "--concurrency", "1"]
    if command == "crawl":
        args += ["--out", "out"]
    code = main(args)
    stderr = capsys.readouterr().err
    assert code == 75, stderr
    errors = _errors(stderr)
    assert len(errors) == 1, stderr
    assert f"the {command} stopped" in errors[0]
    assert "10 leads in a row failed for now" in errors[0]


def test_load_with_bad_keys_says_to_fix_the_keys(
    load_env: Path, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    leads = _leads_file(load_env, _leads(emulator, 2))
    code = main(["load", "--leads-file", leads, "--secret-key", "wrong-secret-key"])
    stderr = capsys.readouterr().err
    assert code == 1
    assert "fix the keys" in _errors(stderr)[0]
    assert "wrong-secret-key" not in stderr


@pytest.mark.parametrize("command", ["crawl", "load"])
def test_a_host_that_does_not_exist_is_a_usage_error_naming_the_regions(
    load_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """A typo in the host exits 2 before the first request, naming it and the region table."""
    _leads_file(load_env, ["lead-1"])
    args = [command, "--leads-file", "leads.txt", "--host", "api-xx99.leadsquared.invalid"]
    code = main([*args, "--out", "out"] if command == "crawl" else args)
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert "the host api-xx99.leadsquared.invalid does not exist" in stderr
    assert "api-in21.leadsquared.com (mumbai)" in stderr
    assert not (load_env / "out").exists()


def test_a_name_that_cannot_be_looked_up_for_now_is_not_a_usage_error(
    load_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DNS server for now (EAI_AGAIN): the run goes on, and would stop with 75, not 2."""
    from leadsq_async.cli._options import ApiOptions

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    api = ApiOptions("key", "secret", "api-in21.leadsquared.com", (), 1.0, 1)
    api.refuse_unknown_host()  # no usage error


def test_a_host_that_stops_resolving_during_the_run_is_a_75_not_a_usage_error(
    load_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host resolved when the run began (the check before the first request passed),
    then its name stopped resolving: the leads fail for now and the crawl exits 75, to be
    run again, never 2, which a script would not retry."""
    _leads_file(load_env, ["lead-1", "lead-2"])
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def resolves_once(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        if len(looked_up) == 1:
            return real("127.0.0.1", *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolves_once)
    host = "api-in21.leadsquared.com"
    args = ["crawl", "--leads-file", "leads.txt", "--out", "out", "--host", host]
    code = main([*args, "--max-attempts", "1"])
    stderr = capsys.readouterr().err
    assert code == 75, stderr
    assert looked_up[0] == host
    assert len(looked_up) > 1  # the requests looked the name up again, and failed
    assert "does not exist" not in stderr


def test_a_destination_typo_is_a_usage_error_listing_dlts_destinations(
    load_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _leads_file(load_env, ["lead-1"])
    code = main(["load", "--leads-file", "leads.txt", "--destination", "duckbd"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1
    assert "'--destination'" in stderr
    assert "no destination 'duckbd'" in stderr
    assert "duckdb" in stderr
    assert "postgres" in stderr
    assert "internal error" not in stderr


@pytest.mark.parametrize("command", ["crawl", "load"])
def test_an_empty_leads_file_warns_and_exits_1_unless_allowed(
    load_env: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (load_env / "leads.txt").write_text("\n  \n")
    args = [command, "--leads-file", "leads.txt", *(["--out", "out"] if command == "crawl" else [])]
    assert main(args) == 1
    assert capsys.readouterr().err == "leadsq-async: warning: leads.txt holds no lead id\n"
    assert main([*args, "--allow-empty"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["crawl", "load"])
def test_no_lead_id_on_standard_input_warns_and_exits_1_unless_allowed(
    load_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """--leads-file - with no id on standard input (nothing, blank lines, a byte-order mark)
    is refused as an empty file is, before anything is written."""
    args = [command, "--leads-file", "-", *(["--out", "out"] if command == "crawl" else [])]
    for stdin in ("", "\n  \n", "\ufeff\n"):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        assert main(args) == 1, repr(stdin)
        warning = capsys.readouterr().err
        assert warning == "leadsq-async: warning: standard input holds no lead id\n", repr(stdin)
        assert not (load_env / "out").exists()
        assert not (load_env / "dlt").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main([*args, "--allow-empty"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_load_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes (opportunities, activities, crawl and load):" in out
    assert re.search(r"^\s+75\s+stopped with work", out, re.MULTILINE)


def test_a_load_into_a_database_server_names_no_file(
    emulator: RunningEmulator,
    load_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: the summary names the destination and dataset, and no local file."""
    psycopg2 = pytest.importorskip("psycopg2")
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres:@127.0.0.1:5432/test"
    )
    dataset = f"cli_load_{uuid.uuid4().hex[:12]}"
    leads = _leads_file(load_env, _leads(emulator, 2))
    args = ["load", "--leads-file", leads, "--destination", "postgres", "--dataset", dataset]
    try:
        code = main([*args, "--pipeline-name", "leadsquared_postgres"])
    finally:
        connection = psycopg2.connect("postgresql://postgres:@127.0.0.1:5432/test")
        with connection, connection.cursor() as cursor:
            for schema in (dataset, f"{dataset}_staging"):
                cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.close()
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    summary = stderr.splitlines()[-1]
    assert summary.startswith(f"loaded into postgres dataset {dataset}: crawled 2 leads")
    assert "written to" not in summary
