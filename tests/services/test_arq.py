"""leadsq_async.arq and the ``worker``/``enqueue`` commands, against the real Redis and PostgreSQL.

Each test has a queue name and a PostgreSQL schema of its own, removed after it. The job
function is run in process against the session's emulator (through arq's ``ctx`` as a
worker would build it); `test_three_workers_one_killed` runs real worker processes
(``leadsq-async worker``), kills one with SIGKILL mid-job and starts one late, on a rate
limit scaled down in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("arq")
pytest.importorskip("psycopg")

import psycopg
from arq import Retry
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job

import leadsq_async as lsq
from leadsq_async.arq import (
    LIMITER_RETRY,
    RESOURCES,
    STOP,
    STOPPED_RETRY,
    PostgresSink,
    WorkerConfig,
    WorkerResources,
    crawl_leads,
    enqueue_crawl,
    job_id_of,
    job_timeout,
    on_shutdown,
    on_startup,
    stop_key,
)
from leadsq_async.cli._app import main
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema name of this test's own, dropped after it."""
    name = f"lsq_arq_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An arq pool whose default queue is this test's own; its keys are deleted after it."""
    name = f"lsq-test-arq:{uuid.uuid4().hex}"
    redis = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=name)
    try:
        yield redis
    finally:
        job_ids = [job.job_id for job in await redis.queued_jobs()]
        job_ids += [result.job_id for result in await redis.all_job_results()]
        names = [
            f"arq:{kind}:{job_id}"
            for job_id in job_ids
            if job_id
            for kind in ("job", "result", "retry", "in-progress")
        ]
        await redis.delete(name, stop_key(name), f"{name}:health-check", *names)
        await redis.aclose()


async def delete_keys(redis: ArqRedis, prefix: str) -> None:
    """Delete the keys of a shared limit (they would expire, the state after a week)."""
    names = [name async for name in redis.scan_iter(match=f"{prefix}*")]
    if names:
        await redis.delete(*names)


def rows(postgres_url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres_url) as connection:
        return connection.execute(statement).fetchall()


def small_leads(data: Dataset) -> list[str]:
    """The leads of one to three opportunities."""
    return [lead for lead, found in data.opportunities.items() if 1 <= len(found) <= 3]


@contextlib.asynccontextmanager
async def job_context(
    emulator: RunningEmulator,
    postgres_url: str,
    schema: str,
    redis: ArqRedis | None = None,
    *,
    secret_key: str | None = None,
    rate_limit: lsq.RateLimit | list[lsq.RateLimit] | lsq.RateLimiter | None = None,
    job_try: int = 1,
    enqueue_time: datetime.datetime | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """arq's ``ctx`` for one run of a job, as `on_startup` fills it, on the emulator."""
    session = lsq.Session(
        emulator.access_key,
        secret_key or emulator.secret_key,
        host=emulator.url,
        rate_limit=None if isinstance(rate_limit, lsq.RateLimiter) else rate_limit,
        limiter=rate_limit if isinstance(rate_limit, lsq.RateLimiter) else None,
        retry=lsq.RetryPolicy(attempts=2, deadline=5.0),
    )
    async with session, await PostgresSink.connect(postgres_url, schema) as sink:
        ctx: dict[str, Any] = {
            RESOURCES: WorkerResources(session, sink),
            "job_id": "test-job",
            "job_try": job_try,
            "enqueue_time": enqueue_time or datetime.datetime.now(datetime.timezone.utc),
        }
        if redis is not None:
            ctx["redis"] = redis
        yield ctx


# Enqueuing.


async def test_enqueuing_twice_adds_nothing(queue: ArqRedis) -> None:
    """Job ids come from the batches: the second enqueue of the same ids adds no job."""
    ids = [f"lead-{number}" for number in range(7)]
    first = await enqueue_crawl(queue, [*ids, " ", ids[0]], batch=3)
    assert len(first) == 3
    assert await enqueue_crawl(queue, ids, batch=3) == []
    queued = await queue.queued_jobs()
    assert sorted(job.job_id or "" for job in queued) == sorted(first)
    assert sorted(len(job.args[0]) for job in queued) == [1, 3, 3]
    # Other options, other jobs.
    assert len(await enqueue_crawl(queue, ids, batch=3, with_activities=True)) == 3
    assert job_id_of("a", ["x"], False) != job_id_of("b", ["x"], False)


async def test_enqueue_command_twice_adds_nothing(
    queue: ArqRedis, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``leadsq-async enqueue`` enqueues the file's leads in batches, and again nothing."""
    leads = tmp_path / "leads.txt"
    leads.write_text("".join(f"lead-{number}\n" for number in range(5)) + "\nlead-0\n")
    arguments = ["enqueue", "--leads-file", str(leads), "--batch", "2"]
    arguments += ["--redis", redis_url, "--queue", queue.default_queue_name]
    assert await asyncio.to_thread(main, arguments) == 0
    assert "enqueued 3 of 3 jobs (5 leads" in capsys.readouterr().out
    assert await asyncio.to_thread(main, arguments) == 0
    assert "enqueued 0 of 3 jobs" in capsys.readouterr().out
    assert len(await queue.queued_jobs()) == 3


def test_job_timeout_fits_every_job_at_once() -> None:
    """The timeout covers all the jobs running at once at the account's rate, twice over."""
    limit = lsq.RateLimit(25, 5.0)
    alone = job_timeout(limit, batch=50, jobs_at_once=1, requests_per_lead=1)
    assert alone == 2 * limit.least_time(50) + 10
    shared = job_timeout([limit, lsq.RateLimit(1000, 3600)], batch=50, jobs_at_once=8)
    assert shared == 2 * lsq.least_time([limit, lsq.RateLimit(1000, 3600)], 800) + 10
    with pytest.raises(ValueError, match="at least 1"):
        job_timeout(limit, batch=0, jobs_at_once=1)


# The job.


async def test_a_job_run_twice_writes_its_rows_once(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """Run twice (enqueued again, say), a job leaves each opportunity and activity once;
    run again after its worker died, it skips the leads it wrote."""
    leads = small_leads(lsq_emulator.data)[:3]
    expected = {
        row["OpportunityId"]: lead
        for lead in leads
        for row in lsq_emulator.data.opportunities[lead]
    }
    activities = {
        row["ProspectActivityId"] for key in expected for row in lsq_emulator.data.activities[key]
    }
    enqueued = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    for job_try in (1, 2):
        async with job_context(lsq_emulator, postgres_url, schema, job_try=job_try) as ctx:
            counts = await crawl_leads(ctx, leads, with_activities=True)
        assert counts == {"leads": 3, "opportunities": len(expected), "failed": 0, "skipped": 0}
    sent = lsq_emulator.stats.total
    rerun = job_context(lsq_emulator, postgres_url, schema, job_try=3, enqueue_time=enqueued)
    async with rerun as ctx:
        assert (await crawl_leads(ctx, leads))["skipped"] == 3
    assert lsq_emulator.stats.total == sent
    stored = rows(postgres_url, f"SELECT opportunity_id, lead_id FROM {schema}.opportunities")
    assert sorted(stored) == sorted(expected.items())
    stored_activities = rows(postgres_url, f"SELECT activity_id FROM {schema}.activities")
    assert sorted(row[0] for row in stored_activities) == sorted(activities)
    assert rows(postgres_url, f"SELECT DISTINCT job_try FROM {schema}.leads") == [(2,)]
    record = rows(postgres_url, f"SELECT record FROM {schema}.opportunities LIMIT 1")[0][0]
    assert record in lsq_emulator.data.opportunities[expected[record["OpportunityId"]]]


async def test_a_rerun_drops_the_rows_the_api_no_longer_lists(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """A lead's rows are replaced as a whole: an opportunity gone since is deleted."""
    lead = next(lead for lead, found in lsq_emulator.data.opportunities.items() if len(found) > 1)
    async with job_context(lsq_emulator, postgres_url, schema) as ctx:
        await crawl_leads(ctx, [lead])
        gone = lsq_emulator.data.opportunities[lead].pop()
        await crawl_leads(ctx, [lead])
    stored = rows(postgres_url, f"SELECT opportunity_id FROM {schema}.opportunities")
    assert gone["OpportunityId"] not in {row[0] for row in stored}
    assert len(stored) == len(lsq_emulator.data.opportunities[lead])


async def test_a_lead_is_one_statement_and_keeps_the_last_row_of_an_id(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """`PostgresSink.write_lead` sends one statement a lead (one round trip, one
    transaction); an id listed twice keeps its last row, and rows gone are dropped."""
    data = lsq_emulator.data
    lead = next(lead for lead, found in data.opportunities.items() if len(found) > 1)
    first, second = (lsq.structure(row, lsq.Opportunity) for row in data.opportunities[lead][:2])
    again = lsq.structure({**data.opportunities[lead][0], "Status": "Won again"}, lsq.Opportunity)
    activities = {
        record.opportunity_id: [
            lsq.structure(row, lsq.Activity) for row in data.activities[record.opportunity_id]
        ]
        for record in (first, second)
    }
    assert sum(map(len, activities.values())) > 1
    async with await PostgresSink.connect(postgres_url, schema) as sink:
        sent: list[object] = []
        execute = sink._connection.execute

        async def counted(query: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append(query)
            return await execute(query, params, **kwargs)

        sink._connection.execute = counted  # type: ignore[method-assign]
        result = lsq.LeadResult(lead, [first, second, again], activities)
        await sink.write_lead(result, with_activities=True, job_id="j", job_try=1)
        assert len(sent) == 1
        statuses = f"SELECT opportunity_id, record->>'Status' FROM {schema}.opportunities"
        assert sorted(rows(postgres_url, statuses)) == sorted(
            [(first.opportunity_id, "Won again"), (second.opportunity_id, second.status)]
        )
        # Written again with one opportunity and one activity fewer.
        kept = {first.opportunity_id: activities[first.opportunity_id][1:]}
        result = lsq.LeadResult(lead, [first], kept)
        await sink.write_lead(result, with_activities=True, job_id="j", job_try=2)
    assert rows(postgres_url, statuses) == [(first.opportunity_id, first.status)]
    stored_activities = rows(postgres_url, f"SELECT activity_id FROM {schema}.activities")
    assert sorted(row[0] for row in stored_activities) == sorted(
        activity.activity_id for activity in kept[first.opportunity_id]
    )
    assert rows(postgres_url, f"SELECT opportunities, job_try FROM {schema}.leads") == [(1, 2)]


async def test_a_lead_that_fails_for_good_is_recorded_once(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """A lead the API refuses goes to failed_leads; the job finishes, and is not retried."""
    good = small_leads(lsq_emulator.data)[0]
    async with job_context(lsq_emulator, postgres_url, schema) as ctx:
        counts = await crawl_leads(ctx, [good, "no-such-lead"])
    assert counts["leads"] == 1
    assert counts["failed"] == 1
    failed = rows(postgres_url, f"SELECT lead_id, error FROM {schema}.failed_leads")
    assert [row[0] for row in failed] == ["no-such-lead"]
    assert "does not exist" in failed[0][1]
    # Once it exists and is crawled, its failure is gone.
    lsq_emulator.data.opportunities["no-such-lead"] = []
    async with job_context(lsq_emulator, postgres_url, schema) as ctx:
        await crawl_leads(ctx, ["no-such-lead"])
    assert rows(postgres_url, f"SELECT lead_id FROM {schema}.failed_leads") == []


async def test_a_lead_failing_for_now_reruns_the_job_then_is_recorded(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """A server error defers the job; on its third run the lead is recorded as failed."""
    lsq_emulator.config.fault_rate = 1.0
    lsq_emulator.config.fault_kinds = {"500"}
    lead = small_leads(lsq_emulator.data)[0]
    async with job_context(lsq_emulator, postgres_url, schema) as ctx:
        with pytest.raises(Retry):
            await crawl_leads(ctx, [lead])
    assert rows(postgres_url, f"SELECT lead_id FROM {schema}.failed_leads") == []
    async with job_context(lsq_emulator, postgres_url, schema, job_try=3) as ctx:
        assert (await crawl_leads(ctx, [lead]))["failed"] == 1
    assert rows(postgres_url, f"SELECT lead_id FROM {schema}.failed_leads") == [(lead,)]


async def test_a_spent_quota_defers_the_job_until_it_allows_more(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """No slot before the request deadline: the job is deferred to the quota's retry_at,
    with the leads the quota allowed written (the rerun skips them)."""
    leads = small_leads(lsq_emulator.data)[:4]
    quota = [lsq.RateLimit(25, 5.0), lsq.RateLimit(2, 3600.0)]
    async with job_context(lsq_emulator, postgres_url, schema, rate_limit=quota) as ctx:
        with pytest.raises(Retry) as caught:
            await crawl_leads(ctx, leads)
    assert caught.value.defer_score is not None
    assert 3500_000 < caught.value.defer_score <= 3600_000
    assert lsq_emulator.stats.total == 2
    written = rows(postgres_url, f"SELECT lead_id FROM {schema}.leads")
    assert len(written) == 2
    assert {row[0] for row in written} <= set(leads)


async def test_an_unreachable_limiter_defers_the_job(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str
) -> None:
    """The shared limiter's Redis is down: nothing is sent, the job tries again later."""
    limiter = lsq.RedisLimiter("redis://127.0.0.1:1/0", key="lsq-test-arq:down")
    async with (
        limiter,
        job_context(lsq_emulator, postgres_url, schema, rate_limit=limiter) as ctx,
    ):
        with pytest.raises(Retry) as caught:
            await crawl_leads(ctx, small_leads(lsq_emulator.data)[:2])
    assert caught.value.defer_score == LIMITER_RETRY * 1000
    assert lsq_emulator.stats.total == 0


async def test_bad_keys_hold_every_job_back_until_a_worker_starts(
    lsq_emulator: RunningEmulator, postgres_url: str, schema: str, queue: ArqRedis, redis_url: str
) -> None:
    """A job meeting bad keys stops its worker and holds every other job back unsent;
    a worker that starts (with good keys) lets them run again."""
    leads = small_leads(lsq_emulator.data)[:3]
    stopped: list[str] = []
    bad = job_context(lsq_emulator, postgres_url, schema, queue, secret_key="wrong")
    async with bad as ctx:
        ctx[STOP] = stopped.append
        with pytest.raises(Retry) as caught:
            await crawl_leads(ctx, leads)
        await asyncio.sleep(0)  # the stop is called once the job is back in the queue
    assert caught.value.defer_score == STOPPED_RETRY * 1000
    assert len(stopped) == 1
    assert "401" in stopped[0] or "key" in stopped[0].lower()
    assert "wrong" not in stopped[0]
    assert await queue.exists(stop_key(queue.default_queue_name))
    sent = lsq_emulator.stats.total
    async with job_context(lsq_emulator, postgres_url, schema, queue) as ctx:
        with pytest.raises(Retry):
            await crawl_leads(ctx, leads)
    assert lsq_emulator.stats.total == sent
    config = WorkerConfig(
        access_key=lsq_emulator.access_key,
        secret_key=lsq_emulator.secret_key,
        postgres_url=postgres_url,
        host=lsq_emulator.url,
        # A new shared key grants nothing for one period: a short one.
        rate_limits=(lsq.RateLimit(25, 0.2),),
        redis_url=redis_url,
        limit_key=f"{queue.default_queue_name}:limit",
        queue_name=queue.default_queue_name,
        schema=schema,
    )
    ctx = {"leadsq_async_config": config, "redis": queue, "job_id": "j", "job_try": 1}
    await on_startup(ctx)
    try:
        assert not await queue.exists(stop_key(queue.default_queue_name))
        assert (await crawl_leads(ctx, leads))["leads"] == 3
    finally:
        await on_shutdown(ctx)
        await delete_keys(queue, f"{queue.default_queue_name}:limit")


def test_config_from_the_environment() -> None:
    """The worker reads the crawl command's variables, and refuses without keys."""
    config = WorkerConfig.from_env(
        {
            "LSQ_ACCESS_KEY": "u$access",
            "LSQ_SECRET_KEY": "secret",
            "LSQ_POSTGRES_URL": "postgresql://db/x",
            "LSQ_RATE_LIMIT": "10/5 10000/1d",
            "LSQ_QUEUE": "q",
        }
    )
    assert config.rate_limits == (lsq.RateLimit(10, 5), lsq.RateLimit(10_000, 86_400))
    assert config.shared_limit_key == "leadsq-async:ratelimit:u$access"
    assert config.queue_name == "q"
    assert "secret" not in repr(config)
    with pytest.raises(ValueError, match="LSQ_SECRET_KEY"):
        WorkerConfig.from_env({"LSQ_ACCESS_KEY": "a", "LSQ_POSTGRES_URL": "x"})


# Worker processes.

SCALE = 0.01  # LeadSquared's 25 calls per 5 s, 100 times faster: 25 per 0.05 s
CALLS, PERIOD = 25, 5.0 * SCALE
LEADS = 2000  # 2,000 requests: 4 s at that rate, 8 to 12 s as the workers' CPU allows
BATCH = 50
JOB_TIMEOUT = 4.0  # arq re-runs a dead worker's job this long, plus 10 s, after it started
ARQ_GRACE = 10.0  # arq's own margin on the in-progress key, which no option scales
POLL_DELAY = 0.05  # arq's 0.5 s between looks at the queue, scaled: a job lasts about 1 s


def light_dataset(leads: int) -> Dataset:
    """The generated shapes (leads of 0 to 5 opportunities), and leads of one opportunity
    each up to ``leads``: a tenth of the time of generating that many ordinary leads."""
    data = Dataset.generate(22, thousands=0, page_size=1, hundreds=0, other_leads=0)
    for number in range(1, leads - len(data.opportunities) + 1):
        data.add_opportunity(str(uuid.UUID(int=number)))
    return data


class WorkerProcess:
    """A ``leadsq-async worker`` process, its log read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            started = re.search(r"→ (leadsq-crawl:[0-9a-f]+):crawl_leads", line)
            if started:
                self.started.put_nowait(started.group(1))

    def finished(self, job_id: str) -> bool:
        return any(f"{job_id}:crawl_leads ●" in line for line in self.lines)


def drain(started: asyncio.Queue[str]) -> list[str]:
    return [started.get_nowait() for _ in range(started.qsize())]


async def lead_written(postgres_url: str, schema: str, job_id: str) -> None:
    """Return once job ``job_id`` has written a lead."""
    query = f"SELECT 1 FROM {schema}.leads WHERE job_id = %s LIMIT 1"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as connection:
        while True:
            cursor = await connection.execute(query, (job_id,))
            if await cursor.fetchone():
                return
            await asyncio.sleep(0.005)  # PostgreSQL tells nobody of a row: look again


async def expire_sooner(redis: ArqRedis, job_ids: list[str], dead: WorkerProcess) -> None:
    """Scale arq's margin too: the in-progress keys of the dead worker's jobs, which arq
    set to expire ``JOB_TIMEOUT + ARQ_GRACE`` seconds after each job started, expire
    ``ARQ_GRACE`` seconds sooner (``ARQ_GRACE * SCALE`` after the job's timeout). The
    first job must have one; another may have finished."""
    for number, job_id in enumerate(job_ids):
        key = f"arq:in-progress:{job_id}"
        left = await redis.pttl(key)
        if number and (dead.finished(job_id) or left < 0):
            continue
        assert ARQ_GRACE * 1000 < left <= (JOB_TIMEOUT + ARQ_GRACE) * 1000, (job_id, left)
        await redis.pexpire(key, int(left - ARQ_GRACE * 1000 * (1 - SCALE)))


async def start_worker(
    emulator: RunningEmulator, arguments: list[str], secret_key: str | None = None
) -> WorkerProcess:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LSQ_ACCESS_KEY": emulator.access_key,
        "LSQ_SECRET_KEY": secret_key or emulator.secret_key,
        "LSQ_HOST": emulator.url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "leadsq_async.cli", "worker", *arguments),
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return WorkerProcess(process)


@pytest.mark.slow
async def test_three_workers_one_killed(
    queue: ArqRedis, redis_url: str, postgres_url: str, schema: str
) -> None:
    """2,000 leads, three workers on one shared limit: one killed with SIGKILL mid-job, one
    started late. Every opportunity lands once, the server refuses nothing (the limit was
    reached), the dead worker's jobs run again, and the late worker takes jobs too."""
    data = light_dataset(LEADS)
    config = EmulatorConfig(rate_limit_calls=CALLS, rate_limit_period=PERIOD)
    name = queue.default_queue_name
    arguments = [
        *("--redis", redis_url, "--queue", name, "--postgres", postgres_url),
        *("--schema", schema, "--rate-limit", f"{CALLS}/{PERIOD}", "--limit-key", f"{name}:limit"),
        *("--job-timeout", str(JOB_TIMEOUT), "--jobs", "2", "--burst"),
        *("--poll-delay", str(POLL_DELAY)),
    ]
    with serve_in_thread(EmulatorApp(data.copy(), config)) as emulator:
        jobs = await enqueue_crawl(queue, list(data.opportunities), batch=BATCH)
        assert len(jobs) == -(-len(data.opportunities) // BATCH)
        workers = [await start_worker(emulator, arguments) for _ in range(2)]
        doomed, steady = workers
        try:
            killed_job = await asyncio.wait_for(doomed.started.get(), 30)
            # Mid-job: as soon as one of its leads is written.
            await asyncio.wait_for(lead_written(postgres_url, schema, killed_job), 30)
            doomed.process.send_signal(signal.SIGKILL)
            workers.append(late := await start_worker(emulator, arguments))
            await doomed.process.wait()
            await doomed.reader
            assert not doomed.finished(killed_job)
            await expire_sooner(queue, [killed_job, *drain(doomed.started)], doomed)
            codes = await asyncio.wait_for(
                asyncio.gather(steady.process.wait(), late.process.wait()), 60
            )
        finally:
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.send_signal(signal.SIGKILL)
                    await worker.process.wait()
                await worker.reader
        assert list(codes) == [0, 0], "".join(steady.lines + late.lines)[-3000:]
        stats = emulator.stats
    assert stats.rate_limited == 0
    # Not for want of trying: some window of the limit saw most of its calls.
    assert stats.most_accepted_in_window > CALLS // 2
    stored = rows(postgres_url, f"SELECT opportunity_id, lead_id FROM {schema}.opportunities")
    expected = [
        (row["OpportunityId"], lead) for lead, found in data.opportunities.items() for row in found
    ]
    assert len(stored) == len(expected)
    assert sorted(stored) == sorted(expected)
    done = rows(postgres_url, f"SELECT count(*) FROM {schema}.leads")
    assert done == [(len(data.opportunities),)]
    reruns = 0
    for job_id in jobs:
        info = await Job(job_id, queue, _queue_name=name).result_info()
        assert info is not None
        assert info.success, info.result
        reruns += info.job_try - 1
        if job_id == killed_job:
            assert info.job_try >= 2
    # A job run again fetches at most its leads not written yet (a job that runs out of
    # time on a loaded machine is run again too, at once).
    assert len(data.opportunities) <= stats.total <= len(data.opportunities) + BATCH * reruns
    # The dead worker's job ran again, from start to end, in another worker.
    assert steady.finished(killed_job) or late.finished(killed_job)
    assert not late.started.empty()
    # Its leads written before the kill stayed; the others were written by its second run.
    tries = rows(
        postgres_url,
        f"SELECT job_try, count(*) FROM {schema}.leads WHERE job_id = '{killed_job}' "
        "GROUP BY job_try ORDER BY job_try",
    )
    assert sum(count for _, count in tries) == BATCH
    assert [job_try for job_try, _ in tries] == [1, 2]


@pytest.mark.slow
async def test_a_worker_meeting_bad_keys_exits_and_keeps_the_jobs(
    lsq_emulator: RunningEmulator, queue: ArqRedis, redis_url: str, postgres_url: str, schema: str
) -> None:
    """``leadsq-async worker`` with a wrong secret key: it exits with code 1 saying why, the
    job stays queued, and the queue's stop mark holds the other workers' jobs back."""
    leads = small_leads(lsq_emulator.data)
    jobs = await enqueue_crawl(queue, leads, batch=10)
    name = queue.default_queue_name
    arguments = [
        *("--redis", redis_url, "--queue", name, "--postgres", postgres_url),
        *("--schema", schema, "--rate-limit", "25/0.2", "--limit-key", f"{name}:limit"),
    ]
    worker = await start_worker(lsq_emulator, arguments, secret_key="not-the-secret-4711")
    try:
        code = await asyncio.wait_for(worker.process.wait(), 60)
    finally:
        if worker.process.returncode is None:
            worker.process.send_signal(signal.SIGKILL)
            await worker.process.wait()
        await worker.reader
        await delete_keys(queue, f"{name}:limit")
    output = "".join(worker.lines)
    assert code == 1, output
    assert f"every crawl job of queue {name} is held back until a worker starts again" in output
    assert "not-the-secret-4711" not in output
    assert [job.job_id for job in await queue.queued_jobs()] == jobs
    assert await queue.exists(stop_key(name))
    assert 1 <= lsq_emulator.stats.total <= len(leads)
