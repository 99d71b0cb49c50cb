"""The source's names, defaults and configuration spec, as dlt reads them from
``.dlt/secrets.toml``, ``.dlt/config.toml`` or the environment (``[sources.leadsquared]``)."""

# No ``from __future__ import annotations``: dlt evaluates the configuration spec's
# annotations itself, and dlt 1.5 (for one) in its own namespace, not this module's.
from collections.abc import Callable, Sequence
from typing import Optional

from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

from leadsq_async import RateLimit, RateLimiter
from leadsq_async._limits import parse_rate_limits

__all__ = [
    "CHECKPOINT_DIRECTORY",
    "CRAWL_ID_FILE",
    "LEAD_RESULTS",
    "RESUMED_BATCH",
    "SOURCE_NAME",
    "LeadSquaredConfiguration",
    "checked_rate_limit",
]

SOURCE_NAME = "leadsquared"
#: The hidden resource that runs the crawl; its dlt state holds the failed leads.
LEAD_RESULTS = "lead_results"
#: Where, in the pipeline's working directory, an unfinished crawl keeps its journal.
CHECKPOINT_DIRECTORY = "leadsquared-crawl"
#: The file, in that directory, naming the crawl the journal belongs to.
CRAWL_ID_FILE = "crawl-id.json"
#: Rows read back from a journal are handed to dlt this many at a time.
RESUMED_BATCH = 1000


@configspec
class LeadSquaredConfiguration(BaseConfiguration):
    """What `leadsquared` reads from dlt's configuration when it is not passed.

    In ``.dlt/secrets.toml`` (``[sources.leadsquared]``), ``.dlt/config.toml`` or
    environment variables such as ``SOURCES__LEADSQUARED__SECRET_KEY``.
    """

    # None: required, dlt's way (it names where it looked when a key is missing).
    access_key: TSecretStrValue = None  # type: ignore[assignment]
    secret_key: TSecretStrValue = None  # type: ignore[assignment]
    host: str = "api.leadsquared.com"
    rate_limit: str = "25/5"
    with_activities: bool = True
    opportunity_type: Optional[str] = None  # noqa: UP045 - the form every dlt release reads
    concurrency: Optional[int] = None  # noqa: UP045
    timeout: float = 30.0
    max_attempts: int = 5


def checked_rate_limit(rate_limit: object) -> tuple[RateLimit, ...] | Callable[[], RateLimiter]:
    """The ``rate_limit`` setting of a source: limits read by the package's one parser, or a
    function that makes a limiter (in dlt's own event loop)."""
    if isinstance(rate_limit, (str, RateLimit, Sequence)):
        # Several limits as dlt's configuration can hold them: "10/5, 10000/1d".
        return parse_rate_limits(rate_limit)
    if isinstance(rate_limit, RateLimiter):
        raise TypeError(
            "rate_limit takes a function that makes the limiter, such as "
            "lambda: lsq.RedisLimiter(url), not the limiter itself: the crawl runs in "
            "dlt's own event loop, and makes and closes the limiter there"
        )
    if callable(rate_limit):
        return rate_limit
    raise TypeError(
        "rate_limit must be 'CALLS/SECONDS', a RateLimit, several, or a function that makes "
        f"a limiter, not {type(rate_limit).__name__}"
    )
