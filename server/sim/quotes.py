"""Bid and ask around a path's values.

Half a spread each side of the mid, the spread either fixed in basis points of
the mid or a multiple of one period's volatility; bid rounded down and ask up
to the tick grid, never closer than one tick (or, past 2^53 ticks, than the
next double); a price's bid never below one tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import ParameterError, check_range
from .ticks import TickGrid

SPREAD_BPS_MAX = 10_000.0
SPREAD_VOLATILITY_MAX = 1_000.0
# Quotes of an unrounded path sit on a cent grid.
DEFAULT_QUOTE_TICK = 0.01


@dataclass(frozen=True)
class QuoteSpec:
    """The spread model: exactly one of ``spread_bps`` and ``spread_volatility``
    (errors name them by their request path, ``quotes.spread_bps``)."""

    spread_bps: float | None = None
    spread_volatility: float | None = None

    def __post_init__(self) -> None:
        if (self.spread_bps is None) == (self.spread_volatility is None):
            raise ParameterError("quotes", "quotes: set spread_bps or spread_volatility")
        if self.spread_bps is not None:
            check_range("quotes.spread_bps", self.spread_bps, 0.0, SPREAD_BPS_MAX, low_open=True)
        else:
            high = SPREAD_VOLATILITY_MAX
            check_range("quotes.spread_volatility", self.spread_volatility, 0.0, high, low_open=True)


def quotes(
    mid: np.ndarray,
    tick_size: float,
    *,
    spread_bps: float | None = None,
    spread_vol: float | None = None,
    step_sd: float = 0.0,
    absolute: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask on the tick grid around ``mid``: a fixed spread in basis points,
    or ``spread_vol`` times the step's volatility ``step_sd``, a fraction of the
    mid, or with ``absolute`` in price units (models whose values may be <= 0)."""
    bid, ask = quote_ticks(
        mid, tick_size, spread_bps=spread_bps, spread_vol=spread_vol, step_sd=step_sd, absolute=absolute
    )
    grid = TickGrid(tick_size)
    bid, ask = grid.prices(bid), grid.prices(ask)
    # Past 2^53 ticks (9e13 with a cent tick) float64 cannot step by one tick: the ask then
    # takes the next double above the bid, so the two never meet.
    return bid, np.where(ask > bid, ask, np.nextafter(bid, np.inf))


def quote_ticks(
    mid: np.ndarray,
    tick_size: float,
    *,
    spread_bps: float | None = None,
    spread_vol: float | None = None,
    step_sd: float = 0.0,
    absolute: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``quotes`` as whole numbers of ticks (float64): the bid rounded down, the ask up."""
    if (spread_bps is None) == (spread_vol is None):
        raise ParameterError("spread", "give exactly one of spread_bps and spread_vol")
    if spread_bps is not None:
        half = np.abs(mid) * (spread_bps / 1e4 / 2)
    elif absolute:
        half = np.full(len(mid), spread_vol * step_sd / 2)
    else:
        half = np.abs(mid) * (spread_vol * step_sd / 2)
    bid = np.floor((mid - half) / tick_size + 1e-9)
    if not absolute:  # a price's bid is a price too: never below one tick
        bid = np.maximum(bid, 1.0)
    return bid, np.maximum(np.ceil((mid + half) / tick_size - 1e-9), bid + 1)
