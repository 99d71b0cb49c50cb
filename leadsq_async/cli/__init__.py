"""The ``leadsq-async`` command line (needs the ``cli`` extra: click, rich and uvicorn).

Commands: ``opportunities`` and ``activities`` print rows as JSON Lines or CSV,
``crawl`` writes many leads' rows to a resumable directory, ``emulator`` serves
the built-in emulator, and ``demo`` crawls it. See docs/cli.md.
"""

from __future__ import annotations

import sys

from ._install import install_hint

__all__ = ["install_hint", "main"]


def main(argv: list[str] | None = None) -> None:
    """Run ``leadsq-async`` with ``argv`` (default: ``sys.argv[1:]``) and exit.

    Every error ends as one line on stderr and a non-zero exit code: 2 for a
    usage error, 130 when interrupted, 75 when the same command can finish the
    work later (a spent quota, ids that failed for now), 1 for anything else
    (see ``leadsq-async --help``).
    """
    try:
        from ._app import main as run
    except ModuleNotFoundError as error:
        if error.name not in ("click", "rich"):
            raise
        sys.stderr.write(
            f"leadsq-async: error: the command line needs {error.name}: {install_hint('cli')}\n"
        )
        sys.exit(1)
    sys.exit(run(argv))
