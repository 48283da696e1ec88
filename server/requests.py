"""Turns a GbmRequest or PathRequest into a checked plan for the generator.

Everything a caller can get wrong is checked here, once, and reported as a
ParameterError naming the request field and its accepted range. The servicer
maps that to INVALID_ARGUMENT.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from marketdata.v1 import market_data_pb2
from server import models
from server.bars import MOVE_CAP, interval_seconds
from server.generator import (
    DEFAULT_TRADING_DAYS_PER_YEAR,
    CorrelatedGbmParams,
    CorrelatedGbmStepper,
    GbmParams,
    ParameterError,
    PriceStepper,
    check_correlation,
    check_range,
    make_rng,
    new_seed,
)
from server.trading_calendar import NS, TimeAxis, TradingCalendar

# gRPC refuses to receive messages over 4 MiB unless both sides raise the limit.
GRPC_DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Room for everything in a price message besides the packed doubles: field
# tags, the length prefix, offset, seed and a symbol of the longest length.
SYMBOL_MAX_BYTES = 128
MESSAGE_OVERHEAD_BYTES = 256
# The most prices one message can carry and still fit the default limit.
MAX_PRICES_PER_MESSAGE = (GRPC_DEFAULT_MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD_BYTES) // 8

# A bar costs six 8-byte values.
MAX_BARS_PER_MESSAGE = (GRPC_DEFAULT_MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD_BYTES) // 48
# GetPrices with bar_interval generates its whole fine path (a chunk at a time) within one call:
# at most this many values, so one call stays a few seconds of work.
MAX_UNARY_BAR_STEPS = 2**23
MAX_ASSETS = 64
MAX_HOLIDAYS = 10_000
TICK_SIZE_MIN, TICK_SIZE_MAX = 1e-9, 1e6
SPREAD_BPS_MAX = 10_000.0
SPREAD_VOLATILITY_MAX = 1_000.0
DEFAULT_VOLUME_RATE = 10.0
VOLUME_RATE_MAX = 1e9
# Expected units in one bar at most, so volumes stay far inside 64-bit integers.
VOLUME_MEAN_MAX = 1e15
# Quotes of an unrounded path sit on a cent grid.
DEFAULT_QUOTE_TICK = 0.01

TICKS_PER_SECOND_MAX = 1e9
# A paced stream with no chunk_size sends about this much wall time of ticks per message.
PACED_CHUNK_SECONDS = 0.01


@dataclass(frozen=True)
class Limits:
    """Server-side caps, set by command-line flags."""

    max_periods: int = 10**12
    max_chunk_size: int = MAX_PRICES_PER_MESSAGE
    # 1 MiB messages: the fastest in a sweep of 32Ki..512Ki prices on 2 cores
    # (make bench); smaller chunks pay gRPC's per-message cost more often.
    default_chunk_size: int = 131_072

    def __post_init__(self) -> None:
        if self.max_periods < 1:
            raise ValueError(f"max_periods must be >= 1, got {self.max_periods}")
        if not 1 <= self.max_chunk_size <= MAX_PRICES_PER_MESSAGE:
            raise ValueError(
                f"max_chunk_size must be in [1, {MAX_PRICES_PER_MESSAGE}] so a chunk fits "
                f"gRPC's 4 MiB message limit, got {self.max_chunk_size}"
            )
        if not 1 <= self.default_chunk_size <= self.max_chunk_size:
            raise ValueError(
                f"default_chunk_size must be in [1, max_chunk_size={self.max_chunk_size}], "
                f"got {self.default_chunk_size}"
            )

    @property
    def max_unary_periods(self) -> int:
        return min(self.max_periods, MAX_PRICES_PER_MESSAGE)


@dataclass(frozen=True)
class Extras:
    """What a PathRequest adds to the bare path; the defaults add nothing."""

    time: TimeAxis | None = None
    bar_interval_ns: int | None = None
    tick_size: float = 0.0  # 0: values as generated
    spread_bps: float | None = None  # quotes: one of these two, or neither
    spread_volatility: float | None = None
    volume_rate: float = DEFAULT_VOLUME_RATE
    symbols: tuple[str, ...] = ()  # correlated_gbm: one per column

    @property
    def quotes(self) -> bool:
        return self.spread_bps is not None or self.spread_volatility is not None

    @property
    def bytes_per_period(self) -> int:
        """Reply bytes one period of the path costs, for the message-size caps (bars aside):
        a price per instrument, a timestamp, a bid and an ask."""
        return 8 * max(1, len(self.symbols)) + 8 * (self.time is not None) + 16 * self.quotes

    @property
    def budget(self) -> int:
        """Bytes of a reply left for the arrays: the limit less everything else, symbols included.

        MESSAGE_OVERHEAD_BYTES leaves about 90 bytes to spare, enough for the
        tags and lengths of timestamps, bid and ask."""
        fixed = MESSAGE_OVERHEAD_BYTES + sum(len(s.encode("utf-8")) + 3 for s in self.symbols)
        return GRPC_DEFAULT_MAX_MESSAGE_BYTES - fixed


NO_EXTRAS = Extras()


@dataclass(frozen=True)
class GbmPlan:
    """A checked request: what to generate and how to deliver it (any model)."""

    params: object  # GbmParams, CorrelatedGbmParams or one of server.models' parameter classes
    periods: int
    seed: int
    symbol: str
    chunk_size: int
    ticks_per_second: float | None  # None: as fast as possible
    extras: Extras = field(default=NO_EXTRAS)

    def stepper(self) -> PriceStepper:
        """A fresh stepper of the plan's model at the start of its seeded path."""
        rng = make_rng(self.seed)
        if isinstance(self.params, CorrelatedGbmParams):
            return CorrelatedGbmStepper(self.params.assets, self.params.factor, rng)
        return models.model_of(self.params).stepper(self.params, rng)


@functools.lru_cache(maxsize=1024)
def _gbm_params(start_price: float, mu: float, sigma: float, delta: float, trading_days: float) -> GbmParams:
    """Checked parameters; callers tend to repeat the same few sets, so they are remembered.

    (A ParameterError is raised afresh each time: lru_cache keeps only results.)
    """
    return GbmParams(start_price, mu, sigma, delta, trading_days)


def _check_symbol(symbol: str) -> None:
    size = len(symbol.encode("utf-8"))
    if size > SYMBOL_MAX_BYTES:
        raise ParameterError(
            "symbol", f"symbol must be at most {SYMBOL_MAX_BYTES} bytes of UTF-8, got {size} bytes"
        )


def _check_unary_periods(periods: int, most: int, rpc: str, stream_rpc: str, what: str = "reply") -> None:
    if not 1 <= periods <= most:
        reason = (
            f": the {what} would exceed gRPC's 4 MiB message limit; use {stream_rpc} for longer paths"
            if periods > most
            else ""
        )
        raise ParameterError("periods", f"periods must be in [1, {most}] for {rpc}, got {periods}{reason}")


def plan_unary(request: market_data_pb2.GbmRequest, limits: Limits) -> GbmPlan:
    """Check a GetGbmPrices request; the whole path must fit in one reply."""
    _check_unary_periods(request.periods, limits.max_unary_periods, "GetGbmPrices", "StreamGbmPrices")
    return _plan(request, limits, _gbm_of)


def plan_stream(request: market_data_pb2.GbmRequest, limits: Limits) -> GbmPlan:
    """Check a StreamGbmPrices request."""
    return _plan(request, limits, _gbm_of)


def plan_path_unary(request: market_data_pb2.PathRequest, limits: Limits) -> GbmPlan:
    """Check a GetPrices request (any model); its whole reply must fit one message."""
    plan = _plan(request, limits, _model_of, _extras_of)
    extras = plan.extras
    if extras.bar_interval_ns is not None:
        _check_unary_periods(
            plan.periods, min(limits.max_periods, MAX_UNARY_BAR_STEPS), "GetPrices with bars", "StreamPrices"
        )
        bars = _most_bars(plan.periods, extras)
        if bars > MAX_BARS_PER_MESSAGE:
            raise ParameterError(
                "periods",
                f"periods={plan.periods} could make up to {bars} bars, more than the "
                f"{MAX_BARS_PER_MESSAGE} that fit gRPC's 4 MiB message limit; use StreamPrices",
            )
    else:
        most = extras.budget // extras.bytes_per_period
        _check_unary_periods(plan.periods, min(limits.max_periods, most), "GetPrices", "StreamPrices")
    return plan


def plan_path_stream(request: market_data_pb2.PathRequest, limits: Limits) -> GbmPlan:
    """Check a StreamPrices request (any model)."""
    return _plan(request, limits, _model_of, _extras_of)


def _most_bars(periods: int, extras: Extras) -> int:
    """An upper bound on the bars a path makes. Each session (the whole path, without a
    calendar) covering s ns of path time touches at most s / interval + 2 intervals, so
    the path makes at most span / interval + 2 x sessions bars."""
    axis = extras.time
    span = (periods - 1) * axis.step_ns
    sessions = 1
    if axis.calendar is not None:
        # +2 for the partial first and last sessions; a clock change can shorten a
        # session by an hour about once a year, hence the spare one per hundred.
        sessions = span // (axis.calendar.session_seconds * NS) + 2
        sessions += sessions // 100 + 1
    return min(periods, span // extras.bar_interval_ns + 2 * sessions)


def _chunk_cap(limits: Limits, extras: Extras) -> tuple[int, str]:
    """The largest chunk_size for these extras, and why it is lower than the server's, if it is."""
    if extras.bar_interval_ns is not None:
        # A chunk closes at most one bar per value, plus the one carried over.
        cap = MAX_BARS_PER_MESSAGE - 1
    else:
        cap = extras.budget // extras.bytes_per_period
    if cap >= limits.max_chunk_size:
        return limits.max_chunk_size, ""
    return cap, " (so that a chunk with these timestamps, quotes, bars or assets fits 4 MiB)"


def _gbm_of(request: market_data_pb2.GbmRequest, trading_days: float) -> GbmParams:
    return _gbm_params(request.start_price, request.mu, request.sigma, request.delta, trading_days)


def _single(name: str) -> Callable[[object, float, float], object]:
    """Parameters of model ``name`` from its message: the message's fields are the parameters."""
    model = models.MODELS[name]
    names = model.parameter_names

    def params_of(message, delta: float, trading_days: float) -> object:
        return model.make_params({n: getattr(message, n) for n in names}, delta, trading_days)

    return params_of


_MODELS: dict[str, Callable[[object, float, float], object]] = {name: _single(name) for name in models.MODELS}
# GBM parameters are remembered (see _gbm_params): the fast unary path meets the same few sets.
_MODELS["gbm"] = lambda m, d, y: _gbm_params(m.start_price, m.mu, m.sigma, d, y)
_MODELS["correlated_gbm"] = lambda m, d, y: _correlated(m, d, y)
assert list(_MODELS) == [
    f.name for f in market_data_pb2.PathRequest.DESCRIPTOR.oneofs_by_name["model"].fields
]


def _correlated(model: market_data_pb2.CorrelatedGbmModel, delta: float, years: float) -> CorrelatedGbmParams:
    n = len(model.assets)
    if not 1 <= n <= MAX_ASSETS:
        raise ParameterError("assets", f"assets must hold 1 to {MAX_ASSETS} instruments, got {n}")
    assets = []
    for i, a in enumerate(model.assets):
        try:
            _check_symbol(a.symbol)
            assets.append(_gbm_params(a.start_price, a.mu, a.sigma, delta, years))
        except ParameterError as err:
            raise _nested(err, f"assets[{i}]") from None
    named = [a.symbol for a in model.assets if a.symbol]
    repeated = sorted({s for s in named if named.count(s) > 1})
    if repeated:
        raise ParameterError("assets", f"assets' symbols must be unique; repeated: {', '.join(repeated)}")
    symbols = [a.symbol or f"#{i}" for i, a in enumerate(model.assets)]
    if not model.correlation:
        return CorrelatedGbmParams(tuple(assets), None)
    if len(model.correlation) != n * n:
        raise ParameterError(
            "correlation",
            f"correlation must hold n x n = {n * n} numbers (row by row, n = {n} assets), "
            f"got {len(model.correlation)}",
        )
    factor = check_correlation(np.array(model.correlation).reshape(n, n), symbols)
    return CorrelatedGbmParams(tuple(assets), factor)


def _nested(err: ParameterError, path: str) -> ParameterError:
    """A model's error named by its path in the request (e.g. merton.jump_stdev); the
    period's own fields (delta, trading_days_per_year) are the request's, not the model's."""
    return err if err.field in ("delta", "trading_days_per_year") else err.under(path)


def _model_of(request: market_data_pb2.PathRequest, trading_days: float) -> object:
    name = request.WhichOneof("model")
    if name is None:
        raise ParameterError("model", f"model: set exactly one of {', '.join(_MODELS)}")
    try:
        return _MODELS[name](getattr(request, name), request.delta, trading_days)
    except ParameterError as err:
        raise _nested(err, name) from None


_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _clock_time(text: str, name: str) -> dt.time:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise ParameterError(name, f"{name} must be a local time HH:MM from 00:00 to 23:59, got {text!r}")
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
                f"{where}.holidays", f"{where}.holidays must be dates YYYY-MM-DD, got {text!r}"
            ) from None
    settings["holidays"] = frozenset(holidays)
    try:
        return TradingCalendar(**settings)
    except ParameterError as err:
        name = {"session": "session_close"}.get(err.field, err.field)
        raise ParameterError(f"{where}.{name}", f"{where}.{name}: {err}") from None


def _time_of(request: market_data_pb2.PathRequest, delta: float) -> TimeAxis | None:
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
    step_ns = round(delta * day_ns)
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


def _check_volumes_fit(volume_rate: float, bar_ns: int) -> None:
    """A bar's expected volume (its time, at most one period plus its interval, times the
    rate and the largest move factor) must stay far inside 64-bit integers."""
    most = VOLUME_MEAN_MAX / (bar_ns / NS * (1 + MOVE_CAP))
    if volume_rate > most:
        raise ParameterError(
            "volume_rate",
            f"volume_rate must be in [0, {most:.6g}] units per second for this period and bar_interval "
            f"(a bar may expect at most {VOLUME_MEAN_MAX:g} units), got {volume_rate!r}",
        )


def _extras_of(request: market_data_pb2.PathRequest, params: object) -> Extras:
    correlated = isinstance(params, CorrelatedGbmParams)
    time = _time_of(request, request.delta)
    bar_interval_ns = None
    if request.bar_interval:
        bar_interval_ns = interval_seconds(request.bar_interval) * NS
        if time is None:
            raise ParameterError("bar_interval", "bar_interval needs time (its start_time places the bars)")
        if correlated:
            raise ParameterError("bar_interval", "bar_interval works with single-instrument models only")
        if bar_interval_ns < time.step_ns:
            raise ParameterError(
                "bar_interval",
                f"bar_interval {request.bar_interval} is shorter than one period ({time.step_ns / NS:g} s): "
                "bars are built from several periods; lower delta or choose a longer interval",
            )
    elif request.HasField("volume_rate"):
        raise ParameterError("volume_rate", "volume_rate only applies to bars: set bar_interval too")
    volume_rate = DEFAULT_VOLUME_RATE
    if request.HasField("volume_rate"):
        check_range("volume_rate", request.volume_rate, 0.0, VOLUME_RATE_MAX, unit="units per second")
        volume_rate = request.volume_rate
    if bar_interval_ns is not None:
        _check_volumes_fit(volume_rate, time.step_ns + bar_interval_ns)
    tick = request.tick_size
    if tick != 0.0 and not (math.isfinite(tick) and TICK_SIZE_MIN <= tick <= TICK_SIZE_MAX):
        raise ParameterError(
            "tick_size",
            f"tick_size must be 0 (no rounding) or in [{TICK_SIZE_MIN:g}, {TICK_SIZE_MAX:g}], got {tick!r}",
        )
    spread_bps = spread_volatility = None
    if request.HasField("quotes"):
        kind = request.quotes.WhichOneof("spread")
        if kind is None:
            raise ParameterError("quotes", "quotes: set spread_bps or spread_volatility")
        if correlated or bar_interval_ns is not None:
            raise ParameterError(
                "quotes",
                "quotes come with the values of a single-instrument path: not with correlated_gbm or bars",
            )
        value = getattr(request.quotes, kind)
        high = SPREAD_BPS_MAX if kind == "spread_bps" else SPREAD_VOLATILITY_MAX
        check_range(f"quotes.{kind}", value, 0.0, high, low_open=True)
        if kind == "spread_bps":
            spread_bps = value
        else:
            spread_volatility = value
    return Extras(
        time=time,
        bar_interval_ns=bar_interval_ns,
        tick_size=tick,
        spread_bps=spread_bps,
        spread_volatility=spread_volatility,
        volume_rate=volume_rate,
        symbols=tuple(a.symbol for a in request.correlated_gbm.assets) if correlated else (),
    )


def _plan(
    request,
    limits: Limits,
    params_of: Callable[[object, float], object],
    extras_of: Callable[[object, object], Extras] | None = None,
) -> GbmPlan:
    if not 1 <= request.periods <= limits.max_periods:
        raise ParameterError(
            "periods", f"periods must be in [1, {limits.max_periods}], got {request.periods}"
        )
    trading_days = (
        request.trading_days_per_year
        if request.HasField("trading_days_per_year")
        else DEFAULT_TRADING_DAYS_PER_YEAR
    )
    params = params_of(request, trading_days)
    _check_symbol(request.symbol)
    extras = extras_of(request, params) if extras_of is not None else NO_EXTRAS
    most_chunk, why = _chunk_cap(limits, extras)

    ticks_per_second: float | None = None
    if request.HasField("ticks_per_second"):
        check_range(
            "ticks_per_second",
            request.ticks_per_second,
            0.0,
            TICKS_PER_SECOND_MAX,
            unit="(0 means as fast as possible)",
        )
        ticks_per_second = request.ticks_per_second or None

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

    seed = request.seed if request.HasField("seed") else new_seed()
    return GbmPlan(
        params=params,
        periods=request.periods,
        seed=seed,
        symbol=request.symbol,
        chunk_size=chunk_size,
        ticks_per_second=ticks_per_second,
        extras=extras,
    )
