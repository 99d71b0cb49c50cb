"""The memory and time of resuming a crawl whose journal holds 1,000,000 leads.

A journal of ``LEADS`` leads done (one opportunity row each) is written in a temporary
directory. Then a fresh interpreter resumes it (`CrawlDirectory.resume`: every line
read and checked against the data file) and crawls the same ids into it again
(`crawl_into`, which skips every one of them, sending nothing), and reports its peak
resident memory (``VmHWM``; ``ru_maxrss`` where there is no /proc) and the time the
resume took. The peak includes the interpreter and its imports, measured alone first.
Expected: under 200 MB.

Run it with ``python -m benchmarks.journal`` from the repository root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from leadsq_async.journal import CHECKPOINT, OPPORTUNITIES, CrawlSettings, JournalEntry, dump_row

LEADS = 1_000_000
SETTINGS = CrawlSettings(with_activities=False, opportunity_type=None)

_CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
import leadsq_async as lsq
from leadsq_async.journal import CrawlDirectory, CrawlSettings, crawl_into

def peak_mb():
    # VmHWM is this program's own peak; ru_maxrss keeps the peak of the process that
    # started it (Linux carries it across exec), which is the whole benchmark run's.
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024

baseline = peak_mb()
directory, leads = Path(sys.argv[1]), int(sys.argv[2])
started = time.perf_counter()
settings = CrawlSettings(with_activities=False, opportunity_type=None)
output = CrawlDirectory.resume(directory, settings)

async def crawl_again():
    skipped = 0
    def count(_):
        nonlocal skipped
        skipped += 1
    ids = (f"lead-{n:07d}" for n in range(leads))
    async with lsq.Session("key", "secret", host="http://127.0.0.1:9") as session:
        async with crawl_into(session, output, ids, skipped=count) as results:
            async for _ in results:
                raise AssertionError("every lead is done: nothing is sent")
    return skipped

skipped = asyncio.run(crawl_again())
seconds = time.perf_counter() - started
output.close()
assert len(output.done) == leads and skipped == leads
print(json.dumps({"baseline": baseline, "peak": peak_mb(), "seconds": seconds}))
"""


class Figures(NamedTuple):
    """What resuming the journal cost."""

    leads: int
    peak_mb: float
    baseline_mb: float
    seconds: float


def write_journal(directory: Path, leads: int) -> None:
    """A crawl directory whose journal holds ``leads`` leads done, one row each."""
    header = {
        "format": "leadsq-async crawl checkpoint",
        "version": 1,
        "with_activities": False,
        "opportunity_type": None,
    }
    end = 0
    with (
        open(directory / CHECKPOINT, "wb") as journal,
        open(directory / OPPORTUNITIES, "wb") as rows,
    ):
        journal.write(dump_row(header))
        for number in range(leads):
            lead = f"lead-{number:07d}"
            row = dump_row({"OpportunityId": f"opp-{number:07d}", "ProspectId": lead})
            rows.write(row)
            end += len(row)
            entry = JournalEntry(lead, done=True, ends={OPPORTUNITIES: end}, opportunities=1)
            journal.write(dump_row(entry.to_json()))


def run(leads: int = LEADS) -> Figures:
    """Write the journal, resume it in a fresh interpreter, and return what that cost."""
    with tempfile.TemporaryDirectory(prefix="leadsq-journal-") as temporary:
        directory = Path(temporary)
        write_journal(directory, leads)
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", _CHILD, str(directory), str(leads)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        assert time.perf_counter() - started > 0
    measured = json.loads(completed.stdout)
    return Figures(leads, measured["peak"], measured["baseline"], measured["seconds"])


def describe(figures: Figures) -> str:
    """One line: the peak memory and the time of the resume."""
    return (
        f"resuming a journal of {figures.leads:,} leads: peak {figures.peak_mb:.0f} MB "
        f"(the interpreter and imports alone: {figures.baseline_mb:.0f} MB), "
        f"{figures.seconds:.1f} s"
    )


if __name__ == "__main__":
    print(describe(run()))
