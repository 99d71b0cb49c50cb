"""The ``leadsq-async`` command group: it registers each command group's module and runs."""

from __future__ import annotations

import click

from ._crawl_command import crawl
from ._demo import demo
from ._entry import run
from ._export_commands import activities, opportunities
from ._load import load
from ._outcomes import EXIT_CODES_HELP, PROG
from ._probe import probe
from ._serve import emulator
from ._sync import sync
from ._worker import enqueue, worker

__all__ = ["cli", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadsq-async")
    except PackageNotFoundError:
        return "unknown"


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(_version(), "--version", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Fetch opportunities and activities from the LeadSquared API, within its rate limit.

    Keys come from LSQ_ACCESS_KEY and LSQ_SECRET_KEY (or --access-key and
    --secret-key), the region from LSQ_HOST (or --host). New here? The demo
    command crawls a built-in emulator: no account needed.
    """


for _command in (
    opportunities,
    activities,
    crawl,
    load,
    sync,
    emulator,
    demo,
    probe,
    worker,
    enqueue,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code
    (see `_entry.run`)."""
    return run(cli, argv)
