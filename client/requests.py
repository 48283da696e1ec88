"""The request messages a client sends, built from Python values.

    request = path_request(
        "merton", 23_400, delta=1 / 23_400,
        model_params={"start_price": 70, "mu": 0.05, "sigma": 0.2,
                      "jump_intensity": 5, "jump_mean": -0.02, "jump_stdev": 0.05},
        start_time=datetime(2026, 3, 2, tzinfo=UTC), calendar=CALENDARS["nyse"],
        bar_interval="1m", seed=7,
    )
    bars = md.get_prices(request).bars

Every builder leaves unset what the caller left as None, so the server's
defaults apply; the server checks every value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from marketdata.v1 import market_data_pb2 as pb

from .models import MODELS, path_message

__all__ = [
    "CALENDARS",
    "CANDLE_INTERVALS",
    "DATA_TYPES",
    "MODELS",
    "candle_interval",
    "data_subscription",
    "data_type",
    "gbm_request",
    "path_message",
    "path_request",
    "session_seconds",
    "subscribe_request",
]

# Regular hours of a few exchanges (no lunch breaks, no holidays: add those per request).
CALENDARS = {
    "nyse": pb.TradingCalendar(timezone="America/New_York", session_open="09:30", session_close="16:00"),
    "lse": pb.TradingCalendar(timezone="Europe/London", session_open="08:00", session_close="16:30"),
    "xetra": pb.TradingCalendar(timezone="Europe/Berlin", session_open="09:00", session_close="17:30"),
    "tse": pb.TradingCalendar(timezone="Asia/Tokyo", session_open="09:00", session_close="15:30"),
}


def session_seconds(calendar: pb.TradingCalendar) -> float:
    """Length of one of ``calendar``'s sessions in seconds (its open and close, or the defaults)."""
    opens, closes = (
        dt.datetime.strptime(text or default, "%H:%M")
        for text, default in ((calendar.session_open, "09:30"), (calendar.session_close, "16:00"))
    )
    return (closes - opens).total_seconds()


def path_request(
    model: str,
    periods: int,
    delta: float = 1.0,
    *,
    model_params: Mapping[str, object] | None = None,
    trading_days_per_year: float | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    ticks_per_second: float | None = None,
    symbol: str = "",
    start_time: dt.datetime | None = None,
    calendar: pb.TradingCalendar | None = None,
    holidays: Sequence[dt.date] = (),
    bar_interval: str = "",
    tick_size: float = 0.0,
    spread_bps: float | None = None,
    spread_volatility: float | None = None,
    volume_rate: float | None = None,
    book: pb.PathBook | None = None,
) -> pb.PathRequest:
    """A PathRequest for ``model`` (one of MODELS) with its parameters, leaving unset what is None.

    ``start_time`` must be time-zone aware; ``calendar`` (e.g. CALENDARS["nyse"])
    and ``holidays`` need it; ``book`` (sizes at the quotes, trades) needs a spread.
    The server checks everything else.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    request = pb.PathRequest(
        periods=periods, delta=delta, symbol=symbol, bar_interval=bar_interval, tick_size=tick_size
    )
    getattr(request, model).CopyFrom(path_message(model)(**(model_params or {})))
    _set_given(
        request,
        trading_days_per_year=trading_days_per_year,
        seed=seed,
        chunk_size=chunk_size,
        ticks_per_second=ticks_per_second,
        volume_rate=volume_rate,
    )
    if start_time is not None:
        if start_time.tzinfo is None:
            raise ValueError("start_time must be time-zone aware, e.g. datetime(..., tzinfo=UTC)")
        request.time.start_time.FromDatetime(start_time.astimezone(dt.UTC))
    if calendar is not None or holidays:
        if start_time is None:
            raise ValueError("a calendar needs start_time")
        request.time.calendar.CopyFrom(calendar or pb.TradingCalendar())
        request.time.calendar.holidays.extend(d.isoformat() for d in holidays)
    _set_given(request.quotes, spread_bps=spread_bps, spread_volatility=spread_volatility)
    if book is not None:
        request.book.CopyFrom(book)
    return request


def gbm_request(
    periods: int,
    start_price: float,
    mu: float,
    sigma: float,
    delta: float = 1.0,
    *,
    symbol: str = "",
    **optional: float | None,
) -> pb.GbmRequest:
    """A GbmRequest, the original endpoint's parameters first.

    ``optional`` takes the request's optional fields by name
    (``trading_days_per_year``, ``seed``, ``chunk_size``, ``ticks_per_second``);
    one that is None stays unset.
    """
    request = pb.GbmRequest(
        periods=periods, start_price=start_price, mu=mu, sigma=sigma, delta=delta, symbol=symbol
    )
    _set_given(request, **optional)
    return request


# What a subscription can deliver, by lower-case name: last_price, top_of_book, order_book,
# trades, candles_1s, candles_1m (the DataType values).
DATA_TYPES = {name.lower(): value for name, value in pb.DataType.items() if value}
CANDLE_INTERVALS = {"1s": pb.CANDLE_INTERVAL_1S, "1m": pb.CANDLE_INTERVAL_1M}


def data_type(kind: str | int) -> int:
    """A DataType value from its name, in any case ("order_book", "ORDER_BOOK"), or the value."""
    if isinstance(kind, str):
        value = DATA_TYPES.get(kind.lower())
        if value is None:
            raise ValueError(f"data type must be one of {', '.join(DATA_TYPES)}, got {kind!r}")
        return value
    if kind not in pb.DataType.values():
        raise ValueError(f"data type must be one of {', '.join(DATA_TYPES)}, got {kind!r}")
    return kind


def data_subscription(kind: str | int, symbols: Sequence[str] = (), depth: int = 0) -> pb.DataSubscription:
    """One entry of SubscribeRequest.data: ``kind`` of data (a name of DATA_TYPES or a DataType)
    for ``symbols`` (every instrument when empty); ``depth`` levels a side for "order_book"
    (0: the server's default, 10).

        md.subscribe(data=[data_subscription("order_book", ["ACME"], depth=10),
                           data_subscription("trades", ["ACME"])], numpy=True)
    """
    return pb.DataSubscription(type=data_type(kind), symbols=list(symbols), depth=depth)


def subscribe_request(
    symbols: Sequence[str] = (),
    heartbeat_seconds: float | None = None,
    data: Sequence[pb.DataSubscription] = (),
) -> pb.SubscribeRequest:
    """A SubscribeRequest for the last prices of ``symbols`` (every instrument when both they and
    ``data`` are empty), or for the data types of ``data`` (see data_subscription)."""
    if symbols and data:
        raise ValueError("give symbols or data, not both: ask for last prices with a 'last_price' entry")
    request = pb.SubscribeRequest(symbols=list(symbols), data=list(data))
    _set_given(request, heartbeat_seconds=heartbeat_seconds)
    return request


def add_symbols_request(
    symbols: Sequence[str],
    kind: str | int | None = None,
    depth: int = 0,
    heartbeat_seconds: float | None = None,
) -> pb.SubscriptionRequest:
    """A ManageSubscription request adding ``symbols`` for data type ``kind`` (None: last
    prices); ``depth`` levels a side for "order_book" (0: the server's default)."""
    request = pb.SubscriptionRequest(subscribe=_symbol_list(symbols, kind, depth))
    _set_given(request, heartbeat_seconds=heartbeat_seconds)
    return request


def remove_symbols_request(symbols: Sequence[str], kind: str | int | None = None) -> pb.SubscriptionRequest:
    """A ManageSubscription request removing ``symbols`` from data type ``kind``."""
    return pb.SubscriptionRequest(unsubscribe=_symbol_list(symbols, kind))


def _symbol_list(symbols: Sequence[str], kind: str | int | None, depth: int = 0) -> pb.SymbolList:
    listed = pb.SymbolList(symbols=list(symbols), depth=depth)
    if kind is not None:
        listed.type = data_type(kind)
    return listed


def candle_interval(interval: str | int) -> int:
    """A CandleInterval from "1s" or "1m", or the value itself."""
    if isinstance(interval, str):
        if interval not in CANDLE_INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(CANDLE_INTERVALS)}, got {interval!r}")
        return CANDLE_INTERVALS[interval]
    return interval


def _set_given(message: object, **values: object) -> None:
    """Set each field whose value is not None; the others stay unset, so the server's defaults apply."""
    for name, value in values.items():
        if value is not None:
            setattr(message, name, value)
