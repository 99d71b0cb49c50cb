"""A worker process for the tests that share one `RedisLimiter` across OS processes.

Run as a script, one process per worker::

    python tests/redis_worker.py slots URL KEY --calls 3 --period 0.25 --slots 6 --tasks 2
    python tests/redis_worker.py hold URL KEY --calls 2 --slots 2 --lease 0.5
    LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=... python tests/redis_worker.py crawl URL KEY \
        --emulator http://127.0.0.1:PORT --limiter redis --calls 10 --period 1.0 \
        [--quota 25/4s] LEAD_ID...

Each line a worker prints is one JSON object. Every mode first prints
``{"ready": true}`` once Redis answers, then:

- ``slots``: waits for the go (an item pushed on the list ``KEY:go``), then its
  ``--tasks`` tasks take ``--slots`` slots in all, holding each for up to
  ``--hold`` seconds, and print ``{"enter": t, "exit": t}`` per slot, read from
  Redis' clock at the start and at the end of the slot's body. Exits 0.
- ``hold``: takes ``--slots`` slots, prints ``{"held": n}`` and keeps them until
  it is killed, or until SIGTERM cancels it (the slots are then released, and it
  prints ``{"released": true}``).
- ``crawl``: waits for the go, then crawls the opportunities of the lead ids
  given, from the emulator at ``--emulator`` (keys in ``LSQ_ACCESS_KEY`` and
  ``LSQ_SECRET_KEY``), with a `Session` whose rate limit is a `RedisLimiter`
  on KEY (``--limiter redis``) or its own in-process one (``--limiter local``),
  of ``--calls`` per ``--period``, and of each ``--quota`` too. Prints
  ``{"lead": id, "opportunities": n, "error": null or text}`` per lead, then
  ``{"requests": n, "rate_limited": n}`` as the session counted them. Exits 0
  even when leads failed.

The functions below the worker are the tests' side: start a worker, read its
lines, give the go.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis

import leadsq_async as lsq

WORKER = Path(__file__).resolve()


def _emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


async def _redis_time(client: aioredis.Redis) -> float:
    seconds, microseconds = await client.time()
    return seconds + microseconds / 1_000_000


async def _take_slots(args: argparse.Namespace, client: aioredis.Redis) -> None:
    await client.blpop([f"{args.key}:go"], timeout=30)
    remaining = args.slots
    async with lsq.RedisLimiter(
        client, lsq.RateLimit(args.calls, args.period), key=args.key, lease=args.lease
    ) as limiter:

        async def take() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with limiter.slot():
                    enter = await _redis_time(client)
                    await asyncio.sleep(random.uniform(0, args.hold))
                    exit_ = await _redis_time(client)
                _emit(enter=enter, exit=exit_)

        await asyncio.gather(*(take() for _ in range(args.tasks)))


async def _hold_slots(args: argparse.Namespace, client: aioredis.Redis) -> None:
    async with lsq.RedisLimiter(
        client, lsq.RateLimit(args.calls, args.period), key=args.key, lease=args.lease
    ) as limiter:
        entered = 0
        forever = asyncio.Event()

        async def hold() -> None:
            nonlocal entered
            async with limiter.slot():
                entered += 1
                if entered == args.slots:
                    _emit(held=entered)
                await forever.wait()

        try:
            # return_exceptions: when cancelled, wait for every release, not just the first.
            await asyncio.gather(*(hold() for _ in range(args.slots)), return_exceptions=True)
        finally:
            _emit(released=True)


async def _crawl(args: argparse.Namespace, client: aioredis.Redis) -> None:
    limits = [lsq.RateLimit(args.calls, args.period), *args.quota]
    limiter = None
    if args.limiter == "redis":
        limiter = lsq.RedisLimiter(client, limits, key=args.key, lease=args.lease)
    try:
        async with lsq.Session(
            os.environ["LSQ_ACCESS_KEY"],
            os.environ["LSQ_SECRET_KEY"],
            host=args.emulator,
            rate_limit=limits if limiter is None else None,
            limiter=limiter,
        ) as session:
            await client.blpop([f"{args.key}:go"], timeout=30)
            # More leads in flight than the limit's calls: the limiter, not the
            # crawl, sets the pace.
            crawl = session.crawl_opportunities(args.leads, concurrency=2 * args.calls)
            async for result in crawl:
                error = None if result.error is None else str(result.error)
                _emit(lead=result.lead_id, opportunities=len(result.records), error=error)
            _emit(requests=session.stats.requests, rate_limited=session.stats.rate_limited)
    finally:
        if isinstance(limiter, lsq.RedisLimiter):
            await limiter.aclose()


async def _main(args: argparse.Namespace) -> None:
    main = asyncio.current_task()
    assert main is not None
    # SIGTERM cancels the work, as a service's shutdown would: the slots are released.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    client = aioredis.from_url(args.url)
    try:
        await client.ping()
        _emit(ready=True)
        modes = {"slots": _take_slots, "hold": _hold_slots, "crawl": _crawl}
        await modes[args.mode](args, client)
    except asyncio.CancelledError:
        pass  # stopped by SIGTERM: a clean exit
    finally:
        await client.aclose()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["slots", "hold", "crawl"])
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--period", type=float, default=0.25)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--slots", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--hold", type=float, default=0.02, help="longest body, in seconds")
    parser.add_argument("--emulator", help="crawl: the emulator's URL")
    parser.add_argument("--limiter", choices=["redis", "local"], default="redis")
    parser.add_argument(
        "--quota", type=lsq.RateLimit.parse, action="append", default=[], help="crawl: a limit more"
    )
    parser.add_argument("leads", nargs="*", help="crawl: the lead ids to crawl")
    return parser.parse_intermixed_args(argv)


# -- the tests' side ---------------------------------------------------------------


async def start_worker(
    *args: str, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python tests/redis_worker.py *args``, its stdout piped, `env` added to ours."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def next_event(worker: asyncio.subprocess.Process, timeout: float = 15.0) -> dict[str, Any]:
    """The next JSON line the worker prints; RuntimeError if it exits first."""
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"worker exited with {await worker.wait()} before printing")
    event: dict[str, Any] = json.loads(line)
    return event


async def all_events(worker: asyncio.subprocess.Process, timeout: float = 30.0) -> list[Any]:
    """Every line the worker prints until it exits; RuntimeError if it fails."""
    assert worker.stdout is not None
    output = await asyncio.wait_for(worker.stdout.read(), timeout)
    code = await asyncio.wait_for(worker.wait(), timeout)
    if code != 0:
        raise RuntimeError(f"worker exited with {code}")
    return [json.loads(line) for line in output.splitlines()]


async def give_the_go(client: aioredis.Redis, key: str, workers: int) -> None:
    """Let `workers` waiting ``slots`` workers start at once."""
    await client.rpush(f"{key}:go", *["go"] * workers)


if __name__ == "__main__":
    asyncio.run(_main(_parse(sys.argv[1:])))
