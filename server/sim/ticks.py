"""The tick grid: values rounded to multiples of a tick, written as exact decimals."""

from __future__ import annotations

import functools
import math
from decimal import Decimal

import numpy as np

from .checks import ParameterError, quoted

TICK_SIZE_MIN, TICK_SIZE_MAX = 1e-9, 1e6


def check_tick_size(tick: float, field: str = "tick_size") -> None:
    """A path's tick: 0 (no rounding) or within [TICK_SIZE_MIN, TICK_SIZE_MAX]."""
    if tick != 0.0 and not (math.isfinite(tick) and TICK_SIZE_MIN <= tick <= TICK_SIZE_MAX):
        raise ParameterError(
            field,
            f"{field} must be 0 (no rounding) or in [{TICK_SIZE_MIN:g}, {TICK_SIZE_MAX:g}], "
            f"got {quoted(tick)}",
        )


@functools.lru_cache(maxsize=1024)
def decimal_grid(tick_size: float) -> tuple[float, float]:
    """The tick as an exact decimal: (units, 10^decimals), e.g. 0.05 -> (5, 100)."""
    decimals = max(0, -Decimal(repr(tick_size)).as_tuple().exponent)
    scale = 10.0**decimals
    return float(round(tick_size * scale)), scale


class TickGrid:
    """A price grid (one tick, or one per column) whose prices are written exactly:
    250.1 reads 250.1, not 250.10000000000002.

    Each tick is an exact decimal (units / 10^decimals), worked out once here,
    so each price is one integer divided once by a power of ten: the closest
    double to the decimal. Zero comes out as 0.0, never -0.0. Where
    ``at_least_one_tick`` holds (everywhere, or per column), rounding never
    goes below one tick.
    """

    def __init__(self, tick_size: float | np.ndarray, at_least_one_tick: bool | np.ndarray = False) -> None:
        self.tick_size = tick_size
        if np.ndim(tick_size) == 0:
            self._units, self._scale = decimal_grid(float(tick_size))
        else:
            self._units, self._scale = np.array([decimal_grid(float(t)) for t in tick_size]).T
        self._floor = at_least_one_tick

    def prices(self, ticks: np.ndarray) -> np.ndarray:
        """``ticks`` whole ticks as prices."""
        return ticks * self._units / self._scale + 0.0

    def round(self, values: np.ndarray) -> np.ndarray:
        """``values`` rounded to the nearest point of the grid."""
        ticks = np.round(values / self.tick_size)
        if np.ndim(self._floor):
            ticks = np.where(self._floor, np.maximum(ticks, 1.0), ticks)
        elif self._floor:
            ticks = np.maximum(ticks, 1.0)
        return self.prices(ticks)
