"""Test helpers: an emulator of one LeadSquared account behind its per-lead and account-wide
endpoints, changeable while it runs (``EmulatorApp.account``), and pytest fixtures; ``EmulatorApp``
runs in process through ``httpx.ASGITransport`` (on the event loop's clock, virtual under
``looptime``) or on a loopback socket (``serve_in_thread``, ``EmulatorServer``: the ``testing``
extra). See docs/testing.md.
"""

from leadsq_async.testing._account import Account, UnknownRecordError
from leadsq_async.testing._answers import InjectedDisconnect
from leadsq_async.testing._app import EmulatorApp
from leadsq_async.testing._clock import EmulatorClock
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
    "Account",
    "Dataset",
    "EmulatorApp",
    "EmulatorClock",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorStats",
    "InjectedDisconnect",
    "RunningEmulator",
    "UnknownRecordError",
    "sample_rows",
    "serve_in_thread",
]
