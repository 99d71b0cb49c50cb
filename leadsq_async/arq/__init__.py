"""Crawls on an arq job queue: many worker processes, on many hosts, one account's limit.

Add `crawl_leads`, `on_startup` and `on_shutdown` to your arq ``WorkerSettings`` (or
build them all with `worker_settings`, as ``leadsq-async worker`` does), and enqueue
batches of lead ids with `enqueue_crawl`. Each worker process opens one `Session` on
the account's shared `RedisLimiter` and writes each lead's rows, as it is fetched, to
a `Sink`: `PostgresSink` upserts them in one transaction per lead, so a job run twice
writes its rows once. A job whose worker died runs again once arq's in-progress key
expires (`job_timeout` sizes it). Needs ``pip install "leadsq-async[arq]"``; see
docs/processes.md::

    from leadsq_async.arq import WorkerConfig, worker_settings

    WorkerSettings = worker_settings(WorkerConfig.from_env())   # python -m arq ...
"""

from leadsq_async.arq._jobs import (
    CONFIG,
    KEEP_RESULT,
    LIMITER_RETRY,
    RESOURCES,
    STOP,
    STOPPED_RETRY,
    WorkerResources,
    crawl_leads,
    enqueue_crawl,
    job_id_of,
    on_shutdown,
    on_startup,
    stop_key,
    worker_settings,
)
from leadsq_async.arq._postgres import TABLES, PostgresSink, Sink
from leadsq_async.arq._settings import DEFAULT_QUEUE, WorkerConfig, job_timeout, read_rate_limits

__all__ = [
    "CONFIG",
    "DEFAULT_QUEUE",
    "KEEP_RESULT",
    "LIMITER_RETRY",
    "RESOURCES",
    "STOP",
    "STOPPED_RETRY",
    "TABLES",
    "PostgresSink",
    "Sink",
    "WorkerConfig",
    "WorkerResources",
    "crawl_leads",
    "enqueue_crawl",
    "job_id_of",
    "job_timeout",
    "on_shutdown",
    "on_startup",
    "read_rate_limits",
    "stop_key",
    "worker_settings",
]
