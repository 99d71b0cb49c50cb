"""What structuring a page of rows into records costs, next to json.loads of that page.

A page of 1000 realistic rows (``leadsq_async.testing.sample_rows``: the
seed pages' keys, custom fields, nulls and ``""``, the four date formats
mixed as the emulator mixes them) is serialised to JSON bytes. Then, in
interleaved repetitions, the benchmark times ``json.loads`` of those bytes and
``structure_rows`` of the freshly decoded rows (the decoding itself untimed),
and reports median(structure_rows) / median(json.loads) for each record class.

Records are built eagerly: every typed attribute is computed inside the timed
call, so the ratio is the whole cost. The target is 1.5 or less; parity (1.0)
is the aim.

Run it with ``python -m benchmarks.structuring`` from the repository root.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any, Literal

from leadsq_async._records import Activity, Opportunity, structure_rows, unstructure
from leadsq_async.testing import sample_rows

Kind = Literal["opportunity", "activity"]
KINDS: dict[Kind, type[Any]] = {"opportunity": Opportunity, "activity": Activity}


def page_bytes(kind: Kind, rows: int, seed: int = 2026) -> bytes:
    """A page of ``rows`` sample rows of ``kind`` as the API would send it."""
    return json.dumps({"RecordCount": rows, "List": sample_rows(kind, rows, seed=seed)}).encode()


def ratio(page: bytes, cls: type[Any], repeats: int) -> float:
    """median(structure_rows of the page's rows) / median(json.loads of the page)."""
    rows = json.loads(page)["List"]
    if [unstructure(record) for record in structure_rows(rows, cls)] != rows:
        raise RuntimeError(f"{cls.__name__} records do not give their rows back")
    loads_times, structure_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        json.loads(page)
        loads_times.append(time.perf_counter() - start)
        rows = json.loads(page)["List"]
        start = time.perf_counter()
        structure_rows(rows, cls)
        structure_times.append(time.perf_counter() - start)
    return statistics.median(structure_times) / statistics.median(loads_times)


def run(rows: int = 1000, repeats: int = 200) -> dict[str, float]:
    """Ratios structure_rows / json.loads for a page of ``rows`` rows, per record class."""
    return {
        f"structure_rows({cls.__name__}) / json.loads, {rows}-row page": ratio(
            page_bytes(kind, rows), cls, repeats
        )
        for kind, cls in KINDS.items()
    }


if __name__ == "__main__":
    print("Structuring a page into records, as a multiple of json.loads of the page")
    print("(median of interleaved runs; target <= 1.5, aim 1.0)")
    for name, value in run().items():
        print(f"  {name}: {value:.2f}x")
