"""The live market's order books and trades, tick by tick, and the history kept of them.

``MarketDepth`` turns each market tick into the trades of every instrument
and the full books of those someone follows, each in one batch (sim.book's
pure functions, keyed by the market seed and each symbol's key); any other
book is computed when first asked for. Trades need the price one tick before: a tick that
follows a gap (the clock passed over ticks it could not compute in time, or
a replica's catch-up) has no trades, which the trade ids show. A price the
book model cannot place (more than 2^50 ticks from zero: a price that ran
away) has an empty book and no trades until it comes back.

``Tape`` keeps a bounded history for the unary calls: the last prints of each
instrument, and its one-second and one-minute candles, formed from those
prints by exchange time. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .book import PRICE_TICKS_MAX, Book, BookModel, Trades
from .market import MarketTick, symbol_key
from .universe import MarketConfig

_NS = 1_000_000_000
# Candle lengths by name, in nanoseconds of exchange time.
CANDLE_INTERVALS = {"1s": _NS, "1m": 60 * _NS}


class DepthTick:
    """Every instrument's trades at one tick (None for an instrument at a tick whose trades
    are unknown: the first one, or one after a gap; empty Trades when nothing printed), and
    its full book, computed when first asked for (``book``): most books of a large market
    are never watched, and each is a pure function of the tick's price."""

    def __init__(
        self,
        sequence: int,
        prices: list[float],
        trades: tuple[Trades | None, ...],
        books_of: Callable[[int, Sequence[int], Sequence[float]], list[Book]],
    ) -> None:
        self.sequence, self.trades = sequence, trades
        self._prices, self._books_of = prices, books_of
        self._books: dict[int, Book] = {}

    def book(self, position: int) -> Book:
        """The full book of the instrument at ``position`` (computed once)."""
        book = self._books.get(position)
        if book is None:
            self.prepare((position,))
            book = self._books[position]
        return book

    def prepare(self, positions: Iterable[int]) -> None:
        """Compute the books of ``positions`` not computed yet, in one batch."""
        missing = sorted({p for p in positions if p not in self._books})
        if missing:
            made = self._books_of(self.sequence, missing, [self._prices[p] for p in missing])
            self._books.update(zip(missing, made, strict=True))


class MarketDepth:
    """Books and trades of a market run with ``seed``; ``next`` is called with each tick in
    order (gaps allowed) from one thread."""

    def __init__(self, config: MarketConfig, seed: int) -> None:
        self._model = BookModel(config.book)
        self._seed = seed
        self._keys = [symbol_key(i.symbol) for i in config.instruments]
        self._ticks = [i.tick_size for i in config.instruments]
        self._positive = [i.positive for i in config.instruments]
        self._previous: MarketTick | None = None
        self._tick_array = np.array(self._ticks)

    def _placeable(self, prices: np.ndarray, positions: Sequence[int] | None = None) -> np.ndarray:
        """Which of ``prices`` (of the instruments at ``positions``, all of them when None) the
        book model can place: finite and at most PRICE_TICKS_MAX ticks from zero."""
        ticks = self._tick_array if positions is None else self._tick_array[list(positions)]
        with np.errstate(all="ignore"):
            ratio = np.abs(np.asarray(prices, dtype=np.float64) / ticks)
        return np.isfinite(ratio) & (ratio <= PRICE_TICKS_MAX)

    def _columns(self, positions: Sequence[int]) -> tuple[list[int], list[float], list[bool]]:
        """The keys, tick sizes and positive flags of the instruments at ``positions``: a batch's columns."""
        return (
            [self._keys[p] for p in positions],
            [self._ticks[p] for p in positions],
            [self._positive[p] for p in positions],
        )

    def books(self, sequence: int, positions: Sequence[int], prices: Sequence[float]) -> list[Book]:
        """The full books of the instruments at ``positions`` at ``sequence``, priced ``prices``,
        in one batch (empty for a price the model cannot place)."""
        placeable = self._placeable(np.array(prices, dtype=np.float64), positions).tolist()
        some = [n for n, ok in enumerate(placeable) if ok]
        books = [_empty(sequence)] * len(positions)
        if some:
            keys, ticks, positive = self._columns([positions[n] for n in some])
            made = self._model.books_at(
                self._seed, keys, sequence, [prices[n] for n in some], ticks, positive=positive
            )
            for n, book in zip(some, made, strict=True):
                books[n] = book
        return books

    def next(self, tick: MarketTick, books: Iterable[int] = ()) -> DepthTick:
        """The trades since the tick before ``tick``, if that was the last one given, and its
        books: those of the positions in ``books`` now, any other when asked for; remembers
        ``tick`` for the next call."""
        previous, self._previous = self._previous, tick
        follows = previous is not None and previous.sequence == tick.sequence - 1 and tick.sequence >= 1
        prices = tick.prices.tolist()
        trades: list[Trades | None] = [None] * len(prices)
        if follows:  # every instrument's in one batch: the same trades as one call each, for less
            both = self._placeable(tick.prices) & self._placeable(previous.prices)
            some = np.flatnonzero(both).tolist()
            if some:
                keys, ticks, positive = self._columns(some)
                before = previous.prices.tolist()
                made = self._model.trades_of(
                    self._seed,
                    keys,
                    tick.sequence,
                    [before[p] for p in some],
                    [prices[p] for p in some],
                    ticks,
                    positive=positive,
                )
                for p, printed in zip(some, made, strict=True):
                    trades[p] = printed
        depth = DepthTick(tick.sequence, prices, tuple(trades), self.books)
        depth.prepare(books)  # the watched ones now, on the caller's thread
        return depth


def _empty(sequence: int) -> Book:
    """A book without levels, for an instrument whose price the model cannot place."""
    return Book(sequence, _NO_PRICES, _NO_SIZES, _NO_PRICES, _NO_SIZES)


_NO_PRICES = np.empty(0, dtype=np.float64)
_NO_SIZES = np.empty(0, dtype=np.int64)
for _array in (_NO_PRICES, _NO_SIZES):
    _array.setflags(write=False)


@dataclass
class Candle:
    """One interval's trades: open, high, low, close, lots and prints."""

    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    count: int


class Tape:
    """The last ``trade_history`` prints of each instrument and its last ``candle_history``
    candles of each interval in CANDLE_INTERVALS, fed with each tick's trades."""

    def __init__(self, instruments: int, trade_history: int, candle_history: int) -> None:
        self._prints: list[collections.deque[tuple[int, float, int, int, int]]] = [
            collections.deque(maxlen=trade_history) for _ in range(instruments)
        ]
        self._candles = {
            name: [collections.deque(maxlen=candle_history) for _ in range(instruments)]
            for name in CANDLE_INTERVALS
        }

    def add(self, position: int, trades: Trades, time_ns: int) -> None:
        """Record one instrument's prints of one tick, all stamped ``time_ns``."""
        if not len(trades):
            return
        ids, prices = trades.ids.tolist(), trades.prices.tolist()
        sizes, sides = trades.sizes.tolist(), trades.sides.tolist()
        self._prints[position].extend(zip(ids, prices, sizes, sides, [time_ns] * len(ids), strict=True))
        volume = sum(sizes)
        high, low = max(prices), min(prices)
        for name, length in CANDLE_INTERVALS.items():
            series = self._candles[name][position]
            start = time_ns - time_ns % length
            last = series[-1] if series else None
            if last is None or last.start_ns != start:
                series.append(Candle(start, prices[0], high, low, prices[-1], volume, len(ids)))
            else:
                last.high, last.low = max(last.high, high), min(last.low, low)
                last.close = prices[-1]
                last.volume += volume
                last.count += len(ids)

    def prints(self, position: int, limit: int) -> list[tuple[int, float, int, int, int]]:
        """The last ``limit`` prints, oldest first: (id, price, lots, side, time_ns)."""
        return list(self._prints[position])[-limit:]

    def candles(self, position: int, interval: str, limit: int | None = None) -> list[Candle]:
        """The last ``limit`` candles (all kept when None), oldest first; the last may be forming."""
        kept = list(self._candles[interval][position])
        return kept if limit is None else kept[-limit:]

    def forming(self, position: int, interval: str) -> Candle | None:
        series = self._candles[interval][position]
        return series[-1] if series else None
