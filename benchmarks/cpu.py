"""CPU per request: a session's walk next to a plain httpx loop, on the same emulator.

The emulator serves from a background thread, without latency or a rate limit
that binds, leads of 0 to 12 opportunities (one page each). Each variant reads
every lead's opportunities one lead after another: the session with
``opportunities_of_lead(...).collect()`` (limiter, retries, decoding, records),
the plain loop with ``client.post`` and ``response.json()``. The time is the CPU
time of the thread running the event loop (the emulator's thread is not
counted), per request; rounds alternate, and the figure is
median(session) / median(plain loop).

Run it with ``python -m benchmarks.cpu`` from the repository root.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

import leadsq_async as lsq
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

OPPORTUNITIES_PATH = "OpportunityManagement.svc/GetOpportunitiesOfLead"
LEADS = 300
ROUNDS = 7


async def library_round(emulator: RunningEmulator, leads: list[str]) -> tuple[float, int]:
    """CPU seconds and requests of one session reading every lead."""
    async with lsq.Session(
        emulator.access_key,
        emulator.secret_key,
        host=emulator.url,
        rate_limit=lsq.RateLimit(1_000_000, 1.0),
    ) as session:
        started = time.thread_time()
        for lead in leads:
            await session.opportunities_of_lead(lead).collect()
        spent = time.thread_time() - started
        return spent, session.stats.requests


async def plain_round(emulator: RunningEmulator, leads: list[str]) -> tuple[float, int]:
    """CPU seconds and requests of a plain httpx loop reading every lead."""
    url = f"{emulator.base_url}{OPPORTUNITIES_PATH}"
    headers = {"x-LSQ-AccessKey": emulator.access_key, "x-LSQ-SecretKey": emulator.secret_key}
    requests = 0
    async with httpx.AsyncClient(timeout=30.0) as client:
        started = time.thread_time()
        for lead in leads:
            page, rows = 1, []
            while True:
                response = await client.post(
                    url,
                    params={"leadId": lead},
                    headers=headers,
                    json={"Paging": {"PageIndex": page, "PageSize": 1000}},
                )
                requests += 1
                body: dict[str, Any] = response.json()
                rows.extend(body["List"])
                if len(rows) >= body["RecordCount"] or not body["List"]:
                    break
                page += 1
        return time.thread_time() - started, requests


async def compare(emulator: RunningEmulator) -> dict[str, float]:
    leads = list(emulator.data.opportunities)[:LEADS]
    library, plain = [], []
    for _ in range(ROUNDS):
        seconds, requests = await library_round(emulator, leads)
        library.append(seconds / requests)
        seconds, requests = await plain_round(emulator, leads)
        plain.append(seconds / requests)
    return {
        "session, µs per request": statistics.median(library) * 1e6,
        "plain httpx loop, µs per request": statistics.median(plain) * 1e6,
        "session / plain httpx loop": statistics.median(library) / statistics.median(plain),
    }


def run() -> dict[str, float]:
    """The CPU per request of each, and their ratio."""
    data = Dataset.generate(3, page_size=5, thousands=7, hundreds=3, other_leads=LEADS)
    config = EmulatorConfig(rate_limits=(lsq.RateLimit(1_000_000, 1.0),))
    with serve_in_thread(EmulatorApp(data, config)) as emulator:
        return asyncio.run(compare(emulator))


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.2f}")
