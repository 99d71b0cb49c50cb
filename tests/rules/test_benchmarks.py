"""The benchmarks measure today's code: a benchmark that no longer fits the package it
measures fails here, in seconds, not at the end of a ten-minute ``nox -s bench``."""

from __future__ import annotations

from benchmarks import structuring


def test_the_structuring_benchmark_measures_todays_records() -> None:
    """It takes rows to records and back with the package's own functions (they moved from
    _records to _structure once, and the benchmark broke unseen): both classes give their
    rows back, and a ratio comes out for each."""
    figures = structuring.run(rows=20, repeats=2)
    assert sorted(figures) == [
        "structure_rows(Activity) / json.loads, 20-row page",
        "structure_rows(Opportunity) / json.loads, 20-row page",
    ]
    assert all(value > 0 for value in figures.values())
