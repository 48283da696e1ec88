"""The live market's universe: its instruments, their models and tick sizes, its clock.

A universe comes from a TOML file (see README, "The live market") or is built
in code; ``DEFAULT_MARKET`` serves when none is given. Each instrument
follows one of the single-instrument models, its parameters named as in the
model's class (and protobuf message); only GBM instruments can be correlated.
"""

from __future__ import annotations

import collections
import datetime
import functools
import numbers
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .book import PRICE_TICKS_MAX, BookParams
from .checks import ParameterError, check_range, listed, quoted
from .correlation import check_correlation
from .models import DEFAULT_TRADING_DAYS_PER_YEAR, Gbm, Model
from .models import MODELS as ALL_MODELS
from .ticks import TICK_SIZE_MAX, TICK_SIZE_MIN

# A trading day of an equity exchange (6.5 hours), to turn simulated seconds into trading days.
TRADING_SECONDS_PER_DAY = 6.5 * 3600
SYMBOL_MAX_CHARS = 32
# Units in one lot: book and trade sizes count lots.
LOT_SIZE_MAX = 10**9
# The market ticks at most this often: faster clocks are refused, not chased.
MIN_WALL_INTERVAL = 0.001
# The instants a market's epoch may be: from the Unix epoch to the last year whose
# nanoseconds fit in int64, as for a path's timestamps.
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
EPOCH_FIRST = _UNIX_EPOCH
EPOCH_END = datetime.datetime(2262, 1, 1, tzinfo=datetime.UTC)


# The models an instrument may follow: the single-instrument ones.
MODELS: tuple[str, ...] = tuple(name for name, model in ALL_MODELS.items() if model.single_instrument)
# Parameters that may be left out, as mu always could be for GBM: no drift.
_DEFAULTS: dict[str, float] = {"mu": 0.0}


def _checked_parameters(model: str, given: Mapping[str, object]) -> tuple[tuple[str, float], ...]:
    """``given`` as (name, value) pairs in the model's order, defaults filled in, every value checked.

    ParameterError names the offending field and, for ranges, the accepted interval.
    """
    spec = ALL_MODELS.get(model) if isinstance(model, str) and model in MODELS else None
    if spec is None:
        raise ParameterError("model", f"model must be one of {', '.join(MODELS)}, got {quoted(model)}")
    names = spec.parameter_names()
    takes = ", ".join(names)
    unknown = [name for name in given if name not in names]
    if unknown:
        verb = "is not a parameter" if len(unknown) == 1 else "are not parameters"
        raise ParameterError(
            str(unknown[0]), f"{listed(unknown)} {verb} of model {model}, which takes {takes}"
        )
    values: dict[str, float] = {}
    for name in names:
        value = given.get(name, _DEFAULTS.get(name))
        if value is None:
            raise ParameterError(name, f"{name} is required for model {model}, which takes {takes}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParameterError(name, f"{name} must be a number, got {quoted(value)}")
        values[name] = float(value)
    spec(**values)  # the ranges do not depend on the period length, checked once it is known
    return tuple(values.items())


@dataclass(frozen=True)
class Instrument:
    """One tradable symbol: its price model and the price grid it quotes on.

    ``Instrument(symbol, start_price, mu, sigma)`` is a GBM instrument (annualised
    drift and volatility); ``Instrument.of_model`` builds one of any model in
    ``MODELS``. Whatever the model, ``start_price``, ``mu`` and ``sigma`` summarise
    it for ListInstruments: ``start_price`` is the first value (the
    Ornstein-Uhlenbeck ``start``); ``mu`` the drift (0.0 for Ornstein-Uhlenbeck,
    whose ``mean`` is a level, not a drift); ``sigma`` the volatility (for Heston
    the initial one, sqrt(v0); for arithmetic and Ornstein-Uhlenbeck in value
    units, not a fraction). ``parameters`` holds the model's own parameters, as
    named in its protobuf message; they must agree with the summary.
    """

    symbol: str
    start_price: float
    mu: float
    sigma: float
    tick_size: float = 0.01
    model: str = "gbm"
    parameters: tuple[tuple[str, float], ...] = ()  # empty for GBM means (start_price, mu, sigma)
    lot_size: int = 1  # units in one lot; book and trade sizes count lots

    def __post_init__(self) -> None:
        if not self.symbol or len(self.symbol) > SYMBOL_MAX_CHARS or not self.symbol.isprintable():
            raise ParameterError(
                "symbol",
                f"symbol must be 1 to {SYMBOL_MAX_CHARS} printable characters, got {quoted(self.symbol)}",
            )
        # The same grid as a path's: a tick far below 1e-9 overflows the exact decimals.
        check_range("tick_size", self.tick_size, TICK_SIZE_MIN, TICK_SIZE_MAX)
        lot = self.lot_size
        if isinstance(lot, bool) or not isinstance(lot, numbers.Integral) or not 1 <= lot <= LOT_SIZE_MAX:
            raise ParameterError(
                "lot_size",
                f"lot_size must be a whole number of units in [1, {LOT_SIZE_MAX}], got {quoted(lot)}",
            )
        given = dict(self.parameters)
        if self.model == "gbm" and not given:
            given = {"start_price": self.start_price, "mu": self.mu, "sigma": self.sigma}
        parameters = _checked_parameters(self.model, given)
        object.__setattr__(self, "parameters", parameters)
        summary = ALL_MODELS[self.model](**dict(parameters)).summary
        if (self.start_price, self.mu, self.sigma) != summary:
            raise ParameterError(
                "parameters",
                f"start_price, mu and sigma of this {self.model} instrument must be {summary}, "
                f"as its parameters imply, got {(self.start_price, self.mu, self.sigma)}; "
                "build it with Instrument.of_model",
            )
        if not abs(self.start_price) / self.tick_size <= PRICE_TICKS_MAX:
            raise ParameterError(
                "tick_size",
                f"start_price {self.start_price:g} is {abs(self.start_price) / self.tick_size:.3g} ticks of "
                f"{self.tick_size:g} from zero; an order book places prices at most 2^50 (about 1.1e15) "
                "ticks from zero: use a larger tick_size",
            )

    @classmethod
    def of_model(
        cls,
        symbol: str,
        model: str,
        parameters: Mapping[str, object],
        tick_size: float = 0.01,
        lot_size: int = 1,
    ) -> Instrument:
        """An instrument of ``model`` (one of MODELS) with that model's named parameters.

        Only ``mu`` may be left out (0.0); an unknown model, a missing or foreign
        parameter or a value out of range raises ParameterError naming it.
        """
        checked = _checked_parameters(model, parameters)
        start_price, mu, sigma = ALL_MODELS[model](**dict(checked)).summary
        return cls(symbol, start_price, mu, sigma, tick_size, model, checked, lot_size)

    @property
    def positive(self) -> bool:
        """Whether the model's values are prices above zero (gbm, merton, heston), floored at one tick."""
        return ALL_MODELS[self.model].positive

    def model_params(
        self, delta: float, trading_days_per_year: float = DEFAULT_TRADING_DAYS_PER_YEAR
    ) -> Model:
        """The instrument's model (a Gbm, Merton, ...) for ``delta``-day periods."""
        return ALL_MODELS[self.model].from_values(dict(self.parameters), delta, trading_days_per_year)


@dataclass(frozen=True)
class MarketConfig:
    """A universe and its clock.

    Each tick represents ``simulated_seconds_per_tick`` of trading time and is
    due ``wall_seconds_per_tick / speed`` seconds of wall time after the last.
    ``correlation`` has one row per instrument, but only GBM instruments may be
    correlated: a non-GBM instrument's row must be zero off the diagonal.
    ``factor`` is the factor of the GBM instruments' correlation, in their order.
    ``epoch`` is the wall time of tick 0 in seconds since 1970-01-01T00:00:00Z (None:
    each server takes the moment it starts); servers given the same universe, seed
    and epoch publish the same ticks at the same times, and the same order books and
    trades, which follow ``book`` (see sim.book).
    """

    instruments: tuple[Instrument, ...]
    correlation: np.ndarray | None = None
    seed: int | None = None
    wall_seconds_per_tick: float = 0.1
    simulated_seconds_per_tick: float = 1.0
    speed: float = 1.0
    epoch: float | None = None
    book: BookParams = field(default_factory=BookParams)
    factor: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ParameterError("instruments", "a market needs at least one instrument")
        symbols = [i.symbol for i in self.instruments]
        duplicates = sorted(s for s, n in collections.Counter(symbols).items() if n > 1)
        if duplicates:
            raise ParameterError("instruments", f"symbols must be unique; repeated: {listed(duplicates)}")
        check_range("wall_seconds_per_tick", self.wall_seconds_per_tick, 0.0, 3600.0, low_open=True)
        check_range(
            "simulated_seconds_per_tick", self.simulated_seconds_per_tick, 0.0, 86400.0 * 366, low_open=True
        )
        check_range("speed", self.speed, 0.0, 1e6, low_open=True)
        if self.wall_interval < MIN_WALL_INTERVAL:
            raise ParameterError(
                "speed",
                f"wall_seconds_per_tick / speed must be at least {MIN_WALL_INTERVAL:g} s (at most "
                f"{1 / MIN_WALL_INTERVAL:g} ticks a second), got {self.wall_interval:g} s",
            )
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ParameterError("seed", f"seed must be in [0, 2^64 - 1], got {self.seed}")
        if self.epoch is not None:
            first, end = (_seconds(t) for t in (EPOCH_FIRST, EPOCH_END))
            if not (isinstance(self.epoch, float) and first <= self.epoch < end):
                raise ParameterError(
                    "epoch",
                    f"epoch must be a float of seconds in [{first:g}, {end:g}) (from {_iso(EPOCH_FIRST)} "
                    f"until {_iso(EPOCH_END)}), got {quoted(self.epoch)}",
                )
        object.__setattr__(self, "factor", self._gbm_factor(symbols))

    def _gbm_factor(self, symbols: list[str]) -> np.ndarray | None:
        """Check the whole matrix, refuse correlation given to a non-GBM instrument, factor the GBM block."""
        if self.correlation is None:
            return None
        factor = check_correlation(self.correlation, symbols)
        matrix = np.asarray(self.correlation, dtype=np.float64)
        gbm = [n for n, i in enumerate(self.instruments) if i.model == "gbm"]
        if len(gbm) == len(symbols):
            return factor
        off_diagonal = ~np.eye(len(symbols), dtype=bool)
        correlated = [
            f"{symbols[n]} ({self.instruments[n].model})"
            for n, i in enumerate(self.instruments)
            if i.model != "gbm" and (matrix[n][off_diagonal[n]].any() or matrix[:, n][off_diagonal[n]].any())
        ]
        if correlated:
            raise ParameterError(
                "correlation",
                "only GBM instruments can be correlated; the correlation matrix gives non-zero "
                f"correlation to {listed(correlated)}; set their off-diagonal entries to 0",
            )
        if not gbm:
            return None
        return check_correlation(matrix[np.ix_(gbm, gbm)], [symbols[n] for n in gbm])

    @functools.cached_property
    def symbols(self) -> tuple[str, ...]:
        return tuple(i.symbol for i in self.instruments)

    @property
    def wall_interval(self) -> float:
        """Wall-clock seconds between two ticks."""
        return self.wall_seconds_per_tick / self.speed

    @property
    def period_days(self) -> float:
        """Trading days one tick represents: the ``delta`` of every instrument's model."""
        return self.simulated_seconds_per_tick / TRADING_SECONDS_PER_DAY

    def gbm_params(self) -> list[Gbm]:
        """Parameters of the GBM instruments only, in market order (what the correlated stepper takes)."""
        return [i.model_params(self.period_days) for i in self.instruments if i.model == "gbm"]

    def model_params(self) -> list[Model]:
        """Every instrument's model parameters for one tick, in market order."""
        return [i.model_params(self.period_days) for i in self.instruments]


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
        raise ParameterError(key, f"{where}: {key} must be a number, got {quoted(value)}")
    return float(value)


def _seconds(instant: datetime.datetime) -> float:
    """An aware datetime as seconds since 1970 UTC: whole microseconds divided once, so
    the same instant gives the same float on every host (Python divides ints exactly)."""
    return ((instant - _UNIX_EPOCH) // datetime.timedelta(microseconds=1)) / 1_000_000


def _iso(instant: datetime.datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def parse_epoch(value: object) -> float:
    """The ``epoch`` of a market file's [market] table as seconds since 1970 UTC.

    It is an instant: a TOML offset date-time (``2026-03-02T14:30:00Z``) or an ISO 8601
    string with ``Z`` or an offset (``"2026-03-02T09:30:00-05:00"``). A date or a time
    without an offset is refused: each host would read it in its own time zone.
    """
    example = "such as 2026-03-02T14:30:00Z"
    # Quoted as written: TOML dates and times as ISO 8601, anything else as Python shows it.
    given = value.isoformat() if isinstance(value, (datetime.date, datetime.time)) else value
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ParameterError(
                "epoch", f"epoch must be an ISO 8601 instant, {example}, got {quoted(value)}"
            ) from None
    if not isinstance(value, datetime.datetime):
        raise ParameterError(
            "epoch",
            f"epoch must be a date and time with Z or a UTC offset, {example}, got {quoted(given)}",
        )
    if value.utcoffset() is None:
        raise ParameterError(
            "epoch",
            f"epoch must say its UTC offset (Z, or +01:00 ...), {example}: a local time is a "
            f"different instant on each host, got {quoted(given)}",
        )
    try:
        outside = not EPOCH_FIRST <= value < EPOCH_END
    except OverflowError:  # an offset moved it past the years datetime holds
        outside = True
    if outside:
        raise ParameterError(
            "epoch",
            f"epoch must be from {_iso(EPOCH_FIRST)} until {_iso(EPOCH_END)}, got {quoted(given)}",
        )
    return _seconds(value)


# Keys of an [[instrument]] table that are not model parameters.
_INSTRUMENT_KEYS = ("symbol", "model", "tick_size", "lot_size")


def parse_market(document: Mapping[str, Any]) -> MarketConfig:
    """A MarketConfig from a parsed TOML document (see README, "The live market")."""
    market = document.get("market", {})
    rows = document.get("instrument", [])
    if not isinstance(rows, list) or not rows:
        raise ParameterError("instrument", "the file needs at least one [[instrument]] table")
    instruments = []
    for n, row in enumerate(rows, start=1):
        where = f"instrument #{n}"
        if not isinstance(row, Mapping):
            raise ParameterError("instrument", f"{where}: must be a table")
        symbol = row.get("symbol")
        if not isinstance(symbol, str):
            raise ParameterError("symbol", f"{where}: symbol must be a string")
        where = f"{where} ({symbol})"
        tick_size = _number(row, "tick_size", where, 0.01)
        parameters = {key: value for key, value in row.items() if key not in _INSTRUMENT_KEYS}
        try:
            model = row.get("model", "gbm")
            instruments.append(
                Instrument.of_model(symbol, model, parameters, tick_size, row.get("lot_size", 1))
            )
        except ParameterError as err:
            raise ParameterError(err.field, f"{where}: {err}") from None
    correlation = market.get("correlation")
    seed = market.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ParameterError("seed", f"seed must be an integer, got {quoted(seed)}")
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
        epoch=None if market.get("epoch") is None else parse_epoch(market["epoch"]),
        book=_book_params(document.get("book", {})),
    )


def _book_params(table: object) -> BookParams:
    """The [book] table: the order-book model's parameters (sim.book.BookParams), each optional."""
    if not isinstance(table, Mapping):
        raise ParameterError("book", "[book] must be a table")
    names = [f.name for f in fields(BookParams)]
    unknown = [key for key in table if key not in names]
    if unknown:
        raise ParameterError(
            f"book.{unknown[0]}",
            f"[book]: {listed(unknown)} not a parameter of the book model, which takes {', '.join(names)}",
        )
    return BookParams(**table)


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
