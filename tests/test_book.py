"""The order book and trade model of server/sim/book.py: invariants, purity, trades, diffs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from server.sim import book as book_module
from server.sim.book import (
    TRADE_ID_STRIDE,
    Book,
    BookAlong,
    BookModel,
    BookParams,
    Side,
    apply_diff,
    diff,
)
from server.sim.checks import ParameterError
from server.sim.depth import MarketDepth
from server.sim.market import Market, symbol_key
from server.sim.quotes import quotes
from server.sim.ticks import TickGrid
from server.sim.universe import Instrument, MarketConfig

TICKS = (0.01, 0.05, 0.25, 1.0, 0.0001)
MODEL = BookModel()


def _random_case(rng: np.random.Generator) -> dict:
    """A seed, instrument, sequence, tick and on-grid price drawn over wide ranges."""
    tick = float(rng.choice(TICKS))
    price_ticks = int(np.exp(rng.uniform(0.0, np.log(1e7))))  # 1 tick to 10 million ticks
    return {
        "seed": int(rng.integers(0, 2**63)),
        "instrument": int(rng.integers(0, 2**63)),
        "sequence": int(rng.integers(1, 10**9)),
        "tick": tick,
        "price": float(TickGrid(tick).prices(price_ticks)),
    }


def _ticks(prices: np.ndarray, tick: float) -> np.ndarray:
    return np.rint(prices / tick).astype(np.int64)


def _assert_same_book(a: Book, b: Book) -> None:
    assert a.sequence == b.sequence
    for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and np.array_equal(left, right), name


def _same_trades(a, b) -> bool:
    fields = ("ids", "prices", "sizes", "sides")
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)


def test_books_hold_their_invariants_at_random_sequences_and_prices():
    rng = np.random.default_rng(20240613)
    for _ in range(300):
        case = _random_case(rng)
        depth = int(rng.integers(1, 51))
        tick = case["tick"]
        b = MODEL.book_at(case["seed"], case["instrument"], case["sequence"], case["price"], tick, depth)
        bids, asks = _ticks(b.bid_prices, tick), _ticks(b.ask_prices, tick)
        grid = TickGrid(tick)
        # Prices sit exactly on the grid, as the exact decimals the market publishes.
        assert np.array_equal(b.bid_prices, grid.prices(bids.astype(float)))
        assert np.array_equal(b.ask_prices, grid.prices(asks.astype(float)))
        # One tick apart, bids descending and asks ascending, never crossed, price inside.
        assert np.all(np.diff(bids) == -1) and np.all(np.diff(asks) == 1)
        assert bids[0] < asks[0]
        assert b.bid_prices[0] <= case["price"] < b.ask_prices[0]
        # Depth respected: asks always full; bids stop at one tick.
        assert len(asks) == depth and len(bids) == min(depth, bids[0])
        assert bids[-1] >= 1
        for sizes in (b.bid_sizes, b.ask_sizes):
            assert sizes.dtype == np.int64 and np.all(sizes > 0)
        assert len(b.bid_sizes) == len(bids) and len(b.ask_sizes) == len(asks)


def test_the_touch_is_the_quote_models_rounding():
    rng = np.random.default_rng(7)
    for spread_bps in (0.0, 1.0, 7.5, 250.0):
        model = BookModel(BookParams(spread_bps=spread_bps))
        for _ in range(50):
            case = _random_case(rng)
            b = model.book_at(1, 2, 3, case["price"], case["tick"], 1)
            bid, ask = quotes(np.array([case["price"]]), case["tick"], spread_bps=spread_bps)
            assert (b.bid_prices[0], b.ask_prices[0]) == (bid[0], ask[0])


def test_an_instrument_that_may_go_negative_has_a_full_book_below_zero():
    b = MODEL.book_at(5, 6, 7, -0.03, 0.01, 10, positive=False)
    assert len(b.bid_prices) == 10 and b.bid_prices[-1] < -0.1
    assert b.bid_prices[0] <= -0.03 < b.ask_prices[0]
    with pytest.raises(ParameterError, match="price must be at least one tick"):
        MODEL.book_at(5, 6, 7, -0.03, 0.01, 10)


def test_a_shallower_book_is_the_prefix_of_the_full_one():
    full = MODEL.book_at(11, 3, 12345, 101.37, 0.01)
    assert len(full.bid_prices) == len(full.ask_prices) == 50
    for depth in (1, 10, 49):
        part = MODEL.book_at(11, 3, 12345, 101.37, 0.01, depth)
        for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
            assert np.array_equal(getattr(part, name), getattr(full, name)[:depth])


def test_the_same_inputs_give_identical_books_and_other_keys_other_books():
    args = (99, 4, 777, 250.5, 0.05, 20)
    _assert_same_book(MODEL.book_at(*args), MODEL.book_at(*args))
    base = MODEL.book_at(*args)
    for other in ((100, 4, 777), (99, 5, 777), (99, 4, 1777)):
        changed = MODEL.book_at(*other, 250.5, 0.05, 20)
        assert np.array_equal(changed.ask_prices, base.ask_prices)  # same price, same levels
        assert not np.array_equal(changed.ask_sizes, base.ask_sizes)
        assert not np.array_equal(changed.bid_sizes, base.bid_sizes)


def test_books_and_trades_are_pure_functions_whatever_the_call_order():
    # A path of 60 ticks is computed tick by tick; then, with every cache emptied, the same
    # sequences are computed in a shuffled order and one far sequence directly, as a replica
    # that catches up would: identical results prove there is no hidden state.
    rng = np.random.default_rng(3)
    prices = 100.0 + 0.01 * np.cumsum(rng.integers(-3, 4, size=61))
    prices = TickGrid(0.01).prices(np.rint(prices / 0.01))
    walked = [MODEL.book_at(8, 1, n, prices[n], 0.01, 10) for n in range(61)]
    walked_trades = [MODEL.trades_between(8, 1, n, prices[n - 1], prices[n], 0.01) for n in range(1, 61)]
    book_module.clear_caches()
    MODEL.book_at(8, 1, 10**8, 3.0, 0.25)  # unrelated work in between
    for n in rng.permutation(61).tolist():
        _assert_same_book(MODEL.book_at(8, 1, n, prices[n], 0.01, 10), walked[n])
        if n:
            again = MODEL.trades_between(8, 1, n, prices[n - 1], prices[n], 0.01)
            assert _same_trades(again, walked_trades[n - 1])


def test_a_level_keeps_its_size_when_the_touch_moves_and_sizes_drift_smoothly():
    # With no growth away from the touch a level's size depends only on its side, price and
    # sequence: moving the price by a tick leaves every level the two books share unchanged.
    flat = BookModel(BookParams(growth=0.0))
    a = flat.book_at(1, 1, 500, 50.00, 0.01)
    b = flat.book_at(1, 1, 500, 50.03, 0.01)
    shared = np.intersect1d(a.ask_prices, b.ask_prices)
    assert len(shared) == 47
    size_a = dict(zip(a.ask_prices.tolist(), a.ask_sizes.tolist(), strict=True))
    size_b = dict(zip(b.ask_prices.tolist(), b.ask_sizes.tolist(), strict=True))
    assert all(size_a[p] == size_b[p] for p in shared.tolist())
    # Over time the sizes drift within a block of refresh_ticks: one tick apart they are far
    # closer than a hundred ticks apart (log-sizes, 1,000 level pairs each).
    model = BookModel(BookParams(touch_lots=1000.0, refresh_ticks=20))
    logs = np.array([np.log(model.book_at(2, 2, n, 80.0, 0.01).ask_sizes) for n in range(1000, 1120)])
    steps = np.abs(np.diff(logs, axis=0)).mean(axis=1)  # steps[i]: from 1000 + i to 1001 + i
    far = np.abs(logs[100:120] - logs[:20]).mean()
    assert steps.mean() < far / 4
    # Every tick moves the sizes a little, and a block's end (1019 to 1020) no more than the
    # ticks around it: the noise is continuous from block to block, it does not jump.
    assert np.all(steps > 0)
    assert steps[19] < 3 * np.median(steps[10:30])


def _levels_at(model, seed, instrument, sequence, price, tick, side):
    b = model.book_at(seed, instrument, sequence, price, tick)
    return b.side(side)


def test_a_move_prints_every_level_it_crosses_then_closes_at_the_new_price():
    rng = np.random.default_rng(11)
    for _ in range(300):
        tick = float(rng.choice(TICKS))
        start = int(rng.integers(200, 10**6))
        end = start + int(rng.choice([-1, 1])) * int(rng.integers(1, 80))
        grid = TickGrid(tick)
        p0, p1 = float(grid.prices(start)), float(grid.prices(end))
        seed, instrument = int(rng.integers(0, 2**32)), int(rng.integers(0, 100))
        n = int(rng.integers(1, 10**6))
        trades = MODEL.trades_between(seed, instrument, n, p0, p1, tick)
        up = end > start
        # The levels of the book before the move on the side the aggressor meets.
        prices, sizes = _levels_at(MODEL, seed, instrument, n - 1, p0, tick, Side.SELL if up else Side.BUY)
        crossed = prices <= p1 if up else prices >= p1
        assert np.all(trades.sides == (Side.BUY if up else Side.SELL))
        assert np.array_equal(trades.ids, n * TRADE_ID_STRIDE + np.arange(len(trades)))
        assert trades.prices[-1] == p1
        # Within the move: beyond the old price, never beyond the new one.
        beyond_old = trades.prices > p0 if up else trades.prices < p0
        within_new = trades.prices <= p1 if up else trades.prices >= p1
        assert np.all(beyond_old & within_new)
        k = int(crossed.sum())
        # Every crossed level prints once, best first, with its whole size ...
        assert np.array_equal(trades.prices[:k], prices[:k])
        assert np.array_equal(trades.sizes[:k], sizes[:k])
        # ... and a closing print at the new price only when no crossed level sits there.
        if k and prices[k - 1] == p1:
            assert len(trades) == k
        else:
            assert len(trades) == k + 1 and 1 <= trades.sizes[-1] <= sizes[0]


def test_a_move_inside_the_spread_prints_once_and_a_sweep_prints_the_whole_side():
    wide = BookModel(BookParams(spread_bps=100.0))  # 1% of 100: the touch 50 ticks from the price
    inside = wide.trades_between(4, 4, 40, 100.00, 100.20, 0.01)
    assert inside.prices.tolist() == [100.20] and inside.sides.tolist() == [Side.BUY]
    touch = wide.book_at(4, 4, 39, 100.00, 0.01, 1).ask_sizes[0]
    assert 1 <= inside.sizes[0] <= touch
    sweep = MODEL.trades_between(4, 4, 40, 100.00, 90.00, 0.01)
    bids = MODEL.book_at(4, 4, 39, 100.00, 0.01)
    assert len(sweep) == 51 and sweep.prices[-1] == 90.00
    assert np.array_equal(sweep.sizes[:50], bids.bid_sizes)
    assert sweep.ids.max() < 41 * TRADE_ID_STRIDE


def test_quiet_ticks_print_small_trades_at_the_touch_as_often_as_the_parameter_says():
    model = BookModel(BookParams(quiet_print_probability=0.3))
    count, buys = 0, 0
    ticks = 2000
    for n in range(1, ticks + 1):
        trades = model.trades_between(6, 9, n, 42.00, 42.00, 0.01)
        if not len(trades):
            continue
        count += 1
        assert len(trades) == 1
        before = model.book_at(6, 9, n - 1, 42.00, 0.01, 1)
        side = Side(int(trades.sides[0]))
        prices, sizes = before.side(Side(-side))  # a buyer meets the asks, a seller the bids
        price, size = prices[0], sizes[0]
        assert trades.prices[0] == price and 1 <= trades.sizes[0] <= size
        buys += side is Side.BUY
    # Binomial counts, five standard errors either side.
    assert abs(count - 0.3 * ticks) < 5 * math.sqrt(ticks * 0.3 * 0.7)
    assert abs(buys - count / 2) < 5 * math.sqrt(count / 4)
    silent = BookModel(BookParams(quiet_print_probability=0.0))
    assert all(len(silent.trades_between(6, 9, n, 42.0, 42.0, 0.01)) == 0 for n in range(1, 200))


def test_trade_ids_increase_along_a_path():
    rng = np.random.default_rng(5)
    prices = TickGrid(0.05).prices(2000 + np.cumsum(rng.integers(-2, 3, size=400)).astype(float))
    ids = np.concatenate(
        [MODEL.trades_between(1, 1, n, prices[n - 1], prices[n], 0.05).ids for n in range(1, 400)]
    )
    assert len(ids) > 400 and np.all(np.diff(ids) > 0)


def test_applying_the_diff_to_the_old_book_gives_the_new_one_exactly():
    rng = np.random.default_rng(17)
    for _ in range(300):
        tick = float(rng.choice(TICKS))
        at = int(rng.integers(1, 10**5))
        n = int(rng.integers(1, 10**6))
        step = int(rng.choice([0, 1, 2, 20, 200]))
        old = MODEL.book_at(1, 2, n, float(TickGrid(tick).prices(at)), tick, int(rng.integers(1, 51)))
        moved = max(1, at + int(rng.integers(-3, 4)) * int(rng.integers(0, 60)))
        new_price = float(TickGrid(tick).prices(moved))
        new = MODEL.book_at(1, 2, n + step, new_price, tick, int(rng.integers(1, 51)))
        changes = diff(old, new)
        _assert_same_book(apply_diff(old, changes, new.sequence), new)
        # A removal names a level the old book had; no change repeats what the old book holds.
        for side, price, size in changes:
            prices, sizes = old.side(side)
            if size == 0:
                assert price in prices.tolist()
            else:
                assert (price, size) not in zip(prices.tolist(), sizes.tolist(), strict=True)
    same = MODEL.book_at(1, 2, 3, 10.0, 0.01, 5)
    assert diff(same, same) == []


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("spread_bps", -1.0, "[0, 10000]"),
        ("spread_bps", math.nan, "[0, 10000]"),
        ("levels", 51, "[1, 50]"),
        ("levels", 0, "[1, 50]"),
        ("levels", 2.5, "[1, 50]"),
        ("touch_lots", 0.5, "[1, 1e+06]"),
        ("growth", 11.0, "[0, 10]"),
        ("size_noise", -0.1, "[0, 2]"),
        ("refresh_ticks", 0, "[1, 4096]"),
        ("quiet_print_probability", 1.5, "[0, 1]"),
        ("quiet_print_probability", "0.5", "a number"),
    ],
)
def test_book_parameters_out_of_range_name_the_field_and_the_range(field, value, accepted):
    with pytest.raises(ParameterError, match=f"book.{field} must be") as raised:
        BookParams(**{field: value})
    assert raised.value.field == f"book.{field}"
    assert accepted in str(raised.value)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: MODEL.book_at(-1, 0, 0, 10.0, 0.01), "seed"),
        (lambda: MODEL.book_at(0, -1, 0, 10.0, 0.01), "instrument"),
        (lambda: MODEL.book_at(0, 0, 0, 10.0, 0.01, 51), "depth"),
        (lambda: MODEL.book_at(0, 0, 0, math.inf, 0.01), "price"),
        (lambda: MODEL.book_at(0, 0, 0, 1e20, 0.01), "price"),
        (lambda: MODEL.book_at(0, 0, 0, 10.0, 0.0), "tick_size"),
        (lambda: MODEL.trades_between(0, 0, 0, 10.0, 10.0, 0.01), "sequence"),
        (lambda: MODEL.trades_between(0, 0, 1, math.nan, 10.0, 0.01), "prev_price"),
    ],
)
def test_bad_arguments_raise_parameter_errors_naming_them(call, field):
    with pytest.raises(ParameterError) as raised:
        call()
    assert raised.value.field == field and str(raised.value).startswith(field)


def _batch_case(rng: np.random.Generator, count: int, positive_share: float) -> dict:
    """Instruments with their own keys, ticks, signs and moves: quiet, small, or sweeps."""
    ticks = rng.choice(TICKS, count)
    flags = rng.random(count) < positive_share
    start = np.exp(rng.uniform(0.0, np.log(1e6), count)).astype(np.int64)
    start = np.where(flags, start, start - 500)  # the others around zero too
    moves = rng.choice([0, 1, 3, 80], count) * rng.choice([-1, 1], count)
    end = np.where(flags, np.maximum(start + moves, 1), start + moves)
    return {
        "keys": rng.integers(0, 2**63, count).tolist(),
        "ticks": ticks.tolist(),
        "flags": flags.tolist(),
        "before": [float(TickGrid(t).prices(s)) for t, s in zip(ticks, start, strict=True)],
        "after": [float(TickGrid(t).prices(e)) for t, e in zip(ticks, end, strict=True)],
    }


@pytest.mark.parametrize(
    "params",
    [BookParams(), BookParams(levels=12, refresh_ticks=3, spread_bps=40.0, quiet_print_probability=0.9)],
)
def test_a_batch_gives_each_instrument_the_book_and_trades_of_its_own_call(params):
    model = BookModel(params)
    rng = np.random.default_rng(29)
    for sequence in (1, 19, 20, 21, 40, 12_345):  # around block starts (offset 0) and inside
        case = _batch_case(rng, 40, 0.8)
        keys, ticks, flags = case["keys"], case["ticks"], case["flags"]
        depth = [None, 1, 10][sequence % 3]
        books = model.books_at(9, keys, sequence, case["after"], ticks, depth, positive=flags)
        trades = model.trades_of(9, keys, sequence, case["before"], case["after"], ticks, positive=flags)
        assert len(books) == len(trades) == len(keys)
        for i, key in enumerate(keys):
            single = model.book_at(9, key, sequence, case["after"][i], ticks[i], depth, positive=flags[i])
            _assert_same_book(books[i], single)
            alone = model.trades_between(
                9, key, sequence, case["before"][i], case["after"][i], ticks[i], positive=flags[i]
            )
            assert trades[i].sequence == sequence and _same_trades(trades[i], alone)
    # One tick and one sign for all, prices as a numpy array: the same as per instrument.
    case = _batch_case(rng, 30, 1.0)
    prices = TickGrid(0.05).prices(np.maximum(np.rint(np.array(case["after"]) / 0.05), 1.0))
    shared = model.books_at(9, case["keys"], 77, prices, 0.05)
    each = model.books_at(9, case["keys"], 77, prices, [0.05] * 30, positive=[True] * 30)
    for a, b in zip(shared, each, strict=True):
        _assert_same_book(a, b)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: MODEL.books_at(1, [1, -2], 5, [10.0, 10.0], 0.01), "instruments[1]"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0, math.nan], 0.01), "prices[1]"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0, "10"], 0.01), "prices[1]"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0], 0.01), "prices"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0, 10.0], [0.01, 0.0]), "tick_sizes[1]"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0, 10.0], [0.01]), "tick_sizes"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0, 10.0], 0.01, positive=[True]), "positive"),
        (lambda: MODEL.books_at(1, [1, 2], 5, [10.0, 10.0], 0.01, 0), "depth"),
        (lambda: MODEL.trades_of(1, [1, 2], 0, [10.0, 10.0], [10.0, 10.0], 0.01), "sequence"),
        (lambda: MODEL.trades_of(1, [1, 2], 5, [10.0, 0.0], [10.0, 10.0], 0.01), "prev_prices[1]"),
    ],
)
def test_a_batch_names_the_entry_that_is_wrong(call, field):
    with pytest.raises(ParameterError) as raised:
        call()
    assert raised.value.field == field and str(raised.value).startswith(field + " must")


def _reference_diff(old: Book, new: Book) -> list[tuple]:
    """Level by level: every new level not in the old book at its size, every old level gone."""
    changes = []
    for side in (Side.BUY, Side.SELL):
        before = dict(zip(*(a.tolist() for a in old.side(side)), strict=True))
        after = dict(zip(*(a.tolist() for a in new.side(side)), strict=True))
        changed = {p: s for p, s in after.items() if before.get(p) != s}
        changed.update((p, 0) for p in before if p not in after)
        changes += [(side, p, changed[p]) for p in sorted(changed, reverse=side is Side.BUY)]
    return changes


def test_diff_of_any_sorted_books_even_with_gaps_is_the_level_by_level_comparison():
    rng = np.random.default_rng(31)
    ladder = np.arange(1, 41, dtype=np.float64) / 4

    def book(sequence: int) -> Book:
        sides = []
        for side in (Side.BUY, Side.SELL):
            prices = np.sort(rng.choice(ladder, int(rng.integers(0, 12)), replace=False))
            prices = prices[::-1] if side is Side.BUY else prices
            sides += [prices.copy(), rng.integers(1, 4, len(prices)).astype(np.int64)]
        return Book(sequence, *sides)

    for sequence in range(400):
        old, new = book(sequence), book(sequence + 1)
        changes = diff(old, new)
        assert [tuple(c) for c in changes] == _reference_diff(old, new)
        _assert_same_book(apply_diff(old, changes, new.sequence), new)


def test_the_live_markets_batched_books_and_trades_are_each_instruments_own():
    # MarketDepth asks for every instrument's trades, and the watched books, in one batch
    # per tick: each must be what a call for that instrument alone gives.
    config = MarketConfig(
        instruments=(
            Instrument("AAA", 100.0, 0.05, 0.2),
            Instrument("BBB", 20.0, 0.0, 0.9, tick_size=0.05),
            Instrument.of_model(
                "RATE", "ornstein_uhlenbeck", {"start": 0.02, "mean": 0.0, "kappa": 1.0, "sigma": 0.5}, 0.001
            ),
        ),
        seed=5,
        book=BookParams(levels=20),
    )
    market, depth = Market(config), MarketDepth(config, 5)
    model, keys = BookModel(config.book), [symbol_key(i.symbol) for i in config.instruments]
    previous = None
    for _ in range(45):
        tick = market.tick()
        computed = depth.next(tick, books={0, 2})
        for position, instrument in enumerate(config.instruments):
            price, tick_size, positive = (
                float(tick.prices[position]),
                instrument.tick_size,
                instrument.positive,
            )
            if position in (0, 2):
                alone = model.book_at(5, keys[position], tick.sequence, price, tick_size, positive=positive)
                _assert_same_book(computed.book(position), alone)
            if previous is not None:
                before = float(previous.prices[position])
                alone = model.trades_between(
                    5, keys[position], tick.sequence, before, price, tick_size, positive=positive
                )
                assert _same_trades(computed.trades[position], alone)
        previous = tick


def test_a_book_around_the_touch_book_at_places_is_book_ats_book():
    rng = np.random.default_rng(41)
    for _ in range(100):
        case = _random_case(rng)
        depth = [None, 1, 17][int(rng.integers(0, 3))]
        args = (case["seed"], case["instrument"], case["sequence"])
        placed = MODEL.book_at(*args, case["price"], case["tick"], depth)
        around = MODEL.book_around(*args, placed.bid_prices[0], placed.ask_prices[0], case["tick"], depth)
        _assert_same_book(around, placed)
    with pytest.raises(ParameterError) as raised:
        MODEL.book_around(1, 2, 3, 10.01, 10.01, 0.01)
    assert raised.value.field == "best_ask" and "above best_bid" in str(raised.value)
    with pytest.raises(ParameterError) as raised:
        MODEL.book_around(1, 2, 3, 0.0, 0.01, 0.01)
    assert raised.value.field == "best_bid"


@pytest.mark.parametrize(
    ("params", "tick", "start", "positive"),
    [
        (BookParams(), 0.01, 5_000, True),
        (BookParams(levels=6, refresh_ticks=3, quiet_print_probability=0.7), 0.25, 30, True),
        (BookParams(spread_bps=0.0, size_noise=2.0), 0.05, -40, False),
    ],
)
def test_a_paths_book_along_the_live_touch_gives_the_live_books_sizes_and_trades(
    params, tick, start, positive
):
    # With a path's quotes where the live model puts its touch, BookAlong must give the very
    # sizes and trades of book_at and trades_between, for a whole run of periods at once.
    model, rng = BookModel(params), np.random.default_rng(43)
    moves = rng.choice([0, 1, 2, 7, 70], 400) * rng.choice([-1, 1], 400)
    ticks = start + np.cumsum(moves)
    if positive:
        ticks = np.maximum(ticks, 1)
    prices = TickGrid(tick).prices(ticks.astype(np.float64))
    sequences = np.arange(1_000, 1_400, dtype=np.int64)
    books = [
        model.book_at(4, 77, int(n), p, tick, positive=positive)
        for n, p in zip(sequences, prices, strict=True)
    ]
    bids = np.rint(np.array([b.bid_prices[0] for b in books]) / tick).astype(np.int64)
    asks = np.rint(np.array([b.ask_prices[0] for b in books]) / tick).astype(np.int64)
    along = BookAlong(model, 4, 77, positive)
    bid_lots, ask_lots = along.touch_lots(sequences, bids, asks)
    assert bid_lots.tolist() == [b.bid_sizes[0] for b in books]
    assert ask_lots.tolist() == [b.ask_sizes[0] for b in books]
    prints = along.prints(sequences[1:], ticks[:-1], ticks[1:], bids[:-1], asks[:-1])
    assert np.all(np.diff(prints.ids) > 0)
    for i in range(1, 400):
        alone = model.trades_between(
            4, 77, int(sequences[i]), prices[i - 1], prices[i], tick, positive=positive
        )
        mine = prints.periods == sequences[i]
        assert np.array_equal(prints.ids[mine], alone.ids)
        assert np.array_equal(TickGrid(tick).prices(prints.ticks[mine].astype(np.float64)), alone.prices)
        assert np.array_equal(prints.sizes[mine], alone.sizes) and np.array_equal(
            prints.sides[mine], alone.sides
        )
