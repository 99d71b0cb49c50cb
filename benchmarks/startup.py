"""What importing leadsq-async costs, next to its floor: ``import asyncio, attrs, httpx``.

Each figure comes from fresh interpreters started in turn (``python -X importtime -c
"import X"``), the imports interleaved so that the machine's load falls on all alike,
and is the least time Python reports for the statement's imports over the runs (as
``timeit`` advises: the rest is other programs' doing on a shared machine). Bytecode is
written and used, as for an installed package (pip compiles a wheel's modules as it
installs them; an editable install compiles them on first import): a warm-up run writes
it first, whatever ``PYTHONDONTWRITEBYTECODE`` says.
The floor, ``import asyncio, attrs, httpx``, is what no asyncio client with attrs
records can go below; ``import leadsq_async`` includes it, so their ratio is the cost of
the package's own modules over it: the target is 1.15 at most (issue 17). ``from
leadsq_async import Session`` is measured too: what a program pays before it can make a
session, whatever the package defers. Each is printed as a multiple of the floor, and
of ``import httpx`` alone for comparison.

Run it with ``python -m benchmarks.startup`` from the repository root.
"""

from __future__ import annotations

import os
import subprocess
import sys

ENVIRONMENT = {
    name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"
}
FLOOR = "import asyncio, attrs, httpx"
TARGET = 1.15
STATEMENTS = (
    "import httpx",
    # The floor: what the package needs before any module of its own (asyncio, and attrs
    # for its records), which every program using it imports anyway.
    FLOOR,
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


def run(repeats: int = 25) -> dict[str, tuple[float, float]]:
    """Least import times, interleaved: as multiples of the floor and of ``import httpx``."""
    for statement in STATEMENTS:
        cost(statement)  # writes the bytecode
    times: dict[str, list[int]] = {statement: [] for statement in STATEMENTS}
    for _ in range(repeats):
        for statement in STATEMENTS:
            times[statement].append(cost(statement))
    floor, httpx = min(times[FLOOR]), min(times["import httpx"])
    return {
        statement.split(";")[0]: (min(spent) / floor, min(spent) / httpx)
        for statement, spent in times.items()
        if statement != "import httpx"
    }


def describe(results: dict[str, tuple[float, float]]) -> list[str]:
    """One line per statement, the ratio to the floor first, then the target."""
    return [
        *(
            f"{name}: {of_floor:.2f}x the floor ({of_httpx:.2f}x import httpx)"
            for name, (of_floor, of_httpx) in results.items()
        ),
        f"target: import leadsq_async at most {TARGET:.2f}x the floor ({FLOOR})",
    ]


if __name__ == "__main__":
    print("\n".join(describe(run())))
