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
  [best bid, best ask), strictly inside when ``spread_bps`` > 0.
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
  uniformly in [1, old touch size]. So a move's prints lie within (p(n-1),
  p(n)] and its last print is at p(n): last price and trades agree. The book
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
keys and cached (``functools.lru_cache``), so a live feed that asks for
consecutive sequences draws a new stream only once per block; the cache
holds no state that could change a result.
"""

from __future__ import annotations

import enum
import functools
import math
import numbers
from dataclasses import dataclass
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
    of its arguments (see the module docstring)."""

    def __init__(self, params: BookParams | None = None) -> None:
        self.params = params if params is not None else BookParams()
        steps = np.arange(self.params.levels, dtype=np.int64)
        # Mean lots by distance from the touch, and the distances as floats for prices.
        self._mean = _frozen(self.params.touch_lots * (1.0 + self.params.growth * steps))
        self._steps = _frozen(steps.astype(np.float64))
        self._means: dict[tuple[int, int], np.ndarray] = {}  # at most (levels + 1)^2 entries

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
        levels = self.params.levels
        depth = levels if depth is None else _check_int("depth", depth, 1, levels)
        _check_keys(seed, instrument, sequence)
        tick = _check_tick(tick_size)
        at = _ticks(price, tick, "price", positive)
        return self._book(seed, instrument, sequence, at, tick, positive, depth)

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
        if sequence < 1:
            raise ParameterError("sequence", f"sequence must be at least 1 for trades, got {sequence}")
        tick = _check_tick(tick_size)
        start, end = _ticks(prev_price, tick, "prev_price", positive), _ticks(price, tick, "price", positive)
        params = self.params
        block, offset = divmod(sequence, params.refresh_ticks)
        u_happens, u_side, u_size = _tick_draws(seed, instrument, block, offset, params.refresh_ticks)
        best_bid, best_ask = _touch(start, tick, params.spread_bps, positive)
        if end == start:
            if u_happens >= params.quiet_print_probability:
                return _trades(sequence, [], [], Side.BUY, tick)
            # A buyer meets the best ask, a seller the best bid.
            side = Side.BUY if u_side < 0.5 else Side.SELL
            best = best_ask if side is Side.BUY else best_bid
            (touch_lots,) = self._side_lots(seed, instrument, sequence - 1, Side(-side), best, 1).tolist()
            return _trades(sequence, [best], [_fraction(u_size, touch_lots)], side, tick)
        # Only the levels the move takes are sized: the prefix of the side it meets.
        if end > start:
            side, best, step = Side.BUY, best_ask, 1
            taken = max(0, min(end - best_ask + 1, params.levels))
        else:
            side, best, step = Side.SELL, best_bid, -1
            taken = max(0, min(best_bid - end + 1, _bid_count(best_bid, params.levels, positive)))
        lots = self._side_lots(seed, instrument, sequence - 1, Side(-side), best, max(taken, 1)).tolist()
        prints = list(range(best, best + step * taken, step))
        lots, touch_lots = lots[:taken], lots[0]
        if not prints or prints[-1] != end:  # inside the spread, or past the last level
            prints.append(end)
            lots.append(_fraction(u_size, touch_lots))
        return _trades(sequence, prints, lots, side, tick)

    def _book(
        self, seed: int, instrument: int, sequence: int, at: int, tick: float, positive: bool, depth: int
    ) -> Book:
        """Both sides to ``depth`` levels: every level's size depends only on its side, price
        and sequence and its distance from the touch, so a shallower book is computed as such."""
        best_bid, best_ask = _touch(at, tick, self.params.spread_bps, positive)
        bids = min(depth, _bid_count(best_bid, self.params.levels, positive))
        lots = self._lots(seed, instrument, sequence, best_bid, bids, best_ask, depth)
        units, scale = decimal_grid(tick)
        prices = np.empty(bids + depth)  # bids best first, then asks best first, as ticks
        np.subtract(best_bid, self._steps[:bids], out=prices[:bids])
        np.add(best_ask, self._steps[:depth], out=prices[bids:])
        prices *= units  # then as TickGrid.prices writes them: exact decimals, no -0.0
        prices /= scale
        prices += 0.0
        prices.setflags(write=False)  # its views, the book's arrays, are read-only too
        return Book(sequence, prices[:bids], lots[:bids], prices[bids:], lots[bids:])

    def _side_lots(
        self, seed: int, instrument: int, sequence: int, side: Side, best: int, count: int
    ) -> np.ndarray:
        """Lots of the first ``count`` levels of ``side`` whose best level is at tick ``best``."""
        if side is Side.BUY:
            return self._lots(seed, instrument, sequence, best, count, 0, 0)
        return self._lots(seed, instrument, sequence, 0, 0, best, count)

    def _lots(
        self, seed: int, instrument: int, sequence: int, best_bid: int, bids: int, best_ask: int, asks: int
    ) -> np.ndarray:
        """Lots of the first ``bids`` bid levels from ``best_bid`` down, then of the first
        ``asks`` ask levels from ``best_ask`` up (int64, read-only). Each operation is the
        model's formula applied element by element, so the values are those of any other
        evaluation of it."""
        params = self.params
        block, offset = divmod(sequence, params.refresh_ticks)
        z = _noise_draws(seed, instrument, block, best_bid, bids, best_ask, asks)
        if offset:  # from this block's draws towards the next block's, at unit variance
            w = offset / params.refresh_ticks
            there = _noise_draws(seed, instrument, block + 1, best_bid, bids, best_ask, asks)
            z *= 1 - w
            there *= w
            z += there
            z /= math.sqrt((1 - w) ** 2 + w * w)
        sigma = params.size_noise
        z *= sigma  # log-normal with mean one, times the mean of each level's distance
        z -= sigma * sigma / 2
        np.exp(z, out=z)
        z *= self._level_means(bids, asks)
        np.rint(z, out=z)
        np.maximum(z, 1, out=z)
        np.minimum(z, LOTS_MAX, out=z)
        return _frozen(z.astype(np.int64))

    def _level_means(self, bids: int, asks: int) -> np.ndarray:
        means = self._means.get((bids, asks))
        if means is None:
            means = self._means[bids, asks] = _frozen(np.concatenate((self._mean[:bids], self._mean[:asks])))
        return means


def diff(old: Book, new: Book) -> list[LevelChange]:
    """The level changes that turn ``old`` into ``new``: every level of ``new`` that is not
    in ``old`` at the same size, and size 0 for every level of ``old`` gone from ``new``
    (moved away, crossed, or out of the depth). Bids first, then asks, each best first.
    Both books' sides are in their documented order, best first, as the model makes them."""
    changes: list[LevelChange] = []
    for side in (Side.BUY, Side.SELL):
        old_prices, old_sizes = old.side(side)
        new_prices, new_sizes = new.side(side)
        changes += _side_changes(
            side, old_prices.tolist(), old_sizes.tolist(), new_prices.tolist(), new_sizes.tolist()
        )
    return changes


def _side_changes(
    side: Side, old_prices: list, old_sizes: list, new_prices: list, new_sizes: list
) -> list[LevelChange]:
    """One side's changes, by merging the two best-first lists of levels."""
    if old_prices == new_prices:  # the same levels: only sizes may differ
        return [
            _change((side, price, size))
            for price, size, was in zip(new_prices, new_sizes, old_sizes, strict=True)
            if size != was
        ]
    bids = side is Side.BUY
    changes = []
    i = j = 0
    while i < len(old_prices) and j < len(new_prices):
        was, now = old_prices[i], new_prices[j]
        if was == now:
            if old_sizes[i] != new_sizes[j]:
                changes.append(_change((side, now, new_sizes[j])))
            i += 1
            j += 1
        elif (was > now) is bids:  # the old level comes first: the new book lacks it
            changes.append(_change((side, was, 0)))
            i += 1
        else:
            changes.append(_change((side, now, new_sizes[j])))
            j += 1
    changes += [_change((side, was, 0)) for was in old_prices[i:]]
    changes += [_change((side, now, size)) for now, size in zip(new_prices[j:], new_sizes[j:], strict=True)]
    return changes


def _change(level: tuple) -> LevelChange:
    """A LevelChange from a (side, price, size) tuple, without NamedTuple's keyword parsing."""
    return tuple.__new__(LevelChange, level)


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
    """Empty the caches of random draws (they only save work: results never depend on them)."""
    _page.cache_clear()
    _draw_rows.cache_clear()


def _touch(at: int, tick: float, spread_bps: float, positive: bool) -> tuple[int, int]:
    """Best bid and ask in ticks around the price ``at`` ticks: the rounding of quotes.quotes."""
    units, scale = decimal_grid(tick)
    price = at * units / scale + 0.0  # the published price (TickGrid.prices), as quotes.quotes sees it
    half = abs(price) * (spread_bps / 1e4 / 2)
    bid = math.floor((price - half) / tick + 1e-9)
    if positive:
        bid = max(bid, 1)
    return bid, max(math.ceil((price + half) / tick - 1e-9), bid + 1)


def _bid_count(best_bid: int, levels: int, positive: bool) -> int:
    """How many bid levels the full book has: a positive instrument's stop at one tick."""
    return min(levels, best_bid) if positive else levels


def _noise_draws(
    seed: int, instrument: int, block: int, best_bid: int, bids: int, best_ask: int, asks: int
) -> np.ndarray:
    """The block's standard normals of the first ``bids`` bid levels from ``best_bid`` down,
    then of the first ``asks`` ask levels up from ``best_ask``: a new array."""
    parts = [
        part[::-1] for part in reversed(_run(seed, instrument, Side.BUY, block, best_bid - bids + 1, bids))
    ]
    parts += _run(seed, instrument, Side.SELL, block, best_ask, asks)
    return np.concatenate(parts)


def _run(seed: int, instrument: int, side: Side, block: int, low: int, count: int) -> list[np.ndarray]:
    """Views of the block's draws at the ``count`` consecutive ticks from ``low`` up: at most
    PAGE_TICKS ticks, so within one page or two."""
    if not count:
        return []
    page, at = divmod(low, PAGE_TICKS)
    first = _page(seed, instrument, int(side), block, page)
    if at + count <= PAGE_TICKS:
        return [first[at : at + count]]
    return [first[at:], _page(seed, instrument, int(side), block, page + 1)[: at + count - PAGE_TICKS]]


# A page is 64 draws (about 0.7 KB with its cache entry): this bounds the cache near 6 MB and
# holds the pages of about a thousand instruments moving through their blocks.
@functools.lru_cache(maxsize=8192)
def _page(seed: int, instrument: int, side: int, block: int, page: int) -> np.ndarray:
    """PAGE_TICKS standard normals, one per tick of ``page`` (which may be negative)."""
    page_key = 2 * page if page >= 0 else -2 * page - 1
    side_key = 0 if side == Side.BUY else 1
    key = (BOOK_STREAM, instrument, _LEVEL_NOISE, side_key, block, page_key)
    return _frozen(_stream(seed, key).standard_normal(PAGE_TICKS))


def _tick_draws(seed: int, instrument: int, block: int, offset: int, refresh: int) -> np.ndarray:
    """The three uniforms of the sequence ``offset`` into ``block``: whether a quiet tick
    prints, its side, and the size of a quiet or closing print. The block's stream holds
    them row by row; they are drawn DRAW_ROWS rows at a time."""
    chunk, row = divmod(offset, _DRAW_ROWS)
    return _draw_rows(seed, instrument, block, chunk, min(_DRAW_ROWS, refresh - chunk * _DRAW_ROWS))[row]


# Rows of tick draws made at once: a block of up to 4,096 sequences is drawn in pieces, so
# a cache entry stays under 2 KB whatever refresh_ticks is.
_DRAW_ROWS = 64


@functools.lru_cache(maxsize=4096)
def _draw_rows(seed: int, instrument: int, block: int, chunk: int, rows: int) -> np.ndarray:
    """Rows ``chunk * _DRAW_ROWS`` on of the block's (refresh_ticks, 3) uniforms."""
    stream = _stream(seed, (BOOK_STREAM, instrument, _TICK_DRAWS, block))
    stream.bit_generator.advance(3 * _DRAW_ROWS * chunk)  # one 64-bit output per uniform
    return _frozen(stream.random((rows, 3)))


def _stream(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _fraction(u: float, lots: int) -> int:
    """A size uniform in [1, lots] from the uniform ``u`` in [0, 1)."""
    return min(int(lots), 1 + int(u * lots))


def _trades(sequence: int, ticks: list[int], lots: list[int], side: Side, tick: float) -> Trades:
    count = len(ticks)
    units, scale = decimal_grid(tick)
    prices = np.array(ticks, dtype=np.float64)
    prices *= units  # as TickGrid.prices writes them
    prices /= scale
    prices += 0.0
    return Trades(
        sequence,
        _frozen(sequence * TRADE_ID_STRIDE + _INDEXES[:count]),
        _frozen(prices),
        _frozen(np.array(lots, dtype=np.int64)),
        _frozen(np.full(count, int(side), dtype=np.int8)),
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


_INDEXES = _frozen(np.arange(TRADE_ID_STRIDE, dtype=np.int64))


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


def _check_tick(tick_size: float) -> float:
    value = _number("tick_size", tick_size)
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
