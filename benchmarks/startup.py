"""What importing leadsq-async costs, next to importing httpx alone.

Each figure comes from fresh interpreters started in turn (``python -X importtime
-c "import X"``), the imports interleaved so that the machine's load falls on
all alike, and is the median of the time Python reports for the statement's
imports. Bytecode is written and used, as for an installed package (pip compiles
a wheel's modules as it installs them; an editable install compiles them on first
import): a warm-up run writes it first, whatever ``PYTHONDONTWRITEBYTECODE`` says.
``import leadsq_async`` includes httpx, so the ratio is the whole cost of the
library over its HTTP client: the target is 1.2 at most.

``from leadsq_async import Session`` is measured too: what a program pays before it
can make a session, whatever the package defers.

Run it with ``python -m benchmarks.startup`` from the repository root.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

ENVIRONMENT = {
    name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"
}
STATEMENTS = (
    "import httpx",
    "import leadsq_async",
    "from leadsq_async import Session; Session",
)


def cost(statement: str) -> int:
    """Microseconds of imports ``statement`` makes in a fresh interpreter, after the
    interpreter's own start-up (the top-level imports that follow ``site``)."""
    printed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
        env=ENVIRONMENT,
    ).stderr
    started, total = False, 0
    for line in printed.splitlines():
        fields = line.split("|")
        # Top-level imports only: their names carry one leading space.
        if len(fields) != 3 or not fields[2].startswith(" ") or fields[2].startswith("  "):
            continue
        name = fields[2].strip()
        if started:
            total += int(fields[1])
        started = started or name == "site"
    return total


def run(repeats: int = 15) -> dict[str, float]:
    """Median import times as multiples of ``import httpx``, interleaved."""
    for statement in STATEMENTS:
        cost(statement)  # writes the bytecode
    times: dict[str, list[int]] = {statement: [] for statement in STATEMENTS}
    for _ in range(repeats):
        for statement in STATEMENTS:
            times[statement].append(cost(statement))
    base = statistics.median(times["import httpx"])
    return {
        statement.split(";")[0]: statistics.median(spent) / base
        for statement, spent in times.items()
        if statement != "import httpx"
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.2f}x import httpx")
