"""The simulated market: a universe of instruments advanced together, tick by tick.

Pure numpy and the standard library, no gRPC: the server's live feed drives a
``Market`` from its clock, tests drive it by calling ``tick()``. Every
instrument follows GBM through the core's CorrelatedGbmStepper; with a seed
the whole market replays exactly.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from server.generator import (
    DEFAULT_TRADING_DAYS_PER_YEAR,
    CorrelatedGbmStepper,
    GbmParams,
    ParameterError,
    check_correlation,
    check_range,
    make_rng,
    new_seed,
)

# A trading day of an equity exchange (6.5 hours), to turn simulated seconds into trading days.
TRADING_SECONDS_PER_DAY = 6.5 * 3600
SYMBOL_MAX_CHARS = 32


@dataclass(frozen=True)
class Instrument:
    """One tradable symbol: GBM parameters (annualised) and the price grid it quotes on."""

    symbol: str
    start_price: float
    mu: float
    sigma: float
    tick_size: float = 0.01

    def __post_init__(self) -> None:
        if not self.symbol or len(self.symbol) > SYMBOL_MAX_CHARS or not self.symbol.isprintable():
            raise ParameterError(
                "symbol", f"symbol must be 1 to {SYMBOL_MAX_CHARS} printable characters, got {self.symbol!r}"
            )
        check_range("tick_size", self.tick_size, 0.0, 1e6, low_open=True)
        # The GBM parameters are checked where they are used.
        GbmParams(self.start_price, self.mu, self.sigma)


@dataclass(frozen=True)
class MarketConfig:
    """A universe and its clock.

    Each tick represents ``simulated_seconds_per_tick`` of trading time and is
    due ``wall_seconds_per_tick / speed`` seconds of wall time after the last.
    """

    instruments: tuple[Instrument, ...]
    correlation: np.ndarray | None = None
    seed: int | None = None
    wall_seconds_per_tick: float = 0.1
    simulated_seconds_per_tick: float = 1.0
    speed: float = 1.0
    factor: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ParameterError("instruments", "a market needs at least one instrument")
        symbols = [i.symbol for i in self.instruments]
        duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
        if duplicates:
            raise ParameterError("instruments", f"symbols must be unique; repeated: {', '.join(duplicates)}")
        check_range("wall_seconds_per_tick", self.wall_seconds_per_tick, 0.0, 3600.0, low_open=True)
        check_range(
            "simulated_seconds_per_tick", self.simulated_seconds_per_tick, 0.0, 86400.0 * 366, low_open=True
        )
        check_range("speed", self.speed, 0.0, 1e6, low_open=True)
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ParameterError("seed", f"seed must be in [0, 2^64 - 1], got {self.seed}")
        factor = None if self.correlation is None else check_correlation(self.correlation, symbols)
        object.__setattr__(self, "factor", factor)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(i.symbol for i in self.instruments)

    @property
    def wall_interval(self) -> float:
        """Wall-clock seconds between two ticks."""
        return self.wall_seconds_per_tick / self.speed

    def gbm_params(self) -> list[GbmParams]:
        delta = self.simulated_seconds_per_tick / TRADING_SECONDS_PER_DAY
        return [
            GbmParams(i.start_price, i.mu, i.sigma, delta, DEFAULT_TRADING_DAYS_PER_YEAR)
            for i in self.instruments
        ]


DEFAULT_MARKET = MarketConfig(
    instruments=(
        Instrument("ACME", 70.0, 0.05, 0.30),
        Instrument("GLOBEX", 120.0, 0.07, 0.25),
        Instrument("INITECH", 35.0, 0.02, 0.45),
        Instrument("UMBRELLA", 250.0, 0.04, 0.20, tick_size=0.05),
    ),
    correlation=np.array(
        [
            [1.0, 0.5, 0.3, 0.2],
            [0.5, 1.0, 0.4, 0.3],
            [0.3, 0.4, 1.0, 0.1],
            [0.2, 0.3, 0.1, 1.0],
        ]
    ),
)


def _number(table: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if value is None:
        raise ParameterError(key, f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(key, f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def parse_market(document: Mapping[str, Any]) -> MarketConfig:
    """A MarketConfig from a parsed TOML document (see README, "The live market")."""
    market = document.get("market", {})
    rows = document.get("instrument", [])
    if not isinstance(rows, list) or not rows:
        raise ParameterError("instrument", "the file needs at least one [[instrument]] table")
    instruments = []
    for n, row in enumerate(rows, start=1):
        where = f"instrument #{n}"
        symbol = row.get("symbol")
        if not isinstance(symbol, str):
            raise ParameterError("symbol", f"{where}: symbol must be a string")
        instruments.append(
            Instrument(
                symbol=symbol,
                start_price=_number(row, "start_price", where),
                mu=_number(row, "mu", where, 0.0),
                sigma=_number(row, "sigma", where),
                tick_size=_number(row, "tick_size", where, 0.01),
            )
        )
    correlation = market.get("correlation")
    seed = market.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ParameterError("seed", f"seed must be an integer, got {seed!r}")
    try:
        matrix = None if correlation is None else np.array(correlation, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            "correlation", "correlation must be a list of equal-length lists of numbers"
        ) from None
    return MarketConfig(
        instruments=tuple(instruments),
        correlation=matrix,
        seed=seed,
        wall_seconds_per_tick=_number(market, "wall_seconds_per_tick", "[market]", 0.1),
        simulated_seconds_per_tick=_number(market, "simulated_seconds_per_tick", "[market]", 1.0),
        speed=_number(market, "speed", "[market]", 1.0),
    )


def load_market(path: str | Path) -> MarketConfig:
    """Read a market TOML file; errors name the file and the field."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ParameterError("market", f"{path}: not valid TOML: {err}") from None
    try:
        return parse_market(document)
    except ParameterError as err:
        raise ParameterError(err.field, f"{path}: {err}") from None


@dataclass(frozen=True)
class MarketTick:
    """Every instrument's price at one step of the market clock."""

    sequence: int  # 1 for the first tick after the start prices, then +1 per tick
    simulated_seconds: float  # trading time since the market opened
    prices: np.ndarray  # in the order of MarketConfig.instruments, rounded to each tick size


class Market:
    """The market state: one stepper for the whole universe, advanced by ``tick()``."""

    def __init__(self, config: MarketConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = seed if seed is not None else (config.seed if config.seed is not None else new_seed())
        self._stepper = CorrelatedGbmStepper(config.gbm_params(), config.factor, make_rng(self.seed))
        self._tick_sizes = np.array([i.tick_size for i in config.instruments])
        # Prices are published as (whole ticks x tick in integer units) / 10^decimals:
        # an exact integer divided once, so 250.1 reads 250.1, not 250.10000000000002.
        decimals = [max(0, -Decimal(repr(i.tick_size)).as_tuple().exponent) for i in config.instruments]
        self._scale = np.array([10.0**d for d in decimals])
        self._tick_units = np.round(self._tick_sizes * self._scale)
        self._index = {s: n for n, s in enumerate(config.symbols)}
        self.last = MarketTick(0, 0.0, self._round(self._stepper.next_block(1)[0]))

    def _round(self, prices: np.ndarray) -> np.ndarray:
        # Published prices sit on each instrument's grid, and never below one tick.
        ticks = np.maximum(np.round(prices / self._tick_sizes), 1.0)
        return ticks * self._tick_units / self._scale

    def tick(self) -> MarketTick:
        """Advance every instrument by one step; all subscribers see this same tick."""
        prices = self._stepper.next_block(1)[0]
        sequence = self.last.sequence + 1
        self.last = MarketTick(
            sequence, sequence * self.config.simulated_seconds_per_tick, self._round(prices)
        )
        return self.last

    def index_of(self, symbols: Sequence[str]) -> list[int]:
        """Positions of ``symbols``; ParameterError listing every unknown one."""
        unknown = [s for s in symbols if s not in self._index]
        if unknown:
            raise ParameterError("symbols", f"unknown symbols: {', '.join(unknown)}")
        return [self._index[s] for s in symbols]

    def last_price(self, symbol: str) -> float:
        return float(self.last.prices[self.index_of([symbol])[0]])
