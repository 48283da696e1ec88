"""OHLCV bars and bid/ask quotes from a fine price path (pure numpy).

Bars: each fine step has a time and a price; a bar of interval I holds the
consecutive steps with floor(local time / I) equal, and is stamped with the
start of its interval. open/close are its first and last
prices, high/low the extremes, so high >= max(open, close) >= min(open,
close) >= low always. Volume model: each fine step trades a Poisson number
of units with mean ``volume_rate * step_seconds * (1 + |z|)``, where z is
the step's log-return in standard deviations (at most MOVE_CAP), so big
moves trade more; a bar's volume is the sum over its steps.

Quotes: bid and ask around the mid, half a spread each side, the spread
either fixed in basis points of the mid or a multiple of the step's
volatility; bid rounded down and ask up to the tick grid, never closer than
one tick.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from server.generator import ParameterError

# Moves count for volume up to this many standard deviations (a bound keeps volumes finite).
MOVE_CAP = 50.0
INTERVALS = {"1s": 1, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


def interval_seconds(name: str) -> int:
    try:
        return INTERVALS[name]
    except KeyError:
        raise ParameterError(
            "bar_interval", f"bar_interval must be one of {', '.join(INTERVALS)}, got {name!r}"
        ) from None


@dataclass(frozen=True)
class Bars:
    """Parallel arrays, one entry per bar, in time order."""

    start: np.ndarray  # each interval's start, in the times' unit (UTC ns when served)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def _empty() -> Bars:
    e = np.empty(0)
    return Bars(e.astype(np.int64), e, e, e, e, e.astype(np.int64))


def ohlcv(
    times: np.ndarray,
    prices: np.ndarray,
    volumes: np.ndarray,
    interval: int,
    shift: np.ndarray | None = None,
) -> Bars:
    """Bars of ``interval`` from steps at ``times`` (ascending, in the interval's unit).

    With ``shift`` (each step's local time minus UTC), intervals are aligned
    to the local clock, so 1h bars start on the local hour and 1d bars at
    local midnight; ``start`` stays in the times' (UTC) scale: the interval's
    local start less the shift of the bar's first step.
    """
    return _cut(times, prices, volumes, interval, shift)[0]


def _cut(
    times: np.ndarray, prices: np.ndarray, volumes: np.ndarray, interval: int, shift: np.ndarray | None
) -> tuple[Bars, np.ndarray]:
    """The bars, and each bar's key: its interval's local start divided by the interval."""
    if len(prices) == 0:
        return _empty(), np.empty(0, dtype=np.int64)
    times = np.asarray(times)
    local = times if shift is None else times + shift
    ids = np.floor_divide(local, interval).astype(np.int64)
    cuts = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(prices)])) - 1
    keys = ids[starts]
    bars = Bars(
        start=keys * interval - (0 if shift is None else shift[starts]),
        open=prices[starts],
        high=np.maximum.reduceat(prices, starts),
        low=np.minimum.reduceat(prices, starts),
        close=prices[ends],
        volume=np.add.reduceat(volumes, starts),
    )
    return bars, keys


def concat_bars(*parts: Bars) -> Bars:
    """The bars of ``parts``, one after the other."""
    return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in Bars.__dataclass_fields__))


def _rows(bars: Bars, rows: slice) -> Bars:
    return Bars(*(getattr(bars, f)[rows] for f in Bars.__dataclass_fields__))


class BarBuilder:
    """Builds bars from a path arriving in blocks; a bar is handed out once complete.

    Bars out of any split of the path equal the bars of the whole path: a
    block's first bar continues the unfinished one when both fall in the same
    local interval. ``local_to_utc``, when given, stamps each bar with the UTC
    instant of its interval's local start (for 1d bars, whose local midnight
    may have another UTC offset than their first step), instead of using the
    first step's offset.
    """

    def __init__(self, interval: int, local_to_utc: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.interval = interval
        self._local_to_utc = local_to_utc
        self._open: Bars | None = None  # the last, maybe unfinished, bar
        self._open_key: int | None = None

    def add(
        self, times: np.ndarray, prices: np.ndarray, volumes: np.ndarray, shift: np.ndarray | None = None
    ) -> Bars:
        bars, keys = _cut(times, prices, volumes, self.interval, shift)
        if not len(bars):
            return _empty()
        if self._open is not None:
            if keys[0] == self._open_key:
                o = self._open
                merged = Bars(
                    start=o.start,
                    open=o.open,
                    high=np.maximum(o.high, bars.high[:1]),
                    low=np.minimum(o.low, bars.low[:1]),
                    close=bars.close[:1],
                    volume=o.volume + bars.volume[:1],
                )
                bars = concat_bars(merged, _rows(bars, slice(1, None)))
            else:
                bars = concat_bars(self._open, bars)
                keys = np.concatenate(([self._open_key], keys))
        if self._local_to_utc is not None:
            utc = self._local_to_utc(keys * self.interval)
            bars = Bars(utc, bars.open, bars.high, bars.low, bars.close, bars.volume)
        self._open, self._open_key = _rows(bars, slice(-1, None)), int(keys[-1])
        return _rows(bars, slice(None, -1))

    def flush(self) -> Bars:
        """The last bar, finished or not (at the end of the path)."""
        last, self._open = self._open, None
        return last if last is not None else _empty()


def step_volumes(
    log_returns: np.ndarray, step_sd: float, step_seconds: float, volume_rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Units traded in each fine step (see the module docstring)."""
    if step_sd > 0:
        # A move beyond MOVE_CAP sds (or not a number, after a price reached 0) counts as MOVE_CAP.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = np.fmin(np.abs(log_returns) / step_sd, MOVE_CAP)
    else:
        z = np.zeros(len(log_returns))
    return rng.poisson(volume_rate * step_seconds * (1.0 + z))


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
    if (spread_bps is None) == (spread_vol is None):
        raise ParameterError("spread", "give exactly one of spread_bps and spread_vol")
    if spread_bps is not None:
        half = np.abs(mid) * (spread_bps / 1e4 / 2)
    elif absolute:
        half = np.full(len(mid), spread_vol * step_sd / 2)
    else:
        half = np.abs(mid) * (spread_vol * step_sd / 2)
    bid = np.floor((mid - half) / tick_size + 1e-9)
    ask = np.maximum(np.ceil((mid + half) / tick_size - 1e-9), bid + 1)
    grid = TickGrid(tick_size)
    return grid.prices(bid), grid.prices(ask)


@functools.lru_cache(maxsize=1024)
def _decimal_grid(tick_size: float) -> tuple[float, float]:
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
            self._units, self._scale = _decimal_grid(float(tick_size))
        else:
            self._units, self._scale = np.array([_decimal_grid(float(t)) for t in tick_size]).T
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
