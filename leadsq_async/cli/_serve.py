"""``leadsq-async emulator``: serve the built-in emulator until Ctrl-C.

It needs uvicorn (in the ``cli`` extra), imported only when the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import ipaddress
import socket
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

from ._run import CommandFailed, error_line

__all__ = ["emulator"]


def _rate_limits(
    _ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[RateLimit, ...]:
    limits = []
    for value in values:
        try:
            limits.append(RateLimit.parse(value))
        except (TypeError, ValueError) as error:
            raise click.BadParameter(str(error), param=param) from None
    return tuple(limits)


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
    "rate_limits",
    multiple=True,
    callback=_rate_limits,
    metavar="CALLS/PERIOD",
    default=("25/5",),
    help="Accept at most CALLS requests in any PERIOD seconds; refuse the others. Repeat it "
    "for several limits at once, such as a daily quota: --rate-limit 10/5 "
    "--rate-limit 10000/86400.",
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
    rate_limits: tuple[RateLimit, ...],
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
    real API, with strict rate limits, from generated rows (or your own) and
    with the faults you ask for. It prints its URL and keys: point
    LSQ_HOST, LSQ_ACCESS_KEY and LSQ_SECRET_KEY at it.
    """
    data = Dataset.generate(seed, **sizes) if data_file is None else _load(data_file)
    config = EmulatorConfig(
        access_key=access_key,
        secret_key=secret_key,
        rate_limits=rate_limits,
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
    served: list[RunningEmulator] = []

    def ready(running: RunningEmulator) -> None:
        served.append(running)
        click.echo(_banner(running, host, data, config, lead_ids_file))

    # uvicorn stops on Ctrl-C, and raises it again once it is done.
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(server.serve(on_ready=ready))
    except OSError as error:
        if served:
            raise
        raise _cannot_listen(host, port, error) from None
    # What it served, so that a reader can check a run against it.
    lines = served[0].stats.summary().splitlines() if served else []
    click.echo("\n  ".join(["emulator stopped; it served:", *lines]), err=True)
    return 0


def _load(path: str) -> Dataset:
    """The dataset of the ``--data`` file; a usage error naming the file if it is no dataset."""
    try:
        return Dataset.load(path)
    except ValueError as error:  # its message names the file
        raise click.BadParameter(str(error), param_hint="'--data'") from None
    except OSError as error:
        raise click.BadParameter(error_line(error, str), param_hint="'--data'") from None


def _cannot_listen(host: str, port: int, error: OSError) -> click.BadParameter | CommandFailed:
    """What to tell when the server cannot listen on ``host``:``port``: a usage error for a
    host name that does not resolve, else one line naming the port."""
    if isinstance(error, socket.gaierror):
        return click.BadParameter(
            f"cannot listen on {host!r}: {error.strerror or error}", param_hint="'--host'"
        )
    where = f"port {port} on {host}"
    if error.errno == errno.EADDRINUSE:
        return CommandFailed(f"{where} is in use: choose another --port (0 picks a free one)")
    return CommandFailed(f"cannot listen on {where}: {error_line(error, str)}")


def _all_interfaces(host: str) -> bool:
    """Whether ``host`` is a wildcard address, which listens on every interface."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _limit_text(limit: RateLimit) -> str:
    """``25/5``: the text --rate-limit reads back."""
    period = int(limit.period) if limit.period.is_integer() else limit.period
    return f"{limit.calls}/{period}"


def _banner(
    running: RunningEmulator,
    host: str,
    data: Dataset,
    config: EmulatorConfig,
    lead_ids_file: str | None,
) -> str:
    limits = config.rate_limits
    opportunities = sum(len(rows) for rows in data.opportunities.values())
    activities = sum(len(rows) for rows in data.activities.values())
    some_lead = next(
        (lead for lead, rows in data.opportunities.items() if 0 < len(rows) <= 20), None
    )
    if _all_interfaces(host):
        port = running.url.rsplit(":", 1)[1]
        where = [
            f"LeadSquared emulator listening on all interfaces ({host or '*'}), port {port}; "
            f"on this machine: {running.url}",
            "  From another machine, use this machine's address instead: the keys then cross "
            "the network in plain http.",
        ]
    else:
        where = [f"LeadSquared emulator listening on {running.url}"]
    shortest = min(limits, key=lambda limit: limit.period)
    lines = [
        *where,
        f"  {len(data.opportunities)} leads, {opportunities} opportunities, "
        f"{activities} activities; rate {'limits' if len(limits) > 1 else 'limit'} "
        + ", ".join(map(str, limits)),
        f"  access key: {config.access_key}",
        f"  secret key: {config.secret_key}",
        "Point the command (or your code) at it:",
        f"  export LSQ_HOST={running.url} LSQ_ACCESS_KEY={config.access_key} "
        f"LSQ_SECRET_KEY={config.secret_key} LSQ_RATE_LIMIT={_limit_text(shortest)}",
    ]
    if some_lead is not None:
        lines.append(f"  leadsq-async opportunities {some_lead}")
    if lead_ids_file is not None:
        lines.append(f"  leadsq-async crawl --leads-file {lead_ids_file} --out crawl-output")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)
