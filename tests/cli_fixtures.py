"""Fixtures of the command-line tests: the emulator with a fast limit, and an environment
that points the command at it (a pytest plugin, loaded by conftest.py)."""

from __future__ import annotations

import os

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
