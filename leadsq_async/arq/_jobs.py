"""The crawl job, its enqueuing, and the worker's start-up and shutdown.

`on_startup` opens what one worker process uses for all its jobs, a `Session` on the
account's shared `RedisLimiter` and a `PostgresSink`, and keeps them in arq's ``ctx``
(as a `WorkerResources`); `on_shutdown` closes them. `crawl_leads` crawls a batch and
writes each lead as it finishes, so a job killed half-way has committed the leads it
finished and its re-run writes the same rows again. `enqueue_crawl` cuts lead ids into
batches whose job ids are derived from their content: arq refuses a job id it already
holds, so enqueuing the same file twice adds nothing. How each failure is handled is
told in docs/processes.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from arq import Retry
from arq.connections import ArqRedis, RedisSettings

from leadsq_async import (
    LeadSquaredError,
    QuotaExhaustedError,
    RateLimiterUnavailableError,
    RedisLimiter,
    Session,
)
from leadsq_async.arq._postgres import PostgresSink, Sink
from leadsq_async.arq._settings import WorkerConfig, job_timeout

__all__ = [
    "CONFIG",
    "JOB_TIMEOUT",
    "RESOURCES",
    "WorkerResources",
    "crawl_leads",
    "enqueue_crawl",
    "job_id_of",
    "on_shutdown",
    "on_startup",
    "stop_key",
    "worker_settings",
]

logger = logging.getLogger("leadsq_async.arq")

#: The ``ctx`` key `on_startup` reads a `WorkerConfig` from (else: the environment).
CONFIG = "leadsq_async_config"
#: The ``ctx`` key of the `WorkerResources` the jobs use.
RESOURCES = "leadsq_async"
#: The ``ctx`` key of arq's ``job_timeout`` (`worker_settings` sets it).
JOB_TIMEOUT = "leadsq_async_job_timeout"
#: The ``ctx`` key of a callable that stops the worker (the ``worker`` command sets it).
STOP = "leadsq_async_stop"
#: How long a job waits before trying again while the shared limiter's Redis is down.
LIMITER_RETRY = 30.0
#: How long a job waits before looking again while the account is stopped (bad keys).
STOPPED_RETRY = 60.0
#: How long arq keeps a job's result, and so refuses its id again: a week.
KEEP_RESULT = 7 * 86_400.0


@attrs.frozen
class WorkerResources:
    """What the jobs of one worker process share: ``ctx[RESOURCES]``.

    Attributes:
        session: the API session, on the account's shared limit.
        sink: where each lead's rows go.
        transient_tries: runs after which a lead failing for a passing reason is
            recorded as failed.
        concurrency: leads one job crawls at once (the session's default if None).
        deadline: seconds after which a job stops and is run again at once, before
            arq's ``job_timeout`` would fail it (None: no such deadline).
        closing: closes what `on_startup` opened (None for resources made by hand).
    """

    session: Session
    sink: Sink
    transient_tries: int = 3
    concurrency: int | None = None
    deadline: float | None = None
    closing: contextlib.AsyncExitStack | None = None


def stop_key(queue_name: str) -> str:
    """The Redis key that, while set, holds every job of ``queue_name`` back.

    A job that meets an account-wide failure that time will not mend (bad keys, the
    wrong region host) sets it to the failure's message; every job then defers
    itself without sending anything, until a worker starts (`on_startup` deletes it).
    """
    return f"{queue_name}:leadsq-async:stopped"


async def on_startup(ctx: dict[str, Any]) -> None:
    """arq's ``on_startup``: open one `Session` on the shared `RedisLimiter`, and the
    `PostgresSink`, from ``ctx[CONFIG]`` (a `WorkerConfig`) or from the environment
    (`WorkerConfig.from_env`); keep them in ``ctx[RESOURCES]``.

    Raises:
        ValueError: a setting is missing or malformed.
        psycopg.Error: PostgreSQL could not be reached.
    """
    config = ctx.get(CONFIG)
    if not isinstance(config, WorkerConfig):
        config = WorkerConfig.from_env()
    async with contextlib.AsyncExitStack() as stack:
        limiter = RedisLimiter(config.redis_url, config.rate_limits, key=config.shared_limit_key)
        await stack.enter_async_context(limiter)
        session = await stack.enter_async_context(config.session(limiter))
        sink = await PostgresSink.connect(config.postgres_url, config.schema)
        stack.push_async_callback(sink.aclose)
        redis = ctx.get("redis")
        if isinstance(redis, ArqRedis):
            # A worker started (with new keys, maybe): the jobs may try again.
            await redis.delete(stop_key(config.queue_name))
        timeout = ctx.get(JOB_TIMEOUT)
        ctx[RESOURCES] = WorkerResources(
            session,
            sink,
            config.transient_tries,
            config.concurrency,
            deadline=_deadline(timeout) if isinstance(timeout, (int, float)) else None,
            closing=stack.pop_all(),
        )


def _deadline(job_timeout: float) -> float:
    """A job's own deadline: its leads written by then, it is run again rather than failed."""
    return job_timeout - min(10.0, job_timeout / 10)


async def on_shutdown(ctx: dict[str, Any]) -> None:
    """arq's ``on_shutdown``: close what `on_startup` opened."""
    resources = ctx.pop(RESOURCES, None)
    if isinstance(resources, WorkerResources) and resources.closing is not None:
        await resources.closing.aclose()


async def crawl_leads(
    ctx: dict[str, Any], lead_ids: list[str], *, with_activities: bool = False
) -> dict[str, int]:
    """The crawl job: fetch the opportunities of ``lead_ids`` and write each lead to the
    sink as soon as it is fetched; return the counts of leads written, opportunities
    leads failed, and leads skipped as written by an earlier run.

    A job run again skips the leads it wrote since it was enqueued. A job that nears
    its ``job_timeout`` stops and runs again at once, rather than being failed by arq.
    A lead that fails for good (or for a passing reason, on the job's
    ``transient_tries``-th run) goes to the sink's failures and the job goes on. A
    failure of the whole account defers the job instead, keeping it in the queue:
    a spent quota until its ``retry_at``, an unreachable limiter for `LIMITER_RETRY`
    seconds, bad keys until a worker starts again (see `stop_key`).

    Raises:
        arq.Retry: to run the job again later, as above.
    """
    resources: WorkerResources = ctx[RESOURCES]
    job_id, job_try = str(ctx.get("job_id", "")), int(ctx.get("job_try", 1))
    redis = ctx.get("redis")
    queue = getattr(redis, "default_queue_name", None)
    stopped = stop_key(queue) if isinstance(queue, str) else None
    if stopped and isinstance(redis, ArqRedis) and await redis.exists(stopped):
        raise Retry(defer=STOPPED_RETRY)
    counts = {"leads": 0, "opportunities": 0, "failed": 0, "skipped": 0}
    since = ctx.get("enqueue_time")
    if job_try > 1 and isinstance(since, datetime.datetime):
        # Run again (its worker died, say): the leads it wrote already stay written.
        done = await resources.sink.leads_written(job_id, since)
        counts["skipped"] = len(set(lead_ids) & done)
        lead_ids = [lead_id for lead_id in lead_ids if lead_id not in done]
    passing: list[str] = []

    async def crawl() -> None:
        batch = resources.session.crawl_opportunities(
            lead_ids, concurrency=resources.concurrency, with_activities=with_activities
        )
        async with batch as results:
            async for result in results:
                if result.error is None:
                    await resources.sink.write_lead(
                        result, with_activities=with_activities, job_id=job_id, job_try=job_try
                    )
                    counts["leads"] += 1
                    counts["opportunities"] += len(result.records)
                elif _is_transient(result.error) and job_try < resources.transient_tries:
                    passing.append(result.lead_id)
                else:
                    line = f"{type(result.error).__name__}: {result.error}"
                    await resources.sink.write_failure(
                        result.lead_id, line, job_id=job_id, job_try=job_try
                    )
                    counts["failed"] += 1

    try:
        await asyncio.wait_for(crawl(), resources.deadline)
    except asyncio.TimeoutError:
        # Slower than its job_timeout allows: run again at once, for the leads not written.
        logger.warning(
            "job %s: out of time; %d leads written, it runs again", job_id, counts["leads"]
        )
        raise Retry() from None
    except QuotaExhaustedError as error:
        wait = error.retry_at - datetime.datetime.now(datetime.timezone.utc)
        logger.warning("job %s: %s; deferred until %s", job_id, error, error.retry_at)
        raise Retry(defer=max(wait.total_seconds(), 1.0)) from None
    except LeadSquaredError as error:
        if not error.account_wide:
            raise
        if error.transient or isinstance(error, RateLimiterUnavailableError):
            logger.warning("job %s: %s; deferred by %g s", job_id, error, LIMITER_RETRY)
            raise Retry(defer=LIMITER_RETRY) from None
        await _stop_account(ctx, stopped, error)
        raise Retry(defer=STOPPED_RETRY) from None
    if passing:
        # Run again, a little later, for these leads only: the others stay written.
        logger.warning("job %s: %d leads failed for now; it runs again", job_id, len(passing))
        raise Retry(defer=5.0 * job_try)
    return counts


def _is_transient(error: Exception) -> bool:
    return isinstance(error, LeadSquaredError) and error.transient


async def _stop_account(ctx: dict[str, Any], key: str | None, error: LeadSquaredError) -> None:
    """Hold every job of the queue back, and stop this worker if it can be stopped."""
    logger.error("stopping every crawl job of the queue: %s", error)
    redis = ctx.get("redis")
    if key is not None and isinstance(redis, ArqRedis):
        await redis.set(key, str(error))
    stop = ctx.get(STOP)
    if callable(stop):
        # After this job is put back in the queue: the worker then exits.
        asyncio.get_running_loop().call_soon(stop, str(error))


def job_id_of(queue_name: str, lead_ids: Iterable[str], with_activities: bool) -> str:
    """The job id of a batch: a hash of its queue, its lead ids and its options."""
    content = json.dumps([queue_name, "crawl_leads", list(lead_ids), with_activities])
    return "leadsq-crawl:" + hashlib.sha256(content.encode()).hexdigest()[:40]


async def enqueue_crawl(
    redis: ArqRedis,
    lead_ids: Iterable[str],
    *,
    batch: int = 50,
    with_activities: bool = False,
    queue_name: str | None = None,
    expires: float = KEEP_RESULT,
) -> list[str]:
    """Enqueue `crawl_leads` jobs of ``batch`` leads each; return the ids of the jobs added.

    Blank ids are skipped, and repeated ones taken once. Each job's id is derived from
    its batch (`job_id_of`): arq adds no job whose id it holds, queued, running or
    finished (for `KEEP_RESULT`), so enqueuing the same ids twice adds nothing.
    ``expires`` is how long a job may wait in the queue (a spent daily quota can defer
    jobs for a day).

    Raises:
        ValueError: ``batch`` is below 1.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    queue = queue_name or redis.default_queue_name
    ids = list(dict.fromkeys(text.strip() for text in lead_ids if text.strip()))
    added = []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        job_id = job_id_of(queue, chunk, with_activities)
        job = await redis.enqueue_job(
            "crawl_leads",
            chunk,
            with_activities=with_activities,
            _job_id=job_id,
            _queue_name=queue,
            _expires=expires,
        )
        if job is not None:
            added.append(job_id)
    return added


def worker_settings(
    config: WorkerConfig,
    *,
    batch: int = 50,
    max_jobs: int = 2,
    max_workers: int = 4,
    timeout: float | None = None,
    stop: Callable[[str], object] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The keyword arguments of ``arq.Worker`` for crawl workers with ``config``.

    ``job_timeout`` is ``timeout``, or `job_timeout` for ``batch`` leads a job and
    ``max_workers`` workers of ``max_jobs`` jobs at once each. ``stop(reason)``, if
    given, is called when the account's keys or host turn out wrong. ``overrides``
    are passed on to arq as they are (``burst``, ``poll_delay``...).
    """
    if timeout is None:
        timeout = job_timeout(config.rate_limits, batch=batch, jobs_at_once=max_workers * max_jobs)
    ctx: dict[str, Any] = {CONFIG: config, JOB_TIMEOUT: timeout}
    if stop is not None:
        ctx[STOP] = stop
    return {
        "functions": [crawl_leads],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(config.redis_url),
        "queue_name": config.queue_name,
        "max_jobs": max_jobs,
        "job_timeout": timeout,
        "keep_result": KEEP_RESULT,
        # Deferrals (a spent quota) and re-runs count as tries: failures of a lead are
        # counted by transient_tries instead.
        "max_tries": 1000,
        "ctx": ctx,
        **overrides,
    }
