"""The command line's flags and the types of their values.

The model parameter flags are not listed here: they come from the proto,
one per field of the single-instrument models' messages (client.models).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from collections.abc import Callable

from marketdata.v1 import market_data_pb2 as pb

from ..base import DEFAULT_TARGET
from ..models import MODELS, Parameter, message_parameters, parameters, single_instrument
from ..requests import CALENDARS
from .output import FORMATS

BAR_INTERVALS = ("1s", "1m", "5m", "15m", "1h", "1d")
BASKET = "correlated_gbm"  # the model given by --asset and --correlation instead of parameter flags
ASSET = message_parameters(pb.CorrelatedAsset.DESCRIPTOR)  # the parts of --asset, in field order
ASSET_METAVAR = ":".join(p.name.upper() for p in ASSET)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def model_flags() -> dict[str, dict[str, Parameter]]:
    """One flag per distinct parameter name of the single-instrument models, in order of appearance.

    Field name -> {model: its parameter}: a flag applies to the models whose message has that field.
    """
    flags: dict[str, dict[str, Parameter]] = {}
    for model in MODELS:
        if single_instrument(model):
            for parameter in parameters(model):
                flags.setdefault(parameter.name, {})[model] = parameter
    return flags


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
    """``SYMBOL:START_PRICE:MU:SIGMA`` (CorrelatedAsset's fields in order) as one asset (an argparse type)."""
    parts = text.split(":")
    try:
        if len(parts) != len(ASSET):
            raise ValueError
        return {p.name: p.type(part) for p, part in zip(ASSET, parts, strict=True)}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {ASSET_METAVAR} such as AAA:50:0.05:0.2, got {text!r}"
        ) from None


def unsigned(bits: int) -> Callable[[str], int]:
    """An argparse type for an integer the proto holds as uint``bits``: from 0 to 2^bits - 1
    (anything else would fail in the protobuf library, not on the command line)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 0 <= value < 2**bits:
            raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2^{bits} - 1, got {value}")
        return value

    return parse


def levels(text: str) -> int:
    """Levels a side of an order book: a whole number from 1 (an argparse type; the server
    says how deep it goes)."""
    value = unsigned(32)(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of levels from 1, got {value}")
    return value


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
        type=unsigned(64),
        default=100,
        help="number of prices, start price included (default %(default)s)",
    )
    parser.add_argument("--model", choices=MODELS, default="gbm", help="price model (default %(default)s)")
    model = parser.add_argument_group(
        "model parameters", "each applies to the models named; defaults are the proto's example values"
    )
    for name, per_model in model_flags().items():
        kind = next(iter(per_model.values())).type
        model.add_argument(flag(name), type=kind, help=_model_flag_help(per_model))
    model.add_argument(
        "--asset",
        type=asset,
        action="append",
        default=[],
        metavar=ASSET_METAVAR,
        help=f"{BASKET}: one instrument of the basket (repeat for each)",
    )
    model.add_argument(
        "--correlation",
        type=numbers,
        metavar="RHO | R11,R12,...",
        help=f"{BASKET}: one correlation for every pair, or the whole matrix row by row "
        "(default: independent)",
    )
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
    parser.add_argument(
        "--seed", type=unsigned(64), help="seed to replay a path (default: the server draws one)"
    )
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
    security = parser.add_argument_group(
        "security", "for a server started with TLS or --auth-tokens; each flag falls back on its variable"
    )
    security.add_argument(
        "--tls", action="store_true", help="TLS, trusting the system's CA certificates (implied by --tls-ca)"
    )
    security.add_argument(
        "--tls-ca", metavar="FILE", help="TLS, trusting the PEM CA certificates in FILE ($MARKETDATA_TLS_CA)"
    )
    security.add_argument(
        "--tls-cert", metavar="FILE", help="client certificate for mTLS, PEM ($MARKETDATA_TLS_CERT)"
    )
    security.add_argument("--tls-key", metavar="FILE", help="its private key, PEM ($MARKETDATA_TLS_KEY)")
    security.add_argument(
        "--token",
        help="bearer token ($MARKETDATA_TOKEN; the variable keeps it out of the process list)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="whole path in one call (GetGbmPrices, or GetPrices)")
    _add_path_arguments(get)
    stream = sub.add_parser(
        "stream", help="path in chunks as they are generated (StreamGbmPrices, or StreamPrices)"
    )
    _add_path_arguments(stream)
    stream.add_argument("--chunk-size", type=unsigned(32), help="prices per message (default: server's)")
    stream.add_argument(
        "--ticks-per-second", type=float, help="pace the stream (default: as fast as possible)"
    )
    stream.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    sub_live = sub.add_parser(
        "subscribe", help="live market prices, order books or trades, one JSON object per line (Subscribe)"
    )
    sub_live.add_argument("symbols", nargs="*", help="symbols to follow (default: every instrument)")
    sub_live.add_argument(
        "--book",
        type=levels,
        metavar="LEVELS",
        help="order books this many levels a side instead of last prices: a price ladder on a "
        "terminal (server maximum 50 by default)",
    )
    sub_live.add_argument(
        "--trades", action="store_true", help="trade prints instead of last prices (with --book: both)"
    )
    sub_live.add_argument(
        "--heartbeat", type=float, help="seconds of quiet before a heartbeat (server default 1)"
    )
    sub_live.add_argument(
        "--count",
        type=unsigned(64),
        help="stop after this many updates: price updates, book updates, ticks with trades "
        "(default: run until Ctrl-C)",
    )
    sub_live.add_argument(
        "--json",
        action="store_true",
        help="JSON lines even on a terminal (default there: a live table, or a ladder with --book)",
    )
    health = sub.add_parser(
        "health", help="ask the standard health service; exit 0 when SERVING (for probes and scripts)"
    )
    health.add_argument("--service", default="", help="service to ask about (default: the whole server)")
    return parser


def _model_flag_help(per_model: dict[str, Parameter]) -> str:
    """Each model's comment on the field and its default, models that say the same thing together."""
    said: dict[str, list[str]] = {}
    for model, p in per_model.items():
        default = "required" if p.example is None else f"default {p.example:g}"
        text = f"{p.comment.rstrip('.')} ({default})" if p.comment else default
        said.setdefault(text.replace("%", "%%"), []).append(model)  # argparse formats help with %
    return "; ".join(f"{', '.join(models)}: {text}" for text, models in said.items())


def flag(name: str) -> str:
    """The command-line flag of a parameter: jump_mean -> --jump-mean."""
    return "--" + name.replace("_", "-")
