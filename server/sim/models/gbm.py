"""Geometric Brownian motion: exact steps in log space.

One period lasts ``t`` years; the log-return over a period is normal with
mean ``(mu - sigma**2 / 2) * t`` and standard deviation ``sigma * sqrt(t)``,
and S_i = S_0 * exp(sum of i log-returns), so prices never go below zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..checks import check_range
from ..correlation import correlate
from ..seeding import make_rng
from ..steppers import BlockStepper
from .base import MU_ABS_MAX, PRICE_MAX, SIGMA_MAX, Model, PriceBand


class LogNormalSteps(BlockStepper):
    """Exact log-space GBM for one instrument (scalar parameters) or several
    (vectors, optionally correlated by ``factor``). The running log-return is
    carried between blocks and accumulated strictly in step order, so any split
    of the path into blocks gives bit-identical prices. Prices stay inside the band of
    ``PriceBand``; the running log-return itself is never clamped.
    """

    def __init__(self, start, drift, vol, factor: np.ndarray | None, rng: np.random.Generator) -> None:
        self._start, self._drift, self._vol = start, drift, vol
        self._band = PriceBand(start)
        self._factor_t = None if factor is None else np.ascontiguousarray(np.asarray(factor).T)
        self._rng = rng
        self._log_return = np.zeros(np.shape(start))

    def _block(self, draws: int, with_start: bool) -> np.ndarray:
        # acc[0] holds the running log-return, acc[1:] the new increments; an
        # in-place cumulative sum then continues the path exactly where the
        # previous block stopped.
        acc = np.empty((draws + 1, *np.shape(self._start)))
        acc[0] = self._log_return
        increments = acc[1:]
        self._rng.standard_normal(out=increments)  # row by row: one step's shocks together
        if self._factor_t is not None:
            increments[...] = correlate(increments, self._factor_t)
        increments *= self._vol
        increments += self._drift
        np.add.accumulate(acc, axis=0, out=acc)
        self._log_return = acc[-1].copy()
        logs = acc if with_start else acc[1:]
        return self._band.prices(logs, out=logs)


class GbmStepper(LogNormalSteps):
    """One GBM path; the first price handed out is ``start_price`` itself."""

    def __init__(self, model: Gbm, rng: np.random.Generator) -> None:
        super().__init__(model.start_price, model.log_drift, model.log_volatility, None, rng)
        self.model = model


@dataclass(frozen=True)
class Gbm(Model):
    """GBM with annualised drift ``mu`` and volatility ``sigma``."""

    stepper_class: ClassVar[type[BlockStepper]] = GbmStepper
    name: ClassVar[str] = "gbm"

    start_price: float
    mu: float
    sigma: float

    def _check(self) -> None:
        check_range("start_price", self.start_price, 0.0, PRICE_MAX, low_open=True)
        check_range("mu", self.mu, -MU_ABS_MAX, MU_ABS_MAX, unit="per year")
        check_range("sigma", self.sigma, 0.0, SIGMA_MAX, unit="per sqrt(year)")

    @property
    def log_drift(self) -> float:
        """Mean of the log-return over one period."""
        return (self.mu - 0.5 * self.sigma**2) * self.years

    @property
    def log_volatility(self) -> float:
        """Standard deviation of the log-return over one period."""
        return self.sigma * math.sqrt(self.years)


def gbm_path(model: Gbm, periods: int, seed: int) -> np.ndarray:
    """A whole GBM path of ``periods`` prices."""
    return GbmStepper(model, make_rng(seed)).next_block(periods)
