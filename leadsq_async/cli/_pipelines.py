"""What the warehouse commands (``load``, ``sync``) share about dlt pipelines: making one
for a destination named on the command line, the file format each destination loads
fastest, and finding our error inside dlt's wrapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dlt import Pipeline

__all__ = ["cause_of", "file_format", "pipeline_for"]


def cause_of(
    error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of ``kind`` in ``error``'s chain of causes (dlt wraps ours)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def pipeline_for(name: str, destination: Any, dataset: str, *, named: str) -> Pipeline:
    """The dlt pipeline; a destination dlt does not know (``named`` on the command line) is a
    usage error naming those it does."""
    import dlt
    from dlt.common.destination.exceptions import UnknownDestinationModule

    try:
        pipeline: Pipeline = dlt.pipeline(
            pipeline_name=name, destination=destination, dataset_name=dataset
        )
    except UnknownDestinationModule:
        import dlt.destinations

        known = ", ".join(sorted(set(dlt.destinations.__all__) - {"destination"}))
        raise click.BadParameter(
            f"dlt has no destination {named!r}; it has {known} (or a named destination "
            "configured with DESTINATION__NAME__DESTINATION_TYPE)",
            param_hint="'--destination'",
        ) from None
    return pipeline


def file_format(pipeline: Pipeline) -> Any:
    """JSON Lines into DuckDB, which loads them some ten times faster than the INSERT
    statements dlt writes for it by default; the destination's own choice elsewhere."""
    return "jsonl" if pipeline.destination.destination_type.endswith(".duckdb") else None
