"""Events: what a session does, as typed records, for progress, metrics and tracing.

Subscribe a listener with ``session.events.subscribe(listener)`` (an `EventHub`, in
`_event_hub`); it is called synchronously, in the task that does the work, with each
event as it happens. When nothing listens, no event is even built, and this module is
not even imported: the transport imports it when it first builds an event. A listener
must be quick and must not raise: an exception from it is logged and otherwise ignored,
so a broken metrics exporter never fails a crawl.

The events, per request and per page::

    SlotGranted        the limiter granted a request its slot (after how long a wait)
    RequestSent        a request left, in a rate-limit slot (attempt 1, 2, ...)
    ResponseReceived   its answer arrived (status, seconds from sending)
    RetryScheduled     it failed and will be tried again (why, after how long)
    RateLimited        the server refused it for the rate limit; every task pauses
    QuotaWait          no slot frees before the retry deadline: waiting for the quota
    PageFetched        a page was decoded (rows, RecordCount, the page size asked)
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, TypeAlias

import attrs

if TYPE_CHECKING:
    from ._limits import RateLimit

__all__ = [
    "Event",
    "PageFetched",
    "QuotaWait",
    "RateLimited",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
    "SlotGranted",
]


@attrs.frozen
class SlotGranted:
    """The rate limiter granted a request its slot: what the limiter did, so that a progress
    display or a metric reads it instead of simulating the limiter.

    Attributes:
        endpoint: the endpoint's path.
        waited: seconds the request waited for its slot (0.0 when one was free).
        limit: the limit it waited on last (the binding one), or None when it did not wait.
    """

    endpoint: str
    waited: float
    limit: RateLimit | None


@attrs.frozen
class RequestSent:
    """A request left, in a rate-limit slot.

    Attributes:
        endpoint: the endpoint's path.
        page_index: the page asked for.
        attempt: 1 for the first try, 2 for the first retry, and so on.
    """

    endpoint: str
    page_index: int
    attempt: int


@attrs.frozen
class ResponseReceived:
    """A request's answer arrived (or it failed without one: ``status`` None).

    Attributes:
        endpoint: the endpoint's path.
        status: the HTTP status, or None when no answer came.
        seconds: from sending to the end of the answer.
    """

    endpoint: str
    status: int | None
    seconds: float


@attrs.frozen
class RetryScheduled:
    """A request failed and will be tried again.

    Attributes:
        endpoint: the endpoint's path.
        attempt: the try that failed.
        delay: seconds of backoff before the next try (0 after a rate-limit answer,
            where the pause is the wait).
        error: why, in words (secrets scrubbed).
        error_type: the failure's class name, such as ``ServerError``.
    """

    endpoint: str
    attempt: int
    delay: float
    error: str
    error_type: str


@attrs.frozen
class RateLimited:
    """The server refused a request for the rate limit; every task of the limiter pauses.

    Attributes:
        endpoint: the endpoint's path.
        limit: the limit the server's message named, or None.
        pause: seconds no request is sent.
    """

    endpoint: str
    limit: RateLimit | None
    pause: float


@attrs.frozen
class QuotaWait:
    """No slot frees before the retry deadline (a spent quota), and the session waits.

    Only with ``Session(wait_for_quota=True)``; otherwise `QuotaExhaustedError` is raised.

    Attributes:
        endpoint: the endpoint's path.
        retry_at: when a slot frees, an aware UTC datetime.
        limit: the limit that is spent, or None.
    """

    endpoint: str
    retry_at: _dt.datetime
    limit: RateLimit | None


@attrs.frozen
class PageFetched:
    """A page was fetched and decoded.

    Attributes:
        endpoint: the endpoint's path.
        id_value: whose rows (the lead or opportunity id), or None for `Session.paginate`.
        page_index: the page's ``PageIndex``.
        rows: rows on the page, as the server sent them.
        record_count: the ``RecordCount`` it reported, or None.
        page_size: the page size asked for; with ``record_count`` it tells how many
            pages the walk will take.
    """

    endpoint: str
    id_value: str | None
    page_index: int
    rows: int
    record_count: int | None
    page_size: int


Event: TypeAlias = (
    SlotGranted
    | RequestSent
    | ResponseReceived
    | RetryScheduled
    | RateLimited
    | QuotaWait
    | PageFetched
)
"""Any of the events a session emits."""
