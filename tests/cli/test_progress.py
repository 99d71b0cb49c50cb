"""The progress a crawl shows tells the truth: requests, ETA, pace and what slows it.

Everything runs in virtual time (looptime: the loop's clock): the crawls go through a
real `Session` and `crawl_into` against an `httpx.MockTransport` server, and the
display is a recorder, so every figure the user would see can be checked against
what the crawl then actually did.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import pytest
from fakes import session_for
from rich.console import Console

import leadsq_async as lsq
from leadsq_async.cli import _display
from leadsq_async.cli._counts import CrawlCounts
from leadsq_async.cli._display import ExportProgress, progress_display
from leadsq_async.cli._ids import lines_to_ids
from leadsq_async.cli._meter import ACTIVITIES, OPPORTUNITIES, Meter, Workload
from leadsq_async.cli._outcomes import Failures
from leadsq_async.cli._progress import (
    NoDisplay,
    PlainDisplay,
    RichDisplay,
    describe,
    format_duration,
    slowdown,
    track,
)
from leadsq_async.cli._run import crawl_into, fetch_opportunities
from leadsq_async.journal import CrawlDirectory, CrawlSettings


def now() -> float:
    """The running loop's clock: virtual under looptime."""
    return asyncio.get_running_loop().time()


CLAMP = 10  # rows a page of the fake server holds, whatever was asked
LATENCY = 0.05


class Server:
    """Serves each lead's opportunities and each opportunity's activities, CLAMP a page."""

    def __init__(
        self, opportunities: dict[str, int], activities_each: int = 0, latency: float = LATENCY
    ) -> None:
        self.opportunities = opportunities
        self.activities_each = activities_each
        self.latency = latency
        self.requests = 0
        self.finished_at = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await asyncio.sleep(self.latency)
        self.finished_at = now()
        paging = json.loads(request.content)["Paging"]
        size = min(paging["PageSize"], CLAMP)
        start = (paging["PageIndex"] - 1) * size
        if request.url.path.endswith("GetOpportunitiesOfLead"):
            lead = request.url.params["leadId"]
            count = self.opportunities[lead]
            rows = [
                {"OpportunityId": f"{lead}-o{n}", "ProspectId": lead}
                for n in range(start, min(start + size, count))
            ]
        else:
            opportunity = request.url.params["opportunityId"]
            count = self.activities_each
            rows = [
                {"ProspectActivityId": f"{opportunity}-a{n}", "ProspectId": "lead"}
                for n in range(start, min(start + size, count))
            ]
        return httpx.Response(200, json={"RecordCount": count, "List": rows})


@attrs.frozen
class Shown:
    """What the display showed at one refresh."""

    at: float
    handled: int
    pages: int
    total: float | None
    eta: float | None


class Recorder:
    """A display that keeps every refresh."""

    def __init__(self) -> None:
        self.shown: list[Shown] = []

    def start(self, counts: CrawlCounts) -> None:
        """Nothing to show yet."""

    def update(self, counts: CrawlCounts, meter: Meter) -> None:
        left = meter.requests_left(counts)
        total = None if left is None else meter.pages + left
        self.shown.append(Shown(now(), counts.handled, meter.pages, total, meter.eta(counts)))

    def stop(self) -> None:
        """Nothing to clean up."""


async def crawl(
    tmp_path: Path,
    server: Server,
    leads: list[str],
    display: Any,
    *,
    rate_limit: lsq.RateLimit,
    with_activities: bool = False,
) -> tuple[CrawlCounts, Meter]:
    """Crawl ``leads`` from ``server`` into tmp_path with crawl_into (virtual time: the
    tests run under looptime)."""
    settings = CrawlSettings(with_activities=with_activities, opportunity_type=None)
    output = CrawlDirectory.start(tmp_path / "crawl", settings, overwrite=False)
    counts = CrawlCounts(total=len(leads))

    try:
        async with session_for(server, rate_limit=rate_limit) as session:
            meter = await crawl_into(
                session, output, leads, counts, display, concurrency=None, scrub=str
            )
    finally:
        output.close()
    return counts, meter


@pytest.mark.looptime
async def test_a_lead_holding_most_of_the_work_keeps_the_eta_true(tmp_path: Path) -> None:
    """One lead of 75 pages and 25 of one: the requests and the ETA stay true to the end."""
    leads = ["big", *(f"small-{n}" for n in range(25))]
    server = Server({"big": 75 * CLAMP, **dict.fromkeys(leads[1:], 5)})
    recorder = Recorder()
    rate = lsq.RateLimit(5, 1.0)

    counts, meter = await crawl(tmp_path, server, leads, recorder, rate_limit=rate)

    assert counts.crawled == 26
    assert meter.pages == server.requests == 100
    end = server.finished_at
    # Once every lead has had its first page, the total is known exactly...
    started = [shown for shown in recorder.shown if shown.total == 100]
    assert started
    assert all(shown.total == 100 for shown in recorder.shown[recorder.shown.index(started[0]) :])
    # ...and the ETA is the time the crawl then took, within one wave of the limit.
    for shown in started:
        assert shown.eta is not None
        assert abs(shown.eta - (end - shown.at)) <= rate.period + 2 * LATENCY, shown
    # With 25 leads of 26 done, most of the work is still ahead, and the ETA says so.
    nearly = next(shown for shown in recorder.shown if shown.handled == 25)
    assert nearly.pages < 60
    assert nearly.eta is not None
    assert nearly.eta > 8


@pytest.mark.looptime
async def test_leads_not_started_are_estimated_from_the_mean_so_far(tmp_path: Path) -> None:
    """With one lead in four started, the total is four times what the first needs."""
    leads = [f"lead-{n}" for n in range(40)]
    server = Server(dict.fromkeys(leads, 3 * CLAMP))  # three pages each
    recorder = Recorder()

    await crawl(tmp_path, server, leads, recorder, rate_limit=lsq.RateLimit(10, 1.0))

    assert server.requests == 120
    estimates = [shown.total for shown in recorder.shown if shown.total is not None]
    assert estimates
    assert all(total == 120 for total in estimates)


@pytest.mark.looptime
async def test_with_activities_each_opportunity_is_a_walk_of_the_mean_length(
    tmp_path: Path,
) -> None:
    """Every opportunity's activities count: the total is exact once each lead has started."""
    leads = [f"lead-{n}" for n in range(6)]
    server = Server(dict.fromkeys(leads, 12), activities_each=15)  # 2 + 12 x 2 pages a lead
    recorder = Recorder()

    counts, meter = await crawl(
        tmp_path, server, leads, recorder, rate_limit=lsq.RateLimit(20, 1.0), with_activities=True
    )

    assert counts.activities == 6 * 12 * 15
    assert server.requests == meter.pages == 6 * (2 + 12 * 2)
    known = [shown.total for shown in recorder.shown if shown.total is not None]
    assert known
    assert known[-1] == server.requests
    assert all(abs(total - server.requests) <= 0.1 * server.requests for total in known)


@pytest.mark.looptime
async def test_when_the_network_sets_the_pace_the_eta_follows_it() -> None:
    """Two leads at a time and half a second a page, far below the limit: the ETA is the
    time the crawl then took, not the limit's optimistic one."""
    leads = [f"lead-{n}" for n in range(40)]
    server = Server(dict.fromkeys(leads, 5), latency=0.5)
    counts = CrawlCounts(total=len(leads))
    recorder = Recorder()
    async with session_for(server, rate_limit=lsq.RateLimit(100, 1.0)) as session:
        meter = Meter(session, clock=now)
        async with track(counts, meter, recorder):
            async for result in session.crawl_opportunities(leads, concurrency=2):
                counts.add(result)
    end = server.finished_at
    assert end == pytest.approx(10.0, abs=0.1)
    later = [shown for shown in recorder.shown if shown.at >= 2.0 and shown.eta is not None]
    assert later
    for shown in later:
        assert shown.eta is not None
        # Within a second of a 10 s crawl (the limit's own estimate would be 3 s off);
        # events at the same instant reach the meter in an order that varies by Python.
        assert abs(shown.eta - (end - shown.at)) <= 1.0, shown


@pytest.mark.looptime
async def test_the_rate_is_measured_over_a_whole_period() -> None:
    """25 requests in the first tenth of a second show 5 req/s against 25 per 5 s, not 250."""
    meter, hub = stub_meter([lsq.RateLimit(25, 5.0)])
    await send(hub, 25, spacing=0.004)
    assert meter.requests_per_second == pytest.approx(25 / 5.0)


@pytest.mark.looptime
async def test_a_crawl_at_the_limit_says_it_waits_for_the_rate_limit(tmp_path: Path) -> None:
    """A crawl the limit holds back spends nearly all its time waiting for it, in words."""
    server = Server({f"lead-{n}": 5 for n in range(60)})
    counts = CrawlCounts(total=60)
    async with session_for(server, rate_limit=lsq.RateLimit(5, 1.0)) as session:
        meter = Meter(session, clock=now)
        async with track(counts, meter, NoDisplay()):
            async for result in session.crawl_opportunities([f"lead-{n}" for n in range(60)]):
                counts.add(result)
    assert meter.waiting_share > 0.9
    assert re.fullmatch(r"waiting for the rate limit (9\d|100)% of the time", slowdown(meter))


@pytest.mark.looptime
async def test_a_crawl_far_below_the_limit_hardly_waits_for_it() -> None:
    """With slots to spare, the share of time waiting for the rate limit is about none."""
    server = Server({f"lead-{n}": 5 for n in range(20)})
    counts = CrawlCounts(total=20)
    async with session_for(server, rate_limit=lsq.RateLimit(1000, 1.0)) as session:
        meter = Meter(session, clock=now)
        async with track(counts, meter, NoDisplay()):
            async for result in session.crawl_opportunities(
                [f"lead-{n}" for n in range(20)], concurrency=2
            ):
                counts.add(result)
    assert meter.waiting_share < 0.05
    assert slowdown(meter) == "waiting for the rate limit 0% of the time"


@pytest.mark.looptime
async def test_retries_and_refusals_are_said_in_words() -> None:
    """A busy answer and a refusal read as one retry and one refusal with its pause."""
    refusal = {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": "API calls exceeded the limit of 25 in 5 second(s)",
    }
    answers = [httpx.Response(503, text="busy"), httpx.Response(429, json=refusal)]

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json={"RecordCount": 0, "List": []})

    async with session_for(handler) as session:
        meter = Meter(session, clock=now)
        unsubscribe = meter.listen()
        await session.opportunities_of_lead("lead-1").collect()
        unsubscribe()
    assert slowdown(meter).split("; ")[1:] == [
        "1 refusal by the server, paused 5s in all",
        "1 retry (ServerError x1)",
    ]


@pytest.mark.looptime
async def test_the_time_waited_is_what_the_limiter_granted_after_waiting() -> None:
    """SlotGranted events: overlapping waits count once, and a grant without a wait adds
    nothing; the share is of the time elapsed."""
    meter, hub = stub_meter([lsq.RateLimit(5, 1.0)])
    await asyncio.sleep(2.0)
    hub.emit(lsq.SlotGranted(OPPORTUNITIES, 1.0, lsq.RateLimit(5, 1.0)))  # 1 s to 2 s
    hub.emit(lsq.SlotGranted(OPPORTUNITIES, 0.5, lsq.RateLimit(5, 1.0)))  # inside it
    hub.emit(lsq.SlotGranted(OPPORTUNITIES, 0.0, None))
    await asyncio.sleep(2.0)
    hub.emit(lsq.SlotGranted(OPPORTUNITIES, 1.5, lsq.RateLimit(5, 1.0)))  # 2.5 s to 4 s
    meter.sample()
    assert meter.waiting_seconds == pytest.approx(2.5)
    assert meter.waiting_share == pytest.approx(2.5 / 4.0)
    assert slowdown(meter) == "waiting for the rate limit 62% of the time"


@pytest.mark.looptime
async def test_the_eta_is_the_least_time_of_the_limits_for_the_requests_left() -> None:
    """The ETA is `least_time` over the session's limits, not a simulation of the slots."""
    limits = [lsq.RateLimit(10, 5.0), lsq.RateLimit(20, 20.0)]
    meter, hub = stub_meter(limits)
    hub.emit(page(OPPORTUNITIES, "lead-1", 1, rows=10, count=410, size=10))  # 40 left
    eta = meter.eta(CrawlCounts(total=1))
    assert eta == pytest.approx(lsq.least_time(limits, 40)) == pytest.approx(25.0)


@pytest.mark.looptime
async def test_records_count_as_pages_arrive() -> None:
    """A lead of many pages shows its records before it ends."""
    meter, hub = stub_meter([lsq.RateLimit(25, 5.0)])
    counts = CrawlCounts(total=1)
    hub.emit(page(OPPORTUNITIES, "lead-1", 1, rows=10, count=30, size=10))
    hub.emit(page(OPPORTUNITIES, "lead-1", 2, rows=10, count=30, size=10))
    assert counts.records == 0
    assert describe(counts, meter)["records"] == "20 records"


@pytest.mark.looptime
async def test_a_quota_being_waited_for_shows_in_the_eta_and_in_words() -> None:
    """QuotaWait: the ETA includes the hour to wait, and the words say until when."""
    wall = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.timezone.utc)
    meter, hub = stub_meter([lsq.RateLimit(25, 5.0)], wall=lambda: wall)
    counts = CrawlCounts(total=1)

    hub.emit(page(OPPORTUNITIES, "lead-1", 1, rows=10, count=100, size=10))
    retry_at = wall + dt.timedelta(hours=1)
    hub.emit(lsq.QuotaWait(OPPORTUNITIES, retry_at, lsq.RateLimit(100, 86400)))
    assert meter.eta(counts) == pytest.approx(3600.0)
    assert "the quota is spent until 10:30 UTC" in slowdown(meter)


@pytest.mark.looptime
async def test_the_limit_that_binds_sets_the_eta() -> None:
    """With 25 per 5 s and 100 an hour, 300 requests left take hours, not a minute."""
    counts = CrawlCounts(total=1)

    def eta(limits: list[lsq.RateLimit]) -> float | None:
        meter, hub = stub_meter(limits)
        hub.emit(page(OPPORTUNITIES, "lead-1", 1, rows=10, count=3010, size=10))
        return meter.eta(counts)

    assert eta([lsq.RateLimit(25, 5.0)]) == pytest.approx(55.0)  # 12 waves: 0 s, 5 s, ... 55 s
    # The hour's limit grants 100 at 0, 3600 and 7200 s; within each, 25 per 5 s: 15 s more.
    assert eta([lsq.RateLimit(25, 5.0), lsq.RateLimit(100, 3600.0)]) == pytest.approx(7215.0)


def test_a_clamped_first_page_counts_the_walk_at_the_size_served() -> None:
    """Asked 1000, served 300 of 2500: the walk takes 9 pages, 8 to come."""
    workload = Workload(OPPORTUNITIES)
    workload.add(page(OPPORTUNITIES, "lead-1", 1, rows=300, count=2500, size=1000))
    assert workload.known == 8


def test_pages_answered_out_of_order_end_the_walk_at_its_short_page() -> None:
    """A short page 3 answered before page 2 ends the walk at 3, whatever RecordCount says."""
    workload = Workload(OPPORTUNITIES)
    workload.add(page(OPPORTUNITIES, "lead-1", 1, rows=10, count=50, size=10))
    workload.add(page(OPPORTUNITIES, "lead-1", 3, rows=4, count=50, size=10))
    assert workload.known == 1
    workload.add(page(OPPORTUNITIES, "lead-1", 2, rows=10, count=50, size=10))
    assert workload.known == 0


def test_a_lead_that_failed_before_its_first_page_is_not_estimated_again() -> None:
    """Two leads of three ended (one failed at once): only the last is estimated."""
    workload = Workload(OPPORTUNITIES, ACTIVITIES)
    workload.add(page(OPPORTUNITIES, "lead-1", 1, rows=2, count=2, size=10))
    workload.add(page(ACTIVITIES, "opp-1", 1, rows=1, count=1, size=10))
    workload.add(page(ACTIVITIES, "opp-2", 1, rows=1, count=1, size=10))
    workload.end("lead-1", ["opp-1", "opp-2"])
    workload.end("lead-2", failed=True)
    assert workload.left(total=3) == 3.0


@pytest.mark.looptime
async def test_plain_lines_come_every_five_seconds(tmp_path: Path) -> None:
    """Off a terminal, a crawl of a minute writes a line at least every 5 s, in words."""
    leads = [f"lead-{n}" for n in range(60)]
    server = Server(dict.fromkeys(leads, 5))
    lines: list[tuple[float, str]] = []
    display = PlainDisplay(lambda line: lines.append((now(), line)), clock=now)

    await crawl(tmp_path, server, leads, display, rate_limit=lsq.RateLimit(1, 1.0))

    times = [0.0] + [at for at, _ in lines]
    assert server.finished_at > 55
    assert len(lines) >= 11
    assert max(later - earlier for earlier, later in itertools.pairwise(times)) <= 5.25
    first = lines[0][1]
    assert first.startswith("5 of about 60 requests, 5/60 leads, 25 records, 1.0 of 1 req/s")
    assert "waiting for the rate limit" in first


def test_format_duration_names_days() -> None:
    """An ETA of a day and a half reads 1d12h, not 36h00m."""
    assert format_duration(36 * 3600) == "1d12h"


@pytest.mark.parametrize(
    ("quiet", "force", "terminal", "lines", "shown"),
    [
        (True, None, True, True, NoDisplay),
        (False, False, True, True, NoDisplay),
        (False, True, False, True, RichDisplay),
        (False, None, True, True, RichDisplay),
        (False, None, False, True, PlainDisplay),
        (False, None, False, False, NoDisplay),
    ],
)
def test_one_factory_decides_the_display(
    monkeypatch: pytest.MonkeyPatch,
    quiet: bool,
    force: bool | None,
    terminal: bool,
    lines: bool,
    shown: type,
) -> None:
    """--quiet and --no-progress show nothing, a terminal a bar, else plain lines if wanted."""
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: terminal)
    display = progress_display(quiet=quiet, force=force, lines=lines)
    assert type(display) is shown


@pytest.mark.looptime
async def test_an_export_counts_ids_rows_and_failures() -> None:
    """opportunities' progress: each lead ended or failed is handled, each row a record."""
    server = Server({"lead-1": 25, "lead-2": 3})
    reported: list[str] = []
    written: list[dict[str, Any]] = []

    class Rows:
        def write(self, row: Any) -> None:
            written.append(dict(row))

        def end_of_id(self) -> None:
            """Nothing to flush."""

        def finish(self) -> None:
            """Nothing held."""

    async with session_for(server) as session:
        progress = ExportProgress(session, "lead", 3, Recorder())
        async with progress.tracking():
            failures = await fetch_opportunities(
                session,
                ["lead-1", "lead-2", ""],
                progress.writer(Rows()),
                progress.report(lambda identifier, error: reported.append(identifier)),
                concurrency=None,
                opportunity_type=None,
            )
    assert failures == Failures(for_good=1)
    assert reported == [""]
    counts = progress.counts
    assert (
        (counts.handled, counts.failed, counts.opportunities)
        == (3, 1, 28)
        == (
            3,
            1,
            len(written),
        )
    )
    assert progress.meter.pages == 4
    assert progress.meter.requests_left(counts) == 0


# Helpers for the meter alone.


class _Stub:
    """What a Meter reads of a session: its limiter and its events."""

    def __init__(self, limits: list[lsq.RateLimit]) -> None:
        self.events = lsq.EventHub()
        self.limiter = _Limiter(tuple(limits))


@attrs.frozen
class _Limiter:
    rate_limits: tuple[lsq.RateLimit, ...]

    @property
    def rate_limit(self) -> lsq.RateLimit:
        return self.rate_limits[0]


def stub_meter(
    limits: list[lsq.RateLimit], wall: Callable[[], dt.datetime] | None = None
) -> tuple[Meter, lsq.EventHub]:
    """A meter on virtual time listening to a hub, with a limiter of ``limits``."""
    stub = _Stub(limits)
    clock = _LoopClock()
    meter = Meter(cast(lsq.Session, stub), clock=clock, wall=wall)
    meter.listen()
    return meter, stub.events


class _LoopClock:
    """The running loop's clock, and the last time it was read once the loop is gone."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self) -> float:
        with contextlib.suppress(RuntimeError):  # no loop running any more
            self.last = now()
        return self.last


async def send(hub: lsq.EventHub, requests: int, *, spacing: float) -> None:
    """``requests`` requests sent ``spacing`` seconds apart."""
    for _ in range(requests):
        hub.emit(lsq.RequestSent(OPPORTUNITIES, 1, 1))
        await asyncio.sleep(spacing)


def page(endpoint: str, id_value: str, index: int, *, rows: int, count: int, size: int) -> Any:
    """A PageFetched event."""
    return lsq.PageFetched(endpoint, id_value, index, rows, count, size)


@pytest.mark.looptime
async def test_the_bar_labels_its_elapsed_clock() -> None:
    """The bar's clock says what it counts: "elapsed 0:00:03", not a bare "0:00:03"."""
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, color_system=None)
    meter, hub = stub_meter([lsq.RateLimit(25, 5.0)])
    display = RichDisplay(console)
    counts = CrawlCounts(total=2)
    display.start(counts)
    hub.emit(page(OPPORTUNITIES, "lead-1", 1, rows=10, count=30, size=10))
    display.update(counts, meter)
    display.stop()
    assert re.search(r"ETA \S+ elapsed \d+:\d\d:\d\d", stream.getvalue()), stream.getvalue()


def test_ids_from_standard_input_drop_a_byte_order_mark() -> None:
    """Standard input is read as a file path is: a UTF-8 BOM is not part of the first id."""
    assert list(lines_to_ids(io.StringIO("\ufefflead-1\nlead-2\n"))) == ["lead-1", "lead-2"]
