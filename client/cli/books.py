"""subscribe --book N and --trades: a live price ladder and trade prints.

On a terminal the books are a ladder redrawn in place (asks above, bids
below, each level's size in lots with a bar), the last prints under them;
trades alone are a line per print. Elsewhere (a pipe, a file, or --json)
every book event is a JSON line with the books it changed, whole, and every
print a JSON line of its own.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
from collections.abc import Iterable
from typing import IO

import numpy as np

from ..api import MarketDataClient
from ..book import Book, BookKeeper, InvalidBook
from ..events import BOOK_KINDS, TradeArrays, event_books, event_kind, event_trades
from ..requests import data_subscription
from ..streams import Event
from .output import iso_times

SIDES = {1: "BUY", 2: "SELL"}  # marketdata.v1.Side
RECENT_TRADES = 10  # prints kept under the ladder
BAR = 16  # characters of the widest level's size bar
COUNTED = ("update", "book_update", "trades")  # what --count counts


def run_data_subscribe(md: MarketDataClient, args: argparse.Namespace, out: IO[str]) -> None:
    """Follow books (--book) and trades (--trades) until --count updates or Ctrl-C."""
    data = []
    if args.book:
        data.append(data_subscription("order_book", args.symbols, depth=args.book))
    if args.trades:
        data.append(data_subscription("trades", args.symbols))
    subscription = md.subscribe(data=data, heartbeat_seconds=args.heartbeat, timeout=args.timeout, numpy=True)
    with subscription:
        show(subscription, out, terminal=out.isatty() and not args.json, count=args.count)


def show(events: Iterable[Event], out: IO[str], *, terminal: bool, count: int | None = None) -> None:
    """Write ``events`` (MarketEvents or DecodedEvents) as a ladder and trade lines on a terminal,
    or as JSON lines; stop after ``count`` updates (book updates and trade events)."""
    keeper = BookKeeper()
    screen = Screen(out) if terminal else None
    updates = 0
    for event in events:
        kind = event_kind(event)
        if kind in BOOK_KINDS:
            try:
                keeper.apply(event)
            except InvalidBook as error:  # the server sent a broken book: say so, wait for a snapshot
                print(f"warning: {error}; waiting for the next snapshot", file=sys.stderr)
        trades = event_trades(event)
        if screen is not None:
            if kind in BOOK_KINDS or trades is not None:
                screen.draw(event, keeper, trades)
        else:
            for line in _json_lines(event, kind, keeper, trades):
                out.write(json.dumps(line) + "\n")
            out.flush()
        updates += kind in COUNTED
        if count is not None and updates >= count:
            return


def _json_lines(event, kind, keeper: BookKeeper, trades) -> list[dict]:
    """A line for a book event (the books it names, whole after it, stale ones saying why), one
    per print of a trades event, one for any other event."""
    head = {"sequence": event.sequence, "exchange_time": event.exchange_time.ToJsonString()}
    if kind in BOOK_KINDS:
        books = {symbol: _book_json(keeper[symbol]) for symbol in event_books(event).symbol}
        return [{"kind": kind, **head, "books": books, "gaps": keeper.gaps}]
    if trades is not None:
        return [{"kind": "trade", "symbol": t.symbol, **trade} for t in trades for trade in _trade_json(t)]
    return [{"kind": kind, **head}]


def _book_json(book: Book) -> dict:
    line = {
        "sequence": book.sequence,
        "bids": [
            list(level) for level in zip(book.bid_prices.tolist(), book.bid_sizes.tolist(), strict=True)
        ],
        "asks": [
            list(level) for level in zip(book.ask_prices.tolist(), book.ask_sizes.tolist(), strict=True)
        ],
    }
    if book.stale:
        line["stale"] = book.reason
    return line


def _trade_json(trades: TradeArrays) -> list[dict]:
    times = iso_times(trades.times, "ms")
    return [
        {"trade_id": trade_id, "price": price, "size": size, "side": SIDES.get(side, str(side)), "time": time}
        for trade_id, price, size, side, time in zip(
            trades.trade_ids.tolist(),
            trades.prices.tolist(),
            trades.sizes.tolist(),
            trades.aggressors.tolist(),
            times,
            strict=True,
        )
    ]


def trade_line(symbol: str, trade: dict) -> str:
    """One print as a line of text."""
    return (
        f"{trade['time']}  {symbol:<10}{trade['side']:<5}{trade['size']:>8} @ {trade['price']!r:<12}"
        f"#{trade['trade_id']}"
    )


class Screen:
    """Redraws the books in place on a terminal, the latest prints under them; without books,
    writes a line per print."""

    CLEAR = "\x1b[H\x1b[2J"

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.recent: collections.deque[str] = collections.deque(maxlen=RECENT_TRADES)
        self.books_seen = False

    def draw(self, event: Event, keeper: BookKeeper, trades) -> None:
        lines = []
        if trades is not None:
            lines = [trade_line(t.symbol, trade) for t in trades for trade in _trade_json(t)]
        if event_kind(event) in BOOK_KINDS:
            self.books_seen = True
        if not self.books_seen:  # trades only: a line each, scrolling
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()
            return
        self.recent.extend(lines)
        width = shutil.get_terminal_size((100, 24)).columns
        head = (
            f"sequence {event.sequence}  {event.exchange_time.ToJsonString()}  "
            f"book gaps {keeper.gaps}  (Ctrl-C quits)"
        )
        screen = [head, "", *side_by_side([ladder(keeper[s]) for s in keeper], width)]
        if self.recent:
            screen += ["", "recent trades", *self.recent]
        self.out.write(self.CLEAR + "\n".join(screen) + "\n")
        self.out.flush()


def ladder(book: Book) -> list[str]:
    """One book as lines: the asks from the worst down to the best, then the bids from the best
    down; each level's price, size in lots and a bar of its size."""
    places = decimals(np.concatenate((book.bid_prices, book.ask_prices)))
    mid = "-" if book.mid is None else f"{book.mid:.{places + 1}f}"
    spread = "-" if book.spread is None else f"{book.spread:.{places}f}"
    lines = [f"{book.symbol}  mid {mid}  spread {spread}", f"{'':4}{'price':>12} {'lots':>8}"]
    if book.stale:
        lines.append(f"STALE ({book.reason or 'no snapshot yet'})"[:40])
    largest = max([*book.bid_sizes.tolist(), *book.ask_sizes.tolist(), 1])
    for name, prices, sizes in (
        ("ask", book.ask_prices[::-1], book.ask_sizes[::-1]),
        ("bid", book.bid_prices, book.bid_sizes),
    ):
        if name == "bid":
            lines.append("-" * 40)
        for price, size in zip(prices.tolist(), sizes.tolist(), strict=True):
            bar = "#" * max(1, round(BAR * size / largest))
            lines.append(f"{name} {price:>12.{places}f} {size:>8} {bar}")
    return lines


def decimals(prices: np.ndarray, most: int = 8) -> int:
    """The fewest decimal places that write every price exactly (at most ``most``): a ladder's
    prices then line up on the decimal point."""
    finite = prices[np.isfinite(prices)]
    for places in range(most):
        if np.array_equal(np.round(finite, places), finite):
            return places
    return most


def side_by_side(blocks: list[list[str]], width: int, gap: int = 4) -> list[str]:
    """Blocks of lines in as many columns as ``width`` characters hold, row after row."""
    if not blocks:
        return ["(no books yet)"]
    column = max(len(line) for block in blocks for line in block)
    per_row = max(1, (width + gap) // (column + gap))
    lines: list[str] = []
    for first in range(0, len(blocks), per_row):
        row = blocks[first : first + per_row]
        height = max(map(len, row))
        for i in range(height):
            cells = [(block[i] if i < len(block) else "").ljust(column) for block in row]
            lines.append((" " * gap).join(cells).rstrip())
        lines.append("")
    return lines[:-1]
