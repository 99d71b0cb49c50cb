"""Tests of the in-process sliding-window limiter, almost all in virtual time.

The limiter keeps time with the running loop, so under ``@pytest.mark.looptime`` timings
are exact and a 5-second period costs nothing.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import math
import random
import re
import sys
import time
import types
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsq_async import (
    QuotaExhaustedError,
    RateLimit,
    RateLimiter,
    SlidingWindowLimiter,
    least_time,
)
from leadsq_async._limits import learned_in_words, utc_now

T = TypeVar("T")


def now() -> float:
    """The running loop's clock: the limiter's, virtual under looptime."""
    return asyncio.get_running_loop().time()


def in_virtual_time(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a fresh looptime loop starting at 0: for hypothesis, whose
    examples each need their own clock inside one test."""
    looptime = importlib.import_module("looptime")  # untyped: the type checker lacks it
    loop: asyncio.AbstractEventLoop = looptime.new_event_loop(start=0)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture
def limiter_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays of the sleeps the package's code takes (not the test's own)."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, result: Any = None) -> Any:
        if sys._getframe(1).f_globals.get("__name__", "").startswith("leadsq_async"):
            sleeps.append(delay)
        return await real_sleep(delay, result)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    return sleeps


def make_limiter(calls: int, period: float) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(RateLimit(calls, period))


class Recorder:
    """Sends fake requests through a limiter and records grant and release times."""

    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self.limiter = limiter
        self.grants: list[float] = []
        self.releases: list[float] = []
        self.order: list[str] = []

    async def request(self, duration: float = 0.0, name: str = "", start: float = 0.0) -> float:
        await asyncio.sleep(start)
        async with self.limiter.slot():
            granted = now()
            self.grants.append(granted)
            self.order.append(name)
            await asyncio.sleep(duration)
        self.releases.append(now())
        return granted


def assert_within_limit(
    grants: list[float], releases: list[float], calls: int, period: float, since: float = -1.0
) -> None:
    """No `period` window can have seen more than `calls` requests, wherever in its
    in-flight interval [grant, release] each one reached the server."""
    grants, releases = sorted(grants), sorted(releases)
    for i in range(len(grants) - calls):
        if grants[i + calls] >= since:
            assert grants[i + calls] >= releases[i] + period
    intervals = list(zip(grants, releases, strict=True))
    # The busiest window [t, t + period) starts at some release time.
    for start in releases:
        seen = [(g, r) for g, r in intervals if g < start + period and r >= start]
        if any(g >= since for g, _ in seen):
            assert len(seen) <= calls, f"{len(seen)} requests in [{start}, {start + period})"


async def random_workload(
    limiter: SlidingWindowLimiter, count: int, seed: int, max_latency: float
) -> Recorder:
    rng = random.Random(seed)
    recorder = Recorder(limiter)
    await asyncio.gather(
        *(
            recorder.request(duration=rng.uniform(0, max_latency), start=rng.uniform(0, 60))
            for _ in range(count)
        )
    )
    return recorder


@pytest.mark.looptime
async def test_burst_of_calls_is_granted_at_once() -> None:
    """A burst of `calls` requests is granted immediately, with no waiting."""
    recorder = Recorder(make_limiter(25, 5))
    await asyncio.gather(*(recorder.request(duration=1) for _ in range(25)))
    assert recorder.grants == [0.0] * 25
    assert recorder.limiter.waited_seconds == 0.0


@pytest.mark.looptime
async def test_extra_call_waits_until_first_release_plus_period() -> None:
    """Request calls+1 is granted exactly `period` after the first response completed."""
    recorder = Recorder(make_limiter(3, 5))
    await asyncio.gather(
        *(recorder.request(duration=d) for d in (2, 1, 3)), recorder.request(start=0.5)
    )
    assert recorder.grants[-1] == 6.0


@pytest.mark.looptime
async def test_waiter_sleeps_once_per_slot_instead_of_polling(limiter_sleeps: list[float]) -> None:
    """The waiter sleeps once, from the release until the slot frees (no periodic checks)."""
    recorder = Recorder(make_limiter(1, 5))
    await asyncio.gather(recorder.request(duration=2), recorder.request(start=1))
    assert recorder.grants == [0.0, 7.0]
    assert limiter_sleeps == [5.0]


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(4))
async def test_no_window_ever_holds_more_than_calls_requests(seed: int) -> None:
    """A long random workload never puts more than `calls` requests in any `period` window."""
    recorder = await random_workload(make_limiter(5, 2), 400, seed, max_latency=3)
    assert_within_limit(recorder.grants, recorder.releases, 5, 2)


@pytest.mark.looptime
async def test_long_run_sustains_the_full_rate() -> None:
    """100 zero-latency requests at 25 per 5 s go out 25 per period, the last at 15 s."""
    recorder = Recorder(make_limiter(25, 5))
    await asyncio.gather(*(recorder.request() for _ in range(100)))
    assert sorted(recorder.grants) == [5.0 * (i // 25) for i in range(100)]


@pytest.mark.looptime
async def test_waiters_are_served_first_come_first_served() -> None:
    """Waiters get slots in the order they started waiting."""
    recorder = Recorder(make_limiter(1, 1))
    names = [f"w{i}" for i in range(8)]
    # Started in reverse list order, so arrival order differs from creation order.
    await asyncio.gather(
        *(recorder.request(name=n, start=0.1 * (8 - i)) for i, n in enumerate(names))
    )
    assert recorder.order == names[::-1]


@pytest.mark.looptime
async def test_cancelled_waiter_gives_its_place_back() -> None:
    """Cancelling a queued waiter frees its place: the one behind it moves up."""
    recorder = Recorder(make_limiter(1, 5))
    await recorder.request()
    first = asyncio.create_task(recorder.request(name="first"))
    doomed = asyncio.create_task(recorder.request(name="doomed"))
    last = asyncio.create_task(recorder.request(name="last"))
    await asyncio.sleep(1)
    assert recorder.limiter.waiting == 3
    doomed.cancel()
    await asyncio.sleep(0)
    assert recorder.limiter.waiting == 2
    assert await first == 5.0
    assert await last == 10.0
    assert doomed.cancelled()


@pytest.mark.looptime
async def test_cancelled_first_waiter_hands_the_wait_to_the_next() -> None:
    """Cancelling the waiter at the head of the queue lets the next one take the freed slot."""
    recorder = Recorder(make_limiter(1, 5))
    await recorder.request()
    head = asyncio.create_task(recorder.request())
    behind = asyncio.create_task(recorder.request())
    await asyncio.sleep(1)
    head.cancel()
    assert await behind == 5.0
    assert head.cancelled()


@pytest.mark.looptime
async def test_waiter_cancelled_after_being_woken_passes_its_turn_on() -> None:
    """A waiter handed the turn but cancelled before it ran passes the turn on (no lost wake-up)."""
    limiter = make_limiter(1, 5)
    tasks: dict[str, asyncio.Task[None]] = {}
    grants: dict[str, float] = {}

    async def use(name: str) -> None:
        async with limiter.slot():
            grants[name] = now()
            if name == "first":
                # "second" has just been handed the turn and has not run yet.
                tasks["second"].cancel()

    async with limiter.slot():
        pass
    for name in ("first", "second", "third"):
        tasks[name] = asyncio.create_task(use(name))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert grants == {"first": 5.0, "third": 10.0}
    assert tasks["second"].cancelled()


@pytest.mark.looptime
async def test_newcomer_does_not_take_a_free_slot_ahead_of_waiters() -> None:
    """Entering while a woken waiter has not run yet queues behind it instead of granting."""
    limiter = make_limiter(2, 5)
    jumped: list[bool] = []

    async def first() -> None:
        async with limiter.slot():
            # One slot is still free and "second" was just woken to take it.
            entering = limiter.slot().__aenter__()
            try:
                entering.send(None)
            except StopIteration:
                jumped.append(True)
                limiter._release()  # give back what the newcomer took
            else:
                jumped.append(False)
                entering.close()

    async def second() -> None:
        async with limiter.slot():
            pass

    async with limiter.slot(), limiter.slot():
        pass
    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await asyncio.gather(*tasks)
    assert jumped == [False]
    assert limiter.waiting == 0


@pytest.mark.looptime
async def test_cancellation_while_holding_releases_and_holds_for_period() -> None:
    """A request cancelled mid-flight frees its slot, but only `period` after the cancel."""
    recorder = Recorder(make_limiter(1, 5))
    holder = asyncio.create_task(recorder.request(duration=100))
    waiter = asyncio.create_task(recorder.request(start=1))
    await asyncio.sleep(2)
    holder.cancel()
    await asyncio.sleep(0)
    assert recorder.limiter.in_flight == 0
    assert recorder.limiter.in_use == 1
    assert await waiter == 7.0
    with pytest.raises(asyncio.CancelledError):
        await holder


@pytest.mark.looptime
async def test_exception_inside_releases_and_holds_for_period() -> None:
    """An exception in the body frees the slot `period` seconds after it was raised."""
    limiter = make_limiter(1, 5)

    async def failing_request() -> None:
        async with limiter.slot():
            await asyncio.sleep(1)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await failing_request()
    assert limiter.in_flight == 0
    assert limiter.next_free_in() == 5.0
    async with limiter.slot():
        assert now() == 6.0


@pytest.mark.looptime
async def test_pause_holds_back_tasks_already_waiting() -> None:
    """A pause delays a task that was already waiting for a slot past the pause's end."""
    recorder = Recorder(make_limiter(1, 1))
    await recorder.request()
    waiter = asyncio.create_task(recorder.request())
    await asyncio.sleep(0.5)
    await recorder.limiter.pause(3)
    assert await waiter == 3.5


@pytest.mark.looptime
async def test_pause_holds_back_new_requests_even_with_free_slots() -> None:
    """No slot is granted during a pause, although none is in use."""
    recorder = Recorder(make_limiter(5, 5))
    await recorder.limiter.pause(2)
    await asyncio.gather(*(recorder.request() for _ in range(3)))
    assert recorder.grants == [2.0, 2.0, 2.0]


@pytest.mark.looptime
async def test_pause_is_extended_but_never_shortened() -> None:
    """A later, longer pause extends the current one; a shorter one leaves it as it is."""
    recorder = Recorder(make_limiter(5, 5))
    await recorder.limiter.pause(3)
    await asyncio.sleep(1)
    await recorder.limiter.pause(1)
    assert await recorder.request() == 3.0
    await recorder.limiter.pause(4)
    assert await recorder.request() == 7.0


@pytest.mark.parametrize(
    ("seconds", "error"),
    [(-1, ValueError), (math.inf, ValueError), (math.nan, ValueError), (True, TypeError)],
)
def test_pause_rejects_bad_durations(seconds: float, error: type[Exception]) -> None:
    """pause() refuses negative, infinite, NaN and bool durations."""
    with pytest.raises(error):
        asyncio.run(SlidingWindowLimiter().pause(seconds))


@pytest.mark.parametrize(
    ("limit", "changed", "enforced"),
    [
        (RateLimit(10, 5), True, [RateLimit(10, 5)]),
        (RateLimit(4, 1), True, [RateLimit(4, 1), RateLimit(25, 5)]),
        (RateLimit(20, 10), True, [RateLimit(25, 5), RateLimit(20, 10)]),
        (RateLimit(5, 1), True, [RateLimit(5, 1), RateLimit(25, 5)]),
        (RateLimit(25, 5), False, [RateLimit(25, 5)]),
        (RateLimit(72, 5), False, [RateLimit(25, 5)]),
        (RateLimit(300, 60), False, [RateLimit(25, 5)]),
    ],
)
def test_learn_tightens_or_adds_and_says_whether_anything_changed(
    limit: RateLimit, changed: bool, enforced: list[RateLimit]
) -> None:
    """learn() tightens the same period or adds one; a looser or implied limit changes nothing."""
    limiter = SlidingWindowLimiter(RateLimit(25, 5))
    assert asyncio.run(limiter.learn(limit)) is changed
    assert limiter.rate_limits == tuple(enforced)


def test_learn_rejects_what_is_not_a_rate_limit() -> None:
    """learn() raises TypeError for anything but a RateLimit."""
    with pytest.raises(TypeError):
        asyncio.run(SlidingWindowLimiter().learn((2, 5)))  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_learned_calls_apply_to_later_grants() -> None:
    """After learn() tightens a limit, grants wait until fewer than the new `calls` are held."""
    recorder = Recorder(make_limiter(5, 5))
    await asyncio.gather(*(recorder.request() for _ in range(5)))
    assert await recorder.limiter.learn(RateLimit(2, 5))
    await asyncio.gather(*(recorder.request() for _ in range(4)))
    assert recorder.grants[5:] == [5.0, 5.0, 10.0, 10.0]


@pytest.mark.looptime
async def test_learned_shorter_period_keeps_the_configured_limit() -> None:
    """A limit of a shorter period is added: slots held under the configured one stay held."""
    recorder = Recorder(make_limiter(10, 10))
    await asyncio.gather(*(recorder.request() for _ in range(10)))
    await asyncio.sleep(1)
    assert await recorder.limiter.learn(RateLimit(2, 5))
    assert await recorder.request() == 10.0


@pytest.mark.looptime
async def test_learned_longer_period_also_covers_slots_already_freed() -> None:
    """A slot freed under the shorter period holds back new grants for the new period."""
    recorder = Recorder(make_limiter(2, 1))
    await asyncio.gather(recorder.request(), recorder.request())
    await asyncio.sleep(1.5)
    assert recorder.limiter.in_use == 0
    assert await recorder.limiter.learn(RateLimit(2, 4))
    granted = await recorder.request()
    # Both earlier requests were released at 0: a grant before 4.0 would make three
    # requests in one 4-second window. The 1-second limit forgot them at 1.0, so the
    # new one waits out the 3 s difference (to a few units in the last place: on a clock of
    # whole microseconds, as looptime's is, to the next microsecond).
    assert granted == pytest.approx(4.5, abs=2e-6)


@pytest.mark.looptime
async def test_learned_longer_period_holds_slots_cooling_down_for_it() -> None:
    """Slots cooling down under the shorter period are held for the learned longer period."""
    recorder = Recorder(make_limiter(2, 1))
    await asyncio.gather(recorder.request(), recorder.request(start=0.25))
    await asyncio.sleep(0.5)
    assert await recorder.limiter.learn(RateLimit(2, 4))
    assert recorder.limiter.next_free_in() == pytest.approx(3.25, abs=1e-12)
    # Held a few units in the last place past 4.0: granted at the next microsecond.
    assert await recorder.request() == pytest.approx(4.0, abs=2e-6)


@pytest.mark.looptime
async def test_waiter_sleeps_once_when_learn_leaves_too_many_slots_held(
    limiter_sleeps: list[float],
) -> None:
    """When learn() leaves more slots held than `calls`, a waiter sleeps once until enough free."""
    limiter = make_limiter(5, 5)
    recorder = Recorder(limiter)
    await asyncio.gather(*(recorder.request(start=i) for i in range(5)))
    assert await limiter.learn(RateLimit(2, 5))
    assert await recorder.request() == 8.0
    assert limiter_sleeps == [4.0]


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(3))
async def test_learned_longer_period_keeps_new_windows_within_both_limits(seed: int) -> None:
    """After learn() adds a longer period, windows with a later grant keep both limits."""
    limiter = make_limiter(5, 1)
    workload = asyncio.create_task(random_workload(limiter, 300, seed, max_latency=1))
    await asyncio.sleep(20.3)
    assert await limiter.learn(RateLimit(4, 3))
    recorder = await workload
    assert_within_limit(recorder.grants, recorder.releases, 4, 3, since=20.3)
    assert_within_limit(recorder.grants, recorder.releases, 5, 1)


@pytest.mark.looptime
@pytest.mark.parametrize("calls", [2, 5, 10, 15, 25, 72])
async def test_every_plan_is_respected(calls: int) -> None:
    """Each plan's limit per 5 s holds under load, and a full burst still goes out at once."""
    limiter = make_limiter(calls, 5)
    recorder = Recorder(limiter)
    rng = random.Random(calls)
    await asyncio.gather(*(recorder.request(rng.uniform(0, 2)) for _ in range(4 * calls)))
    assert recorder.grants.count(0.0) == calls
    assert_within_limit(recorder.grants, recorder.releases, calls, 5)


@pytest.mark.looptime
async def test_introspection_counts_slots_waiters_and_waiting_time() -> None:
    """in_use, in_flight, waiting, granted, waited_seconds and next_free_in track the state."""
    limiter = make_limiter(2, 5)
    recorder = Recorder(limiter)
    assert limiter.next_free_in() == 0.0
    holders = [asyncio.create_task(recorder.request(duration=1)) for _ in range(2)]
    waiters = [asyncio.create_task(recorder.request()) for _ in range(3)]
    await asyncio.sleep(0.5)
    assert (limiter.in_use, limiter.in_flight, limiter.waiting) == (2, 2, 3)
    assert limiter.next_free_in() is None
    await asyncio.sleep(1)
    assert (limiter.in_use, limiter.in_flight, limiter.granted) == (2, 0, 2)
    assert limiter.next_free_in() == 4.5
    await asyncio.gather(*holders, *waiters)
    assert limiter.granted == 5
    # Two waiters waited from 0 to 6, the third from 0 to 11.
    assert limiter.waited_seconds == 23.0


@pytest.mark.looptime
async def test_aclose_leaves_no_task_and_disturbs_no_waiter() -> None:
    """aclose() leaves no task behind and lets a waiting task still get its slot."""
    recorder = Recorder(make_limiter(1, 5))
    await recorder.request()
    waiter = asyncio.create_task(recorder.request())
    await asyncio.sleep(1)
    await recorder.limiter.aclose()
    await recorder.limiter.aclose()
    assert await waiter == 5.0
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.looptime
async def test_limiter_is_an_async_context_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """``async with`` gives the limiter itself and awaits aclose() on the way out, even on error."""
    closed: list[SlidingWindowLimiter] = []

    async def aclose(self: SlidingWindowLimiter) -> None:
        closed.append(self)

    monkeypatch.setattr(SlidingWindowLimiter, "aclose", aclose)
    limiter = make_limiter(1, 5)
    entered: list[SlidingWindowLimiter] = []

    async def use_and_fail() -> None:
        async with limiter as given:
            entered.append(given)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await use_and_fail()
    assert entered == [limiter]
    assert closed == [limiter]


@pytest.mark.looptime
async def test_slot_cannot_be_entered_twice() -> None:
    """Re-entering the same slot() object raises instead of taking a second slot."""
    limiter = make_limiter(5, 5)
    slot = limiter.slot()
    async with slot:
        with pytest.raises(RuntimeError):
            await slot.__aenter__()
        assert limiter.in_flight == 1


def test_limiter_implements_the_protocol() -> None:
    """SlidingWindowLimiter is a RateLimiter and starts at the default 25 per 5 s."""
    limiter = SlidingWindowLimiter()
    assert isinstance(limiter, RateLimiter)
    assert limiter.rate_limit == RateLimit(25, 5.0)


def test_limiter_rejects_what_is_not_a_rate_limit() -> None:
    """The constructor raises TypeError for a rate limit given as a tuple."""
    with pytest.raises(TypeError):
        SlidingWindowLimiter((25, 5))  # type: ignore[arg-type]


async def test_default_clock_holds_slots_for_a_real_period() -> None:
    """With the real clock, the third request of 2 per 0.2 s waits for a freed slot."""
    limiter = SlidingWindowLimiter(RateLimit(2, 0.2))
    releases: list[float] = []
    grants: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            grants.append(time.monotonic())
            # Read inside the body, so it is no later than the limiter's own release time.
            releases.append(time.monotonic())

    await asyncio.gather(request(), request(), request())
    assert grants[2] >= min(releases[:2]) + 0.2
    assert limiter.waited_seconds > 0


def test_rate_limit_defaults_to_25_per_5_seconds() -> None:
    """RateLimit() is the Enterprise plan, 25 calls per 5.0 s."""
    assert (RateLimit().calls, RateLimit().period) == (25, 5.0)


def test_rate_limit_stores_an_int_period_as_float() -> None:
    """An int period is accepted and stored as a float."""
    period = RateLimit(2, 5).period
    assert type(period) is float
    assert period == 5.0


@pytest.mark.parametrize("calls", [True, 2.0, "25", None])
def test_rate_limit_refuses_calls_that_are_not_int(calls: Any) -> None:
    """calls must be an int: bool, float, str and None raise TypeError."""
    with pytest.raises(TypeError, match="calls"):
        RateLimit(calls, 5)


@pytest.mark.parametrize("calls", [0, -1])
def test_rate_limit_refuses_calls_below_one(calls: int) -> None:
    """calls < 1 raises ValueError."""
    with pytest.raises(ValueError, match="calls"):
        RateLimit(calls, 5)


@pytest.mark.parametrize("period", [True, "5", None, 1j])
def test_rate_limit_refuses_periods_that_are_not_real(period: Any) -> None:
    """period must be a real number: bool, str, None and complex raise TypeError."""
    with pytest.raises(TypeError, match="period"):
        RateLimit(25, period)


@pytest.mark.parametrize("period", [0, -5, math.inf, math.nan])
def test_rate_limit_refuses_periods_not_finite_and_positive(period: float) -> None:
    """period <= 0, infinite or NaN raises ValueError."""
    with pytest.raises(ValueError, match="period"):
        RateLimit(25, period)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25/5", RateLimit(25, 5)),
        (" 2 / 0.5 ", RateLimit(2, 0.5)),
        ("72/5s", RateLimit(72, 5)),
        ("10/5 s", RateLimit(10, 5)),
        ("5/30m", RateLimit(5, 1800)),
        ("100/1h", RateLimit(100, 3600)),
        ("100/h", RateLimit(100, 3600)),
        ("10000/1d", RateLimit(10_000, 86_400)),
        ("250000/1D", RateLimit(250_000, 86_400)),
        ("1000/2days", RateLimit(1000, 172_800)),
        ("60/1.5min", RateLimit(60, 90)),
    ],
)
def test_rate_limit_parses_calls_slash_period_with_units(text: str, expected: RateLimit) -> None:
    """parse() reads CALLS/PERIOD, the period in seconds or with a unit s, m, h or d."""
    assert RateLimit.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected CALLS/PERIOD"),
        ("25", "expected CALLS/PERIOD"),
        ("25/", "expected CALLS/PERIOD"),
        ("a/b", "expected CALLS/PERIOD"),
        ("25/5/5", "expected CALLS/PERIOD"),
        ("2.5/5", "expected CALLS/PERIOD"),
        ("10/5x", "unknown unit 'x'"),
        ("10/1w", "unknown unit 'w'"),
        ("-1/5", "calls must be at least 1"),
        ("0/5", "calls must be at least 1"),
        ("25/-5", "period must be more than 0"),
        ("5/0", "period must be more than 0"),
        ("5/0d", "period must be more than 0"),
    ],
)
def test_rate_limit_parse_refuses_bad_text_and_says_why(text: str, message: str) -> None:
    """parse() raises ValueError naming the text and what is wrong with it."""
    with pytest.raises(
        ValueError, match=rf"invalid rate limit {re.escape(repr(text))}: .*{message}"
    ):
        RateLimit.parse(text)


@pytest.mark.parametrize(
    ("limit", "text"),
    [
        (RateLimit(25, 5), "25 calls per 5 s"),
        (RateLimit(1, 0.2), "1 call per 0.2 s"),
        (RateLimit(5, 90), "5 calls per 90 s"),
        (RateLimit(60, 60), "60 calls per minute"),
        (RateLimit(5, 1800), "5 calls per 30 min"),
        (RateLimit(100, 3600), "100 calls per hour"),
        (RateLimit(10, 7200), "10 calls per 2 h"),
        (RateLimit(10_000, 86_400), "10000 calls per day"),
        (RateLimit(1000, 172_800), "1000 calls per 2 days"),
    ],
)
def test_rate_limit_reads_well_as_text(limit: RateLimit, text: str) -> None:
    """str() of a RateLimit reads as a sentence, with minutes, hours and days named."""
    assert str(limit) == text


def test_rate_limit_compares_rates_exactly() -> None:
    """is_slower_than compares calls per second, with 5/1 and 25/5 equal."""
    assert RateLimit(2, 5).is_slower_than(RateLimit(25, 5))
    assert not RateLimit(5, 1).is_slower_than(RateLimit(25, 5))
    assert not RateLimit(25, 5).is_slower_than(RateLimit(5, 1))


@pytest.mark.parametrize(
    ("requests", "seconds"), [(0, 0.0), (1, 0.0), (25, 0.0), (26, 5.0), (50, 5.0), (51, 10.0)]
)
def test_least_time_counts_the_windows_after_the_first(requests: int, seconds: float) -> None:
    """25 requests fit in the first window; each further 25 need one more period."""
    assert RateLimit(25, 5.0).least_time(requests) == seconds


def earliest_schedule(limits: list[RateLimit], requests: int) -> list[float]:
    """The earliest grant times of zero-latency requests under every limit: request i no
    sooner than `period` after request i - `calls`, for each limit."""
    times: list[float] = []
    for i in range(requests):
        at = times[-1] if times else 0.0
        for limit in limits:
            if i >= limit.calls:
                at = max(at, times[i - limit.calls] + limit.period)
        times.append(at)
    return times


limit_sets = st.lists(
    st.builds(RateLimit, st.integers(1, 5), st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 8.0])),
    min_size=1,
    max_size=3,
    unique_by=lambda limit: limit.period,
)


def test_limiter_takes_several_limits_shortest_period_first() -> None:
    """A sequence of limits is enforced together; rate_limits lists them by period."""
    limiter = SlidingWindowLimiter([RateLimit(10_000, 86_400), RateLimit(10, 5)])
    assert limiter.rate_limits == (RateLimit(10, 5), RateLimit(10_000, 86_400))
    assert limiter.rate_limit == RateLimit(10, 5)


def test_two_limits_of_one_period_keep_the_one_with_fewer_calls() -> None:
    """Given twice for one period, the limit with fewer calls is the one kept."""
    limiter = SlidingWindowLimiter([RateLimit(25, 5), RateLimit(10, 5.0)])
    assert limiter.rate_limits == (RateLimit(10, 5),)


@pytest.mark.parametrize(
    ("rate_limit", "error"),
    [([], ValueError), ("25/5", TypeError), ([RateLimit(), (2, 5)], TypeError), (None, TypeError)],
)
def test_limiter_refuses_what_is_not_rate_limits(rate_limit: Any, error: type[Exception]) -> None:
    """An empty sequence raises ValueError; text, tuples and None raise TypeError."""
    with pytest.raises(error, match="rate_limit"):
        SlidingWindowLimiter(rate_limit)


@pytest.mark.looptime
async def test_a_request_waits_for_a_slot_of_every_limit(limiter_sleeps: list[float]) -> None:
    """Under 2 per 1 s and 3 per 10 s, each grant waits for whichever limit frees last."""
    limiter = SlidingWindowLimiter([RateLimit(2, 1), RateLimit(3, 10)])
    recorder = Recorder(limiter)
    await asyncio.gather(*(recorder.request() for _ in range(7)))
    assert recorder.grants == [0.0, 0.0, 1.0, 10.0, 10.0, 11.0, 20.0]
    # One sleep per grant time, each ending exactly at a grant: no polling.
    assert limiter_sleeps == [1.0, 9.0, 1.0, 9.0]


@settings(max_examples=40, deadline=None)
@given(limits=limit_sets, requests=st.integers(1, 60))
def test_several_limits_waste_no_capacity(limits: list[RateLimit], requests: int) -> None:
    """Zero-latency requests are granted at the earliest times every limit allows, no later."""

    async def main() -> list[float]:
        recorder = Recorder(SlidingWindowLimiter(limits))
        await asyncio.gather(*(recorder.request() for _ in range(requests)))
        return recorder.grants

    grants = in_virtual_time(main)
    expected = earliest_schedule(limits, requests)
    assert sorted(grants) == expected
    assert least_time(limits, requests) == expected[-1]


@settings(max_examples=60, deadline=None)
@given(
    limits=limit_sets,
    workload=st.lists(st.tuples(st.floats(0, 20), st.floats(0, 3)), min_size=1, max_size=60),
)
def test_random_workloads_never_exceed_any_limit(
    limits: list[RateLimit], workload: list[tuple[float, float]]
) -> None:
    """Whatever the arrivals and latencies, no window of any limit holds more than its calls."""

    async def main() -> Recorder:
        recorder = Recorder(SlidingWindowLimiter(limits))
        await asyncio.gather(
            *(recorder.request(duration=duration, start=start) for start, duration in workload)
        )
        return recorder

    recorder = in_virtual_time(main)
    for limit in limits:
        assert_within_limit(recorder.grants, recorder.releases, limit.calls, limit.period)


@settings(max_examples=60, deadline=None)
@given(
    limits=limit_sets,
    learned=st.builds(RateLimit, st.integers(1, 5), st.sampled_from([0.5, 1.0, 2.0, 4.0, 9.0])),
    learned_at=st.floats(0, 15),
    workload=st.lists(st.tuples(st.floats(0, 20), st.floats(0, 3)), min_size=1, max_size=60),
)
def test_random_workloads_keep_a_limit_learned_midway(
    limits: list[RateLimit],
    learned: RateLimit,
    learned_at: float,
    workload: list[tuple[float, float]],
) -> None:
    """A limit learned midway holds in every window with a later grant; the others always hold."""

    async def main() -> tuple[Recorder, float]:
        limiter = SlidingWindowLimiter(limits)
        recorder = Recorder(limiter)
        requests = asyncio.gather(
            *(recorder.request(duration=duration, start=start) for start, duration in workload)
        )
        await asyncio.sleep(learned_at)
        learned_time = now()  # learned_at on a clock of whole microseconds
        await limiter.learn(learned)
        await requests
        return recorder, learned_time

    recorder, learned_time = in_virtual_time(main)
    for limit in limits:
        assert_within_limit(recorder.grants, recorder.releases, limit.calls, limit.period)
    # A request granted at the very instant of learning may have come just before it.
    since = math.nextafter(learned_time, math.inf)
    assert_within_limit(
        recorder.grants, recorder.releases, learned.calls, learned.period, since=since
    )


@pytest.mark.parametrize("calls", [1, 7, 25])
@pytest.mark.parametrize("requests", [0, 1, 2, 26, 51, 100])
def test_least_time_of_one_limit_is_the_limits_own(calls: int, requests: int) -> None:
    """least_time() of a single limit is RateLimit.least_time."""
    limit = RateLimit(calls, 5)
    assert least_time(limit, requests) == limit.least_time(requests)
    assert least_time([limit], requests) == limit.least_time(requests)


def test_least_time_of_two_limits_can_exceed_both() -> None:
    """10 per 5 s and 20 per 20 s: 40 requests span 25 s, more than either limit alone needs."""
    limits = [RateLimit(10, 5), RateLimit(20, 20)]
    assert [limit.least_time(40) for limit in limits] == [15.0, 20.0]
    assert least_time(limits, 40) == 25.0


def test_least_time_of_a_day_of_pro_plan_requests() -> None:
    """Pro's 10 per 5 s and 10,000 a day: 10,000 requests take 5,000 s, the next waits a day."""
    pro = [RateLimit(10, 5), RateLimit(10_000, 86_400)]
    assert least_time(pro, 10_000) == 4995.0
    assert least_time(pro, 10_001) == 86_400.0


@pytest.mark.looptime
async def test_a_saturated_daily_quota_of_250000_stays_under_100_kb() -> None:
    """250,000 slots held under 250,000 a day take under 100 kB: buckets, not 250,000 floats.

    Released at 2,500 instants spread over the day (100 at each), 2.5 to each
    ``period / 1000`` bucket. The limiter's size is the sum over what it reaches (a walk
    of its object graph), not tracemalloc's count, which slows every slot tenfold."""
    limiter = SlidingWindowLimiter(RateLimit(250_000, 86_400))
    empty = _reachable_bytes(limiter)
    for _ in range(2_500):
        for _ in range(100):
            async with limiter.slot():
                pass
        await asyncio.sleep(86_400 / 2_500)
    assert limiter.in_use == 250_000
    used = _reachable_bytes(limiter) - empty
    assert used < 100_000, f"{used:,} bytes"


def _reachable_bytes(root: object) -> int:
    """The bytes of every object reachable from ``root``, less code, classes, modules and the
    event loop, which are shared with everything else."""
    shared = (
        type,
        types.ModuleType,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.CodeType,
        asyncio.AbstractEventLoop,
    )
    seen: set[int] = set()
    pending, total = [root], 0
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, shared):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        pending.extend(gc.get_referents(item))
    return total


@pytest.mark.looptime
async def test_releases_close_together_share_a_bucket_and_free_together() -> None:
    """Releases less than period/1000 apart free at the later one's time: a little late, safe."""
    recorder = Recorder(make_limiter(3, 1000))
    await asyncio.gather(recorder.request(), recorder.request(start=0.5), recorder.request(start=2))
    # The first two share a bucket (0.5 s < 1000 s / 1000) that frees at 1000.5; the
    # third, 2 s later, has its own.
    assert await recorder.request() == 1000.5
    assert await recorder.request() == 1000.5
    assert await recorder.request() == 1002.0


@pytest.mark.looptime
async def test_learned_limit_expires_after_an_hour_for_short_periods() -> None:
    """A learned 5-second limit is dropped an hour after it was learned."""
    limiter = make_limiter(25, 5)
    assert await limiter.learn(RateLimit(10, 5))
    await asyncio.sleep(3599.5)
    assert limiter.rate_limits == (RateLimit(10, 5),)
    await asyncio.sleep(0.5)
    assert limiter.rate_limits == (RateLimit(25, 5),)


@pytest.mark.looptime
async def test_learned_daily_quota_lasts_two_days() -> None:
    """A learned daily quota lasts two periods, the day it was learned in and the next."""
    limiter = make_limiter(10, 5)
    quota = RateLimit(1000, 86_400)
    assert await limiter.learn(quota)
    await asyncio.sleep(2 * 86_400 - 1)
    before = limiter.rate_limits
    await asyncio.sleep(1)
    after = limiter.rate_limits
    assert (before, after) == ((RateLimit(10, 5), quota), (RateLimit(10, 5),))


@pytest.mark.looptime
async def test_naming_a_learned_limit_again_renews_it() -> None:
    """learn() of the limit already learned changes nothing, but it lasts another hour."""
    limiter = make_limiter(25, 5)
    assert await limiter.learn(RateLimit(10, 5))
    await asyncio.sleep(3000)
    assert not await limiter.learn(RateLimit(10, 5))
    await asyncio.sleep(3599)
    assert limiter.rate_limit == RateLimit(10, 5)
    await asyncio.sleep(1)
    assert limiter.rate_limit == RateLimit(25, 5)


@pytest.mark.looptime
async def test_an_expired_limit_named_again_soon_keeps_its_count() -> None:
    """Named again within a period of expiring, a limit still counts the slots it held."""
    recorder = Recorder(make_limiter(10, 1))
    two_hours = RateLimit(3, 7200)
    assert await recorder.limiter.learn(two_hours)  # lasts 4 hours
    await asyncio.gather(*(recorder.request(start=14_000) for _ in range(3)))
    await asyncio.sleep(15_000 - now())
    assert recorder.limiter.rate_limits == (RateLimit(10, 1),)
    assert await recorder.limiter.learn(two_hours)
    # Held until 14,000 + 7,200: neither granted at once nor held back a new period.
    assert await recorder.request() == 21_200.0


@pytest.mark.looptime
async def test_waiter_held_back_by_a_learned_limit_is_granted_when_it_expires() -> None:
    """The first waiter wakes when the learned limit holding it back expires, not later."""
    recorder = Recorder(SlidingWindowLimiter([RateLimit(10, 1), RateLimit(100, 3600)]))
    assert await recorder.limiter.learn(RateLimit(1, 3600))  # lasts 2 hours
    assert await recorder.request() == 0.0
    assert await recorder.request(duration=100) == 3600.0
    # Its slot is held until 7,300, but the learned limit expires at 7,200.
    assert await recorder.request() == 7200.0


def quota_limiter(limits: list[RateLimit]) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(limits)


def assert_retry_in(error: QuotaExhaustedError, seconds: float) -> None:
    """``error.retry_at`` is ``seconds`` of the loop's (virtual) clock after it was raised.

    It is `utc_now` at the raise plus the wait, and the wall clock has moved on by the
    real time the test took since (well under a second) when this looks."""
    retry_in = (error.retry_at - utc_now()).total_seconds()
    assert seconds - 1 < retry_in <= seconds + 1e-6


@pytest.mark.looptime
async def test_slot_with_max_wait_fails_at_once_when_the_quota_is_spent() -> None:
    """slot(max_wait=) raises QuotaExhaustedError at once, takes nothing, names the spent limit."""
    quota = RateLimit(3, 100)
    recorder = Recorder(quota_limiter([RateLimit(2, 5), quota]))
    await asyncio.gather(*(recorder.request() for _ in range(3)))
    await asyncio.sleep(10 - now())
    with pytest.raises(QuotaExhaustedError) as caught:
        async with recorder.limiter.slot(max_wait=30):
            pytest.fail("granted")
    assert caught.value.limit == quota
    assert_retry_in(caught.value, 90)
    assert "3 calls per 100 s is spent" in str(caught.value)
    assert (now(), recorder.limiter.granted, recorder.limiter.waiting) == (10.0, 3, 0)


@pytest.mark.looptime
async def test_slot_with_max_wait_waits_when_the_slot_is_close_enough() -> None:
    """A slot no further than max_wait away is waited for as usual."""
    recorder = Recorder(quota_limiter([RateLimit(2, 5), RateLimit(3, 100)]))
    await asyncio.gather(*(recorder.request() for _ in range(3)))
    await asyncio.sleep(10 - now())
    async with recorder.limiter.slot(max_wait=90):
        assert now() == 100.0


@pytest.mark.looptime
async def test_slot_with_max_wait_counts_a_slot_in_flight_as_a_period_away() -> None:
    """With every slot in flight, the earliest grant is taken as a period from now."""
    limiter = quota_limiter([RateLimit(1, 5)])
    async with limiter.slot():
        with pytest.raises(QuotaExhaustedError) as caught:
            await limiter.slot(max_wait=4.9).__aenter__()
        assert_retry_in(caught.value, 5)
        assert caught.value.limit == RateLimit(1, 5)


@pytest.mark.looptime
@pytest.mark.parametrize("pause_limit", [RateLimit(1000, 86_400), None])
async def test_a_pause_that_holds_slots_back_is_reported_with_its_limit(
    pause_limit: RateLimit | None,
) -> None:
    """When a pause binds, the error names the limit the pause was given, or none."""
    limiter = quota_limiter([RateLimit(10, 5)])
    await limiter.pause(600, limit=pause_limit)
    with pytest.raises(QuotaExhaustedError) as caught:
        await limiter.slot(max_wait=60).__aenter__()
    assert caught.value.limit == pause_limit
    assert_retry_in(caught.value, 600)


@pytest.mark.looptime
async def test_queued_waiter_fails_as_soon_as_a_pause_puts_its_slot_too_far() -> None:
    """A pause fails at once the queued waiters it makes wait past their max_wait."""
    limiter = quota_limiter([RateLimit(1, 5)])
    async with limiter.slot():
        patient = asyncio.create_task(limiter.slot().__aenter__())
        hurried = asyncio.create_task(limiter.slot(max_wait=30).__aenter__())
        await asyncio.sleep(1)
        await limiter.pause(100, limit=RateLimit(1000, 86_400))
        with pytest.raises(QuotaExhaustedError):
            await hurried
        assert now() == 1.0
    await patient
    assert now() == 101.0


@pytest.mark.looptime
async def test_first_waiter_fails_when_it_wakes_to_a_pause_past_its_max_wait() -> None:
    """The waiter at the head, sleeping when the pause came, fails when it wakes."""
    limiter = quota_limiter([RateLimit(1, 5)])
    async with limiter.slot():
        pass
    head = asyncio.create_task(limiter.slot(max_wait=30).__aenter__())
    await asyncio.sleep(1)
    await limiter.pause(100)
    with pytest.raises(QuotaExhaustedError):
        await head
    assert now() == 5.0
    assert limiter.waiting == 0


@pytest.mark.looptime
async def test_learning_a_spent_daily_quota_fails_requests_that_will_not_wait_a_day() -> None:
    """A daily quota learned from a refusal makes slot(max_wait=60) fail, naming the quota."""
    limiter = quota_limiter([RateLimit(10, 5)])
    quota = RateLimit(10_000, 86_400)
    assert await limiter.learn(quota)
    with pytest.raises(QuotaExhaustedError) as caught:
        await limiter.slot(max_wait=60).__aenter__()
    assert caught.value.limit == quota
    # Requests released more than 5 s ago are forgotten: held back the rest of a day.
    assert_retry_in(caught.value, 86_395)


@pytest.mark.looptime
async def test_max_wait_of_zero_takes_a_free_slot() -> None:
    """max_wait=0 is granted a free slot at once, and infinity waits like None."""
    limiter = make_limiter(1, 5)
    async with limiter.slot(max_wait=0):
        pass
    async with limiter.slot(max_wait=math.inf):
        assert now() == 5.0


@pytest.mark.parametrize(
    ("max_wait", "error"),
    [(-1, ValueError), (math.nan, ValueError), (True, TypeError), ("5", TypeError)],
)
@pytest.mark.looptime
async def test_slot_refuses_bad_max_wait(max_wait: Any, error: type[Exception]) -> None:
    """slot() refuses negative, NaN, bool and text max_wait on entry."""
    with pytest.raises(error, match="max_wait"):
        await make_limiter(1, 5).slot(max_wait=max_wait).__aenter__()


def test_pause_refuses_a_limit_that_is_not_a_rate_limit() -> None:
    """pause(limit=) takes a RateLimit or None."""
    with pytest.raises(TypeError, match="limit"):
        asyncio.run(SlidingWindowLimiter().pause(1, limit="10/5"))  # type: ignore[arg-type]


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("limit", "learned"),
    [
        (RateLimit(1, 10_000_000_000_000), False),
        (RateLimit(1, 10_000_000_000), False),
        (RateLimit(1, 31 * 86_400 + 1), False),
        (RateLimit(1, 31 * 86_400), True),
    ],
)
async def test_a_limit_over_31_days_is_not_learned(limit: RateLimit, learned: bool) -> None:
    """A period over 31 days is not believed: nothing changes, and max_wait still holds."""
    limiter = make_limiter(10, 5)
    assert await limiter.learn(limit) is learned
    assert (limit in limiter.rate_limits) is learned
    if learned:
        with pytest.raises(QuotaExhaustedError) as caught:
            await limiter.slot(max_wait=3).__aenter__()
        assert_retry_in(caught.value, 31 * 86_400 - 5)
    else:
        async with limiter.slot(max_wait=3) as grant:
            assert grant.waited == 0.0


@pytest.mark.looptime
async def test_retry_at_of_a_configured_limit_of_ages_is_a_datetime() -> None:
    """A configured limit may be absurdly long: retry_at stays a datetime, never overflows."""
    limiter = SlidingWindowLimiter(RateLimit(1, 1e13))
    async with limiter.slot():
        pass
    with pytest.raises(QuotaExhaustedError) as caught:
        await limiter.slot(max_wait=3).__aenter__()
    assert caught.value.retry_at.year > 2100


@pytest.mark.looptime
async def test_at_most_eight_learned_limits_are_kept_the_latest_named() -> None:
    """300 refusals each naming a new period leave 8 learned limits, the 8 named last (none
    implies another), and learning and granting stay quick."""
    limiter = make_limiter(10, 5)
    named = [RateLimit(1, 5 + n / 100) for n in range(300)]
    started = time.process_time()
    for limit in named:
        assert await limiter.learn(limit)
    learning = time.process_time() - started
    assert limiter.rate_limits == (RateLimit(10, 5), *named[-8:])
    assert learning < 1.0, f"{learning:.2f} s of CPU to learn 300 limits"


@pytest.mark.looptime
async def test_a_learned_limit_the_others_imply_is_forgotten_first() -> None:
    """Beyond 8, a learned limit that a later one implies goes before an older one."""
    limiter = make_limiter(10, 5)
    oldest, implied = RateLimit(3, 7), RateLimit(4, 9.5)
    others = [RateLimit(5, 10 + n / 10) for n in range(6)]
    for limit in [oldest, implied, *others]:
        assert await limiter.learn(limit)
        await asyncio.sleep(1)
    assert await limiter.learn(RateLimit(2, 5.5))  # 2 per 5.5 s allow at most 4 in 9.5 s
    limits = limiter.rate_limits
    assert implied not in limits
    assert oldest in limits
    assert len(limits) == 1 + 8


@pytest.mark.parametrize(
    ("before", "after", "words"),
    [
        ([RateLimit(25, 5)], [RateLimit(10, 5)], " in place of 25 calls per 5 s"),
        (
            [RateLimit(25, 5)],
            [RateLimit(25, 5), RateLimit(30, 60)],
            ", beside 25 calls per 5 s",
        ),
        (
            [RateLimit(25, 5), RateLimit(9000, 86_400)],
            [RateLimit(10, 5), RateLimit(9000, 86_400)],
            " in place of 25 calls per 5 s, beside 9000 calls per day",
        ),
        ([], [RateLimit(10, 5)], ""),
    ],
)
def test_the_learned_limit_warning_says_what_it_replaced_and_what_it_keeps(
    before: list[RateLimit], after: list[RateLimit], words: str
) -> None:
    """The warning's end names the limit of the learned one's period that it replaced, and
    the others kept beside it (it read "beside nothing else" in the commonest case: a plan
    of 10 per 5 s met by the default 25 per 5 s)."""
    learned = next(limit for limit in after if limit not in before)
    assert learned_in_words(learned, before, after) == words
