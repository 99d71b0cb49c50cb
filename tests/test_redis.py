"""RedisRateLimit against the real Redis server on 127.0.0.1:6379.

Times are read from Redis' clock (``TIME``), the clock the limiter keeps to. The
rule under test: a slot is held from its grant until `period` after its release,
and never more than `calls` at once, in one process or across several. The crawl
tests check the outcome the rule is for, as the emulator's strict window counts
it: worker processes crawling through one shared limiter draw no rate-limit
answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
import leadsq_async._redis
from leadsq_async.testing import RunningEmulator

pytestmark = pytest.mark.redis

UNREACHABLE_URL = "redis://:hunter2@127.0.0.1:1/0"

MakeLimiter = Callable[..., lsq.RedisRateLimit]


@pytest.fixture
def key(redis_url: str) -> Iterator[str]:
    """A key no other test uses; its Redis keys are deleted afterwards."""
    name = f"leadsq-async:test:{uuid.uuid4().hex}"
    yield name
    cleaner = redis.Redis.from_url(redis_url)
    try:
        cleaner.delete(name, f"{name}:state", f"{name}:go")
    finally:
        cleaner.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A redis.asyncio client of the test's own."""
    connection = aioredis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.fixture
async def make_limiter(redis_url: str, key: str) -> AsyncIterator[MakeLimiter]:
    """Make limiters on the test's key (each with its own client); all closed afterwards."""
    made: list[lsq.RedisRateLimit] = []

    def make(calls: int = 3, period: float = 0.3, **options: Any) -> lsq.RedisRateLimit:
        options.setdefault("key", key)
        limiter = lsq.RedisRateLimit(options.pop("redis", redis_url), calls, period, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


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
    members = await client.zrange(key, 0, -1)
    return sum(1 for member in members if not member.endswith(b":released"))


async def until(condition: Callable[[], Awaitable[bool]], checks: int = 500) -> None:
    """Wait until `condition()` (a look at Redis) holds, checking every 10 ms."""
    for _ in range(checks):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still not true after {checks} checks")


async def hold_slots(
    limiter: lsq.RedisRateLimit, count: int
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
    """RedisRateLimit satisfies the RateLimiter protocol the Session needs."""
    assert isinstance(make_limiter(), lsq.RateLimiter)


async def test_burst_of_calls_is_granted_at_once(make_limiter: MakeLimiter) -> None:
    """All `calls` slots are granted together, none waiting for another's release."""
    limiter = make_limiter(calls=4)
    tasks, leave = await hold_slots(limiter, 4)
    leave.set()
    await asyncio.gather(*tasks)


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
    await asyncio.sleep(0.2)
    assert not entered.is_set()
    leave.set()
    # Without the wake-up, the waiter would sleep until the lease's end (60 s).
    await asyncio.wait_for(asyncio.gather(*tasks, waiting), 10)


async def test_no_window_holds_more_than_calls_across_tasks(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """Twelve tasks on one limiter: never more than `calls` slots held at once."""
    limiter = make_limiter(calls=3, period=0.25)
    spans: list[tuple[float, float]] = []

    async def request(hold: float) -> None:
        async with limiter.slot():
            enter = await redis_now(client)
            await asyncio.sleep(hold)
            spans.append((enter, await redis_now(client)))

    await asyncio.gather(*(request(0.005 * (n % 4)) for n in range(12)))
    assert len(spans) == 12
    assert most_held_at_once(spans, 0.25) == 3


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
    redis_url: str, key: str, emulator: RunningEmulator, limiter: str, processes: int = 4
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Crawl every lead of the emulator from `processes` workers, each a disjoint slice.

    The emulator is given a strict window of CRAWL_CALLS per CRAWL_PERIOD; every
    worker's session keeps to the same, through a `RedisRateLimit` on `key`
    (`limiter` "redis") or its own in-process `RateLimit` ("local"). The workers
    start together. Returns each lead's result and each worker's session counts.
    """
    emulator.config.rate_limit_calls = CRAWL_CALLS
    emulator.config.rate_limit_period = CRAWL_PERIOD
    lead_ids = sorted(emulator.data.opportunities)
    keys = {"LSQ_ACCESS_KEY": emulator.access_key, "LSQ_SECRET_KEY": emulator.secret_key}
    options = [
        f"--emulator={emulator.url}",
        f"--limiter={limiter}",
        f"--calls={CRAWL_CALLS}",
        f"--period={CRAWL_PERIOD}",
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
    """Four processes crawling through one RedisRateLimit stay within the server's window."""
    leads, _ = await crawl_in_processes(redis_url, key, lsq_emulator, "redis")
    assert lsq_emulator.stats.rate_limited == 0
    # More requests than one window allows, so the processes had to wait for each other.
    assert lsq_emulator.stats.accepted > CRAWL_CALLS
    assert lsq_emulator.stats.most_accepted_in_window <= CRAWL_CALLS
    assert {lead: event["error"] for lead, event in leads.items() if event["error"]} == {}
    expected = {lead: len(rows) for lead, rows in lsq_emulator.data.opportunities.items()}
    assert {lead: event["opportunities"] for lead, event in leads.items()} == expected


@pytest.mark.slow
async def test_processes_with_their_own_limits_draw_rate_limit_answers(
    redis_url: str, key: str, lsq_emulator: RunningEmulator
) -> None:
    """The contrast: four processes, each keeping to the limit on its own, get refused."""
    _, sessions = await crawl_in_processes(redis_url, key, lsq_emulator, "local")
    assert lsq_emulator.stats.rate_limited > 0
    assert sum(session["rate_limited"] for session in sessions) > 0


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


async def test_lower_limit_is_shared(make_limiter: MakeLimiter, client: aioredis.Redis) -> None:
    """A limit lowered through one limiter is kept to by another on the same key."""
    lowering = make_limiter(calls=5, period=0.3)
    other = make_limiter(calls=5, period=0.3)
    assert await lowering.lower(lsq.RateLimit(1, 0.3)) is True
    assert await other.lower(lsq.RateLimit(1, 0.3)) is False
    async with other.slot():
        left = await redis_now(client)
    assert other.rate_limit == lsq.RateLimit(1, 0.3)
    async with other.slot():
        entered = await redis_now(client)
    assert entered >= left + 0.3


async def test_lower_refuses_a_faster_rate(make_limiter: MakeLimiter) -> None:
    """`lower` keeps the current limit when the stated one is not slower."""
    limiter = make_limiter(calls=5, period=1.0)
    assert await limiter.lower(lsq.RateLimit(10, 1.0)) is False
    assert await limiter.lower(lsq.RateLimit(10, 2.0)) is False
    assert limiter.rate_limit == lsq.RateLimit(5, 1.0)


async def test_longer_lowered_period_covers_slots_already_released(
    make_limiter: MakeLimiter, client: aioredis.Redis
) -> None:
    """After lowering to a longer period, released slots stay held for the new period."""
    limiter = make_limiter(calls=2, period=0.2)
    tasks, leave = await hold_slots(limiter, 2)
    released = await redis_now(client)
    leave.set()
    await asyncio.gather(*tasks)
    assert await limiter.lower(lsq.RateLimit(1, 0.6)) is True
    async with limiter.slot():
        entered = await redis_now(client)
    assert entered >= released + 0.6


async def test_idle_keys_expire(
    make_limiter: MakeLimiter, client: aioredis.Redis, key: str
) -> None:
    """The slots and the shared state carry a time to live, so idle keys vanish."""
    limiter = make_limiter(calls=2, period=0.3)
    await limiter.pause(0.01)
    async with limiter.slot():
        pass
    assert 0 < await client.pttl(key) <= 1300
    assert 0 < await client.pttl(f"{key}:state") <= 3_600_000


async def test_limiter_closes_the_client_it_made(
    redis_url: str, key: str, client: aioredis.Redis
) -> None:
    """A limiter made from a URL closes its connections (listener's included) in aclose."""
    name = f"lsq-{uuid.uuid4().hex[:12]}"
    limiter = lsq.RedisRateLimit(f"{redis_url}?client_name={name}", 1, 0.2, key=key)

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
    """With Redis down, entering a slot raises RateLimiterUnavailable naming the address."""
    async with lsq.RedisRateLimit(UNREACHABLE_URL, key=key) as limiter:
        with pytest.raises(lsq.RateLimiterUnavailable) as caught:
            async with limiter.slot():
                pytest.fail("a slot was granted without Redis")
    assert caught.value.address == "127.0.0.1:1/0"
    assert "127.0.0.1:1" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(limiter)):
        assert "hunter2" not in text


async def test_unreachable_redis_fails_pause_and_lower(key: str) -> None:
    """With Redis down, pause and lower raise RateLimiterUnavailable too."""
    async with lsq.RedisRateLimit(UNREACHABLE_URL, key=key) as limiter:
        with pytest.raises(lsq.RateLimiterUnavailable):
            await limiter.pause(1.0)
        with pytest.raises(lsq.RateLimiterUnavailable):
            await limiter.lower(lsq.RateLimit(1, 5.0))


async def test_fallback_keeps_to_a_share_of_the_limit(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With fallback on and Redis down, each process keeps to calls // processes, warning once."""
    loop = asyncio.get_running_loop()
    async with lsq.RedisRateLimit(
        UNREACHABLE_URL, 4, 0.3, key=key, fallback=True, fallback_processes=2
    ) as limiter:
        with caplog.at_level(logging.WARNING, logger="leadsq_async"):
            tasks, leave = await hold_slots(limiter, 2)
            third: list[float] = []

            async def late() -> None:
                async with limiter.slot():
                    third.append(loop.time())

            waiter = asyncio.ensure_future(late())
            await asyncio.sleep(0.05)
            released = loop.time()
            leave.set()
            await asyncio.gather(*tasks, waiter)
    assert third[0] >= released + 0.3
    warnings = [record for record in caplog.records if "falling back" in record.getMessage()]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"calls": 0}, ValueError),
        ({"calls": "25"}, TypeError),
        ({"calls": True}, TypeError),
        ({"period": 0}, ValueError),
        ({"period": math.inf}, ValueError),
        ({"period": "5"}, TypeError),
        ({"lease": 0}, ValueError),
        ({"lease": -1.0}, ValueError),
        ({"key": ""}, ValueError),
        ({"key": b"k"}, TypeError),
        ({"redis": 6379}, TypeError),
        ({"redis": "http://127.0.0.1:6379"}, ValueError),
        ({"fallback": 1}, TypeError),
        ({"fallback_processes": 0}, ValueError),
        ({"fallback_processes": 2.0}, TypeError),
    ],
)
def test_bad_arguments_are_refused(arguments: dict[str, Any], error: type[Exception]) -> None:
    """Bad arguments raise TypeError or ValueError when the limiter is made."""
    options: dict[str, Any] = {"redis": UNREACHABLE_URL, **arguments}
    with pytest.raises(error):
        lsq.RedisRateLimit(**options)


async def test_fallback_returns_to_redis_once_it_answers_again(
    redis_url: str,
    redis_proxy: TcpProxy,
    make_limiter: MakeLimiter,
    client: aioredis.Redis,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cut off, a limiter keeps to its local share; with Redis back, it takes slots there again."""
    monkeypatch.setattr(leadsq_async._redis, "_FALLBACK_RETRY_SECONDS", 0.2)
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
    await asyncio.sleep(0.1)
    assert not third.done()  # the local share is 4 // 2 slots
    leave.set()
    await asyncio.gather(*tasks)
    more_tasks, more_leave = await asyncio.wait_for(third, 5)
    more_leave.set()
    await asyncio.gather(*more_tasks)
    tried = redis_proxy.accepted
    await asyncio.sleep(0.3)  # past the retry time: Redis is tried again, and fails again
    async with limiter.slot():
        assert await held_in_redis(client, key) == 0
    assert redis_proxy.accepted > tried

    await redis_proxy.up()
    await asyncio.sleep(0.3)
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
    with pytest.raises(lsq.RateLimiterUnavailable):
        async with limiter.slot():
            pytest.fail("a slot was granted without Redis")
    with pytest.raises(lsq.RateLimiterUnavailable):
        await limiter.pause(0.01)
    await redis_proxy.up()
    async with limiter.slot():
        assert await held_in_redis(client, key) == 1
    await limiter.pause(0.01)


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
            with pytest.raises(lsq.RateLimiterUnavailable):
                await asyncio.wait_for(waiting, 10)
    finally:
        leave.set()
        await asyncio.gather(*tasks)


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
