"""The emulator driven in process, for tests that need no socket.

`virtual_app` builds an `EmulatorApp`, whose clock is the running loop's, so under
``@pytest.mark.looptime`` its rate-limit windows, latency, slow answers and index lag cost no
real time; `client_of` opens an httpx client that calls it through ``httpx.ASGITransport``,
and `session_on` a `Session` on that client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

import leadsq_async as lsq
from leadsq_async.testing import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    Dataset,
    EmulatorApp,
    EmulatorConfig,
)

OPPORTUNITIES = "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead"
ACTIVITIES = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"
LEADS = "/v2/LeadManagement.svc/Leads.RecentlyModified"
RECENT = "/v2/ProspectActivity.svc/RetrieveRecentlyModified"
BY_EVENT = "/v2/ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent"
SEARCH = "/v2/OpportunityManagement.svc/Retrieve/BySearchParameter"
BY_IDS = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
ALL_TIME = {"FromDate": "2000-01-01 00:00:00", "ToDate": "2099-12-31 23:59:59"}
EVERYTHING = {"PageIndex": 1, "PageSize": 1000}
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


def session_on(client: httpx.AsyncClient, **kwargs: Any) -> lsq.Session:
    """A session calling the in-process emulator through ``client``, on the loop's clock."""
    return lsq.Session(
        DEFAULT_ACCESS_KEY,
        DEFAULT_SECRET_KEY,
        host="http://127.0.0.1:9",
        client=client,
        **kwargs,
    )


def condition(code: object, lso: str = "ActivityEvent", operator: str = "eq") -> str:
    """An AdvancedSearch string with one row condition, as the documented sample writes it."""
    row = {"SubConOp": "And", "LSO": lso, "LSO_Type": "PAEvent", "Operator": operator}
    search = {
        "GrpConOp": "And",
        "Conditions": [
            {"Type": "Activity", "ConOp": "and", "RowCondition": [{**row, "RSO": code}]}
        ],
        "QueryTimeZone": "India Standard Time",
    }
    return json.dumps(search)


def search_body(code: str, **rest: Any) -> dict[str, Any]:
    """A search for every opportunity of type ``code``, most recent change first."""
    return {
        "OpportunityEventCode": int(code),
        "AdvancedSearch": condition(code),
        "Paging": EVERYTHING,
        "Sorting": {"ColumnName": "ModifiedOn", "Direction": 1},
        **rest,
    }
