"""Order books kept from a subscription's snapshots and incremental updates.

    keeper = BookKeeper()
    with md.subscribe(data=[order_book(["ACME"], depth=10)], numpy=True) as events:
        for event in events:
            keeper.apply(event)
            book = keeper["ACME"]
            if not book.stale:
                print(book.best_bid, book.best_ask, book.bid_sizes[:3])

A book_snapshot replaces the books it holds; a book_update sets the levels it
lists (a size of 0 removes one) on the book at its ``previous_sequence``. An
update that does not follow the local book (a tick was missed) is not applied:
the book becomes ``stale`` and ``gaps`` counts it, until the next snapshot
(which the server sends after any gap it makes) heals it. With
``raise_on_gap=True`` such an update also raises BookGap, once the rest of the
event is applied.

Every applied book is checked (unless ``check=False``): prices finite and
strictly sorted best first, never crossed (best bid below best ask), sizes
above 0, as many sizes as prices, no more levels than the depth. A book that
fails is dropped and stale, and InvalidBook names it, once the rest of the
event is applied: a caller that catches it keeps going until the next
snapshot.

Books come as MarketEvents, DecodedEvents, OrderBooks or OrderBook messages
or decoded BookColumns; an event's books are applied together with a few
numpy operations, whatever their number. ``keeper[symbol]`` is a Book: the
levels as numpy arrays (prices float64, sizes int64 lots, best first) with the
best bid and ask, mid and spread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from marketdata.v1 import market_data_pb2 as pb

from .events import BookArrays, BookColumns, DecodedEvent, book_columns, event_books, event_kind

__all__ = ["Book", "BookGap", "BookKeeper", "InvalidBook"]

# Books in any form: decoded columns, an OrderBooks message, one book, or an iterable of books.
Books = BookColumns | pb.OrderBooks | pb.OrderBook | BookArrays | Iterable

_EMPTY_PRICES = np.empty(0, dtype=np.float64)
_EMPTY_SIZES = np.empty(0, dtype=np.int64)
for _array in (_EMPTY_PRICES, _EMPTY_SIZES):
    _array.flags.writeable = False


class BookGap(Exception):
    """Updates that did not follow the local books of ``symbols``: they are stale until the
    next snapshot. Raised only by a BookKeeper made with ``raise_on_gap=True``."""

    def __init__(self, symbols: Sequence[str], details: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        super().__init__(_listed("book gap", details))


class InvalidBook(ValueError):
    """Books that broke an invariant (``reasons``, one line per book): they were dropped and
    stay stale until the next snapshot."""

    def __init__(self, symbols: Sequence[str], reasons: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self.reasons = tuple(reasons)
        super().__init__(_listed("invalid book", reasons))


def _listed(what: str, lines: Sequence[str]) -> str:
    shown = "; ".join(lines[:10])
    more = f" (and {len(lines) - 10} more)" if len(lines) > 10 else ""
    return f"{what}: {shown}{more}"


@dataclass(frozen=True, eq=False)
class Book:
    """One symbol's book: levels best first, prices float64, sizes int64 lots (read-only).

    ``sequence`` is the book sequence it reflects (None before any snapshot); a ``stale`` book
    missed an update or broke an invariant and waits for a snapshot (``reason`` says why);
    its levels are the last good ones, or none.
    """

    symbol: str
    sequence: int | None
    depth: int
    stale: bool
    reason: str
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray

    @property
    def best_bid(self) -> float | None:
        return float(self.bid_prices[0]) if len(self.bid_prices) else None

    @property
    def best_ask(self) -> float | None:
        return float(self.ask_prices[0]) if len(self.ask_prices) else None

    @property
    def best_bid_size(self) -> int | None:
        return int(self.bid_sizes[0]) if len(self.bid_sizes) else None

    @property
    def best_ask_size(self) -> int | None:
        return int(self.ask_sizes[0]) if len(self.ask_sizes) else None

    @property
    def mid(self) -> float | None:
        """Halfway between the best bid and ask; None while a side is empty."""
        if not (len(self.bid_prices) and len(self.ask_prices)):
            return None
        return (float(self.bid_prices[0]) + float(self.ask_prices[0])) / 2

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid; None while a side is empty."""
        if not (len(self.bid_prices) and len(self.ask_prices)):
            return None
        return float(self.ask_prices[0]) - float(self.bid_prices[0])

    @classmethod
    def of(cls, book: pb.OrderBook | BookArrays) -> Book:
        """A checked Book from one whole book (GetOrderBook's ``book``, say); InvalidBook if bad."""
        keeper = BookKeeper()
        keeper.apply_snapshot(book)
        return keeper[book.symbol]


class _Side:
    """The levels of one side of every book, as one sorted array of complex keys (symbol index
    + 1j * price, the price negated for bids so that the best comes first) and their sizes."""

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.keys = np.empty(0, dtype=np.complex128)
        self.sizes = np.empty(0, dtype=np.int64)

    def bounds(self, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each book's levels start and end."""
        low = np.searchsorted(self.keys, owners + complex(0, -np.inf))
        return low, np.searchsorted(self.keys, owners + complex(1, -np.inf))

    def levels(self, owner: int) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.bounds(np.array([owner], dtype=np.float64))
        keys = self.keys[low[0] : high[0]]
        if not len(keys):
            return _EMPTY_PRICES, _EMPTY_SIZES
        prices = keys.imag * self.sign  # a new array
        sizes = self.sizes[low[0] : high[0]]
        prices.flags.writeable = False
        return prices, sizes

    def drop(self, lookup: np.ndarray) -> None:
        """Remove the levels of the books where the per-symbol boolean ``lookup`` is True."""
        keep = ~lookup[self.keys.real.astype(np.int64)]
        self.keys, self.sizes = self.keys[keep], self.sizes[keep]

    def set(self, keys: np.ndarray, sizes: np.ndarray) -> None:
        self.keys, self.sizes = keys, sizes
        sizes.flags.writeable = False


class BookKeeper:
    """The books of a subscription, per symbol (see the module docstring).

    ``top_of_book=True`` keeps the depth-1 books of top_of_book events instead of the books of
    book_snapshot and book_update events (each top_of_book entry is a whole depth-1 book).
    """

    def __init__(self, *, top_of_book: bool = False, raise_on_gap: bool = False, check: bool = True) -> None:
        self.top_of_book = top_of_book
        self.raise_on_gap = raise_on_gap
        self.check = check
        self.gaps = 0  # updates that did not follow their local book
        self.invalid = 0  # books dropped for breaking an invariant
        self._index: dict[str, int] = {}
        self._symbols: list[str | None] = []  # by index; None once discarded
        self._sequence = np.zeros(0, dtype=np.uint64)
        self._depth = np.zeros(0, dtype=np.int64)
        self._fresh = np.zeros(0, dtype=bool)  # holds a checked book that updates may follow
        self._seen = np.zeros(0, dtype=bool)  # had a snapshot
        self._waiting = np.zeros(0, dtype=bool)  # stale, and said so: waits for a snapshot
        self._reasons: dict[int, str] = {}
        self._bids, self._asks = _Side(-1.0), _Side(1.0)
        self._recent: dict[tuple[str, ...], np.ndarray] = {}

    # --- reading ---------------------------------------------------------------------------

    def __getitem__(self, symbol: str) -> Book:
        index = self._index.get(symbol)
        if index is None:
            raise KeyError(f"no book of {symbol!r}: no snapshot or update of it yet")
        bid_prices, bid_sizes = self._bids.levels(index)
        ask_prices, ask_sizes = self._asks.levels(index)
        seen = bool(self._seen[index])
        return Book(
            symbol=symbol,
            sequence=int(self._sequence[index]) if seen else None,
            depth=int(self._depth[index]),
            stale=not self._fresh[index],
            reason=self._reasons.get(index, ""),
            bid_prices=bid_prices,
            bid_sizes=bid_sizes,
            ask_prices=ask_prices,
            ask_sizes=ask_sizes,
        )

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def stale(self) -> tuple[str, ...]:
        """Symbols whose book waits for a snapshot."""
        return tuple(symbol for symbol, index in self._index.items() if not self._fresh[index])

    def discard(self, symbol: str) -> None:
        """Forget a symbol's book (after unsubscribing it); nothing if there is none."""
        index = self._index.pop(symbol, None)
        if index is None:
            return
        self._symbols[index] = None
        self._recent.clear()
        lookup = np.zeros(len(self._symbols), dtype=bool)
        lookup[index] = True
        self._bids.drop(lookup)
        self._asks.drop(lookup)
        self._fresh[index] = self._seen[index] = self._waiting[index] = False
        self._reasons.pop(index, None)

    # --- applying --------------------------------------------------------------------------

    def apply(self, event: pb.MarketEvent | DecodedEvent) -> tuple[str, ...]:
        """Apply a book event (other kinds are ignored); the symbols whose book it changed."""
        kind = event_kind(event)
        if kind == "book_snapshot" and not self.top_of_book:
            return self.apply_snapshot(event_books(event))
        if kind == "book_update" and not self.top_of_book:
            return self.apply_update(event_books(event))
        if kind == "top_of_book" and self.top_of_book:
            return self.apply_snapshot(event_books(event))
        return ()

    def apply_snapshot(
        self, books: BookColumns | pb.OrderBooks | pb.OrderBook | BookArrays | Iterable
    ) -> tuple[str, ...]:
        """Replace the books of the symbols in ``books`` (whole books); the symbols applied."""
        columns = book_columns(books)
        if len(set(columns.symbol)) < len(columns):
            return self._one_by_one(columns, self.apply_snapshot)
        owners = self._owners(columns.symbol)
        bad = np.zeros(len(columns), dtype=bool)
        reasons: dict[int, str] = {}
        sides = []
        for side, prices, sizes in (
            (self._bids, columns.bid_prices, columns.bid_sizes),
            (self._asks, columns.ask_prices, columns.ask_sizes),
        ):
            rows, keys, lots = self._rows(columns, owners, side, prices, sizes, bad, reasons)
            if self.check and len(rows) > 1:
                follows = rows[1:] == rows[:-1]
                unsorted = follows & ~(keys[1:] > keys[:-1])  # not strictly best first
                self._flag(rows[1:][unsorted], bad, reasons, f"{_name(side)} not strictly sorted best first")
            sides.append((rows, keys, lots))
        depth = columns.depth.astype(np.int64)
        if self.check:
            self._check_depth(columns, depth, bad, reasons)
            self._check_crossed(columns, sides, bad, reasons)
        replaced = np.zeros(len(self._symbols), dtype=bool)
        replaced[owners] = True
        for side, (rows, keys, lots) in zip((self._bids, self._asks), sides, strict=True):
            side.drop(replaced)
            use = ~bad[rows]
            merged = np.concatenate((side.keys, _keys(owners[rows[use]], keys[use])))
            order = np.argsort(merged, kind="stable")
            side.set(merged[order], np.concatenate((side.sizes, lots[use]))[order])
        good = ~bad
        self._sequence[owners] = columns.sequence
        self._depth[owners] = depth
        self._fresh[owners] = good
        self._waiting[owners] = bad
        self._seen[owners] = True
        for owner in owners[good].tolist():
            self._reasons.pop(owner, None)
        return self._finish(columns, owners, good, reasons, [])

    def apply_update(
        self, books: BookColumns | pb.OrderBooks | pb.OrderBook | BookArrays | Iterable
    ) -> tuple[str, ...]:
        """Apply the changed levels in ``books`` to the books they follow; the symbols applied."""
        columns = book_columns(books)
        if len(set(columns.symbol)) < len(columns):
            return self._one_by_one(columns, self.apply_update)
        owners = self._owners(columns.symbol)
        follows = self._fresh[owners] & (columns.previous_sequence == self._sequence[owners])
        gapped = ~follows & ~self._waiting[owners]  # a book already waiting is not counted again
        gaps = []
        for i in np.flatnonzero(gapped).tolist():
            owner = int(owners[i])
            symbol = columns.symbol[i]
            gaps.append(
                f"{symbol}: update {columns.sequence[i]} follows {columns.previous_sequence[i]}, "
                f"the book is at {self._sequence[owner]}"
                if self._seen[owner]
                else f"{symbol}: update {columns.sequence[i]} before any snapshot"
            )
            self._reasons[owner] = "gap: " + gaps[-1].split(": ", 1)[1]
        self.gaps += len(gaps)
        self._fresh[owners] = follows
        self._waiting[owners] |= gapped
        if not follows.all():
            columns, owners = columns.select(follows), owners[follows]
        bad = np.zeros(len(columns), dtype=bool)
        reasons: dict[int, str] = {}
        merged_sides = []
        for side, prices, sizes in (
            (self._bids, columns.bid_prices, columns.bid_sizes),
            (self._asks, columns.ask_prices, columns.ask_sizes),
        ):
            rows, keys, lots = self._rows(columns, owners, side, prices, sizes, bad, reasons, update=True)
            if bad.any():
                use = ~bad[rows]
                rows, keys, lots = rows[use], keys[use], lots[use]
            merged = np.concatenate((side.keys, _keys(owners[rows], keys)))
            order = np.argsort(merged, kind="stable")  # the state first, then the changes in order
            merged = merged[order]
            lots = np.concatenate((side.sizes, lots))[order]
            last = np.ones(len(merged), dtype=bool)
            np.not_equal(merged[1:], merged[:-1], out=last[:-1])  # the last word on each level
            keep = last & (lots != 0)
            merged_sides.append((merged[keep], lots[keep]))
        if self.check:
            self._check_merged(columns, owners, merged_sides, bad, reasons)
        for side, (keys, lots) in zip((self._bids, self._asks), merged_sides, strict=True):
            side.set(keys, lots)
        if bad.any():
            dropped = np.zeros(len(self._symbols), dtype=bool)
            dropped[owners[bad]] = True
            self._bids.drop(dropped)
            self._asks.drop(dropped)
            self._fresh[owners[bad]] = False
            self._waiting[owners[bad]] = True
        self._sequence[owners] = columns.sequence
        return self._finish(columns, owners, ~bad, reasons, gaps)

    # --- the parts -------------------------------------------------------------------------

    def _owners(self, symbols: tuple[str, ...]) -> np.ndarray:
        """Each symbol's index as a float (the real part of the level keys), new ones added."""
        owners = self._recent.get(symbols)
        if owners is not None:
            return owners
        index = self._index
        for symbol in symbols:
            if symbol not in index:
                index[symbol] = len(self._symbols)
                self._symbols.append(symbol)
        grow = len(self._symbols) - len(self._fresh)
        if grow:
            self._sequence = np.concatenate((self._sequence, np.zeros(grow, dtype=np.uint64)))
            self._depth = np.concatenate((self._depth, np.zeros(grow, dtype=np.int64)))
            self._fresh = np.concatenate((self._fresh, np.zeros(grow, dtype=bool)))
            self._seen = np.concatenate((self._seen, np.zeros(grow, dtype=bool)))
            self._waiting = np.concatenate((self._waiting, np.zeros(grow, dtype=bool)))
        owners = np.array([index[s] for s in symbols], dtype=np.int64)
        if len(self._recent) >= 16:
            self._recent.clear()
        self._recent[symbols] = owners
        return owners

    def _rows(self, columns, owners, side, prices, sizes, bad, reasons, update=False):
        """One side's levels of every book: the book each belongs to (its position in
        ``columns``), its key (the price, negated for bids) and its size as int64."""
        name = _name(side)
        counts = columns.counts(f"{name}_prices")
        size_counts = columns.counts(f"{name}_sizes")
        if not np.array_equal(counts, size_counts):  # not parallel: the book is dropped
            mismatched = counts != size_counts
            for i in np.flatnonzero(mismatched).tolist():
                self._flag_one(i, bad, reasons, f"{counts[i]} {name} prices but {size_counts[i]} sizes")
            prices = prices[np.repeat(~mismatched, counts)]
            sizes = sizes[np.repeat(~mismatched, size_counts)]
            counts = np.where(mismatched, 0, counts)
        rows = np.repeat(np.arange(len(columns)), counts)
        keys = -prices if side.sign < 0 else prices
        lots = sizes.view(np.int64)  # sizes of 2^63 lots and more turn negative: caught below
        if self.check:
            self._flag(rows[~np.isfinite(keys)], bad, reasons, f"{name} price not finite")
            small = lots < 0 if update else lots <= 0  # in an update, 0 removes a level
            self._flag(rows[small], bad, reasons, f"{name} size not above 0 lots")
        return rows, keys, lots

    def _check_depth(self, columns, depth, bad, reasons):
        for name in ("bid", "ask"):
            over = (depth > 0) & (columns.counts(f"{name}_prices") > depth)
            self._flag(np.flatnonzero(over), bad, reasons, f"more {name} levels than the depth")

    def _check_crossed(self, columns, sides, bad, reasons):
        """Snapshot books: the first bid below the first ask."""
        best = np.full((2, len(columns)), np.nan)
        for row, (rows, keys, _) in enumerate(sides):
            firsts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))[: len(rows)]
            best[row, rows[firsts]] = keys[firsts]
        crossed = -best[0] >= best[1]  # False where a side is empty (nan)
        self._flag(np.flatnonzero(crossed), bad, reasons, "crossed: best bid at or above best ask")

    def _check_merged(self, columns, owners, merged_sides, bad, reasons):
        """Updated books after the merge: within the depth, not crossed."""
        count = len(self._symbols)
        book = np.full(count, -1)  # each symbol's position in ``columns``, -1 if not updated
        book[owners] = np.arange(len(owners))
        best = np.full((2, count), np.nan)
        for row, (name, (keys, _)) in enumerate(zip(("bid", "ask"), merged_sides, strict=True)):
            if not len(keys):
                continue
            symbols = keys.real.astype(np.int64)
            firsts = np.ones(len(symbols), dtype=bool)
            np.not_equal(symbols[1:], symbols[:-1], out=firsts[1:])
            best[row, symbols[firsts]] = keys.imag[firsts]
            over = (self._depth > 0) & (np.bincount(symbols, minlength=count) > self._depth)
            reason = f"more {name} levels than the depth (a removal missing)"
            self._flag(book[over & (book >= 0)], bad, reasons, reason)
        crossed = -best[0] >= best[1]  # the bid keys are negated prices; nan where a side is empty
        self._flag(book[crossed & (book >= 0)], bad, reasons, "crossed: best bid at or above best ask")

    @staticmethod
    def _flag(books: np.ndarray, bad: np.ndarray, reasons: dict[int, str], reason: str) -> None:
        if len(books):
            for i in np.unique(books).tolist():
                BookKeeper._flag_one(i, bad, reasons, reason)

    @staticmethod
    def _flag_one(i: int, bad: np.ndarray, reasons: dict[int, str], reason: str) -> None:
        bad[i] = True
        reasons.setdefault(i, reason)

    def _finish(self, columns, owners, good, reasons, gaps) -> tuple[str, ...]:
        if reasons:
            lines = []
            for i, reason in sorted(reasons.items()):
                self._reasons[int(owners[i])] = "invalid: " + reason
                lines.append(f"{columns.symbol[i]}: {reason}")
            self.invalid += len(lines)
            self._fresh[owners[~good]] = False
            raise InvalidBook([columns.symbol[i] for i in sorted(reasons)], lines)
        if gaps and self.raise_on_gap:
            raise BookGap([line.split(":", 1)[0] for line in gaps], gaps)
        if good.all():
            return columns.symbol
        return tuple(columns.symbol[i] for i in np.flatnonzero(good).tolist())

    def _one_by_one(self, columns: BookColumns, apply) -> tuple[str, ...]:
        """A symbol twice in one message: its books applied in order, one at a time."""
        applied: list[str] = []
        for i in range(len(columns)):
            mask = np.zeros(len(columns), dtype=bool)
            mask[i] = True
            applied += apply(columns.select(mask))
        return tuple(applied)


def _keys(owners: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Level keys: the symbol's index + 1j * the side's key."""
    out = np.empty(len(keys), dtype=np.complex128)
    out.real = owners
    out.imag = keys
    return out


def _name(side: _Side) -> str:
    return "bid" if side.sign < 0 else "ask"
