"""Heston stochastic volatility, full-truncation Euler scheme.

The variance process may dip below zero between steps, but only its positive
part ever drives prices or its own drift and diffusion, so the variance used
is never negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..checks import check_range
from ..steppers import BlockStepper, FillStepper
from .base import MU_ABS_MAX, PRICE_MAX, Model, PriceBand


class HestonStepper(FillStepper):
    def __init__(self, model: Heston, rng: np.random.Generator) -> None:
        super().__init__(model.start_price)
        self._t = model.years
        self._model = model
        self._rng = rng
        self._log_price = math.log(model.start_price)
        self._band = PriceBand()  # of log-prices: a start of 1
        self.variance = model.v0

    def _fill(self, out: np.ndarray) -> None:
        m, t = self._model, self._t
        sqrt_t = math.sqrt(t)
        shocks = self._rng.standard_normal((len(out), 2))  # row i: step i's two shocks, in order
        z_price = shocks[:, 0]
        z_var = m.rho * shocks[:, 0] + math.sqrt(1 - m.rho**2) * shocks[:, 1]
        # Neither recursion overflows for accepted parameters: below zero the variance only
        # climbs, by kappa theta t a step; above zero a step gives v (1 - kappa t) + kappa theta t
        # + xi sqrt(v t) z, which mean reversion pulls back (past zero when kappa t > 1, to climb
        # again) and whose noise grows with sqrt(v) only. At the widest corner (kappa t = 1e7,
        # theta = 100) |v| stays near 1e16, and the log-price moves by about v t / 2 a step.
        # Only exp can leave float64; PriceBand keeps the prices inside the band.
        used = self._variances(z_var.tolist(), t, sqrt_t)
        # The log-price's steps need only the variance used at each step, so they are
        # computed together and summed in step order: the same operations, in the same
        # order, as one step at a time (numpy rounds each like Python's floats do).
        steps = np.empty(len(out) + 1)
        steps[0] = self._log_price
        vp = np.array(used)
        np.add((m.mu - vp / 2) * t, np.sqrt(vp) * sqrt_t * z_price, out=steps[1:])
        np.add.accumulate(steps, out=steps)
        self._log_price = float(steps[-1])
        self._band.prices(steps[1:], out=out)

    def _variances(self, z_var: list[float], t: float, sqrt_t: float) -> list[float]:
        """The variance used at each step (its positive part), moving ``self.variance``
        on: each step depends on the last, so this is the one loop, kept lean."""
        m = self._model
        kappa, theta, xi, sqrt = m.kappa, m.theta, m.xi, math.sqrt
        v = self.variance
        used = []
        keep = used.append
        for z in z_var:
            vp = v if v > 0.0 else 0.0
            keep(vp)
            v += kappa * (theta - vp) * t + xi * sqrt(vp) * sqrt_t * z
        self.variance = v
        return used


@dataclass(frozen=True)
class Heston(Model):
    """Variance starts at ``v0`` and reverts to ``theta`` at speed ``kappa``, with
    volatility ``xi``; ``rho`` correlates the price and variance shocks."""

    stepper_class: ClassVar[type[BlockStepper]] = HestonStepper
    name: ClassVar[str] = "heston"

    start_price: float
    mu: float
    v0: float
    kappa: float
    theta: float
    xi: float
    rho: float

    def _check(self) -> None:
        check_range("start_price", self.start_price, 0.0, PRICE_MAX, low_open=True)
        check_range("mu", self.mu, -MU_ABS_MAX, MU_ABS_MAX, unit="per year")
        check_range("v0", self.v0, 0.0, 100.0)
        check_range("kappa", self.kappa, 0.0, 1e3)
        check_range("theta", self.theta, 0.0, 100.0)
        check_range("xi", self.xi, 0.0, 100.0)
        check_range("rho", self.rho, -1.0, 1.0)

    @property
    def step_scale(self) -> float:
        """The long-run variance's log-return standard deviation over one period."""
        return math.sqrt(self.theta * self.years)

    @property
    def summary(self) -> tuple[float, float, float]:
        """The volatility shown is the starting one, sqrt(v0)."""
        return self.start_price, self.mu, math.sqrt(self.v0)
