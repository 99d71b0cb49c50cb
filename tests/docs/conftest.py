"""Fixtures of the documentation tests, shared by their modules."""

from __future__ import annotations

import pytest
from test_docs import QuickstartFiles, run_quickstart


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> QuickstartFiles:
    """The quickstart's ``leads.txt`` and banner, from its emulator command run once a session."""
    return run_quickstart(tmp_path_factory.mktemp("quickstart"))
