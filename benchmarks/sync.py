"""The account-wide sync against the per-lead load, in calls, and each sync's time at a rate
limit against the safe optimum for its calls.

One emulated account of some 2,000 leads, 12,000 opportunities in 3 types and 28,000
activities, served from a thread. In turn:

- the calls of the per-lead crawl with activities (what ``load --with-activities`` asks):
  the crawl itself, run at a fast limit, its requests counted by the emulator;
- a first ``leadsquared_account`` sync into DuckDB, then scripted changes (1% of rows
  modified, 0.5% added, 0.1% deleted), then a second sync, both at ``CALLS`` per
  ``PERIOD`` seconds and without reconcile: their calls, and their time against the safe
  optimum, ``floor((R - 1) / CALLS) * (PERIOD + round trip) + round trip``;
- a sync with reconcile right after: its calls less those of a sync without it, reconcile's
  calls on their own;
- the first sync's time against the safe optimum at the median round trip the session
  measured in it, beside the figure at 5 ms: a slot is held from its answer, so each of
  the 5 waves of 25 calls adds a round trip, and the emulator's answers of up to 5,000 rows
  (served from a thread of this process, on a shared machine) take far longer than 5 ms;
- the second sync apart. Its calls are one per walk (the leads feed, the activities feed,
  each type's search: checked), all in one period and none waiting on another, so they go
  at once and their optimum is the longest answer, as the session measured it
  (``ResponseReceived.seconds``: the emulator's own time to answer included). Its time at
  the rate limit is the span of its calls, from the first request to the last answer.
  The whole extract is longer by dlt's start and finish and the rows' typing; beside it,
  dlt alone extracting the same rows (read back from the warehouse) into a pipeline of its
  own, with the same tables, keys and cursors, and no call at all: the part of the whole
  no client inside dlt can save.

Run it with ``python -m benchmarks sync`` (or ``python -m benchmarks.sync``) from the
repository root.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import dlt

import leadsq_async as lsq
from leadsq_async.dlt import leadsquared_account
from leadsq_async.testing import Dataset, EmulatorApp, EmulatorConfig, serve_in_thread

CALLS, PERIOD = 25, 5.0
FAST = "5000/1"
TYPES = ["12000", "12001", "12002"]
ROUND_TRIP = 0.005
# The tables, by their primary key's column, as dlt names them.
KEYS = {
    "leads": "prospect_id",
    "opportunities": "opportunity_id",
    "activities": "prospect_activity_id",
}
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


def safe_optimum(requests: int, round_trip: float = ROUND_TRIP) -> float:
    """The earliest a client that counts each slot from the answer ends ``requests`` calls."""
    return ((requests - 1) // CALLS) * (PERIOD + round_trip) + round_trip


class _Calls:
    """A sync's progress that times its calls: when the first was sent, when the last was
    answered, and each answer's round trip as the session measured it."""

    def __init__(self) -> None:
        self.first_sent: float | None = None
        self.last_answer = 0.0
        self.trips: list[float] = []

    def sync_started(self, session: lsq.Session, work: Any) -> None:
        def hear(event: lsq.Event) -> None:
            if isinstance(event, lsq.RequestSent) and self.first_sent is None:
                self.first_sent = time.monotonic()
            elif isinstance(event, lsq.ResponseReceived):
                self.last_answer = time.monotonic()
                self.trips.append(event.seconds)

        session.events.subscribe(hear)

    @property
    def span(self) -> float:
        return self.last_answer - (self.first_sent or self.last_answer)


def _dlt_alone(pipeline: dlt.Pipeline, directory: Path) -> float:
    """Seconds dlt alone takes to extract the rows ``pipeline`` loaded last, read back from
    its warehouse, with the same tables, primary keys, merge and cursors, and no call."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with pipeline.sql_client() as client:
        loads = client.make_qualified_table_name("_dlt_loads")
        with client.execute_query(f"SELECT max(load_id) FROM {loads}") as cursor:
            load_id = cursor.fetchall()[0][0]
        for table in KEYS:
            name = client.make_qualified_table_name(table)
            with client.execute_query(
                f"SELECT * FROM {name} WHERE _dlt_load_id = %s", load_id
            ) as cursor:
                columns = [column[0] for column in cursor.description]
                rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            tables[table] = [
                {k: v for k, v in row.items() if not k.startswith("_dlt")} for row in rows
            ]

    @dlt.source(name="alone", max_table_nesting=0)
    def alone() -> list[Any]:
        def resource(table: str, key: str) -> Any:
            def rows(
                modified: Any = dlt.sources.incremental("modified_on", initial_value=EPOCH),  # noqa: B008
            ) -> Any:
                yield tables[table]

            return dlt.resource(rows, name=table, primary_key=key, write_disposition="merge")

        return [resource(table, key) for table, key in KEYS.items()]

    def extract(name: str) -> float:
        bare = dlt.pipeline(
            name,
            destination=dlt.destinations.duckdb(str(directory / f"{name}.duckdb")),
            dataset_name="account",
            pipelines_dir=str(directory / name),
        )
        started = time.monotonic()
        bare.extract(alone())
        return time.monotonic() - started

    extract("bench_sync_warm")  # dlt's first extract of a source loads what it needs
    return extract("bench_sync_alone")


def _changes(app: EmulatorApp) -> None:
    account = app.account
    chance = random.Random(19)
    leads = [row["ProspectID"] for row in account.leads()]
    opportunities = [row["ProspectActivityId"] for row in account.opportunities()]
    activities = [row["ProspectActivityId"] for row in account.activities()]
    rows = len(leads) + len(opportunities) + len(activities)
    owners = sorted({row["RelatedProspectId"] for row in account.opportunities()})
    doomed = set(chance.sample(owners, 2))
    for lead in doomed:
        account.delete_lead(lead)
    alive = [lead for lead in leads if lead not in doomed]
    live_opportunities = {row["ProspectActivityId"] for row in account.opportunities()}
    live_activities = {row["ProspectActivityId"] for row in account.activities()}
    opportunities = [o for o in opportunities if o in live_opportunities]
    activities = [a for a in activities if a in live_activities]
    for number in range(rows // 100):
        if number % 3 == 0:
            account.modify_lead(chance.choice(alive), FirstName=f"Changed {number}")
        elif number % 3 == 1:
            account.modify_opportunity(chance.choice(opportunities), Status=f"Won {number}")
        else:
            account.modify_activity(chance.choice(activities), ActivityEvent_Note=f"{number}")
    for number in range(rows // 200):
        if number % 3 == 0:
            account.add_lead()
        elif number % 3 == 1:
            account.add_opportunity(chance.choice(owners[:50]), TYPES[number % 3])
        else:
            account.add_activity(chance.choice(alive))
    time.sleep(1.05 - time.time() % 1)


async def _per_lead_calls(url: str, app: EmulatorApp) -> int:
    before = app.stats.total
    async with lsq.Session(
        app.config.access_key, app.config.secret_key, host=url, rate_limit=lsq.RateLimit(5000, 1)
    ) as session:
        leads = [row["ProspectID"] for row in app.account.leads()]
        async with session.crawl_opportunities(leads, with_activities=True) as results:
            async for _ in results:
                pass
    return app.stats.total - before


def run() -> dict[str, Any]:
    data = Dataset.generate(
        seed=18, thousands=100, hundreds=100, other_leads=1990, opportunity_types=3
    )
    app = EmulatorApp(data, EmulatorConfig(rate_limits=[FAST]))
    oldest = min(
        dt.datetime.strptime(row["ModifiedOn"], "%Y-%m-%d %H:%M:%S")
        for row in app.account.leads() + app.account.activities() + app.account.opportunities()
    ).replace(tzinfo=dt.timezone.utc) - dt.timedelta(days=1)
    figures: dict[str, Any] = {}
    with serve_in_thread(app) as emulator, tempfile.TemporaryDirectory() as directory:
        os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
        pipeline = dlt.pipeline(
            "bench_sync",
            destination=dlt.destinations.duckdb(str(Path(directory) / "sync.duckdb")),
            dataset_name="account",
            pipelines_dir=str(Path(directory) / "pipelines"),
        )

        def sync(rate: str, **options: Any) -> tuple[int, float, _Calls]:
            calls = _Calls()
            source = leadsquared_account(
                access_key=emulator.access_key,
                secret_key=emulator.secret_key,
                host=emulator.url,
                rate_limit=rate,
                opportunity_types=TYPES,
                start_date=oldest,
                lag=dt.timedelta(0),
                index_lag=dt.timedelta(0),
                progress=calls,
                **options,
            )
            before, started = app.stats.total, time.monotonic()
            pipeline.extract(source)
            seconds = time.monotonic() - started
            pipeline.normalize()
            pipeline.load()
            return app.stats.total - before, seconds, calls

        figures["per-lead load calls"] = asyncio.run(_per_lead_calls(emulator.url, app))
        time.sleep(1.05 - time.time() % 1)
        app.config.rate_limits = (lsq.RateLimit(CALLS, PERIOD),)
        rate = f"{CALLS}/{PERIOD}"
        first, first_seconds, first_calls = sync(rate)
        _changes(app)
        second, second_seconds, second_calls = sync(rate)
        alone = _dlt_alone(pipeline, Path(directory))
        app.config.rate_limits = (lsq.RateLimit(5000, 1),)
        time.sleep(1.05 - time.time() % 1)
        plain, *_ = sync(FAST)
        time.sleep(1.05 - time.time() % 1)
        with_reconcile, *_ = sync(FAST, reconcile=True)
    walks = 2 + len(TYPES)
    if second != walks:
        raise RuntimeError(f"the second sync asked {second} calls, not one per walk ({walks})")
    per_lead = figures["per-lead load calls"]
    first_trip = statistics.median(first_calls.trips)
    longest = max(second_calls.trips)
    figures.update(
        {
            "first sync calls": first,
            "second sync calls": second,
            "first: times fewer than per-lead": per_lead / first,
            "second: times fewer than per-lead": per_lead / second,
            "reconcile calls": with_reconcile - plain,
            f"first sync time / safe optimum at {CALLS}/{PERIOD:g} s": first_seconds
            / safe_optimum(first),
            f"first sync time / safe optimum at its median round trip ({first_trip:.3f} s)": (
                first_seconds / safe_optimum(first, first_trip)
            ),
            "second sync time at the rate limit (its calls' span) / safe optimum "
            f"(its longest answer, {longest:.3f} s)": (second_calls.span / longest),
            "second sync whole extract / safe optimum (its longest answer)": second_seconds
            / longest,
            "second sync whole extract, of it dlt alone extracting the same rows": alone
            / second_seconds,
            f"second sync whole extract / one {ROUND_TRIP * 1000:g} ms round trip": (
                second_seconds / safe_optimum(second)
            ),
        }
    )
    return figures


def describe(figures: dict[str, Any]) -> str:
    return "\n".join(
        f"  {name}: {value:.2f}" if isinstance(value, float) else f"  {name}: {value:,}"
        for name, value in figures.items()
    )


if __name__ == "__main__":
    print(describe(run()))
