"""The get and stream commands: the request they send, and the chunks written as they come."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from tqdm import tqdm

from client.api import MarketDataClient
from client.cli.checks import delta, model_params
from client.cli.output import PathWriter
from client.decoding import PriceChunk, PricePath, join
from client.requests import CALENDARS, path_request
from marketdata.v1 import market_data_pb2


def _classic(args: argparse.Namespace) -> bool:
    """Plain GBM with nothing added goes through GetGbmPrices, as the original endpoint did."""
    return args.model == "gbm" and not args.columns.any and args.tick_size is None


def _gbm_kwargs(args: argparse.Namespace) -> dict:
    return {
        "periods": args.periods,
        "start_price": args.start_price,
        "mu": args.mu,
        "sigma": args.sigma,
        "delta": delta(args),
        "trading_days_per_year": args.trading_days_per_year,
        "seed": args.seed,
        "symbol": args.symbol,
    }


def _path_request(args: argparse.Namespace, **stream) -> market_data_pb2.PathRequest:
    start = args.start_time
    if start is None and (args.columns.time or args.columns.bars):
        start = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    return path_request(
        args.model,
        args.periods,
        delta(args),
        model_params=model_params(args),
        trading_days_per_year=args.trading_days_per_year,
        seed=args.seed,
        symbol=args.symbol,
        start_time=start,
        calendar=CALENDARS[args.calendar] if args.calendar else None,
        holidays=args.holiday,
        bar_interval=args.bars or "",
        tick_size=args.tick_size or 0.0,
        spread_bps=args.spread_bps,
        spread_volatility=args.spread_vol,
        volume_rate=args.volume_rate,
        **stream,
    )


def run_get(md: MarketDataClient, args: argparse.Namespace, out: IO[str] | None) -> None:
    if _classic(args):
        path = md.get_gbm_prices(**_gbm_kwargs(args), timeout=args.timeout)
    else:
        path = md.get_prices(_path_request(args), timeout=args.timeout)
    chunk = PriceChunk(**{f: getattr(path, f) for f in PricePath.__dataclass_fields__}, offset=0)
    _write(args, out, [chunk], len(path.prices))


def run_stream(md: MarketDataClient, args: argparse.Namespace, out: IO[str] | None) -> None:
    progress = tqdm(
        total=args.periods,
        unit="price",
        unit_scale=True,
        file=sys.stderr,
        disable=True if args.no_progress else None,  # None: only on a terminal
    )
    pacing = {"chunk_size": args.chunk_size, "ticks_per_second": args.ticks_per_second}
    if _classic(args):
        call = md.stream_gbm_prices(**_gbm_kwargs(args), **pacing, timeout=args.timeout)
    else:
        call = md.stream_prices(_path_request(args, **pacing), timeout=args.timeout)

    def chunks() -> Iterator[PriceChunk]:
        with progress, call as stream:
            for chunk in stream:
                yield chunk
                # A bars chunk carries no prices: its offset tells how far the path has got.
                progress.update(max(0, chunk.offset + len(chunk.prices) - progress.n))
            progress.update(progress.total - progress.n)

    _write(args, out, chunks(), max(args.periods, 0))


def _write(args: argparse.Namespace, out: IO[str] | None, chunks: Iterable[PriceChunk], periods: int) -> None:
    """Write every chunk as it comes; keep them for --plot only."""
    writer = PathWriter(args.format, out, args.output, periods, args.columns)
    kept: list[PriceChunk] = []
    seed, symbol = 0, args.symbol
    for chunk in chunks:
        writer.write(chunk)
        seed, symbol = chunk.seed, chunk.symbol
        if args.plot:
            kept.append(chunk)
    writer.finish(seed, symbol)
    if args.plot and kept:
        from client.plot import draw  # matplotlib is optional: imported only when asked for

        title = f"{args.model}  {symbol}  seed {seed}".replace("  ", " ").strip()
        draw(join(kept), args.plot, title)
        print(f"drew {args.plot}", file=sys.stderr)
