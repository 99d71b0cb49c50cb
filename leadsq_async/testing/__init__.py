"""Test helpers: an emulator of LeadSquared's two list endpoints, and pytest fixtures.

``EmulatorApp`` is a plain ASGI application: call it in process with
``httpx.ASGITransport(app=app)``, or serve it on a loopback socket with ``serve_in_thread``
or ``EmulatorServer`` (needs the ``testing`` extra: ``pip install "leadsq-async[testing]"``).
The pytest plugin in ``leadsq_async.testing.pytest_plugin`` provides the ``lsq_emulator``
fixture. See docs/testing.md.
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
