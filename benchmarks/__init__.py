"""Benchmarks run by ``nox -s bench``: ratios measured side by side in one run."""
