"""Client CPU per book update: the generated classes against the numpy path.

    .venv/bin/python -m bench.client_book [--symbols 100] [--depth 10] [--ticks 300]

Events are made as the server makes them: the books of server.sim.book over
prices that move a few ticks per tick, a snapshot and then the changed levels
of every symbol at each tick, serialized once. Each way then turns the same
bytes into up-to-date books, and the CPU time it takes (process time, the
median of several passes) is divided by the number of events:

* protobuf + dict: MarketEvent.FromString, then each level set or removed in
  one dict per side and symbol, sorted into numpy arrays (what a client writes
  by hand from the messages);
* protobuf + BookKeeper: MarketEvent.FromString, then BookKeeper.apply on the
  message (its repeated fields copied into numpy);
* numpy + BookKeeper: decode_market_event, then BookKeeper.apply on the columns.

The decoding alone (no books) is shown too. Not a test: numbers depend on the
machine.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np

from client.book import BookKeeper
from client.events import decode_market_event, event_books
from marketdata.v1 import market_data_pb2 as pb
from server.sim.book import BookModel, Side, diff

# The first sequence: a market some 28 hours of 10 ticks a second old, whose sequence numbers
# take three varint bytes, as they soon do.
FIRST_SEQUENCE = 1_000_000


def make_events(symbols: int, depth: int, ticks: int, seed: int = 7) -> list[bytes]:
    """A book_snapshot and then ``ticks`` book_update events, serialized."""
    model = BookModel()
    rng = np.random.default_rng(seed)
    names = [f"SYM{i:03d}" for i in range(symbols)]
    prices = rng.uniform(20, 200, symbols).round(2)
    first = FIRST_SEQUENCE
    books = [model.book_at(seed, i, first, prices[i], 0.01, depth) for i in range(symbols)]
    snapshot = pb.OrderBooks(books=[_whole(n, b, depth) for n, b in zip(names, books, strict=True)])
    events = [pb.MarketEvent(sequence=first, book_snapshot=snapshot).SerializeToString()]
    for sequence in range(first + 1, first + ticks + 1):
        prices = np.maximum(0.01, prices + 0.01 * np.rint(rng.normal(0, 2, symbols)))
        update = pb.OrderBooks()
        for i, name in enumerate(names):
            new = model.book_at(seed, i, sequence, prices[i], 0.01, depth)
            update.books.append(_changes(name, books[i], new, depth))
            books[i] = new
        events.append(pb.MarketEvent(sequence=sequence, book_update=update).SerializeToString())
    return events


def _whole(name, book, depth) -> pb.OrderBook:
    return pb.OrderBook(
        symbol=name,
        sequence=book.sequence,
        depth=depth,
        bid_prices=book.bid_prices,
        bid_sizes=book.bid_sizes.tolist(),
        ask_prices=book.ask_prices,
        ask_sizes=book.ask_sizes.tolist(),
    )


def _changes(name, old, new, depth) -> pb.OrderBook:
    message = pb.OrderBook(symbol=name, sequence=new.sequence, previous_sequence=old.sequence, depth=depth)
    for change in diff(old, new):
        if change.side == Side.BUY:
            message.bid_prices.append(change.price)
            message.bid_sizes.append(change.size)
        else:
            message.ask_prices.append(change.price)
            message.ask_sizes.append(change.size)
    return message


def protobuf_dicts(events: list[bytes]) -> dict:
    """Books built by hand from the generated messages."""
    books: dict[str, tuple[dict, dict]] = {}
    arrays = {}
    for data in events:
        event = pb.MarketEvent.FromString(data)
        kind = event.WhichOneof("event")
        for book in getattr(event, kind).books:
            if kind == "book_snapshot":
                books[book.symbol] = (
                    dict(zip(book.bid_prices, book.bid_sizes, strict=True)),
                    dict(zip(book.ask_prices, book.ask_sizes, strict=True)),
                )
            else:
                bids, asks = books[book.symbol]
                for levels, prices, sizes in (
                    (bids, book.bid_prices, book.bid_sizes),
                    (asks, book.ask_prices, book.ask_sizes),
                ):
                    for price, size in zip(prices, sizes, strict=True):
                        if size:
                            levels[price] = size
                        else:
                            levels.pop(price, None)
            bids, asks = books[book.symbol]
            bid_prices = sorted(bids, reverse=True)
            ask_prices = sorted(asks)
            arrays[book.symbol] = (
                np.array(bid_prices),
                np.array([bids[p] for p in bid_prices]),
                np.array(ask_prices),
                np.array([asks[p] for p in ask_prices]),
            )
    return arrays


def protobuf_keeper(events: list[bytes]) -> BookKeeper:
    keeper = BookKeeper()
    for data in events:
        keeper.apply(pb.MarketEvent.FromString(data))
    return keeper


def numpy_keeper(events: list[bytes]) -> BookKeeper:
    keeper = BookKeeper()
    for data in events:
        keeper.apply(decode_market_event(data))
    return keeper


def protobuf_decode(events: list[bytes]) -> None:
    for data in events:
        event_books(pb.MarketEvent.FromString(data))


def numpy_decode(events: list[bytes]) -> None:
    for data in events:
        decode_market_event(data)


def cpu_per_event(runs: dict[str, Callable[[list[bytes]], object]], events: list[bytes], passes: int) -> dict:
    """The least process time of one pass over ``events``, per event, in seconds, for each way.
    The ways take turns, so that a machine busy with something else slows them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(passes):
        for name, run in runs.items():
            start = time.process_time()
            run(events)
            times[name].append(time.process_time() - start)
    return {name: min(spent) / len(events) for name, spent in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()
    events = make_events(args.symbols, args.depth, args.ticks)
    updates = events[1:]
    levels = np.mean([len(event_books(pb.MarketEvent.FromString(d)).bid_prices) for d in updates[:50]])
    levels += np.mean([len(event_books(pb.MarketEvent.FromString(d)).ask_prices) for d in updates[:50]])
    sizes = np.mean([len(d) for d in updates])
    # The three ways agree before they are timed.
    by_hand, with_protobuf, with_numpy = protobuf_dicts(events), protobuf_keeper(events), numpy_keeper(events)
    for symbol, (bid_prices, bid_sizes, ask_prices, ask_sizes) in by_hand.items():
        for keeper in (with_protobuf, with_numpy):
            book = keeper[symbol]
            assert np.array_equal(book.bid_prices, bid_prices) and np.array_equal(book.bid_sizes, bid_sizes)
            assert np.array_equal(book.ask_prices, ask_prices) and np.array_equal(book.ask_sizes, ask_sizes)
    machine = platform.processor() or platform.machine()
    print(f"{machine}, Python {platform.python_version()}, numpy {np.__version__}")
    print(
        f"{args.symbols} symbols x depth {args.depth}: {len(updates)} book_update events of "
        f"{sizes / 1024:.1f} KiB, {levels / args.symbols:.1f} changed levels per book"
    )
    rows = [
        ("protobuf + dict per side", protobuf_dicts),
        ("protobuf + BookKeeper", protobuf_keeper),
        ("numpy + BookKeeper", numpy_keeper),
        ("decode only: protobuf to columns", protobuf_decode),
        ("decode only: numpy", numpy_decode),
    ]
    results = cpu_per_event(dict(rows), events, args.passes)
    for name, _ in rows:
        print(f"  {name:<34}{results[name] * 1e6:>9.0f} us per event")
    numpy_path = results["numpy + BookKeeper"]
    print(f"numpy path / protobuf + BookKeeper: {numpy_path / results['protobuf + BookKeeper']:.2f}x")
    print(f"numpy path / protobuf + dict per side: {numpy_path / results['protobuf + dict per side']:.2f}x")
    print(
        "decoding alone, numpy / protobuf: "
        f"{results['decode only: numpy'] / results['decode only: protobuf to columns']:.2f}x"
    )


if __name__ == "__main__":
    main()
