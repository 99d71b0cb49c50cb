"""Reading one value of a row as the API sends it: flags as ``"0"``/``"1"``, numbers as
text or JSON numbers, with memos for the texts that repeat (scores, codes, counts). The
records' generated structure hooks inline the common case of each type and call these
for the rest. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from typing import TypeVar

__all__ = ["FLAGS", "float_memo", "int_memo", "read_flag", "read_float", "read_int"]

T = TypeVar("T")

# The generated hooks inline the common case of each type and call these for the rest.
# Number texts are memoised: scores, codes, counts and coordinates repeat. Only exact
# strings are looked up in the memos and stored there: a value of another type that
# compares equal to one (Decimal(5) == 5, UserString("5") == "5") would otherwise read
# as whatever was read before it.

FLAGS: dict[str, bool] = {
    "0": False,
    "1": True,
    "false": False,
    "true": True,
    "False": False,
    "True": True,
}
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_MEMO_SIZE = 4096
int_memo: dict[str, int | None] = {}
float_memo: dict[str, float | None] = {}


def _remember(memo: dict[str, T], text: str, number: T) -> T:
    if len(memo) >= _MEMO_SIZE:  # a crude bound: the values that repeat come back at once
        memo.clear()
    memo[text] = number
    return number


def read_flag(value: object) -> bool | None:
    if type(value) is str:
        return FLAGS.get(value)
    if type(value) in (bool, int, float) and value in (0, 1):
        return bool(value)
    return None


def read_int(value: object) -> int | None:
    # JSON gives str, int, float or bool; anything else holds no number.
    if type(value) is str:
        return _remember(int_memo, value, int(value) if _INTEGER.fullmatch(value) else None)
    if type(value) is float:
        return int(value) if value.is_integer() else None
    if type(value) is int or type(value) is bool:
        return int(value)
    return None


def read_float(value: object) -> float | None:
    if type(value) is str:
        number = _finite(float(value)) if _DECIMAL.fullmatch(value) else None
        return _remember(float_memo, value, number)
    if type(value) is float:
        return _finite(value)
    if type(value) is int or type(value) is bool:
        try:
            return float(value)
        except OverflowError:  # an integer beyond 1e308
            return None
    return None


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None
