"""The emulator driven in process, for tests that need no socket.

`virtual_app` builds an `EmulatorApp`, whose clock is the running loop's, so under
``@pytest.mark.looptime`` its rate-limit windows, latency, slow answers and index lag cost no
real time; `client_of` opens an httpx client that calls it through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx

from leadsq_async.testing import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    Dataset,
    EmulatorApp,
    EmulatorConfig,
)

OPPORTUNITIES = "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead"
ACTIVITIES = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"
KEYS = {"x-LSQ-AccessKey": DEFAULT_ACCESS_KEY, "x-LSQ-SecretKey": DEFAULT_SECRET_KEY}


def now() -> float:
    """The running loop's clock (virtual under ``@pytest.mark.looptime``)."""
    return asyncio.get_running_loop().time()


def virtual_app(data: Dataset, config: EmulatorConfig | None = None) -> EmulatorApp:
    """An app serving ``data`` (its clock is the running loop's)."""
    return EmulatorApp(data, config)


@contextlib.asynccontextmanager
async def client_of(
    app: EmulatorApp, headers: Mapping[str, str] = KEYS
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling ``app`` in process, sending ``headers`` (the keys by default)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator", headers=headers
    ) as client:
        yield client
