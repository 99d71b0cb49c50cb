"""A crawl split over several processes that share the account's rate limit through Redis.

This is the fallback for where no job queue runs: a worker that dies takes its share
with it. With a queue, use ``leadsq-async enqueue`` and ``leadsq-async worker``
(docs/processes.md, "Crawls on a job queue").

LeadSquared counts the calls of the whole account, so processes that use the
same keys must share one limit. This script starts ``--processes`` copies of
itself; worker ``I`` of ``N`` crawls every ``N``-th lead of the file, starting
at the ``I``-th, with a `Session` of its own whose rate limit is a
`RedisLimiter` on one Redis key for the account. Together they never send
more than the plan allows in any window, and use all of it. Each worker writes
its opportunities to ``OUT/opportunities-I.jsonl`` (one JSON line per row, as
the API sent it) and prints one line of JSON with its counts; the parent adds
them up.

Run it against the emulator (``leadsq-async emulator --lead-ids leads.txt``
prints the variables to set) and the Redis server on 127.0.0.1::

    export LSQ_HOST=http://127.0.0.1:8000 LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=...
    export REDIS_URL=redis://127.0.0.1:6379/0
    python examples/multiprocess_crawl.py --leads-file leads.txt --processes 4 --out crawl

The workers could as well run on several hosts: give each host the same Redis
server and its own ``--worker`` indexes.

Needs ``pip install "leadsq-async[redis]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import leadsq_async as lsq


def redis_key(access_key: str) -> str:
    """One shared limit per account: the key names the access key (never the secret)."""
    return f"leadsq-async:ratelimit:{access_key}"


async def crawl_share(
    lead_ids: list[str], out: Path, *, redis_url: str, key: str, concurrency: int
) -> dict[str, int]:
    """Crawl ``lead_ids`` into ``out`` under the shared limit; the counts of what was done."""
    access_key = os.environ["LSQ_ACCESS_KEY"]
    limit = lsq.RateLimit.parse(os.environ.get("LSQ_RATE_LIMIT", "25/5"))
    counts = {"leads": 0, "opportunities": 0, "failed": 0}
    async with (
        lsq.RedisLimiter(redis_url, limit, key=key) as shared_limit,
        lsq.Session(
            access_key,
            os.environ["LSQ_SECRET_KEY"],
            host=os.environ.get("LSQ_HOST", "api.leadsquared.com"),
            limiter=shared_limit,
        ) as session,
    ):
        with out.open("w", encoding="utf-8") as rows:
            async for result in session.crawl_opportunities(lead_ids, concurrency=concurrency):
                if result.error is not None:
                    counts["failed"] += 1
                    print(f"lead {result.lead_id} failed: {result.error}", file=sys.stderr)
                    continue
                counts["leads"] += 1
                counts["opportunities"] += len(result.records)
                for opportunity in result.records:
                    rows.write(json.dumps(lsq.unstructure(opportunity), ensure_ascii=False) + "\n")
    return counts


def run_worker(args: argparse.Namespace) -> int:
    """Crawl this worker's share of the leads; print its counts as one JSON line."""
    with open(args.leads_file, encoding="utf-8") as lines:
        lead_ids = [line.strip() for line in lines if line.strip()]
    share = lead_ids[args.worker :: args.processes]
    limit = lsq.RateLimit.parse(os.environ.get("LSQ_RATE_LIMIT", "25/5"))
    # Enough leads in flight that this worker always has requests waiting for a slot.
    concurrency = max(4, 2 * limit.calls // args.processes)
    counts = asyncio.run(
        crawl_share(
            share,
            Path(args.out) / f"opportunities-{args.worker}.jsonl",
            redis_url=args.redis_url,
            key=args.redis_key or redis_key(os.environ["LSQ_ACCESS_KEY"]),
            concurrency=concurrency,
        )
    )
    print(json.dumps({"worker": args.worker, **counts}), flush=True)
    return 1 if counts["failed"] else 0


def run_parent(args: argparse.Namespace) -> int:
    """Start the workers, wait for them all, and add up their counts."""
    Path(args.out).mkdir(parents=True, exist_ok=True)
    common = [
        *("--leads-file", args.leads_file, "--out", args.out),
        *("--processes", str(args.processes), "--redis-url", args.redis_url),
        *(("--redis-key", args.redis_key) if args.redis_key else ()),
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, *common, "--worker", str(index)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(args.processes)
    ]
    totals = {"leads": 0, "opportunities": 0, "failed": 0}
    status = 0
    for worker in workers:
        output, _ = worker.communicate()
        if worker.returncode != 0:
            status = 1
        for line in output.splitlines():
            counts = json.loads(line)
            for name in totals:
                totals[name] += counts[name]
    print(
        f"{args.processes} processes: {totals['leads']} leads, "
        f"{totals['opportunities']} opportunities, {totals['failed']} failed"
    )
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Crawl the leads of a file with several processes; 0 if every lead was fetched, else 1."""
    parser = argparse.ArgumentParser(description="A crawl over several processes, one limit.")
    parser.add_argument("--leads-file", required=True, help="lead ids, one per line")
    parser.add_argument("--out", required=True, help="the directory to write the rows to")
    parser.add_argument("--processes", type=int, default=4, help="worker processes [4]")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis server that holds the shared limit [REDIS_URL]",
    )
    parser.add_argument(
        "--redis-key", help="the limit's Redis key [leadsq-async:ratelimit:ACCESS_KEY]"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    return run_parent(args) if args.worker is None else run_worker(args)


if __name__ == "__main__":
    sys.exit(main())
