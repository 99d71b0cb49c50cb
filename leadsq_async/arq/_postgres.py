"""Where a crawl job writes: the `Sink` protocol, and `PostgresSink`, its PostgreSQL form.

A sink takes one lead at a time, and must make writing the same lead twice leave
the same rows as writing it once: a job that is run again (its worker died, or it
was deferred) writes its batch again. `PostgresSink` keeps four tables in a schema
of its own, each keyed by the API's ids, and writes each lead in one transaction:
its opportunities (and, when fetched, their activities) upserted on their ids, the
rows of the lead that the API no longer lists deleted, its line in ``leads``
upserted and its line in ``failed_leads``, if any, deleted. That transaction is one
statement (each change one of its data-modifying ``WITH`` parts, on rows no other
part touches): one round trip a lead where a statement each took six, and a third
of the CPU. It uses psycopg 3's asyncio connection: one per worker process, its
statements taken in turn.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from leadsq_async import LeadResult, unstructure
from leadsq_async._closing import AsyncClosing

__all__ = ["TABLES", "PostgresSink", "Sink"]

#: The tables a `PostgresSink` keeps, in its schema.
TABLES = ("leads", "opportunities", "activities", "failed_leads")

_SCHEMA = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    "CREATE TABLE IF NOT EXISTS {schema}.leads (lead_id text PRIMARY KEY, "
    "opportunities integer NOT NULL, job_id text NOT NULL, job_try integer NOT NULL, "
    "crawled_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS {schema}.opportunities (opportunity_id text PRIMARY KEY, "
    "lead_id text NOT NULL, record jsonb NOT NULL, crawled_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS opportunities_lead_id ON {schema}.opportunities (lead_id)",
    "CREATE TABLE IF NOT EXISTS {schema}.activities (activity_id text PRIMARY KEY, "
    "opportunity_id text NOT NULL, lead_id text NOT NULL, record jsonb NOT NULL, "
    "crawled_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS activities_lead_id ON {schema}.activities (lead_id)",
    "CREATE TABLE IF NOT EXISTS {schema}.failed_leads (lead_id text PRIMARY KEY, "
    "error text NOT NULL, job_id text NOT NULL, job_try integer NOT NULL, "
    "failed_at timestamptz NOT NULL DEFAULT now())",
)

# One lead's write, as one statement; with activities, two parts more (_ACTIVITIES). Of
# the lead's rows, those the API no longer lists are deleted, those it lists upserted.
_WRITE_LEAD = (
    "WITH gone AS (DELETE FROM {schema}.opportunities WHERE lead_id = %(lead)s "
    "AND NOT (opportunity_id = ANY(%(ids)s::text[]))), "
    "kept AS (INSERT INTO {schema}.opportunities (opportunity_id, lead_id, record) "
    "SELECT id, %(lead)s, record "
    "FROM unnest(%(ids)s::text[], %(records)s::jsonb[]) AS t(id, record) "
    "ON CONFLICT (opportunity_id) DO UPDATE SET lead_id = EXCLUDED.lead_id, "
    "record = EXCLUDED.record, crawled_at = now()), "
    "{activities}"
    "unfailed AS (DELETE FROM {schema}.failed_leads WHERE lead_id = %(lead)s) "
    "INSERT INTO {schema}.leads (lead_id, opportunities, job_id, job_try) "
    "VALUES (%(lead)s, %(count)s, %(job_id)s, %(job_try)s) ON CONFLICT (lead_id) DO UPDATE SET "
    "opportunities = EXCLUDED.opportunities, job_id = EXCLUDED.job_id, "
    "job_try = EXCLUDED.job_try, crawled_at = now()"
)
_ACTIVITIES = (
    "gone_activities AS (DELETE FROM {schema}.activities WHERE lead_id = %(lead)s "
    "AND NOT (activity_id = ANY(%(activity_ids)s::text[]))), "
    "kept_activities AS (INSERT INTO {schema}.activities "
    "(activity_id, opportunity_id, lead_id, record) SELECT id, opportunity_id, %(lead)s, record "
    "FROM unnest(%(activity_ids)s::text[], %(activity_opportunities)s::text[], "
    "%(activity_records)s::jsonb[]) AS t(id, opportunity_id, record) "
    "ON CONFLICT (activity_id) DO UPDATE SET opportunity_id = EXCLUDED.opportunity_id, "
    "lead_id = EXCLUDED.lead_id, record = EXCLUDED.record, crawled_at = now()), "
)


@runtime_checkable
class Sink(Protocol):
    """What `crawl_leads` writes each lead to. Writing a lead twice must leave the rows
    of writing it once; a lead written must stay written if the process dies next."""

    async def write_lead(
        self, result: LeadResult, *, with_activities: bool, job_id: str, job_try: int
    ) -> None:
        """Store the opportunities (and, ``with_activities``, activities) of a lead."""

    async def write_failure(self, lead_id: str, error: str, *, job_id: str, job_try: int) -> None:
        """Record that a lead failed for good, with a line that says why."""

    async def leads_written(self, job_id: str, since: datetime.datetime) -> set[str]:
        """The leads that job ``job_id`` wrote (or recorded as failed) since ``since``."""


class PostgresSink(AsyncClosing):
    """A `Sink` on a PostgreSQL schema; make it with `PostgresSink.connect`.

    Args:
        connection: an autocommit psycopg ``AsyncConnection``, which `aclose` closes.
        schema: the schema of the tables (see `TABLES`), made by `create_tables`.
    """

    def __init__(self, connection: psycopg.AsyncConnection[Any], schema: str) -> None:
        if not connection.autocommit:
            raise ValueError("PostgresSink needs an autocommit connection")
        self._connection = connection
        self._schema = sql.Identifier(schema)
        self._turn = asyncio.Lock()
        # Composed once: the same text each time, which psycopg prepares after a few runs.
        self._write_lead = {
            with_activities: sql.SQL(_WRITE_LEAD).format(
                schema=self._schema,
                activities=sql.SQL(_ACTIVITIES if with_activities else "").format(
                    schema=self._schema
                ),
            )
            for with_activities in (False, True)
        }

    @classmethod
    async def connect(cls, dsn: str, schema: str = "leadsq") -> PostgresSink:
        """Connect to ``dsn`` (a libpq URL or ``key=value`` string) and make the tables.

        Raises:
            psycopg.Error: the server could not be reached, or refused.
        """
        connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        sink = cls(connection, schema)
        try:
            await sink.create_tables()
        except BaseException:
            await connection.close()
            raise
        return sink

    async def create_tables(self) -> None:
        """Make the schema and its tables unless they exist (workers may race to do it)."""
        async with self._turn, self._connection.transaction():
            # CREATE ... IF NOT EXISTS run at once by two sessions can still collide.
            await self._execute("SELECT pg_advisory_xact_lock(hashtext('leadsq-async:sink'))")
            for statement in _SCHEMA:
                await self._execute(statement)

    async def write_lead(
        self, result: LeadResult, *, with_activities: bool, job_id: str, job_try: int
    ) -> None:
        """Replace the lead's rows by ``result``'s, in one transaction (see the module)."""
        # By id, the last of an id kept, as upserting each in turn kept it.
        opportunities = {
            record.opportunity_id: Jsonb(unstructure(record)) for record in result.records
        }
        params: dict[str, Any] = {
            "lead": result.lead_id,
            "ids": list(opportunities),
            "records": list(opportunities.values()),
            "count": len(opportunities),
            "job_id": job_id,
            "job_try": job_try,
        }
        if with_activities:
            activities = {
                activity.activity_id: (opportunity_id, Jsonb(unstructure(activity)))
                for opportunity_id, records in result.activities.items()
                for activity in records
            }
            params["activity_ids"] = list(activities)
            params["activity_opportunities"] = [row[0] for row in activities.values()]
            params["activity_records"] = [row[1] for row in activities.values()]
        async with self._turn:
            await self._connection.execute(self._write_lead[with_activities], params)

    async def write_failure(self, lead_id: str, error: str, *, job_id: str, job_try: int) -> None:
        """Upsert the lead's line in ``failed_leads``."""
        async with self._turn:
            await self._execute(
                "INSERT INTO {schema}.failed_leads (lead_id, error, job_id, job_try) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (lead_id) DO UPDATE SET "
                "error = EXCLUDED.error, job_id = EXCLUDED.job_id, job_try = EXCLUDED.job_try, "
                "failed_at = now()",
                (lead_id, error, job_id, job_try),
            )

    async def leads_written(self, job_id: str, since: datetime.datetime) -> set[str]:
        """The leads of ``leads`` and ``failed_leads`` that ``job_id`` wrote since ``since``."""
        async with self._turn:
            cursor = await self._connection.execute(
                sql.SQL(
                    "SELECT lead_id FROM {schema}.leads WHERE job_id = %s AND crawled_at >= %s "
                    "UNION SELECT lead_id FROM {schema}.failed_leads WHERE job_id = %s "
                    "AND failed_at >= %s"
                ).format(schema=self._schema),
                (job_id, since, job_id, since),
            )
            return {row[0] for row in await cursor.fetchall()}

    async def aclose(self) -> None:
        """Close the connection."""
        await self._connection.close()

    async def _execute(
        self, statement: str, params: Sequence[Any] = (), **identifiers: sql.Identifier
    ) -> None:
        query = sql.SQL(statement).format(schema=self._schema, **identifiers)
        await self._connection.execute(query, params)
