"""Merton jump-diffusion: GBM plus compound-Poisson jumps with normal log sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..checks import check_range
from ..steppers import BlockStepper, FillStepper
from .base import MU_ABS_MAX, PRICE_MAX, SIGMA_MAX, Model, PriceBand


class MertonStepper(FillStepper):
    def __init__(self, model: Merton, rng: np.random.Generator) -> None:
        super().__init__(model.start_price)
        t, m = model.years, model
        self._drift = (m.mu - m.sigma**2 / 2 - m.jump_intensity * m.jump_compensator) * t
        self._vol = m.sigma * math.sqrt(t)
        self._rate = m.jump_intensity * t
        self._model = m
        self._band = PriceBand(m.start_price)
        # One child stream each for diffusion, jump counts and jump sizes, so
        # every stream is read in step order whatever the block size.
        self._diffusion, self._counts, self._sizes = rng.spawn(3)
        self._log_return = 0.0

    def _fill(self, out: np.ndarray) -> None:
        n, m = len(out), self._model
        diffusion = self._diffusion.standard_normal(n)
        counts = self._counts.poisson(self._rate, n)
        sizes = self._sizes.standard_normal(n)
        steps = (
            self._drift
            + self._vol * diffusion
            + m.jump_mean * counts
            + m.jump_stdev * np.sqrt(counts) * sizes
        )
        acc = np.concatenate(([self._log_return], steps))
        np.add.accumulate(acc, out=acc)
        self._log_return = float(acc[-1])
        self._band.prices(acc[1:], out=out)


@dataclass(frozen=True)
class Merton(Model):
    """``mu`` is the total expected return per year, jumps included; ``sigma`` the
    diffusion's volatility; jumps arrive ``jump_intensity`` times a year on average,
    each multiplying the price by e^Y with Y ~ N(jump_mean, jump_stdev^2)."""

    stepper_class: ClassVar[type[BlockStepper]] = MertonStepper
    name: ClassVar[str] = "merton"

    start_price: float
    mu: float
    sigma: float
    jump_intensity: float
    jump_mean: float
    jump_stdev: float

    def _check(self) -> None:
        check_range("start_price", self.start_price, 0.0, PRICE_MAX, low_open=True)
        check_range("mu", self.mu, -MU_ABS_MAX, MU_ABS_MAX, unit="per year")
        check_range("sigma", self.sigma, 0.0, SIGMA_MAX, unit="per sqrt(year)")
        check_range("jump_intensity", self.jump_intensity, 0.0, 1e4, unit="jumps per year")
        check_range("jump_mean", self.jump_mean, -5.0, 5.0)
        check_range("jump_stdev", self.jump_stdev, 0.0, 5.0)

    @property
    def jump_compensator(self) -> float:
        """k = E[e^Y] - 1: the drift correction that keeps mu the total expected return."""
        return math.exp(self.jump_mean + self.jump_stdev**2 / 2) - 1
