"""The emulator's rate limit, injected faults, latency, changing data and statistics, as an
httpx client sees them over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import httpx
import pytest

from leadsq_async.testing import RunningEmulator

OPPORTUNITIES = "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead"
ACTIVITIES = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"


@pytest.fixture
def lead(lsq_emulator: RunningEmulator) -> str:
    """The lead with exactly one opportunity."""
    return lsq_emulator.data.leads_by_shape["one"]


# Rate limit


@pytest.mark.parametrize("status", [429, 200])
def test_rate_limit_refuses_the_excess_call_with_the_envelope(
    emulator_client: httpx.Client,
    lsq_emulator: RunningEmulator,
    lead: str,
    status: Literal[429, 200],
) -> None:
    """The third call in the window is answered (429 or 200, as configured) with the envelope."""
    lsq_emulator.config.rate_limit_calls = 2
    lsq_emulator.config.rate_limit_status = status
    responses = [emulator_client.post(OPPORTUNITIES, params={"leadId": lead}) for _ in range(3)]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert responses[2].status_code == status
    assert responses[2].json() == {
        "Status": "Error",
        "ExceptionType": "MXAPIRateLimitExceededException",
        "ExceptionMessage": "API calls exceeded the limit of 2 in 5 second(s)",
    }


@pytest.mark.parametrize("status", [429, 200])
def test_rate_limit_answer_has_no_retry_after_header(
    emulator_client: httpx.Client,
    lsq_emulator: RunningEmulator,
    lead: str,
    status: Literal[429, 200],
) -> None:
    """A rate-limit answer, in either mode, carries no Retry-After or rate-limit headers."""
    lsq_emulator.config.rate_limit_calls = 1
    lsq_emulator.config.rate_limit_status = status
    emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    refused = emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    assert lsq_emulator.stats.rate_limited == 1
    assert not [name for name in refused.headers if "retry" in name or "ratelimit" in name]


def test_rate_limit_window_slides(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """Once the period has passed since the accepted calls, calls are accepted again."""
    lsq_emulator.config.rate_limit_calls = 2
    lsq_emulator.config.rate_limit_period = 0.3
    statuses = [
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code for _ in range(3)
    ]
    time.sleep(0.35)
    statuses.append(emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code)
    assert statuses == [200, 200, 429, 200]


def test_refused_calls_do_not_count_against_the_window(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """Calls refused mid-window do not hold the window once the accepted ones expire."""
    lsq_emulator.config.rate_limit_calls = 1
    lsq_emulator.config.rate_limit_period = 0.6
    statuses = [emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code]
    time.sleep(0.35)
    statuses += [
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code for _ in range(2)
    ]
    time.sleep(0.35)
    statuses.append(emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code)
    assert statuses == [200, 429, 429, 200]


def test_bad_keys_do_not_use_the_account_rate_limit(
    lsq_emulator: RunningEmulator, emulator_client: httpx.Client, lead: str
) -> None:
    """Requests refused for bad keys are not accepted requests of the account."""
    lsq_emulator.config.rate_limit_calls = 1
    with httpx.Client(base_url=lsq_emulator.url) as anonymous:
        assert anonymous.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 401
    assert emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 200


# Faults


def always(emulator: RunningEmulator, kind: str) -> None:
    emulator.config.fault_rate = 1.0
    emulator.config.fault_kinds = frozenset({kind})


def test_fault_500_is_a_bare_message(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "500" fault answers HTTP 500 with {"Message": ...} and no envelope."""
    always(lsq_emulator, "500")
    response = emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    assert response.status_code == 500
    assert response.json() == {"Message": "There was an error processing the request."}


@pytest.mark.parametrize("kind", ["502", "503"])
def test_fault_502_503_is_an_html_page(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str, kind: str
) -> None:
    """A "502" or "503" fault answers that status with an HTML page, as a CDN would."""
    always(lsq_emulator, kind)
    response = emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    assert response.status_code == int(kind)
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")


def test_fault_drop_closes_the_connection_without_an_answer(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "drop" fault closes the connection before any byte: httpx.RemoteProtocolError."""
    always(lsq_emulator, "drop")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})


def test_fault_truncate_cuts_the_body_short(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "truncate" fault sends half the body then closes: httpx.RemoteProtocolError."""
    always(lsq_emulator, "truncate")
    with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})


def test_fault_slow_times_out_a_short_client_timeout(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "slow" fault holds the answer slow_seconds: a shorter read timeout expires."""
    always(lsq_emulator, "slow")
    lsq_emulator.config.slow_seconds = 0.5
    with pytest.raises(httpx.ReadTimeout):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead}, timeout=0.1)
    assert lsq_emulator.stats.in_flight == 1
    assert lsq_emulator.app.wait_idle()
    assert lsq_emulator.stats.by_status == {200: 1}


def test_fault_slow_still_answers_in_full(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A "slow" answer arrives complete after at least slow_seconds."""
    always(lsq_emulator, "slow")
    lsq_emulator.config.slow_seconds = 0.2
    started = time.monotonic()
    response = emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    assert time.monotonic() - started >= 0.2
    assert response.json()["RecordCount"] == 1


def test_client_recovers_after_a_dropped_connection(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """After a drop, the next request on the same emulator_client succeeds on a new connection."""
    always(lsq_emulator, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    lsq_emulator.config.fault_rate = 0.0
    assert emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 200


def fault_sequence(client: httpx.Client, emulator: RunningEmulator, lead: str) -> list[int]:
    emulator.config.rate_limit_calls = 1000
    emulator.config.fault_rate = 0.5
    emulator.config.fault_kinds = frozenset({"500", "503"})
    emulator.config.fault_seed = 7
    return [client.post(OPPORTUNITIES, params={"leadId": lead}).status_code for _ in range(16)]


def test_faults_follow_the_rate_and_the_seed(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """The same seed draws the same faults in the same order; a rate of 0.5 mixes outcomes."""
    first = fault_sequence(emulator_client, lsq_emulator, lead)
    lsq_emulator.app.reset()
    second = fault_sequence(emulator_client, lsq_emulator, lead)
    assert first == second
    assert {200, 500, 503} <= set(first)


def test_faults_count_against_the_rate_limit(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """A request answered with a fault was accepted: it uses the rate budget."""
    lsq_emulator.config.rate_limit_calls = 1
    always(lsq_emulator, "503")
    assert emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 503
    lsq_emulator.config.fault_rate = 0.0
    assert emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 429


# Latency


def test_latency_delays_every_answer(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """With latency set, an answer takes at least that round trip."""
    lsq_emulator.config.latency = 0.2
    started = time.monotonic()
    assert emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_latency_and_jitter_also_delay_refusals(lsq_emulator: RunningEmulator, lead: str) -> None:
    """A 401 crosses the simulated network too: at least the latency."""
    lsq_emulator.config.latency = 0.1
    lsq_emulator.config.jitter = 0.05
    with httpx.Client(base_url=lsq_emulator.url) as anonymous:
        started = time.monotonic()
        assert anonymous.post(OPPORTUNITIES, params={"leadId": lead}).status_code == 401
        assert time.monotonic() - started >= 0.1


# Data that changes while a client pages


def test_insert_ahead_pushes_served_rows_onto_the_next_page(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """After a page, new newest rows appear: the next page repeats rows and the count grows."""
    lsq_emulator.config.insert_ahead = 2
    lead = lsq_emulator.data.leads_by_shape["page_plus_one"]
    paging = {"PageSize": 50}
    first = emulator_client.post(
        OPPORTUNITIES, params={"leadId": lead}, json={"Paging": {**paging, "PageIndex": 1}}
    ).json()
    second = emulator_client.post(
        OPPORTUNITIES, params={"leadId": lead}, json={"Paging": {**paging, "PageIndex": 2}}
    ).json()
    assert (first["RecordCount"], second["RecordCount"]) == (101, 103)
    first_ids = [row["OpportunityId"] for row in first["List"]]
    second_ids = [row["OpportunityId"] for row in second["List"]]
    assert second_ids[:2] == first_ids[-2:]


def test_insert_ahead_adds_activities_too(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """insert_ahead also grows an opportunity's activities after each page served."""
    lsq_emulator.config.insert_ahead = 1
    opportunity = lsq_emulator.data.opportunities_by_shape["page"]
    counts = [
        emulator_client.post(ACTIVITIES, params={"opportunityId": opportunity}).json()[
            "RecordCount"
        ]
        for _ in range(2)
    ]
    assert counts == [25, 26]


def test_index_lag_hides_a_new_opportunity_for_a_while(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """A new opportunity shows in GetOpportunitiesOfLead only index_lag seconds after it is added,
    while GetActivitiesOfOpportunity knows it at once."""
    lsq_emulator.config.index_lag = 0.3
    lead = lsq_emulator.data.leads_by_shape["one"]
    added = lsq_emulator.data.add_opportunity(lead)
    before = emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).json()
    known = emulator_client.post(ACTIVITIES, params={"opportunityId": added["OpportunityId"]})
    time.sleep(0.35)
    after = emulator_client.post(OPPORTUNITIES, params={"leadId": lead}).json()
    assert before["RecordCount"] == 1
    assert known.json()["RecordCount"] == 0
    assert after["RecordCount"] == 2
    assert added["OpportunityId"] in [row["OpportunityId"] for row in after["List"]]


# Statistics


def test_stats_count_requests_by_status(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """by_status and total count each answer; rate-limit answers also count in rate_limited."""
    lsq_emulator.config.rate_limit_calls = 1
    emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    emulator_client.post("/nowhere")
    stats = lsq_emulator.stats
    assert (stats.total, stats.by_status) == (3, {200: 1, 429: 1, 404: 1})
    assert (stats.rate_limited, stats.accepted) == (1, 1)


def test_stats_count_faults_by_kind(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """Each injected fault counts under its kind; a drop has no status."""
    always(lsq_emulator, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    assert lsq_emulator.stats.faults == {"drop": 1}
    assert lsq_emulator.stats.by_status == {}


def test_stats_most_accepted_in_window_is_exact(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """Three calls, a pause longer than the period, two calls: the most in a window is 3."""
    lsq_emulator.config.rate_limit_calls = 100
    lsq_emulator.config.rate_limit_period = 0.4
    for _ in range(3):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    time.sleep(0.45)
    for _ in range(2):
        emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    assert lsq_emulator.stats.most_accepted_in_window == 3


async def test_stats_most_in_flight_counts_concurrent_requests(
    lsq_emulator: RunningEmulator, lead: str
) -> None:
    """Four requests sent at once while each takes 0.2 s are four in flight at once."""
    lsq_emulator.config.latency = 0.2
    headers = {
        "x-LSQ-AccessKey": lsq_emulator.access_key,
        "x-LSQ-SecretKey": lsq_emulator.secret_key,
    }
    async with httpx.AsyncClient(base_url=lsq_emulator.url, headers=headers) as client:
        responses = await asyncio.gather(
            *(client.post(OPPORTUNITIES, params={"leadId": lead}) for _ in range(4))
        )
    assert [r.status_code for r in responses] == [200] * 4
    assert lsq_emulator.stats.most_in_flight == 4
    assert lsq_emulator.stats.in_flight == 0


def test_stats_reset_clears_every_count(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, lead: str
) -> None:
    """stats.reset() sets every count back to zero."""
    lsq_emulator.config.rate_limit_calls = 1
    with httpx.Client(base_url=lsq_emulator.url) as keys_in_url:
        params = {"leadId": lead, "accessKey": "demo-access-key", "secretKey": "demo-secret-key"}
        keys_in_url.post(OPPORTUNITIES, params=params)
    emulator_client.post(OPPORTUNITIES, params={"leadId": lead})
    lsq_emulator.stats.reset()
    stats = lsq_emulator.stats
    assert (stats.total, stats.by_status, stats.faults) == (0, {}, {})
    assert (stats.rate_limited, stats.accepted, stats.keys_in_url) == (0, 0, 0)
    assert (stats.most_accepted_in_window, stats.most_in_flight) == (0, 0)
