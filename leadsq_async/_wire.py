"""Requests and responses as data: no I/O here.

`build_request` turns an endpoint, an id and a page position into the path,
query and JSON body to send; `decode_page` turns a status and a body into a
page of rows or raises the error they mean (`error_for_response` is the one
place that maps an answer to an exception class, and
`parse_rate_limit_message` reads the limit a refusal names). The transport is
a thin shell that moves these over HTTP, so all of this is tested without a
network.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import httpx

from ._checks import check_text
from ._endpoints import Endpoint
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from ._limits import RateLimit

__all__ = [
    "REGION_HOSTS",
    "PageQuery",
    "RawPage",
    "WireRequest",
    "auth_headers",
    "base_url",
    "build_request",
    "decode_page",
    "error_for_response",
    "parse_rate_limit_message",
    "scrub",
]

REGION_HOSTS: Mapping[str, str] = {
    "singapore": "api.leadsquared.com",
    "us": "api-us11.leadsquared.com",
    "mumbai": "api-in21.leadsquared.com",
    "hyderabad": "api-in22.leadsquared.com",
    "ireland": "api-ir31.leadsquared.com",
    "canada": "api-ca12.leadsquared.com",
    "middle-east": "api-me61.leadsquared.com",
}
"""The API's host in each region, by region name. Pass one as ``Session(host=...)``.

A call against the wrong region fails with `AuthenticationError`, whose
``correct_host`` names the account's host when the server's message does.
"""

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
_ACCESS_KEY_HEADER = "x-LSQ-AccessKey"
_SECRET_KEY_HEADER = "x-LSQ-SecretKey"


@attrs.frozen
class WireRequest:
    """One POST to send: the path under the base URL, its query and JSON body."""

    path: str
    params: dict[str, str]
    json: dict[str, Any]


@attrs.frozen
class RawPage:
    """One page as the API sent it.

    Attributes:
        record_count: the ``RecordCount`` the server reported (the total number
            of matching rows), or None when it sent none.
        rows: the rows of ``List``, as decoded from JSON.
    """

    record_count: int | None
    rows: list[dict[str, Any]]


@attrs.frozen
class PageQuery:
    """Everything about a paged call except the page's position.

    Built by the session from the caller's arguments, after checking them, so a
    bad argument fails before anything is sent.
    """

    endpoint: Endpoint[Any]
    id_value: str | None
    filter_value: str | None = None
    columns: tuple[str, ...] | None = None
    sort_by: str | None = None
    descending: bool = True
    params: tuple[tuple[str, str], ...] = ()
    body: str | None = None

    @classmethod
    def checked(
        cls,
        endpoint: Endpoint[Any],
        id_value: object,
        *,
        filter_value: object = None,
        columns: Iterable[str] | str | None = None,
        sort_by: object = None,
        descending: object = True,
    ) -> PageQuery:
        """Check the caller's arguments and build the query.

        Raises:
            TypeError: an id, filter, column or sort name that is not a str.
            ValueError: an empty id, filter, column or sort name.
        """
        id_value = check_id(endpoint.id_parameter, id_value)
        if filter_value is not None:
            filter_value = check_text(endpoint.filter_parameter, filter_value)
        if sort_by is not None:
            sort_by = check_text("sort_by", sort_by)
        if not isinstance(descending, bool):
            raise TypeError(f"descending must be a bool, not {type(descending).__name__}")
        if not descending and sort_by is None:
            raise ValueError("descending=False needs sort_by: the field to sort on")
        return cls(
            endpoint,
            id_value,
            filter_value,
            _checked_columns(columns, endpoint.required_columns),
            sort_by,
            descending,
        )

    @classmethod
    def raw(
        cls,
        endpoint: Endpoint[Any],
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> PageQuery:
        """The query of `Session.paginate`: the caller's own query string and body.

        Raises:
            TypeError: parameters that are not str to str, or a body that is not
                a JSON object.
        """
        pairs = tuple((params or {}).items())
        for name, value in pairs:
            check_text("a parameter name", name)
            if not isinstance(value, str):
                raise TypeError(f"parameter {name} must be a str, not {type(value).__name__}")
        if body is not None and not isinstance(body, Mapping):
            raise TypeError(f"body must be a JSON object (a Mapping), not {type(body).__name__}")
        try:
            # Kept as text: the query is frozen, and each page gets its own copy.
            text = None if body is None else json.dumps(dict(body))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"body must be JSON-serialisable: {exc}") from None
        return cls(endpoint, None, params=pairs, body=text)


def _checked_columns(
    columns: Iterable[str] | str | None, required: tuple[str, ...]
) -> tuple[str, ...] | None:
    if columns is None:
        return None
    names = columns.split(",") if isinstance(columns, str) else list(columns)
    checked = tuple(check_text("a column name", name).strip() for name in names)
    if not checked:
        raise ValueError("columns must name at least one field")
    # Without its id a row can be neither a record nor told apart from a row
    # seen on an earlier page; without ProspectId its record has no lead_id.
    missing = tuple(key for key in required if key not in checked)
    return (*missing, *checked)


#: The longest id sent: LeadSquared's ids are 36-character GUIDs, and a much
#: longer one only makes a URL no server takes.
MAX_ID_LENGTH = 256


def check_id(name: str, value: object) -> str:
    """An id the API can take: a non-empty str of printable characters, at most
    `MAX_ID_LENGTH` of them.

    Raises:
        TypeError: not a str.
        ValueError: empty, too long, or holding control characters.
    """
    value = check_text(name, value)
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{name} is {len(value):,} characters long; ids are {MAX_ID_LENGTH} at most"
        )
    if not value.isprintable():
        raise ValueError(f"{name} holds control characters: {value[:40]!r}")
    return value


def build_request(query: PageQuery, page_index: int, page_size: int) -> WireRequest:
    """The POST that asks for one page (``PageIndex`` is 1-based)."""
    endpoint = query.endpoint
    params = dict(query.params)
    if query.id_value is not None:
        params[endpoint.id_parameter] = query.id_value
    if query.filter_value is not None:
        params[endpoint.filter_parameter] = query.filter_value
    body: dict[str, Any] = {} if query.body is None else json.loads(query.body)
    body["Paging"] = {"PageIndex": page_index, "PageSize": page_size}
    if query.columns is not None:
        body["Columns"] = {"Include_CSV": ",".join(query.columns)}
    if query.sort_by is not None:
        body["Sorting"] = {
            "ColumnName": query.sort_by,
            "Direction": "1" if query.descending else "0",
        }
    return WireRequest(endpoint.path, params, body)


def decode_page(
    status: int,
    body: bytes,
    *,
    endpoint: str,
    secrets: Sequence[str] = (),
    list_key: str = "List",
) -> RawPage:
    """Decode an answer into a page, or raise the error it means.

    Raises:
        ResponseError: one of its subclasses, chosen by `error_for_response`,
            for an error status or an error envelope (which may come with 200).
        MalformedResponseError: a successful status whose body is not a page.
    """
    document = _loads_or_invalid(body)
    if status != 200 or (isinstance(document, dict) and _is_error_envelope(document)):
        text = scrub(_text(body), secrets)
        # Scrubbed after decoding too: a secret escaped twice over is whole only then.
        envelope = (
            {
                key: scrub(value, secrets) if isinstance(value, str) else value
                for key, value in document.items()
            }
            if isinstance(document, dict)
            else None
        )
        raise error_for_response(status, endpoint=endpoint, envelope=envelope, body=text)
    if document is _INVALID or document is _UNREADABLE:
        truncated = document is _INVALID
        if not body:
            reason = "the answer is empty (cut short?)"
        elif truncated:
            reason = "the answer is not valid JSON (cut short?)"
        else:
            reason = "the answer is JSON too deeply nested or with numbers too long to read"
        raise MalformedResponseError(
            reason,
            endpoint=endpoint,
            status=status,
            transient=truncated,
            body=scrub(_text(body), secrets),
        )
    if list_key.startswith("[*].") and isinstance(document, list):
        document = _merged_groups(document, list_key[4:])
        list_key = list_key[4:]
    rows = document.get(list_key) if isinstance(document, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise MalformedResponseError(
            f'the answer has no "{list_key}" of rows',
            endpoint=endpoint,
            status=status,
            body=scrub(_text(body), secrets),
        )
    assert isinstance(document, dict)
    value = document.get("RecordCount")
    try:
        record_count = _record_count(value)
    except ValueError:
        raise MalformedResponseError(
            f"RecordCount is not a number of rows: {_shown(value, secrets)}",
            endpoint=endpoint,
            status=status,
            body=scrub(_text(body), secrets),
        ) from None
    return RawPage(record_count, rows)


def _merged_groups(groups: list[Any], list_key: str) -> Any:
    """An answer that is a JSON array of groups, each ``{RecordCount, <list_key>: [...]}``
    (``GetOpportunitiesById``), as one page: the rows of every group, the counts summed.
    Anything else is returned as it is, for the caller to refuse."""
    if not all(
        isinstance(group, dict) and isinstance(group.get(list_key), list) for group in groups
    ):
        return groups
    rows = [row for group in groups for row in group[list_key]]
    try:
        counts = [_record_count(group.get("RecordCount")) for group in groups]
    except ValueError:
        return groups
    total = None if None in counts else sum(count for count in counts if count is not None)
    return {"RecordCount": total, list_key: rows}


# An empty body, or one cut short: a truncated answer, worth asking again.
_INVALID: Any = object()
# Well-formed JSON that Python will not decode (nesting past the recursion
# limit, an integer of more than 4,300 digits): the same request reads the same.
_UNREADABLE: Any = object()


def _loads_or_invalid(body: bytes) -> Any:
    if not body:
        return _INVALID
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _INVALID
    except (ValueError, RecursionError):
        return _UNREADABLE


def _is_error_envelope(document: Mapping[str, Any]) -> bool:
    return document.get("Status") == "Error" or "ExceptionType" in document


# More rows than any account holds; a longer number is not a count.
_MAX_RECORD_COUNT_DIGITS = 15
_COUNT_PATTERN = re.compile(rf"[0-9]{{1,{_MAX_RECORD_COUNT_DIGITS}}}")


def _record_count(value: object) -> int | None:
    """The ``RecordCount`` of a page: None when the server sent none (absent, null or
    "", the API's spellings of a missing value), else a count of rows.

    Like every number of this API it may come as a string of digits; an integral
    float is read too.

    Raises:
        ValueError: anything else: a negative, fractional or boolean value, a
            string that is not plain ASCII digits, a number of more than 15
            digits, a list or an object.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, int) and not isinstance(number, bool):
        if 0 <= number < 10**_MAX_RECORD_COUNT_DIGITS:
            return number
    elif isinstance(value, str) and _COUNT_PATTERN.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError("not a count of rows")


def _shown(value: object, secrets: Sequence[str]) -> str:
    """A short description of a value from the server for a message, scrubbed first."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(scrub(value, secrets) if isinstance(value, str) else value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def parse_rate_limit_message(text: str | None) -> RateLimit | None:
    """Read ``limit of N in M second(s)`` out of a rate-limit message."""
    if not text:
        return None
    match = re.search(r"limit of\s+(\d+)\s+in\s+(\d+(?:\.\d+)?)\s+second", text, re.IGNORECASE)
    if not match:
        return None
    calls, period = int(match.group(1)), float(match.group(2))
    if calls < 1 or period <= 0:
        return None
    return RateLimit(calls, period)


_ERROR_FOR_STATUS: Mapping[int, type[ResponseError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_for_response(
    status: int,
    *,
    endpoint: str,
    envelope: Mapping[str, Any] | None,
    body: str,
) -> ResponseError:
    """Map an answer's status and error envelope to the exception it means.

    Args:
        status: the HTTP status of the answer.
        endpoint: the endpoint's path, for the message.
        envelope: the decoded JSON body when it was a JSON object, else None.
        body: the body as text (already scrubbed of secrets).
    """
    exception_type = _field(envelope, "ExceptionType")
    exception_message = _field(envelope, "ExceptionMessage")
    cls: type[ResponseError]
    if exception_type == RATE_LIMIT_EXCEPTION:
        cls = RateLimitError
    elif status in _ERROR_FOR_STATUS:
        cls = _ERROR_FOR_STATUS[status]
    elif status >= 500:
        # Only the envelope marks a refusal the server meant; a bare 500 or a
        # CDN page is the server failing, and may pass.
        cls = APIError if exception_type or exception_message else ServerError
    elif exception_type or exception_message:
        cls = APIError
    else:
        cls = ResponseError
    if 300 <= status < 400:
        # Followed, a redirect would carry the keys to whatever host it names.
        return ResponseError(
            "the server answered with a redirect, which is never followed (the keys go to "
            "the configured host only): check the host",
            endpoint=endpoint,
            status=status,
            body=body,
            account_wide=True,
        )
    message = exception_message or _field(envelope, "Message") or _describe_body(status, body)
    if exception_type:
        message = f"{exception_type}: {message}"
    details: dict[str, Any] = {
        "endpoint": endpoint,
        "status": status,
        "exception_type": exception_type,
        "exception_message": exception_message,
        "body": body,
    }
    if cls is RateLimitError:
        details["limit"] = parse_rate_limit_message(exception_message or body)
    return cls(message, **details)


def _field(envelope: Mapping[str, Any] | None, key: str) -> str | None:
    if envelope is None:
        return None
    value = envelope.get(key)
    return str(value) if value not in (None, "") else None


def _describe_body(status: int, body: str) -> str:
    stripped = body.strip()
    if stripped.startswith("<"):
        title = re.search(r"<title>(.*?)</title>", stripped, re.IGNORECASE | re.DOTALL)
        return f"an HTML page: {title.group(1).strip()}" if title else "an HTML page"
    return stripped[:200] or f"an empty answer with status {status}"


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret in ``text``, in any spelling a server or a
    log may give it: as is, JSON-escaped (``\\/``, ``\\u0041``), URL-encoded
    (``%41``) or as HTML character references (``&#65;``), each character in any
    of them, upper or lower case."""
    for secret in secrets:
        if secret:
            text = _spellings(secret).sub("***", text)
    return text


@functools.lru_cache(maxsize=32)
def _spellings(secret: str) -> re.Pattern[str]:
    return re.compile("".join(_char_spellings(char) for char in secret), re.IGNORECASE)


def _char_spellings(char: str) -> str:
    code = ord(char)
    # Escaped once or more: JSON inside JSON doubles the backslashes, and a
    # URL-encoded value encoded again turns % into %25.
    utf8 = "".join(f"%(?:25)*{byte:02x}" for byte in char.encode("utf-8"))
    forms = [
        re.escape(char),
        rf"(?:\\)+u{code:04x}",
        utf8,
        rf"&#0*{code};",
        rf"&#x0*{code:x};",
    ]
    if char == "/":
        forms.append(r"(?:\\)+/")
    if char == " ":
        forms.append(r"\+")
    return f"(?:{'|'.join(forms)})"


def auth_headers(access_key: str, secret_key: str) -> dict[str, str]:
    """The headers that carry the keys (never the URL: URLs end up in logs).

    Raises:
        TypeError: a key that is not a str.
        ValueError: an empty key, or one with white space, control characters or
            characters outside ASCII (which no HTTP header can carry).
    """
    for name, key in (("access_key", access_key), ("secret_key", secret_key)):
        if not isinstance(key, str):
            raise TypeError(f"{name} must be a str, not {type(key).__name__}")
        if not key:
            raise ValueError(f"{name} must not be empty")
        # Never echo the key: it may be the secret.
        if any(char.isspace() or not char.isprintable() for char in key):
            raise ValueError(f"{name} holds white space or control characters")
        if not key.isascii():
            raise ValueError(f"{name} holds characters outside ASCII: check it was copied whole")
    return {_ACCESS_KEY_HEADER: access_key, _SECRET_KEY_HEADER: secret_key}


def base_url(host: str) -> httpx.URL:
    """The base URL for a region host name or a full URL, ending in ``/``.

    ``api-in21.leadsquared.com`` gives ``https://api-in21.leadsquared.com/v2/``;
    a full URL is taken as it is, with ``/v2/`` added when it has no path.

    Raises:
        TypeError: a host that is not a str.
        ValueError: an empty or malformed host, a scheme other than http(s),
            or plain http to a host other than loopback.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    text = host.strip()
    if not text:
        raise ValueError("host must not be empty")
    if "://" not in text:
        text = f"https://{text}"
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"host is not a valid host name or URL: {host!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"host must be a host name or an http(s) URL, not {host!r}")
    if url.query or url.fragment or url.userinfo:
        raise ValueError("host must not carry a query, a fragment or credentials")
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ValueError(
            f"plain http is refused for {url.host}: the keys would cross the network "
            "unencrypted; use https (http is allowed for loopback hosts only)"
        )
    path = url.path if url.path not in ("", "/") else "/v2/"
    return url.copy_with(path=path if path.endswith("/") else f"{path}/")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
