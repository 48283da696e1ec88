"""OHLCV bars from a fine path, built block by block.

Each fine step has a time and a value; a bar of interval I holds the
consecutive steps with floor(local time / I) equal, and is stamped with the
start of its interval. open/close are its first and last values, high/low
the extremes, so high >= max(open, close) >= min(open, close) >= low always.
A bar's volume is the sum of its steps' volumes (see ``volume``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .checks import ParameterError, quoted

INTERVALS = {"1s": 1, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


def interval_seconds(name: str) -> int:
    try:
        return INTERVALS[name]
    except KeyError:
        raise ParameterError(
            "bar_interval", f"bar_interval must be one of {', '.join(INTERVALS)}, got {quoted(name)}"
        ) from None


@dataclass(frozen=True)
class Bars:
    """Parallel arrays, one entry per bar, in time order, named as the fields of
    marketdata.v1.Bars (the client's Bars mirrors them; a test holds both to the proto)."""

    start_time: np.ndarray  # each interval's start, in the times' unit (UTC ns when served)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.start_time)

    @classmethod
    def empty(cls) -> Bars:
        e = np.empty(0)
        return cls(e.astype(np.int64), e, e, e, e, e.astype(np.int64))

    @classmethod
    def concatenate(cls, parts: Sequence[Bars]) -> Bars:
        """The bars of ``parts``, one after the other."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def rows(self, rows: slice) -> Bars:
        return Bars(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


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
    local midnight; ``start_time`` stays in the times' (UTC) scale: the interval's
    local start less the shift of the bar's first step.
    """
    return _cut(times, prices, volumes, interval, shift)[0]


def _cut(
    times: np.ndarray, prices: np.ndarray, volumes: np.ndarray, interval: int, shift: np.ndarray | None
) -> tuple[Bars, np.ndarray]:
    """The bars, and each bar's key: its interval's local start divided by the interval."""
    if len(prices) == 0:
        return Bars.empty(), np.empty(0, dtype=np.int64)
    times = np.asarray(times)
    local = times if shift is None else times + shift
    ids = np.floor_divide(local, interval).astype(np.int64)
    cuts = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(prices)])) - 1
    keys = ids[starts]
    bars = Bars(
        start_time=keys * interval - (0 if shift is None else shift[starts]),
        open=prices[starts],
        high=np.maximum.reduceat(prices, starts),
        low=np.minimum.reduceat(prices, starts),
        close=prices[ends],
        volume=np.add.reduceat(volumes, starts),
    )
    return bars, keys


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
            return Bars.empty()
        if self._open is not None:
            if keys[0] == self._open_key:
                o = self._open
                merged = Bars(
                    start_time=o.start_time,
                    open=o.open,
                    high=np.maximum(o.high, bars.high[:1]),
                    low=np.minimum(o.low, bars.low[:1]),
                    close=bars.close[:1],
                    volume=o.volume + bars.volume[:1],
                )
                bars = Bars.concatenate([merged, bars.rows(slice(1, None))])
            else:
                bars = Bars.concatenate([self._open, bars])
                keys = np.concatenate(([self._open_key], keys))
        if self._local_to_utc is not None:
            utc = self._local_to_utc(keys * self.interval)
            bars = Bars(utc, bars.open, bars.high, bars.low, bars.close, bars.volume)
        self._open, self._open_key = bars.rows(slice(-1, None)), int(keys[-1])
        return bars.rows(slice(None, -1))

    def flush(self) -> Bars:
        """The last bar, finished or not (at the end of the path)."""
        last, self._open = self._open, None
        return last if last is not None else Bars.empty()
