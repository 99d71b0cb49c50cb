"""The emulator's run-time settings: one mutable attrs object, validated on every change."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Set
from typing import Literal

import attrs

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


def _positive_seconds(value: float) -> float:
    seconds = _seconds(value)
    if seconds == 0:
        raise ValueError("the rate-limit period must be > 0")
    return seconds


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
        rate_limit_calls: At most this many requests are accepted in any sliding window of
            ``rate_limit_period`` seconds (25). A request is refused when that many accepted
            requests already arrived in (t - period, t].
        rate_limit_period: The window in seconds (5.0).
        rate_limit_status: The HTTP status of a rate-limit answer, 429 or 200 (429). Both carry
            the ``MXAPIRateLimitExceededException`` envelope and no Retry-After header.
        page_size_cap: The largest page size served (1000).
        page_size_cap_mode: ``"clamp"`` serves at most ``page_size_cap`` rows for a larger
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
        index_lag: Seconds before an opportunity added with ``Dataset.add_opportunity``
            shows in GetOpportunitiesOfLead (0.0). GetActivitiesOfOpportunity knows it at once.
    """

    access_key: str = attrs.field(default=DEFAULT_ACCESS_KEY, validator=_non_empty_str)
    secret_key: str = attrs.field(default=DEFAULT_SECRET_KEY, validator=_non_empty_str, repr=False)
    rate_limit_calls: int = attrs.field(default=25, validator=_int_at_least(1))
    rate_limit_period: float = attrs.field(default=5.0, converter=_positive_seconds)
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

    def update_from(self, other: EmulatorConfig) -> None:
        """Copy every field of ``other`` into this object, in place."""
        for field in attrs.fields(EmulatorConfig):
            setattr(self, field.name, getattr(other, field.name))
