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
