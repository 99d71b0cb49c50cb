"""The emulator's run-time settings: one mutable attrs object, validated on every change."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Set
from typing import Literal

import attrs

from leadsq_async import RateLimit

FaultKind = Literal["500", "502", "503", "drop", "truncate", "slow"]
FAULT_KINDS: frozenset[str] = frozenset({"500", "502", "503", "drop", "truncate", "slow"})
"""Every fault the emulator can inject: "500" (a bare error), "502" and "503" (CDN pages),
"drop" (no answer), "truncate" (half a body) and "slow" (a late answer)."""

DEFAULT_ACCESS_KEY = "demo-access-key"
"""The access key an ``EmulatorConfig`` accepts unless told otherwise."""
DEFAULT_SECRET_KEY = "demo-secret-key"
"""The secret key an ``EmulatorConfig`` accepts unless told otherwise: a demo key, public."""


def _seconds(value: float) -> float:
    """Accept an int or float (never a bool) that is finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a finite number of seconds >= 0, got {value!r}")
    return float(value)


#: One limit as ``EmulatorConfig.rate_limits`` takes it: a RateLimit, a (calls, period) pair
#: or the text RateLimit.parse reads.
RateLimitLike = RateLimit | tuple[int, float] | str


def _rate_limit(value: RateLimitLike) -> RateLimit:
    if isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        return RateLimit.parse(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return RateLimit(*value)
    raise TypeError(
        f"a rate limit is a RateLimit, a (calls, period) pair or text such as '25/5', got {value!r}"
    )


def _rate_limits(value: RateLimit | Iterable[RateLimitLike]) -> tuple[RateLimit, ...]:
    """Accept one RateLimit, or a collection of RateLimits, pairs and texts (at least one)."""
    if isinstance(value, RateLimit):
        return (value,)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"rate_limits takes a RateLimit or a sequence of them, got {value!r}")
    limits = tuple(_rate_limit(item) for item in value)
    if not limits:
        raise ValueError("rate_limits needs at least one limit")
    return limits


def _seconds_text(seconds: float) -> str:
    """``5``, ``0.3``, ``86400``: never ``1e+06``, so a client's parser reads it."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.9f}".rstrip("0")


def refusal_message(limit: RateLimit) -> str:
    """The message LeadSquared sends when ``limit`` refuses a call."""
    return (
        f"API calls exceeded the limit of {limit.calls} in {_seconds_text(limit.period)} second(s)"
    )


def _fraction(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a number between 0 and 1, got {value!r}")
    return float(value)


def _fault_kinds(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError("fault_kinds takes a collection of kinds, not a single string")
    kinds = frozenset(value)
    unknown = kinds - FAULT_KINDS
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {sorted(FAULT_KINDS)}")
    return kinds


def _int_at_least(minimum: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int, got {value!r}")
        if value < minimum:
            raise ValueError(f"{attribute.name} must be >= {minimum}, got {value!r}")

    return check


def _non_empty_str(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{attribute.name} must be a non-empty str")


def _optional_host(
    _instance: object, attribute: attrs.Attribute[str | None], value: object
) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{attribute.name} must be None or a host name such as 'api-us11...'")


@attrs.define
class EmulatorConfig:
    """How the emulator behaves; change any field at run time, no restart needed.

    Every assignment is validated (TypeError for a wrong type, ValueError for a value out of
    range). The pytest fixture ``lsq_emulator`` puts every field back to its default before
    each test.

    Attributes:
        access_key: The account's access key (header ``x-LSQ-AccessKey`` or query ``accessKey``).
        secret_key: The account's secret key; never shown in a repr.
        rate_limits: Every limit enforced at once (``(RateLimit(25, 5.0),)``), such as a
            5-second limit and a daily quota, ``[RateLimit(10, 5), RateLimit(10_000, 86_400)]``,
            or one scaled down for a test, ``[(25, 5.0), (200, 20.0)]``. Give RateLimits,
            (calls, period) pairs or texts such as ``"25/5"``; they are stored as a tuple of
            RateLimits. For each limit, a request is refused when ``calls`` accepted requests
            already arrived in (t - period, t]. The refusal names that limit, "API calls
            exceeded the limit of 25 in 5 second(s)"; when several refuse, it names the one
            that frees last (the one a client must wait for). A limit with a period not
            configured before counts the requests accepted from then on.
        rate_limit_calls: The calls of the first limit, ``rate_limits[0].calls`` (25).
            Setting it (or passing it) replaces that limit and keeps the others.
        rate_limit_period: The period of the first limit in seconds (5.0), likewise.
        rate_limit_status: The HTTP status of a rate-limit answer, 429 or 200 (429). Both carry
            the ``MXAPIRateLimitExceededException`` envelope and no Retry-After header.
        page_size_cap: The largest page size served (1000) by every endpoint but
            Leads.RecentlyModified.
        leads_page_size_cap: The largest page size Leads.RecentlyModified serves (5000, the
            documented maximum).
        page_size_cap_mode: ``"clamp"`` serves at most the cap's rows for a larger
            page size (the page offset is computed with the clamped size); ``"refuse"`` answers
            HTTP 500 ``MXInvalidInputException`` naming the maximum ("clamp").
        fault_rate: The share of accepted requests that get a transient fault, 0 to 1 (0.0).
        fault_kinds: The faults drawn from, any of "500", "502", "503", "drop", "truncate",
            "slow" (all of them); any collection of them is stored as a frozenset.
        fault_seed: Seeds the draws, so a run is repeatable (0).
        slow_seconds: How long a "slow" fault delays an otherwise normal answer (3.0).
        latency: Simulated network round trip in seconds (0.0): half is spent before the
            request arrives (and is counted by the rate limit), half after it is answered.
        jitter: Up to this many extra seconds of round trip, drawn per request (0.0).
        wrong_region_host: When set (e.g. "api-us11.leadsquared.com"), every request with
            good keys is answered 401 with a message naming that host (None).
        insert_ahead: After each page that returned rows, add this many new rows to the same
            lead or opportunity, newer than all others, so they come first in the default
            order and push already-served rows onto the next page (0).
        index_lag: Seconds the index-backed reads lag behind the account (0.0): a new
            opportunity shows in GetOpportunitiesOfLead only this long after it is added, and
            the account-wide feeds (Leads.RecentlyModified, RetrieveRecentlyModified,
            RetrieveByActivityEvent, Retrieve/BySearchParameter) serve every record as it was
            this long ago (one added since is absent, one deleted since still served).
            GetActivitiesOfOpportunity and GetOpportunitiesById read the account as it is.
        window_row_limit: A time window holding more rows than this is answered with the bare
            HTTP 500 "There was an error processing the request" by the feeds that take
            Parameter.FromDate/ToDate (None: no limit).
        search_strict: Whether Retrieve/BySearchParameter refuses an AdvancedSearch whose
            conditions do not restate the OpportunityEventCode (ActivityEvent eq the code), with
            the 500 envelope "AdvancedSearch criteria does not match ActivityEvent passed"
            (True). A condition on another event code is refused either way.
        search_id_key: The key of an opportunity's id in the search's rows,
            ``"ProspectActivityId"`` (default) or ``"OpportunityId"``: the documentation does not
            say which.
        search_ignores_sorting: Retrieve/BySearchParameter ignores ``Sorting`` and serves its
            rows oldest change first (False): a misbehaving server, to test the client's guard.
    """

    access_key: str = attrs.field(default=DEFAULT_ACCESS_KEY, validator=_non_empty_str)
    secret_key: str = attrs.field(default=DEFAULT_SECRET_KEY, validator=_non_empty_str, repr=False)
    # Given to __init__ as rate_limit_calls / rate_limit_period, then folded into rate_limits;
    # read and set through the properties of the same names.
    _rate_limit_calls: int | None = attrs.field(default=None, repr=False, eq=False)
    _rate_limit_period: float | None = attrs.field(default=None, repr=False, eq=False)
    rate_limit_status: Literal[429, 200] = attrs.field(
        default=429, validator=attrs.validators.in_((429, 200))
    )
    page_size_cap: int = attrs.field(default=1000, validator=_int_at_least(1))
    page_size_cap_mode: Literal["clamp", "refuse"] = attrs.field(
        default="clamp", validator=attrs.validators.in_(("clamp", "refuse"))
    )
    fault_rate: float = attrs.field(default=0.0, converter=_fraction)
    fault_kinds: Set[str] = attrs.field(default=FAULT_KINDS, converter=_fault_kinds)
    fault_seed: int = attrs.field(default=0, validator=_int_at_least(-(2**63)))
    slow_seconds: float = attrs.field(default=3.0, converter=_seconds)
    latency: float = attrs.field(default=0.0, converter=_seconds)
    jitter: float = attrs.field(default=0.0, converter=_seconds)
    wrong_region_host: str | None = attrs.field(default=None, validator=_optional_host)
    insert_ahead: int = attrs.field(default=0, validator=_int_at_least(0))
    index_lag: float = attrs.field(default=0.0, converter=_seconds)
    leads_page_size_cap: int = attrs.field(default=5000, validator=_int_at_least(1))
    window_row_limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_int_at_least(0)),
    )
    search_strict: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    search_id_key: Literal["ProspectActivityId", "OpportunityId"] = attrs.field(
        default="ProspectActivityId",
        validator=attrs.validators.in_(("ProspectActivityId", "OpportunityId")),
    )
    search_ignores_sorting: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    rate_limits: tuple[RateLimit, ...] = attrs.field(
        default=(RateLimit(25, 5.0),), converter=_rate_limits
    )

    def __attrs_post_init__(self) -> None:
        calls, period = self._rate_limit_calls, self._rate_limit_period
        self._rate_limit_calls = self._rate_limit_period = None
        first = self.rate_limits[0]
        if calls is not None or period is not None:
            self._replace_first(
                first.calls if calls is None else calls,
                first.period if period is None else period,
            )

    @property
    def rate_limit_calls(self) -> int:
        """The calls of the first limit; setting it replaces that limit, keeping its period."""
        return self.rate_limits[0].calls

    @rate_limit_calls.setter
    def rate_limit_calls(self, calls: int) -> None:
        self._replace_first(calls, self.rate_limits[0].period)

    @property
    def rate_limit_period(self) -> float:
        """The period of the first limit; setting it replaces that limit, keeping its calls."""
        return self.rate_limits[0].period

    @rate_limit_period.setter
    def rate_limit_period(self, period: float) -> None:
        self._replace_first(self.rate_limits[0].calls, period)

    def _replace_first(self, calls: int, period: float) -> None:
        self.rate_limits = (RateLimit(calls, period), *self.rate_limits[1:])

    def update_from(self, other: EmulatorConfig) -> None:
        """Copy every field of ``other`` into this object, in place."""
        for field in attrs.fields(EmulatorConfig):
            setattr(self, field.name, getattr(other, field.name))
