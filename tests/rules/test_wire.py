"""Request building and response decoding, without any HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

import leadsq_async as lsq
from leadsq_async._decode import decode_page
from leadsq_async._endpoints import ACTIVITIES_OF_OPPORTUNITY, OPPORTUNITIES_OF_LEAD, raw_endpoint
from leadsq_async._hosts import base_url
from leadsq_async._request import PageQuery, build_request
from leadsq_async._secrets import auth_headers

ENDPOINT = OPPORTUNITIES_OF_LEAD.path


def page_body(rows: list[dict[str, object]], record_count: object) -> bytes:
    return json.dumps({"RecordCount": record_count, "List": rows}).encode()


def envelope(exception_type: str, message: str) -> bytes:
    return json.dumps(
        {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}
    ).encode()


def test_request_puts_paging_in_the_body_one_based() -> None:
    """PageIndex and PageSize travel in the JSON body's Paging object."""
    query = PageQuery.checked(OPPORTUNITIES_OF_LEAD, "lead-1")
    request = build_request(query, 3, 250)
    assert request.json == {"Paging": {"PageIndex": 3, "PageSize": 250}}
    assert request.path == "OpportunityManagement.svc/GetOpportunitiesOfLead"


def test_request_names_the_id_and_optional_filter_in_the_query() -> None:
    """The id and the optional type code are query parameters; keys are not."""
    query = PageQuery.checked(ACTIVITIES_OF_OPPORTUNITY, "opp-1", filter_value="168")
    request = build_request(query, 1, 25)
    assert request.params == {"opportunityId": "opp-1", "activityEventCode": "168"}


def test_request_carries_columns_with_the_id_and_sorting() -> None:
    """Columns become Include_CSV (id and lead id added) and Sorting a ColumnName and Direction."""
    query = PageQuery.checked(
        OPPORTUNITIES_OF_LEAD,
        "lead-1",
        columns=["Status", "Owner"],
        sort_by="Owner",
        descending=False,
    )
    request = build_request(query, 1, 10)
    assert request.json["Columns"] == {"Include_CSV": "OpportunityId,ProspectId,Status,Owner"}
    assert request.json["Sorting"] == {"ColumnName": "Owner", "Direction": "0"}


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_id_is_refused(bad: str) -> None:
    """An empty id raises ValueError."""
    with pytest.raises(ValueError, match="leadId"):
        PageQuery.checked(OPPORTUNITIES_OF_LEAD, bad)


@pytest.mark.parametrize("bad", [None, 42, b"lead"])
def test_non_str_id_is_refused(bad: object) -> None:
    """An id that is not a str raises TypeError."""
    with pytest.raises(TypeError, match="leadId"):
        PageQuery.checked(OPPORTUNITIES_OF_LEAD, bad)


def test_keys_travel_in_headers() -> None:
    """The keys become the x-LSQ-* headers."""
    assert auth_headers("access", "secret") == {
        "x-LSQ-AccessKey": "access",
        "x-LSQ-SecretKey": "secret",
    }


@pytest.mark.parametrize("bad", ["", "has space", "line\nbreak"])
def test_bad_key_is_refused_without_echoing_it(bad: str) -> None:
    """A malformed key raises ValueError whose message does not show the key."""
    with pytest.raises(ValueError, match="secret_key") as info:
        auth_headers("access", bad)
    assert not bad or bad not in str(info.value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api-in21.leadsquared.com", "https://api-in21.leadsquared.com/v2/"),
        ("https://api.leadsquared.com/v2", "https://api.leadsquared.com/v2/"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123/v2/"),
        ("http://localhost:8123/v2/", "http://localhost:8123/v2/"),
        ("http://[::1]:8123", "http://[::1]:8123/v2/"),
    ],
)
def test_host_becomes_a_base_url(host: str, expected: str) -> None:
    """A region host or a full URL gives the base URL under /v2/."""
    assert str(base_url(host)) == expected


@pytest.mark.parametrize("host", ["http://api.leadsquared.com", "http://10.0.0.1:80"])
def test_plain_http_is_refused_off_loopback(host: str) -> None:
    """Plain http to a host that is not loopback raises ValueError."""
    with pytest.raises(ValueError, match="plain http"):
        base_url(host)


@pytest.mark.parametrize("host", ["", "ftp://api.leadsquared.com", "https://a.com/?x=1"])
def test_malformed_host_is_refused(host: str) -> None:
    """An empty host, another scheme or a query raises ValueError."""
    with pytest.raises(ValueError, match="host"):
        base_url(host)


def test_decode_returns_rows_and_record_count() -> None:
    """A page decodes to its RecordCount and rows."""
    page = decode_page(200, page_body([{"OpportunityId": "a"}], 7), endpoint=ENDPOINT)
    assert page.record_count == 7
    assert page.rows == [{"OpportunityId": "a"}]


def test_decode_reads_a_record_count_sent_as_a_string() -> None:
    """RecordCount "12" is read as 12, like the API's other numbers."""
    assert decode_page(200, page_body([], "12"), endpoint=ENDPOINT).record_count == 12


def test_decode_tolerates_a_missing_record_count() -> None:
    """A page without RecordCount still decodes, with record_count None."""
    body = json.dumps({"List": []}).encode()
    assert decode_page(200, body, endpoint=ENDPOINT).record_count is None


def test_rate_limit_envelope_with_status_200_is_a_rate_limit_error() -> None:
    """HTTP 200 carrying MXAPIRateLimitExceededException raises RateLimitError."""
    body = envelope(
        "MXAPIRateLimitExceededException", "API calls exceeded the limit of 10 in 5 second(s)"
    )
    with pytest.raises(lsq.RateLimitError) as info:
        decode_page(200, body, endpoint=ENDPOINT)
    assert info.value.limit == lsq.RateLimit(10, 5.0)
    assert info.value.status == 200


def test_429_is_a_rate_limit_error() -> None:
    """HTTP 429 raises RateLimitError, transient."""
    body = envelope(
        "MXAPIRateLimitExceededException", "API calls exceeded the limit of 25 in 5 second(s)"
    )
    with pytest.raises(lsq.RateLimitError) as info:
        decode_page(429, body, endpoint=ENDPOINT)
    assert info.value.transient
    assert info.value.limit == lsq.RateLimit(25, 5.0)


@pytest.mark.parametrize(
    ("wording", "limit"),
    [
        ("the limit of 10 in 1 minute(s)", lsq.RateLimit(10, 60.0)),
        ("the limit of 100 in 2 hour(s)", lsq.RateLimit(100, 7200.0)),
        ("the limit of 10000 in 1 day(s)", lsq.RateLimit(10_000, 86_400.0)),
        ("the limit of 5 in 30 seconds", lsq.RateLimit(5, 30.0)),
    ],
)
def test_refusals_in_minutes_hours_and_days_name_their_limit(
    wording: str, limit: lsq.RateLimit
) -> None:
    """A refusal worded in minutes, hours or days is read as the limit it names, so it is
    learned like one worded in seconds."""
    body = envelope("MXAPIRateLimitExceededException", f"API calls exceeded {wording}")
    with pytest.raises(lsq.RateLimitError) as info:
        decode_page(429, body, endpoint=ENDPOINT)
    assert info.value.limit == limit


@pytest.mark.parametrize(
    "wording",
    [
        "the limit of 1 in " + "9" * 400 + " second(s)",
        "the limit of " + "9" * 400 + " in 5 second(s)",
        "the limit of 2000000000 in 5 second(s)",
        "the limit of 0 in 5 second(s)",
        "the limit of 5 in 0 second(s)",
    ],
)
def test_a_refusal_naming_numbers_no_plan_has_names_no_limit(wording: str) -> None:
    """Absurd numbers in a refusal (a 400-digit period, a billion calls, zero) are a refusal
    with no usable message: a RateLimitError whose limit is None, never a bare ValueError."""
    body = envelope("MXAPIRateLimitExceededException", f"API calls exceeded {wording}")
    with pytest.raises(lsq.RateLimitError) as info:
        decode_page(429, body, endpoint=ENDPOINT)
    assert info.value.limit is None


def test_500_with_envelope_is_an_api_error_that_is_not_transient() -> None:
    """A business error (500 with the envelope) is an APIError, never retried."""
    body = envelope("MXDuplicateEntryException", "Lead does not exist in the system")
    with pytest.raises(lsq.APIError) as info:
        decode_page(500, body, endpoint=ENDPOINT)
    error = info.value
    assert not error.transient
    assert error.exception_type == "MXDuplicateEntryException"
    assert error.exception_message == "Lead does not exist in the system"
    assert error.endpoint == ENDPOINT
    assert "Lead does not exist" in str(error)


def test_bare_500_is_a_transient_server_error() -> None:
    """A 500 without the envelope is a ServerError, retried."""
    body = b'{"Message": "There was an error processing the request."}'
    with pytest.raises(lsq.ServerError) as info:
        decode_page(500, body, endpoint=ENDPOINT)
    assert info.value.transient
    assert "error processing the request" in str(info.value)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_html_from_the_cdn_is_a_transient_server_error(status: int) -> None:
    """An HTML error page from the CDN is a ServerError naming the page's title."""
    body = b"<html><head><title>503 Service Temporarily Unavailable</title></head></html>"
    with pytest.raises(lsq.ServerError, match="Service Temporarily Unavailable") as info:
        decode_page(status, body, endpoint=ENDPOINT)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, lsq.BadRequestError), (401, lsq.AuthenticationError), (404, lsq.NotFoundError)],
)
def test_status_maps_to_its_error_class(status: int, cls: type[lsq.ResponseError]) -> None:
    """400, 401 and 404 raise their own classes, none of them transient."""
    with pytest.raises(cls) as info:
        decode_page(status, envelope("MXException", "no"), endpoint=ENDPOINT)
    assert not info.value.transient


def test_wrong_region_names_the_right_host() -> None:
    """A 401 whose message names a host exposes it as correct_host."""
    body = envelope(
        "MXUnAuthorizedAccessException",
        "Your account is hosted at api-us11.leadsquared.com; call that host instead",
    )
    with pytest.raises(lsq.AuthenticationError) as info:
        decode_page(401, body, endpoint=ENDPOINT)
    assert info.value.correct_host == "api-us11.leadsquared.com"
    assert "api-us11.leadsquared.com" in str(info.value)


def test_invalid_json_is_a_transient_malformed_response() -> None:
    """A body cut short (invalid JSON) is a transient MalformedResponseError."""
    with pytest.raises(lsq.MalformedResponseError) as info:
        decode_page(200, b'{"RecordCount": 3, "List": [{"Opp', endpoint=ENDPOINT)
    assert info.value.transient


def test_json_without_list_is_a_malformed_response_that_is_not_transient() -> None:
    """Well-formed JSON without List is malformed, and retrying cannot help."""
    with pytest.raises(lsq.MalformedResponseError) as info:
        decode_page(200, b'{"RecordCount": 3}', endpoint=ENDPOINT)
    assert not info.value.transient


def test_secret_echoed_by_the_server_is_scrubbed() -> None:
    """A secret that the server echoes back never reaches the exception."""
    body = envelope("MXInvalidKeyException", "Invalid key sekrit-123 given")
    with pytest.raises(lsq.AuthenticationError) as info:
        decode_page(401, body, endpoint=ENDPOINT, secrets=("sekrit-123",))
    error = info.value
    for text in (str(error), repr(error), error.body):
        assert "sekrit-123" not in text


@pytest.mark.parametrize(
    ("record_count", "expected"),
    [(12, 12), (12.0, 12), ("12", 12), (" 12 ", 12), (0, 0), ("", None), (None, None)],
)
def test_decode_reads_every_spelling_of_a_count(record_count: object, expected: object) -> None:
    """A count as a number or a digit string is read; null or "" mean none was sent."""
    assert decode_page(200, page_body([], record_count), endpoint=ENDPOINT).record_count == expected


@pytest.mark.parametrize(
    "record_count",
    ["²", "١٢", "1" * 5000, 10**20, -1, "-1", True, 1.5, "12 rows", [3], {"n": 3}],
    ids=[
        "superscript",
        "arabic-digits",
        "5000-digits",
        "huge",
        "negative",
        "negative-text",
        "bool",
        "fraction",
        "words",
        "list",
        "object",
    ],
)
def test_record_count_that_is_not_a_count_is_a_malformed_response(record_count: object) -> None:
    """A RecordCount that is no number of rows raises MalformedResponseError, not ValueError."""
    with pytest.raises(lsq.MalformedResponseError, match="RecordCount") as info:
        decode_page(200, page_body([], record_count), endpoint=ENDPOINT)
    assert not info.value.transient
    assert len(str(info.value)) < 300


def test_a_json_number_too_long_to_read_is_a_malformed_response() -> None:
    """A 5,000-digit number literal (which int() refuses) raises MalformedResponseError."""
    body = b'{"RecordCount": ' + b"7" * 5000 + b', "List": []}'
    with pytest.raises(lsq.MalformedResponseError) as info:
        decode_page(200, body, endpoint=ENDPOINT)
    assert not info.value.transient


def test_json_nested_too_deep_to_read_is_a_malformed_response() -> None:
    """JSON nested past the recursion limit raises MalformedResponseError, not RecursionError."""
    body = b'{"List": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(lsq.MalformedResponseError):
        decode_page(200, body, endpoint=ENDPOINT)


def test_an_empty_200_is_a_transient_malformed_response() -> None:
    """An empty 200 is a truncated answer, retried like any 200 that is not JSON."""
    with pytest.raises(lsq.MalformedResponseError, match="empty") as info:
        decode_page(200, b"", endpoint=ENDPOINT)
    assert info.value.transient


@pytest.mark.parametrize(
    "path",
    [
        "LeadManagement.svc/Leads.RecentlyModified",
        "ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent",
        "x.svc/Leads.Get%20All",
    ],
)
def test_a_path_under_v2_is_taken_and_sent_there(path: str) -> None:
    """A relative path under /v2/ is accepted, and the request goes to that path."""
    endpoint = raw_endpoint(path)
    request = build_request(PageQuery.raw(endpoint), 1, 10)
    assert str(httpx.URL(base_url("https://api.leadsquared.com")).join(request.path)).startswith(
        "https://api.leadsquared.com/v2/"
    )
