"""An asyncio client for the LeadSquared CRM API.

Strict rate limiting that still uses every slot, auto-paging of every paged
endpoint, and typed, frozen records that keep every field the API sent::

    import leadsq_async as lsq

    async with lsq.Session(access_key, secret_key, host="api-in21.leadsquared.com") as session:
        async for opportunity in session.opportunities_of_lead(lead_id):
            print(opportunity.opportunity_id, opportunity.status)
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._crawl import LeadResult, OpportunityResult
from ._dates import parse_date
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    LeadSquaredError,
    MalformedResponseError,
    NotFoundError,
    PagingError,
    QuotaExhaustedError,
    RateLimitError,
    RateLimiterUnavailableError,
    RequestTimeoutError,
    ResponseError,
    ServerError,
    TransportError,
    WindowError,
)
from ._event_hub import EventHub
from ._fanout import Crawl
from ._hosts import REGION_HOSTS
from ._limits import Grant, RateLimit, least_time
from ._paging import Page, PageIterator, Paginator
from ._ratelimit import RateLimiter, SlidingWindowLimiter
from ._records import Activity, Opportunity
from ._retry import RetryPolicy
from ._session import Session
from ._structure import structure, unstructure
from ._transport import SessionStats

if _TYPE_CHECKING:
    from ._events import (
        Event,
        PageFetched,
        QuotaWait,
        RateLimited,
        RequestSent,
        ResponseReceived,
        RetryScheduled,
        SlotGranted,
    )
    from ._leads import Lead
    from ._redis import RedisLimiter

__version__ = "0.1.0"

__all__ = [
    "REGION_HOSTS",
    "APIError",
    "Activity",
    "AuthenticationError",
    "BadRequestError",
    "Crawl",
    "Event",
    "EventHub",
    "Grant",
    "Lead",
    "LeadResult",
    "LeadSquaredError",
    "MalformedResponseError",
    "NotFoundError",
    "Opportunity",
    "OpportunityResult",
    "Page",
    "PageFetched",
    "PageIterator",
    "Paginator",
    "PagingError",
    "QuotaExhaustedError",
    "QuotaWait",
    "RateLimit",
    "RateLimitError",
    "RateLimited",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "RedisLimiter",
    "RequestSent",
    "RequestTimeoutError",
    "ResponseError",
    "ResponseReceived",
    "RetryPolicy",
    "RetryScheduled",
    "ServerError",
    "Session",
    "SessionStats",
    "SlidingWindowLimiter",
    "SlotGranted",
    "TransportError",
    "WindowError",
    "least_time",
    "parse_date",
    "structure",
    "unstructure",
]


def __getattr__(name: str) -> _Any:
    # The Redis limiter is imported on first use: redis.asyncio alone costs
    # about as much to import as httpx, and most programs never share a limit.
    if name == "RedisLimiter":
        from ._redis import RedisLimiter

        RedisLimiter.__module__ = __name__
        globals()[name] = RedisLimiter
        return RedisLimiter
    # Lead comes with the account-wide feeds (`Session.leads_modified`), which load on
    # first use too. Its __module__ stays its own: its annotations resolve there.
    if name == "Lead":
        from ._leads import Lead

        globals()[name] = Lead
        return Lead
    # The other names not bound yet are the events (`Event` and its classes): built only
    # while something listens, and their module imported then.
    if name in __all__:
        from . import _events

        value = globals()[name] = getattr(_events, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Names loaded on first use are public before they are loaded.
    return sorted({*globals(), *__all__})


# Tracebacks and reprs of errors name the public path (leadsq_async.APIError), not the
# private module. (Only errors: records' annotations are resolved in their own module.)
for _name in __all__:
    _value = globals().get(_name)
    if isinstance(_value, type) and issubclass(_value, Exception):
        _value.__module__ = __name__
del _name, _value
