"""A planned path, built block by block with what the plan adds to it.

The model's stepper makes the values; the builder stamps them with times,
rounds them to a tick grid, quotes a bid and an ask around them, or folds
them into OHLCV bars. Every addition carries its state from block to block
(the time axis, the previous value, the unfinished bar, the volume stream),
so the blocks of a path concatenate to the same result whatever the block
size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bars import BarBuilder, Bars
from .models import Model
from .quotes import DEFAULT_QUOTE_TICK, QuoteSpec, quotes
from .seeding import VOLUME_STREAM, make_rng
from .ticks import TickGrid
from .time_axis import NS, TimeAxis
from .volume import DEFAULT_VOLUME_RATE, step_volumes


@dataclass(frozen=True)
class PathPlan:
    """What to generate: a model's path of ``periods`` values from ``seed``, and
    what to add to it. The defaults add nothing. The RPC layer checks that the
    parts fit together (bars need time, quotes and bars need one instrument)."""

    model: Model
    periods: int
    seed: int
    time: TimeAxis | None = None
    bar_interval_ns: int | None = None  # OHLCV bars of this interval instead of the values
    tick_size: float = 0.0  # 0: values as generated
    quotes: QuoteSpec | None = None
    volume_rate: float = DEFAULT_VOLUME_RATE

    @property
    def symbols(self) -> tuple[str, ...]:
        """One per column of the values with several instruments; empty with one."""
        return () if self.model.single_instrument else self.model.symbols


@dataclass(frozen=True)
class Block:
    """One piece of a path: ``count`` periods from ``offset`` on."""

    offset: int
    count: int
    prices: np.ndarray  # n values per period with several instruments; empty when bars are made
    timestamps: np.ndarray | None = None
    bid: np.ndarray | None = None
    ask: np.ndarray | None = None
    bars: Bars | None = None


class PathBuilder:
    """The blocks of one plan's path, in order."""

    def __init__(self, plan: PathPlan) -> None:
        self._plan = plan
        model = plan.model
        self._stepper = model.stepper(make_rng(plan.seed))
        # Values of arithmetic and OU may be zero or negative: moves and spreads in value units.
        self._absolute = not model.positive
        self._scale = model.step_scale if plan.quotes or plan.bar_interval_ns else 0.0
        # Prices never round below one tick; arithmetic and OU values may.
        self._grid = TickGrid(plan.tick_size, model.positive) if plan.tick_size else None
        self._bars = None
        if plan.bar_interval_ns is not None:
            # A day's local midnight may have another UTC offset than its first value:
            # 1d bars are stamped by the zone itself.
            axis = plan.time
            daily = axis.calendar is not None and plan.bar_interval_ns >= 86_400 * NS
            self._bars = BarBuilder(plan.bar_interval_ns, axis.utc_of_local if daily else None)
            self._volume_rng = make_rng(plan.seed, stream=VOLUME_STREAM)
            self._previous: float | None = None

    @property
    def position(self) -> int:
        return self._stepper.position

    def next(self, n: int) -> Block:
        """The next ``n`` periods (fewer at the end of the path)."""
        plan = self._plan
        offset = self._stepper.position
        raw = self._stepper.next_block(min(n, plan.periods - offset))
        count = len(raw)
        prices = raw if self._grid is None else self._grid.round(raw)
        shifts = None
        if self._bars is not None:
            stamps, shifts = plan.time.stamps_and_shifts(offset, count)
        else:
            stamps = plan.time.stamps(offset, count) if plan.time is not None else None
        bid = ask = None
        if plan.quotes is not None:
            bid, ask = quotes(
                raw,
                plan.tick_size or DEFAULT_QUOTE_TICK,
                spread_bps=plan.quotes.spread_bps,
                spread_vol=plan.quotes.spread_volatility,
                step_sd=self._scale,
                absolute=self._absolute,
            )
        if self._bars is None:
            return Block(offset, count, prices.reshape(-1), stamps, bid, ask)
        bars = self._bars.add(stamps, prices, self._volumes(raw), shifts)
        if offset + count == plan.periods:
            bars = Bars.concatenate([bars, self._bars.flush()])
        return Block(offset, count, prices[:0], bars=bars)

    def whole(self, block_size: int) -> Block:
        """The whole path as one block. Bars are built ``block_size`` values at a time,
        so the fine path never sits whole in memory; anything else comes in one block."""
        periods = self._plan.periods
        if self._bars is None:
            return self.next(periods)
        bars = [self.next(block_size).bars for _ in range(-(-periods // block_size))]
        return Block(0, periods, np.empty(0), bars=Bars.concatenate(bars))

    def _volumes(self, raw: np.ndarray) -> np.ndarray:
        """Units traded in each period: bigger moves trade more (see ``volume``)."""
        before = raw[0] if self._previous is None else self._previous
        self._previous = float(raw[-1])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a price at 0: capped below
            if self._absolute:
                moves = np.diff(raw, prepend=before)
            else:
                moves = np.diff(np.log(raw), prepend=np.log(before))
        step_seconds = self._plan.time.step_ns / NS
        return step_volumes(moves, self._scale, step_seconds, self._plan.volume_rate, self._volume_rng)
