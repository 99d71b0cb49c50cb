"""The package's public surface is exactly its sorted __all__."""

from __future__ import annotations

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
