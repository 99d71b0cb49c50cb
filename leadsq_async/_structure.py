"""Rows to records and back: `structure`, `structure_rows` and `unstructure`, through the
library's own cattrs converter (built on first use, never the global one), whose hooks
the record classes generate.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeVar

from ._records import Activity, Opportunity, is_record_class, make_structure_hook, row_of

if TYPE_CHECKING:
    import cattrs

    from ._leads import Lead

__all__ = ["structure", "structure_rows", "unstructure"]

T = TypeVar("T")


@functools.cache
def _converter() -> cattrs.Converter:
    """The library's converter, built on first use: importing cattrs and generating the
    hooks is a good part of what importing the package would otherwise cost."""
    import cattrs

    converter = cattrs.Converter()
    converter.register_structure_hook_factory(is_record_class, make_structure_hook)
    converter.register_unstructure_hook_func(is_record_class, row_of)
    return converter


def _check_record_class(cls: object) -> None:
    if not is_record_class(cls):
        raise TypeError(f"{cls!r} is not a record class (Opportunity, Activity or Lead)")


def structure(row: Mapping[str, Any], cls: type[T]) -> T:
    """Build a record of class ``cls`` from one row, as the API sends it.

    The record keeps a copy of the row (a shallow one: rows are flat JSON), so
    changing ``row`` afterwards does not change the record. Values the typed
    view cannot read become ``None`` there and never raise.

    Raises:
        TypeError: ``row`` is not a mapping, or ``cls`` is not `Opportunity`,
            `Activity` or `Lead`.
    """
    _check_record_class(cls)
    return _converter().structure(row, cls)


def structure_rows(rows: Iterable[Mapping[str, Any]], cls: type[T]) -> list[T]:
    """Build a record of class ``cls`` from each row of a page, in order.

    The same as ``[structure(row, cls) for row in rows]``, faster: the
    paginator's path for every page.

    Raises:
        TypeError: a row is not a mapping, or ``cls`` is not `Opportunity`,
            `Activity` or `Lead`.
    """
    _check_record_class(cls)
    return list(map(_converter().get_structure_hook(cls), rows, repeat(cls)))


def unstructure(record: Opportunity | Activity | Lead) -> dict[str, Any]:
    """The row a record was built from: exactly the dict the API sent.

    Same keys, same order, same values (including those the typed view could
    not read). Returns a new dict on every call; changing it does not change
    the record.

    Raises:
        TypeError: ``record`` is not an `Opportunity`, `Activity` or `Lead`.
    """
    _check_record_class(type(record))
    result: dict[str, Any] = _converter().unstructure(record)
    return result
