"""Deletes, for `leadsquared_account` with ``reconcile``: list every id the account still
serves, and mark the warehouse's rows whose id it no longer serves (``_lsq_deleted_at``), the
opportunities and activities of a deleted lead with them.

A marked row keeps its last values: it is read back from the warehouse and merged again
with the mark set, so the row stays whole. What reconcile costs: docs/warehouse.md.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import dlt

from .account_rows import DELETED_AT
from .account_work import all_at_once

if TYPE_CHECKING:
    from leadsq_async import Session

    from .account_work import SyncWork


__all__ = ["Sessions", "deleted_rows"]


class Sessions(Protocol):
    """Where the listings get their session: the run's one shared session, and the run's
    work, where each listing is counted."""

    work: SyncWork

    def use(self) -> AbstractAsyncContextManager[Session]: ...


# Per table: its primary key, and the key naming the lead of its rows.
_KEYS = {
    "leads": ("ProspectID", "ProspectID"),
    "opportunities": ("OpportunityId", "RelatedProspectId"),
    "activities": ("ProspectActivityId", "RelatedProspectId"),
}
_BATCH = 1000
#: The kind of walk a listing is, in the run's `SyncWork`: ``reconcile`` and its table.
RECONCILE = "reconcile"


async def _live_ids(
    session: Session,
    work: SyncWork,
    table: str,
    codes: tuple[str, ...],
    since: datetime,
    until: datetime,
) -> set[str]:
    """Every id of ``table`` the account serves, modified in [since, until) or later."""
    kind = f"{RECONCILE} {table}"
    if table == "leads":
        leads = session.leads_modified(since, until, columns=["ProspectID"])
        return {lead.lead_id async for page in work.walk(kind, leads) for lead in page.items}
    if table == "activities":
        activities = session.activities_modified(since, until)
        return {
            activity.activity_id
            async for page in work.walk(kind, activities)
            for activity in page.items
        }

    async def of_type(code: str) -> set[str]:
        walk = session.opportunities_of_type(code, columns=["ProspectActivityId"])
        return {o.opportunity_id async for page in work.walk(kind, walk) for o in page.items}

    return set().union(*await all_at_once(of_type(code) for code in codes))


class _Warehouse:
    """The live rows the warehouse holds, through the pipeline's SQL client."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self._pipeline = pipeline
        self._naming = pipeline.default_schema.naming if pipeline.default_schema_name else None

    def column(self, key: str) -> str:
        return key if self._naming is None else self._naming.normalize_path(key)

    def _query(self, table: str, sql: str, *args: Any) -> list[tuple[Any, ...]] | None:
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        try:
            with self._pipeline.sql_client() as client:
                name = client.make_qualified_table_name(self.column(table))
                with client.execute_query(sql.format(table=name), *args) as cursor:
                    return list(cursor.fetchall())
        except DatabaseUndefinedRelation:
            return None
        except Exception as error:
            # No destination yet, no dataset, or a table without the column: nothing live.
            if "does not exist" in str(error) or "not found" in str(error).lower():
                return None
            raise

    def live(self, table: str) -> dict[str, str | None]:
        """Id -> lead id of each row of ``table`` not marked deleted."""
        key, lead_key = _KEYS[table]
        rows = self._query(
            table,
            f"SELECT {self.column(key)}, {self.column(lead_key)} FROM {{table}} "
            f"WHERE {self.column(DELETED_AT)} IS NULL",
        )
        return {} if rows is None else {str(row[0]): row[1] for row in rows}

    def rows(self, table: str, ids: list[str]) -> list[dict[str, Any]]:
        """The whole rows of ``ids``, without dlt's own columns."""
        key = self.column(_KEYS[table][0])
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            marks = ", ".join(["%s"] * len(chunk))
            with self._pipeline.sql_client() as client:
                name = client.make_qualified_table_name(self.column(table))
                sql = f"SELECT * FROM {name} WHERE {key} IN ({marks})"
                with client.execute_query(sql, *chunk) as cursor:
                    names = [d[0] for d in cursor.description]
                    for values in cursor.fetchall():
                        row = dict(zip(names, values, strict=True))
                        found.append({k: v for k, v in row.items() if not k.startswith("_dlt_")})
        return found


def _marked(rows: Iterable[dict[str, Any]], column: str, when: datetime) -> list[dict[str, Any]]:
    return [{**row, column: when} for row in rows]


async def deleted_rows(
    shared: Sessions,
    pipeline: dlt.Pipeline,
    tables: list[str],
    codes: tuple[str, ...],
    since: datetime,
    until: Callable[[], datetime],
) -> AsyncGenerator[Any, None]:
    """The rows of ``tables`` the account no longer serves, whole, with ``_lsq_deleted_at``
    set to now, each batch marked with its table. Ids are listed from ``since`` to what
    ``until()`` says when the listings start; the listings (each table, each opportunity
    type) are walked at once, on the run's one limiter."""
    warehouse = _Warehouse(pipeline)
    held = {table: warehouse.live(table) for table in tables}
    work = shared.work
    for table in tables:
        work.settle(
            f"{RECONCILE} {table}",
            (len(codes) if table == "opportunities" else 1) if held[table] else 0,
        )
    if not any(held.values()):
        return
    gone: dict[str, set[str]] = {}
    listed = [table for table in tables if held[table]]
    async with shared.use() as session:
        lives = await all_at_once(
            _live_ids(session, work, table, codes, since, until()) for table in listed
        )
    for table, live in zip(listed, lives, strict=True):
        gone[table] = set(held[table]) - live
    deleted_leads = gone.get("leads", set())
    if deleted_leads:
        # A deleted lead takes its opportunities and activities with it.
        for table in tables:
            if table != "leads":
                gone[table] = gone.get(table, set()) | {
                    row_id for row_id, lead in held[table].items() if lead in deleted_leads
                }
    when = datetime.now(timezone.utc).replace(microsecond=0)
    for table in tables:
        ids = sorted(gone.get(table, ()))
        if not ids:
            continue
        key = _KEYS[table][0]
        rows = _marked(warehouse.rows(table, ids), warehouse.column(DELETED_AT), when)
        hints = dlt.mark.make_hints(
            table_name=table,
            primary_key=warehouse.column(key),
            write_disposition="merge",
        )
        for start in range(0, len(rows), _BATCH):
            yield dlt.mark.with_hints(
                rows[start : start + _BATCH], hints, create_table_variant=True
            )
