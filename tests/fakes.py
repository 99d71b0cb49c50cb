"""Fake servers for the layers' tests: httpx.MockTransport handlers, no sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

import leadsq_async as lsq

SECRET = "s3cr3t-Key-never-shown"
FAST_RETRY = lsq.RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.002)
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def opportunity(n: int, lead: str = "lead-1") -> dict[str, Any]:
    """Row ``n`` of a lead's opportunities."""
    return {"OpportunityId": f"opp-{n:05d}", "ProspectId": lead, "Score": str(n)}


class FakeServer:
    """Serves rows by PageIndex/PageSize and records what it was asked."""

    def __init__(self, rows: list[dict[str, Any]], *, clamp: int | None = None) -> None:
        self.rows = rows
        self.clamp = clamp
        self.ignore_page_index = False
        self.requests: list[httpx.Request] = []
        self.pages_asked: list[tuple[int, int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        paging = json.loads(request.content)["Paging"]
        index, size = paging["PageIndex"], paging["PageSize"]
        self.pages_asked.append((index, size))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if self.gate is not None and index > 1:
                await self.gate.wait()
        finally:
            self.in_flight -= 1
        size = min(size, self.clamp or size)
        start = 0 if self.ignore_page_index else (index - 1) * size
        body = {"RecordCount": len(self.rows), "List": self.rows[start : start + size]}
        return httpx.Response(200, json=body)


def session_for(handler: Handler, **kwargs: Any) -> lsq.Session:
    """A session on virtual time that sends through ``handler``, with fast retries."""
    kwargs.setdefault("retry", FAST_RETRY)
    if "limiter" not in kwargs:
        kwargs.setdefault("rate_limit", lsq.RateLimit(calls=1000, period=0.01))
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return lsq.Session("access-key", SECRET, host="http://127.0.0.1:9", client=client, **kwargs)
