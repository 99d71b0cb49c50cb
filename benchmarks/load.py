"""Loading into DuckDB against the crawl's own rate, side by side in one run.

One emulator, served by a process of its own (in this one, it would compete
with dlt for the interpreter), one dataset, one rate limit far faster than any
plan's, so that the load has as little time per row as it will ever get. In
turn, twice each: the crawl alone (``Session.crawl_opportunities`` with
activities, the rows counted and dropped), and the same leads through the
``leadsquared`` dlt source into a new DuckDB file (JSON Lines, as ``leadsq-async
load`` writes them), timed by dlt's own trace. The faster of each pair counts:
the machines these run on are shared. Figures:

- the crawl's rows per second, alone;
- the rows per second of dlt's extract step, which is the same crawl with
  every row handed to dlt as it comes, as a multiple of the crawl alone: 1.0
  means loading never held the crawl back;
- the whole load's rows per second (extract, then normalize and load) against
  the crawl alone: what a user waits for, the load's fixed costs included;
- how many times faster than the crawl dlt normalizes and loads the rows once
  they are fetched: the headroom before the load could become the bottleneck.

Run it with ``python -m benchmarks.load`` from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

import leadsq_async as lsq
from leadsq_async.testing import Dataset
from leadsq_async.testing._config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY

CALLS, PERIOD = 100, 1.0


@attrs.frozen
class Figures:
    """Rows and seconds of the two runs."""

    rows: int
    crawl_seconds: float
    extract_seconds: float
    load_seconds: float  # the whole run: extract, normalize and load

    @property
    def crawl_rate(self) -> float:
        """Rows per second of the crawl alone."""
        return self.rows / self.crawl_seconds

    @property
    def extract_ratio(self) -> float:
        """Rows per second of dlt's extract, as a multiple of the crawl alone."""
        return self.crawl_seconds / self.extract_seconds

    @property
    def load_ratio(self) -> float:
        """Rows per second of the whole load, as a multiple of the crawl alone."""
        return self.crawl_seconds / self.load_seconds

    @property
    def headroom(self) -> float:
        """How many times faster than the crawl dlt normalizes and loads the rows."""
        return self.crawl_seconds / (self.load_seconds - self.extract_seconds)


def workload(leads: int, seed: int = 11) -> Dataset:
    """``leads`` leads with 0 to 12 opportunities each, and 0 to 4 activities each of those."""
    return Dataset.generate(seed, thousands=0, hundreds=0, other_leads=leads)


def small_leads(data: Dataset) -> list[str]:
    """Every lead but the shaped ones (whose sizes the workload sets to nothing)."""
    shaped = set(data.leads_by_shape.values())
    return [lead for lead in data.opportunities if lead not in shaped]


async def crawl_alone(url: str, leads: list[str]) -> tuple[int, float]:
    """Rows fetched and seconds taken by the crawl with activities, rows dropped."""
    async with lsq.Session(
        DEFAULT_ACCESS_KEY,
        DEFAULT_SECRET_KEY,
        host=url,
        rate_limit=lsq.RateLimit(CALLS, PERIOD),
    ) as session:
        started = time.perf_counter()
        rows = 0
        async for result in session.crawl_opportunities(leads, with_activities=True):
            if result.error is not None:
                raise result.error
            rows += len(result.records) + sum(map(len, result.activities.values()))
        return rows, time.perf_counter() - started


def crawl_and_load(url: str, leads: list[str], directory: Path) -> tuple[int, float, float]:
    """Rows loaded, seconds of dlt's extract step, and seconds of the whole run."""
    import dlt

    from leadsq_async.dlt import leadsquared

    pipeline = dlt.pipeline(
        pipeline_name="benchmark",
        destination=dlt.destinations.duckdb(str(directory / "benchmark.duckdb")),
        dataset_name="leadsquared_data",
        pipelines_dir=str(directory / "pipelines"),
    )
    source = leadsquared(
        leads,
        access_key=DEFAULT_ACCESS_KEY,
        secret_key=DEFAULT_SECRET_KEY,
        host=url,
        rate_limit=lsq.RateLimit(CALLS, PERIOD),
    )
    started = time.perf_counter()
    pipeline.run(source, loader_file_format="jsonl")  # as leadsq-async load does for DuckDB
    whole = time.perf_counter() - started
    trace = pipeline.last_trace
    assert trace is not None
    extract = next(step for step in trace.steps if step.step == "extract")
    assert extract.finished_at is not None
    extract_seconds = (extract.finished_at - extract.started_at).total_seconds()
    with pipeline.sql_client() as client:
        counted = client.execute_sql(
            "SELECT (SELECT COUNT(*) FROM opportunities) + (SELECT COUNT(*) FROM activities)"
        )
    assert counted is not None
    return int(counted[0][0]), extract_seconds, whole


@contextlib.contextmanager
def emulator_process(data: Dataset, directory: Path) -> Iterator[str]:
    """``leadsq-async emulator`` serving ``data`` at the benchmark's rate limit; its URL."""
    path = directory / "data.json"
    data.dump(path)
    command = [sys.executable, "-m", "leadsq_async.cli", "emulator", "--port", "0"]
    command += ["--data", str(path), "--rate-limit", f"{CALLS}/{PERIOD:g}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "LSQ_HOST=" in line:
                yield line.split("LSQ_HOST=", 1)[1].split()[0]
                return
        raise RuntimeError("the emulator did not start")
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def run(leads: int = 200, repeats: int = 2) -> Figures:
    """Both runs against one emulator, ``repeats`` times each; print and return the figures."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    data = workload(leads)
    ids = small_leads(data)
    crawls: list[tuple[int, float]] = []
    loads: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory() as name, emulator_process(data, Path(name)) as url:
        for repeat in range(repeats):
            crawls.append(asyncio.run(crawl_alone(url, ids)))
            loads.append(crawl_and_load(url, ids, Path(name) / f"load-{repeat}"))
    rows = crawls[0][0]
    if any(fetched != rows for fetched, _ in crawls) or any(n != rows for n, _, _ in loads):
        raise RuntimeError(f"the runs did not all fetch the {rows} rows: {crawls}, {loads}")
    _, extract_seconds, load_seconds = min(loads, key=lambda load: load[2])
    figures = Figures(rows, min(seconds for _, seconds in crawls), extract_seconds, load_seconds)
    print(
        f"Loading into DuckDB: {len(ids)} leads, {rows} rows, "
        f"rate limit {CALLS} calls per {PERIOD:g} s"
    )
    print(f"  crawl alone: {figures.crawl_rate:.0f} rows/s")
    print(f"  crawl inside the load (dlt extract) / crawl alone: {figures.extract_ratio:.3f}")
    print(f"  whole load (extract, normalize, load) / crawl alone: {figures.load_ratio:.3f}")
    print(f"  dlt normalize and load / crawl alone: {figures.headroom:.1f}x faster")
    return figures


if __name__ == "__main__":
    run()
