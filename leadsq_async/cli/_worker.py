"""The ``worker`` and ``enqueue`` commands: crawls on an arq job queue (``leadsq_async.arq``).

``enqueue`` cuts a file of lead ids into jobs whose ids come from their content, so
that enqueuing it again adds nothing; ``worker`` runs an arq worker that crawls them
into PostgreSQL under the account's shared limit. Start as many workers as you like,
on as many hosts: see docs/processes.md. arq and psycopg are imported only when one
of the commands runs (the ``arq`` extra).
"""

from __future__ import annotations

import asyncio
import logging.config
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._ids import lines_to_ids, open_ids, source_of
from ._install import install_hint
from ._options import ApiOptions, api_options, leads_file_option, refuse_empty
from ._run import CommandFailed

if TYPE_CHECKING:
    from leadsq_async.arq import WorkerConfig

__all__ = ["enqueue", "worker"]

F = TypeVar("F", bound=Callable[..., Any])

_NEEDS_ARQ = f"this command needs arq and psycopg: {install_hint('arq')}"


def _queue_options(function: F) -> F:
    function = click.option(
        "--queue",
        envvar="LSQ_QUEUE",
        show_envvar=True,
        default="leadsq-async:crawl",
        show_default=True,
        metavar="NAME",
        help="The arq queue of the crawl jobs.",
    )(function)
    return click.option(
        "--redis",
        "redis_url",
        envvar="LSQ_REDIS_URL",
        show_envvar=True,
        default="redis://127.0.0.1:6379/0",
        show_default=True,
        metavar="URL",
        help="The Redis server of the queue, and of the account's shared rate limit.",
    )(function)


def _batch_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--batch",
        type=click.IntRange(min=1),
        default=50,
        show_default=True,
        metavar="N",
        help=help_text,
    )


@click.command()
@_queue_options
@click.option(
    "--postgres",
    "postgres_url",
    envvar="LSQ_POSTGRES_URL",
    show_envvar=True,
    required=True,
    metavar="URL",
    help="The PostgreSQL database the rows go to, such as postgresql://user@host/db.",
)
@click.option(
    "--schema",
    envvar="LSQ_POSTGRES_SCHEMA",
    show_envvar=True,
    default="leadsq",
    show_default=True,
    metavar="NAME",
    help="The schema of the tables leads, opportunities, activities and failed_leads.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="How many leads one job crawls at once [default: twice the rate limit's calls].",
)
@click.option(
    "--jobs",
    "max_jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="N",
    help="How many jobs this worker runs at once.",
)
@_batch_option("Leads per job, as enqueued: sizes the job timeout.")
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    metavar="N",
    help="The most workers that crawl for the account at once: sizes the job timeout.",
)
@click.option(
    "--job-timeout",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="How long a job may run [default: long enough for every worker's jobs at once, "
    "at the rate limit, twice over]. A job whose worker died runs again this long (plus "
    "10 s) after it started.",
)
@click.option(
    "--poll-delay",
    type=click.FloatRange(min=0.001),
    default=0.5,
    show_default=True,
    metavar="SECONDS",
    help="How long a worker with a free job slot waits before looking at the queue again.",
)
@click.option(
    "--limit-key",
    envvar="LSQ_LIMIT_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The Redis key of the shared rate limit [default: one per access key].",
)
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@api_options
def worker(
    redis_url: str,
    queue: str,
    postgres_url: str,
    schema: str,
    concurrency: int | None,
    max_jobs: int,
    batch: int,
    max_workers: int,
    job_timeout: float | None,
    poll_delay: float,
    limit_key: str | None,
    burst: bool,
    api: ApiOptions,
) -> int:
    """Run an arq worker that crawls the enqueued leads into PostgreSQL.

    Each lead's rows are committed as it is fetched, in one transaction; a job
    run twice writes them once. A job whose worker was killed is run again by
    another. A spent quota defers the jobs until it allows more; bad keys or
    host hold every job of the queue back and stop the worker (exit code 1)
    until a worker starts again. SIGTERM or Ctrl-C puts the running jobs back.
    """
    config = _config(api, redis_url, queue, postgres_url, schema, concurrency, limit_key)
    try:
        from arq.logs import default_log_config
        from arq.worker import Worker

        from leadsq_async.arq import worker_settings
    except ImportError:
        raise CommandFailed(_NEEDS_ARQ) from None
    logging.config.dictConfig(default_log_config(verbose=False))
    stopped: list[str] = []
    # arq's Worker takes the event loop it finds, or makes one: give it its own.
    asyncio.set_event_loop(asyncio.new_event_loop())

    def stop(reason: str) -> None:
        stopped.append(reason)
        arq_worker.handle_sig(signal.SIGTERM)

    settings = worker_settings(
        config,
        batch=batch,
        max_jobs=max_jobs,
        max_workers=max_workers,
        timeout=job_timeout,
        stop=stop,
        burst=burst,
        poll_delay=poll_delay,
    )
    arq_worker = Worker(**settings)
    arq_worker.run()
    if stopped:
        raise CommandFailed(
            f"{stopped[0]}; every crawl job of queue {queue} is held back until a worker "
            "starts again"
        )
    return 0


def _config(
    api: ApiOptions,
    redis_url: str,
    queue: str,
    postgres_url: str,
    schema: str,
    concurrency: int | None,
    limit_key: str | None,
) -> WorkerConfig:
    if not api.access_key:
        raise click.UsageError("no access key: pass --access-key or set LSQ_ACCESS_KEY")
    if not api.secret_key:
        raise click.UsageError("no secret key: set LSQ_SECRET_KEY or pass --secret-key")
    try:
        from leadsq_async.arq import WorkerConfig
    except ImportError:
        raise CommandFailed(_NEEDS_ARQ) from None
    return WorkerConfig(
        access_key=api.access_key,
        secret_key=api.secret_key,
        postgres_url=postgres_url,
        host=api.host,
        rate_limits=api.rate_limits,
        redis_url=redis_url,
        limit_key=limit_key,
        queue_name=queue,
        schema=schema,
        concurrency=concurrency,
        timeout=api.timeout,
        max_attempts=api.max_attempts,
        request_deadline=api.request_deadline,
    )


@click.command()
@leads_file_option("enqueue")
@click.option(
    "--with-activities",
    is_flag=True,
    help="The jobs also fetch every opportunity's activities.",
)
@_batch_option("Leads per job.")
@_queue_options
def enqueue(
    leads_file: str,
    allow_empty: bool,
    with_activities: bool,
    batch: int,
    redis_url: str,
    queue: str,
) -> int:
    """Enqueue crawl jobs of --batch leads each, for ``leadsq-async worker`` to run.

    Each job's id comes from its leads: enqueuing the same file again adds no job
    that is queued, running, or finished in the last week.
    """
    try:
        from arq.connections import RedisSettings, create_pool

        from leadsq_async.arq import enqueue_crawl
    except ImportError:
        raise CommandFailed(_NEEDS_ARQ) from None
    file = open_ids(leads_file)
    try:
        ids = list(dict.fromkeys(lines_to_ids(file, source_of(file))))
    finally:
        if file is not sys.stdin:
            file.close()
    refuse_empty(len(ids), leads_file, allow_empty)

    async def work() -> list[str]:
        redis = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue)
        try:
            return await enqueue_crawl(redis, ids, batch=batch, with_activities=with_activities)
        finally:
            await redis.aclose()

    added = asyncio.run(work())
    jobs = -(-len(ids) // batch)
    click.echo(
        f"enqueued {len(added)} of {jobs} jobs ({len(ids)} leads, up to {batch} a job) on "
        f"{queue}; {jobs - len(added)} were there already"
    )
    return 0
