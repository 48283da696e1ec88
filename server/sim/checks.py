"""ParameterError and the checks every model and addition uses."""

from __future__ import annotations

import math


class ParameterError(ValueError):
    """A parameter outside its accepted range; ``field`` names it by its path in the
    request (``merton.jump_stdev``, ``time.calendar.holidays``), as the message does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def under(self, path: str) -> ParameterError:
        """The same error for a field nested at ``path`` of a request, e.g. ``merton.sigma``."""
        return ParameterError(f"{path}.{self.field}", f"{path}.{self}")


def check_range(
    field: str,
    value: float,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    unit: str = "",
) -> None:
    """Raise ParameterError unless ``value`` is finite and within [low, high] (or (low, high])."""
    bracket = "(" if low_open else "["
    accepted = f"{bracket}{low:g}, {high:g}]{(' ' + unit) if unit else ''}"
    if not math.isfinite(value):
        raise ParameterError(field, f"{field} must be a finite number in {accepted}, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        raise ParameterError(field, f"{field} must be in {accepted}, got {value!r}")


# Longest label (a request's symbol, a basket asset's symbol) echoed into replies.
SYMBOL_MAX_BYTES = 128


def check_symbol(symbol: str, field: str = "symbol") -> None:
    """Raise ParameterError unless ``symbol`` is at most SYMBOL_MAX_BYTES of UTF-8."""
    size = len(symbol.encode("utf-8"))
    if size > SYMBOL_MAX_BYTES:
        raise ParameterError(
            field, f"{field} must be at most {SYMBOL_MAX_BYTES} bytes of UTF-8, got {size} bytes"
        )
