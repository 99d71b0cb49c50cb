"""An asyncio worker that crawls the lead ids it takes from a queue.

Lead ids arrive on an `asyncio.Queue` (here a producer reads them from a file
or standard input; in a service they would come from a message broker or a
webhook). A pool of worker tasks takes them one at a time and fetches each
lead's opportunities through one shared `Session`, so the pool as a whole keeps
to the account's rate limit and uses all of it. Each opportunity is written as
one JSON line, exactly the row the API sent; a lead that fails is reported on
standard error while the others carry on.

For a list of ids known up front, ``Session.crawl_opportunities`` does all of
this in one call; a queue fits ids that keep arriving.

With ``--metrics-port``, it serves Prometheus metrics at ``/metrics``, counted
from the session's events (`SessionMetrics`); that needs the ``prometheus``
extra (``pip install "leadsq-async[prometheus]"``).

Run it against the emulator (``leadsq-async emulator --lead-ids leads.txt``
prints the variables to set)::

    export LSQ_HOST=http://127.0.0.1:8000 LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=...
    python examples/worker.py --leads-file leads.txt --out opportunities.jsonl --metrics-port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

import leadsq_async as lsq


@dataclass
class Tally:
    """What the workers did."""

    leads: int = 0
    opportunities: int = 0
    failed: int = 0


# --8<-- [start:metrics]
class SessionMetrics:
    """Prometheus metrics of a session, counted from its events.

    Subscribe it with ``session.events.subscribe(metrics)``. Labels are the
    endpoint's name, the status and the failure's class: never an id, which would
    make a time series per lead.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "leadsq_requests", "Requests sent, retries included.", ["endpoint"], registry=registry
        )
        self.responses = Counter(
            "leadsq_responses",
            "Answers received, by HTTP status (none: no answer came).",
            ["endpoint", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "leadsq_response_seconds",
            "Seconds from sending a request to the end of its answer.",
            ["endpoint"],
            registry=registry,
        )
        self.retries = Counter(
            "leadsq_retries",
            "Requests tried again, by why.",
            ["endpoint", "error"],
            registry=registry,
        )
        self.refusals = Counter(
            "leadsq_rate_limited",
            "Requests the server refused for the rate limit.",
            ["endpoint"],
            registry=registry,
        )
        self.quota_waits = Counter(
            "leadsq_quota_waits", "Waits for a spent quota.", ["endpoint"], registry=registry
        )
        self.pages = Counter("leadsq_pages", "Pages fetched.", ["endpoint"], registry=registry)
        self.rows = Counter(
            "leadsq_rows", "Rows on the pages fetched.", ["endpoint"], registry=registry
        )

    def __call__(self, event: lsq.Event) -> None:
        endpoint = event.endpoint.rsplit("/", 1)[-1]  # GetOpportunitiesOfLead
        if isinstance(event, lsq.RequestSent):
            self.requests.labels(endpoint).inc()
        elif isinstance(event, lsq.ResponseReceived):
            self.responses.labels(endpoint, str(event.status or "none")).inc()
            self.seconds.labels(endpoint).observe(event.seconds)
        elif isinstance(event, lsq.RetryScheduled):
            self.retries.labels(endpoint, event.error_type).inc()
        elif isinstance(event, lsq.RateLimited):
            self.refusals.labels(endpoint).inc()
        elif isinstance(event, lsq.QuotaWait):
            self.quota_waits.labels(endpoint).inc()
        elif isinstance(event, lsq.PageFetched):
            self.pages.labels(endpoint).inc()
            self.rows.labels(endpoint).inc(event.rows)


def serve_metrics(registry: CollectorRegistry, port: int) -> WSGIServer:
    """Serve ``registry`` at http://127.0.0.1:PORT/metrics from a thread (0: a free port);
    stop with the server's ``shutdown()``, then ``server_close()``."""
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server


# --8<-- [end:metrics]


async def work(session: lsq.Session, queue: asyncio.Queue[str], out: TextIO, tally: Tally) -> None:
    """Take lead ids from ``queue`` for ever, and write each lead's opportunities to ``out``."""
    while True:
        lead_id = await queue.get()
        try:
            opportunities = await session.opportunities_of_lead(lead_id).collect()
        except (lsq.LeadSquaredError, ValueError) as error:
            # One lead's failure (retries spent, unknown lead, empty id) is not the pool's.
            tally.failed += 1
            print(f"lead {lead_id!r} failed: {error}", file=sys.stderr)
        else:
            for opportunity in opportunities:
                out.write(json.dumps(lsq.unstructure(opportunity), ensure_ascii=False) + "\n")
            tally.leads += 1
            tally.opportunities += len(opportunities)
        finally:
            queue.task_done()


async def crawl_queue(
    session: lsq.Session, lead_ids: Iterable[str], out: TextIO, *, workers: int
) -> Tally:
    """Feed ``lead_ids`` to a pool of ``workers`` tasks through a queue; wait until all are done.

    Raises:
        Exception: whatever a worker raised that is not a lead's own failure (a bug).
    """
    # A bounded queue: the producer waits for the workers instead of reading ahead.
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=2 * workers)
    tally = Tally()
    pool = [asyncio.ensure_future(work(session, queue, out, tally)) for _ in range(workers)]

    async def produce() -> None:
        for lead_id in lead_ids:
            await queue.put(lead_id)
        await queue.join()

    producer = asyncio.ensure_future(produce())
    try:
        # Workers never end on their own; one that does has crashed, and would leave
        # queue.join() waiting for ever.
        done, _ = await asyncio.wait([producer, *pool], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in [producer, *pool]:
            task.cancel()
        await asyncio.gather(producer, *pool, return_exceptions=True)
    return tally


def read_ids(lines: Iterable[str]) -> Iterable[str]:
    """The ids in ``lines``, one per line, blank lines skipped."""
    return (line.strip() for line in lines if line.strip())


async def run(
    leads: TextIO, out: TextIO, workers: int | None, metrics: SessionMetrics | None = None
) -> Tally:
    """Crawl the ids in ``leads`` with the session the environment describes, counting
    into ``metrics`` if given."""
    rate_limit = lsq.RateLimit.parse(os.environ.get("LSQ_RATE_LIMIT", "25/5"))
    async with lsq.Session(
        os.environ["LSQ_ACCESS_KEY"],
        os.environ["LSQ_SECRET_KEY"],
        host=os.environ.get("LSQ_HOST", "api.leadsquared.com"),
        rate_limit=rate_limit,
    ) as session:
        if metrics is not None:
            session.events.subscribe(metrics)
        # Twice the limit's calls: enough requests waiting to keep every slot busy.
        pool_size = workers or 2 * rate_limit.calls
        return await crawl_queue(session, read_ids(leads), out, workers=pool_size)


def main(argv: Sequence[str] | None = None) -> int:
    """Crawl the lead ids of a file (or standard input); 0 if every lead was fetched, else 1."""
    parser = argparse.ArgumentParser(description="Crawl lead ids taken from a queue.")
    parser.add_argument("--leads-file", default="-", help="lead ids, one per line (- for stdin)")
    parser.add_argument("--out", default="-", help="where to write the rows (- for stdout)")
    parser.add_argument("--workers", type=int, help="worker tasks [twice the rate limit's calls]")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as resources:
        metrics = None
        if args.metrics_port is not None:
            registry = CollectorRegistry()
            metrics = SessionMetrics(registry)
            server = serve_metrics(registry, args.metrics_port)
            resources.callback(server.server_close)
            resources.callback(server.shutdown)
            print(f"metrics on http://127.0.0.1:{server.server_port}/metrics", file=sys.stderr)
        leads = sys.stdin
        if args.leads_file != "-":
            leads = resources.enter_context(open(args.leads_file, encoding="utf-8"))
        out = sys.stdout
        if args.out != "-":
            out = resources.enter_context(open(args.out, "w", encoding="utf-8"))
        tally = asyncio.run(run(leads, out, args.workers, metrics))
    print(
        f"{tally.leads} leads, {tally.opportunities} opportunities, {tally.failed} failed",
        file=sys.stderr,
    )
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
