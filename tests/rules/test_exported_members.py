"""The package's public surface is exactly its sorted __all__."""

from __future__ import annotations

import datetime
import pickle

import leadsq_async as lsq


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then functions, as ruff's RUF022 orders __all__.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_exported() -> None:
    """Every name in __all__ exists, and __all__ is sorted: constants, classes, functions."""
    assert sorted(lsq.__all__, key=_isort_key) == lsq.__all__
    for name in lsq.__all__:
        assert hasattr(lsq, name), name


def test_every_public_attribute_is_in_all() -> None:
    """No public name is exported without being listed in __all__."""
    public = {
        name
        for name in dir(lsq)
        if not name.startswith("_") and getattr(lsq, name).__class__.__name__ != "module"
    }
    assert public == set(lsq.__all__)


def test_public_names_have_docstrings() -> None:
    """Each exported class and function is documented."""
    for name in lsq.__all__:
        value = getattr(lsq, name)
        if callable(value):
            assert value.__doc__, name


def public_exceptions() -> list[type[lsq.LeadSquaredError]]:
    """Every exception class the package exports (each one a LeadSquaredError)."""
    kinds: list[type[lsq.LeadSquaredError]] = []
    for name in lsq.__all__:
        value = getattr(lsq, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, lsq.LeadSquaredError), name
            kinds.append(value)
    return kinds


def example_of(kind: type[lsq.LeadSquaredError]) -> lsq.LeadSquaredError:
    """An instance of ``kind`` with every attribute its constructor sets given a value."""
    when = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.timezone.utc)
    limit = lsq.RateLimit(10_000, 86_400)
    special: dict[type[lsq.LeadSquaredError], lsq.LeadSquaredError] = {
        lsq.QuotaExhaustedError: lsq.QuotaExhaustedError(
            "spent", retry_at=when, limit=limit, endpoint="E.svc/X"
        ),
        lsq.RateLimiterUnavailableError: lsq.RateLimiterUnavailableError(
            "down", address="127.0.0.1:6379/0"
        ),
        lsq.RateLimitError: lsq.RateLimitError("refused", limit=limit, status=429, body="b"),
        lsq.WindowError: lsq.WindowError("too big", endpoint="E.svc/X", since=when, until=when),
        lsq.MalformedResponseError: lsq.MalformedResponseError("cut", transient=True, status=200),
        lsq.AuthenticationError: lsq.AuthenticationError(
            "bad keys", status=401, exception_message="use api-us11.leadsquared.com"
        ),
    }
    if kind in special:
        return special[kind]
    if issubclass(kind, lsq.ResponseError):
        return kind("no", endpoint="E.svc/X", status=500, exception_type="T", body="body")
    return kind("no", endpoint="E.svc/X", status=None, account_wide=True)


def test_every_public_exception_round_trips_through_pickle() -> None:
    """A ProcessPoolExecutor can carry every error back: keyword-only arguments included."""
    kinds = public_exceptions()
    assert lsq.QuotaExhaustedError in kinds
    assert len(kinds) >= 14
    for kind in kinds:
        error = example_of(kind)
        error.asked = "leadId=lead-1"
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is kind
        assert vars(copy) == vars(error), kind.__name__
        assert (str(copy), repr(copy), copy.args) == (str(error), repr(error), error.args)
        assert (copy.transient, copy.account_wide) == (error.transient, error.account_wide)
