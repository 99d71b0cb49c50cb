"""Test helpers: an emulator of LeadSquared's two opportunity list endpoints (and
Leads.RecentlyModified), and pytest fixtures.

``EmulatorApp`` is a plain ASGI application: call it in process with
``httpx.ASGITransport(app=app)``, or serve it on a loopback socket with ``serve_in_thread``
or ``EmulatorServer`` (needs the ``testing`` extra: ``pip install "leadsq-async[testing]"``).
The pytest plugin in ``leadsq_async.testing.pytest_plugin`` provides the ``lsq_emulator``
fixture (the extra also installs pytest-asyncio, for ``async def`` tests). ``EmulatorApp``
takes a ``clock`` and a ``sleep``, so that in process its rate limits, a daily quota
included, can run on a virtual clock. ``DEFAULT_ACCESS_KEY``, ``DEFAULT_SECRET_KEY`` and
``FAULT_KINDS`` are the keys a default config accepts and the faults it can inject. See
docs/testing.md.
"""

from leadsq_async.testing._app import EmulatorApp, InjectedDisconnect
from leadsq_async.testing._config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    FAULT_KINDS,
    EmulatorConfig,
)
from leadsq_async.testing._data import Dataset
from leadsq_async.testing._rows import sample_rows
from leadsq_async.testing._server import EmulatorServer, RunningEmulator, serve_in_thread
from leadsq_async.testing._stats import EmulatorStats

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "FAULT_KINDS",
    "Dataset",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorStats",
    "InjectedDisconnect",
    "RunningEmulator",
    "sample_rows",
    "serve_in_thread",
]
