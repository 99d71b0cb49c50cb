"""``leadsq-async demo``: crawl the built-in emulator, served in this process, to see the
whole thing work without an account. It needs uvicorn (in the ``cli`` extra).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import click

from leadsq_async import RateLimit, Session
from leadsq_async.journal import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    ALL_FILES,
    OPPORTUNITIES,
    CrawlDirectory,
    CrawlError,
    CrawlSettings,
    DirectoryInUse,
    dump_row,
)
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    EmulatorServer,
    RunningEmulator,
)

from ._counts import CrawlCounts, plural
from ._display import progress_display
from ._options import parse_rate_limit
from ._progress import Display
from ._run import (
    INTERRUPTED_EXIT_CODE,
    CommandFailed,
    Interrupted,
    crawl_into,
    run_interruptibly,
)

__all__ = ["demo"]

#: The largest page the emulator serves by default, and so what one request fetches.
_PAGE = 1000

#: rich draws the done part of a running bar in its "bar.complete" colour, a red that reads
#: as an error; the demo draws it in the colour of a finished bar instead.


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
    config = EmulatorConfig(rate_limits=(rate_limit,))
    app = EmulatorApp(data, config)
    directory = Path(tempfile.mkdtemp(prefix="leadsq-async-demo-")) if out is None else out
    try:
        output = CrawlDirectory.start(
            directory, CrawlSettings(with_activities=True, opportunity_type=None), overwrite=False
        )
    except DirectoryInUse as error:
        raise CommandFailed(str(error)) from None
    except CrawlError:
        raise CommandFailed(f"{directory} holds a crawl already: choose another --out") from None
    counts = CrawlCounts(total=len(lead_ids))
    display = _demo_display(progress)
    click.echo(
        f"Crawling {plural(len(lead_ids), 'lead')} of the built-in emulator, "
        f"with {'its' if len(lead_ids) == 1 else 'their'} activities, at {rate_limit}:",
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
        raise CommandFailed(
            f"{plural(counts.failed, 'lead')} failed: see {directory / 'failed.jsonl'}"
        )
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
        fit = "fits" if result.requests == 1 else "fit"
        pace = f"{plural(result.requests, 'request')} {fit} in one window of {rate_limit}"
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
            f"  {', '.join(ALL_FILES)}",
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
