"""RedisLimiter against the real Redis server on 127.0.0.1:6379.

Times are read from Redis' clock (``TIME``), the clock the limiter keeps to. The
rule under test, for every limit: a slot is held from its grant until `period`
after its release, and never more than `calls` at once, in one process or across
several. The crawl tests check the outcome the rule is for, as the emulator's
strict window counts it: worker processes crawling through one shared limiter
draw no rate-limit answer.

Limits of a day are tested on a `ClockedLimiter`, whose scripts read a
`JumpingClock` that the test moves ahead, against the same real Redis; asking
with ``max_wait=0`` then tells at once whether a slot is free, and which limit
is in the way. Waits that are the process's own (the fallback's) run on that
clock or in virtual time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis_worker import all_events, give_the_go, next_event, start_worker
from tcp_proxy import TcpProxy

import leadsq_async as lsq
from leadsq_async._limits import MOST_LEARNED_LIMITS
from leadsq_async._redis_scripts import BUCKETS
from leadsq_async.testing import RunningEmulator

pytestmark = pytest.mark.redis

UNREACHABLE_URL = "redis://:hunter2@127.0.0.1:1/0"

MakeLimiter = Callable[..., lsq.RedisLimiter]


@pytest.fixture
def key(redis_url: str) -> Iterator[str]:
    """A key no other test uses, already in use; its Redis keys are deleted afterwards.

    In use: its state is there, as for a key that processes keep using, so its
    first slot is not held back the way a new key's is (tested on its own).
    """
    name = f"leadsq-async:test:{uuid.uuid4().hex}"
    cleaner = redis.Redis.from_url(redis_url)
    try:
        cleaner.hset(f"{name}:state", "epoch", "in-use")
        cleaner.expire(f"{name}:state", 600)
        yield name
        names = cleaner.keys(f"{name}*")
        if names:
            cleaner.delete(*names)
    finally:
        cleaner.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A redis.asyncio client of the test's own."""
    connection = aioredis.from_url(redis_url)
    yield connection
    await connection.aclose()


class JumpingClock:
    """Real time, plus whatever the test skipped ahead: a day passes in a call."""

    def __init__(self, real: Callable[[], float] = time.time) -> None:
        self._real = real
        self._skipped = 0.0

    def __call__(self) -> float:
        return self._real() + self._skipped

    def skip(self, seconds: float) -> None:
        """Move the clock `seconds` ahead."""
        self._skipped += seconds


class ClockedLimiter(lsq.RedisLimiter):
    """A RedisLimiter whose scripts read ``clock`` (Unix time) instead of Redis' TIME."""

    def __init__(self, *args: Any, clock: JumpingClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_clock = clock

    def _shared_now(self) -> int:
        return round(self.shared_clock() * 1_000_000)


@pytest.fixture
async def make_limiter(redis_url: str, key: str) -> AsyncIterator[MakeLimiter]:
    """Make limiters on the test's key (each with its own client); all closed afterwards.

    ``make(calls, period)`` keeps to one limit; ``make(limits=[...])`` to several;
    ``make(kind=ClockedLimiter, clock=JumpingClock())`` to a clock of the test's.
    """
    made: list[lsq.RedisLimiter] = []

    def make(
        calls: int = 3,
        period: float = 0.3,
        *,
        limits: Sequence[lsq.RateLimit] | None = None,
        kind: type[lsq.RedisLimiter] = lsq.RedisLimiter,
        **options: Any,
    ) -> lsq.RedisLimiter:
        options.setdefault("key", key)
        rate_limit = list(limits) if limits is not None else lsq.RateLimit(calls, period)
        limiter = kind(options.pop("redis", redis_url), rate_limit, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


def now() -> float:
    """The running loop's clock: the limiter's own."""
    return asyncio.get_running_loop().time()


def jump_the_loop_clock(monkeypatch: pytest.MonkeyPatch) -> JumpingClock:
    """Make the running loop's clock, which the limiter keeps to, skip ahead on demand."""
    loop = asyncio.get_running_loop()
    clock = JumpingClock(loop.time)
    monkeypatch.setattr(loop, "time", clock)
    return clock


async def redis_now(client: aioredis.Redis) -> float:
    seconds, microseconds = await client.time()
    return float(seconds + microseconds / 1_000_000)


def most_held_at_once(spans: list[tuple[float, float]], period: float) -> int:
    """Most slots held at one instant, each held over [enter, exit + period)."""
    changes = sorted(
        [(enter, 1) for enter, _ in spans] + [(exit_ + period, -1) for _, exit_ in spans]
    )
    held = most = 0
    for _, change in changes:  # at a tie, -1 sorts first: the spans are half-open
        held += change
        most = max(most, held)
    return most


def through(proxy: TcpProxy, redis_url: str) -> str:
    """`redis_url` with its host and port replaced by the proxy's."""
    where = urlsplit(redis_url)
    password, _, _ = where.netloc.rpartition("@")
    netloc = f"{password}@127.0.0.1:{proxy.port}" if password else f"127.0.0.1:{proxy.port}"
    return urlunsplit(where._replace(netloc=netloc))


async def held_in_redis(client: aioredis.Redis, key: str) -> int:
    """How many slots are in flight in Redis on `key` (released ones not counted)."""
    return int(await client.zcard(key))


async def forget_everything(client: aioredis.Redis, key: str) -> None:
    """Delete every Redis key of the limit, as a Redis restarted without persistence has.

    FLUSHALL would do the same to the other tests sharing the server.
    """
    names = await client.keys(f"{key}*")
    if names:
        await client.delete(*names)


async def take(limiter: lsq.RedisLimiter) -> None:
    """Take a slot if one is free now (QuotaExhaustedError if not), and give it back."""
    async with limiter.slot(max_wait=0):
        pass


async def until(condition: Callable[[], Awaitable[bool] | bool], checks: int = 500) -> None:
    """Wait until `condition()` (a look at Redis, or at a limiter) holds, checking every
    10 ms: a state reached, not a time guessed."""
    for _ in range(checks):
        held = condition()
        if await held if inspect.isawaitable(held) else held:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still not true after {checks} checks")


async def hold_slots(
    limiter: lsq.RedisLimiter, count: int
) -> tuple[list[asyncio.Task[None]], asyncio.Event]:
    """Start `count` tasks that each hold a slot until the returned event is set."""
    entered = 0
    all_in = asyncio.Event()
    leave = asyncio.Event()

    async def hold() -> None:
        nonlocal entered
        async with limiter.slot():
            entered += 1
            if entered == count:
                all_in.set()
            await leave.wait()

    tasks = [asyncio.ensure_future(hold()) for _ in range(count)]
    await asyncio.wait_for(all_in.wait(), 5)
    return tasks, leave


async def test_is_a_rate_limiter(make_limiter: MakeLimiter) -> None:
    """RedisLimiter satisfies the RateLimiter protocol the Session needs."""
    assert isinstance(make_limiter(), lsq.RateLimiter)


async def test_burst_of_calls_is_granted_at_once(make_limiter: MakeLimiter) -> None:
    """All `calls` slots are granted together, none waiting for another's release."""
    limiter = make_limiter(calls=4)
    tasks, leave = await hold_slots(limiter, 4)
    leave.set()
    await asyncio.gather(*tasks)


@pytest.mark.slow
async def test_next_slot_waits_for_release_plus_period(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """With every slot taken, the next is granted only `period` after a release."""
    limiter = make_limiter(calls=2, period=0.3)
    tasks, leave = await hold_slots(limiter, 2)
    late_entry: list[float] = []

    async def late() -> None:
        async with limiter.slot():
            late_entry.append(await redis_now(client))

    waiter = asyncio.ensure_future(late())
    await asyncio.sleep(0.1)
    released = await redis_now(client)
    leave.set()
    await asyncio.gather(*tasks, waiter)
    assert late_entry[0] >= released + 0.3


@pytest.mark.slow
async def test_release_by_another_process_wakes_a_waiter(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """A waiter learns of another limiter's release at once, not when its lease ends."""
    holder = make_limiter(calls=1, period=0.2, lease=60.0)
    waiter = make_limiter(calls=1, period=0.2, lease=60.0)
    tasks, leave = await hold_slots(holder, 1)
    entered = asyncio.Event()

    async def wait() -> None:
        async with waiter.slot():
            entered.set()

    waiting = asyncio.ensure_future(wait())
    await until(lambda: waiter.waiting == 1)
    assert not entered.is_set()
    leave.set()
    # Without the wake-up, the waiter would sleep until the lease's end (60 s).
    await asyncio.wait_for(asyncio.gather(*tasks, waiting), 10)


async def held_spans(
    limiter: lsq.RedisLimiter, client: aioredis.Redis, count: int
) -> list[tuple[float, float]]:
    """``count`` requests at once, holding their slots 0 to 15 ms: when each slot was
    entered and left, on Redis' clock."""
    spans: list[tuple[float, float]] = []

    async def request(hold: float) -> None:
        async with limiter.slot():
            enter = await redis_now(client)
            await asyncio.sleep(hold)
            spans.append((enter, await redis_now(client)))

    await asyncio.gather(*(request(0.005 * (n % 4)) for n in range(count)))
    return spans


async def test_no_window_holds_more_than_calls_across_tasks(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """Twelve tasks on one limiter: never more than `calls` slots held at once."""
    limiter = make_limiter(calls=3, period=0.25)
    spans = await held_spans(limiter, client, 12)
    assert len(spans) == 12
    assert most_held_at_once(spans, 0.25) == 3


async def test_every_limit_holds_in_every_window(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """Under 3 per 0.2 s and 5 per 1 s, no window of either period holds more than its calls."""
    limiter = make_limiter(limits=[lsq.RateLimit(3, 0.2), lsq.RateLimit(5, 1.0)])
    spans = await held_spans(limiter, client, 8)
    assert len(spans) == 8
    assert most_held_at_once(spans, 0.2) == 3
    assert most_held_at_once(spans, 1.0) == 5


async def test_slot_is_granted_as_soon_as_every_limit_allows_it(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """Under 2 per 0.2 s and 3 per 0.6 s, the fourth slot comes 0.6 s after the first release."""
    limiter = make_limiter(limits=[lsq.RateLimit(2, 0.2), lsq.RateLimit(3, 0.6)])
    entered: list[float] = []
    left: list[float] = []
    for _ in range(4):
        async with limiter.slot():
            entered.append(await redis_now(client))
            left.append(await redis_now(client))
    assert entered[1] < left[0] + 0.2
    assert left[0] + 0.2 <= entered[2] < left[0] + 0.35
    assert left[0] + 0.6 <= entered[3] < left[0] + 0.75


async def test_daily_quota_holds_for_a_day(make_limiter: MakeLimiter) -> None:
    """Under 2 per 1 s and 3 per day, the fourth slot is refused until a day after the first."""
    clock = JumpingClock()
    limiter = make_limiter(
        limits=[lsq.RateLimit(2, 1.0), lsq.RateLimit(3, 86_400.0)],
        kind=ClockedLimiter,
        clock=clock,
    )
    await take(limiter)
    await take(limiter)
    with pytest.raises(lsq.QuotaExhaustedError) as short:
        await take(limiter)
    assert short.value.limit == lsq.RateLimit(2, 1.0)
    clock.skip(1.0)
    await take(limiter)
    with pytest.raises(lsq.QuotaExhaustedError) as daily:
        await take(limiter)
    assert daily.value.limit == lsq.RateLimit(3, 86_400.0)
    expected = datetime.now(timezone.utc) + timedelta(seconds=86_400 - 1.0)
    assert abs(daily.value.retry_at - expected) < timedelta(seconds=5)
    clock.skip(86_400 - 1.0 - 1.0)
    with pytest.raises(lsq.QuotaExhaustedError):
        await take(limiter)
    clock.skip(1.0)
    await take(limiter)


async def test_a_day_of_a_large_quota_takes_little_memory(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """A day of slots under 250,000 a day is kept in about BUCKETS entries, a few kilobytes."""
    clock = JumpingClock()
    limiter = make_limiter(
        limits=[lsq.RateLimit(25, 5.0), lsq.RateLimit(250_000, 86_400.0)],
        kind=ClockedLimiter,
        clock=clock,
    )
    for _ in range(500):
        await take(limiter)
        clock.skip(86_400 / 500)
    daily = f"{key}:cooling:{86_400 * 1_000_000}"
    assert BUCKETS <= await client.zcard(daily) <= BUCKETS + 2
    names = await client.keys(f"{key}*")
    used = sum([await client.memory_usage(name) or 0 for name in names])
    assert used < 6_000


async def test_pause_names_its_limit_to_a_caller_that_cannot_wait(
    make_limiter: MakeLimiter,
) -> None:
    """A slot kept away by a pause is refused naming the limit the pause was for."""
    limiter = make_limiter(calls=5, period=1.0)
    quota = lsq.RateLimit(10_000, 86_400.0)
    await limiter.pause(100.0, limit=quota)
    with pytest.raises(lsq.QuotaExhaustedError) as refused:
        await take(limiter)
    assert refused.value.limit == quota
    expected = datetime.now(timezone.utc) + timedelta(seconds=100)
    assert abs(refused.value.retry_at - expected) < timedelta(seconds=5)


async def test_slot_too_far_away_is_refused_at_once_and_taken_by_nobody(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """With the next slot a minute away, max_wait=1 raises at once; no slot is held for it."""
    limiter = make_limiter(calls=1, period=60.0)
    async with limiter.slot():
        pass
    loop = asyncio.get_running_loop()
    asked = loop.time()
    with pytest.raises(lsq.QuotaExhaustedError) as refused:
        async with limiter.slot(max_wait=1.0):
            pytest.fail("a slot was granted")
    assert loop.time() - asked < 0.5
    assert refused.value.limit == lsq.RateLimit(1, 60.0)
    assert refused.value.retry_at.tzinfo == timezone.utc
    assert await client.exists(key) == 0  # nothing in flight


async def test_slot_within_max_wait_is_waited_for(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """A slot that frees within max_wait is waited for and granted."""
    limiter = make_limiter(calls=1, period=0.3)
    async with limiter.slot():
        left = await redis_now(client)
    async with limiter.slot(max_wait=2.0):
        entered = await redis_now(client)
    assert entered >= left + 0.3


@pytest.mark.slow
async def test_max_wait_is_judged_before_queueing_behind_others(
    make_limiter: MakeLimiter,
) -> None:
    """A caller with max_wait behind a waiter that waits for ever is refused at once."""
    limiter = make_limiter(calls=1, period=60.0, lease=60.0)
    tasks, leave = await hold_slots(limiter, 1)

    async def wait_patiently() -> None:
        async with limiter.slot():
            pass

    patient = asyncio.ensure_future(wait_patiently())
    await until(lambda: limiter.waiting == 1)  # the patient waiter is first in line
    loop = asyncio.get_running_loop()
    asked = loop.time()
    try:
        with pytest.raises(lsq.QuotaExhaustedError):
            async with limiter.slot(max_wait=1.0):
                pytest.fail("a slot was granted")
        assert loop.time() - asked < 0.5
    finally:
        patient.cancel()
        leave.set()
        await asyncio.gather(*tasks, patient, return_exceptions=True)


async def test_new_key_grants_nothing_for_one_shortest_period(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """A key Redis does not hold (new, or lost) grants its first slots one short period on."""
    await forget_everything(client, key)
    limiter = make_limiter(limits=[lsq.RateLimit(2, 0.3), lsq.RateLimit(100, 60.0)])
    asked = await redis_now(client)
    tasks, leave = await hold_slots(limiter, 2)
    entered = await redis_now(client)
    leave.set()
    await asyncio.gather(*tasks)
    assert entered >= asked + 0.3


async def test_new_key_with_a_daily_limit_only_waits_a_minute_at_most(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """The wait of a new key is one period of its shortest limit, but a minute at most."""
    await forget_everything(client, key)
    clock = JumpingClock()
    limiter = make_limiter(limits=[lsq.RateLimit(10, 86_400.0)], kind=ClockedLimiter, clock=clock)
    with pytest.raises(lsq.QuotaExhaustedError) as refused:
        await take(limiter)
    expected = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert abs(refused.value.retry_at - expected) < timedelta(seconds=5)
    clock.skip(60.0)
    await take(limiter)


async def test_lost_state_grants_no_burst_and_counts_slots_in_flight_again(
    make_limiter: MakeLimiter,
    client: aioredis.Redis,
    key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After Redis lost the key, no slot for one period; a slot in flight then counts again."""
    caplog.set_level(logging.WARNING, logger="leadsq_async")
    limiter = make_limiter(calls=2, period=0.3)
    tasks, leave = await hold_slots(limiter, 1)  # in flight across the loss
    async with limiter.slot():
        pass
    await forget_everything(client, key)
    lost = await redis_now(client)
    try:
        async with limiter.slot():
            entered = await redis_now(client)
            assert await held_in_redis(client, key) == 2
    finally:
        leave.set()
        await asyncio.gather(*tasks)
    assert entered >= lost + 0.3
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "lost the shared limit" in messages[0]


async def test_every_waiter_fails_at_once_when_redis_stops_answering(
    redis_url: str, redis_proxy: TcpProxy, make_limiter: MakeLimiter
) -> None:
    """Callers queued while Redis stops answering fail with the first, not one timeout each."""
    quick = f"{through(redis_proxy, redis_url)}?socket_timeout=0.5"
    limiter = make_limiter(calls=10, period=0.3, redis=quick)
    async with limiter.slot():
        pass
    redis_proxy.stall()

    async def enter() -> None:
        async with limiter.slot():
            pytest.fail("a slot was granted without Redis")

    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        outcomes = await asyncio.gather(*(enter() for _ in range(4)), return_exceptions=True)
    finally:
        await redis_proxy.up()
    assert all(isinstance(outcome, lsq.RateLimiterUnavailableError) for outcome in outcomes)
    # One at a time, they would take 4 x 0.5 s.
    assert loop.time() - started < 1.2


@pytest.mark.slow
async def test_no_window_holds_more_than_calls_across_processes(
    redis_url: str, key: str, client: aioredis.Redis
) -> None:
    """Four OS processes sharing a key: never more than `calls` slots held at once."""
    workers = [
        await start_worker("slots", redis_url, key, "--calls=3", "--period=0.25", "--tasks=2")
        for _ in range(4)
    ]
    try:
        for worker in workers:
            assert await next_event(worker) == {"ready": True}
        await give_the_go(client, key, len(workers))
        logs = [await all_events(worker) for worker in workers]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    spans = [(event["enter"], event["exit"]) for log in logs for event in log]
    assert len(spans) == 4 * 6
    assert most_held_at_once(spans, 0.25) == 3


@pytest.mark.slow
async def test_killed_process_slots_expire_after_their_lease(
    redis_url: str, key: str, make_limiter: MakeLimiter
) -> None:
    """Slots held by a process killed with SIGKILL free once their short lease ends."""
    worker = await start_worker("hold", redis_url, key, "--calls=2", "--slots=2", "--lease=0.5")
    try:
        assert await next_event(worker) == {"ready": True}
        assert await next_event(worker) == {"held": 2}
    finally:
        worker.kill()
        await worker.wait()
    limiter = make_limiter(calls=2, period=0.3, lease=60.0)
    # The worker's slots free within its lease and period (0.8 s): far less than 60 s.
    tasks, leave = await asyncio.wait_for(hold_slots(limiter, 2), 5)
    leave.set()
    await asyncio.gather(*tasks)


@pytest.mark.slow
async def test_cancelled_process_releases_its_slots(
    redis_url: str, key: str, make_limiter: MakeLimiter
) -> None:
    """A process stopped by SIGTERM gives its slots back: they free `period` later."""
    worker = await start_worker("hold", redis_url, key, "--calls=2", "--slots=2", "--lease=60")
    try:
        assert await next_event(worker) == {"ready": True}
        assert await next_event(worker) == {"held": 2}
        worker.terminate()
        assert await next_event(worker) == {"released": True}
        assert await asyncio.wait_for(worker.wait(), 10) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    limiter = make_limiter(calls=2, period=0.3, lease=60.0)
    tasks, leave = await asyncio.wait_for(hold_slots(limiter, 2), 5)
    leave.set()
    await asyncio.gather(*tasks)


CRAWL_CALLS = 10
CRAWL_PERIOD = 1.0


async def crawl_in_processes(
    redis_url: str,
    key: str,
    emulator: RunningEmulator,
    limiter: str,
    processes: int = 4,
    quota: lsq.RateLimit | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Crawl every lead of the emulator from `processes` workers, each a disjoint slice.

    The emulator is given a strict window of CRAWL_CALLS per CRAWL_PERIOD, and of
    `quota` too; every worker's session keeps to the same, through a
    `RedisLimiter` on `key` (`limiter` "redis") or its own in-process limits
    ("local"). The workers start together. Returns each lead's result and each
    worker's session counts.
    """
    crawl_limit = lsq.RateLimit(CRAWL_CALLS, CRAWL_PERIOD)
    emulator.config.rate_limits = (crawl_limit,) if quota is None else (crawl_limit, quota)
    lead_ids = sorted(emulator.data.opportunities)
    keys = {"LSQ_ACCESS_KEY": emulator.access_key, "LSQ_SECRET_KEY": emulator.secret_key}
    options = [
        f"--emulator={emulator.url}",
        f"--limiter={limiter}",
        f"--calls={CRAWL_CALLS}",
        f"--period={CRAWL_PERIOD}",
        *([] if quota is None else [f"--quota={quota.calls}/{quota.period}"]),
    ]
    workers = [
        await start_worker("crawl", redis_url, key, *options, *lead_ids[index::processes], env=keys)
        for index in range(processes)
    ]
    try:
        for worker in workers:
            assert await next_event(worker) == {"ready": True}
        async with aioredis.from_url(redis_url) as client:
            await give_the_go(client, key, len(workers))
        logs = [await all_events(worker) for worker in workers]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    leads = {event["lead"]: event for log in logs for event in log if "lead" in event}
    sessions = [event for log in logs for event in log if "requests" in event]
    return leads, sessions


@pytest.mark.slow
async def test_processes_sharing_a_key_draw_no_rate_limit_answers(
    redis_url: str, key: str, lsq_emulator: RunningEmulator
) -> None:
    """Four processes crawling through one RedisLimiter stay within the server's window."""
    leads, _ = await crawl_in_processes(redis_url, key, lsq_emulator, "redis")
    assert lsq_emulator.stats.rate_limited == 0
    # More requests than one window allows, so the processes had to wait for each other.
    assert lsq_emulator.stats.accepted > CRAWL_CALLS
    assert lsq_emulator.stats.most_accepted_in_window <= CRAWL_CALLS
    assert {lead: event["error"] for lead, event in leads.items() if event["error"]} == {}
    expected = {lead: len(rows) for lead, rows in lsq_emulator.data.opportunities.items()}
    assert {lead: event["opportunities"] for lead, event in leads.items()} == expected


@pytest.mark.slow
async def test_processes_sharing_a_key_keep_to_a_quota_too(
    redis_url: str, key: str, lsq_emulator: RunningEmulator
) -> None:
    """Under 10 per 1 s and a quota scaled to 20 per 3 s, four processes draw no refusal."""
    quota = lsq.RateLimit(20, 3.0)
    leads, _ = await crawl_in_processes(redis_url, key, lsq_emulator, "redis", quota=quota)
    assert lsq_emulator.stats.rate_limited == 0
    # More requests than the quota allows at once, so the processes waited for it.
    assert lsq_emulator.stats.accepted > quota.calls
    assert {lead: event["error"] for lead, event in leads.items() if event["error"]} == {}


@pytest.mark.slow
async def test_slot_in_flight_outlives_its_lease(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """A live process's request longer than the lease keeps its slot: it is renewed."""
    holder = make_limiter(calls=1, period=0.2, lease=0.3)
    other = make_limiter(calls=1, period=0.2, lease=0.3)
    tasks, leave = await hold_slots(holder, 1)
    got_it = asyncio.Event()

    async def take() -> None:
        async with other.slot():
            got_it.set()

    taker = asyncio.ensure_future(take())
    await asyncio.sleep(1.2)  # four leases
    assert not got_it.is_set()
    leave.set()
    await asyncio.wait_for(asyncio.gather(*tasks, taker), 5)


@pytest.mark.slow
async def test_cancelled_waiter_gives_its_place_back(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """A waiter cancelled before its grant takes no slot; the next in line gets it."""
    limiter = make_limiter(calls=1, period=0.2)
    tasks, leave = await hold_slots(limiter, 1)
    order: list[str] = []

    async def wait(name: str) -> None:
        async with limiter.slot():
            order.append(name)

    first = asyncio.ensure_future(wait("first"))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await client.zcard(key) == 1
    leave.set()
    await asyncio.wait_for(asyncio.gather(*tasks, second), 5)
    assert order == ["second"]


class SlowRedis(aioredis.Redis):
    """A client whose answers to scripts arrive late (after Redis ran them)."""

    reply_delay = 0.0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        if args[0] in ("EVALSHA", "EVAL"):
            await asyncio.sleep(self.reply_delay)
        return reply


async def test_cancellation_during_a_grant_does_not_leak_the_slot(
    redis_url: str, make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """A caller cancelled while Redis grants its slot gives that slot straight back."""
    slow = cast(SlowRedis, SlowRedis.from_url(redis_url))
    try:
        limiter = make_limiter(calls=1, period=60.0, redis=slow)
        slow.reply_delay = 0.5
        entered = asyncio.Event()

        async def enter() -> None:
            async with limiter.slot():
                entered.set()

        caller = asyncio.ensure_future(enter())

        async def granted() -> bool:
            return bool(await client.zcard(key) == 1)

        await until(granted)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert not entered.is_set()
        await limiter.aclose()  # waits for the clean-up
        assert await client.zcard(key) == 0
    finally:
        await slow.aclose()


async def test_pause_holds_every_limiter_on_the_key(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """A pause set through one limiter delays the grants of another on the same key."""
    pausing = make_limiter(calls=5)
    other = make_limiter(calls=5)
    before = await redis_now(client)
    await pausing.pause(0.4)
    async with other.slot():
        entered = await redis_now(client)
    assert entered >= before + 0.4


async def test_learned_limit_is_shared(make_limiter: MakeLimiter, client: aioredis.Redis) -> None:
    """A limit learned through one limiter is kept to by another on the same key."""
    learning = make_limiter(calls=5, period=0.3)
    other = make_limiter(calls=5, period=0.3)
    assert await learning.learn(lsq.RateLimit(1, 0.3)) is True
    assert await other.learn(lsq.RateLimit(1, 0.3)) is False
    async with other.slot():
        left = await redis_now(client)
    assert other.rate_limit == lsq.RateLimit(1, 0.3)
    async with other.slot():
        entered = await redis_now(client)
    assert entered >= left + 0.3


async def test_learn_keeps_the_tighter_limit_of_a_period(make_limiter: MakeLimiter) -> None:
    """A learned limit of a known period with more calls changes nothing."""
    limiter = make_limiter(calls=5, period=1.0)
    assert await limiter.learn(lsq.RateLimit(10, 1.0)) is False
    assert limiter.rate_limits == (lsq.RateLimit(5, 1.0),)


async def test_learned_limit_of_a_new_period_joins_the_others(
    make_limiter: MakeLimiter,
) -> None:
    """Learning "2 in 60 s" under 5 per 0.3 s keeps both: the short one is not replaced."""
    clock = JumpingClock()
    limiter = make_limiter(calls=5, period=0.3, kind=ClockedLimiter, clock=clock)
    other = make_limiter(calls=5, period=0.3, kind=ClockedLimiter, clock=clock)
    assert await limiter.learn(lsq.RateLimit(2, 60.0)) is True
    both = (lsq.RateLimit(5, 0.3), lsq.RateLimit(2, 60.0))
    assert limiter.rate_limits == both
    clock.skip(60.0)  # past the wait a new period imposes (next test)
    await take(other)
    assert other.rate_limits == both
    await take(other)
    with pytest.raises(lsq.QuotaExhaustedError) as refused:
        await take(other)
    assert refused.value.limit == lsq.RateLimit(2, 60.0)


async def test_learned_limit_of_a_longer_period_waits_out_the_calls_it_never_saw(
    make_limiter: MakeLimiter,
) -> None:
    """Under 2 per 1 s, a learned 3 per 10 s grants nothing for 9 s: older calls are unknown."""
    clock = JumpingClock()
    limiter = make_limiter(calls=2, period=1.0, kind=ClockedLimiter, clock=clock)
    await limiter.learn(lsq.RateLimit(3, 10.0))
    with pytest.raises(lsq.QuotaExhaustedError) as refused:
        await take(limiter)
    assert refused.value.limit == lsq.RateLimit(3, 10.0)
    expected = datetime.now(timezone.utc) + timedelta(seconds=9)
    assert abs(refused.value.retry_at - expected) < timedelta(seconds=2)
    clock.skip(9.0)
    await take(limiter)


async def test_learned_limit_implied_by_another_is_not_added(make_limiter: MakeLimiter) -> None:
    """10 per 5 s never allows more than 120 in 60 s: learning 1,000 in 60 s changes nothing."""
    limiter = make_limiter(calls=10, period=5.0)
    assert await limiter.learn(lsq.RateLimit(1000, 60.0)) is False
    assert limiter.rate_limits == (lsq.RateLimit(10, 5.0),)


async def test_limit_named_again_soon_after_it_expired_keeps_its_count(
    make_limiter: MakeLimiter,
) -> None:
    """A learned limit is counted one period past its expiry: named again, it waits no more."""
    clock = JumpingClock()
    limiter = make_limiter(calls=5, period=1.0, kind=ClockedLimiter, clock=clock)
    quota = lsq.RateLimit(2, 600.0)
    await limiter.learn(quota)
    clock.skip(3601.0)  # expired an hour after it was learned
    await take(limiter)
    assert limiter.rate_limits == (lsq.RateLimit(5, 1.0),)
    assert await limiter.learn(quota) is True
    await take(limiter)  # no wait for unknown calls: the one before still counts
    with pytest.raises(lsq.QuotaExhaustedError) as refused:
        await take(limiter)
    assert refused.value.limit == quota


async def test_learned_limit_of_a_new_period_counts_slots_already_released(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """Slots released just before a longer limit is learned stay held for its period."""
    limiter = make_limiter(calls=2, period=0.2)
    tasks, leave = await hold_slots(limiter, 2)
    released = await redis_now(client)
    leave.set()
    await asyncio.gather(*tasks)
    assert await limiter.learn(lsq.RateLimit(1, 0.6)) is True
    async with limiter.slot():
        entered = await redis_now(client)
    assert entered >= released + 0.6


async def test_learned_limit_expires_after_an_hour(make_limiter: MakeLimiter) -> None:
    """A limit learned from the server is dropped an hour after it was last named."""
    clock = JumpingClock()
    limiter = make_limiter(calls=5, period=0.3, kind=ClockedLimiter, clock=clock)
    await limiter.learn(lsq.RateLimit(1, 0.3))
    await limiter.learn(lsq.RateLimit(100, 60.0))
    clock.skip(3599)
    await take(limiter)
    before = limiter.rate_limits
    clock.skip(2)
    await take(limiter)
    after = limiter.rate_limits
    assert before == (lsq.RateLimit(1, 0.3), lsq.RateLimit(100, 60.0))
    assert after == (lsq.RateLimit(5, 0.3),)


async def test_learned_daily_limit_lasts_two_days(make_limiter: MakeLimiter) -> None:
    """A learned limit longer than half an hour lasts two of its periods."""
    clock = JumpingClock()
    limiter = make_limiter(calls=5, period=0.3, kind=ClockedLimiter, clock=clock)
    await limiter.learn(lsq.RateLimit(1000, 86_400.0))
    clock.skip(2 * 86_400 - 1)
    await limiter.pause(0)
    before = limiter.rate_limits
    clock.skip(2)
    await limiter.pause(0)
    after = limiter.rate_limits
    assert before == (lsq.RateLimit(5, 0.3), lsq.RateLimit(1000, 86_400.0))
    assert after == (lsq.RateLimit(5, 0.3),)


async def learned_on_the_key(client: aioredis.Redis, key: str) -> list[lsq.RateLimit]:
    """The learned limits the key's state holds, shortest period first."""
    fields = cast(dict[bytes, bytes], await client.hgetall(f"{key}:state"))
    return sorted(
        (
            lsq.RateLimit(int(value.split(b":")[0]), int(name[8:]) / 1_000_000)
            for name, value in fields.items()
            if name.startswith(b"learned:")
        ),
        key=lambda limit: limit.period,
    )


async def test_at_most_eight_learned_limits_are_kept_on_the_key_the_latest_named(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """200 refusals each naming a new period leave 8 learned limits in Redis, the 8 named
    last (none implies another: 1,000 to 1,199 calls in 10 to 11.99 s)."""
    limiter = make_limiter(1000, 5.0)
    named = [lsq.RateLimit(1000 + n, (1000 + n) / 100) for n in range(200)]
    for limit in named:
        assert await limiter.learn(limit) is True
    assert MOST_LEARNED_LIMITS == 8
    assert await learned_on_the_key(client, key) == named[-8:]
    assert limiter.rate_limits == (lsq.RateLimit(1000, 5.0), *named[-8:])


async def test_a_learned_limit_the_others_imply_is_forgotten_first_on_the_key(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """Beyond 8, a learned limit that a later one implies goes before an older one."""
    clock = JumpingClock()
    limiter = make_limiter(10, 5.0, kind=ClockedLimiter, clock=clock)
    oldest, implied = lsq.RateLimit(3, 7.0), lsq.RateLimit(4, 9.5)
    others = [lsq.RateLimit(5, 10 + n / 10) for n in range(6)]
    for limit in [oldest, implied, *others]:
        assert await limiter.learn(limit) is True
        clock.skip(1.0)
    assert await limiter.learn(lsq.RateLimit(2, 5.5))  # 2 per 5.5 s allow at most 4 in 9.5 s
    kept = await learned_on_the_key(client, key)
    assert implied not in kept
    assert oldest in kept
    assert len(kept) == 8
    assert limiter.rate_limits == (lsq.RateLimit(10, 5.0), *kept)


async def test_a_limit_learned_by_an_earlier_version_counts_as_named_longest_ago(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """A learned limit stored without the time it was named is the first forgotten."""
    limiter = make_limiter(10, 5.0)
    far = round((await redis_now(client) + 3600) * 1_000_000)
    await client.hset(f"{key}:state", "learned:30000000", f"25:{far}:0")  # 25 per 30 s
    named = [lsq.RateLimit(10 + n, 10 + n) for n in range(8)]  # none implies another
    for limit in named:
        assert await limiter.learn(limit) is True
    assert await learned_on_the_key(client, key) == named


async def test_redis_keeps_the_learned_limits_the_in_process_limiter_keeps(
    make_limiter: MakeLimiter,
) -> None:
    """Refusals naming limits tighter, looser, implied and new, some again: Redis keeps, after
    each, the limits `SlidingWindowLimiter` keeps (one rule for both). Beyond 8, 11 are
    forgotten, some as implied by the others, some as named longest ago."""
    configured = lsq.RateLimit(1000, 5.0)
    shared, local = make_limiter(limits=[configured]), lsq.SlidingWindowLimiter(configured)
    rng = random.Random(9)
    for _ in range(80):
        # Mostly 100 + period calls (give or take 3) in 10 to 40 s: few imply one another.
        period = rng.randint(10, 40)
        calls = (period // 2 if rng.random() < 0.05 else 100 + period) + rng.randint(-3, 3)
        limit = lsq.RateLimit(calls, period)
        assert await shared.learn(limit) is await local.learn(limit)
        assert shared.rate_limits == local.rate_limits


async def test_a_slot_after_many_learned_limits_counts_only_the_limits_kept(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """After 200 limits were learned, a slot reads and writes the counts of 9 limits (the
    configured one and 8 learned), not 201."""
    clock = JumpingClock()
    limiter = make_limiter(10, 5.0, kind=ClockedLimiter, clock=clock)
    await take(limiter)  # a release for every new limit to count
    for n in range(200):
        assert await limiter.learn(lsq.RateLimit(1, 5 + n / 100)) is True
    clock.skip(10.0)  # past the wait each new period imposed
    await take(limiter)
    assert len(await learned_on_the_key(client, key)) == MOST_LEARNED_LIMITS
    assert len(limiter.rate_limits) == 1 + MOST_LEARNED_LIMITS
    assert len(await client.keys(f"{key}:cooling:*")) == 1 + MOST_LEARNED_LIMITS


async def test_idle_keys_expire(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """Every key carries a time to live: the slots' until they free, the state for a week."""
    limiter = make_limiter(calls=2, period=0.3, lease=10.0)
    await limiter.pause(0.01)
    async with limiter.slot():
        assert 0 < await client.pttl(key) <= 11_000
    assert await client.exists(key) == 0  # no slot in flight
    assert 0 < await client.pttl(f"{key}:cooling:300000") <= 1300
    assert 6 * 86_400_000 < await client.pttl(f"{key}:state") <= 7 * 86_400_000


@pytest.mark.slow
async def test_limiter_closes_the_client_it_made(
    redis_url: str, key: str, client: aioredis.Redis
) -> None:
    """A limiter made from a URL closes its connections (listener's included) in aclose."""
    name = f"lsq-{uuid.uuid4().hex[:12]}"
    limiter = lsq.RedisLimiter(f"{redis_url}?client_name={name}", lsq.RateLimit(1, 0.2), key=key)

    async def connections() -> int:
        clients = await client.client_list()
        return sum(1 for entry in clients if entry.get("name") == name)

    tasks, leave = await hold_slots(limiter, 1)
    waiter = asyncio.ensure_future(hold_slots(limiter, 1))  # makes it listen for releases
    await asyncio.sleep(0.1)
    assert await connections() >= 2
    leave.set()
    more_tasks, more_leave = await asyncio.wait_for(waiter, 5)
    more_leave.set()
    await asyncio.gather(*tasks, *more_tasks)
    await limiter.aclose()

    async def all_closed() -> bool:
        return await connections() == 0

    await until(all_closed)


async def test_limiter_leaves_a_given_client_open(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """A limiter given a client does not close it."""
    limiter = make_limiter(redis=client)
    async with limiter.slot():
        pass
    await limiter.aclose()
    assert await client.ping() is True


async def test_unreachable_redis_raises_a_clear_error(key: str) -> None:
    """With Redis down, entering a slot raises RateLimiterUnavailableError naming the address."""
    async with lsq.RedisLimiter(UNREACHABLE_URL, key=key) as limiter:
        with pytest.raises(lsq.RateLimiterUnavailableError) as caught:
            async with limiter.slot():
                pytest.fail("a slot was granted without Redis")
    assert caught.value.address == "127.0.0.1:1/0"
    assert "127.0.0.1:1" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(limiter)):
        assert "hunter2" not in text


async def test_unreachable_redis_fails_pause_and_learn(key: str) -> None:
    """With Redis down, pause and learn raise RateLimiterUnavailableError too."""
    async with lsq.RedisLimiter(UNREACHABLE_URL, key=key) as limiter:
        with pytest.raises(lsq.RateLimiterUnavailableError):
            await limiter.pause(1.0)
        with pytest.raises(lsq.RateLimiterUnavailableError):
            await limiter.learn(lsq.RateLimit(1, 5.0))


@pytest.mark.looptime
async def test_fallback_keeps_to_a_share_of_the_limit(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With fallback on and Redis down, each process keeps to calls // processes, warning once."""
    caplog.set_level(logging.WARNING, logger="leadsq_async")
    async with lsq.RedisLimiter(
        UNREACHABLE_URL,
        lsq.RateLimit(4, 5.0),
        key=key,
        fallback=True,
        fallback_processes=2,
    ) as limiter:
        await limiter.pause(0)  # falls back, and the local limiter first holds a period
        await asyncio.sleep(5.0)
        tasks, leave = await hold_slots(limiter, 2)
        third: list[float] = []

        async def late() -> None:
            async with limiter.slot():
                third.append(now())

        waiter = asyncio.ensure_future(late())
        await asyncio.sleep(1.0)
        released = now()
        leave.set()
        await asyncio.gather(*tasks, waiter)
    assert third == [released + 5.0]
    warnings = [record for record in caplog.records if "falling back" in record.getMessage()]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text


@pytest.mark.looptime
async def test_fallback_keeps_to_a_share_of_every_limit(key: str) -> None:
    """Falling back under 4 per 5 s and 6 per 20 s, a process of two keeps 2 per 5 s, 3 per 20 s."""
    async with lsq.RedisLimiter(
        UNREACHABLE_URL,
        [lsq.RateLimit(4, 5.0), lsq.RateLimit(6, 20.0)],
        key=key,
        fallback=True,
        fallback_processes=2,
    ) as limiter:
        started = now()
        entered: list[float] = []
        for _ in range(4):
            async with limiter.slot():
                entered.append(now() - started)
    # After the period the fallback first holds (see the next test), two at once, the
    # third a period after them, the fourth when 20 s have passed since the first.
    assert entered == [5.0, 5.0, 10.0, 25.0]


@pytest.mark.looptime
async def test_fallback_first_holds_one_period_of_the_shortest_limit(key: str) -> None:
    """The slots granted in Redis just before it failed are not the local limiter's: it
    starts by holding one period of the shortest limit, as a key Redis lost does."""
    async with (
        lsq.RedisLimiter(
            UNREACHABLE_URL,
            [lsq.RateLimit(100, 3600.0), lsq.RateLimit(4, 5.0)],
            key=key,
            fallback=True,
        ) as limiter,
        limiter.slot() as grant,
    ):
        granted = now()
    assert granted == 5.0
    assert grant == lsq.Grant(5.0, None)  # a pause, which names no limit


@pytest.mark.looptime
async def test_falling_back_keeps_and_reports_at_most_eight_learned_limits(key: str) -> None:
    """Refusals naming 50 new periods while Redis is down leave the 8 named last in force,
    and ``rate_limits`` reports those, not all 50, beside the configured limit (none implies
    another: 1,000 to 1,049 calls in 10 to 10.49 s)."""
    named = [lsq.RateLimit(1000 + n, (1000 + n) / 100) for n in range(50)]
    async with lsq.RedisLimiter(
        UNREACHABLE_URL, lsq.RateLimit(1000, 5.0), key=key, fallback=True, fallback_processes=1
    ) as limiter:
        for limit in named:
            assert await limiter.learn(limit) is True
        reported = limiter.rate_limits
        kept = limiter._fallback.kept
        assert kept is not None
    assert reported == (lsq.RateLimit(1000, 5.0), *named[-8:])
    assert [limit.period for limit in kept.rate_limits] == [limit.period for limit in reported]


async def test_a_grant_says_how_long_it_waited_in_redis(make_limiter: MakeLimiter) -> None:
    """The Grant of a slot waited for names the limit Redis said binds."""
    limiter = make_limiter(calls=1, period=0.2)
    async with limiter.slot() as first:
        pass
    async with limiter.slot() as second:
        pass
    assert first == lsq.Grant(0.0, None)
    assert 0.1 < second.waited < 5
    assert second.limit == lsq.RateLimit(1, 0.2)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"rate_limit": 25}, TypeError),
        ({"rate_limit": "25 a minute"}, ValueError),
        ({"rate_limit": []}, ValueError),
        ({"rate_limit": [lsq.RateLimit(), 5]}, TypeError),
        ({"lease": 0}, ValueError),
        ({"lease": -1.0}, ValueError),
        ({"key": ""}, ValueError),
        ({"key": b"k"}, TypeError),
        ({"redis": 6379}, TypeError),
        ({"redis": "http://127.0.0.1:6379"}, ValueError),
        ({"clock": time.monotonic}, TypeError),
        ({"fallback": 1}, TypeError),
        ({"fallback_processes": 0}, ValueError),
        ({"fallback_processes": 2.0}, TypeError),
    ],
)
def test_bad_arguments_are_refused(arguments: dict[str, Any], error: type[Exception]) -> None:
    """Bad arguments raise TypeError or ValueError when the limiter is made."""
    options: dict[str, Any] = {"redis": UNREACHABLE_URL, **arguments}
    with pytest.raises(error):
        lsq.RedisLimiter(**options)


async def test_bad_arguments_to_calls_are_refused(make_limiter: MakeLimiter) -> None:
    """slot, pause and learn refuse bad arguments with TypeError or ValueError."""
    limiter = make_limiter()
    with pytest.raises(ValueError, match="max_wait"):
        limiter.slot(max_wait=-1.0)
    with pytest.raises(TypeError, match="limit"):
        await limiter.pause(1.0, limit="1/5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limit"):
        await limiter.learn("1/5")  # type: ignore[arg-type]


def test_the_limit_is_read_as_the_rate_limit_setting_is(key: str) -> None:
    """Text reads as it does everywhere else; the old ``(redis, calls, period)`` form is gone."""
    limiter = lsq.RedisLimiter(UNREACHABLE_URL, "10/5, 10000/1d", key=key)
    assert limiter.rate_limits == (lsq.RateLimit(10, 5), lsq.RateLimit(10_000, 86_400))
    with pytest.raises(TypeError):
        lsq.RedisLimiter(UNREACHABLE_URL, 4, 0.3, key=key)  # type: ignore[arg-type, misc]


def test_several_limits_are_kept_by_period(key: str) -> None:
    """The limits given are sorted shortest first, and of two with one period the lower stays."""
    limiter = lsq.RedisLimiter(
        UNREACHABLE_URL,
        [lsq.RateLimit(10_000, 86_400), lsq.RateLimit(10, 5), lsq.RateLimit(8, 5)],
        key=key,
    )
    assert limiter.rate_limits == (lsq.RateLimit(8, 5), lsq.RateLimit(10_000, 86_400))
    assert limiter.rate_limit == lsq.RateLimit(8, 5)


@pytest.mark.slow
async def test_fallback_returns_to_redis_once_it_answers_again(
    redis_url: str,
    redis_proxy: TcpProxy,
    make_limiter: MakeLimiter,
    client: aioredis.Redis,
    key: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cut off, a limiter keeps to its local share; 30 s on (of its clock), it tries Redis again."""
    clock = jump_the_loop_clock(monkeypatch)
    limiter = make_limiter(
        calls=4,
        period=0.3,
        redis=through(redis_proxy, redis_url),
        fallback=True,
        fallback_processes=2,
    )
    caplog.set_level(logging.WARNING, logger="leadsq_async")
    async with limiter.slot():
        assert await held_in_redis(client, key) == 1

    await redis_proxy.down()
    tasks, leave = await hold_slots(limiter, 2)
    assert await held_in_redis(client, key) == 0
    third = asyncio.ensure_future(hold_slots(limiter, 1))
    await until(lambda: limiter.waiting == 1)
    assert not third.done()  # the local share is 4 // 2 slots
    leave.set()
    await asyncio.gather(*tasks)
    more_tasks, more_leave = await asyncio.wait_for(third, 5)
    more_leave.set()
    await asyncio.gather(*more_tasks)
    tried = redis_proxy.accepted
    clock.skip(29.0)  # not yet the time to try Redis again
    async with limiter.slot():
        assert await held_in_redis(client, key) == 0
    assert redis_proxy.accepted == tried
    clock.skip(1.0)  # past the retry time: Redis is tried again, and fails again
    async with limiter.slot():
        assert await held_in_redis(client, key) == 0
    assert redis_proxy.accepted > tried

    await redis_proxy.up()
    clock.skip(30.0)
    for _ in range(2):
        async with limiter.slot():
            assert await held_in_redis(client, key) == 1
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "falling back" in warnings[0]
    assert warnings[1] == f"the rate limiter's Redis at {limiter.address} answers again"


async def test_limiter_works_again_once_redis_answers(
    redis_url: str,
    redis_proxy: TcpProxy,
    make_limiter: MakeLimiter,
    client: aioredis.Redis,
    key: str,
) -> None:
    """Without fallback, a limiter cut off from Redis raises, then grants again once it is back."""
    limiter = make_limiter(calls=2, redis=through(redis_proxy, redis_url))
    async with limiter.slot():
        pass
    await redis_proxy.down()
    with pytest.raises(lsq.RateLimiterUnavailableError):
        async with limiter.slot():
            pytest.fail("a slot was granted without Redis")
    with pytest.raises(lsq.RateLimiterUnavailableError):
        await limiter.pause(0.01)
    await redis_proxy.up()
    async with limiter.slot():
        assert await held_in_redis(client, key) == 1
    await limiter.pause(0.01)


@pytest.mark.slow
async def test_limiter_reconnects_at_once_after_redis_restarts(
    redis_url: str,
    redis_proxy: TcpProxy,
    make_limiter: MakeLimiter,
    client: aioredis.Redis,
    key: str,
) -> None:
    """Connections that Redis closed while the limiter was idle fail no call: it reconnects."""
    limiter = make_limiter(calls=2, redis=through(redis_proxy, redis_url))
    async with limiter.slot():
        pass
    await redis_proxy.down()  # Redis restarts: every connection to it closes
    await redis_proxy.up()
    await asyncio.sleep(0.1)
    async with limiter.slot():
        assert await held_in_redis(client, key) == 1


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.slow
async def test_waiter_stops_waiting_when_redis_goes_away(
    redis_url: str, redis_proxy: TcpProxy, make_limiter: MakeLimiter, fallback: bool
) -> None:
    """A waiter cut off from Redis falls back or raises at once, not when its wait ends."""
    holder = make_limiter(calls=1, period=0.2, lease=60.0)
    waiter = make_limiter(
        calls=1, period=0.2, lease=60.0, redis=through(redis_proxy, redis_url), fallback=fallback
    )
    tasks, leave = await hold_slots(holder, 1)
    entered = asyncio.Event()

    async def wait() -> None:
        async with waiter.slot():
            entered.set()

    waiting = asyncio.ensure_future(wait())
    await asyncio.sleep(0.2)  # the waiter listens for releases
    assert not waiting.done()
    await redis_proxy.down()
    try:
        # Without a wake-up, the waiter would sleep until the holder's lease ends (60 s).
        if fallback:
            await asyncio.wait_for(waiting, 10)
            assert entered.is_set()
        else:
            with pytest.raises(lsq.RateLimiterUnavailableError):
                await asyncio.wait_for(waiting, 10)
    finally:
        leave.set()
        await asyncio.gather(*tasks)


@pytest.mark.slow
async def test_waiter_learns_of_a_release_missed_while_it_reconnected(
    redis_url: str, redis_proxy: TcpProxy, make_limiter: MakeLimiter
) -> None:
    """A release published while a waiter's connection was lost wakes it once reconnected."""
    # A client that retries, so redis-py reconnects the listener and subscribes it again.
    retrying = aioredis.from_url(through(redis_proxy, redis_url), retry=Retry(NoBackoff(), 3))
    holder = make_limiter(calls=1, period=0.2, lease=60.0)
    waiter = make_limiter(calls=1, period=0.2, lease=60.0, redis=retrying)
    tasks, leave = await hold_slots(holder, 1)
    entered = asyncio.Event()

    async def wait() -> None:
        async with waiter.slot():
            entered.set()

    waiting = asyncio.ensure_future(wait())
    await asyncio.sleep(0.2)  # the waiter listens for releases
    assert not waiting.done()
    redis_proxy.stall()
    leave.set()
    await asyncio.gather(*tasks)

    async def release_lost() -> bool:
        return redis_proxy.dropped > 0

    await until(release_lost)
    await redis_proxy.up()  # the lost connection is closed; the waiter's client reconnects
    # Without a wake-up, the waiter would sleep until the holder's lease ends (60 s).
    try:
        await asyncio.wait_for(waiting, 10)
    finally:
        await waiter.aclose()
        await retrying.aclose()
    assert entered.is_set()


@pytest.mark.slow
async def test_redis_that_stops_answering_is_given_up_on(
    redis_url: str, redis_proxy: TcpProxy, make_limiter: MakeLimiter
) -> None:
    """A Redis that keeps the connection open but never answers is fallen back from in seconds."""
    limiter = make_limiter(calls=2, redis=through(redis_proxy, redis_url), fallback=True)
    async with limiter.slot():
        pass
    redis_proxy.stall()

    async def enter() -> None:
        async with limiter.slot():
            pass

    try:
        # Without a timeout, the limiter would wait for the answer for ever (redis-py < 8).
        await asyncio.wait_for(enter(), 15)
    finally:
        await redis_proxy.up()


@pytest.mark.slow
async def test_listener_outlives_a_wait_longer_than_the_socket_timeout(
    redis_url: str, make_limiter: MakeLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    """A quiet spell longer than the client's socket timeout does not end the release listener."""
    holder = make_limiter(calls=1, period=0.2, lease=60.0)
    quick = f"{redis_url}{'&' if '?' in redis_url else '?'}socket_timeout=0.2"
    waiter = make_limiter(calls=1, period=0.2, lease=60.0, redis=quick)
    tasks, leave = await hold_slots(holder, 1)
    caplog.set_level(logging.DEBUG, logger="leadsq_async")
    waiting = asyncio.ensure_future(hold_slots(waiter, 1))
    await asyncio.sleep(1.0)
    assert not waiting.done()
    assert "stopped listening" not in caplog.text
    leave.set()
    await asyncio.gather(*tasks)
    more_tasks, more_leave = await asyncio.wait_for(waiting, 5)
    more_leave.set()
    await asyncio.gather(*more_tasks)


async def test_a_limit_over_31_days_is_not_learned_nor_sent_to_redis(key: str) -> None:
    """'1 in 10000000000000 s' would overflow the scripts' integers: it never reaches Redis."""
    async with lsq.RedisLimiter(UNREACHABLE_URL, lsq.RateLimit(10, 5), key=key) as limiter:
        assert await limiter.learn(lsq.RateLimit(1, 10_000_000_000_000)) is False
        with pytest.raises(lsq.RateLimiterUnavailableError):  # a plausible one is sent
            await limiter.learn(lsq.RateLimit(1, 86_400))
        assert limiter.rate_limits == (lsq.RateLimit(10, 5),)
