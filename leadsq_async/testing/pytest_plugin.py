"""pytest fixtures for the LeadSquared emulator, registered through the ``pytest11`` entry point:
``lsq_emulator_server`` (session scope) serves one ``EmulatorApp`` with the default dataset on
a free loopback port from a background thread, and ``lsq_emulator`` (function scope) hands
back that server after putting its config, data, statistics and rate-limit windows back to
their defaults, so a test may change it freely. Both are synchronous (the server runs in a
thread of its own), so they serve ``async def`` tests on any event loop (through
pytest-asyncio, which the ``testing`` extra installs); this module imports the emulator (and
uvicorn) only when a fixture is first used, since every pytest run imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from leadsq_async.testing._server import RunningEmulator


@pytest.fixture(scope="session")
def lsq_emulator_server() -> Iterator[RunningEmulator]:
    """One emulator for the whole session on http://127.0.0.1:<free port>.

    Prefer ``lsq_emulator``, which resets it before each test.
    """
    from leadsq_async.testing._server import serve_in_thread

    with serve_in_thread() as running:
        yield running


@pytest.fixture
def lsq_emulator(lsq_emulator_server: RunningEmulator) -> RunningEmulator:
    """The session's emulator, reset to its defaults: ``.url``, ``.base_url``,
    ``.access_key``, ``.secret_key``, ``.data``, ``.config``, ``.stats`` and ``.app``.

    Before the reset it waits (up to 30 s) for requests an earlier test left running, such
    as a "slow" answer its client gave up on, so they cannot count in this test's stats.
    """
    lsq_emulator_server.app.wait_idle(timeout=30.0)
    lsq_emulator_server.app.reset()
    return lsq_emulator_server
