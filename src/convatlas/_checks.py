"""Argument checks: one home for the messages every room gives when a value is out of range.

Each check returns the value it accepted (so it can be used inline) and raises ``ValueError``
naming the argument, the value and what is expected::

    self.num_classes = positive_int("num_classes", num_classes)
    rate = fraction("drop_rate", drop_rate)
"""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

__all__ = ["positive_int", "non_negative_int", "positive_number", "non_negative", "fraction", "one_of"]

T = TypeVar("T")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, value: Any, hint: str = "") -> int:
    """``value`` if it is an integer >= 1 (``bool`` is not an integer here)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer{hint}, got {value!r}")
    return value


def non_negative_int(name: str, value: Any, hint: str = "") -> int:
    """``value`` if it is an integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer{hint}, got {value!r}")
    return value


def positive_number(name: str, value: Any, hint: str = "") -> float:
    """``value`` if it is a number > 0."""
    if not _is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number{hint}, got {value!r}")
    return value


def non_negative(name: str, value: Any, hint: str = "") -> float:
    """``value`` if it is a number >= 0."""
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"{name} must not be negative{hint}, got {value!r}")
    return value


def fraction(name: str, value: Any, *, closed: bool = False) -> float:
    """``value`` if it is a number in [0, 1) (``closed``: [0, 1])."""
    if not _is_number(value) or not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise ValueError(f"{name} must be a number in [0, {'1]' if closed else '1)'}, got {value!r}")
    return value


def one_of(name: str, value: T, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value
