"""Three ``leadsq-async worker`` processes on one account's limit, with and without one killed.

The emulator is served from this process with LeadSquared's strict window, 25 calls in
any 5 seconds, and a 50 ms round trip. LEADS leads of one page each are enqueued on an
arq queue of the run's own, in jobs of BATCH leads, once three worker processes (arq,
two jobs at once each, writing to a PostgreSQL schema of the run's own) have started;
the shared limit's Redis key is made, and its first period waited out, before. The
crawl's time runs from the enqueue to the moment the last lead is committed. Two
variants, each against a fresh emulator:

- **all three**: no worker dies;
- **one killed**: the first worker is killed with SIGKILL 5 seconds in, mid-job; its
  job runs again in another worker once arq's in-progress key expires (JOB_TIMEOUT +
  10 s after the job started), for the leads it had not written.

For each, it reports the crawl's time over the safe optimum, the earliest a client that
cannot see the server's clock can have the last of R requests answered,
``floor((R - 1) / 25) * (5 s + round trip) + round trip``; the requests over R (the
re-fetched leads of the dead worker's job); and the emulator's rate-limit answers.

It needs the Redis server (``LEADSQ_BENCH_REDIS_URL``, by default
``redis://127.0.0.1:6379/0``) and PostgreSQL (``LEADSQ_BENCH_POSTGRES_URL``, by default
``postgresql://postgres@127.0.0.1:5432/test``). Run it with ``python -m
benchmarks.arq_workers`` from the repository root (about two minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
from arq.connections import ArqRedis, RedisSettings, create_pool

import leadsq_async as lsq
from leadsq_async.arq import enqueue_crawl
from leadsq_async.testing import Dataset, EmulatorApp, EmulatorConfig, serve_in_thread

REDIS_URL = os.environ.get("LEADSQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "LEADSQ_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parent.parent
CALLS, PERIOD, LATENCY = 25, 5.0, 0.05
WORKERS = 3
LEADS = 250
BATCH = 10
JOB_TIMEOUT = 20.0
KILL_AFTER = 5.0
SEED = 2026
VARIANTS = {False: "all three", True: "one killed"}


def dataset() -> Dataset:
    """LEADS leads of at most 12 opportunities: one request each."""
    return Dataset.generate(SEED, thousands=0, page_size=1, hundreds=0, other_leads=LEADS - 6)


def safe_optimum(requests: int) -> float:
    """The earliest the last of `requests` is answered when each wave waits out a round trip."""
    return lsq.RateLimit(CALLS, PERIOD + LATENCY).least_time(requests) + LATENCY


class Finished:
    """The jobs that ended, in any worker; `all_done` is set once `expected` did."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.expected: set[str] | None = None
        self.all_done = asyncio.Event()

    def add(self, job_id: str) -> None:
        """A job ended."""
        self.jobs.add(job_id)
        self._check()

    def expect(self, job_ids: list[str]) -> None:
        """The jobs to wait for."""
        self.expected = set(job_ids)
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.expected <= self.jobs:
            self.all_done.set()


class Worker:
    """A worker process and the jobs it runs, read from its log as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, finished: Finished) -> None:
        self.process = process
        self.finished = finished
        self.ready = asyncio.Event()
        self.busy = asyncio.Event()
        self.running: set[str] = set()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace")
            if "Starting worker" in line:
                self.ready.set()
            if started := re.search(r"→ (leadsq-crawl:\w+):", line):
                self.running.add(started.group(1))
            if ended := re.search(r"← (leadsq-crawl:\w+):", line):
                self.running.discard(ended.group(1))
                self.finished.add(ended.group(1))
            if self.running:
                self.busy.set()
            else:
                self.busy.clear()


@contextlib.asynccontextmanager
async def workers(
    arguments: list[str], environment: dict[str, str], finished: Finished
) -> AsyncIterator[list[Worker]]:
    """WORKERS worker processes, ready; stopped (SIGTERM) after."""
    started = [
        Worker(
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "leadsq_async.cli", "worker", *arguments),
                env=environment,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            ),
            finished,
        )
        for _ in range(WORKERS)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in started)), 60)
        await asyncio.sleep(2.0)  # their on_startup: a session, a PostgreSQL connection
        yield started
    finally:
        for worker in started:
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
            await worker.process.wait()
            await worker.reader


async def measure(kill: bool, data: Dataset) -> dict[str, float]:
    """Crawl `data`'s leads with WORKERS workers; kill one `KILL_AFTER` seconds in if `kill`."""
    run = uuid.uuid4().hex[:12]
    queue, schema, key = f"lsq-bench:{run}", f"lsq_bench_{run}", f"lsq-bench:limit:{run}"
    config = EmulatorConfig(rate_limit_calls=CALLS, rate_limit_period=PERIOD, latency=LATENCY)
    redis: ArqRedis = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=queue)
    connection = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    leads = list(data.opportunities)
    jobs: list[str] = []
    try:
        # A new key grants nothing for one period: made and waited out before the clock.
        async with lsq.RedisLimiter(REDIS_URL, lsq.RateLimit(CALLS, PERIOD), key=key) as limit:
            await limit.pause(0)
        await asyncio.sleep(PERIOD)
        with serve_in_thread(EmulatorApp(data.copy(), config)) as emulator:
            environment = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "LSQ_ACCESS_KEY": emulator.access_key,
                "LSQ_SECRET_KEY": emulator.secret_key,
                "LSQ_HOST": emulator.url,
            }
            arguments = [
                *("--redis", REDIS_URL, "--queue", queue, "--postgres", POSTGRES_URL),
                *("--schema", schema, "--limit-key", key, "--rate-limit", f"{CALLS}/{PERIOD}"),
                *("--job-timeout", str(JOB_TIMEOUT), "--jobs", "2", "--batch", str(BATCH)),
            ]
            finished = Finished()
            async with workers(arguments, environment, finished) as running:
                start = time.monotonic()
                jobs = await enqueue_crawl(redis, leads, batch=BATCH)
                finished.expect(jobs)
                if kill:
                    await asyncio.sleep(KILL_AFTER)
                    await running[0].busy.wait()  # mid-job
                    running[0].process.send_signal(signal.SIGKILL)
                await asyncio.wait_for(finished.all_done.wait(), 600)
                wall = time.monotonic() - start
            cursor = await connection.execute(f"SELECT count(*) FROM {schema}.leads")
            if await cursor.fetchone() != (len(leads),):
                raise RuntimeError("some leads were not written")
            stats = emulator.stats
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()
        names = [name async for name in redis.scan_iter(match=f"{key}*")]
        names += [f"arq:{kind}:{job}" for job in jobs for kind in ("job", "result", "retry")]
        await redis.delete(queue, f"{queue}:health-check", *names)
        await redis.aclose()
    return {
        "crawl time / safe optimum": wall / safe_optimum(len(leads)),
        "requests / minimum": stats.total / len(leads),
        "rate-limit answers": float(stats.rate_limited),
    }


def run() -> dict[str, float]:
    """Both variants, one after the other; every figure keyed ``"<variant>: <figure>"``."""
    data = dataset()
    return {
        f"{VARIANTS[kill]}: {name}": value
        for kill in VARIANTS
        for name, value in asyncio.run(measure(kill, data)).items()
    }


if __name__ == "__main__":
    for figure_name, figure_value in run().items():
        print(f"{figure_name}: {figure_value:.3f}")
