"""The exceptions leadsq-async raises, and the one function that picks them.

Every error the library raises on a failed call is a `LeadSquaredError`::

    LeadSquaredError                 any failed call; .endpoint, .status, .transient
    ├── ResponseError                the API answered, with an error
    │   ├── AuthenticationError      401: bad keys, or the wrong region (.correct_host)
    │   ├── BadRequestError          400: the body is not as the API specifies
    │   ├── NotFoundError            404: no such API
    │   ├── RateLimitError           429, or 200 carrying MXAPIRateLimitExceededException,
    │   │   │                        once the retries are spent (.limit)
    │   │   └── QuotaExhaustedError  the limiter has no slot in time: not sent (.retry_at)
    │   ├── APIError                 500 with the error envelope: validation and business
    │   │                            errors ("Lead does not exist"); never retried
    │   ├── ServerError              transient: a bare 500, HTML 502/503/504 from the CDN
    │   └── MalformedResponseError   a 200 that is not a page: invalid JSON, no "List"
    ├── TransportError               no answer: refused, dropped or truncated connections
    │   └── RequestTimeout           no answer in time
    ├── PagingError                  the server broke paging (it ignores PageIndex)
    └── RateLimiterUnavailable       the Redis server of a shared limit could not be used

Bad arguments are not `LeadSquaredError`s: they raise `ValueError` or `TypeError`
before anything is sent.

`transient` says whether trying the same call again may succeed; the session
retries exactly the transient errors. No exception carries a secret key: the
session scrubs it from every message the server sends back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from ._ratelimit import RateLimit

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "LeadSquaredError",
    "MalformedResponseError",
    "NotFoundError",
    "PagingError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RateLimiterUnavailable",
    "RequestTimeout",
    "ResponseError",
    "ServerError",
    "TransportError",
    "error_for_response",
]

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
_HOST_PATTERN = re.compile(r"\bapi(?:-[a-z]+\d+)?\.leadsquared\.com\b", re.IGNORECASE)


class LeadSquaredError(Exception):
    """A call to the LeadSquared API failed.

    Attributes:
        message: what went wrong, in words.
        endpoint: the endpoint's path, such as
            ``OpportunityManagement.svc/GetOpportunitiesOfLead``.
        status: the HTTP status, or None when no answer arrived.
        transient: whether the same call may succeed if tried again.
    """

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status

    def __str__(self) -> str:
        where = f" ({self.endpoint})" if self.endpoint else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{status}{self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, "
            f"endpoint={self.endpoint!r}, status={self.status!r})"
        )


class ResponseError(LeadSquaredError):
    """The API answered with an error.

    Attributes:
        exception_type: the envelope's ``ExceptionType`` (``MX...Exception``), or None.
        exception_message: the envelope's ``ExceptionMessage``, or None.
        body: the body of the answer as text, shortened to 2,000 characters.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.body = body[:2000]


class AuthenticationError(ResponseError):
    """401: the keys are wrong, or the account lives in another region.

    Attributes:
        correct_host: the host the server's message names, such as
            ``api-us11.leadsquared.com``, when it names one; pass it as ``host``.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        match = _HOST_PATTERN.search(self.exception_message or self.body)
        self.correct_host: str | None = match.group(0).lower() if match else None
        if self.correct_host:
            self.message = f"{self.message} (the account's host is {self.correct_host})"


class BadRequestError(ResponseError):
    """400: the request's body is not as the API specifies."""


class NotFoundError(ResponseError):
    """404: the API has no such endpoint."""


class RateLimitError(ResponseError):
    """The account's rate limit was exceeded, and the retries are spent.

    Attributes:
        limit: the account's limit as the server's message states it, or None.
    """

    transient = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit = parse_rate_limit_message(self.exception_message or self.body)


class QuotaExhaustedError(RateLimitError):
    """No rate-limit slot frees in time: the request was not sent.

    Raised by a limiter's ``slot(max_wait=...)`` when the earliest moment a
    slot can be granted is more than ``max_wait`` seconds away, for instance
    once a daily quota is spent. It concerns the whole account.

    Attributes:
        retry_at: when a slot can be granted at the earliest (an aware UTC datetime).
        limit: the limit that is spent, when the limiter knows it.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_at: datetime,
        limit: RateLimit | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.retry_at = retry_at
        self.limit = limit


class APIError(ResponseError):
    """500 with the error envelope: the API refused the call for what it asked.

    Validation and business errors ("Lead does not exist in the system",
    a missing ``leadId``, an invalid data type). Trying again cannot help, so
    they are never retried.
    """


class ServerError(ResponseError):
    """A transient failure of the server or the CDN in front of it (5xx)."""

    transient = True


class MalformedResponseError(ResponseError):
    """A successful status whose body is not a page of the API.

    Invalid JSON is taken as a truncated answer and is transient; a well-formed
    body without ``List`` is not.
    """

    def __init__(self, message: str, *, transient: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient  # type: ignore[misc]


class TransportError(LeadSquaredError):
    """No answer: the connection was refused, dropped or cut short."""

    transient = True


class RequestTimeout(TransportError):
    """No answer arrived within the session's timeout."""


class PagingError(LeadSquaredError):
    """The server broke paging: a page held only rows already seen.

    Raised instead of looping for ever against a server that ignores
    ``PageIndex``.
    """


class RateLimiterUnavailable(LeadSquaredError):
    """The Redis server that holds the shared rate limit could not be used.

    Raised by `RedisRateLimit` when Redis is unreachable or fails, unless the
    limiter was made with ``fallback=True``. No request was sent. The message
    names the Redis address (never its password).

    Attributes:
        address: where the limiter looked for Redis, such as ``127.0.0.1:6379/0``.
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


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
    exception_type = _text(envelope, "ExceptionType")
    exception_message = _text(envelope, "ExceptionMessage")
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
    message = exception_message or _text(envelope, "Message") or _describe_body(status, body)
    if exception_type:
        message = f"{exception_type}: {message}"
    return cls(
        message,
        endpoint=endpoint,
        status=status,
        exception_type=exception_type,
        exception_message=exception_message,
        body=body,
    )


def _text(envelope: Mapping[str, Any] | None, key: str) -> str | None:
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
