"""Decoding an answer: a status and a body become a page of rows, or the error they mean.

No I/O here. `decode_page` reads a page; `error_for_response` is the one place
that maps an answer to an exception class, and `parse_rate_limit_message`
reads the limit a refusal names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

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
from ._secrets import SHOWN_CHARACTERS, shown

__all__ = [
    "RATE_LIMIT_EXCEPTION",
    "RawPage",
    "decode_page",
    "error_for_response",
    "parse_rate_limit_message",
]

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"


class RawPage(NamedTuple):
    """One page as the API sent it.

    Attributes:
        record_count: the ``RecordCount`` the server reported (the total number
            of matching rows), or None when it sent none.
        rows: the rows of ``List``, as decoded from JSON.
    """

    record_count: int | None
    rows: list[dict[str, Any]]


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
        text = _text(body, secrets)
        # Scrubbed after decoding too: a secret escaped twice over is whole only then.
        envelope = (
            {
                key: shown(value, secrets) if isinstance(value, str) else value
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
            body=_text(body, secrets),
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
            body=_text(body, secrets),
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
            body=_text(body, secrets),
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
    text = repr(shown(value, secrets, 60) if isinstance(value, str) else value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


_RATE_LIMIT_MESSAGE = re.compile(
    r"limit of\s+(\d{1,30})\s+in\s+(\d{1,30}(?:\.\d{1,30})?)\s*"
    r"(second|sec|s\b|minute|min|hour|hr|h\b|day|d\b)",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# No plan allows a billion calls in a period: a larger number is not a limit to keep.
_MOST_CALLS_NAMED = 10**9


def parse_rate_limit_message(text: str | None) -> RateLimit | None:
    """Read ``limit of N in M second(s)`` out of a rate-limit message, or the same in
    minute(s), hour(s) or day(s). None when the message names no limit a client could keep:
    none at all, zero, or numbers past what any plan allows (a 400-digit period)."""
    if not text:
        return None
    match = _RATE_LIMIT_MESSAGE.search(text[:SHOWN_CHARACTERS])
    if not match:
        return None
    calls = int(match.group(1))
    period = float(match.group(2)) * _UNIT_SECONDS[match.group(3)[0].lower()]
    if not 1 <= calls <= _MOST_CALLS_NAMED or not 0 < period < float("inf"):
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


def _text(body: bytes, secrets: Sequence[str]) -> str:
    """What an exception keeps of a body: its start, scrubbed (a character is 4 bytes
    at most, so the bytes read bound the work whatever the body's size)."""
    read = 4 * 2 * SHOWN_CHARACTERS
    start = body[:read].decode("utf-8", errors="replace")
    return shown(start, secrets, more=len(body) > read)
