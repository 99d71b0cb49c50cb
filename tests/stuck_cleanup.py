"""A command whose clean-up hangs after Ctrl-C, for the tests that a second Ctrl-C ends it.

Run as a script::

    python tests/stuck_cleanup.py WHERE MARKER

It runs its work with `run_interruptibly` and prints ``started`` once the
signal handlers are in place. The first SIGINT cancels the work; then the
clean-up hangs for a minute, ``in-loop`` (the work swallows the cancellation)
or ``after-loop`` (the work ends, and the code that called
`run_interruptibly` hangs), and the script prints ``stuck``. A second SIGINT
must end the process at once with exit code 130, after ``on_abort`` has
written ``aborted`` to the file MARKER.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from leadsq_async.cli._run import Interrupted, run_interruptibly

WHERE = ("in-loop", "after-loop")


async def work(where: str) -> None:
    """Wait for the cancellation; hang in the clean-up if ``where`` is in the loop."""
    print("started", flush=True)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        if where != "in-loop":
            raise
        print("stuck", flush=True)
        await asyncio.sleep(60)  # a clean-up waiting on something that never answers


def _mark(marker: Path) -> None:
    marker.write_text("aborted")


def main(where: str, marker: Path) -> None:
    """Run `work`; after an interruption, hang if ``where`` is after the loop."""
    try:
        run_interruptibly(work(where), on_abort=lambda: _mark(marker))
    except Interrupted:
        print("stuck", flush=True)
        time.sleep(60)  # say, a report written to a network drive that hangs


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
