"""The emulator's API over loopback sockets: routing, keys, paging, sorting, columns, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from leadsq_async.testing import RunningEmulator
from leadsq_async.testing._dates import parse_date

OPPORTUNITIES = "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead"
ACTIVITIES = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"


def opportunities(client: httpx.Client, lead_id: str, body: Any = None) -> httpx.Response:
    return client.post(OPPORTUNITIES, params={"leadId": lead_id}, json=body)


def activities(client: httpx.Client, opportunity_id: str, body: Any = None) -> httpx.Response:
    return client.post(ACTIVITIES, params={"opportunityId": opportunity_id}, json=body)


def ids(response: httpx.Response, key: str = "OpportunityId") -> list[str]:
    assert response.status_code == 200, response.text
    return [row[key] for row in response.json()["List"]]


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["Status"] == "Error"
    return response.status_code, body["ExceptionType"], body["ExceptionMessage"]


# Routing and keys


def test_get_answers_405(emulator_client: httpx.Client, lsq_emulator: RunningEmulator) -> None:
    """A GET on an endpoint is answered 405 and names POST as allowed."""
    response = emulator_client.get(
        OPPORTUNITIES, params={"leadId": lsq_emulator.data.leads_by_shape["one"]}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_unknown_path_answers_404(emulator_client: httpx.Client) -> None:
    """A path that is no endpoint is answered 404."""
    assert emulator_client.post("/v2/OpportunityManagement.svc/GetEverything").status_code == 404


def test_query_parameter_names_match_case_insensitively(
    lsq_emulator: RunningEmulator,
) -> None:
    """LEADID, ACCESSKEY and SECRETKEY work as well as leadId, accessKey and secretKey."""
    params = {
        "LEADID": lsq_emulator.data.leads_by_shape["one"],
        "ACCESSKEY": lsq_emulator.access_key,
        "SecretKEY": lsq_emulator.secret_key,
    }
    with httpx.Client(base_url=lsq_emulator.url) as client:
        response = client.post(OPPORTUNITIES, params=params)
    assert response.status_code == 200
    assert response.json()["RecordCount"] == 1


def test_keys_in_headers_are_accepted(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Keys in the x-LSQ-AccessKey/x-LSQ-SecretKey headers authenticate, and are not URL keys."""
    assert (
        opportunities(emulator_client, lsq_emulator.data.leads_by_shape["one"]).status_code == 200
    )
    assert lsq_emulator.stats.keys_in_url == 0


def test_keys_in_query_are_accepted_and_counted(lsq_emulator: RunningEmulator) -> None:
    """Keys in the query string authenticate, and the request counts in stats.keys_in_url."""
    params = {
        "leadId": lsq_emulator.data.leads_by_shape["one"],
        "accessKey": lsq_emulator.access_key,
        "secretKey": lsq_emulator.secret_key,
    }
    with httpx.Client(base_url=lsq_emulator.url) as client:
        assert client.post(OPPORTUNITIES, params=params).status_code == 200
    assert lsq_emulator.stats.keys_in_url == 1


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
def test_bad_keys_answer_401_envelope(
    lsq_emulator: RunningEmulator, headers: dict[str, str]
) -> None:
    """Missing or wrong keys are answered 401 with the error envelope."""
    with httpx.Client(base_url=lsq_emulator.url, headers=headers) as client:
        response = opportunities(client, lsq_emulator.data.leads_by_shape["one"])
    status, exception_type, _ = error_of(response)
    assert (status, exception_type) == (401, "MXUnAuthorizedAccessException")


def test_configured_keys_replace_the_demo_keys(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """After config.secret_key changes, the demo secret is refused."""
    lsq_emulator.config.secret_key = "rotated"
    assert (
        opportunities(emulator_client, lsq_emulator.data.leads_by_shape["one"]).status_code == 401
    )


def test_wrong_region_answers_401_naming_the_host(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """With wrong_region_host set, good keys get a 401 whose message names that host."""
    lsq_emulator.config.wrong_region_host = "api-us11.leadsquared.com"
    status, _, message = error_of(
        opportunities(emulator_client, lsq_emulator.data.leads_by_shape["one"])
    )
    assert status == 401
    assert "api-us11.leadsquared.com" in message


def test_secret_key_is_not_in_config_repr(lsq_emulator: RunningEmulator) -> None:
    """The config's repr shows the access key but never the secret key."""
    lsq_emulator.config.secret_key = "s3cr3t-value"
    assert "s3cr3t-value" not in repr(lsq_emulator.config)
    assert "s3cr3t-value" not in repr(lsq_emulator.app)


# Paging


def test_record_count_is_the_same_on_every_page_and_past_the_end_list_is_empty(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Pages of 50 over 101 rows hold 50, 50, 1 then 0 rows, all with RecordCount 101."""
    lead = lsq_emulator.data.leads_by_shape["page_plus_one"]
    pages = [
        opportunities(
            emulator_client, lead, {"Paging": {"PageIndex": index, "PageSize": 50}}
        ).json()
        for index in (1, 2, 3, 4)
    ]
    assert [page["RecordCount"] for page in pages] == [101] * 4
    assert [len(page["List"]) for page in pages] == [50, 50, 1, 0]


def test_opportunities_default_to_100_rows(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Without Paging, GetOpportunitiesOfLead returns the first 100 rows."""
    page = opportunities(emulator_client, lsq_emulator.data.leads_by_shape["thousands"]).json()
    assert (page["RecordCount"], len(page["List"])) == (2500, 100)


def test_activities_default_to_25_rows(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Without Paging, GetActivitiesOfOpportunity returns the first 25 rows."""
    page = activities(emulator_client, lsq_emulator.data.opportunities_by_shape["hundreds"]).json()
    assert (page["RecordCount"], len(page["List"])) == (300, 25)


def test_page_index_and_page_size_select_a_window(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """PageIndex 3 with PageSize 10 returns rows 21 to 30 of the whole ordering."""
    lead = lsq_emulator.data.leads_by_shape["thousands"]
    everything = ids(
        opportunities(emulator_client, lead, {"Paging": {"PageIndex": 1, "PageSize": 1000}})
    )
    page = ids(opportunities(emulator_client, lead, {"Paging": {"PageIndex": 3, "PageSize": 10}}))
    assert page == everything[20:30]


def test_offset_and_row_count_as_strings_select_a_window(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Offset "21" (1-based row number) with RowCount "10" returns rows 21 to 30."""
    opportunity = lsq_emulator.data.opportunities_by_shape["hundreds"]
    key = "ProspectActivityId"
    everything = ids(activities(emulator_client, opportunity, {"Paging": {"RowCount": "300"}}), key)
    page = ids(
        activities(emulator_client, opportunity, {"Paging": {"Offset": "21", "RowCount": "10"}}),
        key,
    )
    assert page == everything[20:30]


def test_page_size_above_cap_is_clamped(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """In clamp mode PageSize 2000 serves 1000 rows, page 2 starting at row 1001."""
    lead = lsq_emulator.data.leads_by_shape["thousands"]
    everything = ids(
        opportunities(emulator_client, lead, {"Paging": {"PageSize": 1000, "PageIndex": 1}})
    )
    everything += ids(
        opportunities(emulator_client, lead, {"Paging": {"PageSize": 1000, "PageIndex": 2}})
    )
    page_two = ids(
        opportunities(emulator_client, lead, {"Paging": {"PageSize": 2000, "PageIndex": 2}})
    )
    assert page_two == everything[1000:2000]


def test_page_size_above_cap_is_refused_when_configured(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """In refuse mode PageSize above the cap is a 500 envelope naming the maximum."""
    lsq_emulator.config.page_size_cap_mode = "refuse"
    lsq_emulator.config.page_size_cap = 500
    body = {"Paging": {"PageIndex": 1, "PageSize": 501}}
    status, exception_type, message = error_of(
        opportunities(emulator_client, lsq_emulator.data.leads_by_shape["thousands"], body)
    )
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
def test_invalid_paging_answers_500_envelope(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, paging: dict[str, Any]
) -> None:
    """Sizes below 1, non-integers and mixed paging styles are a 500 invalid-input envelope."""
    response = opportunities(
        emulator_client, lsq_emulator.data.leads_by_shape["page"], {"Paging": paging}
    )
    assert error_of(response)[:2] == (500, "MXInvalidInputException")


def test_malformed_json_body_answers_400(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """A body that is not JSON is answered 400."""
    response = emulator_client.post(
        OPPORTUNITIES,
        params={"leadId": lsq_emulator.data.leads_by_shape["one"]},
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


def test_default_order_is_most_recently_created_first(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Without Sorting, rows come newest first by PACreatedOn whatever its date format."""
    times = created_times(opportunities(emulator_client, lsq_emulator.data.leads_by_shape["page"]))
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(("direction", "newest_first"), [("1", True), ("0", False), (0, False)])
def test_sorting_by_date_follows_real_time_across_formats(
    emulator_client: httpx.Client,
    lsq_emulator: RunningEmulator,
    direction: object,
    newest_first: bool,
) -> None:
    """Sorting on PAModifiedOn orders by the instant, across all four date formats."""
    body = {"Sorting": {"ColumnName": "PAModifiedOn", "Direction": direction}}
    response = opportunities(emulator_client, lsq_emulator.data.leads_by_shape["page"], body)
    rows = response.json()["List"]
    times = [parse_date(row["PAModifiedOn"]) or 0.0 for row in rows]
    assert times == sorted(times, reverse=newest_first)
    assert {style_of(row["PAModifiedOn"]) for row in rows} == {"plain", "millis", "us", "wcf"}


def test_sorting_by_a_number_column_is_numeric(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Score (numbers as strings) sorts as numbers: "120" after "25" ascending."""
    body = {"Sorting": {"ColumnName": "Score", "Direction": "0"}}
    response = opportunities(emulator_client, lsq_emulator.data.leads_by_shape["page"], body)
    scores = [int(row["Score"]) for row in response.json()["List"]]
    assert scores == sorted(scores)
    assert len(set(scores)) > 1


def test_invalid_sort_direction_answers_500_envelope(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """A Direction other than 0 or 1 is a 500 invalid-input envelope."""
    body = {"Sorting": {"ColumnName": "Score", "Direction": "up"}}
    response = opportunities(emulator_client, lsq_emulator.data.leads_by_shape["page"], body)
    assert error_of(response)[:2] == (500, "MXInvalidInputException")


def test_include_csv_narrows_columns_but_keeps_the_ids(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Include_CSV returns only the named keys a row has, plus OpportunityId and ProspectId."""
    body = {"Columns": {"Include_CSV": "Status, mx_Custom_6"}}
    rows = opportunities(emulator_client, lsq_emulator.data.leads_by_shape["page"], body).json()[
        "List"
    ]
    allowed = {"Status", "mx_Custom_6", "OpportunityId", "ProspectId"}
    assert all(set(row) <= allowed and "OpportunityId" in row for row in rows)
    assert any("mx_Custom_6" in row for row in rows)
    assert not all("mx_Custom_6" in row for row in rows)


def test_total_on_each_row_is_the_record_count(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """Each row's Total string is the RecordCount of the call."""
    page = opportunities(emulator_client, lsq_emulator.data.leads_by_shape["page_plus_one"]).json()
    assert {row["Total"] for row in page["List"]} == {"101"}


def test_opportunity_type_filters_the_rows(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """opportunityType keeps only opportunities whose OpportunityEvent is that code."""
    lead = lsq_emulator.data.leads_by_shape["page"]
    expected = [
        r for r in lsq_emulator.data.opportunities[lead] if r["OpportunityEvent"] == "12002"
    ]
    response = emulator_client.post(
        OPPORTUNITIES,
        params={"leadId": lead, "opportunityType": "12002"},
        json={"Paging": {"PageIndex": 1, "PageSize": 1000}},
    )
    page = response.json()
    assert page["RecordCount"] == len(expected) > 0
    assert {row["OpportunityEvent"] for row in page["List"]} == {"12002"}


def test_activity_event_code_filters_the_rows(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """activityEventCode keeps only activities whose ActivityEvent is that code."""
    opportunity = lsq_emulator.data.opportunities_by_shape["hundreds"]
    rows = lsq_emulator.data.activities[opportunity]
    expected = sum(row["ActivityEvent"] == "201" for row in rows)
    response = emulator_client.post(
        ACTIVITIES, params={"opportunityId": opportunity, "activityEventCode": "201"}
    )
    assert response.json()["RecordCount"] == expected > 0


def test_served_rows_are_the_dataset_rows(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator
) -> None:
    """A lead's only opportunity is served exactly as the dataset holds it."""
    lead = lsq_emulator.data.leads_by_shape["one"]
    assert (
        opportunities(emulator_client, lead).json()["List"] == lsq_emulator.data.opportunities[lead]
    )


# Business errors


def test_missing_lead_id_answers_500_envelope(emulator_client: httpx.Client) -> None:
    """A call without leadId is a 500 invalid-input envelope naming the parameter."""
    status, exception_type, message = error_of(emulator_client.post(OPPORTUNITIES))
    assert (status, exception_type) == (500, "MXInvalidInputException")
    assert "leadId" in message


def test_missing_opportunity_id_answers_500_envelope(emulator_client: httpx.Client) -> None:
    """A call without opportunityId is a 500 invalid-input envelope naming the parameter."""
    status, _, message = error_of(emulator_client.post(ACTIVITIES))
    assert status == 500
    assert "opportunityId" in message


def test_unknown_lead_answers_500_lead_does_not_exist(emulator_client: httpx.Client) -> None:
    """An unknown lead id is a 500 envelope "Lead does not exist in the system"."""
    status, _, message = error_of(
        opportunities(emulator_client, "00000000-0000-4000-8000-000000000000")
    )
    assert (status, message) == (500, "Lead does not exist in the system")


def test_unknown_opportunity_answers_500_opportunity_does_not_exist(
    emulator_client: httpx.Client,
) -> None:
    """An unknown opportunity id is a 500 envelope "Opportunity does not exist in the system"."""
    status, _, message = error_of(
        activities(emulator_client, "00000000-0000-4000-8000-000000000000")
    )
    assert (status, message) == (500, "Opportunity does not exist in the system")


@pytest.mark.parametrize("shape", ["empty", "one", "page", "page_plus_one", "thousands"])
def test_each_lead_shape_serves_its_record_count(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, shape: str
) -> None:
    """The lead of each shape reports as many records as the dataset holds."""
    lead = lsq_emulator.data.leads_by_shape[shape]
    expected = {"empty": 0, "one": 1, "page": 100, "page_plus_one": 101, "thousands": 2500}
    assert opportunities(emulator_client, lead).json()["RecordCount"] == expected[shape]


@pytest.mark.parametrize("shape", ["empty", "one", "page", "page_plus_one", "hundreds"])
def test_each_opportunity_shape_serves_its_record_count(
    emulator_client: httpx.Client, lsq_emulator: RunningEmulator, shape: str
) -> None:
    """The opportunity of each shape reports as many activities as the dataset holds."""
    opportunity = lsq_emulator.data.opportunities_by_shape[shape]
    expected = {"empty": 0, "one": 1, "page": 25, "page_plus_one": 26, "hundreds": 300}
    assert activities(emulator_client, opportunity).json()["RecordCount"] == expected[shape]
