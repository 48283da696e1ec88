"""marketdata-client: the sample command-line client.

    marketdata-client get --periods 100 --start-price 70 --mu 0.05 --sigma 0.3 --delta 1
    marketdata-client stream --periods 10000000 --seed 7 --format npy --output path.npy
    marketdata-client subscribe ACME GLOBEX

JSON output keeps the original endpoint's shape, ``{"result": [...]}``, plus
the seed that replays the path. Exit codes: 0 success, 1 RPC error (with a
readable message on stderr), 2 bad command line, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import IO

import grpc
import numpy as np
from tqdm import tqdm

from client.api import DEFAULT_TARGET, MarketDataClient, field_violations

EXIT_RPC_ERROR = 1
EXIT_INTERRUPTED = 130
FORMATS = ("json", "csv", "npy")


class PathWriter:
    """Writes a path piece by piece, so a long stream never sits whole in memory."""

    def __init__(self, fmt: str, out: IO[str] | None, npy_path: str | None, periods: int) -> None:
        self.fmt = fmt
        self.out = out
        self.count = 0
        self._array = (
            np.lib.format.open_memmap(npy_path, mode="w+", dtype=np.float64, shape=(periods,))
            if fmt == "npy"
            else None
        )
        if fmt == "json":
            out.write('{"result": [')
        elif fmt == "csv":
            out.write("index,price\n")

    def write(self, offset: int, prices: np.ndarray) -> None:
        if self._array is not None:
            self._array[offset : offset + len(prices)] = prices
        elif self.fmt == "json":
            text = ", ".join(map(repr, prices.tolist()))
            self.out.write((", " if self.count else "") + text)
        else:
            self.out.writelines(f"{i},{p!r}\n" for i, p in enumerate(prices.tolist(), start=offset))
        if self.out is not None:
            self.out.flush()  # a reader of a paced stream sees each chunk as it arrives
        self.count += len(prices)

    def finish(self, seed: int, symbol: str) -> None:
        if self._array is not None:
            self._array.flush()
            print(f"wrote {self.count} prices (seed {seed})", file=sys.stderr)
        elif self.fmt == "json":
            self.out.write(f'], "seed": {seed}, "symbol": {json.dumps(symbol)}}}\n')
        if self.out is not None:
            self.out.flush()


def _add_path_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--periods",
        type=int,
        default=100,
        help="number of prices, start price included (default %(default)s)",
    )
    parser.add_argument("--start-price", type=float, default=70.0, help="first price (default %(default)s)")
    parser.add_argument("--mu", type=float, default=0.05, help="annualised drift (default %(default)s)")
    parser.add_argument(
        "--sigma", type=float, default=0.3, help="annualised volatility (default %(default)s)"
    )
    parser.add_argument(
        "--delta", type=float, default=1.0, help="period length in trading days (default %(default)s)"
    )
    parser.add_argument(
        "--trading-days-per-year", type=float, help="trading days per year (server default 252)"
    )
    parser.add_argument("--seed", type=int, help="seed to replay a path (default: the server draws one)")
    parser.add_argument("--symbol", default="", help="label echoed back by the server")
    parser.add_argument(
        "--format", choices=FORMATS, default="json", help="output format (default %(default)s)"
    )
    parser.add_argument("--output", "-o", help="output file (default stdout; required for npy)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketdata-client",
        description="Fetch synthetic GBM prices from a marketdata.v1 server.",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("MARKETDATA_TARGET", DEFAULT_TARGET),
        help="server address host:port (default $MARKETDATA_TARGET or %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, help="deadline in seconds (default 30 for get, none for stream)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="whole path in one call (GetGbmPrices)")
    _add_path_arguments(get)
    stream = sub.add_parser("stream", help="path in chunks as they are generated (StreamGbmPrices)")
    _add_path_arguments(stream)
    stream.add_argument("--chunk-size", type=int, help="prices per message (default: server's)")
    stream.add_argument(
        "--ticks-per-second", type=float, help="pace the stream (default: as fast as possible)"
    )
    stream.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    sub_live = sub.add_parser("subscribe", help="live market prices, one JSON object per line (Subscribe)")
    sub_live.add_argument("symbols", nargs="*", help="symbols to follow (default: every instrument)")
    sub_live.add_argument(
        "--heartbeat", type=float, help="seconds of quiet before a heartbeat (server default 1)"
    )
    sub_live.add_argument(
        "--count", type=int, help="stop after this many price updates (default: run until Ctrl-C)"
    )
    sub_live.add_argument(
        "--json", action="store_true", help="JSON lines even on a terminal (default there: a live table)"
    )
    return parser


def _path_kwargs(args: argparse.Namespace) -> dict:
    return {
        "periods": args.periods,
        "start_price": args.start_price,
        "mu": args.mu,
        "sigma": args.sigma,
        "delta": args.delta,
        "trading_days_per_year": args.trading_days_per_year,
        "seed": args.seed,
        "symbol": args.symbol,
    }


def describe_error(error: grpc.RpcError, target: str, timeout: float | None) -> str:
    """One readable line (or a few) for an RPC failure."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"error: cannot reach the server at {target} ({details}). "
            "Is it running? Start one with `make run`."
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"error: deadline exceeded: no complete answer within {timeout} s. "
            "Raise --timeout or ask for less."
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = ", ".join(field for field, _ in field_violations(error))
        return f"error: invalid argument{f' ({fields})' if fields else ''}: {details}"
    return f"error: {code.name}: {details}"


def _run_get(md: MarketDataClient, args: argparse.Namespace, out: IO[str] | None) -> None:
    path = md.get_gbm_prices(**_path_kwargs(args), timeout=args.timeout)
    writer = PathWriter(args.format, out, args.output, len(path.prices))
    writer.write(0, path.prices)
    writer.finish(path.seed, path.symbol)


def _run_stream(md: MarketDataClient, args: argparse.Namespace, out: IO[str] | None) -> None:
    writer = PathWriter(args.format, out, args.output, max(args.periods, 0))
    seed, symbol = 0, args.symbol
    progress = tqdm(
        total=args.periods,
        unit="price",
        unit_scale=True,
        file=sys.stderr,
        disable=True if args.no_progress else None,  # None: only on a terminal
    )
    with (
        progress,
        md.stream_gbm_prices(
            **_path_kwargs(args),
            chunk_size=args.chunk_size,
            ticks_per_second=args.ticks_per_second,
            timeout=args.timeout,
        ) as stream,
    ):
        for chunk in stream:
            writer.write(chunk.offset, chunk.prices)
            seed, symbol = chunk.seed, chunk.symbol
            progress.update(len(chunk.prices))
    writer.finish(seed, symbol)


class LiveTable:
    """Redraws the subscribed symbols' prices in place on a terminal."""

    CLEAR = "\x1b[H\x1b[2J"

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.opening: dict[str, float] = {}

    def draw(self, event, gaps: int) -> None:
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


def _run_subscribe(md: MarketDataClient, args: argparse.Namespace, out: IO[str]) -> None:
    updates = 0
    table = LiveTable(out) if out.isatty() and not args.json else None
    with md.subscribe(args.symbols, heartbeat_seconds=args.heartbeat, timeout=args.timeout) as subscription:
        for event in subscription:
            kind = event.WhichOneof("event")
            if table is not None:
                if kind != "heartbeat":
                    table.draw(event, subscription.gaps)
                updates += kind == "update"
                if args.count is not None and updates >= args.count:
                    return
                continue
            line: dict = {
                "kind": kind,
                "sequence": event.sequence,
                "exchange_time": event.exchange_time.ToJsonString(),
            }
            if kind != "heartbeat":
                body = event.snapshot if kind == "snapshot" else event.update
                line["prices"] = {p.symbol: p.price for p in body.prices}
                line["gaps"] = subscription.gaps
            out.write(json.dumps(line) + "\n")
            out.flush()
            updates += kind == "update"
            if args.count is not None and updates >= args.count:
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "format", None) == "npy" and not args.output:
        parser.error("--format npy needs --output FILE")
    if args.timeout is None and args.command == "get":
        args.timeout = 30.0

    out: IO[str] | None = None
    try:
        if args.command == "subscribe":
            out = sys.stdout
        elif args.format != "npy":
            out = open(args.output, "w") if args.output else sys.stdout
        with MarketDataClient(args.target) as md:
            if args.command == "get":
                _run_get(md, args, out)
            elif args.command == "stream":
                _run_stream(md, args, out)
            else:
                _run_subscribe(md, args, out)
    except grpc.RpcError as error:
        print(describe_error(error, args.target, args.timeout), file=sys.stderr)
        return EXIT_RPC_ERROR
    except KeyboardInterrupt:
        what = "subscription ended" if args.command == "subscribe" else "the output is incomplete"
        print(f"\ninterrupted: the call was cancelled and {what}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    return 0
