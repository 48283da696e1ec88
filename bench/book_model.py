"""What the order book model costs: CPU per instrument-tick of a live feed, and periods a
second of a path's book.

    python -m bench.book_model [--instruments 100] [--ticks 400] [--runs 5] [--periods 200000]

A feed asks, for every instrument at every tick, for the full book and for the trades of
the tick (``BookModel.book_at`` and ``trades_between``, or both batched for all instruments,
``books_at`` and ``trades_of``), and it diffs depth-10 books for its subscribers. This
script walks ``--instruments`` instruments through ``--ticks`` consecutive sequences with
small random moves (a fifth of them quiet), after as many warm-up ticks, and prints the
median over runs of the process CPU time per call. Then it builds quoted GBM paths with a
book (sizes at the quotes, and trades) block by block, as GetPrices and StreamPrices do,
and prints periods a second: one-second steps (small moves), and hourly steps of a
volatile price (each move sweeps the book). CPU time, not wall time, so other work on the
machine inflates the figures less.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from server.sim.book import BookModel, BookParams, clear_caches, diff
from server.sim.models import Gbm
from server.sim.paths import PathBook, PathBuilder, PathPlan
from server.sim.quotes import QuoteSpec
from server.sim.ticks import TickGrid

SEED = 7
TICK = 0.01


def _prices(instruments: int, ticks: int) -> np.ndarray:
    """(ticks + 1, instruments) prices on a cent grid: moves of -2..2 ticks."""
    rng = np.random.default_rng(1)
    start = rng.integers(1_000, 100_000, size=instruments)
    moves = rng.integers(-2, 3, size=(ticks + 1, instruments))
    moves[0] = 0
    return TickGrid(TICK).prices((start + np.cumsum(moves, axis=0)).astype(np.float64))


def _cpu_per_call(work: Callable[[range], int], warm: range, run: range) -> float:
    """Microseconds of process CPU per call of ``work`` over the sequences ``run``, with
    empty caches warmed by the sequences ``warm`` first, as a feed running for a while."""
    clear_caches()
    work(warm)
    started = time.process_time()
    calls = work(run)
    return (time.process_time() - started) / calls * 1e6


def measure(instruments: int, ticks: int) -> dict[str, float]:
    model = BookModel()
    keys = [1_000 + i for i in range(instruments)]
    prices = _prices(instruments, 2 * ticks).tolist()
    warm, run = range(1, ticks + 1), range(ticks + 1, 2 * ticks + 1)

    def books_and_trades(sequences: range) -> int:
        for n in sequences:
            row, before = prices[n], prices[n - 1]
            for i, key in enumerate(keys):
                model.book_at(SEED, key, n, row[i], TICK)
                model.trades_between(SEED, key, n, before[i], row[i], TICK)
        return len(sequences) * instruments

    def books(sequences: range) -> int:
        for n in sequences:
            for key, price in zip(keys, prices[n], strict=True):
                model.book_at(SEED, key, n, price, TICK)
        return len(sequences) * instruments

    def trades(sequences: range) -> int:
        for n in sequences:
            for key, before, price in zip(keys, prices[n - 1], prices[n], strict=True):
                model.trades_between(SEED, key, n, before, price, TICK)
        return len(sequences) * instruments

    def batched(sequences: range) -> int:
        for n in sequences:
            model.books_at(SEED, keys, n, prices[n], TICK)
            model.trades_of(SEED, keys, n, prices[n - 1], prices[n], TICK)
        return len(sequences) * instruments

    figures = {"book_at + trades_between": _cpu_per_call(books_and_trades, warm, run)}
    figures["book_at alone"] = _cpu_per_call(books, warm, run)
    figures["trades_between alone"] = _cpu_per_call(trades, warm, run)
    if hasattr(model, "books_at"):
        figures["books_at + trades_of, batched"] = _cpu_per_call(batched, warm, run)
    depth10 = [model.book_at(SEED, keys[0], n, prices[n][0], TICK, 10) for n in run]

    def diffs(sequences: range) -> int:
        for _ in sequences:
            for old, new in zip(depth10, depth10[1:], strict=False):
                diff(old, new)
        return len(sequences) * (len(depth10) - 1)

    figures["diff, depth 10"] = _cpu_per_call(diffs, range(1), range(10))
    return figures


# name: (GBM parameters, delta in trading days, periods a block, what the book adds)
PATHS = {
    "no book, one-second steps": ({"start_price": 70.0, "mu": 0.05, "sigma": 0.3}, 1 / 23_400, 65_536, None),
    "sizes, one-second steps": (
        {"start_price": 70.0, "mu": 0.05, "sigma": 0.3},
        1 / 23_400,
        65_536,
        (True, False),
    ),
    "sizes and trades, one-second steps": (
        {"start_price": 70.0, "mu": 0.05, "sigma": 0.3},
        1 / 23_400,
        65_536,
        (True, True),
    ),
    "sizes and trades, hourly sweeps": (
        {"start_price": 7_000.0, "mu": 8.0, "sigma": 4.0},
        1 / 24,
        2_400,
        (True, True),
    ),
}


def path_rates(periods: int) -> dict[str, tuple[float, float]]:
    """Periods a second (process CPU) and prints a period of each of PATHS."""
    rates = {}
    for name, (params, delta, block, book) in PATHS.items():
        model = Gbm.from_values(params, delta, 252.0)
        added = None if book is None else PathBook(BookParams(), 5, *book)
        plan = PathPlan(model, periods, 7, tick_size=0.01, quotes=QuoteSpec(spread_bps=2.0), book=added)
        builder, prints = PathBuilder(plan), 0
        started = time.process_time()
        while builder.position < periods:
            made = builder.next(block)
            prints += 0 if made.trades is None else len(made.trades)
        rates[name] = (periods / (time.process_time() - started), prints / periods)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=400)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--periods", type=int, default=200_000)
    args = parser.parse_args()
    runs = [measure(args.instruments, args.ticks) for _ in range(args.runs)]
    print(f"{args.instruments} instruments x {args.ticks} ticks, median of {args.runs} runs, CPU us per call")
    for name in runs[0]:
        print(f"  {name:34s} {statistics.median(r[name] for r in runs):9.1f}")
    print(f"paths of {args.periods} periods with a book: periods a second (CPU), prints a period")
    for name, (rate, prints) in path_rates(args.periods).items():
        print(f"  {name:34s} {rate:9.0f} {prints:6.2f}")


if __name__ == "__main__":
    main()
