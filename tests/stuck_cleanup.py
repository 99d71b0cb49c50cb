"""A command whose clean-up hangs after Ctrl-C, for the test that a second Ctrl-C ends it.

Run as a script::

    python tests/stuck_cleanup.py MARKER

It runs its work with `run_interruptibly` and prints ``started`` once the
signal handlers are in place. The first SIGINT cancels the work, which prints
``cancelled`` and then hangs in its clean-up for a minute. A second SIGINT must
end the process at once with exit code 130, after ``on_abort`` has written
``aborted`` to the file MARKER.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from leadsq_async.cli._run import run_interruptibly


async def work() -> None:
    """Wait for the cancellation, then hang in the clean-up."""
    print("started", flush=True)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        print("cancelled", flush=True)
        await asyncio.sleep(60)  # a clean-up stuck on something that never answers


if __name__ == "__main__":
    marker = Path(sys.argv[1])
    run_interruptibly(work(), on_abort=lambda: marker.write_text("aborted"))
