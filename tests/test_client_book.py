"""client.book.BookKeeper rebuilds the server's books from snapshots and updates, and says when it cannot.

The books come from the server's own model (server.sim.book): a book per tick
over moving prices, the changes between two ticks from its ``diff``, written
as OrderBook messages the way the contract says. Applied through the
generated messages or the numpy decoder, every book must equal the model's
book at that depth, at every tick.
"""

from __future__ import annotations

import numpy as np
import pytest

from client import Book, BookGap, BookKeeper, InvalidBook, decode_market_event
from marketdata.v1 import market_data_pb2 as pb
from server.sim.book import Book as ModelBook
from server.sim.book import BookModel, Side, diff

MODEL = BookModel()
TICK = 0.01


def whole(symbol: str, book: ModelBook, depth: int) -> pb.OrderBook:
    return pb.OrderBook(
        symbol=symbol,
        sequence=book.sequence,
        depth=depth,
        bid_prices=book.bid_prices.tolist(),
        bid_sizes=book.bid_sizes.tolist(),
        ask_prices=book.ask_prices.tolist(),
        ask_sizes=book.ask_sizes.tolist(),
    )


def changes(symbol: str, old: ModelBook, new: ModelBook, depth: int) -> pb.OrderBook:
    message = pb.OrderBook(symbol=symbol, sequence=new.sequence, previous_sequence=old.sequence, depth=depth)
    for change in diff(old, new):
        side = (
            (message.bid_prices, message.bid_sizes)
            if change.side == Side.BUY
            else (message.ask_prices, message.ask_sizes)
        )
        side[0].append(change.price)
        side[1].append(change.size)
    return message


class Market:
    """Symbols whose prices move by whole ticks, small steps and jumps past the depth, and the
    model's book of each at every tick: a near-zero one keeps fewer bid levels."""

    def __init__(self, depth: int, seed: int = 11) -> None:
        self.depth = depth
        self.rng = np.random.default_rng(seed)
        self.symbols = ["ACME", "GLOBEX", "PENNY"]
        self.ticks = np.array([7000, 12345, 4])  # prices in ticks
        self.sequence = 0
        self.books = self._books()

    def _books(self) -> dict[str, ModelBook]:
        return {
            s: MODEL.book_at(7, i, self.sequence, self.ticks[i] * TICK, TICK, self.depth)
            for i, s in enumerate(self.symbols)
        }

    def snapshot(self, symbols=None) -> pb.MarketEvent:
        books = [whole(s, self.books[s], self.depth) for s in symbols or self.symbols]
        return pb.MarketEvent(sequence=self.sequence, book_snapshot=pb.OrderBooks(books=books))

    def step(self) -> pb.MarketEvent:
        jumps = self.rng.choice([0, 0, 1, -1, 3, -2, 60, -60], size=len(self.symbols))
        jumps[-1] = self.rng.choice([-1, 0, 1])  # PENNY stays within a few ticks of zero
        self.ticks = np.maximum(1, self.ticks + jumps)
        self.sequence += 1
        old, self.books = self.books, self._books()
        books = [changes(s, old[s], self.books[s], self.depth) for s in self.symbols]
        return pb.MarketEvent(sequence=self.sequence, book_update=pb.OrderBooks(books=books))


def assert_book(book: Book, expected: ModelBook) -> None:
    assert not book.stale, book.reason
    assert book.sequence == expected.sequence
    for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        mine, theirs = getattr(book, name), getattr(expected, name)
        assert mine.dtype == (np.float64 if "prices" in name else np.int64)
        assert np.array_equal(mine, theirs), (name, mine, theirs)
        assert not mine.flags.writeable


def as_form(event: pb.MarketEvent, form: str):
    return decode_market_event(event.SerializeToString()) if form == "numpy" else event


@pytest.mark.parametrize("form", ["protobuf", "numpy"])
@pytest.mark.parametrize("depth", [1, 10, 50])
def test_updates_rebuild_the_models_book_at_every_tick(form, depth):
    market = Market(depth)
    keeper = BookKeeper()
    assert keeper.apply(as_form(market.snapshot(), form)) == tuple(market.symbols)
    fewest_bids = depth
    for _ in range(150):
        assert keeper.apply(as_form(market.step(), form)) == tuple(market.symbols)
        for symbol in market.symbols:
            assert_book(keeper[symbol], market.books[symbol])
        fewest_bids = min(fewest_bids, len(keeper["PENNY"].bid_prices))
    assert keeper.gaps == keeper.invalid == 0
    assert fewest_bids < depth or depth == 1  # near zero, bids stop at one tick


def test_a_missed_update_makes_the_book_stale_until_the_next_snapshot():
    market = Market(5)
    keeper = BookKeeper()
    keeper.apply(market.snapshot())
    keeper.apply(market.step())
    last_good = market.books["ACME"]
    lost = market.step()  # ACME's book of this tick is lost on the way
    keeper.apply(pb.MarketEvent(sequence=2, book_update=pb.OrderBooks(books=lost.book_update.books[1:])))
    keeper.apply(market.step())  # the other symbols follow their books: still applied
    acme = keeper["ACME"]
    assert acme.stale and keeper.gaps == 1 and keeper.stale == ("ACME",)
    assert "update 3 follows 2, the book is at 1" in acme.reason
    assert acme.sequence == 1 and np.array_equal(acme.bid_sizes, last_good.bid_sizes)  # the last good levels
    assert_book(keeper["GLOBEX"], market.books["GLOBEX"])
    keeper.apply(market.step())  # still waiting: not applied, not counted again
    assert keeper["ACME"].stale and keeper.gaps == 1
    assert_book(keeper["GLOBEX"], market.books["GLOBEX"])
    keeper.apply(market.snapshot(["ACME"]))  # the server's snapshot after the gap heals it
    assert_book(keeper["ACME"], market.books["ACME"])
    keeper.apply(market.step())
    for symbol in market.symbols:
        assert_book(keeper[symbol], market.books[symbol])
    assert keeper.stale == ()


def test_a_gap_can_raise_after_the_rest_of_the_event_is_applied():
    market = Market(3)
    keeper = BookKeeper(raise_on_gap=True)
    keeper.apply(market.snapshot())
    before = market.books["GLOBEX"]
    market.step()
    update = market.step()
    # GLOBEX's entry goes from the book the keeper has: it follows; the others do not.
    update.book_update.books[1].CopyFrom(changes("GLOBEX", before, market.books["GLOBEX"], 3))
    with pytest.raises(BookGap) as raised:
        keeper.apply(update)
    assert raised.value.symbols == ("ACME", "PENNY")
    assert "ACME: update 2 follows 1, the book is at 0" in str(raised.value)
    assert_book(keeper["GLOBEX"], market.books["GLOBEX"])
    assert keeper.gaps == 2


def test_an_update_before_any_snapshot_is_a_gap():
    market = Market(3)
    keeper = BookKeeper()
    keeper.apply(market.step())
    assert keeper.gaps == 3
    assert keeper["ACME"].stale and keeper["ACME"].sequence is None
    assert "before any snapshot" in keeper["ACME"].reason
    keeper.apply(market.step())
    assert keeper.gaps == 3


def book(
    symbol="ACME", bids=((70.00, 5), (69.99, 7)), asks=((70.01, 4), (70.02, 9)), **fields
) -> pb.OrderBook:
    return pb.OrderBook(
        symbol=symbol,
        bid_prices=[p for p, _ in bids],
        bid_sizes=[s for _, s in bids],
        ask_prices=[p for p, _ in asks],
        ask_sizes=[s for _, s in asks],
        **{"sequence": 1, "depth": 2, **fields},
    )


BROKEN = {
    "crossed": (book(bids=((70.05, 1),)), "crossed"),
    "touching": (book(bids=((70.01, 1),)), "crossed"),
    "bids unsorted": (book(bids=((69.99, 1), (70.00, 2))), "bid not strictly sorted"),
    "asks unsorted": (book(asks=((70.02, 1), (70.01, 2))), "ask not strictly sorted"),
    "a level twice": (book(asks=((70.01, 1), (70.01, 2))), "ask not strictly sorted"),
    "size 0": (book(bids=((70.00, 0),)), "bid size not above 0"),
    "size 2^63": (book(asks=((70.01, 2**63),)), "ask size not above 0"),
    "not a number": (book(bids=((float("nan"), 3),)), "bid price not finite"),
    "beyond the depth": (book(depth=1), "more bid levels than the depth"),
    "sizes not parallel": (
        pb.OrderBook(symbol="ACME", bid_prices=[1.0, 0.5], bid_sizes=[3]),
        "2 bid prices but 1",
    ),
}


@pytest.mark.parametrize("form", ["protobuf", "numpy"])
@pytest.mark.parametrize("case", BROKEN)
def test_a_snapshot_that_breaks_an_invariant_is_refused_and_the_others_applied(case, form):
    broken, reason = BROKEN[case]
    event = pb.MarketEvent(book_snapshot=pb.OrderBooks(books=[book("GOOD"), broken]))
    keeper = BookKeeper()
    with pytest.raises(InvalidBook, match=reason) as raised:
        keeper.apply(as_form(event, form))
    assert raised.value.symbols == ("ACME",)
    assert keeper["ACME"].stale and reason in keeper["ACME"].reason
    assert len(keeper["ACME"].bid_prices) == len(keeper["ACME"].ask_prices) == 0
    assert not keeper["GOOD"].stale and keeper["GOOD"].best_bid == 70.00
    assert keeper.invalid == 1
    if case != "sizes not parallel":  # without checks it goes in as it came (not parallel cannot)
        assert BookKeeper(check=False).apply(event) == ("GOOD", "ACME")


@pytest.mark.parametrize(
    "update, reason",
    [
        (book(bids=((70.03, 2), (69.99, 0)), asks=(), previous_sequence=1, sequence=2), "crossed"),
        (
            book(bids=((69.98, 2),), asks=(), previous_sequence=1, sequence=2),
            "more bid levels than the depth",
        ),
        (book(bids=(), asks=((70.01, 2**64 - 1),), previous_sequence=1, sequence=2), "ask size not above 0"),
    ],
)
def test_an_update_that_breaks_an_invariant_drops_the_book_until_a_snapshot(update, reason):
    keeper = BookKeeper()
    keeper.apply_snapshot([book(), book("GOOD")])
    good_update = book("GOOD", bids=((70.00, 9),), asks=(), previous_sequence=1, sequence=2)
    with pytest.raises(InvalidBook, match=reason):
        keeper.apply_update([update, good_update])
    assert keeper["ACME"].stale and len(keeper["ACME"].bid_prices) == 0
    assert keeper["GOOD"].bid_sizes.tolist() == [9, 7] and not keeper["GOOD"].stale
    assert keeper.apply_update(book(previous_sequence=2, sequence=3)) == ()  # ignored, not a new gap
    assert keeper.gaps == 0 and keeper.invalid == 1
    keeper.apply_snapshot(book(sequence=4))
    assert not keeper["ACME"].stale and keeper["ACME"].reason == ""


def test_updates_set_remove_and_add_levels_in_order():
    keeper = BookKeeper()
    keeper.apply_snapshot(book(depth=3))
    keeper.apply_update(
        book(
            bids=((70.00, 0), (69.98, 3), (69.99, 8), (69.99, 6)),  # the last word on a level wins
            asks=((70.005, 2),),
            previous_sequence=1,
            sequence=2,
            depth=3,
        )
    )
    acme = keeper["ACME"]
    assert acme.bid_prices.tolist() == [69.99, 69.98] and acme.bid_sizes.tolist() == [6, 3]
    assert acme.ask_prices.tolist() == [70.005, 70.01, 70.02] and acme.ask_sizes.tolist() == [2, 4, 9]
    assert (acme.best_bid, acme.best_ask, acme.best_bid_size, acme.best_ask_size) == (69.99, 70.005, 6, 2)
    assert acme.mid == pytest.approx(69.9975) and acme.spread == pytest.approx(0.015)


def test_a_symbol_twice_in_one_message_is_applied_in_order():
    keeper = BookKeeper()
    keeper.apply_snapshot(book())
    first = book(bids=((70.00, 1),), asks=(), previous_sequence=1, sequence=2)
    second = book(bids=((70.00, 2),), asks=(), previous_sequence=2, sequence=3)
    assert keeper.apply_update([first, second]) == ("ACME", "ACME")
    assert keeper["ACME"].best_bid_size == 2 and keeper["ACME"].sequence == 3


def test_an_empty_side_has_no_best_price_mid_or_spread():
    one_sided = Book.of(book(asks=()))
    assert one_sided.best_ask is None and one_sided.best_ask_size is None
    assert one_sided.mid is None and one_sided.spread is None
    assert one_sided.best_bid == 70.00
    with pytest.raises(InvalidBook):
        Book.of(book(bids=((71.0, 1),)))


def test_top_of_book_events_are_whole_depth_one_books():
    top = pb.MarketEvent(
        top_of_book=pb.OrderBooks(books=[book(bids=((70.0, 5),), asks=((70.02, 1),), depth=1)])
    )
    later = pb.MarketEvent(
        top_of_book=pb.OrderBooks(books=[book(bids=((70.01, 2),), asks=((70.02, 3),), depth=1, sequence=5)])
    )
    keeper = BookKeeper(top_of_book=True)
    keeper.apply(as_form(top, "numpy"))
    keeper.apply(later)
    acme = keeper["ACME"]
    assert (acme.best_bid, acme.best_bid_size, acme.best_ask_size, acme.sequence) == (70.01, 2, 3, 5)
    assert BookKeeper().apply(top) == ()  # a book keeper leaves top of book alone
    assert keeper.apply(Market(2).snapshot()) == ()  # and a top-of-book keeper the books


def test_a_discarded_symbol_is_forgotten_and_can_come_back():
    keeper = BookKeeper()
    keeper.apply_snapshot([book(), book("GOOD")])
    keeper.discard("ACME")
    assert "ACME" not in keeper and list(keeper) == ["GOOD"] and len(keeper) == 1
    with pytest.raises(KeyError):
        keeper["ACME"]
    keeper.apply_snapshot(book(sequence=9))
    assert keeper["ACME"].sequence == 9 and keeper["GOOD"].best_bid == 70.00
