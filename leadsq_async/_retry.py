"""Which failures are tried again, and how long to wait before each try.

Transient failures (a bare 500, a CDN error page, a dropped or truncated
answer, a timeout) are retried with exponential backoff and full jitter: the
n-th retry waits a uniformly random time in ``[0, min(max_backoff,
backoff * 2**(n-1))]``, which spreads many clients' retries apart instead of
letting them collide again. Each retry takes a fresh rate-limit slot.

A rate-limit answer is retried too, but without backoff: the session pauses
its limiter for a whole period instead, which is the wait the server asks for.
Validation and business errors (HTTP 500 with the error envelope), bad keys
and malformed pages are never retried: trying again only spends the budget.

(A general retry library such as stamina or tenacity was weighed: the loop
must pause the shared limiter on rate-limit answers and take a new slot per
try, which leaves them only the backoff formula below to do.)
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from ._checks import check_int, check_seconds
from ._errors import LeadSquaredError

__all__ = ["RetryPolicy"]


def _positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(attribute.name, value)


def _attempt_count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_int(attribute.name, value, minimum=1)


@attrs.frozen
class RetryPolicy:
    """How a session retries transient failures.

    Attributes:
        attempts: the most tries of one request, the first included (1 turns
            retries off).
        deadline: the total seconds one request may take from its first try,
            waits for the rate limit and retries included: no retry starts
            after it, and a rate-limit slot that frees only later (a spent
            quota) raises `QuotaExhaustedError` at once unless the session
            waits for quotas. (Not ``Session(timeout=)``, which bounds each try.)
        backoff: the ceiling of the first retry's random wait, in seconds.
        max_backoff: the largest ceiling any retry's wait may have.

    Raises:
        TypeError, ValueError: for a value of the wrong type, or not positive.
    """

    attempts: int = attrs.field(default=5, validator=_attempt_count)
    deadline: float = attrs.field(default=120.0, validator=_positive_seconds)
    backoff: float = attrs.field(default=0.5, validator=_positive_seconds)
    max_backoff: float = attrs.field(default=30.0, validator=_positive_seconds)

    def should_retry(self, error: LeadSquaredError, attempt: int, elapsed: float) -> bool:
        """Whether to try again after ``error`` ended try number ``attempt``."""
        return error.transient and attempt < self.attempts and elapsed < self.deadline

    def delay(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """The wait before the retry that follows try number ``attempt`` (full jitter)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return uniform() * ceiling
