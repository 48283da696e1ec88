"""The get and stream commands: the request they send, and the chunks written as they come."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from marketdata.v1 import market_data_pb2

from ..api import MarketDataClient
from ..decoding import PriceChunk, PricePath, join
from ..requests import CALENDARS, path_request
from .checks import delta
from .destination import Destination
from .output import PathWriter


def gbm_call(args: argparse.Namespace) -> dict[str, object] | None:
    """The arguments of get_gbm_prices or stream_gbm_prices when the path is plain GBM with nothing
    added, which goes through GetGbmPrices as the original endpoint did; None when it needs GetPrices."""
    if args.model != "gbm" or args.columns.any or args.tick_size is not None:
        return None
    return {
        "periods": args.periods,
        **args.model_params,  # GbmModel's fields are GbmRequest's start_price, mu and sigma
        "delta": delta(args),
        "trading_days_per_year": args.trading_days_per_year,
        "seed": args.seed,
        "symbol": args.symbol,
    }


def path_request_for(args: argparse.Namespace, **pacing: float | None) -> market_data_pb2.PathRequest:
    """The PathRequest of a checked command line; ``pacing``: a stream's chunk_size and ticks_per_second."""
    start = args.start_time
    if start is None and (args.columns.time or args.columns.bars):
        start = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    return path_request(
        args.model,
        args.periods,
        delta(args),
        model_params=args.model_params,
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
        **pacing,
    )


def run_get(md: MarketDataClient, args: argparse.Namespace, out: Destination) -> None:
    """The whole path in one call, written out."""
    classic = gbm_call(args)
    if classic is not None:
        path = md.get_gbm_prices(**classic, timeout=args.timeout)
    else:
        path = md.get_prices(path_request_for(args), timeout=args.timeout)
    chunk = PriceChunk(**{f: getattr(path, f) for f in PricePath.__dataclass_fields__}, offset=0)
    _write(args, out, [chunk], len(path.prices))


def run_stream(md: MarketDataClient, args: argparse.Namespace, out: Destination) -> None:
    """The path in chunks, each written as it arrives, with a progress bar on a terminal."""
    progress = tqdm(
        total=args.periods,
        unit="price",
        unit_scale=True,
        file=sys.stderr,
        disable=True if args.no_progress else None,  # None: only on a terminal
    )
    pacing = {"chunk_size": args.chunk_size, "ticks_per_second": args.ticks_per_second}
    classic = gbm_call(args)
    if classic is not None:
        call = md.stream_gbm_prices(**classic, **pacing, timeout=args.timeout)
    else:
        call = md.stream_prices(path_request_for(args, **pacing), timeout=args.timeout)

    def chunks() -> Iterator[PriceChunk]:
        with progress, call as stream:
            for chunk in stream:
                yield chunk
                # A bars chunk carries no prices: its offset tells how far the path has got.
                progress.update(max(0, chunk.offset + len(chunk.prices) - progress.n))
            progress.update(progress.total - progress.n)

    _write(args, out, chunks(), max(args.periods, 0))


def _write(args: argparse.Namespace, out: Destination, chunks: Iterable[PriceChunk], periods: int) -> None:
    """Write every chunk as it comes; keep them for --plot only."""
    writer = PathWriter(args.format, out, periods, args.columns)
    kept: list[PriceChunk] = []
    seed, symbol = 0, args.symbol
    for chunk in chunks:
        writer.write(chunk)
        seed, symbol = chunk.seed, chunk.symbol
        if args.plot:
            kept.append(chunk)
    writer.finish(seed, symbol)
    if args.plot and kept:
        from ..plot import draw  # matplotlib is optional: imported only when asked for

        title = f"{args.model}  {symbol}  seed {seed}".replace("  ", " ").strip()
        draw(join(kept), args.plot, title)
        print(f"drew {args.plot}", file=sys.stderr)
