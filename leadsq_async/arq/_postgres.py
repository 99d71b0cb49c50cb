"""Where a crawl job writes: the `Sink` protocol, and `PostgresSink`, its PostgreSQL form.

A sink takes one lead at a time, and must make writing the same lead twice leave
the same rows as writing it once: a job that is run again (its worker died, or it
was deferred) writes its batch again. `PostgresSink` keeps four tables in a schema
of its own, each keyed by the API's ids, and writes each lead in one transaction:
its opportunities (and, when fetched, their activities) upserted on their ids, the
rows of the lead that the API no longer lists deleted, its line in ``leads``
upserted and its line in ``failed_leads``, if any, deleted. It uses psycopg 3's
asyncio connection: one per worker process, its transactions taken in turn.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable, Sequence
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
        lead_id = result.lead_id
        opportunities = [
            (record.opportunity_id, lead_id, Jsonb(unstructure(record)))
            for record in result.records
        ]
        async with self._turn, self._connection.transaction():
            await self._replace(
                "opportunities", "opportunity_id", lead_id, opportunities, ("lead_id", "record")
            )
            if with_activities:
                activities = [
                    (activity.activity_id, opportunity_id, lead_id, Jsonb(unstructure(activity)))
                    for opportunity_id, records in result.activities.items()
                    for activity in records
                ]
                columns = ("opportunity_id", "lead_id", "record")
                await self._replace("activities", "activity_id", lead_id, activities, columns)
            await self._execute(
                "INSERT INTO {schema}.leads (lead_id, opportunities, job_id, job_try) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (lead_id) DO UPDATE SET "
                "opportunities = EXCLUDED.opportunities, job_id = EXCLUDED.job_id, "
                "job_try = EXCLUDED.job_try, crawled_at = now()",
                (lead_id, len(opportunities), job_id, job_try),
            )
            await self._execute("DELETE FROM {schema}.failed_leads WHERE lead_id = %s", (lead_id,))

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

    async def _replace(
        self,
        table: str,
        key: str,
        lead_id: str,
        rows: Sequence[tuple[Any, ...]],
        columns: Iterable[str],
    ) -> None:
        """Delete the lead's rows of ``table`` that ``rows`` lacks, and upsert ``rows``."""
        names = (key, *columns)
        identifiers = {"table": sql.Identifier(table), "key": sql.Identifier(key)}
        await self._execute(
            "DELETE FROM {schema}.{table} WHERE lead_id = %s AND NOT ({key} = ANY(%s))",
            (lead_id, [row[0] for row in rows]),
            **identifiers,
        )
        if not rows:
            return
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in columns
        )
        statement = sql.SQL(
            "INSERT INTO {schema}.{table} ({names}) VALUES ({values}) "
            "ON CONFLICT ({key}) DO UPDATE SET {updates}, crawled_at = now()"
        ).format(
            schema=self._schema,
            names=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(names)),
            updates=updates,
            **identifiers,
        )
        async with self._connection.cursor() as cursor:
            await cursor.executemany(statement, rows)

    async def _execute(
        self, statement: str, params: Sequence[Any] = (), **identifiers: sql.Identifier
    ) -> None:
        query = sql.SQL(statement).format(schema=self._schema, **identifiers)
        await self._connection.execute(query, params)
