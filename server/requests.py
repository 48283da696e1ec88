"""Turns a GbmRequest into a checked plan for the generator.

Everything a caller can get wrong is checked here, once, and reported as a
ParameterError naming the request field and its accepted range. The servicer
maps that to INVALID_ARGUMENT.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from marketdata.v1 import market_data_pb2
from server import models
from server.generator import (
    DEFAULT_TRADING_DAYS_PER_YEAR,
    GbmParams,
    GbmStepper,
    ParameterError,
    PriceStepper,
    check_range,
    make_rng,
    new_seed,
)

_STEPPERS: dict[type, Callable[..., PriceStepper]] = {
    GbmParams: GbmStepper,
    models.ArithmeticParams: models.ArithmeticStepper,
    models.MertonParams: models.MertonStepper,
    models.HestonParams: models.HestonStepper,
    models.OrnsteinUhlenbeckParams: models.OrnsteinUhlenbeckStepper,
}

# gRPC refuses to receive messages over 4 MiB unless both sides raise the limit.
GRPC_DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Room for everything in a price message besides the packed doubles: field
# tags, the length prefix, offset, seed and a symbol of the longest length.
SYMBOL_MAX_BYTES = 128
MESSAGE_OVERHEAD_BYTES = 256
# The most prices one message can carry and still fit the default limit.
MAX_PRICES_PER_MESSAGE = (GRPC_DEFAULT_MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD_BYTES) // 8

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
class GbmPlan:
    """A checked request: what to generate and how to deliver it (any model)."""

    params: object  # GbmParams or one of server.models' parameter classes
    periods: int
    seed: int
    symbol: str
    chunk_size: int
    ticks_per_second: float | None  # None: as fast as possible

    def stepper(self) -> PriceStepper:
        """A fresh stepper of the plan's model at the start of its seeded path."""
        return _STEPPERS[type(self.params)](self.params, make_rng(self.seed))


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


def _check_unary_periods(request, limits: Limits, rpc: str, stream_rpc: str) -> None:
    if not 1 <= request.periods <= limits.max_unary_periods:
        reason = (
            f": the reply would exceed gRPC's 4 MiB message limit; use {stream_rpc} for longer paths"
            if request.periods > limits.max_unary_periods
            else ""
        )
        raise ParameterError(
            "periods",
            f"periods must be in [1, {limits.max_unary_periods}] for {rpc}, got {request.periods}{reason}",
        )


def plan_unary(request: market_data_pb2.GbmRequest, limits: Limits) -> GbmPlan:
    """Check a GetGbmPrices request; the whole path must fit in one reply."""
    _check_unary_periods(request, limits, "GetGbmPrices", "StreamGbmPrices")
    return _plan(request, limits, _gbm_of)


def plan_stream(request: market_data_pb2.GbmRequest, limits: Limits) -> GbmPlan:
    """Check a StreamGbmPrices request."""
    return _plan(request, limits, _gbm_of)


def plan_path_unary(request: market_data_pb2.PathRequest, limits: Limits) -> GbmPlan:
    """Check a GetPrices request (any model)."""
    _check_unary_periods(request, limits, "GetPrices", "StreamPrices")
    return _plan(request, limits, _model_of)


def plan_path_stream(request: market_data_pb2.PathRequest, limits: Limits) -> GbmPlan:
    """Check a StreamPrices request (any model)."""
    return _plan(request, limits, _model_of)


def _gbm_of(request: market_data_pb2.GbmRequest, trading_days: float) -> GbmParams:
    return _gbm_params(request.start_price, request.mu, request.sigma, request.delta, trading_days)


_MODELS = {
    "gbm": lambda m, d, y: _gbm_params(m.start_price, m.mu, m.sigma, d, y),
    "arithmetic": lambda m, d, y: models.ArithmeticParams(m.start_price, m.mu, m.sigma, d, y),
    "merton": lambda m, d, y: models.MertonParams(
        m.start_price, m.mu, m.sigma, m.jump_intensity, m.jump_mean, m.jump_stdev, d, y
    ),
    "heston": lambda m, d, y: models.HestonParams(
        m.start_price, m.mu, m.v0, m.kappa, m.theta, m.xi, m.rho, d, y
    ),
    "ornstein_uhlenbeck": lambda m, d, y: models.OrnsteinUhlenbeckParams(
        m.start, m.mean, m.kappa, m.sigma, d, y
    ),
}


def _model_of(request: market_data_pb2.PathRequest, trading_days: float) -> object:
    name = request.WhichOneof("model")
    if name is None:
        raise ParameterError("model", f"model: set exactly one of {', '.join(_MODELS)}")
    try:
        return _MODELS[name](getattr(request, name), request.delta, trading_days)
    except ParameterError as err:
        if err.field in ("delta", "trading_days_per_year"):
            raise
        # Name the field by its path in the request, e.g. merton.jump_stdev.
        raise ParameterError(f"{name}.{err.field}", f"{name}.{err}") from None


def _plan(request, limits: Limits, params_of: Callable[[object, float], object]) -> GbmPlan:
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
        if not 1 <= request.chunk_size <= limits.max_chunk_size:
            raise ParameterError(
                "chunk_size",
                f"chunk_size must be in [1, {limits.max_chunk_size}], got {request.chunk_size}",
            )
        chunk_size = request.chunk_size
    elif ticks_per_second is not None:
        chunk_size = max(1, min(limits.default_chunk_size, math.ceil(ticks_per_second * PACED_CHUNK_SECONDS)))
    else:
        chunk_size = limits.default_chunk_size

    seed = request.seed if request.HasField("seed") else new_seed()
    return GbmPlan(
        params=params,
        periods=request.periods,
        seed=seed,
        symbol=request.symbol,
        chunk_size=chunk_size,
        ticks_per_second=ticks_per_second,
    )
