"""marketdata-client: the sample command-line client.

    marketdata-client get --periods 100 --start-price 70 --mu 0.05 --sigma 0.3 --delta 1
    marketdata-client stream --periods 10000000 --seed 7 --format npy --output path.npy
    marketdata-client get --model heston --periods 23400 --period 1s --calendar nyse \
        --start-time 2026-03-02 --bars 5m --format csv --plot candles.png
    marketdata-client subscribe ACME GLOBEX

JSON output keeps the original endpoint's shape, ``{"result": [...]}``, plus
the seed that replays the path. Exit codes: 0 success, 1 RPC error (with a
readable message on stderr), 2 bad command line, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import grpc
import numpy as np
from tqdm import tqdm

from client.api import MarketDataClient
from client.base import DEFAULT_TARGET
from client.decoding import Bars, PriceChunk, PricePath, as_datetime64, join
from client.errors import field_violations
from client.requests import CALENDARS, MODELS, path_message, path_request, session_seconds
from marketdata.v1 import market_data_pb2

BAR_INTERVALS = ("1s", "1m", "5m", "15m", "1h", "1d")

EXIT_RPC_ERROR = 1
EXIT_INTERRUPTED = 130
FORMATS = ("json", "csv", "npy")


class PathWriter:
    """Writes a path piece by piece, so a long stream never sits whole in memory.

    CSV gets one column per thing asked for (time, price, bid, ask; or the
    bars' time, open, high, low, close, volume; a basket has one price column
    per symbol). JSON keeps the original endpoint's ``{"result": [...]}`` (a
    basket's result holds one row per period); timestamps, quotes and bars
    come as extra keys. The .npy format holds prices only (periods x symbols
    for a basket).
    """

    def __init__(
        self, fmt: str, out: IO[str] | None, npy_path: str | None, periods: int, extras: Extras
    ) -> None:
        self.fmt = fmt
        self.out = out
        self.extras = extras
        self.count = 0
        self._array = (
            np.lib.format.open_memmap(
                npy_path, mode="w+", dtype=np.float64, shape=(periods, *extras.shape_per_period)
            )
            if fmt == "npy"
            else None
        )
        self._json_extra: dict[str, list] = {}
        if fmt == "json":
            out.write('{"result": [')
        elif fmt == "csv":
            out.write(",".join(extras.csv_header()) + "\n")

    def write(self, chunk: PriceChunk) -> None:
        extras = self.extras
        bars = chunk.bars or Bars.empty()
        times = extras.format_times(bars.start_time if extras.bars else chunk.timestamps)
        if self._array is not None:
            self._array[chunk.offset : chunk.offset + len(chunk.prices)] = chunk.prices
        elif self.fmt == "json":
            text = ", ".join(map(repr, chunk.prices.tolist()))
            self.out.write((", " if self.count and text else "") + text)
            for name, values in extras.json_columns(chunk, times).items():
                self._json_extra.setdefault(name, []).extend(values)
        else:
            columns = extras.csv_columns(chunk, times)
            self.out.writelines(",".join(row) + "\n" for row in zip(*columns, strict=True))
        if self.out is not None:
            self.out.flush()  # a reader of a paced stream sees each chunk as it arrives
        self.count += len(chunk.prices)

    def finish(self, seed: int, symbol: str) -> None:
        if self._array is not None:
            self._array.flush()
            print(f"wrote {self.count} prices (seed {seed})", file=sys.stderr)
        elif self.fmt == "json":
            extra = "".join(
                f", {json.dumps(k)}: {json.dumps(v)}" for k, v in self.extras.json_tail(self._json_extra)
            )
            self.out.write(f'], "seed": {seed}, "symbol": {json.dumps(symbol)}{extra}}}\n')
        if self.out is not None:
            self.out.flush()


@dataclass(frozen=True)
class Extras:
    """What the command line added to the bare path, and how it is written out."""

    time: bool = False
    quotes: bool = False
    bars: bool = False
    time_unit: str = "ms"  # precision of the ISO 8601 times written
    symbols: tuple[str, ...] = ()  # a basket's columns; empty for one instrument

    @property
    def any(self) -> bool:
        return self.time or self.quotes or self.bars

    @property
    def shape_per_period(self) -> tuple[int, ...]:
        return (len(self.symbols),) if self.symbols else ()

    def csv_header(self) -> list[str]:
        if self.bars:
            return ["time", "open", "high", "low", "close", "volume"]
        prices = list(self.symbols) or ["price"]
        return ["index", *(["time"] if self.time else []), *prices, *(["bid", "ask"] if self.quotes else [])]

    def format_times(self, nanoseconds: np.ndarray) -> list[str]:
        if not (self.time or self.bars):
            return []
        return [t + "Z" for t in np.datetime_as_string(as_datetime64(nanoseconds), unit=self.time_unit)]

    def csv_columns(self, chunk: PriceChunk, times: list[str]) -> list[list[str]]:
        if self.bars:
            b = chunk.bars or Bars.empty()
            prices = [list(map(repr, getattr(b, name).tolist())) for name in ("open", "high", "low", "close")]
            return [times, *prices, list(map(str, b.volume.tolist()))]
        columns = [list(map(str, range(chunk.offset, chunk.offset + len(chunk.prices))))]
        if self.time:
            columns.append(times)
        prices = chunk.prices.reshape(len(chunk.prices), -1)  # one column per instrument
        columns += [list(map(repr, column.tolist())) for column in prices.T]
        if self.quotes:
            columns += [list(map(repr, chunk.bid.tolist())), list(map(repr, chunk.ask.tolist()))]
        return columns

    def json_columns(self, chunk: PriceChunk, times: list[str]) -> dict[str, list]:
        if self.bars:
            b = chunk.bars or Bars.empty()
            return {
                "bars": [
                    {"time": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                    for t, o, h, lo, c, v in zip(
                        times, *(getattr(b, n).tolist() for n in _BAR_VALUES), strict=True
                    )
                ]
            }
        columns: dict[str, list] = {}
        if self.time:
            columns["time"] = times
        if self.quotes:
            columns["bid"], columns["ask"] = chunk.bid.tolist(), chunk.ask.tolist()
        return columns

    def json_tail(self, collected: dict[str, list]) -> list[tuple[str, list]]:
        names = (
            ["bars"]
            if self.bars
            else [*(["time"] if self.time else []), *(["bid", "ask"] if self.quotes else [])]
        )
        basket = [("symbols", list(self.symbols))] if self.symbols else []
        return basket + [(name, collected.get(name, [])) for name in names]


_BAR_VALUES = ("open", "high", "low", "close", "volume")


# Model parameters beyond start price, mu and sigma: flag -> (models that take it, default, help).
MODEL_FLAGS = {
    "jump_intensity": (("merton",), 5.0, "expected jumps per year"),
    "jump_mean": (("merton",), -0.02, "mean log size of a jump"),
    "jump_stdev": (("merton",), 0.05, "standard deviation of a jump's log size"),
    "v0": (("heston",), None, "initial variance per year (default sigma^2)"),
    "kappa": (("heston", "ornstein_uhlenbeck"), 2.0, "speed of mean reversion per year"),
    "theta": (("heston",), None, "long-run variance per year (default sigma^2)"),
    "xi": (("heston",), 0.3, "volatility of the variance"),
    "rho": (("heston",), -0.7, "correlation of price and variance shocks"),
    "mean": (("ornstein_uhlenbeck",), None, "long-run level (default the start price)"),
}
CLI_MODELS = MODELS
DEFAULTS = {"start_price": 70.0, "mu": 0.05, "sigma": 0.3}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_seconds(text: str) -> float:
    """``250ms``, ``1s``, ``5m``, ``1h``, ``1d`` as seconds (an argparse type)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 250ms, 1s, 5m, 1h or 1d, got {text!r}")
    return float(match[1]) * _SECONDS[match[2]]


def start_time(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time; without an offset it is taken as UTC (an argparse type)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time such as 2026-03-02 or 2026-03-02T14:30:00Z, got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def asset(text: str) -> dict[str, object]:
    """``SYMBOL:START_PRICE:MU:SIGMA`` as one CorrelatedAsset's fields (an argparse type)."""
    parts = text.split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        return {
            "symbol": parts[0],
            **dict(zip(("start_price", "mu", "sigma"), map(float, parts[1:]), strict=True)),
        }
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SYMBOL:START_PRICE:MU:SIGMA such as AAA:50:0.05:0.2, got {text!r}"
        ) from None


def numbers(text: str) -> list[float]:
    """Comma-separated numbers (an argparse type)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _add_path_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--periods",
        type=int,
        default=100,
        help="number of prices, start price included (default %(default)s)",
    )
    parser.add_argument(
        "--model", choices=CLI_MODELS, default="gbm", help="price model (default %(default)s)"
    )
    parser.add_argument("--start-price", type=float, help=f"first price (default {DEFAULTS['start_price']})")
    parser.add_argument("--mu", type=float, help=f"annualised drift (default {DEFAULTS['mu']})")
    parser.add_argument("--sigma", type=float, help=f"annualised volatility (default {DEFAULTS['sigma']})")
    parser.add_argument(
        "--asset",
        type=asset,
        action="append",
        default=[],
        metavar="SYMBOL:START_PRICE:MU:SIGMA",
        help="correlated_gbm: one instrument of the basket (repeat for each)",
    )
    parser.add_argument(
        "--correlation",
        type=numbers,
        metavar="RHO | R11,R12,...",
        help="correlated_gbm: one correlation for every pair, or the whole matrix row by row "
        "(default: independent)",
    )
    for name, (models, default, text) in MODEL_FLAGS.items():
        shown = "" if default is None else f", default {default}"
        parser.add_argument(_flag(name), type=float, help=f"{' and '.join(models)}: {text}{shown}")
    parser.add_argument("--delta", type=float, help="period length in trading days (default 1)")
    parser.add_argument(
        "--period",
        type=duration_seconds,
        help="period length as a duration (250ms, 1s, 5m, 1h, 1d) of trading time: a trading day "
        "is one session with --calendar, else 24 h; instead of --delta",
    )
    parser.add_argument(
        "--trading-days-per-year", type=float, help="trading days per year (server default 252)"
    )
    parser.add_argument("--seed", type=int, help="seed to replay a path (default: the server draws one)")
    parser.add_argument("--symbol", default="", help="label echoed back by the server")
    time = parser.add_argument_group("time, bars and quotes")
    time.add_argument(
        "--start-time",
        type=start_time,
        help="time of the first price, ISO 8601 (UTC unless it has an offset); adds a time column. "
        "Default with --bars or --calendar: today 00:00 UTC",
    )
    time.add_argument(
        "--calendar", choices=tuple(CALENDARS), help="keep prices inside this exchange's sessions (weekdays)"
    )
    time.add_argument(
        "--holiday", type=iso_date, action="append", default=[], help="a date without a session (repeatable)"
    )
    time.add_argument("--bars", choices=BAR_INTERVALS, help="OHLCV bars of this interval instead of prices")
    time.add_argument("--volume-rate", type=float, help="bars: units traded per second (server default 10)")
    time.add_argument("--tick-size", type=float, help="round prices to this grid")
    spread = time.add_mutually_exclusive_group()
    spread.add_argument("--spread-bps", type=float, help="add bid/ask this many basis points apart")
    spread.add_argument(
        "--spread-vol", type=float, help="add bid/ask this many one-period volatilities apart"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="json", help="output format (default %(default)s)"
    )
    parser.add_argument("--output", "-o", help="output file (default stdout; required for npy)")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the path (a line) or the bars (candlesticks) to this image; needs matplotlib",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketdata-client",
        description="Fetch synthetic prices, bars and live quotes from a marketdata.v1 server.",
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
    get = sub.add_parser("get", help="whole path in one call (GetGbmPrices, or GetPrices)")
    _add_path_arguments(get)
    stream = sub.add_parser(
        "stream", help="path in chunks as they are generated (StreamGbmPrices, or StreamPrices)"
    )
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


def _flag(name: str) -> str:
    """The command-line flag of a parameter: jump_mean -> --jump-mean."""
    return "--" + name.replace("_", "-")


def check_path_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse flag combinations that would otherwise be ignored; fill in the defaults."""
    basket = args.model == "correlated_gbm"
    if basket:
        given = [_flag(n) for n in DEFAULTS if getattr(args, n) is not None]
        if given:
            parser.error(f"{', '.join(given)}: a basket's instruments carry their own (--asset)")
        if not args.asset:
            parser.error("--model correlated_gbm needs at least one --asset SYMBOL:START_PRICE:MU:SIGMA")
        if args.bars or args.spread_bps is not None or args.spread_vol is not None:
            parser.error("bars and quotes are for one instrument, not a correlated_gbm basket")
        n = len(args.asset)
        if args.correlation is not None and len(args.correlation) not in (1, n * n):
            parser.error(
                f"--correlation takes one number or {n * n} (a {n}x{n} matrix), got {len(args.correlation)}"
            )
    elif args.asset or args.correlation is not None:
        parser.error("--asset and --correlation apply to --model correlated_gbm")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name, (models, _, _) in MODEL_FLAGS.items():
        if getattr(args, name) is not None and args.model not in models:
            parser.error(f"{_flag(name)} applies to --model {' or '.join(models)}, not {args.model}")
    if args.period is not None and args.delta is not None:
        parser.error("give --delta or --period, not both")
    if args.volume_rate is not None and args.bars is None:
        parser.error("--volume-rate applies to --bars")
    if args.bars and (args.spread_bps is not None or args.spread_vol is not None):
        parser.error("quotes (--spread-bps, --spread-vol) come with prices, not with --bars")
    if args.holiday and args.calendar is None:
        parser.error("--holiday needs --calendar")
    args.extras = _extras(args)  # what the output holds; every later step reads it
    if args.format == "npy" and args.extras.any:
        parser.error("--format npy holds prices only: use csv or json for times, quotes or bars")


def _extras(args: argparse.Namespace) -> Extras:
    timed = args.start_time is not None or args.calendar is not None or args.bars is not None
    return Extras(
        time=timed and not args.bars,
        quotes=args.spread_bps is not None or args.spread_vol is not None,
        bars=args.bars is not None,
        time_unit=_time_unit(args),
        symbols=tuple(a["symbol"] for a in args.asset),
    )


def _time_unit(args: argparse.Namespace) -> str:
    """Milliseconds, or as fine as the period and the start time need to tell values apart."""
    step_ns = round(_delta(args) * _day_seconds(args) * 1e9)
    start = args.start_time
    start_ns = 0 if start is None else start.microsecond * 1000
    for unit, size in (("ms", 10**6), ("us", 10**3)):
        if step_ns % size == 0 and start_ns % size == 0:
            return unit
    return "ns"


def _classic(args: argparse.Namespace) -> bool:
    """Plain GBM with nothing added goes through GetGbmPrices, as the original endpoint did."""
    return args.model == "gbm" and not args.extras.any and args.tick_size is None


def _day_seconds(args: argparse.Namespace) -> float:
    """A trading day: one session with a calendar, else 24 hours (as the server counts it)."""
    return 86_400.0 if args.calendar is None else session_seconds(CALENDARS[args.calendar])


def _delta(args: argparse.Namespace) -> float:
    if args.period is None:
        return 1.0 if args.delta is None else args.delta
    return args.period / _day_seconds(args)


def _model_params(args: argparse.Namespace) -> dict[str, object]:
    if args.model == "correlated_gbm":
        params: dict[str, object] = {"assets": args.asset}
        if args.correlation is not None:
            n, given = len(args.asset), args.correlation
            params["correlation"] = (
                given
                if len(given) > 1
                else (np.full((n, n), given[0]) + (1 - given[0]) * np.eye(n)).ravel().tolist()
            )
        return params
    return _single_model_params(args)


def _single_model_params(args: argparse.Namespace) -> dict[str, float]:
    given = {name: getattr(args, name) for name in MODEL_FLAGS}
    variance = args.sigma**2
    defaults = {name: default for name, (_, default, _) in MODEL_FLAGS.items()}
    defaults.update(v0=variance, theta=variance, mean=args.start_price)
    values = {k: (v if v is not None else defaults[k]) for k, v in given.items()}
    values.update(start_price=args.start_price, start=args.start_price, mu=args.mu, sigma=args.sigma)
    model = path_message(args.model)
    return {f.name: values[f.name] for f in model.DESCRIPTOR.fields}


def _gbm_kwargs(args: argparse.Namespace) -> dict:
    return {
        "periods": args.periods,
        "start_price": args.start_price,
        "mu": args.mu,
        "sigma": args.sigma,
        "delta": _delta(args),
        "trading_days_per_year": args.trading_days_per_year,
        "seed": args.seed,
        "symbol": args.symbol,
    }


def _path_request(args: argparse.Namespace, **stream) -> market_data_pb2.PathRequest:
    start = args.start_time
    if start is None and (args.extras.time or args.extras.bars):
        start = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    return path_request(
        args.model,
        args.periods,
        _delta(args),
        model_params=_model_params(args),
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
    if _classic(args):
        path = md.get_gbm_prices(**_gbm_kwargs(args), timeout=args.timeout)
    else:
        path = md.get_prices(_path_request(args), timeout=args.timeout)
    chunk = PriceChunk(**{f: getattr(path, f) for f in PricePath.__dataclass_fields__}, offset=0)
    _write(args, out, [chunk], len(path.prices))


def _run_stream(md: MarketDataClient, args: argparse.Namespace, out: IO[str] | None) -> None:
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
    writer = PathWriter(args.format, out, args.output, periods, args.extras)
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
    if args.command in ("get", "stream"):
        check_path_arguments(parser, args)
        if args.plot and importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: .venv/bin/pip install -e '.[plot]'")
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
