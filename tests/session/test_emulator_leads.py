"""The emulator's Leads.RecentlyModified, called in process on virtual time: paging, the date
filter, RecordCount, errors, the shared rules (keys, rate limits, faults, page-size cap), and a
Session.paginate walk over it."""

from __future__ import annotations

from typing import Any, Literal

import httpx
import pytest
from emulator_in_process import KEYS, client_of, session_on, virtual_app

import leadsq_async as lsq
from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
)

LEADS = "/v2/LeadManagement.svc/Leads.RecentlyModified"
ALL_TIME = {"FromDate": "2000-01-01 00:00:00", "ToDate": "2099-12-31 23:59:59"}
DATA = Dataset.generate()


@pytest.fixture
def app() -> EmulatorApp:
    """An app of its own for each test, serving the default dataset on the virtual clock."""
    return virtual_app(DATA.copy())


async def recently_modified(
    client: httpx.AsyncClient,
    parameter: Any = ALL_TIME,
    paging: dict[str, Any] | None = None,
    **rest: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"Parameter": parameter, **rest}
    if paging is not None:
        body["Paging"] = paging
    return await client.post(LEADS, json=body)


def flat(lead: dict[str, Any]) -> dict[str, Any]:
    """A served lead's LeadPropertyList as attribute: value."""
    return {pair["Attribute"]: pair["Value"] for pair in lead["LeadPropertyList"]}


def lead_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [flat(lead)["ProspectID"] for lead in response.json()["Leads"]]


def by_modification(data: Dataset) -> list[dict[str, Any]]:
    """The dataset's leads, oldest change first (the emulator's default order)."""
    return sorted(data.leads(), key=lambda lead: (lead["ModifiedOn"], lead["ProspectID"]))


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["Status"] == "Error"
    return response.status_code, body["ExceptionType"], body["ExceptionMessage"]


# The leads


def test_every_known_lead_is_served_once_with_its_names() -> None:
    """Dataset.leads has one lead per lead id, named as its opportunity rows name it."""
    leads = {lead["ProspectID"]: lead for lead in DATA.leads()}
    assert set(leads) == set(DATA.opportunities)
    one = DATA.leads_by_shape["one"]
    row = DATA.opportunities[one][0]
    assert (leads[one]["FirstName"], leads[one]["LastName"]) == (
        row["FirstName"],
        row["LastName"],
    )
    assert Dataset.generate().leads() == DATA.leads()
    assert Dataset.generate(seed=1).leads() != DATA.leads()


def test_a_leads_modification_time_does_not_move_when_the_data_grows() -> None:
    """Adding a lead adds one lead, and leaves the others' ModifiedOn as they were."""
    data = DATA.copy()
    before = data.leads()
    data.add_opportunity("new-lead")
    after = data.leads()
    assert after[: len(before)] == before
    assert [lead["ProspectID"] for lead in after[len(before) :]] == ["new-lead"]


# Paging and the date filter


@pytest.mark.looptime
async def test_pages_cover_every_lead_once_oldest_change_first(app: EmulatorApp) -> None:
    """Pages of 10 give 10, 10 and 6 leads, in ModifiedOn order, each once, then none."""
    async with client_of(app) as client:
        pages = [
            await recently_modified(client, paging={"PageIndex": index, "PageSize": 10})
            for index in (1, 2, 3, 4)
        ]
    assert [len(lead_ids(page)) for page in pages] == [10, 10, 6, 0]
    served = [lead_id for page in pages for lead_id in lead_ids(page)]
    assert served == [lead["ProspectID"] for lead in by_modification(app.data)]
    assert {page.json()["RecordCount"] for page in pages} == {26}


@pytest.mark.looptime
async def test_each_lead_is_a_property_list_of_attribute_value_pairs(app: EmulatorApp) -> None:
    """A lead is {"LeadPropertyList": [{"Attribute", "Value"}, ...]} holding the lead's fields."""
    async with client_of(app) as client:
        response = await recently_modified(client, paging={"PageIndex": 1, "PageSize": 1})
    (lead,) = response.json()["Leads"]
    assert set(lead) == {"LeadPropertyList"}
    assert all(set(pair) == {"Attribute", "Value"} for pair in lead["LeadPropertyList"])
    assert flat(lead) == by_modification(app.data)[0]


@pytest.mark.looptime
async def test_the_date_filter_keeps_leads_modified_within_both_bounds(app: EmulatorApp) -> None:
    """FromDate and ToDate are both included; RecordCount counts the leads in range only."""
    ordered = by_modification(app.data)
    since, until = ordered[5]["ModifiedOn"], ordered[15]["ModifiedOn"]
    wanted = [lead["ProspectID"] for lead in ordered if since <= lead["ModifiedOn"] <= until]
    async with client_of(app) as client:
        response = await recently_modified(
            client, {"FromDate": since, "ToDate": until}, {"PageIndex": 1, "PageSize": 5}
        )
        rest = await recently_modified(
            client, {"FromDate": since, "ToDate": until}, {"PageIndex": 2, "PageSize": 50}
        )
        none = await recently_modified(client, {"FromDate": until, "ToDate": since})
    assert len(wanted) == 11
    assert response.json()["RecordCount"] == 11
    assert lead_ids(response) == wanted[:5]
    assert rest.json()["RecordCount"] == 11
    assert lead_ids(rest) == []
    assert none.json() == {"RecordCount": 0, "Leads": []}


@pytest.mark.looptime
async def test_sorting_by_a_column_descending(app: EmulatorApp) -> None:
    """Sorting by ModifiedOn with Direction 1 serves the newest change first."""
    async with client_of(app) as client:
        response = await recently_modified(
            client, Sorting={"ColumnName": "ModifiedOn", "Direction": "1"}
        )
    newest_first = [lead["ProspectID"] for lead in reversed(by_modification(app.data))]
    assert lead_ids(response) == newest_first


@pytest.mark.looptime
async def test_the_default_page_is_100_leads() -> None:
    """Without Paging, the first 100 leads are served."""
    data = Dataset(opportunities={f"lead-{n:03d}": [] for n in range(150)})
    async with client_of(virtual_app(data)) as client:
        response = await recently_modified(client)
    assert response.json()["RecordCount"] == 150
    assert len(lead_ids(response)) == 100


# Errors


@pytest.mark.parametrize(
    ("parameter", "named"),
    [
        (None, "Parameter"),
        ("2026-01-01 00:00:00", "Parameter"),
        ({"ToDate": "2026-01-01 00:00:00"}, "FromDate"),
        ({"FromDate": "2026-01-01 00:00:00"}, "ToDate"),
        ({"FromDate": "", "ToDate": "2026-01-01 00:00:00"}, "FromDate"),
        ({"FromDate": "2026-01-01", "ToDate": "2026-01-02 00:00:00"}, "FromDate"),
        ({"FromDate": "2026-02-30 00:00:00", "ToDate": "2026-03-01 00:00:00"}, "FromDate"),
        ({"FromDate": "2026-01-01 00:00:00", "ToDate": "2026-01-02T00:00:00"}, "ToDate"),
        ({"FromDate": "2026-01-01 00:00:00", "ToDate": "1/2/2026 0:00:00 AM"}, "ToDate"),
        ({"FromDate": 1767225600, "ToDate": "2026-01-02 00:00:00"}, "FromDate"),
    ],
)
@pytest.mark.looptime
async def test_missing_or_invalid_dates_answer_the_500_envelope(
    app: EmulatorApp, parameter: Any, named: str
) -> None:
    """A missing Parameter, FromDate or ToDate, or one not a real UTC YYYY-MM-DD HH:MM:SS, is
    answered HTTP 500 MXInvalidInputException naming it."""
    async with client_of(app) as client:
        response = await recently_modified(client, parameter)
    status, kind, message = error_of(response)
    assert (status, kind) == (500, "MXInvalidInputException")
    assert named in message


# The rules every endpoint shares


@pytest.mark.looptime
async def test_keys_method_and_rate_limit_apply_as_to_the_other_endpoints() -> None:
    """Bad keys get 401, a GET 405, and a request over the rate limit 429."""
    app = virtual_app(DATA.copy(), EmulatorConfig(rate_limits=["2/5"]))
    async with client_of(app, headers={**KEYS, "x-LSQ-SecretKey": "wrong"}) as client:
        unauthorised = await recently_modified(client)
    async with client_of(app) as client:
        wrong_method = await client.get(LEADS)
        answers = [await recently_modified(client) for _ in range(3)]
    assert error_of(unauthorised)[:2] == (401, "MXUnAuthorizedAccessException")
    assert wrong_method.status_code == 405
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert error_of(answers[2])[1] == "MXAPIRateLimitExceededException"
    assert app.stats.rate_limited == 1


@pytest.mark.looptime
async def test_faults_are_injected_here_too() -> None:
    """With every request faulted with a bare 500, this endpoint answers it too."""
    config = EmulatorConfig(fault_rate=1.0, fault_kinds={"500"})
    async with client_of(virtual_app(DATA.copy(), config)) as client:
        response = await recently_modified(client)
    assert response.status_code == 500
    assert "ExceptionType" not in response.json()


@pytest.mark.looptime
async def test_the_configured_page_size_cap_applies() -> None:
    """With leads_page_size_cap 1000, PageSize 2000 serves 1000 leads, from offset 1000 on
    page 2 (the clamped size); page_size_cap, the other endpoints' cap, does not apply."""
    data = Dataset(opportunities={f"lead-{n:04d}": [] for n in range(2500)})
    config = EmulatorConfig(leads_page_size_cap=1000, page_size_cap=10)
    async with client_of(virtual_app(data, config)) as client:
        first = await recently_modified(client, paging={"PageIndex": 1, "PageSize": 2000})
        second = await recently_modified(client, paging={"PageIndex": 2, "PageSize": 2000})
    assert len(lead_ids(first)) == 1000
    ordered = [lead["ProspectID"] for lead in by_modification(data)]
    assert lead_ids(second) == ordered[1000:2000]


@pytest.mark.parametrize("mode", ["clamp", "refuse"])
@pytest.mark.looptime
async def test_page_sizes_over_5000_are_clamped_or_refused_as_configured(
    mode: Literal["clamp", "refuse"],
) -> None:
    """By default, PageSize 6000 serves 5,000 leads ("clamp") or is answered 500 naming 5000
    ("refuse"): the documented maximum is the default cap, whatever page_size_cap says."""
    data = Dataset(opportunities={f"lead-{n:04d}": [] for n in range(5003)})
    config = EmulatorConfig(page_size_cap_mode=mode)
    async with client_of(virtual_app(data, config)) as client:
        response = await recently_modified(client, paging={"PageIndex": 1, "PageSize": 6000})
        exact = await recently_modified(client, paging={"PageIndex": 1, "PageSize": 5000})
    assert len(lead_ids(exact)) == 5000
    if mode == "clamp":
        assert response.json()["RecordCount"] == 5003
        assert len(lead_ids(response)) == 5000
    else:
        status, kind, message = error_of(response)
        assert (status, kind) == (500, "MXInvalidInputException")
        assert "5000" in message


# Session.paginate


@pytest.mark.looptime
async def test_paginate_walks_exactly_the_emulators_leads(app: EmulatorApp) -> None:
    """session.paginate over Leads.RecentlyModified yields every lead once, in the emulator's
    order, in ceil(26 / 7) = 4 requests."""
    async with client_of(app) as client, session_on(client) as session:
        rows = await session.paginate(
            "LeadManagement.svc/Leads.RecentlyModified",
            body={"Parameter": ALL_TIME},
            list_key="Leads",
            page_size=7,
        ).collect()
    assert [flat(row) for row in rows] == by_modification(app.data)
    assert app.stats.total == 4


@pytest.mark.looptime
async def test_paginate_gets_every_lead_through_faults() -> None:
    """With a third of the requests faulted, the walk still yields exactly the leads, once."""
    config = EmulatorConfig(
        fault_rate=0.3, fault_kinds={"500", "502", "503", "drop", "truncate"}, fault_seed=7
    )
    app = virtual_app(DATA.copy(), config)
    retry = lsq.RetryPolicy(attempts=10, backoff=0.5, max_backoff=2.0)
    async with client_of(app) as client, session_on(client, retry=retry) as session:
        rows = await session.paginate(
            "LeadManagement.svc/Leads.RecentlyModified",
            body={"Parameter": ALL_TIME},
            list_key="Leads",
            page_size=5,
        ).collect()
    assert [flat(row) for row in rows] == by_modification(app.data)
    assert sum(app.stats.faults.values()) > 0
