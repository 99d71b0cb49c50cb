"""The emulator's API, called in process on virtual time: routing, keys, paging, sorting,
columns, errors. (Serving it on real sockets is tested in test_emulator_serving.py.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_in_process import ACTIVITIES, OPPORTUNITIES, client_of, virtual_app

from leadsq_async.testing import Dataset, EmulatorApp
from leadsq_async.testing._dates import parse_date


@pytest.fixture(scope="module")
def default_data() -> Dataset:
    """The default dataset, as the pytest plugin's server serves it."""
    return Dataset.generate()


@pytest.fixture
def app(default_data: Dataset) -> EmulatorApp:
    """An app of its own for each test, on the virtual loop's clock."""
    return virtual_app(default_data.copy())


async def opportunities(
    client: httpx.AsyncClient, lead_id: str, body: Any = None
) -> httpx.Response:
    return await client.post(OPPORTUNITIES, params={"leadId": lead_id}, json=body)


async def activities(
    client: httpx.AsyncClient, opportunity_id: str, body: Any = None
) -> httpx.Response:
    return await client.post(ACTIVITIES, params={"opportunityId": opportunity_id}, json=body)


def ids(response: httpx.Response, key: str = "OpportunityId") -> list[str]:
    assert response.status_code == 200, response.text
    return [row[key] for row in response.json()["List"]]


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["Status"] == "Error"
    return response.status_code, body["ExceptionType"], body["ExceptionMessage"]


# Routing and keys


@pytest.mark.looptime
async def test_get_answers_405(app: EmulatorApp) -> None:
    """A GET on an endpoint is answered 405 and names POST as allowed."""
    async with client_of(app) as client:
        response = await client.get(
            OPPORTUNITIES, params={"leadId": app.data.leads_by_shape["one"]}
        )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.looptime
async def test_unknown_path_answers_404(app: EmulatorApp) -> None:
    """A path that is no endpoint is answered 404."""
    async with client_of(app) as client:
        response = await client.post("/v2/OpportunityManagement.svc/GetEverything")
    assert response.status_code == 404


@pytest.mark.looptime
async def test_query_parameter_names_match_case_insensitively(app: EmulatorApp) -> None:
    """LEADID, ACCESSKEY and SECRETKEY work as well as leadId, accessKey and secretKey."""
    params = {
        "LEADID": app.data.leads_by_shape["one"],
        "ACCESSKEY": app.config.access_key,
        "SecretKEY": app.config.secret_key,
    }
    async with client_of(app, headers={}) as client:
        response = await client.post(OPPORTUNITIES, params=params)
    assert response.status_code == 200
    assert response.json()["RecordCount"] == 1


@pytest.mark.looptime
async def test_keys_in_headers_are_accepted(app: EmulatorApp) -> None:
    """Keys in the x-LSQ-AccessKey/x-LSQ-SecretKey headers authenticate, and are not URL keys."""
    async with client_of(app) as client:
        assert (await opportunities(client, app.data.leads_by_shape["one"])).status_code == 200
    assert app.stats.keys_in_url == 0


@pytest.mark.looptime
async def test_keys_in_query_are_accepted_and_counted(app: EmulatorApp) -> None:
    """Keys in the query string authenticate, and the request counts in stats.keys_in_url."""
    params = {
        "leadId": app.data.leads_by_shape["one"],
        "accessKey": app.config.access_key,
        "secretKey": app.config.secret_key,
    }
    async with client_of(app, headers={}) as client:
        assert (await client.post(OPPORTUNITIES, params=params)).status_code == 200
    assert app.stats.keys_in_url == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-LSQ-AccessKey": "demo-access-key"},
        {"x-LSQ-AccessKey": "demo-access-key", "x-LSQ-SecretKey": "wrong"},
        {"x-LSQ-AccessKey": "wrong", "x-LSQ-SecretKey": "demo-secret-key"},
    ],
    ids=["none", "no-secret", "bad-secret", "bad-access"],
)
@pytest.mark.looptime
async def test_bad_keys_answer_401_envelope(app: EmulatorApp, headers: dict[str, str]) -> None:
    """Missing or wrong keys are answered 401 with the error envelope."""
    async with client_of(app, headers=headers) as client:
        response = await opportunities(client, app.data.leads_by_shape["one"])
    status, exception_type, _ = error_of(response)
    assert (status, exception_type) == (401, "MXUnAuthorizedAccessException")


@pytest.mark.looptime
async def test_configured_keys_replace_the_demo_keys(app: EmulatorApp) -> None:
    """After config.secret_key changes, the demo secret is refused."""
    app.config.secret_key = "rotated"
    async with client_of(app) as client:
        assert (await opportunities(client, app.data.leads_by_shape["one"])).status_code == 401


@pytest.mark.looptime
async def test_wrong_region_answers_401_naming_the_host(app: EmulatorApp) -> None:
    """With wrong_region_host set, good keys get a 401 whose message names that host."""
    app.config.wrong_region_host = "api-us11.leadsquared.com"
    async with client_of(app) as client:
        status, _, message = error_of(await opportunities(client, app.data.leads_by_shape["one"]))
    assert status == 401
    assert "api-us11.leadsquared.com" in message


def test_secret_key_is_not_in_config_repr(app: EmulatorApp) -> None:
    """The config's repr shows the access key but never the secret key."""
    app.config.secret_key = "s3cr3t-value"
    assert "s3cr3t-value" not in repr(app.config)
    assert "s3cr3t-value" not in repr(app)


# Paging


@pytest.mark.looptime
async def test_record_count_is_the_same_on_every_page_and_past_the_end_list_is_empty(
    app: EmulatorApp,
) -> None:
    """Pages of 50 over 101 rows hold 50, 50, 1 then 0 rows, all with RecordCount 101."""
    lead = app.data.leads_by_shape["page_plus_one"]
    async with client_of(app) as client:
        pages = [
            (
                await opportunities(client, lead, {"Paging": {"PageIndex": index, "PageSize": 50}})
            ).json()
            for index in (1, 2, 3, 4)
        ]
    assert [page["RecordCount"] for page in pages] == [101] * 4
    assert [len(page["List"]) for page in pages] == [50, 50, 1, 0]


@pytest.mark.looptime
async def test_opportunities_default_to_100_rows(app: EmulatorApp) -> None:
    """Without Paging, GetOpportunitiesOfLead returns the first 100 rows."""
    async with client_of(app) as client:
        page = (await opportunities(client, app.data.leads_by_shape["thousands"])).json()
    assert (page["RecordCount"], len(page["List"])) == (2500, 100)


@pytest.mark.looptime
async def test_activities_default_to_25_rows(app: EmulatorApp) -> None:
    """Without Paging, GetActivitiesOfOpportunity returns the first 25 rows."""
    async with client_of(app) as client:
        page = (await activities(client, app.data.opportunities_by_shape["hundreds"])).json()
    assert (page["RecordCount"], len(page["List"])) == (300, 25)


@pytest.mark.looptime
async def test_page_index_and_page_size_select_a_window(app: EmulatorApp) -> None:
    """PageIndex 3 with PageSize 10 returns rows 21 to 30 of the whole ordering."""
    lead = app.data.leads_by_shape["thousands"]
    async with client_of(app) as client:
        everything = ids(
            await opportunities(client, lead, {"Paging": {"PageIndex": 1, "PageSize": 1000}})
        )
        page = ids(await opportunities(client, lead, {"Paging": {"PageIndex": 3, "PageSize": 10}}))
    assert page == everything[20:30]


@pytest.mark.looptime
async def test_offset_and_row_count_as_strings_select_a_window(app: EmulatorApp) -> None:
    """Offset "21" (1-based row number) with RowCount "10" returns rows 21 to 30."""
    opportunity = app.data.opportunities_by_shape["hundreds"]
    key = "ProspectActivityId"
    async with client_of(app) as client:
        everything = ids(
            await activities(client, opportunity, {"Paging": {"RowCount": "300"}}), key
        )
        page = ids(
            await activities(client, opportunity, {"Paging": {"Offset": "21", "RowCount": "10"}}),
            key,
        )
    assert page == everything[20:30]


@pytest.mark.looptime
async def test_page_size_above_cap_is_clamped(app: EmulatorApp) -> None:
    """In clamp mode PageSize 2000 serves 1000 rows, page 2 starting at row 1001."""
    lead = app.data.leads_by_shape["thousands"]
    async with client_of(app) as client:
        everything = ids(
            await opportunities(client, lead, {"Paging": {"PageSize": 1000, "PageIndex": 1}})
        )
        everything += ids(
            await opportunities(client, lead, {"Paging": {"PageSize": 1000, "PageIndex": 2}})
        )
        page_two = ids(
            await opportunities(client, lead, {"Paging": {"PageSize": 2000, "PageIndex": 2}})
        )
    assert page_two == everything[1000:2000]


@pytest.mark.looptime
async def test_page_size_above_cap_is_refused_when_configured(app: EmulatorApp) -> None:
    """In refuse mode PageSize above the cap is a 500 envelope naming the maximum."""
    app.config.page_size_cap_mode = "refuse"
    app.config.page_size_cap = 500
    body = {"Paging": {"PageIndex": 1, "PageSize": 501}}
    async with client_of(app) as client:
        response = await opportunities(client, app.data.leads_by_shape["thousands"], body)
    status, exception_type, message = error_of(response)
    assert (status, exception_type) == (500, "MXInvalidInputException")
    assert "500" in message


@pytest.mark.parametrize(
    "paging",
    [
        {"PageIndex": 1, "PageSize": 0},
        {"PageIndex": 0, "PageSize": 10},
        {"PageIndex": 1, "PageSize": "ten"},
        {"PageIndex": 1, "PageSize": 2.5},
        {"PageIndex": True, "PageSize": 10},
        {"Offset": "0", "RowCount": "10"},
        {"PageIndex": 1, "RowCount": 10},
    ],
    ids=["size-0", "index-0", "size-text", "size-float", "index-bool", "offset-0", "mixed"],
)
@pytest.mark.looptime
async def test_invalid_paging_answers_500_envelope(
    app: EmulatorApp, paging: dict[str, Any]
) -> None:
    """Sizes below 1, non-integers and mixed paging styles are a 500 invalid-input envelope."""
    async with client_of(app) as client:
        response = await opportunities(client, app.data.leads_by_shape["page"], {"Paging": paging})
    assert error_of(response)[:2] == (500, "MXInvalidInputException")


@pytest.mark.looptime
async def test_malformed_json_body_answers_400(app: EmulatorApp) -> None:
    """A body that is not JSON is answered 400."""
    async with client_of(app) as client:
        response = await client.post(
            OPPORTUNITIES,
            params={"leadId": app.data.leads_by_shape["one"]},
            content=b'{"Paging": ',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400


# Sorting and columns


def style_of(date: str) -> str:
    if date.startswith("/Date("):
        return "wcf"
    if "/" in date:
        return "us"
    return "millis" if "." in date else "plain"


def created_times(response: httpx.Response) -> list[float]:
    times = [parse_date(row["PACreatedOn"]) for row in response.json()["List"]]
    assert None not in times
    return [t for t in times if t is not None]


@pytest.mark.looptime
async def test_default_order_is_most_recently_created_first(app: EmulatorApp) -> None:
    """Without Sorting, rows come newest first by PACreatedOn whatever its date format."""
    async with client_of(app) as client:
        times = created_times(await opportunities(client, app.data.leads_by_shape["page"]))
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(("direction", "newest_first"), [("1", True), ("0", False), (0, False)])
@pytest.mark.looptime
async def test_sorting_by_date_follows_real_time_across_formats(
    app: EmulatorApp, direction: object, newest_first: bool
) -> None:
    """Sorting on PAModifiedOn orders by the instant, across all four date formats."""
    body = {"Sorting": {"ColumnName": "PAModifiedOn", "Direction": direction}}
    async with client_of(app) as client:
        response = await opportunities(client, app.data.leads_by_shape["page"], body)
    rows = response.json()["List"]
    times = [parse_date(row["PAModifiedOn"]) or 0.0 for row in rows]
    assert times == sorted(times, reverse=newest_first)
    assert {style_of(row["PAModifiedOn"]) for row in rows} == {"plain", "millis", "us", "wcf"}


@pytest.mark.looptime
async def test_sorting_by_a_number_column_is_numeric(app: EmulatorApp) -> None:
    """Score (numbers as strings) sorts as numbers: "120" after "25" ascending."""
    body = {"Sorting": {"ColumnName": "Score", "Direction": "0"}}
    async with client_of(app) as client:
        response = await opportunities(client, app.data.leads_by_shape["page"], body)
    scores = [int(row["Score"]) for row in response.json()["List"]]
    assert scores == sorted(scores)
    assert len(set(scores)) > 1


@pytest.mark.looptime
async def test_invalid_sort_direction_answers_500_envelope(app: EmulatorApp) -> None:
    """A Direction other than 0 or 1 is a 500 invalid-input envelope."""
    body = {"Sorting": {"ColumnName": "Score", "Direction": "up"}}
    async with client_of(app) as client:
        response = await opportunities(client, app.data.leads_by_shape["page"], body)
    assert error_of(response)[:2] == (500, "MXInvalidInputException")


@pytest.mark.looptime
async def test_include_csv_narrows_columns_but_keeps_the_ids(app: EmulatorApp) -> None:
    """Include_CSV returns only the named keys a row has, plus OpportunityId and ProspectId."""
    body = {"Columns": {"Include_CSV": "Status, mx_Custom_6"}}
    async with client_of(app) as client:
        response = await opportunities(client, app.data.leads_by_shape["page"], body)
    rows = response.json()["List"]
    allowed = {"Status", "mx_Custom_6", "OpportunityId", "ProspectId"}
    assert all(set(row) <= allowed and "OpportunityId" in row for row in rows)
    assert any("mx_Custom_6" in row for row in rows)
    assert not all("mx_Custom_6" in row for row in rows)


@pytest.mark.looptime
async def test_total_on_each_row_is_the_record_count(app: EmulatorApp) -> None:
    """Each row's Total string is the RecordCount of the call."""
    async with client_of(app) as client:
        page = (await opportunities(client, app.data.leads_by_shape["page_plus_one"])).json()
    assert {row["Total"] for row in page["List"]} == {"101"}


@pytest.mark.looptime
async def test_opportunity_type_filters_the_rows(app: EmulatorApp) -> None:
    """opportunityType keeps only opportunities whose OpportunityEvent is that code."""
    lead = app.data.leads_by_shape["page"]
    expected = [r for r in app.data.opportunities[lead] if r["OpportunityEvent"] == "12002"]
    async with client_of(app) as client:
        response = await client.post(
            OPPORTUNITIES,
            params={"leadId": lead, "opportunityType": "12002"},
            json={"Paging": {"PageIndex": 1, "PageSize": 1000}},
        )
    page = response.json()
    assert page["RecordCount"] == len(expected) > 0
    assert {row["OpportunityEvent"] for row in page["List"]} == {"12002"}


@pytest.mark.looptime
async def test_activity_event_code_filters_the_rows(app: EmulatorApp) -> None:
    """activityEventCode keeps only activities whose ActivityEvent is that code."""
    opportunity = app.data.opportunities_by_shape["hundreds"]
    rows = app.data.activities[opportunity]
    expected = sum(row["ActivityEvent"] == "201" for row in rows)
    async with client_of(app) as client:
        response = await client.post(
            ACTIVITIES, params={"opportunityId": opportunity, "activityEventCode": "201"}
        )
    assert response.json()["RecordCount"] == expected > 0


@pytest.mark.looptime
async def test_served_rows_are_the_dataset_rows(app: EmulatorApp) -> None:
    """A lead's only opportunity is served exactly as the dataset holds it."""
    lead = app.data.leads_by_shape["one"]
    async with client_of(app) as client:
        served = (await opportunities(client, lead)).json()["List"]
    assert served == app.data.opportunities[lead]


# Business errors


@pytest.mark.looptime
async def test_missing_lead_id_answers_500_envelope(app: EmulatorApp) -> None:
    """A call without leadId is a 500 invalid-input envelope naming the parameter."""
    async with client_of(app) as client:
        status, exception_type, message = error_of(await client.post(OPPORTUNITIES))
    assert (status, exception_type) == (500, "MXInvalidInputException")
    assert "leadId" in message


@pytest.mark.looptime
async def test_missing_opportunity_id_answers_500_envelope(app: EmulatorApp) -> None:
    """A call without opportunityId is a 500 invalid-input envelope naming the parameter."""
    async with client_of(app) as client:
        status, _, message = error_of(await client.post(ACTIVITIES))
    assert status == 500
    assert "opportunityId" in message


@pytest.mark.looptime
async def test_unknown_lead_answers_500_lead_does_not_exist(app: EmulatorApp) -> None:
    """An unknown lead id is a 500 envelope "Lead does not exist in the system"."""
    async with client_of(app) as client:
        response = await opportunities(client, "00000000-0000-4000-8000-000000000000")
    status, _, message = error_of(response)
    assert (status, message) == (500, "Lead does not exist in the system")


@pytest.mark.looptime
async def test_unknown_opportunity_answers_500_opportunity_does_not_exist(
    app: EmulatorApp,
) -> None:
    """An unknown opportunity id is a 500 envelope "Opportunity does not exist in the system"."""
    async with client_of(app) as client:
        response = await activities(client, "00000000-0000-4000-8000-000000000000")
    status, _, message = error_of(response)
    assert (status, message) == (500, "Opportunity does not exist in the system")


@pytest.mark.parametrize("shape", ["empty", "one", "page", "page_plus_one", "thousands"])
@pytest.mark.looptime
async def test_each_lead_shape_serves_its_record_count(app: EmulatorApp, shape: str) -> None:
    """The lead of each shape reports as many records as the dataset holds."""
    lead = app.data.leads_by_shape[shape]
    expected = {"empty": 0, "one": 1, "page": 100, "page_plus_one": 101, "thousands": 2500}
    async with client_of(app) as client:
        assert (await opportunities(client, lead)).json()["RecordCount"] == expected[shape]


@pytest.mark.parametrize("shape", ["empty", "one", "page", "page_plus_one", "hundreds"])
@pytest.mark.looptime
async def test_each_opportunity_shape_serves_its_record_count(app: EmulatorApp, shape: str) -> None:
    """The opportunity of each shape reports as many activities as the dataset holds."""
    opportunity = app.data.opportunities_by_shape[shape]
    expected = {"empty": 0, "one": 1, "page": 25, "page_plus_one": 26, "hundreds": 300}
    async with client_of(app) as client:
        assert (await activities(client, opportunity)).json()["RecordCount"] == expected[shape]
