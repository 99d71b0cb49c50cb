"""A fixture for async tests: no task is left running when the test ends.

What ``@virtual`` checked after each test, kept for the test modules that
moved to pytest-asyncio and looptime: use it with
``pytestmark = pytest.mark.usefixtures(no_task_left_behind.__name__)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture
async def no_task_left_behind() -> AsyncIterator[None]:
    """After the test, only the fixture's own task runs on the loop."""
    yield
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    assert not leftover, f"tasks left running: {leftover}"
