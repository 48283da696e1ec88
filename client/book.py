"""Order books kept from a subscription's snapshots and incremental updates.

    keeper = BookKeeper()
    data = [data_subscription("order_book", ["ACME"], depth=10)]
    with md.subscribe(data=data, numpy=True) as events:
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
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else (bid + ask) / 2

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid; None while a side is empty."""
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else ask - bid

    @classmethod
    def of(cls, book: pb.OrderBook | BookArrays) -> Book:
        """A checked Book from one whole book (GetOrderBook's ``book``, say); InvalidBook if bad."""
        keeper = BookKeeper()
        keeper.apply_snapshot(book)
        return keeper[book.symbol]


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
        # Every level of every book, sorted: a complex key, its real part the side of a book
        # (2 x the symbol's index for its bids, that + 1 for its asks), its imaginary part the
        # price, negated for bids so that each side's best comes first; and the sizes.
        self._keys = np.empty(0, dtype=np.complex128)
        self._sizes = np.empty(0, dtype=np.int64)
        self._recent: dict[tuple[str, ...], np.ndarray] = {}

    # --- reading ---------------------------------------------------------------------------

    def __getitem__(self, symbol: str) -> Book:
        index = self._index.get(symbol)
        if index is None:
            raise KeyError(f"no book of {symbol!r}: no snapshot or update of it yet")
        bounds = np.searchsorted(self._keys, [complex(2 * index + g, -np.inf) for g in range(3)]).tolist()
        bid_prices, bid_sizes = self._levels(bounds[0], bounds[1], -1.0)
        ask_prices, ask_sizes = self._levels(bounds[1], bounds[2], 1.0)
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

    def _levels(self, low: int, high: int, sign: float) -> tuple[np.ndarray, np.ndarray]:
        if low == high:
            return _EMPTY_PRICES, _EMPTY_SIZES
        prices = self._keys[low:high].imag * sign  # a new array
        prices.flags.writeable = False
        return prices, self._sizes[low:high]

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
        self._drop(np.array([index]))
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

    def apply_snapshot(self, books: Books) -> tuple[str, ...]:
        """Replace the books of the symbols in ``books`` (whole books); the symbols applied."""
        columns = book_columns(books)
        if len(set(columns.symbol)) < len(columns):
            return self._one_by_one(columns, self.apply_snapshot)
        owners = self._owners(columns.symbol)
        bad = np.zeros(len(columns), dtype=bool)
        reasons: dict[int, str] = {}
        groups, keys, lots, rows = self._levels_of(columns, owners, bad, reasons, update=False)
        rows = rows()
        depth = columns.depth.astype(np.int64)
        if self.check and len(rows):
            # Within a side of a book, each key above the one before: strictly best first.
            follows = groups[1:] == groups[:-1]
            unsorted = follows & ~(keys[1:] > keys[:-1])
            side = np.where(groups[1:][unsorted] % 2 == 0, "bid", "ask")
            for book, name in zip(rows[1:][unsorted].tolist(), side.tolist(), strict=True):
                self._flag_one(book, bad, reasons, f"{name} not strictly sorted best first")
        self._drop(owners)
        use = ~bad[rows]
        merged = np.concatenate((self._keys, _keys(groups[use], keys[use])))
        order = np.argsort(merged, kind="stable")
        merged, sizes = merged[order], np.concatenate((self._sizes, lots[use]))[order]
        if self.check:
            self._check(columns, owners, depth, merged, bad, reasons)
        self._set(merged, sizes, owners[bad])
        good = ~bad
        self._sequence[owners] = columns.sequence
        self._depth[owners] = depth
        self._fresh[owners] = good
        self._waiting[owners] = bad
        self._seen[owners] = True
        for owner in owners[good].tolist():
            self._reasons.pop(owner, None)
        return self._finish(columns, owners, good, reasons, [])

    def apply_update(self, books: Books) -> tuple[str, ...]:
        """Apply the changed levels in ``books`` to the books they follow; the symbols applied."""
        columns = book_columns(books)
        if len(set(columns.symbol)) < len(columns):
            return self._one_by_one(columns, self.apply_update)
        owners = self._owners(columns.symbol)
        follows = self._fresh[owners] & (columns.previous_sequence == self._sequence[owners])
        gaps = []
        if not follows.all():
            gapped = ~follows & ~self._waiting[owners]  # a book already waiting is not counted again
            for i in np.flatnonzero(gapped).tolist():
                owner = int(owners[i])
                gaps.append(
                    f"{columns.symbol[i]}: update {columns.sequence[i]} follows "
                    f"{columns.previous_sequence[i]}, the book is at {self._sequence[owner]}"
                    if self._seen[owner]
                    else f"{columns.symbol[i]}: update {columns.sequence[i]} before any snapshot"
                )
                self._reasons[owner] = "gap: " + gaps[-1].split(": ", 1)[1]
            self.gaps += len(gaps)
            self._fresh[owners] = follows
            self._waiting[owners] |= gapped
            columns, owners = columns.select(follows), owners[follows]
        bad = np.zeros(len(columns), dtype=bool)
        reasons: dict[int, str] = {}
        groups, keys, lots, rows = self._levels_of(columns, owners, bad, reasons, update=True)
        if bad.any():
            use = ~bad[rows()]
            groups, keys, lots = groups[use], keys[use], lots[use]
        merged = np.concatenate((self._keys, _keys(groups, keys)))
        order = np.argsort(merged, kind="stable")  # the books first, then the changes in order
        merged, sizes = merged[order], np.concatenate((self._sizes, lots))[order]
        last = np.ones(len(merged), dtype=bool)
        np.not_equal(merged[1:], merged[:-1], out=last[:-1])  # the last word on each level
        keep = last & (sizes != 0)
        merged, sizes = merged[keep], sizes[keep]
        if self.check:
            self._check(columns, owners, self._depth[owners], merged, bad, reasons)
        self._set(merged, sizes, owners[bad])
        self._fresh[owners[bad]] = False
        self._waiting[owners[bad]] = True
        self._sequence[owners] = columns.sequence
        return self._finish(columns, owners, ~bad, reasons, gaps)

    # --- the parts -------------------------------------------------------------------------

    def _owners(self, symbols: tuple[str, ...]) -> np.ndarray:
        """Each symbol's index, new ones added."""
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

    def _levels_of(self, columns, owners, bad, reasons, *, update: bool):
        """Every level in ``columns``, bids then asks: the side of the book it belongs to (2 x
        its symbol's index, + 1 for asks), its key (the price, negated for bids), its size as
        int64; and for each level the book it belongs to (its position in ``columns``)."""
        offsets = columns.offsets
        bid_prices, bid_sizes = columns.bid_prices, columns.bid_sizes
        ask_prices, ask_sizes = columns.ask_prices, columns.ask_sizes
        bid_counts, ask_counts = columns.counts("bid_prices"), columns.counts("ask_prices")
        if (offsets["bid_prices"] != offsets["bid_sizes"]).any() or (
            offsets["ask_prices"] != offsets["ask_sizes"]
        ).any():  # not parallel: the book is dropped
            sides = [(bid_prices, bid_sizes, bid_counts, "bid"), (ask_prices, ask_sizes, ask_counts, "ask")]
            for side, (prices, sizes, counts, name) in enumerate(sides):
                size_counts = columns.counts(f"{name}_sizes")
                mismatched = counts != size_counts
                for i in np.flatnonzero(mismatched).tolist():
                    self._flag_one(i, bad, reasons, f"{counts[i]} {name} prices but {size_counts[i]} sizes")
                kept = np.where(mismatched, 0, counts)
                sides[side] = (
                    prices[np.repeat(~mismatched, counts)],
                    sizes[np.repeat(~mismatched, size_counts)],
                    kept,
                )
            (bid_prices, bid_sizes, bid_counts), (ask_prices, ask_sizes, ask_counts) = sides
        groups = np.concatenate((np.repeat(2 * owners, bid_counts), np.repeat(2 * owners + 1, ask_counts)))
        keys = np.concatenate((-bid_prices, ask_prices))
        lots = np.concatenate((bid_sizes, ask_sizes)).view(np.int64)  # 2^63 lots and more: negative
        books = np.arange(len(columns))
        rows = lambda: np.concatenate((np.repeat(books, bid_counts), np.repeat(books, ask_counts)))  # noqa: E731
        if self.check:
            small = lots < 0 if update else lots <= 0  # in an update, 0 removes a level
            wrong = ~np.isfinite(keys) | small
            if wrong.any():
                where = rows()
                for at in np.flatnonzero(wrong).tolist():
                    name = "bid" if at < len(bid_prices) else "ask"
                    what = "size not above 0 lots" if small[at] else "price not finite"
                    self._flag_one(int(where[at]), bad, reasons, f"{name} {what}")
        return groups, keys, lots, rows

    def _check(self, columns, owners, depth, merged, bad, reasons):
        """The books of ``columns`` in the ``merged`` levels: within the depth, not crossed."""
        if not len(merged):
            return
        groups = merged.real.astype(np.int64)
        count = 2 * len(self._symbols)
        firsts = np.ones(len(groups), dtype=bool)
        np.not_equal(groups[1:], groups[:-1], out=firsts[1:])
        best = np.full(count, np.nan)
        best[groups[firsts]] = merged.imag[firsts]
        levels = np.bincount(groups, minlength=count).reshape(-1, 2)[owners]
        crossed = -best[2 * owners] >= best[2 * owners + 1]  # nan where a side is empty: False
        over = (depth > 0)[:, None] & (levels > depth[:, None])
        for i in np.flatnonzero(over.any(axis=1)).tolist():
            name = "bid" if over[i, 0] else "ask"
            self._flag_one(i, bad, reasons, f"more {name} levels than the depth")
        for i in np.flatnonzero(crossed).tolist():
            self._flag_one(i, bad, reasons, "crossed: best bid at or above best ask")

    def _drop(self, owners: np.ndarray) -> None:
        """Remove every level of the books of ``owners``."""
        if not len(owners) or not len(self._keys):
            return
        gone = np.zeros(2 * len(self._symbols), dtype=bool)
        gone[2 * owners] = gone[2 * owners + 1] = True
        keep = ~gone[self._keys.real.astype(np.int64)]
        self._keys, self._sizes = self._keys[keep], self._sizes[keep]

    def _set(self, keys: np.ndarray, sizes: np.ndarray, dropped: np.ndarray) -> None:
        """The new levels, without those of the ``dropped`` books."""
        self._keys, self._sizes = keys, sizes
        self._drop(dropped)
        self._sizes.flags.writeable = False

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


def _keys(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Level keys: the side of a book + 1j * the level's key."""
    out = np.empty(len(keys), dtype=np.complex128)
    out.real = groups
    out.imag = keys
    return out
