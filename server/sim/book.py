"""An order book and trade prints around a live instrument's price, as pure functions.

The book of an instrument at market sequence n depends only on (market seed,
instrument key, n, the instrument's price at n, its tick size, the model's
parameters); the trades of tick n only on those and the price at n - 1. No
state is carried from tick to tick, so a replica that catches up with
``Market.advance`` computes the book and trades at any sequence directly,
identical to a replica that stepped through every tick.

The model (``BookParams``, defaults in brackets):

* Touch: the price is first taken to its tick grid; the best bid and ask then
  follow the quote rounding of ``quotes.quotes`` with ``spread_bps`` [1.0,
  range 0 to 10,000]: half the spread each side of the price, bid rounded
  down and ask up, at least one tick apart; for positive instruments (the
  default) the bid never goes below one tick. A price on the grid lies in
  [best bid, best ask); on the bid when half the spread rounds to nothing
  (``spread_bps`` = 0, a value at 0, a price at its one-tick floor).
* Levels: ``levels`` [50, range 1 to 50] a side, one tick apart from the
  touch outwards; bids of a positive instrument stop at one tick, so near
  zero the bid side may hold fewer. A book asked for at ``depth`` is the
  first ``depth`` levels of the full book, identical to its prefix.
* Sizes, counted in whole lots (positive int64): an instrument's lot size
  (units per lot) only converts them to units, so the model does not take
  it. Level k from the touch (k = 0 at the touch) has mean
  ``touch_lots`` * (1 + ``growth`` * k) [10 lots, range 1 to 1e6; 0.1, range
  0 to 10], times log-normal noise of log-sd ``size_noise`` [0.5, range 0 to
  2] with mean one, rounded, at least one lot.
* Replenishment over time: the noise belongs to a price level (side and
  absolute tick), not to a distance from the touch, so a level's queue keeps
  its character while the touch moves, and it drifts with the sequence. Each
  block of ``refresh_ticks`` [20, range 1 to 4,096] sequences has one
  independent standard normal per side and tick; within a block the noise
  goes linearly from the block's draw to the next block's, rescaled to unit
  variance, so a queue depletes or refills over about ``refresh_ticks``
  ticks instead of jumping every tick.
* Trades of tick n, when the price moves from p(n-1) to p(n), against the
  full book at n-1: up, an aggressor buys every ask level priced at or below
  p(n), each level printing once at its price with its whole size, best
  first; down, it sells every bid level at or above p(n). If the last of
  those prints is not at p(n) (the price moved only inside the spread, or
  past the book's last level), one more print at p(n) closes the move, sized
  uniformly in [1, old touch size]. So a move's prints lie between p(n-1)
  and p(n) (at p(n-1) only where the old touch sat on it) and its last print
  is at p(n): last price and trades agree. The book
  at n is the state after those trades and after new orders arrived: it is
  drawn afresh around p(n), not the old book minus the prints.
* Quiet ticks (p(n) = p(n-1)): with probability ``quiet_print_probability``
  [0.2, range 0 to 1] one small print at the old touch, a buy at the best
  ask or a sell at the best bid with even odds, sized uniformly in [1, the
  level's size]. Such a print is at the touch, not at the last price.
* Trade ids: ``sequence * TRADE_ID_STRIDE + index within the tick``: unique
  per instrument and increasing with the sequence, with no counter to keep.

Randomness: one PCG64 stream per (seed, instrument, block, page of
``PAGE_TICKS`` price ticks, side) for level noise, and per (seed,
instrument, block) for the draws of quiet and closing prints, each made
from ``numpy.random.SeedSequence`` with a spawn key that starts with
``BOOK_STREAM`` (the counter-based scheme: any stream is reached from its
key without the ones before). Those streams are pure functions of their
keys and kept in bounded caches (``functools.lru_cache``; pages, pairs of
pages, rows of tick draws, price ladders: about 15 MB at most), so a live
feed that asks for consecutive sequences draws a new stream only once per
block; the caches hold nothing that could change a result.

Cost: a live feed should ask for all its instruments at once with
``BookModel.books_at`` and ``trades_of`` (bench/book_model.py measures
them); each instrument then costs a fraction of a ``book_at`` and
``trades_between`` of its own, with identical results.

A touch from elsewhere: ``BookModel.book_around`` is the book whose best
bid and ask are given rather than placed around a price, and ``BookAlong``
the same model along one instrument's path whose quotes are its touches
(sequence i being period i): the sizes at the quotes and the trades of each
move, by the rules above, for a run of periods at once.
"""

from __future__ import annotations

import enum
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import ne
from typing import NamedTuple

import numpy as np

from .checks import ParameterError, check_range, quoted
from .ticks import TICK_SIZE_MAX, TICK_SIZE_MIN, decimal_grid

# The first element of every book stream's spawn key: apart from a path's volume stream
# (seeding.VOLUME_STREAM, key (1000,)) and the market's instruments (one 64-bit key each).
BOOK_STREAM = 1001
_LEVEL_NOISE, _TICK_DRAWS = 0, 1
# Level noise is drawn in pages of this many consecutive price ticks; a side's levels
# (at most MAX_LEVELS consecutive ticks) touch at most two pages.
PAGE_TICKS = 64
MAX_LEVELS = 50
# Trade ids: sequence * TRADE_ID_STRIDE + index; a tick prints at most MAX_LEVELS + 1 times.
TRADE_ID_STRIDE = 64
# Sequences up to 2^56 keep every trade id below 2^62.
SEQUENCE_MAX = 2**56
# A price at most 2^50 ticks from zero, so every level is an exact integer tick in float64.
PRICE_TICKS_MAX = 2**50
INSTRUMENT_KEY_MAX = 2**64 - 1
LOTS_MAX = 2**40  # no level is larger, whatever the noise draws
_REFRESH_TICKS_MAX = 4096
_TOUCH_LOTS_MAX = 1e6
_GROWTH_MAX = 10.0
_SIZE_NOISE_MAX = 2.0
_SPREAD_BPS_MAX = 10_000.0


class Side(enum.IntEnum):
    """A book level's side (BUY: a bid, SELL: an ask) or a trade's aggressor."""

    BUY = 1
    SELL = -1


@dataclass(frozen=True)
class BookParams:
    """The book model's parameters (see the module docstring); errors name them as
    ``book.<field>`` with the accepted range."""

    spread_bps: float = 1.0
    levels: int = MAX_LEVELS
    touch_lots: float = 10.0
    growth: float = 0.1
    size_noise: float = 0.5
    refresh_ticks: int = 20
    quiet_print_probability: float = 0.2

    def __post_init__(self) -> None:
        check_range("book.spread_bps", _number("book.spread_bps", self.spread_bps), 0.0, _SPREAD_BPS_MAX)
        _check_int("book.levels", self.levels, 1, MAX_LEVELS)
        check_range("book.touch_lots", _number("book.touch_lots", self.touch_lots), 1.0, _TOUCH_LOTS_MAX)
        check_range("book.growth", _number("book.growth", self.growth), 0.0, _GROWTH_MAX)
        check_range("book.size_noise", _number("book.size_noise", self.size_noise), 0.0, _SIZE_NOISE_MAX)
        _check_int("book.refresh_ticks", self.refresh_ticks, 1, _REFRESH_TICKS_MAX)
        probability = _number("book.quiet_print_probability", self.quiet_print_probability)
        check_range("book.quiet_print_probability", probability, 0.0, 1.0)


@dataclass(frozen=True, eq=False)
class Book:
    """One instrument's book at one sequence: bids best (highest) first, asks best
    (lowest) first; prices on the tick grid (float64), sizes in lots (int64, > 0)."""

    sequence: int
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray

    def side(self, side: Side) -> tuple[np.ndarray, np.ndarray]:
        """(prices, sizes) of one side, best first."""
        if side is Side.BUY:
            return self.bid_prices, self.bid_sizes
        return self.ask_prices, self.ask_sizes


@dataclass(frozen=True, eq=False)
class Trades:
    """The prints of one tick, in the order they happened (parallel arrays)."""

    sequence: int
    ids: np.ndarray  # int64, sequence * TRADE_ID_STRIDE + index, increasing
    prices: np.ndarray  # float64, on the tick grid
    sizes: np.ndarray  # int64 lots, > 0
    sides: np.ndarray  # int8, the aggressor: Side.BUY (1) or Side.SELL (-1)

    def __len__(self) -> int:
        return len(self.ids)


class LevelChange(NamedTuple):
    """One level of an incremental update: its new size in lots, 0 when it left the book."""

    side: Side
    price: float
    size: int


class BookModel:
    """Books and trades of the model with ``params``; every method is a pure function
    of its arguments (see the module docstring).

    ``books_at`` and ``trades_of`` are the batched forms of ``book_at`` and
    ``trades_between``, for many instruments at one sequence, as a live feed asks at each
    tick: the same results, with the array work done once for the whole batch, so that an
    instrument in a batch costs a fraction of a call of its own. The single calls work in
    Python scalars where the batched ones have arrays; tests/test_book_fingerprints.py pins
    both to the same outputs. A batch's books (or trades) are read-only views of arrays
    the batch shares.
    """

    def __init__(self, params: BookParams | None = None) -> None:
        self.params = params if params is not None else BookParams()
        self._steps = _frozen(np.arange(self.params.levels, dtype=np.int64))
        # Mean lots by distance from the touch, as an array and as Python floats; the means
        # of (bids, asks) levels side by side, at most (levels + 1)^2 of them.
        self._mean = _frozen(self.params.touch_lots * (1.0 + self.params.growth * self._steps))
        self._mean_list = self._mean.tolist()
        self._means: dict[tuple[int, int], np.ndarray] = {}

    def book_at(
        self,
        seed: int,
        instrument: int,
        sequence: int,
        price: float,
        tick_size: float,
        depth: int | None = None,
        *,
        positive: bool = True,
    ) -> Book:
        """The book at ``sequence`` whose instrument is at ``price``, ``depth`` levels a side
        at most (all the model's levels when None). ``instrument`` is any integer key of the
        instrument in [0, 2^64 - 1]; ``positive`` is False for instruments whose values may be
        zero or negative (spreads, rates), whose bids may then go below one tick."""
        depth = self._depth(depth)
        _check_keys(seed, instrument, sequence)
        tick = _check_tick(tick_size)
        at = _ticks(price, tick, "price", positive)
        return self._book(seed, instrument, sequence, at, tick, bool(positive), depth)

    def books_at(
        self,
        seed: int,
        instruments: Sequence[int],
        sequence: int,
        prices: Sequence[float] | np.ndarray,
        tick_sizes: float | Sequence[float],
        depth: int | None = None,
        *,
        positive: bool | Sequence[bool] = True,
    ) -> list[Book]:
        """``book_at`` for each instrument of ``instruments`` at its price of ``prices``, all at
        ``sequence``: the same books, at a fraction of the cost of separate calls.
        ``tick_sizes`` and ``positive`` are one value for all or one per instrument; errors
        name the entry, e.g. ``prices[3]``."""
        depth = self._depth(depth)
        _check_int("seed", seed, 0, 2**64 - 1)
        _check_int("sequence", sequence, 0, SEQUENCE_MAX)
        keys = _instrument_keys(instruments)
        grid = _tick_column(tick_sizes, len(keys))
        flags = _flag_column(positive, len(keys))
        at = _price_column("price", prices, grid, flags)
        return self._books(seed, keys, sequence, at, grid, flags, depth) if keys else []

    def trades_between(
        self,
        seed: int,
        instrument: int,
        sequence: int,
        prev_price: float,
        price: float,
        tick_size: float,
        *,
        positive: bool = True,
    ) -> Trades:
        """The prints of tick ``sequence`` (>= 1), the instrument going from ``prev_price`` (its
        price at ``sequence - 1``) to ``price``, against the full book at ``sequence - 1``."""
        _check_keys(seed, instrument, sequence)
        _check_trade_sequence(sequence)
        tick = _check_tick(tick_size)
        start, end = _ticks(prev_price, tick, "prev_price", positive), _ticks(price, tick, "price", positive)
        return self._trade(seed, instrument, sequence, start, end, tick, bool(positive))

    def trades_of(
        self,
        seed: int,
        instruments: Sequence[int],
        sequence: int,
        prev_prices: Sequence[float] | np.ndarray,
        prices: Sequence[float] | np.ndarray,
        tick_sizes: float | Sequence[float],
        *,
        positive: bool | Sequence[bool] = True,
    ) -> list[Trades]:
        """``trades_between`` for each instrument of ``instruments`` going from its price of
        ``prev_prices`` to its price of ``prices`` at ``sequence``: the same trades, batched
        as ``books_at`` is."""
        _check_int("seed", seed, 0, 2**64 - 1)
        _check_int("sequence", sequence, 0, SEQUENCE_MAX)
        _check_trade_sequence(sequence)
        keys = _instrument_keys(instruments)
        grid = _tick_column(tick_sizes, len(keys))
        flags = _flag_column(positive, len(keys))
        start = _price_column("prev_price", prev_prices, grid, flags)
        end = _price_column("price", prices, grid, flags)
        return self._trades(seed, keys, sequence, start, end, grid, flags) if keys else []

    def book_around(
        self,
        seed: int,
        instrument: int,
        sequence: int,
        best_bid: float,
        best_ask: float,
        tick_size: float,
        depth: int | None = None,
        *,
        positive: bool = True,
    ) -> Book:
        """The book at ``sequence`` whose best bid and ask are ``best_bid`` and ``best_ask``
        (prices on the grid of ``tick_size``, the bid below the ask): ``book_at`` once it has
        placed the touch, for a touch from elsewhere, such as a path's quotes (BookAlong)."""
        depth = self._depth(depth)
        _check_keys(seed, instrument, sequence)
        tick = _check_tick(tick_size)
        bid, ask = _ticks(best_bid, tick, "best_bid", positive), _ticks(best_ask, tick, "best_ask", positive)
        if ask <= bid:
            raise ParameterError(
                "best_ask", f"best_ask must be above best_bid {quoted(best_bid)}, got {quoted(best_ask)}"
            )
        return self._book_from(seed, instrument, sequence, bid, ask, tick, bool(positive), depth)

    def _depth(self, depth: int | None) -> int:
        levels = self.params.levels
        return levels if depth is None else _check_int("depth", depth, 1, levels)

    def _book(
        self, seed: int, instrument: int, sequence: int, at: int, tick: float, positive: bool, depth: int
    ) -> Book:
        """One instrument's book: ``_books`` for a batch of one, in Python scalars where a
        batch has arrays (a single call pays for a dozen array operations, not dozens)."""
        best_bid, best_ask = _touch(at, tick, self.params.spread_bps, positive)
        return self._book_from(seed, instrument, sequence, best_bid, best_ask, tick, positive, depth)

    def _book_from(
        self,
        seed: int,
        instrument: int,
        sequence: int,
        best_bid: int,
        best_ask: int,
        tick: float,
        positive: bool,
        depth: int,
    ) -> Book:
        """The book whose best levels are at ``best_bid`` and ``best_ask`` ticks."""
        params = self.params
        bids = min(depth, _bid_count(best_bid, params.levels, positive))
        block, offset = divmod(sequence, params.refresh_ticks)
        bid_draws = _window(seed, instrument, Side.BUY, block, best_bid, bids)
        draws = np.concatenate(
            (bid_draws, _window(seed, instrument, Side.SELL, block, best_ask, depth)), axis=1
        )
        raw = self._factors(draws[0], draws[1], offset)
        raw *= self._level_means(bids, depth)
        lots = _whole_lots(raw)
        bid_prices = _ladder_prices(tick, best_bid, bids, Side.BUY)
        return Book(
            sequence, bid_prices, lots[:bids], _ladder_prices(tick, best_ask, depth, Side.SELL), lots[bids:]
        )

    def _trade(
        self, seed: int, instrument: int, sequence: int, start: int, end: int, tick: float, positive: bool
    ) -> Trades:
        """One instrument's trades: ``_trades`` for a batch of one, in Python scalars. The few
        levels it sizes are worked out one at a time with the same operations as the
        arrays of a batch (numpy's exp for the factors), so they come out the same."""
        params = self.params
        refresh = params.refresh_ticks
        block, offset = divmod(sequence, refresh)
        u_happens, u_side, u_size = _tick_draws(seed, instrument, block, offset, refresh).tolist()
        best_bid, best_ask = _touch(start, tick, params.spread_bps, positive)
        if end == start:
            if u_happens >= params.quiet_print_probability:
                return Trades(sequence, _NO_IDS, _NO_PRICES, _NO_IDS, _NO_SIDES)
            side = Side.BUY if u_side < 0.5 else Side.SELL
            best = best_ask if side is Side.BUY else best_bid
            prints, taken = [best], 0
        else:
            if end > start:
                side, best, step = Side.BUY, best_ask, 1
                taken = max(0, min(end - best_ask + 1, params.levels))
            else:
                side, best, step = Side.SELL, best_bid, -1
                taken = max(0, min(best_bid - end + 1, _bid_count(best_bid, params.levels, positive)))
            prints = list(range(best, best + step * taken, step))
            if not prints or prints[-1] != end:
                prints.append(end)
        book_block, book_offset = divmod(sequence - 1, refresh)
        sized = max(taken, 1)
        here, there = _window(seed, instrument, -side, book_block, best, sized).tolist()
        if book_offset:
            w = book_offset / refresh
            norm = math.sqrt((1 - w) ** 2 + w * w)
            here = [((1 - w) * a + w * b) / norm for a, b in zip(here, there, strict=True)]
        sigma = params.size_noise
        factors = np.exp(np.array(here) * sigma - sigma * sigma / 2).tolist()
        lots = [min(max(round(m * f), 1), LOTS_MAX) for m, f in zip(self._mean_list, factors, strict=False)]
        if len(prints) > taken:
            lots = lots[:taken] + [_fraction(u_size, lots[0])]
        units, scale = decimal_grid(tick)
        first = sequence * TRADE_ID_STRIDE
        return Trades(
            sequence,
            _frozen(np.arange(first, first + len(prints), dtype=np.int64)),
            _frozen(np.array([t * units / scale + 0.0 for t in prints], dtype=np.float64)),  # TickGrid.prices
            _frozen(np.array(lots, dtype=np.int64)),
            _frozen(np.full(len(prints), int(side), dtype=np.int8)),
        )

    def _level_means(self, bids: int, asks: int) -> np.ndarray:
        means = self._means.get((bids, asks))
        if means is None:
            means = self._means[bids, asks] = _frozen(np.concatenate((self._mean[:bids], self._mean[:asks])))
        return means

    def _touches(self, at: np.ndarray, grid: _Grid, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best bids and asks in ticks (int64) around prices of ``at`` ticks: the rounding of
        quotes.quotes, around the price as the market publishes it (TickGrid.prices)."""
        price = at * grid.units / grid.scale + 0.0
        half = np.abs(price) * (self.params.spread_bps / 1e4 / 2)
        bid = np.floor((price - half) / grid.ticks + 1e-9)
        bid = np.where(flags, np.maximum(bid, 1.0), bid)
        ask = np.maximum(np.ceil((price + half) / grid.ticks - 1e-9), bid + 1)
        return bid.astype(np.int64), ask.astype(np.int64)

    def _books(
        self,
        seed: int,
        keys: list[int],
        sequence: int,
        at: np.ndarray,
        grid: _Grid,
        flags: np.ndarray,
        depth: int,
    ) -> list[Book]:
        """The books of instruments ``keys`` at prices of ``at`` ticks, ``depth`` levels a side.
        A level's size depends only on its side, price, sequence and distance from the touch,
        so a shallower book is computed as such. Bids are sized to ``depth`` even where a
        positive instrument's stop at one tick, and cut after."""
        params = self.params
        best_bid, best_ask = self._touches(at, grid, flags)
        block, offset = divmod(sequence, params.refresh_ticks)
        windows = []
        for key, bid, ask in zip(keys, best_bid.tolist(), best_ask.tolist(), strict=True):
            windows.append(_window(seed, key, Side.BUY, block, bid, depth))
            windows.append(_window(seed, key, Side.SELL, block, ask, depth))
        draws = np.concatenate(windows, axis=1)
        raw = self._factors(draws[0], draws[1], offset).reshape(-1, depth)
        raw *= self._mean[:depth]  # (bids, asks) of each instrument, as rows
        lots = _whole_lots(raw)
        steps = self._steps[:depth]
        units, scale = grid.at((slice(None), np.newaxis))  # a column: one row per instrument
        bid_prices = _frozen((best_bid[:, np.newaxis] - steps).astype(np.float64) * units / scale + 0.0)
        ask_prices = _frozen((best_ask[:, np.newaxis] + steps).astype(np.float64) * units / scale + 0.0)
        counts = np.where(flags, np.minimum(best_bid, depth), depth).tolist()
        books = []
        for bids, bid_lots, ask_lots, ask_prices_row, count in zip(
            bid_prices, lots[0::2], lots[1::2], ask_prices, counts, strict=True
        ):
            if count < depth:  # a positive instrument's bids stop at one tick
                bids, bid_lots = bids[:count], bid_lots[:count]
            books.append(Book(sequence, bids, bid_lots, ask_prices_row, ask_lots))
        return books

    def _trades(
        self,
        seed: int,
        keys: list[int],
        sequence: int,
        start: np.ndarray,
        end: np.ndarray,
        grid: _Grid,
        flags: np.ndarray,
    ) -> list[Trades]:
        """The trades at ``sequence`` of instruments ``keys`` going from ``start`` to ``end``
        ticks, through their books at ``sequence - 1``."""
        refresh = self.params.refresh_ticks
        block, offset = divmod(sequence, refresh)
        u = np.array([_tick_draws(seed, key, block, offset, refresh) for key in keys]).reshape(-1, 3)
        best_bid, best_ask = self._touches(start, grid, flags)
        book_block, book_offset = divmod(sequence - 1, refresh)

        def lots_of(sides: np.ndarray, bests: np.ndarray, counts: np.ndarray) -> np.ndarray:
            met = zip(keys, sides.tolist(), bests.tolist(), counts.tolist(), strict=True)
            windows = [_window(seed, key, side, book_block, best, n) for key, side, best, n in met if n]
            if not windows:
                return np.empty(0, dtype=np.int64)
            draws = np.concatenate(windows, axis=1)
            raw = self._factors(draws[0], draws[1], book_offset)
            raw *= self._mean[_ranks(counts)]
            return _whole_lots(raw)

        counts, index, ticks, lots, sides = self._prints(start, end, best_bid, best_ask, flags, u, lots_of)
        units, scale = grid.at(np.repeat(np.arange(len(keys)), counts))
        arrays = (
            _frozen(sequence * TRADE_ID_STRIDE + index),
            _frozen(ticks.astype(np.float64) * units / scale + 0.0),
            lots,
            sides,
        )
        trades, begin = [], 0
        for stop in np.cumsum(counts).tolist():
            trades.append(Trades(sequence, *(array[begin:stop] for array in arrays)))
            begin = stop
        return trades

    def _prints(
        self,
        start: np.ndarray,
        end: np.ndarray,
        best_bid: np.ndarray,
        best_ask: np.ndarray,
        flags: np.ndarray,
        u: np.ndarray,
        lots_of: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The prints of moves from ``start`` to ``end`` ticks, one a move, each through a book
        whose best levels are at ``best_bid`` and ``best_ask`` (the rules of the module
        docstring, for many moves at once). ``u`` holds each move's three uniforms (quiet
        print, its side, a fraction of the touch); ``lots_of(sides, bests, counts)`` gives the
        lots of the first ``counts[j]`` levels of side ``sides[j]`` from tick ``bests[j]``
        of the books the moves meet, one after another (none where a count is 0).

        Returns the prints per move, then per print: its index in its move, tick, lots and
        aggressor (int8, read-only)."""
        params = self.params
        quiet = end == start
        quiet_prints = quiet & (u[:, 0] < params.quiet_print_probability)
        # The aggressor: on a quiet tick a buyer or a seller with even odds; a buyer meets the
        # asks from the best ask up, a seller the bids from the best bid down.
        buy = np.where(quiet, u[:, 1] < 0.5, end > start)
        side = np.where(buy, 1, -1)
        best = np.where(buy, best_ask, best_bid)
        levels = np.where(buy | ~flags, params.levels, np.minimum(best_bid, params.levels))
        taken = np.where(quiet, 0, np.clip(np.where(buy, end - best_ask, best_bid - end) + 1, 0, levels))
        # One more print where the last level taken is not at the new price (inside the
        # spread, or past the last level), or the quiet tick's print at the touch.
        closes = np.where(quiet, quiet_prints, (taken == 0) | (best + side * (taken - 1) != end))
        close_tick = np.where(quiet, best, end)
        sized = np.where(quiet, quiet_prints, np.maximum(taken, 1)).astype(
            np.int64
        )  # levels taken, or the touch
        lots = lots_of(-side, best, sized)
        lot_start = np.cumsum(sized) - sized
        # The touch's size where the move sized levels (a placeholder where it did not).
        touch = lots[np.minimum(lot_start, len(lots) - 1)] if len(lots) else np.ones(len(start), np.int64)
        close_size = np.minimum(touch, 1 + (u[:, 2] * touch).astype(np.int64))  # uniform in [1, touch]
        counts = taken + closes
        owner = np.repeat(np.arange(len(start)), counts)
        index = _ranks(counts)
        at_level = index < taken[owner]
        ticks = np.where(at_level, best[owner] + side[owner] * index, close_tick[owner])
        level_lots = lots[np.where(at_level, lot_start[owner] + index, 0)] if len(lots) else index
        sizes = _frozen(np.where(at_level, level_lots, close_size[owner]))
        return counts, index, ticks, sizes, _frozen(side[owner].astype(np.int8))

    def _factors(self, here: np.ndarray, there: np.ndarray, offset: int) -> np.ndarray:
        """The size factors exp(size_noise * z - size_noise^2 / 2), z going from the draws
        ``here`` of a block towards ``there`` of the next, ``offset`` sequences into the block,
        rescaled to unit variance. Each operation is elementwise, so a level's factor is the
        same however many are worked out with it. Overwrites ``here`` and ``there``."""
        params = self.params
        refresh = params.refresh_ticks
        z = here
        if offset:
            w = offset / refresh
            z *= 1 - w
            there *= w
            z += there
            z /= math.sqrt((1 - w) ** 2 + w * w)
        sigma = params.size_noise
        z *= sigma
        z -= sigma * sigma / 2
        return np.exp(z, out=z)

    def _factors_each(self, here: np.ndarray, there: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``_factors`` with an offset for each draw: the same operations, element by element,
        their weights worked out in Python floats as for one offset (``_weights``)."""
        near, far, norm = _weights(self.params.refresh_ticks)
        z = near[offsets] * here
        z += far[offsets] * there
        z /= norm[offsets]
        z = np.where(offsets == 0, here, z)  # the block's own draws, as _factors leaves them
        sigma = self.params.size_noise
        z *= sigma
        z -= sigma * sigma / 2
        return np.exp(z, out=z)


class _Grid:
    """A batch's tick sizes (one for all, or one per instrument) and their exact decimals,
    units / scale (see ticks.decimal_grid)."""

    def __init__(self, ticks: float | np.ndarray) -> None:
        self.ticks = ticks
        if np.ndim(ticks) == 0:
            self.units, self.scale = decimal_grid(float(ticks))
        else:
            self.units, self.scale = np.array([decimal_grid(t) for t in ticks.tolist()]).reshape(-1, 2).T

    def at(self, index: object) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Units and scale of the instruments at ``index`` (any numpy index of the batch)."""
        if np.ndim(self.units) == 0:
            return self.units, self.scale
        return self.units[index], self.scale[index]


@dataclass(frozen=True, eq=False)
class PathPrints:
    """The prints of a run of a path's periods as parallel arrays, period by period: each
    print's period, trade id (period * TRADE_ID_STRIDE + index in the period), tick (whole
    ticks of the path's grid), lots, and aggressor (Side values)."""

    periods: np.ndarray
    ids: np.ndarray
    ticks: np.ndarray
    sizes: np.ndarray
    sides: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class BookAlong:
    """The book model along one instrument's path: period i's book is the book at sequence
    i whose best levels are the path's bid and ask (``BookModel.book_around``), and the
    prints of period i those of the move from the value before, through the book before,
    by the rules of ``trades_between``. Asked for consecutive runs of periods, each worked
    out for the whole run at once (no step per period in Python).

    It keeps the random pages and tick draws of the blocks it last used, which the next run
    mostly needs again; they are pure functions of their keys, so they change no result,
    and none of them enters the caches a live market uses."""

    def __init__(self, model: BookModel, seed: int, instrument: int, positive: bool) -> None:
        _check_int("seed", seed, 0, 2**64 - 1)
        _check_int("instrument", instrument, 0, INSTRUMENT_KEY_MAX)
        self._model, self._seed, self._instrument, self._positive = model, seed, instrument, positive
        self._pages: dict[tuple[int, int, int], np.ndarray] = {}
        self._uniforms: dict[int, np.ndarray] = {}

    def touch_lots(
        self, sequences: np.ndarray, best_bids: np.ndarray, best_asks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lots at the best bid and at the best ask of the books at ``sequences``, whose best
        levels are at ``best_bids`` and ``best_asks`` (whole ticks, the bid below the ask,
        within 2^50 ticks of zero; a positive instrument's bid at least one tick)."""
        self._forget(sequences)
        n = len(sequences)
        sides = np.repeat(np.array([Side.BUY, Side.SELL], dtype=np.int64), n)
        both = np.concatenate((sequences, sequences))
        lots = self._lots(both, sides, np.concatenate((best_bids, best_asks)), np.zeros(2 * n, np.int64))
        return lots[:n], lots[n:]

    def prints(
        self,
        sequences: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        best_bids: np.ndarray,
        best_asks: np.ndarray,
    ) -> PathPrints:
        """The prints of the moves at ``sequences`` (each at least 1) from ``start`` to ``end``
        ticks, through the books at ``sequences - 1`` whose best levels are at ``best_bids``
        and ``best_asks`` (whole ticks, as for ``touch_lots``)."""
        self._forget(sequences)
        model = self._model
        u = self._draws_of(sequences)
        flags = np.full(len(sequences), self._positive)

        def lots_of(sides: np.ndarray, bests: np.ndarray, counts: np.ndarray) -> np.ndarray:
            owner, level = np.repeat(np.arange(len(counts)), counts), _ranks(counts)
            side = sides[owner]
            ticks = bests[owner] - side * level  # bids from the best down, asks up
            return self._lots(sequences[owner] - 1, side, ticks, level)

        counts, index, ticks, sizes, sides = model._prints(
            start, end, best_bids, best_asks, flags, u, lots_of
        )
        periods = _frozen(np.repeat(sequences, counts))
        return PathPrints(periods, _frozen(periods * TRADE_ID_STRIDE + index), _frozen(ticks), sizes, sides)

    def _lots(
        self, sequences: np.ndarray, sides: np.ndarray, ticks: np.ndarray, levels: np.ndarray
    ) -> np.ndarray:
        """Lots of the levels at ``ticks`` of ``sides``, ``levels`` from their touch, in the
        books at ``sequences``: the sizes the live book gives those levels."""
        model = self._model
        if not len(sequences):
            return _frozen(np.empty(0, dtype=np.int64))
        blocks, offsets = np.divmod(sequences, model.params.refresh_ticks)
        pages, columns = np.divmod(ticks, PAGE_TICKS)
        # One row of draws per (block, page, side) used: numbered by one sort of each column.
        block_keys, block_at = np.unique(blocks, return_inverse=True)
        page_keys, page_at = np.unique(pages, return_inverse=True)
        key = (block_at.reshape(-1) * len(page_keys) + page_at.reshape(-1)) * 2 + (sides == Side.SELL)
        used, rows = np.unique(key, return_inverse=True)
        here, there = [], []
        for block_page, sell in zip(*np.divmod(used, 2), strict=True):
            block_index, page_index = divmod(int(block_page), len(page_keys))
            block, page, side = int(block_keys[block_index]), int(page_keys[page_index]), -1 if sell else 1
            here.append(self._page(side, block, page))
            there.append(self._page(side, block + 1, page))
        rows = rows.reshape(-1)
        raw = model._factors_each(np.stack(here)[rows, columns], np.stack(there)[rows, columns], offsets)
        raw *= model._mean[levels]
        return _whole_lots(raw)

    def _page(self, side: int, block: int, page: int) -> np.ndarray:
        key = (side, block, page)
        draws = self._pages.get(key)
        if draws is None:
            draws = self._pages[key] = _page.__wrapped__(self._seed, self._instrument, side, block, page)
        return draws

    def _draws_of(self, sequences: np.ndarray) -> np.ndarray:
        """The (n, 3) uniforms of each sequence (see ``_tick_draws``)."""
        refresh = self._model.params.refresh_ticks
        if not len(sequences):
            return np.empty((0, 3))
        blocks, offsets = np.divmod(sequences, refresh)
        keys, where = np.unique(blocks, return_inverse=True)
        table = []
        for block in keys.tolist():
            rows = self._uniforms.get(block)
            if rows is None:
                stream = _stream(self._seed, (BOOK_STREAM, self._instrument, _TICK_DRAWS, block))
                rows = self._uniforms[block] = stream.random((refresh, 3))
            table.append(rows)
        return np.stack(table)[where.reshape(-1), offsets]

    def _forget(self, sequences: np.ndarray) -> None:
        """Drop the draws of blocks before those of ``sequences`` and of the sequence before
        them: runs come in order, so no later run needs them."""
        if len(sequences):
            first = (int(sequences[0]) - 1) // self._model.params.refresh_ticks
            self._pages = {k: v for k, v in self._pages.items() if k[1] >= first}
            self._uniforms = {k: v for k, v in self._uniforms.items() if k >= first}


def diff(old: Book, new: Book) -> list[LevelChange]:
    """The level changes that turn ``old`` into ``new``: every level of ``new`` that is not
    in ``old`` at the same size, and size 0 for every level of ``old`` gone from ``new``
    (moved away, crossed, or out of the depth). Bids first, then asks, each best first.
    Both books' sides are in their documented order, best first, as the model makes them."""
    return side_changes(
        Side.BUY,
        old.bid_prices.tolist(),
        old.bid_sizes.tolist(),
        new.bid_prices.tolist(),
        new.bid_sizes.tolist(),
    ) + side_changes(
        Side.SELL,
        old.ask_prices.tolist(),
        old.ask_sizes.tolist(),
        new.ask_prices.tolist(),
        new.ask_sizes.tolist(),
    )


def side_changes(
    side: Side, old_prices: list, old_sizes: list, new_prices: list, new_sizes: list
) -> list[LevelChange]:
    """One side's changes as ``diff`` gives them (best first), from two lists of its levels,
    best first. A model's book is a run of consecutive ticks, so after a move the new levels
    are mostly the old ones shifted: one lookup finds the run the two share, whose sizes are
    then compared pairwise; other books are merged level by level."""
    if old_prices == new_prices:  # the same levels: only sizes may differ
        return list(
            map(_change, compress(zip(repeat(side), new_prices, new_sizes), map(ne, new_sizes, old_sizes)))
        )
    old_start = new_start = 0
    if new_prices and old_prices and new_prices[0] != old_prices[0]:
        try:
            if (new_prices[0] < old_prices[0]) is (side is Side.BUY):  # the old book had better levels
                old_start = old_prices.index(new_prices[0])
            else:  # the new book has better levels
                new_start = new_prices.index(old_prices[0])
        except ValueError:  # the two share no level
            return _merged(side, old_prices, old_sizes, new_prices, new_sizes)
    shared = min(len(old_prices) - old_start, len(new_prices) - new_start)
    old_end, new_end = old_start + shared, new_start + shared
    if old_prices[old_start:old_end] != new_prices[new_start:new_end]:  # not one run
        return _merged(side, old_prices, old_sizes, new_prices, new_sizes)
    # The old sizes beside the new levels (None where the old book had no such level); the
    # old book's better or worse levels beyond the run are gone.
    before = [None] * new_start + old_sizes[old_start:old_end] + [None] * (len(new_prices) - new_end)
    levels = chain(
        zip(repeat(side), old_prices[:old_start], repeat(0)),
        compress(zip(repeat(side), new_prices, new_sizes), map(ne, new_sizes, before)),
        zip(repeat(side), old_prices[old_end:], repeat(0)),
    )
    return list(map(_change, levels))  # iterators all the way: no Python step per level


def _merged(
    side: Side, old_prices: list, old_sizes: list, new_prices: list, new_sizes: list
) -> list[LevelChange]:
    """One side's changes by merging the two best-first lists level by level."""
    bids = side is Side.BUY
    levels = []
    i = j = 0
    while i < len(old_prices) and j < len(new_prices):
        was, now = old_prices[i], new_prices[j]
        if was == now:
            if old_sizes[i] != new_sizes[j]:
                levels.append((side, now, new_sizes[j]))
            i += 1
            j += 1
        elif (was > now) is bids:  # the old level comes first: the new book lacks it
            levels.append((side, was, 0))
            i += 1
        else:
            levels.append((side, now, new_sizes[j]))
            j += 1
    levels += [(side, was, 0) for was in old_prices[i:]]
    levels += zip(repeat(side), new_prices[j:], new_sizes[j:], strict=False)
    return list(map(_change, levels))


# A LevelChange from a (side, price, size) tuple, without NamedTuple's argument handling.
_change = functools.partial(tuple.__new__, LevelChange)


def apply_diff(book: Book, changes: list[LevelChange], sequence: int) -> Book:
    """``book`` with ``changes`` applied (a size of 0 removes the level), at ``sequence``:
    what a client does with an incremental update."""
    sides = {side: dict(zip(*(a.tolist() for a in book.side(side)), strict=True)) for side in Side}
    for change in changes:
        levels = sides[Side(change.side)]
        if change.size:
            levels[change.price] = change.size
        else:
            levels.pop(change.price, None)
    arrays = []
    for side in (Side.BUY, Side.SELL):
        prices = sorted(sides[side], reverse=side is Side.BUY)
        arrays += [
            _frozen(np.array(prices, dtype=np.float64)),
            _frozen(np.array([sides[side][p] for p in prices], dtype=np.int64)),
        ]
    return Book(sequence, *arrays)


def clear_caches() -> None:
    """Empty the caches of random draws and weights: they only save work, results never
    depend on them."""
    for cached in (_page, _two_pages, _ladder, _draw_rows, _weights):
        cached.cache_clear()


def _touch(at: int, tick: float, spread_bps: float, positive: bool) -> tuple[int, int]:
    """BookModel._touches for one price, in Python scalars: the same operations."""
    units, scale = decimal_grid(tick)
    price = at * units / scale + 0.0
    half = abs(price) * (spread_bps / 1e4 / 2)
    bid = math.floor((price - half) / tick + 1e-9)
    if positive:
        bid = max(bid, 1)
    return bid, max(math.ceil((price + half) / tick - 1e-9), bid + 1)


def _bid_count(best_bid: int, levels: int, positive: bool) -> int:
    """How many bid levels the full book has: a positive instrument's stop at one tick."""
    return min(levels, best_bid) if positive else levels


def _fraction(u: float, lots: int) -> int:
    """A size uniform in [1, lots] from the uniform ``u`` in [0, 1)."""
    return min(int(lots), 1 + int(u * lots))


def _ladder_prices(tick: float, best: int, count: int, side: Side) -> np.ndarray:
    """Prices of ``count`` levels of ``side`` from tick ``best``, best first: a slice of a ladder."""
    page, at = divmod(best, PAGE_TICKS)
    if side is Side.BUY:
        at = PAGE_TICKS - 1 - at
    return _ladder(tick, page, side is Side.BUY)[at : at + count]


@functools.lru_cache(maxsize=1024)
def _ladder(tick: float, page: int, descending: bool) -> np.ndarray:
    """Prices (as TickGrid.prices writes them) of 2 * PAGE_TICKS consecutive ticks: from the
    page's lowest tick up, or from its highest tick down."""
    units, scale = decimal_grid(tick)
    low = page * PAGE_TICKS
    steps = np.arange(2 * PAGE_TICKS, dtype=np.int64)
    ticks = (low + PAGE_TICKS - 1 - steps if descending else low + steps).astype(np.float64)
    return _frozen(ticks * units / scale + 0.0)


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, .. counts[j] - 1 for each j, one after another: each item's place in its group."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _whole_lots(raw: np.ndarray) -> np.ndarray:
    """Mean times factor, rounded to whole lots in [1, LOTS_MAX] (int64, read-only)."""
    np.rint(raw, out=raw)
    np.maximum(raw, 1.0, out=raw)
    np.minimum(raw, LOTS_MAX, out=raw)
    return _frozen(raw.astype(np.int64))


def _window(seed: int, instrument: int, side: int, block: int, best: int, count: int) -> np.ndarray:
    """(2, count) draws of the first ``count`` levels of ``side`` from tick ``best``, best first:
    of ``block`` (first row) and of the next block (second row)."""
    page, at = divmod(best, PAGE_TICKS)
    if side == Side.BUY:  # bid pages are stored from their highest tick down
        at = PAGE_TICKS - 1 - at
    return _two_pages(seed, instrument, side, block, page)[:, at : at + count]


# Two pages of a side in a block and the next, 2 KB with its cache entry: 2,048 of them
# (about 5 MB) hold the current draws of about 700 instruments.
@functools.lru_cache(maxsize=2048)
def _two_pages(seed: int, instrument: int, side: int, block: int, page: int) -> np.ndarray:
    """(2, 2 * PAGE_TICKS) draws of ``block`` and of the next block: for asks, the ticks of
    ``page`` and the page above, up; for bids, those of ``page`` and the page below, down.
    A side's levels from a best tick in ``page`` are then a slice."""
    pages = (page, page + 1) if side == Side.SELL else (page, page - 1)
    rows = []
    for b in (block, block + 1):
        parts = [_page(seed, instrument, side, b, p) for p in pages]
        rows.append(np.concatenate(parts if side == Side.SELL else [part[::-1] for part in parts]))
    return _frozen(np.stack(rows))


# A page is 64 draws (about 0.7 KB with its cache entry): 4,096 of them (about 3 MB) keep
# the pages of the current draws until the next block needs them too.
@functools.lru_cache(maxsize=4096)
def _page(seed: int, instrument: int, side: int, block: int, page: int) -> np.ndarray:
    """PAGE_TICKS standard normals, one per tick of ``page`` (which may be negative)."""
    page_key = 2 * page if page >= 0 else -2 * page - 1
    side_key = 0 if side == Side.BUY else 1
    key = (BOOK_STREAM, instrument, _LEVEL_NOISE, side_key, block, page_key)
    return _frozen(_stream(seed, key).standard_normal(PAGE_TICKS))


@functools.lru_cache(maxsize=16)
def _weights(refresh: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1 - w, w and sqrt((1 - w)^2 + w^2) for w = offset / refresh, offset 0 to refresh - 1,
    each worked out in Python floats as ``_factors`` does for one offset."""
    weights = [offset / refresh for offset in range(refresh)]
    near = [1 - w for w in weights]
    norm = [math.sqrt((1 - w) ** 2 + w * w) for w in weights]
    return _frozen(np.array(near)), _frozen(np.array(weights)), _frozen(np.array(norm))


def _tick_draws(seed: int, instrument: int, block: int, offset: int, refresh: int) -> np.ndarray:
    """The three uniforms of the sequence ``offset`` into ``block``: whether a quiet tick
    prints, its side, and the size of a quiet or closing print. The block's stream holds
    them row by row; they are drawn _DRAW_ROWS rows at a time."""
    chunk, row = divmod(offset, _DRAW_ROWS)
    return _draw_rows(seed, instrument, block, chunk, min(_DRAW_ROWS, refresh - chunk * _DRAW_ROWS))[row]


# Rows of tick draws made at once: a block of up to 4,096 sequences is drawn in pieces, so
# a cache entry stays under 2 KB whatever refresh_ticks is (2,048 of them, at most 4 MB).
_DRAW_ROWS = 64


@functools.lru_cache(maxsize=2048)
def _draw_rows(seed: int, instrument: int, block: int, chunk: int, rows: int) -> np.ndarray:
    """Rows ``chunk * _DRAW_ROWS`` on of the block's (refresh_ticks, 3) uniforms."""
    stream = _stream(seed, (BOOK_STREAM, instrument, _TICK_DRAWS, block))
    stream.bit_generator.advance(3 * _DRAW_ROWS * chunk)  # one 64-bit output per uniform
    return _frozen(stream.random((rows, 3)))


def _stream(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


_NO_IDS = _frozen(np.empty(0, dtype=np.int64))
_NO_PRICES = _frozen(np.empty(0, dtype=np.float64))
_NO_SIDES = _frozen(np.empty(0, dtype=np.int8))


def _instrument_keys(instruments: Sequence[int]) -> list[int]:
    keys = list(instruments)
    if not all(type(key) is int for key in keys) or (
        keys and not 0 <= min(keys) <= max(keys) <= INSTRUMENT_KEY_MAX
    ):
        for i, key in enumerate(keys):
            try:
                _check_int("instrument", key, 0, INSTRUMENT_KEY_MAX)
            except ParameterError as error:
                raise _entry(error, i) from None
        keys = [int(key) for key in keys]
    return keys


def _tick_column(tick_sizes: float | Sequence[float], count: int) -> _Grid:
    """A batch's tick sizes: one for all, or one per instrument."""
    if isinstance(tick_sizes, (numbers.Real, str, bytes)):
        return _Grid(_check_tick(tick_sizes))
    ticks = list(tick_sizes)
    _check_count("tick_sizes", ticks, count)
    for i, tick in enumerate(ticks):
        try:
            _check_tick(tick)
        except ParameterError as error:
            raise _entry(error, i) from None
    return _Grid(np.array(ticks, dtype=np.float64))


def _flag_column(positive: bool | Sequence[bool], count: int) -> np.ndarray:
    if isinstance(positive, (bool, np.bool_, numbers.Real)):
        return np.full(count, bool(positive))
    flags = [bool(flag) for flag in positive]
    _check_count("positive", flags, count)
    return np.array(flags, dtype=bool)


def _price_column(
    field: str, prices: Sequence[float] | np.ndarray, grid: _Grid, flags: np.ndarray
) -> np.ndarray:
    """A batch's prices as whole ticks (int64), each checked as ``_ticks`` checks one."""
    values = list(prices.tolist() if isinstance(prices, np.ndarray) else prices)
    _check_count(f"{field}s", values, len(flags))
    if all(type(value) is float for value in values):
        values = np.array(values, dtype=np.float64)
        with np.errstate(all="ignore"):
            ratio = values / grid.ticks
            at = np.rint(ratio)  # half to even, as round()
            good = np.isfinite(values) & (np.abs(ratio) <= PRICE_TICKS_MAX) & (~flags | (at >= 1))
        if good.all():
            return at.astype(np.int64)
    ticks = np.broadcast_to(grid.ticks, len(flags)).tolist()
    at = []
    for i, (value, tick, flag) in enumerate(zip(values, ticks, flags.tolist(), strict=True)):
        try:
            at.append(_ticks(value, tick, field, flag))
        except ParameterError as error:
            raise _entry(error, i) from None
    return np.array(at, dtype=np.int64)


def _check_count(field: str, values: list, count: int) -> None:
    if len(values) != count:
        raise ParameterError(
            field, f"{field} must have {count} entries, one per instrument, got {len(values)}"
        )


def _entry(error: ParameterError, index: int) -> ParameterError:
    """``error`` about one instrument's value, named as that entry of the batch's column."""
    field = f"{error.field}s[{index}]"
    return ParameterError(field, field + str(error)[len(error.field) :])


def _number(field: str, value: object) -> float:
    if isinstance(value, float):  # float and numpy's float64, the common case
        return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(field, f"{field} must be a number, got {quoted(value)}")
    return float(value)


def _check_int(field: str, value: object, low: int, high: int) -> int:
    if type(value) is int and low <= value <= high:  # the common case, before the general check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ParameterError(field, f"{field} must be an integer in [{low}, {high}], got {quoted(value)}")
    return int(value)


def _check_keys(seed: int, instrument: int, sequence: int) -> None:
    _check_int("seed", seed, 0, 2**64 - 1)
    _check_int("instrument", instrument, 0, INSTRUMENT_KEY_MAX)
    _check_int("sequence", sequence, 0, SEQUENCE_MAX)


def _check_trade_sequence(sequence: int) -> None:
    if sequence < 1:
        raise ParameterError("sequence", f"sequence must be at least 1 for trades, got {sequence}")


def _check_tick(tick_size: float) -> float:
    value = _number("tick_size", tick_size)
    if not TICK_SIZE_MIN <= value <= TICK_SIZE_MAX:  # the message is only built when needed
        check_range("tick_size", value, TICK_SIZE_MIN, TICK_SIZE_MAX)
    return value


def _ticks(price: float, tick: float, field: str, positive: bool) -> int:
    """``price`` as a whole number of ticks (the nearest point of the grid); a positive
    instrument's price at least one tick, as the market publishes it."""
    value = _number(field, price)
    ticks = round(value / tick) if math.isfinite(value) and abs(value / tick) <= PRICE_TICKS_MAX else None
    if ticks is None or (positive and ticks < 1):
        accepted = "at least one tick and" if positive else "a finite number"
        raise ParameterError(field, f"{field} must be {accepted} at most 2^50 ticks, got {quoted(price)}")
    return ticks
