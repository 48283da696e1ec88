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
from ..correlation import correlate, correlate_columns
from ..seeding import make_rng
from ..steppers import BlockStepper
from .base import MU_ABS_MAX, PRICE_MAX, SIGMA_MAX, Model, PriceBand

# A basket skipping this many steps or more works on one row per asset (skip), and turns its
# shocks from step-by-step rows into those rows this many values at a time.
_COLUMN_STEPS = 1024
_TRANSPOSE_VALUES = 1 << 14


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
        acc = self._log_returns(draws)
        logs = acc if with_start else acc[1:]
        return self._band.prices(logs, out=logs)

    def skip(self, n: int) -> np.ndarray | float:
        """As BlockStepper.skip, with only the last row turned into prices; a basket's
        block is worked on transposed, one long contiguous row per asset."""
        if n < 1 or self._position == 0:
            return super().skip(n)
        if np.ndim(self._start) == 0 or n < _COLUMN_STEPS:
            last = self._log_returns(n)[-1:]
        else:
            last = self._basket_log_return(n)
        self._position += n
        return self._band.prices(last, out=last)[0]

    def _basket_log_return(self, draws: int) -> np.ndarray:
        """A basket's running log-return after ``draws`` more steps, as a row of one: the
        same draws and the same sums, in the same order, as ``_log_returns``."""
        k = len(self._start)
        columns = np.empty((k, draws + 1))  # row i: asset i's running log-return, then its steps
        columns[:, 0] = self._log_return
        steps = columns[:, 1:]
        shocks = steps if self._factor_t is None else np.empty((k, draws))
        # Drawn step by step as always, a few hundred steps at a time, each piece turned
        # into one contiguous row per asset while it is still in the cache.
        rows = max(1, _TRANSPOSE_VALUES // k)
        piece = np.empty((min(rows, draws), k))
        for first in range(0, draws, rows):
            part = piece[: min(rows, draws - first)]
            self._rng.standard_normal(out=part)
            shocks[:, first : first + len(part)] = part.T
        if self._factor_t is not None:
            correlate_columns(shocks, self._factor_t, out=steps)
        steps *= self._vol[:, None]
        steps += self._drift[:, None]
        np.add.accumulate(columns, axis=1, out=columns)  # each asset's sum, in step order
        self._log_return = columns[:, -1].copy()
        return self._log_return[None, :].copy()

    def _log_returns(self, draws: int) -> np.ndarray:
        """The running log-return, then ``draws`` more steps of it; carried on to the next block."""
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
        return acc


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
