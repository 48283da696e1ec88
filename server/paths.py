"""A requested path together with what the request adds to it.

The stepper makes the values; this module stamps them with times, rounds
them to a tick grid, quotes a bid and an ask around them, or folds them
into OHLCV bars. Pure numpy, no gRPC: the servicer asks for the next block
and encodes what comes back. Every addition carries its state from block to
block (the time axis, the previous value, the unfinished bar, the volume
stream), so the blocks of a path concatenate to the same result whatever
the chunk size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from server import models
from server.bars import BarBuilder, Bars, TickGrid, concat_bars, quotes, step_volumes
from server.generator import CorrelatedGbmParams, GbmParams, make_rng
from server.requests import DEFAULT_QUOTE_TICK, GbmPlan
from server.trading_calendar import NS

# Volumes draw from their own child stream of the seed, so asking for bars
# never changes the prices (Merton's children use keys 0 to 2).
VOLUME_STREAM = 1000


def step_scale(params: object) -> float:
    """A typical move over one period: the log-return's standard deviation for
    price models, the value's (in price units) for arithmetic and OU."""
    years = params.delta / params.trading_days_per_year
    if isinstance(params, GbmParams):
        return params.log_volatility
    if isinstance(params, models.HestonParams):
        return math.sqrt(params.theta * years)
    return params.sigma * math.sqrt(years)


@dataclass(frozen=True)
class Block:
    """One piece of a reply: ``count`` periods from ``offset`` on."""

    offset: int
    count: int
    prices: np.ndarray  # n values per period with several instruments; empty when bars are sent
    timestamps: np.ndarray | None = None
    bid: np.ndarray | None = None
    ask: np.ndarray | None = None
    bars: Bars | None = None


class PathBlocks:
    """The blocks of one request's reply, in order."""

    def __init__(self, plan: GbmPlan) -> None:
        self._plan = plan
        self._extras = extras = plan.extras
        self._stepper = plan.stepper()
        if isinstance(plan.params, CorrelatedGbmParams):
            self._absolute = False
            self._scale = 0.0  # only bars and quotes use it, and they are single-instrument
        else:
            # Values of arithmetic and OU may be zero or negative: moves and spreads in price units.
            self._absolute = not models.model_of(plan.params).positive
            self._scale = step_scale(plan.params) if extras.quotes or extras.bar_interval_ns else 0.0
        # Prices never round below one tick; arithmetic and OU values may.
        self._grid = TickGrid(extras.tick_size, not self._absolute) if extras.tick_size else None
        self._bars = None
        if extras.bar_interval_ns is not None:
            # A day's local midnight may have another UTC offset than its first value:
            # 1d bars are stamped by the zone itself.
            axis = extras.time
            daily = axis.calendar is not None and extras.bar_interval_ns >= 86_400 * NS
            self._bars = BarBuilder(extras.bar_interval_ns, axis.utc_of_local if daily else None)
            self._volume_rng = make_rng(plan.seed, stream=VOLUME_STREAM)
            self._previous: float | None = None

    @property
    def position(self) -> int:
        return self._stepper.position

    def next(self, n: int) -> Block:
        """The next ``n`` periods (fewer at the end of the path)."""
        extras = self._extras
        offset = self._stepper.position
        raw = self._stepper.next_block(min(n, self._plan.periods - offset))
        count = len(raw)
        prices = raw if self._grid is None else self._grid.round(raw)
        shifts = None
        if self._bars is not None:
            stamps, shifts = extras.time.stamps_and_shifts(offset, count)
        else:
            stamps = extras.time.stamps(offset, count) if extras.time is not None else None
        bid = ask = None
        if extras.quotes:
            bid, ask = quotes(
                raw,
                extras.tick_size or DEFAULT_QUOTE_TICK,
                spread_bps=extras.spread_bps,
                spread_vol=extras.spread_volatility,
                step_sd=self._scale,
                absolute=self._absolute,
            )
        if self._bars is None:
            return Block(offset, count, prices.reshape(-1), stamps, bid, ask)
        bars = self._bars.add(stamps, prices, self._volumes(raw), shifts)
        if offset + count == self._plan.periods:
            last = self._bars.flush()
            bars = concat_bars(bars, last)
        return Block(offset, count, prices[:0], bars=bars)

    def whole(self, block_size: int) -> Block:
        """The whole reply as one block. Bars are built ``block_size`` values at a time,
        so the fine path never sits whole in memory; anything else comes in one block."""
        if self._bars is None:
            return self.next(self._plan.periods)
        bars = [self.next(block_size).bars for _ in range(-(-self._plan.periods // block_size))]
        return Block(0, self._plan.periods, np.empty(0), bars=concat_bars(*bars))

    def _volumes(self, raw: np.ndarray) -> np.ndarray:
        """Units traded in each period: bigger moves trade more (see server.bars)."""
        before = raw[0] if self._previous is None else self._previous
        self._previous = float(raw[-1])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a price at 0: capped below
            if self._absolute:
                moves = np.diff(raw, prepend=before)
            else:
                moves = np.diff(np.log(raw), prepend=np.log(before))
        step_seconds = self._extras.time.step_ns / NS
        return step_volumes(moves, self._scale, step_seconds, self._extras.volume_rate, self._volume_rng)
