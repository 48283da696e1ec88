"""The subscribe command: live prices as JSON lines, or as a table redrawn in place on a terminal;
books and trades (--book, --trades) are client.cli.books'."""

from __future__ import annotations

import argparse
import json
from typing import IO

from marketdata.v1 import market_data_pb2

from ..api import MarketDataClient
from .books import run_data_subscribe


class LiveTable:
    """Redraws the subscribed symbols' prices in place on a terminal."""

    CLEAR = "\x1b[H\x1b[2J"

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.opening: dict[str, float] = {}

    def draw(self, event: market_data_pb2.MarketEvent, gaps: int) -> None:
        body = event.snapshot if event.HasField("snapshot") else event.update
        if event.HasField("snapshot"):
            self.opening = {p.symbol: p.price for p in body.prices}
        lines = [
            f"sequence {event.sequence}  {event.exchange_time.ToJsonString()}  gaps {gaps}  (Ctrl-C quits)",
            "",
            f"{'symbol':<12}{'price':>14}{'change':>10}",
        ]
        for p in body.prices:
            start = self.opening.get(p.symbol, p.price)
            change = (p.price / start - 1) * 100 if start else 0.0
            lines.append(f"{p.symbol:<12}{p.price:>14.4f}{change:>+9.2f}%")
        self.out.write(self.CLEAR + "\n".join(lines) + "\n")
        self.out.flush()


def run_subscribe(md: MarketDataClient, args: argparse.Namespace, out: IO[str]) -> None:
    """Follow the live market until --count updates (or Ctrl-C): a table on a terminal, else JSON lines."""
    if args.book or args.trades:
        run_data_subscribe(md, args, out)
        return
    updates = 0
    table = LiveTable(out) if out.isatty() and not args.json else None
    with md.subscribe(args.symbols, heartbeat_seconds=args.heartbeat, timeout=args.timeout) as subscription:
        for event in subscription:
            kind = event.WhichOneof("event")
            if table is None:
                out.write(json.dumps(_json_line(event, kind, subscription.gaps)) + "\n")
                out.flush()
            elif kind != "heartbeat":
                table.draw(event, subscription.gaps)
            updates += kind == "update"
            if args.count is not None and updates >= args.count:
                return


def _json_line(event: market_data_pb2.MarketEvent, kind: str, gaps: int) -> dict:
    line: dict = {
        "kind": kind,
        "sequence": event.sequence,
        "exchange_time": event.exchange_time.ToJsonString(),
    }
    if kind != "heartbeat":
        body = event.snapshot if kind == "snapshot" else event.update
        line["prices"] = {p.symbol: p.price for p in body.prices}
        line["gaps"] = gaps
    return line
