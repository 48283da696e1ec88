"""Turns GbmRequest and PathRequest messages into checked plans: the only code
that reads a price request.

Everything a caller can get wrong is checked here, once, before any work, and
reported as a ParameterError naming the field by its path in the request and
its accepted range (the models check their own parameters). The servicer maps
that to INVALID_ARGUMENT.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import re
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass, fields
from typing import Any

from google.protobuf.message import Message

from marketdata.v1 import market_data_pb2

from .limits import (
    MAX_BARS_PER_MESSAGE,
    MAX_UNARY_BAR_STEPS,
    PACED_CHUNK_SECONDS,
    TICKS_PER_SECOND_MAX,
    TICKS_PER_SECOND_MIN,
    LimitExceeded,
    Limits,
    array_budget,
    book_periods_cap,
    bytes_per_period,
    chunk_cap,
)
from .sim.bars import interval_seconds
from .sim.book import BookParams
from .sim.calendar import MAX_HOLIDAYS, TradingCalendar
from .sim.checks import ParameterError, check_range, check_symbol, quoted
from .sim.market import symbol_key
from .sim.models import DEFAULT_TRADING_DAYS_PER_YEAR, MODELS, Gbm, Model, nested
from .sim.paths import PathBook, PathPlan
from .sim.quotes import QuoteSpec
from .sim.seeding import new_seed
from .sim.ticks import check_tick_size
from .sim.time_axis import NS, TimeAxis
from .sim.volume import DEFAULT_VOLUME_RATE, check_volume_rate

_ONEOF = [f.name for f in market_data_pb2.PathRequest.DESCRIPTOR.oneofs_by_name["model"].fields]
assert _ONEOF == list(MODELS), f"PathRequest.model {_ONEOF} and server.sim.models {list(MODELS)} differ"
_NAMES = {model: model.parameter_names() for model in MODELS.values()}


def _getter(names: tuple[str, ...]) -> Callable[[Message], tuple]:
    """The fields ``names`` of a message as one tuple, read in one call."""
    get = operator.attrgetter(*names)
    return get if len(names) > 1 else lambda message: (get(message),)


_GETTERS = {model: _getter(names) for model, names in _NAMES.items()}


@dataclass(frozen=True)
class CallPlan:
    """A checked request: the path to generate and how to deliver it."""

    path: PathPlan
    symbol: str  # the caller's label, echoed in every reply
    chunk_size: int  # values per stream message
    ticks_per_second: float | None  # None: as fast as possible

    @property
    def periods(self) -> int:
        return self.path.periods

    @property
    def seed(self) -> int:
        return self.path.seed

    @property
    def columns(self) -> int:
        """Values per period: one per instrument."""
        return max(1, len(self.path.symbols))


def plan_get_gbm_prices(request: market_data_pb2.GbmRequest, limits: Limits) -> CallPlan:
    """Check a GetGbmPrices request; the whole path must fit in one reply."""
    _check_unary_periods(request.periods, limits.max_unary_periods, "GetGbmPrices", "StreamGbmPrices")
    return _plan(request, limits, _gbm_of)


def plan_stream_gbm_prices(request: market_data_pb2.GbmRequest, limits: Limits) -> CallPlan:
    """Check a StreamGbmPrices request."""
    return _within_stream_time(_plan(request, limits, _gbm_of), limits)


def plan_get_prices(request: market_data_pb2.PathRequest, limits: Limits) -> CallPlan:
    """Check a GetPrices request (any model); its whole reply must fit one message."""
    call = _plan(request, limits, _model_of, _additions_of)
    plan = call.path
    if plan.bar_interval_ns is not None:
        _check_unary_periods(
            plan.periods, min(limits.max_periods, MAX_UNARY_BAR_STEPS), "GetPrices with bars", "StreamPrices"
        )
        bars = plan.time.most_bars(plan.periods, plan.bar_interval_ns)
        if bars > MAX_BARS_PER_MESSAGE:
            raise ParameterError(
                "periods",
                f"periods={plan.periods} could make up to {bars} bars, more than the "
                f"{MAX_BARS_PER_MESSAGE} that fit gRPC's 4 MiB message limit; use StreamPrices",
            )
    else:
        most = array_budget(plan) // bytes_per_period(plan)
        why = ""
        book = book_periods_cap(plan)
        if book is not None and book < most:  # a book's work, not only its bytes, bounds one reply
            most, why = book, f"a path with a book is computed {book:,} periods a reply at most"
        _check_unary_periods(plan.periods, min(limits.max_periods, most), "GetPrices", "StreamPrices", why)
    return call


def plan_stream_prices(request: market_data_pb2.PathRequest, limits: Limits) -> CallPlan:
    """Check a StreamPrices request (any model)."""
    return _within_stream_time(_plan(request, limits, _model_of, _additions_of), limits)


def _within_stream_time(call: CallPlan, limits: Limits) -> CallPlan:
    """LimitExceeded for a paced stream planned to run longer than --max-stream-seconds."""
    if call.ticks_per_second is not None:
        planned = (call.periods - 1) / call.ticks_per_second
        if planned > limits.max_stream_seconds:
            raise LimitExceeded(
                f"a stream paced at {call.ticks_per_second:g} values a second would run {planned:,.0f} s, "
                f"longer than the server allows (--max-stream-seconds {limits.max_stream_seconds:g}); "
                "ask for fewer periods or a faster pace",
                flag="--max-stream-seconds",
            )
    return call


def _check_unary_periods(periods: int, most: int, rpc: str, stream_rpc: str, why: str = "") -> None:
    if not 1 <= periods <= most:
        why = why or "the reply would exceed gRPC's 4 MiB message limit"
        reason = f": {why}; use {stream_rpc} for longer paths" if periods > most else ""
        raise ParameterError("periods", f"periods must be in [1, {most}] for {rpc}, got {periods}{reason}")


# ---------------------------------------------------------------- the model


@functools.lru_cache(maxsize=1024)
def _cached_model(
    model: type[Model], values: tuple, signs: tuple, delta: float, trading_days: float
) -> Model:
    """A checked single-instrument model; callers tend to repeat the same few sets, so
    they are remembered. (A ParameterError is raised afresh each time: only results are kept.)
    ``signs`` is only part of the key: 0.0 and -0.0 are one key to the cache but start
    different paths (an OU ``start`` of -0.0 is -0.0 in the reply)."""
    return model.from_values(dict(zip(_NAMES[model], values, strict=True)), delta, trading_days)


class _Messages(Sequence):
    """A repeated message field whose entries are read as plain values one at a time, so a
    model checks how many there are before any is converted (a 4 MiB request can hold
    two million empty entries)."""

    def __init__(self, container: Sequence[Message]) -> None:
        self._container = container

    def __len__(self) -> int:
        return len(self._container)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_message_values(m) for m in self._container[index]]
        return _message_values(self._container[index])


def _message_values(message: Message) -> dict[str, Any]:
    """A message's fields as plain values: numbers, strings, nested dicts; repeated fields
    as sequences that convert nothing until read."""
    values: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if isinstance(value, MutableSequence):  # a repeated field (protobuf registers its containers)
            value = _Messages(value) if field.message_type is not None else value
        elif field.message_type is not None:
            value = _message_values(value)
        values[field.name] = value
    return values


def _build(model: type[Model], message: Message, delta: float, trading_days: float) -> Model:
    """Model ``model`` from the message holding its parameters (fields named as its parameters)."""
    if model.single_instrument:
        values = _GETTERS[model](message)
        signs = tuple(math.copysign(1.0, v) for v in values) if 0.0 in values else ()
        return _cached_model(model, values, signs, delta, trading_days)
    return model.from_values(_message_values(message), delta, trading_days)


def _gbm_of(request: market_data_pb2.GbmRequest, trading_days: float) -> Model:
    return _build(Gbm, request, request.delta, trading_days)


def _model_of(request: market_data_pb2.PathRequest, trading_days: float) -> Model:
    name = request.WhichOneof("model")
    if name is None:
        raise ParameterError("model", f"model: set exactly one of {', '.join(MODELS)}")
    try:
        return _build(MODELS[name], getattr(request, name), request.delta, trading_days)
    except ParameterError as err:
        raise nested(err, name) from None


# ---------------------------------------------------------------- what a path adds

_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _clock_time(text: str, name: str) -> dt.time:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise ParameterError(
            name, f"{name} must be a local time HH:MM from 00:00 to 23:59, got {quoted(text)}"
        )
    return dt.time(int(match[1]), int(match[2]))


def _calendar_of(message: market_data_pb2.TradingCalendar) -> TradingCalendar:
    where = "time.calendar"
    settings: dict[str, object] = {}
    if message.timezone:
        settings["timezone"] = message.timezone
    if message.session_open:
        settings["open"] = _clock_time(message.session_open, f"{where}.session_open")
    if message.session_close:
        settings["close"] = _clock_time(message.session_close, f"{where}.session_close")
    if message.weekdays:
        if len(message.weekdays) > 7:
            raise ParameterError(
                f"{where}.weekdays", f"{where}.weekdays may list at most 7 days, got {len(message.weekdays)}"
            )
        bad = [d for d in message.weekdays if not 1 <= d <= 7]
        if bad:
            raise ParameterError(
                f"{where}.weekdays", f"{where}.weekdays must be 1 (Monday) to 7 (Sunday), got {bad[0]}"
            )
        settings["weekdays"] = frozenset(d - 1 for d in message.weekdays)
    if len(message.holidays) > MAX_HOLIDAYS:
        raise ParameterError(
            f"{where}.holidays",
            f"{where}.holidays may list at most {MAX_HOLIDAYS} dates, got {len(message.holidays)}",
        )
    holidays = set()
    for text in message.holidays:
        try:
            if len(text) != 10:
                raise ValueError
            holidays.add(dt.date.fromisoformat(text))
        except ValueError:
            raise ParameterError(
                f"{where}.holidays", f"{where}.holidays must be dates YYYY-MM-DD, got {quoted(text)}"
            ) from None
    settings["holidays"] = frozenset(holidays)
    try:
        return TradingCalendar(**settings)
    except ParameterError as err:
        name = {"session": "session_close"}.get(err.field, err.field)
        raise ParameterError(f"{where}.{name}", f"{where}.{name}: {err}") from None


def _time_of(request: market_data_pb2.PathRequest) -> TimeAxis | None:
    if not request.HasField("time"):
        return None
    time = request.time
    if not time.HasField("start_time"):
        raise ParameterError("time.start_time", "time.start_time is required when time is set")
    start = time.start_time
    if not 0 <= start.nanos < NS:
        raise ParameterError(
            "time.start_time", f"time.start_time.nanos must be in [0, 999999999], got {start.nanos}"
        )
    calendar = _calendar_of(time.calendar) if time.HasField("calendar") else None
    day_ns = calendar.session_seconds * NS if calendar is not None else 86_400 * NS
    step_ns = round(request.delta * day_ns)
    if step_ns < 1:
        raise ParameterError(
            "delta",
            f"with time set, a period must last at least 1 ns: delta >= {1 / day_ns:.3g} trading days",
        )
    try:
        axis = TimeAxis(start.seconds * NS + start.nanos, step_ns, calendar)
        axis.check_fits(request.periods)
    except ParameterError as err:
        if err.field in ("start_time", "calendar"):  # named by their path in the request
            raise err.under("time") from None
        raise
    return axis


def _additions_of(request: market_data_pb2.PathRequest, model: Model) -> dict[str, Any]:
    """What the request adds to the bare path, as PathPlan's fields."""
    several = not model.single_instrument
    time = _time_of(request)
    bar_interval_ns = None
    if request.bar_interval:
        bar_interval_ns = interval_seconds(request.bar_interval) * NS
        if time is None:
            raise ParameterError("bar_interval", "bar_interval needs time (its start_time places the bars)")
        if several:
            raise ParameterError("bar_interval", "bar_interval works with single-instrument models only")
        if bar_interval_ns < time.step_ns:
            raise ParameterError(
                "bar_interval",
                f"bar_interval {request.bar_interval} is shorter than one period ({time.step_ns / NS:g} s): "
                "bars are built from several periods; lower delta or choose a longer interval",
            )
    elif request.HasField("volume_rate"):
        raise ParameterError("volume_rate", "volume_rate only applies to bars: set bar_interval too")
    volume_rate = request.volume_rate if request.HasField("volume_rate") else DEFAULT_VOLUME_RATE
    check_volume_rate(volume_rate, None if bar_interval_ns is None else time.step_ns + bar_interval_ns)
    check_tick_size(request.tick_size)
    quotes = None
    if request.HasField("quotes"):
        kind = request.quotes.WhichOneof("spread")
        if kind is not None and (several or bar_interval_ns is not None):
            raise ParameterError(
                "quotes",
                "quotes come with the values of a single-instrument path: not with correlated_gbm or bars",
            )
        quotes = QuoteSpec(**({kind: getattr(request.quotes, kind)} if kind else {}))
    return {
        "time": time,
        "bar_interval_ns": bar_interval_ns,
        "tick_size": request.tick_size,
        "quotes": quotes,
        "volume_rate": volume_rate,
        "book": _book_of(request) if request.HasField("book") else None,
    }


# The fields of PathRequest.book that are the book model's parameters (its spread is the quotes').
_MODEL_PARAMETERS = {f.name for f in fields(BookParams)}
_BOOK_PARAMETERS = tuple(
    f.name for f in market_data_pb2.PathBook.DESCRIPTOR.fields if f.name in _MODEL_PARAMETERS
)


def _book_of(request: market_data_pb2.PathRequest) -> PathBook:
    """The book a quoted path asks for: its parameters are the live model's (BookParams),
    whose errors name them as book.<field> with their range."""
    book = request.book
    if not request.HasField("quotes"):
        raise ParameterError(
            "book",
            "book needs quotes (a single-instrument path without bars): their bid and ask are its top",
        )
    if not (book.top_of_book or book.trades):
        raise ParameterError("book", "book: set top_of_book or trades, or both")
    given = {name: getattr(book, name) for name in _BOOK_PARAMETERS if book.HasField(name)}
    return PathBook(BookParams(**given), symbol_key(request.symbol), book.top_of_book, book.trades)


# ---------------------------------------------------------------- the whole request


def _pace(ticks_per_second: float) -> float | None:
    """A checked pace: None for 0 (as fast as possible)."""
    check_range("ticks_per_second", ticks_per_second, 0.0, TICKS_PER_SECOND_MAX)
    if ticks_per_second == 0.0:
        return None
    if ticks_per_second < TICKS_PER_SECOND_MIN:
        raise ParameterError(
            "ticks_per_second",
            f"ticks_per_second must be in [0, {TICKS_PER_SECOND_MAX:g}]: 0 (as fast as possible) or at "
            f"least {TICKS_PER_SECOND_MIN:g} (a value every {1 / TICKS_PER_SECOND_MIN:g} s), "
            f"got {quoted(ticks_per_second)}",
        )
    return ticks_per_second


def _plan(
    request,
    limits: Limits,
    model_of: Callable[[Any, float], Model],
    additions_of: Callable[[Any, Model], dict[str, Any]] | None = None,
) -> CallPlan:
    if not 1 <= request.periods <= limits.max_periods:
        raise ParameterError(
            "periods", f"periods must be in [1, {limits.max_periods}], got {request.periods}"
        )
    trading_days = (
        request.trading_days_per_year
        if request.HasField("trading_days_per_year")
        else DEFAULT_TRADING_DAYS_PER_YEAR
    )
    model = model_of(request, trading_days)
    check_symbol(request.symbol)
    additions = additions_of(request, model) if additions_of is not None else {}
    seed = request.seed if request.HasField("seed") else new_seed()
    path = PathPlan(model, request.periods, seed, **additions)
    most_chunk, why = chunk_cap(limits, path)

    ticks_per_second: float | None = None
    if request.HasField("ticks_per_second"):
        ticks_per_second = _pace(request.ticks_per_second)

    if request.HasField("chunk_size"):
        if not 1 <= request.chunk_size <= most_chunk:
            raise ParameterError(
                "chunk_size", f"chunk_size must be in [1, {most_chunk}]{why}, got {request.chunk_size}"
            )
        chunk_size = request.chunk_size
    elif ticks_per_second is not None:
        chunk_size = max(1, min(limits.default_chunk_size, math.ceil(ticks_per_second * PACED_CHUNK_SECONDS)))
    else:
        chunk_size = limits.default_chunk_size
    chunk_size = min(chunk_size, most_chunk)
    return CallPlan(path, request.symbol, chunk_size, ticks_per_second)
