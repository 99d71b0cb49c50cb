"""``leadsq-async emulator``: serve the built-in emulator until Ctrl-C.

It needs uvicorn (in the ``cli`` extra), imported only when the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from leadsq_async import RateLimit
from leadsq_async.testing import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    FAULT_KINDS,
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    EmulatorServer,
    RunningEmulator,
)

from ._options import parse_rate_limit

__all__ = ["emulator"]


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
