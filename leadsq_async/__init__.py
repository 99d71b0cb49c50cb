"""An asyncio client for the LeadSquared CRM API.

Strict rate limiting that still uses every slot, auto-paging of every paged
endpoint, and typed, frozen records that keep every field the API sent::

    import leadsq_async as lsq

    async with lsq.Session(access_key, secret_key, host="api-in21.leadsquared.com") as session:
        async for opportunity in session.opportunities_of_lead(lead_id):
            print(opportunity.opportunity_id, opportunity.status)
"""

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
    RateLimiterUnavailable,
    RequestTimeout,
    ResponseError,
    ServerError,
    TransportError,
)
from ._paging import Page, Paginator
from ._ratelimit import RateLimit, RateLimiter, SlidingWindowLimiter
from ._records import Activity, Opportunity, structure, unstructure
from ._redis import RedisRateLimit
from ._retry import RetryPolicy
from ._session import Session, SessionStats
from ._wire import REGION_HOSTS

__version__ = "0.1.0"

__all__ = [
    "REGION_HOSTS",
    "APIError",
    "Activity",
    "AuthenticationError",
    "BadRequestError",
    "LeadResult",
    "LeadSquaredError",
    "MalformedResponseError",
    "NotFoundError",
    "Opportunity",
    "OpportunityResult",
    "Page",
    "Paginator",
    "PagingError",
    "QuotaExhaustedError",
    "RateLimit",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedisRateLimit",
    "RequestTimeout",
    "ResponseError",
    "RetryPolicy",
    "ServerError",
    "Session",
    "SessionStats",
    "SlidingWindowLimiter",
    "TransportError",
    "parse_date",
    "structure",
    "unstructure",
]
