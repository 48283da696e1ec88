"""The book model's outputs pinned bit for bit: books, trades and diffs over a varied set of
inputs hash to digests recorded from the first, plain implementation of server/sim/book.py.

Any faster implementation must keep the same model and the same random streams, so it
must reproduce these digests exactly. The inputs cover several seeds, instrument keys and
tick sizes, positive instruments and ones that may go negative, walks of consecutive
sequences across block and page boundaries, quiet ticks, moves past the book's last level,
depth limits, diffs between books of different depths, and non-default parameters. Every
group is computed once in walk order and once scattered (shuffled, caches emptied), so a
cache that carried anything from call to call would also show here, and once more by the
batched calls (books_at, trades_of), which must give the same results.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import pytest

from server.sim import book as book_module
from server.sim.book import Book, BookModel, BookParams, Trades, apply_diff, diff
from server.sim.ticks import TickGrid


class Case(NamedTuple):
    """One walk of WALK + 1 consecutive sequences from ``first``, starting ``start`` ticks
    from zero, its moves drawn from a generator of its own. Depths past a short book's
    levels are taken at its levels."""

    params: BookParams
    seed: int
    instrument: int
    tick: float
    positive: bool
    start: int
    first: int


P = BookParams
CASES = {
    "default": Case(P(), 7, 12345, 0.01, True, 10_000, 0),
    "big keys": Case(P(), 2**64 - 1, 2**64 - 1, 0.05, True, 2_000, 2**56 - 80),
    "near one tick": Case(P(), 3, 0, 0.25, True, 3, 18),
    "negative": Case(P(), 11, 99, 0.01, False, -70, 5),
    "tiny tick": Case(P(), 0, 2**40 + 1, 1e-4, True, 1_234_567, 1_000_003),
    "wide spread": Case(P(spread_bps=150.0, growth=0.0), 5, 6, 1.0, True, 5_000, 39),
    "no spread": Case(P(spread_bps=0.0, size_noise=2.0, refresh_ticks=3), 8, 9, 0.05, True, 640, 1),
    "short book": Case(P(levels=7, refresh_ticks=1, quiet_print_probability=1.0), 4, 4, 0.5, False, 0, 2),
    "slow refresh": Case(
        P(levels=30, refresh_ticks=4096, touch_lots=1e6, growth=10.0), 1, 2, 1e-9, True, 10**9, 4090
    ),
    "no noise": Case(P(size_noise=0.0, quiet_print_probability=0.0), 2, 3, 1e6, True, 40, 100),
}
WALK = 70
DEPTHS = (None, 1, 10, 49)
DIGESTS = {
    "default": "4c6609b929c3bb54568e7bac2c5543df673771ea18241490171e699d70b79b77",
    "big keys": "103bf9eb57bc7bc4fea622d800d3123ccdcfd1a6f3135fe77e85b30e39fd2037",
    "near one tick": "a133cfc7c43b08d165f277e7d061b190f47cd9ddb294abfe962e3b994d8d128b",
    "negative": "59b558a530b9cf05d615a18252d312d6355a6b9cefea573ccb86dbe08358b6d7",
    "tiny tick": "ebc0eb77aba1dc83207b0b84fc77145e759084003a1990d3e31cd64396bc7de0",
    "wide spread": "fd3d8736a40b6996df288a05fd5fd92e0915b101d529c05bfb555f1dc4e37348",
    "no spread": "772e1a0869e3604f5a630625d6fbfd973731702957aa65661a77ca44c572ed8c",
    "short book": "a7353df3b647258abaa6a017914eab4c5f5251ddbd15fd59be811924456025dd",
    "slow refresh": "daf03a9db9712cef07be8a0bb172cc62e4b615080cb885f8bb314c2b06e38948",
    "no noise": "93f25d5c4a12c7dcbdc6fadfd7e51d64d550192c4fa90fd26f5a614d4feddc99",
}


def _walk(name: str) -> tuple[list[int], list[float]]:
    """The case's sequences and on-grid prices: quiet ticks, small moves, sweeps of 60-90
    ticks (past a 50-level book), never below one tick for a positive instrument."""
    _, _, _, tick, positive, start, first = CASES[name]
    rng = np.random.default_rng(sum(name.encode()))
    kind = rng.choice(4, size=WALK, p=[0.35, 0.45, 0.1, 0.1])
    small, sweep = rng.integers(1, 4, WALK), rng.integers(60, 91, WALK)
    size = np.select([kind == 0, kind == 1, kind == 2], [0, small, sweep])
    size = np.where(kind == 3, rng.integers(4, 60, WALK), size)
    ticks = [start]
    for step, sign in zip(size.tolist(), rng.choice([-1, 1], size=WALK).tolist(), strict=True):
        ticks.append(ticks[-1] + sign * step)
        if positive and ticks[-1] < 1:
            ticks[-1] = 1 + abs(step) % 5
    prices = TickGrid(tick).prices(np.array(ticks, dtype=np.float64)).tolist()
    return list(range(first, first + WALK + 1)), prices


def _feed(h, *values) -> None:
    for value in values:
        if isinstance(value, np.ndarray):
            h.update(f"{value.dtype.str}{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())


def _book_bytes(h, book: Book) -> None:
    _feed(h, "book", book.sequence, book.bid_prices, book.bid_sizes, book.ask_prices, book.ask_sizes)


def _trades_bytes(h, trades: Trades) -> None:
    _feed(h, "trades", trades.sequence, trades.ids, trades.prices, trades.sizes, trades.sides)


def _outputs(name: str, order: list[int], *, batched: bool = False) -> tuple[dict, dict]:
    """Every book (each depth) and trades of the case's walk, computed in ``order``, by the
    single calls or by the batched ones (a batch of one instrument)."""
    params, seed, instrument, tick, positive, _, _ = CASES[name]
    model = BookModel(params)
    sequences, prices = _walk(name)
    books, trades = {}, {}
    for i in order:
        n, price = sequences[i], prices[i]
        for depth in DEPTHS:
            levels = depth if depth is None else min(depth, params.levels)
            if batched:
                (book,) = model.books_at(seed, [instrument], n, [price], tick, levels, positive=positive)
            else:
                book = model.book_at(seed, instrument, n, price, tick, levels, positive=positive)
            books[i, depth] = book
        if i and batched:
            (trades[i],) = model.trades_of(
                seed, [instrument], n, [prices[i - 1]], [price], tick, positive=positive
            )
        elif i:
            trades[i] = model.trades_between(
                seed, instrument, n, prices[i - 1], price, tick, positive=positive
            )
    return books, trades


def _digest(name: str, books: dict, trades: dict) -> str:
    h = hashlib.sha256()
    for i in range(WALK + 1):
        for depth in DEPTHS:
            _book_bytes(h, books[i, depth])
        if i:
            _trades_bytes(h, trades[i])
            for depth_old, depth_new in ((10, 10), (None, None), (1, 10), (49, 1)):
                old, new = books[i - 1, depth_old], books[i, depth_new]
                changes = diff(old, new)
                _feed(h, "diff", [(int(c.side), c.price.hex(), c.size) for c in changes])
                _book_bytes(h, apply_diff(old, changes, new.sequence))
    return h.hexdigest()


@pytest.mark.parametrize("name", list(CASES))
def test_books_trades_and_diffs_match_their_recorded_fingerprints(name):
    walked = _digest(name, *_outputs(name, list(range(WALK + 1))))
    book_module.clear_caches()
    shuffled = np.random.default_rng(len(name)).permutation(WALK + 1).tolist()
    scattered = _digest(name, *_outputs(name, shuffled))
    book_module.clear_caches()
    batched = _digest(name, *_outputs(name, list(range(WALK + 1)), batched=True))
    assert walked == scattered == batched
    assert walked == DIGESTS[name]
