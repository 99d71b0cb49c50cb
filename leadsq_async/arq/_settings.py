"""How a worker reaches the API, Redis and PostgreSQL: `WorkerConfig`, read from arguments
or from the environment (the ``LSQ_*`` variables of the ``crawl`` command, plus
``LSQ_REDIS_URL``, ``LSQ_POSTGRES_URL``, ``LSQ_QUEUE`` and ``LSQ_POSTGRES_SCHEMA``), and
`job_timeout`, which sizes arq's ``job_timeout`` to a batch at the account's rate.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence

import attrs

from leadsq_async import RateLimit, RateLimiter, RetryPolicy, Session, least_time

__all__ = ["DEFAULT_QUEUE", "WorkerConfig", "job_timeout", "read_rate_limits"]

#: The arq queue the crawl jobs go to unless told otherwise.
DEFAULT_QUEUE = "leadsq-async:crawl"


def read_rate_limits(text: str) -> tuple[RateLimit, ...]:
    """The limits of ``LSQ_RATE_LIMIT``: ``CALLS/PERIOD`` items (as `RateLimit.parse`
    reads them) separated by spaces or commas, such as ``"10/5 10000/1d"``.

    Raises:
        ValueError: an item is malformed, or there is none.
    """
    items = [item for item in re.split(r"[\s,]+", text) if item]
    if not items:
        raise ValueError(f"invalid rate limit {text!r}: expected CALLS/PERIOD, such as 25/5")
    return tuple(RateLimit.parse(item) for item in items)


def job_timeout(
    rate_limits: RateLimit | Sequence[RateLimit],
    *,
    batch: int,
    jobs_at_once: int,
    requests_per_lead: float = 2.0,
    margin: float = 2.0,
) -> float:
    """Seconds a crawl job of ``batch`` leads may run: arq's ``job_timeout``.

    Every job running at once shares the account's limit, so one job can take as long
    as all of theirs: ``jobs_at_once`` (workers times each one's ``max_jobs``) batches
    of ``requests_per_lead`` requests, at the account's rate (`least_time`), times
    ``margin``, plus 10 s of round trips. Too short, and a slow job is failed; too
    long, and a job whose worker died waits that long (plus arq's 10 s) to run again.

    Raises:
        ValueError: a count is below 1, or ``margin`` or ``requests_per_lead`` is not
            positive.
    """
    if batch < 1 or jobs_at_once < 1:
        raise ValueError("batch and jobs_at_once must be at least 1")
    if not (margin > 0 and requests_per_lead > 0):
        raise ValueError("margin and requests_per_lead must be positive")
    limits = [rate_limits] if isinstance(rate_limits, RateLimit) else list(rate_limits)
    requests = math.ceil(batch * jobs_at_once * requests_per_lead)
    return margin * least_time(limits, requests) + 10.0


@attrs.frozen
class WorkerConfig:
    """Everything a crawl worker needs: the API's keys and limits, and where Redis and
    PostgreSQL are.

    Attributes:
        access_key, secret_key: the account's keys (the secret is never shown).
        postgres_url: the PostgreSQL database the rows go to (a libpq URL or DSN).
        host: the account's region host, or the emulator's base URL.
        rate_limits: every limit of the plan.
        redis_url: the Redis server of the queue and of the shared limit.
        limit_key: the shared limit's Redis key (by default one per access key).
        queue_name: the arq queue.
        schema: the PostgreSQL schema of the tables.
        concurrency: leads crawled at once by one job (the session's default if None).
        timeout, max_attempts, request_deadline: as the ``crawl`` command's options.
        transient_tries: runs of a job after which a lead that keeps failing for a
            passing reason (a server error, a dropped connection) is recorded as failed.
    """

    access_key: str
    secret_key: str = attrs.field(repr=False)
    postgres_url: str = attrs.field(repr=False)
    host: str = "api.leadsquared.com"
    rate_limits: tuple[RateLimit, ...] = (RateLimit(25, 5.0),)
    redis_url: str = attrs.field(default="redis://127.0.0.1:6379/0", repr=False)
    limit_key: str | None = None
    queue_name: str = DEFAULT_QUEUE
    schema: str = "leadsq"
    concurrency: int | None = None
    timeout: float = 30.0
    max_attempts: int = 5
    request_deadline: float = 120.0
    transient_tries: int = 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        """The configuration the ``LSQ_*`` environment variables give.

        Raises:
            ValueError: a required variable (``LSQ_ACCESS_KEY``, ``LSQ_SECRET_KEY``,
                ``LSQ_POSTGRES_URL``) is unset or empty, or one is malformed.
        """
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ValueError(f"{name} is not set")
            return value

        return cls(
            access_key=required("LSQ_ACCESS_KEY"),
            secret_key=required("LSQ_SECRET_KEY"),
            postgres_url=required("LSQ_POSTGRES_URL"),
            host=env.get("LSQ_HOST") or "api.leadsquared.com",
            rate_limits=read_rate_limits(env.get("LSQ_RATE_LIMIT") or "25/5"),
            redis_url=env.get("LSQ_REDIS_URL") or "redis://127.0.0.1:6379/0",
            limit_key=env.get("LSQ_LIMIT_KEY") or None,
            queue_name=env.get("LSQ_QUEUE") or DEFAULT_QUEUE,
            schema=env.get("LSQ_POSTGRES_SCHEMA") or "leadsq",
        )

    @property
    def shared_limit_key(self) -> str:
        """The Redis key of the account's shared limit: one per access key (never the secret)."""
        return self.limit_key or f"leadsq-async:ratelimit:{self.access_key}"

    def session(self, limiter: RateLimiter) -> Session:
        """A `Session` with these options, its requests going through ``limiter``."""
        return Session(
            self.access_key,
            self.secret_key,
            host=self.host,
            limiter=limiter,
            timeout=self.timeout,
            retry=RetryPolicy(attempts=self.max_attempts, deadline=self.request_deadline),
        )
