"""More price models, as steppers like GbmStepper (pure numpy, no gRPC).

Each takes its checked parameters and a ``numpy.random.Generator`` and hands
out the next block of n values; the first value of a path is its start. A
path does not depend on how it is cut into blocks: state is carried between
blocks and every random draw is taken in the same order whatever the block
size.

- ArithmeticStepper: arithmetic Brownian motion, S += mu t + sigma sqrt(t) Z
  (the Euler step of the original endpoint; exact for this model; can go
  below zero).
- MertonStepper: GBM plus compound-Poisson jumps with normal log sizes.
- HestonStepper: stochastic variance (CIR), full-truncation Euler scheme, so
  the variance used is never negative.
- OrnsteinUhlenbeckStepper: mean reversion, exact discretisation (spreads, rates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from server.generator import (
    DEFAULT_TRADING_DAYS_PER_YEAR,
    BlockStepper,
    GbmParams,
    GbmStepper,
    ParameterError,
    check_range,
    years_per_period,
)

BIG = 1e12


class _Stepper(BlockStepper):
    """A model whose steps fill an array in place, after its start value."""

    def __init__(self, start: float) -> None:
        self._start = start

    def _block(self, draws: int, with_start: bool) -> np.ndarray:
        out = np.empty(draws + with_start)
        if with_start:
            out[0] = self._start
        self._fill(out[with_start:])
        return out

    def _fill(self, out: np.ndarray) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ArithmeticParams:
    start_price: float
    mu: float  # drift in price units per year
    sigma: float  # volatility in price units per sqrt(year)
    delta: float = 1.0
    trading_days_per_year: float = DEFAULT_TRADING_DAYS_PER_YEAR

    def __post_init__(self) -> None:
        check_range("start_price", self.start_price, -BIG, BIG)
        check_range("mu", self.mu, -BIG, BIG, unit="price units per year")
        check_range("sigma", self.sigma, 0.0, BIG, unit="price units per sqrt(year)")
        years_per_period(self.delta, self.trading_days_per_year)


class ArithmeticStepper(_Stepper):
    def __init__(self, params: ArithmeticParams, rng: np.random.Generator) -> None:
        super().__init__(params.start_price)
        t = years_per_period(params.delta, params.trading_days_per_year)
        self._drift, self._vol = params.mu * t, params.sigma * math.sqrt(t)
        self._rng = rng
        self._level = params.start_price

    def _fill(self, out: np.ndarray) -> None:
        acc = np.empty(len(out) + 1)
        acc[0] = self._level
        self._rng.standard_normal(out=acc[1:])
        acc[1:] *= self._vol
        acc[1:] += self._drift
        np.add.accumulate(acc, out=acc)
        out[:] = acc[1:]
        self._level = float(acc[-1])


@dataclass(frozen=True)
class MertonParams:
    start_price: float
    mu: float  # total expected return per year, jumps included
    sigma: float  # diffusion volatility per sqrt(year)
    jump_intensity: float  # expected jumps per year (lambda)
    jump_mean: float  # mean of a jump's log size
    jump_stdev: float  # standard deviation of a jump's log size
    delta: float = 1.0
    trading_days_per_year: float = DEFAULT_TRADING_DAYS_PER_YEAR

    def __post_init__(self) -> None:
        check_range("start_price", self.start_price, 0.0, BIG, low_open=True)
        check_range("mu", self.mu, -10.0, 10.0, unit="per year")
        check_range("sigma", self.sigma, 0.0, 10.0, unit="per sqrt(year)")
        check_range("jump_intensity", self.jump_intensity, 0.0, 1e4, unit="jumps per year")
        check_range("jump_mean", self.jump_mean, -5.0, 5.0)
        check_range("jump_stdev", self.jump_stdev, 0.0, 5.0)
        years_per_period(self.delta, self.trading_days_per_year)

    @property
    def jump_compensator(self) -> float:
        """k = E[e^Y] - 1: the drift correction that keeps mu the total expected return."""
        return math.exp(self.jump_mean + self.jump_stdev**2 / 2) - 1


class MertonStepper(_Stepper):
    def __init__(self, params: MertonParams, rng: np.random.Generator) -> None:
        super().__init__(params.start_price)
        t = years_per_period(params.delta, params.trading_days_per_year)
        p = params
        self._drift = (p.mu - p.sigma**2 / 2 - p.jump_intensity * p.jump_compensator) * t
        self._vol = p.sigma * math.sqrt(t)
        self._rate = p.jump_intensity * t
        self._params = p
        # One child stream each for diffusion, jump counts and jump sizes, so
        # every stream is read in step order whatever the block size.
        self._diffusion, self._counts, self._sizes = rng.spawn(3)
        self._log_return = 0.0

    def _fill(self, out: np.ndarray) -> None:
        n, p = len(out), self._params
        diffusion = self._diffusion.standard_normal(n)
        counts = self._counts.poisson(self._rate, n)
        sizes = self._sizes.standard_normal(n)
        steps = (
            self._drift
            + self._vol * diffusion
            + p.jump_mean * counts
            + p.jump_stdev * np.sqrt(counts) * sizes
        )
        acc = np.concatenate(([self._log_return], steps))
        np.add.accumulate(acc, out=acc)
        self._log_return = float(acc[-1])
        np.exp(acc[1:], out=out)
        out *= p.start_price


@dataclass(frozen=True)
class HestonParams:
    start_price: float
    mu: float  # drift per year
    v0: float  # initial variance (per year)
    kappa: float  # speed of mean reversion of the variance, per year
    theta: float  # long-run variance
    xi: float  # volatility of the variance
    rho: float  # correlation of the price and variance shocks
    delta: float = 1.0
    trading_days_per_year: float = DEFAULT_TRADING_DAYS_PER_YEAR

    def __post_init__(self) -> None:
        check_range("start_price", self.start_price, 0.0, BIG, low_open=True)
        check_range("mu", self.mu, -10.0, 10.0, unit="per year")
        check_range("v0", self.v0, 0.0, 100.0)
        check_range("kappa", self.kappa, 0.0, 1e3)
        check_range("theta", self.theta, 0.0, 100.0)
        check_range("xi", self.xi, 0.0, 100.0)
        check_range("rho", self.rho, -1.0, 1.0)
        years_per_period(self.delta, self.trading_days_per_year)


class HestonStepper(_Stepper):
    """Full truncation: the variance process may dip below zero, but only its
    positive part ever drives prices or its own drift and diffusion."""

    def __init__(self, params: HestonParams, rng: np.random.Generator) -> None:
        super().__init__(params.start_price)
        self._t = years_per_period(params.delta, params.trading_days_per_year)
        self._params = params
        self._rng = rng
        self._log_price = math.log(params.start_price)
        self.variance = params.v0

    def _fill(self, out: np.ndarray) -> None:
        p, t = self._params, self._t
        sqrt_t = math.sqrt(t)
        shocks = self._rng.standard_normal((len(out), 2))  # row i: step i's two shocks, in order
        z_price = shocks[:, 0]
        z_var = p.rho * shocks[:, 0] + math.sqrt(1 - p.rho**2) * shocks[:, 1]
        log_price, v = self._log_price, self.variance
        logs = np.empty(len(out))
        for i in range(len(out)):  # each step depends on the last variance
            vp = v if v > 0.0 else 0.0
            root = math.sqrt(vp)
            log_price += (p.mu - vp / 2) * t + root * sqrt_t * z_price[i]
            v += p.kappa * (p.theta - vp) * t + p.xi * root * sqrt_t * z_var[i]
            logs[i] = log_price
        self._log_price, self.variance = log_price, v
        np.exp(logs, out=out)


@dataclass(frozen=True)
class OrnsteinUhlenbeckParams:
    start: float  # the first value
    mean: float  # long-run level it reverts to
    kappa: float  # speed of reversion, per year
    sigma: float  # volatility, in value units per sqrt(year)
    delta: float = 1.0
    trading_days_per_year: float = DEFAULT_TRADING_DAYS_PER_YEAR

    def __post_init__(self) -> None:
        check_range("start", self.start, -BIG, BIG)
        check_range("mean", self.mean, -BIG, BIG)
        check_range("kappa", self.kappa, 0.0, 1e4, low_open=True, unit="per year")
        check_range("sigma", self.sigma, 0.0, BIG)
        years_per_period(self.delta, self.trading_days_per_year)

    @property
    def stationary_variance(self) -> float:
        return self.sigma**2 / (2 * self.kappa)


class OrnsteinUhlenbeckStepper(_Stepper):
    """x' = mean + (x - mean) e^{-kappa t} + sigma sqrt((1 - e^{-2 kappa t}) / (2 kappa)) Z, exactly."""

    def __init__(self, params: OrnsteinUhlenbeckParams, rng: np.random.Generator) -> None:
        super().__init__(params.start)
        t = years_per_period(params.delta, params.trading_days_per_year)
        self._decay = math.exp(-params.kappa * t)
        self._noise = params.sigma * math.sqrt(-math.expm1(-2 * params.kappa * t) / (2 * params.kappa))
        self._params = params
        self._rng = rng
        self._level = params.start

    def _fill(self, out: np.ndarray) -> None:
        shocks = self._rng.standard_normal(len(out)) * self._noise
        mean, decay, x = self._params.mean, self._decay, self._level
        for i, shock in enumerate(shocks.tolist()):
            x = mean + (x - mean) * decay + shock
            out[i] = x
        self._level = x


@dataclass(frozen=True)
class Model:
    """A price model as the API and the market file name it: its parameters and its stepper."""

    params: type  # model parameters, then delta and trading_days_per_year
    stepper: Callable[[Any, np.random.Generator], BlockStepper]
    positive: bool  # values are prices above zero (else they may be zero or negative: spreads, rates)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The model's own parameters, named and ordered as in its protobuf message."""
        return tuple(f.name for f in fields(self.params) if f.name not in ("delta", "trading_days_per_year"))

    def make_params(self, values: Mapping[str, float], delta: float, trading_days_per_year: float) -> Any:
        return self.params(**values, delta=delta, trading_days_per_year=trading_days_per_year)


# Keyed by the fields of PathRequest's model oneof, which the market file uses too.
MODELS: dict[str, Model] = {
    "gbm": Model(GbmParams, GbmStepper, positive=True),
    "arithmetic": Model(ArithmeticParams, ArithmeticStepper, positive=False),
    "merton": Model(MertonParams, MertonStepper, positive=True),
    "heston": Model(HestonParams, HestonStepper, positive=True),
    "ornstein_uhlenbeck": Model(OrnsteinUhlenbeckParams, OrnsteinUhlenbeckStepper, positive=False),
}
_BY_PARAMS = {m.params: m for m in MODELS.values()}


def model_of(params: object) -> Model:
    """The model whose parameter object ``params`` is."""
    return _BY_PARAMS[type(params)]


__all__ = [
    "MODELS",
    "Model",
    "model_of",
    "ArithmeticParams",
    "ArithmeticStepper",
    "HestonParams",
    "HestonStepper",
    "MertonParams",
    "MertonStepper",
    "OrnsteinUhlenbeckParams",
    "OrnsteinUhlenbeckStepper",
    "ParameterError",
]
