"""ParameterError and the checks every model and addition uses."""

from __future__ import annotations

import math
from collections.abc import Iterable

# Messages quote at most this many characters of any input, and list at most this many items.
QUOTE_CHARS = 100
LIST_ITEMS = 10


def quoted(value: object) -> str:
    """``repr(value)``, cut to about QUOTE_CHARS characters: no message echoes an input whole."""
    text = repr(value)
    if len(text) <= QUOTE_CHARS:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters shown whole"
    return f"{text[: QUOTE_CHARS - 3]}... ({size})"


def listed(items: Iterable[object]) -> str:
    """Items joined by commas, at most LIST_ITEMS of them, then "... and N more". Plain words
    appear as they are; anything else (empty, long, with commas or control characters) quoted."""
    items = list(items)
    shown = [_word(item) for item in items[:LIST_ITEMS]]
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" ... and {more} more" if more else "")


def _word(item: object) -> str:
    text = str(item)
    plain = text and text.isprintable() and "," not in text and len(text) <= QUOTE_CHARS
    return text if plain else quoted(text)


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
        raise ParameterError(field, f"{field} must be a finite number in {accepted}, got {quoted(value)}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        raise ParameterError(field, f"{field} must be in {accepted}, got {quoted(value)}")


# Longest label (a request's symbol, a basket asset's symbol) echoed into replies.
SYMBOL_MAX_BYTES = 128


def check_symbol(symbol: str, field: str = "symbol") -> None:
    """Raise ParameterError unless ``symbol`` is at most SYMBOL_MAX_BYTES of UTF-8."""
    size = len(symbol.encode("utf-8"))
    if size > SYMBOL_MAX_BYTES:
        raise ParameterError(
            field, f"{field} must be at most {SYMBOL_MAX_BYTES} bytes of UTF-8, got {size} bytes"
        )
