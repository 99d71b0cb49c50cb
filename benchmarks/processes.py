"""Four processes crawling one account: a shared RedisLimiter against a limit per process.

The emulator is served from this process (``serve_in_thread``) with LeadSquared's
strict window, 25 calls in any 5 seconds, and a 50 ms round trip. A fixed set of
leads, whose opportunities take R pages of 1000 rows (R = 175), is split into 4
disjoint slices, and 4 worker processes (multiprocessing, spawn) each crawl one
slice with ``Session.crawl_opportunities``, starting together. Two variants run
one after the other, each against a fresh emulator:

- **shared**: every process uses ``RedisLimiter(redis_url, RateLimit(25, 5.0),
  key=...)`` on one key, unique to the run and deleted after it. The key is made
  before the workers start, and its first period waited out: a new key grants
  nothing for one period (see docs/processes.md), which is not what is measured;
- **own**: every process keeps to ``RateLimit(25, 5.0)`` on its own, which is
  what a process that does not know about the others does.

For each, it reports:

- wall time / optimum, where the wall time runs from the go to the last
  worker's end, and the optimum is the earliest the last of R requests can be
  answered under C calls per P seconds: ``floor((R - 1) / C) * P`` plus one
  round trip;
- requests / minimum: every request the emulator received, refused ones
  included, over R, the pages needed;
- rate-limit answers the emulator gave, and the most requests it accepted in
  any 5-second window, over 25;
- leads whose crawl failed, and requests the workers sent that never reached
  the emulator (see the keep-alive below).

The lead of 2500 opportunities is crawled first. Its pages 2 and 3 can only be
asked once page 1 is answered; were it last, they would spill into one more
window whatever the limiter, adding a whole period (a sixth of the optimum)
that says nothing about the limiter.

Both variants retry a rate-limit answer up to 50 times (the default is 5), so
that the per-process variant finishes its crawl and its figures compare; the
leads that still failed are reported too.

The workers' HTTP clients drop a connection after 2 idle seconds (httpx's
default is 5). The emulator's server (uvicorn) closes a connection after 5 idle
seconds, and at this pace a connection waits just over 5 seconds, the period,
between requests: reused, it races the server's close, and the request fails
with a ReadError before reaching the server. Its slot is spent for nothing and
the retry waits for the next window. That costs either variant a whole period
now and then, and says nothing about the limiter.

It needs a Redis server: ``LEADSQ_BENCH_REDIS_URL``, by default
``redis://127.0.0.1:6379/0``. Run it with ``python -m benchmarks.processes``
from the repository root (about a minute).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import queue
import time
import uuid
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import httpx
import redis
from redis import asyncio as aioredis

import leadsq_async as lsq
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

REDIS_URL = os.environ.get("LEADSQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PROCESSES = 4
CALLS = 25
PERIOD = 5.0
LATENCY = 0.05
PAGE_SIZE = 1000
# Dataset.generate's shaped leads need 8 pages (the one of 2500 opportunities
# takes 3); each further lead has at most 12 opportunities, one page.
OTHER_LEADS = 167
SEED = 2026
# Enough tries that the per-process variant finishes despite its refusals.
RETRY = lsq.RetryPolicy(attempts=50, deadline=600.0)
# Below the emulator's keep-alive (uvicorn's default, 5 s, as long as PERIOD); see above.
KEEPALIVE_EXPIRY = 2.0
VARIANTS = {"shared": "shared RedisLimiter", "own": f"own RateLimit({CALLS}, {PERIOD:g}) each"}


def dataset() -> Dataset:
    """The leads crawled: the same every run."""
    return Dataset.generate(SEED, other_leads=OTHER_LEADS)


def pages_needed(data: Dataset) -> int:
    """The fewest requests that fetch every lead's opportunities, PAGE_SIZE rows a page."""
    return sum(max(1, math.ceil(len(rows) / PAGE_SIZE)) for rows in data.opportunities.values())


def crawl_order(data: Dataset) -> list[str]:
    """The lead ids in the order they are dealt out: the largest first."""
    return sorted(data.opportunities, key=lambda lead: (-len(data.opportunities[lead]), lead))


def optimum(requests: int) -> float:
    """The earliest the last of `requests` can be answered under CALLS per PERIOD."""
    return lsq.RateLimit(CALLS, PERIOD).least_time(requests) + LATENCY


def _worker(
    variant: str,
    key: str,
    emulator: tuple[str, str, str],
    lead_ids: list[str],
    ready: Queue[Any],
    go: Event,
    results: Queue[Any],
) -> None:
    """One worker process: crawl `lead_ids` once `go` is set, put what it got on `results`."""
    asyncio.run(_crawl(variant, key, emulator, lead_ids, ready, go, results))


async def _crawl(
    variant: str,
    key: str,
    emulator: tuple[str, str, str],
    lead_ids: list[str],
    ready: Queue[Any],
    go: Event,
    results: Queue[Any],
) -> None:
    url, access_key, secret_key = emulator
    client = aioredis.from_url(REDIS_URL)
    limiter = None
    if variant == "shared":
        limiter = lsq.RedisLimiter(client, lsq.RateLimit(CALLS, PERIOD), key=key)
    rate_limit = lsq.RateLimit(CALLS, PERIOD) if limiter is None else None
    http = httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY))
    counts: dict[str, int] = {}
    failed: dict[str, str] = {}
    try:
        async with lsq.Session(
            access_key,
            secret_key,
            host=url,
            rate_limit=rate_limit,
            limiter=limiter,
            retry=RETRY,
            client=http,
        ) as session:
            await client.ping()  # connected before the clock starts
            ready.put(os.getpid())
            await asyncio.to_thread(go.wait)
            crawl = session.crawl_opportunities(
                lead_ids, concurrency=2 * CALLS, page_size=PAGE_SIZE
            )
            async for result in crawl:
                if result.error is None:
                    counts[result.lead_id] = len(result.records)
                else:
                    failed[result.lead_id] = str(result.error)
    finally:
        if isinstance(limiter, lsq.RedisLimiter):
            await limiter.aclose()
        await client.aclose()
        await http.aclose()
        sent = session.stats.requests
    results.put({"counts": counts, "failed": failed, "sent": sent})


async def _make_key(key: str) -> None:
    """Make `key`'s state in Redis, and wait out the period a new key grants nothing."""
    async with lsq.RedisLimiter(REDIS_URL, lsq.RateLimit(CALLS, PERIOD), key=key) as limiter:
        await limiter.pause(0)
    await asyncio.sleep(PERIOD)


def measure(variant: str, data: Dataset) -> dict[str, float]:
    """Crawl `data`'s leads from PROCESSES processes with the `variant` limiter."""
    config = EmulatorConfig(rate_limit_calls=CALLS, rate_limit_period=PERIOD, latency=LATENCY)
    key = f"leadsq-async:bench:{uuid.uuid4().hex}"
    minimum = pages_needed(data)
    with serve_in_thread(EmulatorApp(data.copy(), config)) as emulator:
        try:
            if variant == "shared":
                asyncio.run(_make_key(key))
            wall, counts, failed, sent = _run_workers(variant, key, emulator, crawl_order(data))
        finally:
            with redis.Redis.from_url(REDIS_URL) as client:
                names = client.keys(f"{key}*")
                if names:
                    client.delete(*names)
        stats = emulator.stats
        expected = {lead: len(rows) for lead, rows in data.opportunities.items()}
        wrong = [lead for lead, count in counts.items() if count != expected[lead]]
        if wrong:
            raise RuntimeError(f"{variant}: wrong opportunity counts for leads {wrong}")
        return {
            "wall time / optimum": wall / optimum(minimum),
            "requests / minimum": stats.total / minimum,
            "rate-limit answers": float(stats.rate_limited),
            "most accepted in a window / calls": stats.most_accepted_in_window / CALLS,
            "leads failed": float(len(failed)),
            "requests lost before the server": float(sent - stats.total),
        }


def _run_workers(
    variant: str, key: str, emulator: RunningEmulator, lead_ids: list[str]
) -> tuple[float, dict[str, int], dict[str, str], int]:
    """Start the workers, wait until all are ready, give the go, and time them."""
    context = multiprocessing.get_context("spawn")
    ready: Queue[Any] = context.Queue()
    results: Queue[Any] = context.Queue()
    go = context.Event()
    server = (emulator.url, emulator.access_key, emulator.secret_key)
    workers: list[BaseProcess] = [
        context.Process(
            target=_worker,
            args=(variant, key, server, lead_ids[index::PROCESSES], ready, go, results),
            daemon=True,
        )
        for index in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            _next(ready, workers, timeout=60)
        started = time.perf_counter()
        go.set()
        counts: dict[str, int] = {}
        failed: dict[str, str] = {}
        sent = 0
        for _ in workers:
            got = _next(results, workers, timeout=600)
            counts.update(got["counts"])
            failed.update(got["failed"])
            sent += got["sent"]
        wall = time.perf_counter() - started
        for worker in workers:
            worker.join(timeout=30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    return wall, counts, failed, sent


def _next(source: Queue[Any], workers: list[BaseProcess], timeout: float) -> Any:
    """The next item on `source`; RuntimeError if a worker failed or time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return source.get(timeout=0.5)
        except queue.Empty:
            codes = [worker.exitcode for worker in workers if worker.exitcode not in (None, 0)]
            if codes:
                raise RuntimeError(f"a worker process failed with exit code {codes[0]}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"no word from the workers in {timeout:g} s") from None


def run() -> dict[str, float]:
    """Both variants, one after the other; every figure keyed ``"<variant>: <figure>"``."""
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
        client.ping()  # a clear error now rather than in every worker
    data = dataset()
    return {
        f"{VARIANTS[variant]}: {name}": value
        for variant in VARIANTS
        for name, value in measure(variant, data).items()
    }


def _table(figures: dict[str, float]) -> str:
    names = [name.split(": ", 1)[1] for name in figures if name.startswith(VARIANTS["shared"])]
    width = max(map(len, names))
    lines = [" " * width + "".join(f"  {label:>26}" for label in VARIANTS.values())]
    for name in names:
        shape = ".2f" if " / " in name else ".0f"  # ratios, else counts
        cells = "".join(
            f"  {format(figures[f'{label}: {name}'], shape):>26}" for label in VARIANTS.values()
        )
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    requests = pages_needed(dataset())
    print(
        f"{PROCESSES} processes crawling leads that need {requests} requests, against the "
        f"emulator's strict window of {CALLS} calls per {PERIOD:g} s "
        f"with a {LATENCY * 1000:g} ms round trip"
    )
    print(
        f"optimum: the last answer at floor((R-1)/C)*P + round trip; "
        f"minimum: R = {requests} requests"
    )
    print(_table(run()))
