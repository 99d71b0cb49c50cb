"""The emulator's rate limit, injected faults, latency, changing data and statistics.

Called in process on virtual time, so that rate-limit windows, latency and slow answers
cost no real time; the faults whose subject is a real connection (a dropped or truncated
answer, a client's read timeout) are tested over loopback sockets at the end.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import httpx
import pytest
from emulator_in_process import ACTIVITIES, OPPORTUNITIES, client_of, now, virtual_app

from leadsq_async import RateLimit
from leadsq_async.testing import Dataset, EmulatorApp, RunningEmulator


@pytest.fixture(scope="module")
def small_data() -> Dataset:
    """A generated dataset with the usual small shapes, quick to build."""
    return Dataset.generate(thousands=30, hundreds=30)


@pytest.fixture
def app(small_data: Dataset) -> EmulatorApp:
    """An app of its own for each test, on the virtual loop's clock."""
    return virtual_app(small_data.copy())


@pytest.fixture
def lead(small_data: Dataset) -> str:
    """The lead with exactly one opportunity."""
    return small_data.leads_by_shape["one"]


async def post_lead(client: httpx.AsyncClient, lead: str) -> httpx.Response:
    return await client.post(OPPORTUNITIES, params={"leadId": lead})


# Rate limit


@pytest.mark.parametrize("status", [429, 200])
@pytest.mark.looptime
async def test_rate_limit_refuses_the_excess_call_with_the_envelope(
    app: EmulatorApp, lead: str, status: Literal[429, 200]
) -> None:
    """The third call in the window is answered (429 or 200, as configured) with the envelope."""
    app.config.rate_limit_calls = 2
    app.config.rate_limit_status = status
    async with client_of(app) as client:
        responses = [await post_lead(client, lead) for _ in range(3)]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert responses[2].status_code == status
    assert responses[2].json() == {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": "API calls exceeded the limit of 2 in 5 second(s)",
    }


@pytest.mark.parametrize("status", [429, 200])
@pytest.mark.looptime
async def test_rate_limit_answer_has_no_retry_after_header(
    app: EmulatorApp, lead: str, status: Literal[429, 200]
) -> None:
    """A rate-limit answer, in either mode, carries no Retry-After or rate-limit headers."""
    app.config.rate_limit_calls = 1
    app.config.rate_limit_status = status
    async with client_of(app) as client:
        await post_lead(client, lead)
        refused = await post_lead(client, lead)
    assert app.stats.rate_limited == 1
    assert not [name for name in refused.headers if "retry" in name or "ratelimit" in name]


@pytest.mark.looptime
async def test_rate_limit_window_slides(app: EmulatorApp, lead: str) -> None:
    """Once the period has passed since the accepted calls, calls are accepted again."""
    app.config.rate_limit_calls = 2
    app.config.rate_limit_period = 0.3
    async with client_of(app) as client:
        statuses = [(await post_lead(client, lead)).status_code for _ in range(3)]
        await asyncio.sleep(0.35)
        statuses.append((await post_lead(client, lead)).status_code)
    assert statuses == [200, 200, 429, 200]


@pytest.mark.looptime
async def test_rate_limit_window_is_half_open(app: EmulatorApp, lead: str) -> None:
    """A call is refused until exactly one period after the accepted ones, then accepted."""
    app.config.rate_limit_calls = 2
    async with client_of(app) as client:
        statuses = [(await post_lead(client, lead)).status_code for _ in range(3)]
        await asyncio.sleep(4.999)
        statuses.append((await post_lead(client, lead)).status_code)
        await asyncio.sleep(0.001)
        statuses.append((await post_lead(client, lead)).status_code)
    assert statuses == [200, 200, 429, 429, 200]


@pytest.mark.looptime
async def test_refused_calls_do_not_count_against_the_window(app: EmulatorApp, lead: str) -> None:
    """Calls refused mid-window do not hold the window once the accepted ones expire."""
    app.config.rate_limit_calls = 1
    app.config.rate_limit_period = 0.6
    async with client_of(app) as client:
        statuses = [(await post_lead(client, lead)).status_code]
        await asyncio.sleep(0.35)
        statuses += [(await post_lead(client, lead)).status_code for _ in range(2)]
        await asyncio.sleep(0.35)
        statuses.append((await post_lead(client, lead)).status_code)
    assert statuses == [200, 429, 429, 200]


def refusal(response: httpx.Response) -> str | None:
    """The rate-limit message of a refusal, None for an accepted call."""
    body = response.json()
    if body.get("ExceptionType") != "MXAPIRateLimitExceededException":
        return None
    message: str = body["ExceptionMessage"]
    return message


@pytest.mark.looptime
async def test_several_limits_each_refuse_naming_themselves(app: EmulatorApp, lead: str) -> None:
    """With a short limit and a longer one, each refusal names the limit that is full."""
    app.config.rate_limits = (RateLimit(2, 1.0), RateLimit(3, 10.0))
    async with client_of(app) as client:
        answers = [refusal(await post_lead(client, lead)) for _ in range(3)]
        await asyncio.sleep(1.0)
        answers += [refusal(await post_lead(client, lead)) for _ in range(2)]
        await asyncio.sleep(9.0)
        answers.append(refusal(await post_lead(client, lead)))
    assert answers == [
        None,
        None,
        "API calls exceeded the limit of 2 in 1 second(s)",
        None,
        "API calls exceeded the limit of 3 in 10 second(s)",
        None,
    ]
    assert app.stats.rate_limited_by == {RateLimit(2, 1.0): 1, RateLimit(3, 10.0): 1}


@pytest.mark.looptime
async def test_a_day_long_quota_refuses_until_a_day_after(app: EmulatorApp, lead: str) -> None:
    """A spent daily quota refuses, naming 86400 seconds, until a day after its first call."""
    app.config.rate_limits = (RateLimit(5, 1.0), RateLimit(12, 86_400))
    async with client_of(app) as client:
        statuses = []
        for _ in range(4):
            statuses += [(await post_lead(client, lead)).status_code for _ in range(5)]
            await asyncio.sleep(1.0)
        spent = await post_lead(client, lead)
        await asyncio.sleep(86_400 - 4.0 - 0.001)
        still_spent = await post_lead(client, lead)
        await asyncio.sleep(0.001)
        again = await post_lead(client, lead)
    assert statuses.count(200) == 12
    assert statuses[:5] == [200] * 5
    assert (
        refusal(spent)
        == refusal(still_spent)
        == ("API calls exceeded the limit of 12 in 86400 second(s)")
    )
    assert again.status_code == 200
    assert app.stats.rate_limited_by == {RateLimit(12, 86_400): 10}


@pytest.mark.looptime
async def test_when_several_limits_are_full_the_one_that_frees_last_is_named(
    app: EmulatorApp, lead: str
) -> None:
    """Both limits full: the refusal names the one a client must wait longer for."""
    app.config.rate_limits = (RateLimit(2, 1.0), RateLimit(2, 30.0))
    async with client_of(app) as client:
        accepted = [(await post_lead(client, lead)).status_code for _ in range(2)]
        refused = await post_lead(client, lead)
    assert accepted == [200, 200]
    assert refusal(refused) == "API calls exceeded the limit of 2 in 30 second(s)"


@pytest.mark.looptime
async def test_a_fractional_period_is_named_as_a_plain_number(app: EmulatorApp, lead: str) -> None:
    """Periods such as 0.25 s or a million seconds are written without an exponent."""
    messages = []
    async with client_of(app) as client:
        for limit in (RateLimit(1, 0.25), RateLimit(1, 1_000_000)):
            app.config.rate_limits = (limit,)
            await post_lead(client, lead)
            messages.append(refusal(await post_lead(client, lead)))
            await asyncio.sleep(1_000_000)
    assert messages == [
        "API calls exceeded the limit of 1 in 0.25 second(s)",
        "API calls exceeded the limit of 1 in 1000000 second(s)",
    ]


@pytest.mark.looptime
async def test_setting_the_first_limit_keeps_the_quota(app: EmulatorApp, lead: str) -> None:
    """rate_limit_calls changes the first limit only: the quota still refuses."""
    app.config.rate_limits = (RateLimit(1, 5.0), RateLimit(3, 3600.0))
    app.config.rate_limit_calls = 100
    async with client_of(app) as client:
        answers = [refusal(await post_lead(client, lead)) for _ in range(4)]
    assert answers == [None, None, None, "API calls exceeded the limit of 3 in 3600 second(s)"]


@pytest.mark.looptime
async def test_bad_keys_do_not_use_the_account_rate_limit(app: EmulatorApp, lead: str) -> None:
    """Requests refused for bad keys are not accepted requests of the account."""
    app.config.rate_limit_calls = 1
    async with client_of(app, headers={}) as anonymous:
        assert (await post_lead(anonymous, lead)).status_code == 401
    async with client_of(app) as client:
        assert (await post_lead(client, lead)).status_code == 200


# Faults


def always(app: EmulatorApp, kind: str) -> None:
    app.config.fault_rate = 1.0
    app.config.fault_kinds = frozenset({kind})


@pytest.mark.looptime
async def test_fault_500_is_a_bare_message(app: EmulatorApp, lead: str) -> None:
    """A "500" fault answers HTTP 500 with {"Message": ...} and no envelope."""
    always(app, "500")
    async with client_of(app) as client:
        response = await post_lead(client, lead)
    assert response.status_code == 500
    assert response.json() == {"Message": "There was an error processing the request."}


@pytest.mark.parametrize("kind", ["502", "503"])
@pytest.mark.looptime
async def test_fault_502_503_is_an_html_page(app: EmulatorApp, lead: str, kind: str) -> None:
    """A "502" or "503" fault answers that status with an HTML page, as a CDN would."""
    always(app, kind)
    async with client_of(app) as client:
        response = await post_lead(client, lead)
    assert response.status_code == int(kind)
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")


@pytest.mark.looptime
async def test_fault_slow_holds_the_answer_for_slow_seconds(app: EmulatorApp, lead: str) -> None:
    """A "slow" answer is in flight for slow_seconds, then arrives complete."""
    always(app, "slow")
    app.config.slow_seconds = 3.0
    async with client_of(app) as client:
        answer = asyncio.ensure_future(post_lead(client, lead))
        await asyncio.sleep(2.99)
        assert (app.stats.in_flight, answer.done()) == (1, False)
        response = await answer
    assert now() == 3.0
    assert response.json()["RecordCount"] == 1


@pytest.mark.looptime
async def test_fault_slow_still_answers_in_full(app: EmulatorApp, lead: str) -> None:
    """A "slow" answer arrives complete after at least slow_seconds."""
    always(app, "slow")
    app.config.slow_seconds = 0.2
    started = now()
    async with client_of(app) as client:
        response = await post_lead(client, lead)
    assert now() - started >= 0.2
    assert response.json()["RecordCount"] == 1


async def fault_sequence(app: EmulatorApp) -> list[int]:
    app.config.rate_limit_calls = 1000
    app.config.fault_rate = 0.5
    app.config.fault_kinds = frozenset({"500", "503"})
    app.config.fault_seed = 7
    async with client_of(app) as client:
        lead = app.data.leads_by_shape["one"]
        return [(await post_lead(client, lead)).status_code for _ in range(16)]


@pytest.mark.looptime
async def test_faults_follow_the_rate_and_the_seed(app: EmulatorApp) -> None:
    """The same seed draws the same faults in the same order; a rate of 0.5 mixes outcomes."""
    first = await fault_sequence(app)
    app.reset()
    second = await fault_sequence(app)
    assert first == second
    assert {200, 500, 503} <= set(first)


@pytest.mark.looptime
async def test_faults_count_against_the_rate_limit(app: EmulatorApp, lead: str) -> None:
    """A request answered with a fault was accepted: it uses the rate budget."""
    app.config.rate_limit_calls = 1
    always(app, "503")
    async with client_of(app) as client:
        assert (await post_lead(client, lead)).status_code == 503
        app.config.fault_rate = 0.0
        assert (await post_lead(client, lead)).status_code == 429


@pytest.mark.parametrize("kind", ["drop", "truncate"])
@pytest.mark.looptime
async def test_stats_count_faults_by_kind(app: EmulatorApp, lead: str, kind: str) -> None:
    """Each injected fault counts under its kind; a drop or a truncated answer has no status."""
    always(app, kind)
    async with client_of(app) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await post_lead(client, lead)
    assert app.stats.faults == {kind: 1}
    assert app.stats.by_status == {}


# Latency


@pytest.mark.looptime
async def test_latency_delays_every_answer(app: EmulatorApp, lead: str) -> None:
    """With latency set, an answer takes at least that round trip."""
    app.config.latency = 0.2
    started = now()
    async with client_of(app) as client:
        assert (await post_lead(client, lead)).status_code == 200
    assert now() - started >= 0.2


@pytest.mark.looptime
async def test_latency_is_split_around_the_arrival(app: EmulatorApp) -> None:
    """The data is read after the inbound half of the round trip, the answer after the other."""
    app.config.index_lag = 1.0
    first, second = app.data.leads_by_shape["one"], app.data.leads_by_shape["empty"]
    async with client_of(app) as client:
        app.data.add_opportunity(first)  # at 0, listed from 1.0
        app.config.latency = 1.9  # read at 0.95, before it is listed
        early = (await post_lead(client, first)).json()["RecordCount"]
        answered = now()
        app.data.add_opportunity(second)  # at 1.9, listed from 2.9
        app.config.latency = 2.2  # read at 3.0, after it is listed
        late = (await post_lead(client, second)).json()["RecordCount"]
    assert (early, late) == (1, 1)
    assert (answered, now()) == (1.9, 4.1)


@pytest.mark.looptime
async def test_latency_and_jitter_also_delay_refusals(app: EmulatorApp, lead: str) -> None:
    """A 401 crosses the simulated network too: at least the latency."""
    app.config.latency = 0.1
    app.config.jitter = 0.05
    async with client_of(app, headers={}) as anonymous:
        started = now()
        assert (await post_lead(anonymous, lead)).status_code == 401
        assert now() - started >= 0.1


# Data that changes while a client pages


@pytest.mark.looptime
async def test_insert_ahead_pushes_served_rows_onto_the_next_page(app: EmulatorApp) -> None:
    """After a page, new newest rows appear: the next page repeats rows and the count grows."""
    app.config.insert_ahead = 2
    lead = app.data.leads_by_shape["page_plus_one"]
    paging = {"PageSize": 50}
    async with client_of(app) as client:
        first = (
            await client.post(
                OPPORTUNITIES, params={"leadId": lead}, json={"Paging": {**paging, "PageIndex": 1}}
            )
        ).json()
        second = (
            await client.post(
                OPPORTUNITIES, params={"leadId": lead}, json={"Paging": {**paging, "PageIndex": 2}}
            )
        ).json()
    assert (first["RecordCount"], second["RecordCount"]) == (101, 103)
    first_ids = [row["OpportunityId"] for row in first["List"]]
    second_ids = [row["OpportunityId"] for row in second["List"]]
    assert second_ids[:2] == first_ids[-2:]


@pytest.mark.looptime
async def test_insert_ahead_adds_activities_too(app: EmulatorApp) -> None:
    """insert_ahead also grows an opportunity's activities after each page served."""
    app.config.insert_ahead = 1
    opportunity = app.data.opportunities_by_shape["page"]
    async with client_of(app) as client:
        counts = [
            (await client.post(ACTIVITIES, params={"opportunityId": opportunity})).json()[
                "RecordCount"
            ]
            for _ in range(2)
        ]
    assert counts == [25, 26]


@pytest.mark.looptime
async def test_index_lag_hides_a_new_opportunity_for_a_while(app: EmulatorApp) -> None:
    """A new opportunity shows in GetOpportunitiesOfLead only index_lag seconds after it is added,
    while GetActivitiesOfOpportunity knows it at once."""
    app.config.index_lag = 0.3
    lead = app.data.leads_by_shape["one"]
    added = app.data.add_opportunity(lead)
    async with client_of(app) as client:
        before = (await post_lead(client, lead)).json()
        known = await client.post(ACTIVITIES, params={"opportunityId": added["OpportunityId"]})
        await asyncio.sleep(0.35)
        after = (await post_lead(client, lead)).json()
    assert before["RecordCount"] == 1
    assert known.json()["RecordCount"] == 0
    assert after["RecordCount"] == 2
    assert added["OpportunityId"] in [row["OpportunityId"] for row in after["List"]]


@pytest.mark.looptime
async def test_index_lag_ends_exactly_on_time(app: EmulatorApp) -> None:
    """An opportunity added at t shows from t + index_lag on, not a moment before."""
    app.config.index_lag = 60.0
    lead = app.data.leads_by_shape["one"]
    app.data.add_opportunity(lead)
    async with client_of(app) as client:
        await asyncio.sleep(59.999)
        before = (await post_lead(client, lead)).json()["RecordCount"]
        await asyncio.sleep(0.001)
        after = (await post_lead(client, lead)).json()["RecordCount"]
    assert (before, after) == (1, 2)


# Statistics


@pytest.mark.looptime
async def test_stats_count_requests_by_status(app: EmulatorApp, lead: str) -> None:
    """by_status and total count each answer; rate-limit answers also count in rate_limited."""
    app.config.rate_limit_calls = 1
    async with client_of(app) as client:
        await post_lead(client, lead)
        await post_lead(client, lead)
        await client.post("/nowhere")
    stats = app.stats
    assert (stats.total, stats.by_status) == (3, {200: 1, 429: 1, 404: 1})
    assert (stats.rate_limited, stats.accepted) == (1, 1)


@pytest.mark.looptime
async def test_stats_most_accepted_in_window_is_exact(app: EmulatorApp, lead: str) -> None:
    """Three calls, a pause longer than the period, two calls: the most in a window is 3."""
    app.config.rate_limit_calls = 100
    app.config.rate_limit_period = 0.4
    async with client_of(app) as client:
        for _ in range(3):
            await post_lead(client, lead)
        await asyncio.sleep(0.45)
        for _ in range(2):
            await post_lead(client, lead)
    assert app.stats.most_accepted_in_window == 3


@pytest.mark.looptime
async def test_stats_most_in_flight_counts_concurrent_requests(app: EmulatorApp, lead: str) -> None:
    """Four requests sent at once while each takes 0.2 s are four in flight at once."""
    app.config.latency = 0.2
    async with client_of(app) as client:
        responses = await asyncio.gather(*(post_lead(client, lead) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert app.stats.most_in_flight == 4
    assert app.stats.in_flight == 0


@pytest.mark.looptime
async def test_stats_reset_clears_every_count(app: EmulatorApp, lead: str) -> None:
    """stats.reset() sets every count back to zero."""
    app.config.rate_limit_calls = 1
    async with client_of(app, headers={}) as keys_in_url:
        params = {"leadId": lead, "accessKey": "demo-access-key", "secretKey": "demo-secret-key"}
        await keys_in_url.post(OPPORTUNITIES, params=params)
    async with client_of(app) as client:
        await post_lead(client, lead)
    app.stats.reset()
    stats = app.stats
    assert (stats.total, stats.by_status, stats.faults) == (0, {}, {})
    assert (stats.rate_limited, stats.accepted, stats.keys_in_url) == (0, 0, 0)
    assert (stats.most_accepted_in_window, stats.most_in_flight) == (0, 0)


# Over real loopback sockets: what a connection does


def always_on(emulator: RunningEmulator, kind: str) -> None:
    emulator.config.fault_rate = 1.0
    emulator.config.fault_kinds = frozenset({kind})


def test_fault_drop_closes_the_connection_without_an_answer(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "drop" fault closes the connection before any byte: httpx.RemoteProtocolError."""
    always_on(lsq_emulator, "drop")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})


def test_fault_truncate_cuts_the_body_short(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "truncate" fault sends half the body then closes: httpx.RemoteProtocolError."""
    always_on(lsq_emulator, "truncate")
    with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})


def test_fault_slow_times_out_a_short_client_timeout(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "slow" fault holds the answer slow_seconds: a shorter read timeout expires."""
    always_on(lsq_emulator, "slow")
    lsq_emulator.config.slow_seconds = 0.3
    with pytest.raises(httpx.ReadTimeout):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead}, timeout=0.1)
    assert lsq_emulator.stats.in_flight == 1
    assert lsq_emulator.app.wait_idle()
    assert lsq_emulator.stats.by_status == {200: 1}


def test_client_recovers_after_a_dropped_connection(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """After a drop, the next request on the same emulator_client succeeds on a new connection."""
    always_on(lsq_emulator, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    lsq_emulator.config.fault_rate = 0.0
    assert emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 200
