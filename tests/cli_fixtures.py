"""Fixtures of the command-line tests: the emulator with a fast limit, and an environment
that points the command at it (a pytest plugin, loaded by conftest.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path
from unittest import mock

import pytest

from leadsq_async.testing import RunningEmulator

#: The emulator's limit in the command-line tests: fast, but a real limit.
CALLS, PERIOD = 50, 0.5


def env_for(
    emulator: RunningEmulator, rate_limit: str | None = f"{CALLS}/{PERIOD}"
) -> dict[str, str]:
    """The environment that points the command at ``emulator``: its keys, and
    ``rate_limit`` as LSQ_RATE_LIMIT (None: left for the test's flags)."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LSQ_")}
    variables.update(
        LSQ_HOST=emulator.url,
        LSQ_ACCESS_KEY=emulator.access_key,
        LSQ_SECRET_KEY=emulator.secret_key,
        PYTHONUNBUFFERED="1",
    )
    if rate_limit is not None:
        variables["LSQ_RATE_LIMIT"] = rate_limit
    return variables


@pytest.fixture
def emulator(lsq_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with a fast rate limit, so that tests stay quick."""
    lsq_emulator.config.rate_limit_calls = CALLS
    lsq_emulator.config.rate_limit_period = PERIOD
    return lsq_emulator


@pytest.fixture
def env(emulator: RunningEmulator) -> dict[str, str]:
    """The environment that points the command at the emulator."""
    return env_for(emulator)


def point_in_process_commands_at(
    emulator: RunningEmulator, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Commands run by ``main`` in this process pointed at ``emulator`` (its URL and keys,
    the default rate limit), with dlt's directory and the working one in ``directory``."""
    monkeypatch.delenv("LSQ_RATE_LIMIT", raising=False)
    monkeypatch.setenv("LSQ_HOST", emulator.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", emulator.access_key)
    monkeypatch.setenv("LSQ_SECRET_KEY", emulator.secret_key)
    monkeypatch.setenv("DLT_DATA_DIR", str(directory / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.chdir(directory)
    return directory


def run_in_process(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``leadsq-async ARGS`` run by ``main`` in this process, as a test's ``run`` runs it in
    a child: ``env`` as the whole environment and ``stdin`` as standard input; its exit code,
    stdout and stderr. For tests of what the command says, where a process of its own adds
    only its start-up, a third of a second of CPU each."""
    from leadsq_async.cli._app import main

    def stream(data: bytes = b"") -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", write_through=True)

    out, err = stream(), stream()
    # The command sends the library's warnings to its stderr, and no further: the logger is
    # given back as it was, so that later tests' caplog still sees them.
    logger = logging.getLogger("leadsq_async")
    handlers, propagate = list(logger.handlers), logger.propagate
    try:
        with (
            mock.patch.dict(os.environ, env, clear=True),
            mock.patch.object(sys, "stdin", stream((stdin or "").encode("utf-8"))),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = main(list(args))
    finally:
        logger.handlers[:], logger.propagate = handlers, propagate
    shown = [typing.cast(io.BytesIO, s.buffer).getvalue().decode("utf-8") for s in (out, err)]
    return subprocess.CompletedProcess(["leadsq-async", *args], code, *shown)
