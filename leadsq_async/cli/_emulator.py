"""``leadsq-async emulator`` (serve the built-in emulator) and ``leadsq-async demo``.

Both need the ``testing`` part of the package and uvicorn (in the ``cli`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import click

from leadsq_async import RateLimit, Session
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    EmulatorServer,
    RunningEmulator,
)
from leadsq_async.testing._config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FAULT_KINDS

from ._checkpoint import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    OPPORTUNITIES,
    CrawlDirectory,
    CrawlError,
    CrawlSettings,
    dump_row,
)
from ._display import progress_display
from ._options import parse_rate_limit
from ._progress import CrawlCounts, Display, plural
from ._run import (
    INTERRUPTED_EXIT_CODE,
    CommandFailed,
    Interrupted,
    crawl_into,
    run_interruptibly,
)

__all__ = ["demo", "emulator"]

#: The largest page the emulator serves by default, and so what one request fetches.
_PAGE = 1000


def _fault_kinds(_ctx: click.Context, _param: click.Parameter, value: str) -> frozenset[str]:
    kinds = frozenset(kind.strip() for kind in value.split(",") if kind.strip())
    unknown = kinds - FAULT_KINDS
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(sorted(unknown))}; choose among {', '.join(sorted(FAULT_KINDS))}"
        )
    return kinds


#: The generated dataset's sizes: Dataset.generate's keyword, its least value, and what it sets.
_SIZES = (
    (
        "page_size",
        1,
        "Sizes of the generated leads: one has exactly this many opportunities, one has one more.",
    ),
    ("thousands", 0, "The opportunities of the generated lead with the most."),
    (
        "activity_page_size",
        1,
        "One generated opportunity has exactly this many activities, one has one more.",
    ),
    ("hundreds", 0, "The activities of the generated opportunity with the most."),
    ("other_leads", 0, "How many more generated leads, with 0 to 12 opportunities each."),
)


def _size_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One option per size in `_SIZES`, defaulting to Dataset.generate's, passed by keyword."""
    defaults = inspect.signature(Dataset.generate).parameters
    for name, least, text in reversed(_SIZES):
        command = click.option(
            f"--{name.replace('_', '-')}",
            name,
            metavar="N",
            type=click.IntRange(min=least),
            default=defaults[name].default,
            help=text,
        )(command)
    return command


@click.command(context_settings={"show_default": True})
@click.option(
    "--host",
    metavar="ADDRESS",
    default="127.0.0.1",
    help="The address to listen on (keep it on loopback: clients send it the keys in plain http).",
)
@click.option(
    "--port",
    metavar="PORT",
    type=click.IntRange(0, 65535),
    default=8000,
    help="The port to listen on; 0 picks a free one.",
)
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False, exists=True),
    metavar="PATH",
    help='Serve the rows of this JSON file, {"opportunities": {lead id: [row, ...]}, '
    '"activities": {opportunity id: [row, ...]}}, instead of generated ones.',
)
@click.option(
    "--seed",
    type=int,
    default=0,
    metavar="N",
    help="The seed of the generated rows: the same seed and sizes give the same rows.",
)
@_size_options
@click.option(
    "--rate-limit",
    callback=parse_rate_limit,
    metavar="CALLS/SECONDS",
    default="25/5",
    help="Accept at most CALLS requests in any SECONDS seconds; refuse the others.",
)
@click.option(
    "--rate-limit-status",
    type=click.Choice(["429", "200"]),
    default="429",
    help="The HTTP status of a rate-limit answer (LeadSquared was seen to send both).",
)
@click.option(
    "--fault-rate",
    metavar="SHARE",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    help="The share of accepted requests answered with a transient fault.",
)
@click.option(
    "--fault-kinds",
    metavar="KINDS",
    default=",".join(sorted(FAULT_KINDS)),
    callback=_fault_kinds,
    help="The faults to draw from, comma-separated: 500 (bare), 502 and 503 (HTML pages), "
    "drop (no answer), truncate (half a body), slow (a late answer).",
)
@click.option(
    "--fault-seed",
    type=int,
    default=0,
    metavar="N",
    help="Seeds the fault draws.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Simulated network round trip of every request.",
)
@click.option(
    "--jitter",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Up to this much more round trip, drawn per request.",
)
@click.option(
    "--page-size-cap",
    metavar="N",
    type=click.IntRange(min=1),
    default=1000,
    help="The largest page served.",
)
@click.option(
    "--page-size-cap-mode",
    type=click.Choice(["clamp", "refuse"]),
    default="clamp",
    help="For a larger page size: serve at most the cap, or refuse with HTTP 500.",
)
@click.option(
    "--access-key",
    metavar="KEY",
    default=DEFAULT_ACCESS_KEY,
    help="The access key the emulator accepts.",
)
@click.option(
    "--secret-key",
    metavar="KEY",
    default=DEFAULT_SECRET_KEY,
    help="The secret key the emulator accepts (a demo key: it is printed at start).",
)
@click.option(
    "--lead-ids",
    "lead_ids_file",
    type=click.Path(dir_okay=False, writable=True),
    metavar="PATH",
    help="Write the id of every lead served to PATH, one per line, ready for "
    "`leadsq-async crawl --leads-file PATH`.",
)
def emulator(
    host: str,
    port: int,
    data_file: str | None,
    seed: int,
    rate_limit: RateLimit,
    rate_limit_status: str,
    fault_rate: float,
    fault_kinds: frozenset[str],
    fault_seed: int,
    latency: float,
    jitter: float,
    page_size_cap: int,
    page_size_cap_mode: str,
    access_key: str,
    secret_key: str,
    lead_ids_file: str | None,
    **sizes: int,
) -> int:
    """Serve the built-in LeadSquared emulator until Ctrl-C.

    It answers GetOpportunitiesOfLead and GetActivitiesOfOpportunity like the
    real API, with a strict rate limit, from generated rows (or your own) and
    with the faults you ask for. It prints its URL and keys: point
    LSQ_HOST, LSQ_ACCESS_KEY and LSQ_SECRET_KEY at it.
    """
    data = Dataset.generate(seed, **sizes) if data_file is None else Dataset.load(data_file)
    config = EmulatorConfig(
        access_key=access_key,
        secret_key=secret_key,
        rate_limit_calls=rate_limit.calls,
        rate_limit_period=rate_limit.period,
        rate_limit_status=429 if rate_limit_status == "429" else 200,
        page_size_cap=page_size_cap,
        page_size_cap_mode="clamp" if page_size_cap_mode == "clamp" else "refuse",
        fault_rate=fault_rate,
        fault_kinds=fault_kinds,
        fault_seed=fault_seed,
        latency=latency,
        jitter=jitter,
    )
    if lead_ids_file is not None:
        Path(lead_ids_file).write_text("".join(f"{lead}\n" for lead in data.opportunities))
    server = EmulatorServer(EmulatorApp(data, config), host=host, port=port)

    def ready(running: RunningEmulator) -> None:
        click.echo(_banner(running, data, config, lead_ids_file))

    # uvicorn stops on Ctrl-C, and raises it again once it is done.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(on_ready=ready))
    click.echo("emulator stopped", err=True)
    return 0


def _banner(
    running: RunningEmulator, data: Dataset, config: EmulatorConfig, lead_ids_file: str | None
) -> str:
    limit = RateLimit(config.rate_limit_calls, config.rate_limit_period)
    opportunities = sum(len(rows) for rows in data.opportunities.values())
    activities = sum(len(rows) for rows in data.activities.values())
    some_lead = next(
        (lead for lead, rows in data.opportunities.items() if 0 < len(rows) <= 20), None
    )
    lines = [
        f"LeadSquared emulator listening on {running.url}",
        f"  {len(data.opportunities)} leads, {opportunities} opportunities, "
        f"{activities} activities; rate limit {limit}",
        f"  access key: {config.access_key}",
        f"  secret key: {config.secret_key}",
        "Point the command (or your code) at it:",
        f"  export LSQ_HOST={running.url} LSQ_ACCESS_KEY={config.access_key} "
        f"LSQ_SECRET_KEY={config.secret_key} LSQ_RATE_LIMIT={limit.calls}/{limit.period:g}",
    ]
    if some_lead is not None:
        lines.append(f"  leadsq-async opportunities {some_lead}")
    if lead_ids_file is not None:
        lines.append(f"  leadsq-async crawl --leads-file {lead_ids_file} --out crawl-output")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


# The demo.


def requests_for(data: Dataset, lead_id: str) -> int:
    """The fewest requests a crawl with activities needs for one lead."""
    rows = data.opportunities[lead_id]
    requests = max(1, math.ceil(len(rows) / _PAGE))
    for row in rows:
        activities = data.activities.get(str(row.get("OpportunityId")), [])
        requests += max(1, math.ceil(len(activities) / _PAGE))
    return requests


def pick_leads(data: Dataset, budget: int, most: int | None) -> list[str]:
    """As many leads as a crawl can do in ``budget`` requests (at most ``most``).

    The cheapest leads are chosen, so that many leads show on the progress bar;
    they are returned in the dataset's order, so that cheap and costly ones mix.
    """
    costs = {lead_id: requests_for(data, lead_id) for lead_id in data.opportunities}
    chosen: set[str] = set()
    for lead_id in sorted(costs, key=costs.__getitem__):
        if (most is not None and len(chosen) >= most) or costs[lead_id] > budget:
            break
        chosen.add(lead_id)
        budget -= costs[lead_id]
    return [lead_id for lead_id in data.opportunities if lead_id in chosen]


@attrs.frozen
class DemoResult:
    """What the demo crawl did."""

    counts: CrawlCounts
    requests: int
    elapsed: float
    rejections: int


@click.command()
@click.option(
    "--leads",
    type=click.IntRange(min=1),
    metavar="N",
    help="Crawl at most N leads [default: as many as the rate limit lets the crawl "
    "finish in about --seconds].",
)
@click.option(
    "--seconds",
    metavar="SECONDS",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="About how long the crawl should last at the rate limit.",
)
@click.option(
    "--rate-limit",
    callback=parse_rate_limit,
    metavar="CALLS/SECONDS",
    default="25/5",
    show_default=True,
    help="The limit the emulator enforces and the crawl keeps to.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    metavar="N",
    help="The seed of the emulator's rows.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write the crawl to DIR [default: a new temporary directory, kept].",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show the progress bar even when stderr is not a terminal, or show none "
    "[default: a bar on a terminal, else a line every few seconds].",
)
def demo(
    leads: int | None,
    seconds: float,
    rate_limit: RateLimit,
    seed: int,
    out: Path | None,
    progress: bool | None,
) -> int:
    """Crawl the built-in emulator, with activities, to see the whole thing work.

    No account needed: the emulator runs in this process on a loopback port
    and enforces a strict rate limit, as LeadSquared does. The crawl keeps to
    it, shows its progress, then prints how long it took against the fastest
    the rate limit allows, and checks every row it wrote against the data.
    """
    data = Dataset.generate(seed)
    budget = int(seconds / rate_limit.period) * rate_limit.calls + 1
    lead_ids = pick_leads(data, budget, leads)
    config = EmulatorConfig(rate_limit_calls=rate_limit.calls, rate_limit_period=rate_limit.period)
    app = EmulatorApp(data, config)
    directory = Path(tempfile.mkdtemp(prefix="leadsq-async-demo-")) if out is None else out
    try:
        output = CrawlDirectory.start(
            directory, CrawlSettings(with_activities=True, opportunity_type=None), overwrite=False
        )
    except CrawlError:
        raise CommandFailed(f"{directory} holds a crawl already: choose another --out") from None
    counts = CrawlCounts(total=len(lead_ids))
    display = _demo_display(progress)
    click.echo(
        f"Crawling {len(lead_ids)} leads of the built-in emulator, with their activities, "
        f"at {rate_limit}:",
        err=True,
    )
    try:
        with EmulatorServer(app) as running:
            result = run_interruptibly(
                _crawl_demo(running, lead_ids, output, counts, display, rate_limit)
            )
    except Interrupted:
        raise CommandFailed(
            f"interrupted: the files so far are in {directory}", exit_code=INTERRUPTED_EXIT_CODE
        ) from None
    finally:
        output.write_failed_report()
        output.close()
    click.echo(_demo_summary(result, rate_limit, directory, data, lead_ids))
    if counts.failed:
        raise CommandFailed(f"{counts.failed} leads failed: see {directory / 'failed.jsonl'}")
    return 0


def _demo_display(progress: bool | None) -> Display:
    return progress_display(force=progress, prefix="  ")


async def _crawl_demo(
    running: RunningEmulator,
    lead_ids: list[str],
    output: CrawlDirectory,
    counts: CrawlCounts,
    display: Display,
    rate_limit: RateLimit,
) -> DemoResult:
    started = time.monotonic()
    async with Session(
        running.access_key, running.secret_key, host=running.url, rate_limit=rate_limit
    ) as session:
        await crawl_into(
            session, output, lead_ids, counts, display, concurrency=None, scrub=lambda text: text
        )
        requests = session.stats.requests
    return DemoResult(
        counts=counts,
        requests=requests,
        elapsed=time.monotonic() - started,
        rejections=running.stats.rate_limited,
    )


def _demo_summary(
    result: DemoResult,
    rate_limit: RateLimit,
    directory: Path,
    data: Dataset,
    lead_ids: list[str],
) -> str:
    counts = result.counts
    optimum = rate_limit.least_time(result.requests)
    if optimum > 0:
        ratio = result.elapsed / optimum
        pace = f"the fastest {rate_limit} allows is {optimum:.1f} s ({ratio:.2f}x)"
    else:
        pace = f"{result.requests} requests fit in one window of {rate_limit}"
    matches = "yes" if _matches(directory, data, lead_ids) else "NO"
    return "\n".join(
        [
            f"Crawled {plural(counts.crawled, 'lead')} in {result.elapsed:.1f} s: "
            f"{plural(counts.opportunities, 'opportunity', 'opportunities')}, "
            f"{plural(counts.activities, 'activity', 'activities')}, "
            f"{plural(result.requests, 'request')}.",
            f"  Rate-limit rejections drawn from the emulator: {result.rejections}.",
            f"  Time: {result.elapsed:.1f} s; {pace}.",
            f"  Every row written matches the emulator's data: {matches}.",
            f"Files in {directory}:",
            f"  {OPPORTUNITIES}, {ACTIVITIES}, {ACTIVITY_INDEX}, checkpoint.jsonl",
            "Next: `leadsq-async emulator` serves the emulator for your own code, and "
            "`leadsq-async crawl --help` shows how to crawl your account.",
        ]
    )


def _lines(path: Path) -> Counter[bytes]:
    with open(path, "rb") as file:
        return Counter(file)


def _rows(rows: Iterable[dict[str, Any]]) -> Counter[bytes]:
    return Counter(dump_row(row) for row in rows)


def _matches(directory: Path, data: Dataset, lead_ids: list[str]) -> bool:
    """Whether the files hold exactly the rows the emulator has for ``lead_ids``."""
    opportunities = [row for lead in lead_ids for row in data.opportunities[lead]]
    activities = [
        row
        for opportunity in opportunities
        for row in data.activities.get(str(opportunity.get("OpportunityId")), [])
    ]
    index_ok = all(
        Counter(entry["ActivityIds"])
        == Counter(row.get("ProspectActivityId") for row in data.activities[entry["OpportunityId"]])
        for entry in map(json.loads, _lines(directory / ACTIVITY_INDEX).elements())
    )
    return (
        index_ok
        and _lines(directory / OPPORTUNITIES) == _rows(opportunities)
        and _lines(directory / ACTIVITIES) == _rows(activities)
    )
