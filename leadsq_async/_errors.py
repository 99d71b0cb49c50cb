"""The exceptions leadsq-async raises.

Every error the library raises on a failed call is a `LeadSquaredError`::

    LeadSquaredError                 any failed call; .endpoint, .status, .transient,
    │                                .account_wide, .asked
    ├── ResponseError                the API answered, with an error
    │   ├── AuthenticationError      401: bad keys, or the wrong region (.correct_host)
    │   ├── BadRequestError          400: the body is not as the API specifies
    │   ├── NotFoundError            404: no such API
    │   ├── RateLimitError           429, or 200 carrying MXAPIRateLimitExceededException,
    │   │   │                        once the retries are spent (.limit)
    │   │   └── QuotaExhaustedError  no slot before the retry deadline: a spent quota
    │   │                            (.retry_at, .limit); nothing was sent
    │   ├── APIError                 500 with the error envelope: validation and business
    │   │                            errors ("Lead does not exist"); never retried
    │   ├── ServerError              transient: a bare 500, HTML 502/503/504 from the CDN
    │   └── MalformedResponseError   a 200 that is not a page: invalid JSON, no "List",
    │                                a RecordCount or a row id that is no count or id
    ├── TransportError               no answer: refused, dropped or truncated connections
    │   └── RequestTimeoutError           no whole answer in time
    ├── PagingError                  the server broke paging: it ignores PageIndex, or
    │   │                            serves rows past the page cap
    │   └── WindowError              a feed's time window the server cannot serve, even
    │                                at one minute (.since, .until)
    └── RateLimiterUnavailableError       the Redis server of a shared limit could not be used

Bad arguments are not `LeadSquaredError`s: they raise `ValueError` or `TypeError`
before anything is sent.

`transient` says whether trying the same call again may succeed; the session
retries exactly the transient errors. `account_wide` says whether the failure
concerns the whole account (bad keys, the wrong region, a request the API
does not take, a spent quota, an unavailable shared limiter) rather than one
id: a crawl stops at once on an account-wide error, and turns any other into
that id's result. No exception carries a secret key: the session scrubs it
from every message the server sends back.

Which class an answer maps to is decided in ``_decode``; this module is a leaf: it
imports nothing from the package, so the limits it reports are typed by what they
offer (`StatedLimit`, which `RateLimit` meets), not by their class.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Protocol

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
    "RateLimiterUnavailableError",
    "RequestTimeoutError",
    "ResponseError",
    "ServerError",
    "TransportError",
    "WindowError",
]


class StatedLimit(Protocol):
    """What an exception says of a rate limit: a `RateLimit`, read through what it offers.

    ``calls`` requests in any ``period`` seconds; ``str()`` words it ("10 calls per 5 s").
    """

    @property
    def calls(self) -> int: ...

    @property
    def period(self) -> float: ...


_HOST_PATTERN = re.compile(r"\bapi(?:-[a-z]+\d+)?\.leadsquared\.com\b", re.IGNORECASE)


class LeadSquaredError(Exception):
    """A call to the LeadSquared API failed.

    Attributes:
        message: what went wrong, in words.
        endpoint: the endpoint's path, such as
            ``OpportunityManagement.svc/GetOpportunitiesOfLead``.
        status: the HTTP status, or None when no answer arrived.
        transient: whether the same call may succeed if tried again.
        account_wide: whether the failure concerns the whole account rather
            than the one id asked for; a crawl stops at once on one.
        asked: whose rows were asked for, as the query named them
            (``leadId=...``), or None.
    """

    transient: ClassVar[bool] = False
    account_wide: bool = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        account_wide: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        if account_wide is not None:
            self.account_wide = account_wide
        self.asked: str | None = None

    def __str__(self) -> str:
        where = ", ".join(part for part in (self.endpoint, self.asked) if part)
        where = f" ({where})" if where else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{status}{self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, "
            f"endpoint={self.endpoint!r}, status={self.status!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its state, not by calling __init__ again with ``args``: the
        # keyword-only arguments of the subclasses are not in ``args``.
        return (_rebuilt, (type(self), self.args, self.__dict__))


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
        account_wide: bool | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, account_wide=account_wide)
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.body = body[:2000]


class AuthenticationError(ResponseError):
    """401: the keys are wrong, or the account lives in another region.

    Attributes:
        correct_host: the host the server's message names, such as
            ``api-us11.leadsquared.com``, when it names one; pass it as ``host``.
    """

    account_wide = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        match = _HOST_PATTERN.search(self.exception_message or self.body)
        self.correct_host: str | None = match.group(0).lower() if match else None
        if self.correct_host:
            self.message = f"{self.message} (the account's host is {self.correct_host})"


class BadRequestError(ResponseError):
    """400: the request's body is not as the API specifies."""

    account_wide = True


class NotFoundError(ResponseError):
    """404: the API has no such endpoint."""

    account_wide = True


class RateLimitError(ResponseError):
    """The account's rate limit was exceeded, and the retries are spent.

    Attributes:
        limit: the account's limit as the server's message states it (a `RateLimit`), or
            None.
    """

    transient = True

    def __init__(self, message: str, *, limit: StatedLimit | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit = limit


class QuotaExhaustedError(RateLimitError):
    """No rate-limit slot frees before the retry policy's deadline: a spent quota.

    Raised before sending, so no request was made. The account can go on at
    ``retry_at``; a session made with ``wait_for_quota=True`` waits instead.

    Attributes:
        retry_at: when a slot frees, as an aware UTC datetime.
        limit: the limit that is spent (a `RateLimit`), or None when it is not known.
    """

    transient = False
    account_wide = True

    def __init__(
        self,
        message: str,
        *,
        retry_at: datetime,
        limit: StatedLimit | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(message, limit=limit, endpoint=endpoint)
        self.retry_at = retry_at


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


class RequestTimeoutError(TransportError):
    """No answer arrived within the session's timeout."""


class PagingError(LeadSquaredError):
    """The server broke paging: a full page held only rows already seen, or the
    walk went past its page cap.

    Raised instead of looping for ever against a server that ignores
    ``PageIndex`` or keeps inventing rows (see the paging guide's "When a walk ends").
    """


class RateLimiterUnavailableError(LeadSquaredError):
    """The Redis server that holds the shared rate limit could not be used.

    Raised by `RedisLimiter` when Redis is unreachable or fails, unless the
    limiter was made with ``fallback=True``. No request was sent. The message
    names the Redis address (never its password).

    Attributes:
        address: where the limiter looked for Redis, such as ``127.0.0.1:6379/0``.
    """

    account_wide = True

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class WindowError(PagingError):
    """A feed's time window that the server could not serve, even split down to one
    minute: a bare 500 after its retries, or more rows than paging reaches.

    Attributes:
        since: the window's start, an aware UTC datetime (inclusive).
        until: the window's end (exclusive).
    """

    def __init__(self, message: str, *, endpoint: str, since: datetime, until: datetime) -> None:
        super().__init__(message, endpoint=endpoint)
        self.since = since
        self.until = until


def _rebuilt(kind: type[LeadSquaredError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An exception unpickled: ``kind`` with ``args`` and the attributes it had."""
    error = kind.__new__(kind)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
