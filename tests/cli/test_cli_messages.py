"""The command's error messages name what failed: the file, the flag or the variable.

Run by ``main`` in process with an environment and streams of their own (the command as a
process of its own, its signals and its exit, is the subject of test_cli.py).
"""

from __future__ import annotations

import http.server
import os
import threading
import urllib.parse
from pathlib import Path

import pytest
from cli_fixtures import run_in_process as run
from test_cli import assert_one_error_line

from leadsq_async.testing import RunningEmulator

SECRET = "messages-secret-3d9f0a"


@pytest.fixture
def env() -> dict[str, str]:
    """Keys and a host that nothing is sent to (each test fails before any request)."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LSQ_")}
    variables.update(
        LSQ_HOST="http://127.0.0.1:9",
        LSQ_ACCESS_KEY="messages-access-key",
        LSQ_SECRET_KEY=SECRET,
        PYTHONUNBUFFERED="1",
    )
    return variables


# The host.


def test_an_empty_lsq_host_is_a_usage_error(env: dict[str, str]) -> None:
    """LSQ_HOST set but empty is refused (exit 2), not taken for the default host."""
    result = run("opportunities", "some-lead", env={**env, "LSQ_HOST": ""})
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert "LSQ_HOST (environment variable): it is set but empty" in line
    assert "--host" not in line.split("(see")[0]


@pytest.mark.parametrize(
    "host",
    ["", "   ", "http://example.com", "ftp://example.com", "https://user:pw@example.com"],
)
def test_a_bad_host_flag_is_a_usage_error(env: dict[str, str], host: str) -> None:
    """A --host the session would refuse: exit 2, naming --host and not LSQ_HOST."""
    result = run("opportunities", "some-lead", "--host", host, env=env)
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert "Invalid value for '--host'" in line
    assert "LSQ_HOST" not in line


def test_a_bad_lsq_host_names_the_variable(env: dict[str, str]) -> None:
    """A bad LSQ_HOST: exit 2, naming LSQ_HOST and not --host."""
    result = run("opportunities", "some-lead", env={**env, "LSQ_HOST": "http://example.com"})
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert "Invalid value for LSQ_HOST (environment variable): plain http" in line
    assert "'--host'" not in line


# The rate limit.


def test_a_bad_rate_limit_flag_does_not_blame_the_variable(env: dict[str, str]) -> None:
    """--rate-limit 0/5 with LSQ_RATE_LIMIT unset: the message names the flag only."""
    result = run("opportunities", "some-lead", "--rate-limit", "0/5", env=env)
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert "Invalid value for '--rate-limit': " in line
    assert "LSQ_RATE_LIMIT" not in line


def test_a_bad_repeated_rate_limit_is_a_usage_error(env: dict[str, str]) -> None:
    """--rate-limit repeated, the second with an unknown unit: exit 2, naming flag and unit."""
    result = run("opportunities", "x", "--rate-limit", "10/5", "--rate-limit", "9/1w", env=env)
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert "Invalid value for '--rate-limit': invalid rate limit '9/1w': unknown unit" in line


def test_a_bad_lsq_rate_limit_names_the_variable(env: dict[str, str]) -> None:
    """LSQ_RATE_LIMIT=0/5: exit 2, the message names the variable, not the flag."""
    result = run("opportunities", "some-lead", env={**env, "LSQ_RATE_LIMIT": "0/5"})
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert "Invalid value for LSQ_RATE_LIMIT (environment variable): " in line
    assert "'--rate-limit'" not in line


def test_an_empty_lsq_rate_limit_is_a_usage_error(env: dict[str, str]) -> None:
    """LSQ_RATE_LIMIT set but empty is refused, not taken for the default 25/5."""
    result = run("opportunities", "some-lead", env={**env, "LSQ_RATE_LIMIT": ""})
    assert result.returncode == 2
    assert "LSQ_RATE_LIMIT (environment variable): it is set but empty" in (
        assert_one_error_line(result, SECRET)
    )


# Files.

NOT_TEXT = {
    "binary": b"\x1f\x8b\x08\x00\xff\xfe\x00\x00 gzip, say",
    "UTF-16": "lead-one\nlead-two\n".encode("utf-16"),
    "NUL bytes": b"lead-one\nlead\x00two\n",
}


@pytest.mark.parametrize("command", ["opportunities", "crawl"])
@pytest.mark.parametrize("content", list(NOT_TEXT))
def test_a_leads_file_that_is_not_text_is_named(
    env: dict[str, str], tmp_path: Path, command: str, content: str
) -> None:
    """A binary or UTF-16 leads file: one line naming the file and saying what is wrong."""
    leads = tmp_path / "leads.bin"
    leads.write_bytes(NOT_TEXT[content])
    out = tmp_path / "crawl"
    extra = ["--out", str(out)] if command == "crawl" else []
    result = run(command, "--leads-file", str(leads), *extra, "--max-attempts", "1", env=env)
    assert result.returncode == 1
    line = assert_one_error_line(result, SECRET)
    assert f"{leads} is not a text file of ids" in line
    assert "UTF-8" in line
    assert not out.exists()  # refused before the crawl touched anything


@pytest.mark.parametrize("command", ["opportunities", "crawl"])
@pytest.mark.parametrize("kind", ["missing", "a directory"])
def test_a_leads_file_that_is_no_file_is_named(
    env: dict[str, str], tmp_path: Path, command: str, kind: str
) -> None:
    """A leads file that does not exist or is a directory: a usage error naming it."""
    leads = tmp_path / "leads"
    if kind == "a directory":
        leads.mkdir()
    extra = ["--out", str(tmp_path / "crawl")] if command == "crawl" else []
    result = run(command, "--leads-file", str(leads), *extra, env=env)
    assert result.returncode == 2
    line = assert_one_error_line(result, SECRET)
    assert str(leads) in line
    assert ("does not exist" if kind == "missing" else "is a directory") in line


# Full disks.


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_out_names_the_file(
    env: dict[str, str], lsq_emulator: RunningEmulator
) -> None:
    """opportunities --out on a full disk (/dev/full): the error names the file; exit 75."""
    env = {**env, "LSQ_HOST": lsq_emulator.url, "LSQ_ACCESS_KEY": lsq_emulator.access_key}
    env["LSQ_SECRET_KEY"] = lsq_emulator.secret_key
    lead = lsq_emulator.data.leads_by_shape["one"]
    result = run("opportunities", lead, "--out", "/dev/full", env=env)
    assert result.returncode == 75
    line = assert_one_error_line(result, lsq_emulator.secret_key)
    assert line == "leadsq-async: error: No space left on device: /dev/full"


# A server that echoes the secret back.


@pytest.mark.parametrize("spelling", ["json-escaped", "unicode-escaped", "url-encoded"])
def test_an_echoed_secret_is_hidden_in_every_spelling(env: dict[str, str], spelling: str) -> None:
    """A server echoing the secret escaped or encoded gets it into no line the command prints."""
    secret = "echo/secret+key=42"
    spelled = {
        "json-escaped": secret.replace("/", "\\\\/"),
        "unicode-escaped": "".join(f"\\\\u{ord(char):04x}" for char in secret),
        "url-encoded": urllib.parse.quote(secret, safe=""),
    }[spelling]
    body = (
        '{"Status":"Error","ExceptionType":"MXInvalidKeyException",'
        f'"ExceptionMessage":"no account for key {spelled}"}}'
    ).encode()

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            host = f"http://127.0.0.1:{server.server_address[1]}"
            result = run(
                "opportunities", "lead-1", env={**env, "LSQ_HOST": host, "LSQ_SECRET_KEY": secret}
            )
        finally:
            server.shutdown()
    assert result.returncode == 1
    shown = (result.stdout + result.stderr).lower()
    assert "no account for key" in shown
    for form in (secret, secret.replace("/", "\\/"), urllib.parse.quote(secret, safe="")):
        assert form.lower() not in shown
    assert "\\u0065\\u0063\\u0068\\u006f" not in shown
