"""What every price model is: a frozen dataclass of its parameters that checks
them when built, knows its volatility scale and makes its stepper."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..checks import ParameterError, check_range
from ..steppers import BlockStepper

DEFAULT_TRADING_DAYS_PER_YEAR = 252.0
DELTA_MAX = 10_000.0
# Ranges most models share. Wide enough for any market (a volatility of 10 is
# 1000% a year), narrow enough that every derived quantity stays a finite float64.
PRICE_MAX = 1e12
MU_ABS_MAX = 10.0
SIGMA_MAX = 10.0
LEVEL_MAX = 1e12  # the values of models that may go below zero, and their parameters
TRADING_DAYS_MIN, TRADING_DAYS_MAX = 1.0, 1e6
# The band every price of gbm, merton, heston and correlated_gbm stays in, however far its
# log-price goes (PriceBand). The floor is the smallest positive double: a price that would
# round to 0 stays above it, and its log stays finite for the volumes of bars. The ceiling leaves
# room for what is done to a price later: rounding to a tick of 17 significant digits multiplies
# it by up to 1e25 on the way (ticks.TickGrid.prices), the widest quote by up to 5e5 (1000 x a
# period's volatility of up to 1000, quotes.py), and 1e270 x 1e25 x 5e5 is still below the
# largest double, 1.8e308.
PRICE_FLOOR = 5e-324
PRICE_CEILING = 1e270
# Logs inside which exp and a product stay comfortably positive and finite (exp overflows past
# 709.78, underflows below -745.13).
_EXP_HIGH, _EXP_LOW, _LOG_CEILING, _LOG_ABOVE_ZERO = 700.0, -735.0, math.log(PRICE_CEILING) - 1, -730.0
# The period's fields belong to the request, not to the model: errors about them are never nested.
PERIOD_FIELDS = ("delta", "trading_days_per_year")


@dataclass(frozen=True)
class Model:
    """A price model. A subclass's own fields are the model's parameters, named and
    ordered as in its protobuf message (the market file uses the same names);
    ``delta`` and ``trading_days_per_year``, keyword-only, set the period: one
    period lasts ``delta`` trading days, ``t = delta / trading_days_per_year`` years.
    """

    name: ClassVar[str]  # its field of PathRequest's model oneof, and its name in the market file
    stepper_class: ClassVar[type[BlockStepper]]  # built as stepper_class(model, rng)
    positive: ClassVar[bool] = True  # values are prices above zero; else levels that may be <= 0
    single_instrument: ClassVar[bool] = True  # one value per period (the market's instruments)

    delta: float = field(default=1.0, kw_only=True)
    trading_days_per_year: float = field(default=DEFAULT_TRADING_DAYS_PER_YEAR, kw_only=True)

    def __post_init__(self) -> None:
        self._check()
        check_range("delta", self.delta, 0.0, DELTA_MAX, low_open=True, unit="trading days")
        check_range("trading_days_per_year", self.trading_days_per_year, TRADING_DAYS_MIN, TRADING_DAYS_MAX)

    def _check(self) -> None:
        """Raise ParameterError naming the first parameter outside its accepted range."""
        raise NotImplementedError

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The model's own parameters, named and ordered as in its protobuf message."""
        return tuple(f.name for f in fields(cls) if f.init and f.name not in PERIOD_FIELDS)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], delta: float, trading_days_per_year: float) -> Model:
        """The model built from its parameters by name (as the request or market file gives them)."""
        return cls(**values, delta=delta, trading_days_per_year=trading_days_per_year)

    @property
    def years(self) -> float:
        """One period's length in years."""
        return self.delta / self.trading_days_per_year

    # The next two fit the models named by start_price, mu and sigma (sigma per square-root
    # year: of the log-return for prices, of the value for levels); the others override them.

    @property
    def step_scale(self) -> float:
        """A typical move over one period: the log-return's standard deviation for
        prices, the value's (in value units) for levels that may go below zero.
        The volume model and volatility-scaled quotes use it."""
        return self.sigma * math.sqrt(self.years)

    @property
    def summary(self) -> tuple[float, float, float]:
        """(start, drift, volatility) as ListInstruments shows every instrument."""
        return self.start_price, self.mu, self.sigma

    def stepper(self, rng: np.random.Generator) -> BlockStepper:
        """A stepper at the start of this model's path, drawing from ``rng``."""
        return self.stepper_class(self, rng)


def nested(err: ParameterError, path: str) -> ParameterError:
    """A model's error named by its path in a request (``merton.jump_stdev``); the
    period's own fields stay the request's."""
    return err if err.field in PERIOD_FIELDS else err.under(path)


# The ufuncs' own reductions: ndarray.min and .max add a Python layer that costs more than
# the work for a block of a few hundred values (a GetGbmPrices of 100 prices pays it once).
_LOWEST, _HIGHEST = np.minimum.reduce, np.maximum.reduce


class PriceBand:
    """Prices ``start * exp(log-returns)`` kept inside [PRICE_FLOOR, PRICE_CEILING], for one
    start price or one per column of a basket.

    A price inside the band is the plain product, bit for bit; only one that overflowed,
    went past the ceiling or rounded to 0 is recomputed as ``exp(log-return + log(start))``
    and clamped. The log-returns themselves are never clamped: steppers carry their running
    log-price on unchanged, so a path comes back from the band's edge as soon as its
    log-price does, and any split into blocks gives the same prices.
    """

    def __init__(self, start: float | np.ndarray = 1.0) -> None:
        self._start = start
        if np.ndim(start) == 0:  # one instrument: plain floats, far cheaper per call than numpy's
            self._log_start = math.log(start)
            highest = lowest = self._log_start
        else:
            self._log_start = np.log(start)
            highest, lowest = float(np.max(self._log_start)), float(np.min(self._log_start))
        # Log-returns between these give prices inside the band without a look at each one.
        self._high = min(_EXP_HIGH, _LOG_CEILING - highest)
        self._low = max(_EXP_LOW, _LOG_ABOVE_ZERO - lowest)

    def prices(self, logs: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The prices of log-returns ``logs``, written into ``out`` (``logs`` itself will do)."""
        if logs.size == 0 or (
            self._low <= _LOWEST(logs, axis=None) and _HIGHEST(logs, axis=None) <= self._high
        ):
            np.exp(logs, out=out)
            out *= self._start
            return out
        exact = logs + self._log_start  # before ``out`` overwrites the logs
        with np.errstate(over="ignore", under="ignore"):
            np.exp(logs, out=out)
            out *= self._start
            outside = ~((out > 0.0) & (out <= PRICE_CEILING))
            out[outside] = np.clip(np.exp(exact[outside]), PRICE_FLOOR, PRICE_CEILING)
        return out
