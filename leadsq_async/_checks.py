"""Argument checks shared by every layer: bad input fails before anything is sent.

Each check returns the value it accepted (converted where it says so) or
raises `TypeError` for the wrong type and `ValueError` for a value out of
range, with a message that names the argument. ``bool`` is refused wherever a
number is expected: ``page_size=True`` is always a mistake.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeVar

__all__ = ["check_instance", "check_int", "check_seconds", "check_text"]

T = TypeVar("T")


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return int(value)


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite real number of seconds (not a bool), more than 0 (or at least 0), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "more than 0"
        raise ValueError(f"{name} must be {bound} seconds, not {value!r}")
    return seconds


def check_text(name: str, value: object) -> str:
    """A str with something other than white space in it."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def check_instance(name: str, value: object, kind: type[T]) -> T:
    """An instance of ``kind``."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def check_max_wait(value: object) -> float:
    """A limiter's ``max_wait``: None or infinity for no bound, else seconds >= 0."""
    if value is None or (isinstance(value, float) and value == math.inf):
        return math.inf
    return check_seconds("max_wait", value, allow_zero=True)
