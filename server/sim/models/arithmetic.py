"""Arithmetic Brownian motion: S += mu t + sigma sqrt(t) Z.

The Euler step of the original endpoint, exact for this model; values can go
below zero, so they are levels (spreads, P&L), not prices. They need no clamp:
a step moves at most mu t + sigma sqrt(t) |Z| = 1e16 + 1e14 |Z| at the widest
corner, so even 10^12 periods stay below about 1e29, far inside float64 and
still finite when divided by the finest tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..checks import check_range
from ..steppers import BlockStepper, FillStepper
from .base import LEVEL_MAX, Model


class ArithmeticStepper(FillStepper):
    def __init__(self, model: Arithmetic, rng: np.random.Generator) -> None:
        super().__init__(model.start_price)
        t = model.years
        self._drift, self._vol = model.mu * t, model.sigma * math.sqrt(t)
        self._rng = rng
        self._level = model.start_price

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
class Arithmetic(Model):
    """Drift ``mu`` in price units per year, volatility ``sigma`` in price units per sqrt(year)."""

    stepper_class: ClassVar[type[BlockStepper]] = ArithmeticStepper
    name: ClassVar[str] = "arithmetic"
    positive: ClassVar[bool] = False

    start_price: float
    mu: float
    sigma: float

    def _check(self) -> None:
        check_range("start_price", self.start_price, -LEVEL_MAX, LEVEL_MAX)
        check_range("mu", self.mu, -LEVEL_MAX, LEVEL_MAX, unit="price units per year")
        check_range("sigma", self.sigma, 0.0, LEVEL_MAX, unit="price units per sqrt(year)")
