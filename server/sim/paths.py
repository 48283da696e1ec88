"""A planned path, built block by block with what the plan adds to it.

The model's stepper makes the values; the builder stamps them with times,
rounds them to a tick grid, quotes a bid and an ask around them, sizes the
book at those quotes and prints the trades of each move (book.BookAlong), or
folds the values into OHLCV bars. Every addition carries its state from block
to block (the time axis, the previous value and quotes, the unfinished bar,
the volume stream), so the blocks of a path concatenate to the same result
whatever the block size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bars import BarBuilder, Bars
from .book import PRICE_TICKS_MAX, BookAlong, BookModel, BookParams, Side
from .models import Model
from .quotes import DEFAULT_QUOTE_TICK, QuoteSpec, quote_ticks
from .seeding import VOLUME_STREAM, make_rng
from .ticks import TickGrid
from .time_axis import NS, TimeAxis
from .volume import DEFAULT_VOLUME_RATE, step_volumes


@dataclass(frozen=True)
class PathBook:
    """What a quoted path adds from the order book model: the lots at its bid and ask, and
    the prints of its moves, by the model with ``params`` keyed by ``instrument`` (the
    request's symbol, as the live market keys its instruments) and the path's seed."""

    params: BookParams
    instrument: int
    top_of_book: bool = False
    trades: bool = False


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
    book: PathBook | None = None  # needs quotes

    @property
    def symbols(self) -> tuple[str, ...]:
        """One per column of the values with several instruments; empty with one."""
        return () if self.model.single_instrument else self.model.symbols


@dataclass(frozen=True)
class Prints:
    """A block's trade prints as the wire has them: ids (period * 64 + index), prices on
    the quote grid, lots, aggressors as marketdata.v1.Side numbers (1 BUY, 2 SELL), and
    each print's period's timestamp (None without time)."""

    ids: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    aggressors: np.ndarray
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


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
    bid_size: np.ndarray | None = None  # lots at the bid and ask (0 where the book is out of range)
    ask_size: np.ndarray | None = None
    trades: Prints | None = None


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
        self._book = None
        if plan.book is not None:
            self._book = BookAlong(
                BookModel(plan.book.params), plan.seed, plan.book.instrument, model.positive
            )
            # The last period of the block before: its value and quotes in ticks, and whether
            # its book exists (its ticks within the model's range).
            self._before: tuple[np.ndarray, ...] | None = None

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
        book: dict[str, object] = {}
        if plan.quotes is not None:
            tick = plan.tick_size or DEFAULT_QUOTE_TICK
            bid_ticks, ask_ticks = quote_ticks(
                raw,
                tick,
                spread_bps=plan.quotes.spread_bps,
                spread_vol=plan.quotes.spread_volatility,
                step_sd=self._scale,
                absolute=self._absolute,
            )
            grid = TickGrid(tick)
            bid, ask = grid.prices(bid_ticks), grid.prices(ask_ticks)
            # Past 2^53 ticks (9e13 with a cent tick) float64 cannot step by one tick: the ask
            # then takes the next double above the bid, so the two never meet.
            ask = np.where(ask > bid, ask, np.nextafter(bid, np.inf))
            if self._book is not None:
                book = self._book_of(offset, raw, bid_ticks, ask_ticks, stamps)
        if self._bars is None:
            return Block(offset, count, prices.reshape(-1), stamps, bid, ask, **book)
        bars = self._bars.add(stamps, prices, self._volumes(raw), shifts)
        if offset + count == plan.periods:
            bars = Bars.concatenate([bars, self._bars.flush()])
        return Block(offset, count, prices[:0], bars=bars)

    def _book_of(
        self,
        offset: int,
        raw: np.ndarray,
        bid_ticks: np.ndarray,
        ask_ticks: np.ndarray,
        stamps: np.ndarray | None,
    ) -> dict[str, object]:
        """The block's sizes at the quotes and prints of its moves (Block's fields). A period
        whose value or quotes lie past 2^50 ticks has no book: sizes of 0, and no prints for
        the moves to it or from it."""
        plan, along = self._plan, self._book
        tick = plan.tick_size or DEFAULT_QUOTE_TICK
        count = len(raw)
        with np.errstate(invalid="ignore", over="ignore"):
            value = np.round(raw / tick)  # the value's ticks, as TickGrid.round takes them
            if plan.model.positive:  # a price at least one tick, as the grid and quotes have it
                value = np.maximum(value, 1.0)
            inside = (np.abs(value) <= PRICE_TICKS_MAX) & (np.abs(bid_ticks) <= PRICE_TICKS_MAX)
            inside &= np.abs(ask_ticks) <= PRICE_TICKS_MAX
        ticks = [np.where(inside, t, 0).astype(np.int64) for t in (value, bid_ticks, ask_ticks)]
        sequences = np.arange(offset, offset + count, dtype=np.int64)
        found: dict[str, object] = {}
        if plan.book.top_of_book:
            bid_size, ask_size = np.zeros(count, np.int64), np.zeros(count, np.int64)
            bid_size[inside], ask_size[inside] = along.touch_lots(
                sequences[inside], ticks[1][inside], ticks[2][inside]
            )
            found["bid_size"], found["ask_size"] = bid_size, ask_size
        if plan.book.trades:
            before, self._before = self._before, (*(t[-1:] for t in ticks), inside[-1:])
            if before is None:  # period 0: no move to it
                before = (*(t[:1] for t in ticks), np.zeros(1, dtype=bool))
            shifted = [np.concatenate((b, t[:-1])) for b, t in zip(before, (*ticks, inside), strict=True)]
            moves = inside & shifted[3]
            prints = along.prints(
                sequences[moves], shifted[0][moves], ticks[0][moves], shifted[1][moves], shifted[2][moves]
            )
            grid = TickGrid(tick)
            found["trades"] = Prints(
                prints.ids,
                grid.prices(prints.ticks.astype(np.float64)),
                prints.sizes,
                np.where(prints.sides == Side.BUY, 1, 2).astype(np.int8),
                None if stamps is None else stamps[prints.periods - offset],
            )
        return found

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
