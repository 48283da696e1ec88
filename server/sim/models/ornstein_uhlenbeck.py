"""Ornstein-Uhlenbeck mean reversion with exact steps, for spreads and rates:

x' = mean + (x - mean) e^{-kappa t} + sigma sqrt((1 - e^{-2 kappa t}) / (2 kappa)) Z

Values need no clamp: e^{-kappa t} <= 1 never pulls x further from the mean,
and the noise's scale is about sigma sqrt(t) at most, 1e14 at the widest corner,
so even 10^12 periods stay below about 1e29.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..checks import check_range
from ..steppers import BlockStepper, FillStepper
from .base import LEVEL_MAX, Model


class OrnsteinUhlenbeckStepper(FillStepper):
    def __init__(self, model: OrnsteinUhlenbeck, rng: np.random.Generator) -> None:
        super().__init__(model.start)
        t = model.years
        self._decay = math.exp(-model.kappa * t)
        self._noise = model.sigma * math.sqrt(-math.expm1(-2 * model.kappa * t) / (2 * model.kappa))
        self._mean = model.mean
        self._rng = rng
        self._level = model.start

    def _fill(self, out: np.ndarray) -> None:
        shocks = self._rng.standard_normal(len(out)) * self._noise
        mean, decay, x = self._mean, self._decay, self._level
        values = []
        keep = values.append
        for shock in shocks.tolist():  # each step depends on the last: one lean loop of floats
            x = mean + (x - mean) * decay + shock
            keep(x)
        out[:] = values
        self._level = x

    def skip(self, n: int) -> float:
        """As BlockStepper.skip, the same steps without keeping the values between."""
        if n < 1 or self._position == 0:
            return super().skip(n)
        shocks = self._rng.standard_normal(n) * self._noise
        mean, decay, x = self._mean, self._decay, self._level
        for shock in shocks.tolist():
            x = mean + (x - mean) * decay + shock
        self._level = x
        self._position += n
        return x


@dataclass(frozen=True)
class OrnsteinUhlenbeck(Model):
    """Starts at ``start`` and reverts to ``mean`` at speed ``kappa`` per year, with
    volatility ``sigma`` in value units per sqrt(year); values may be <= 0."""

    stepper_class: ClassVar[type[BlockStepper]] = OrnsteinUhlenbeckStepper
    name: ClassVar[str] = "ornstein_uhlenbeck"
    positive: ClassVar[bool] = False

    start: float
    mean: float
    kappa: float
    sigma: float

    def _check(self) -> None:
        check_range("start", self.start, -LEVEL_MAX, LEVEL_MAX)
        check_range("mean", self.mean, -LEVEL_MAX, LEVEL_MAX)
        check_range("kappa", self.kappa, 0.0, 1e4, low_open=True, unit="per year")
        check_range("sigma", self.sigma, 0.0, LEVEL_MAX)

    @property
    def stationary_variance(self) -> float:
        return self.sigma**2 / (2 * self.kappa)

    @property
    def summary(self) -> tuple[float, float, float]:
        """No drift parameter: ``mean`` is a level, so the drift shown is 0."""
        return self.start, 0.0, self.sigma
