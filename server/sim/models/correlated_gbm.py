"""Several GBM instruments whose log-returns are correlated: a basket.

Each step draws one standard normal per asset, mixes them with a factor A of
the correlation matrix (A @ A.T == correlation) and scales each by its
asset's volatility. Blocks are (n, assets) arrays: row i holds every asset's
price at step i.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..checks import ParameterError, check_symbol, listed
from ..correlation import check_correlation
from .base import Model, nested
from .gbm import Gbm, LogNormalSteps

MAX_ASSETS = 64


@dataclass(frozen=True)
class Asset:
    """One instrument of a basket: its label in the reply and its GBM."""

    symbol: str
    model: Gbm


@dataclass(frozen=True)
class CorrelatedGbm(Model):
    """GBM instruments moving together; ``correlation`` is n x n row by row, empty
    for independent assets. Symbols may be empty but not repeated."""

    name: ClassVar[str] = "correlated_gbm"
    single_instrument: ClassVar[bool] = False

    assets: tuple[Asset, ...]
    correlation: tuple[float, ...] = ()
    factor: np.ndarray | None = field(init=False, repr=False, compare=False)  # of the correlation

    @classmethod
    def from_values(cls, values: Mapping[str, Any], delta: float, trading_days_per_year: float) -> Model:
        """A basket from its assets as mappings (symbol, start_price, mu, sigma) and its
        correlation; an asset's error is named by its place, e.g. ``assets[1].sigma``.
        The counts are checked before any entry is read, so a request of millions of
        assets costs no more than one of 65."""
        given = values.get("assets", ())
        _check_count(len(given))
        assets = []
        for i in range(len(given)):
            asset = given[i]
            try:
                check_symbol(asset.get("symbol", ""))
                gbm = Gbm(
                    asset.get("start_price", 0.0),
                    asset.get("mu", 0.0),
                    asset.get("sigma", 0.0),
                    delta=delta,
                    trading_days_per_year=trading_days_per_year,
                )
            except ParameterError as err:
                raise nested(err, f"assets[{i}]") from None
            assets.append(Asset(asset.get("symbol", ""), gbm))
        return cls(
            tuple(assets),
            values.get("correlation", ()),
            delta=delta,
            trading_days_per_year=trading_days_per_year,
        )

    def _check(self) -> None:
        n = len(self.assets)
        _check_count(n)
        named = [a.symbol for a in self.assets if a.symbol]
        repeated = sorted(s for s, n in collections.Counter(named).items() if n > 1)
        if repeated:
            raise ParameterError("assets", f"assets' symbols must be unique; repeated: {listed(repeated)}")
        factor = None
        if len(self.correlation):
            if len(self.correlation) != n * n:
                raise ParameterError(
                    "correlation",
                    f"correlation must hold n x n = {n * n} numbers (row by row, n = {n} assets), "
                    f"got {len(self.correlation)}",
                )
            names = [a.symbol or f"#{i}" for i, a in enumerate(self.assets)]
            factor = check_correlation(np.array(self.correlation).reshape(n, n), names)
        object.__setattr__(self, "correlation", tuple(self.correlation))  # any sequence, checked first
        object.__setattr__(self, "factor", factor)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The assets' symbols, one per column of the values."""
        return tuple(a.symbol for a in self.assets)

    @property
    def step_scale(self) -> np.ndarray:
        """Each asset's log-return standard deviation over one period."""
        return np.array([a.model.log_volatility for a in self.assets])

    def stepper(self, rng: np.random.Generator) -> CorrelatedGbmStepper:
        return CorrelatedGbmStepper([a.model for a in self.assets], self.factor, rng)


def _check_count(n: int) -> None:
    if not 1 <= n <= MAX_ASSETS:
        raise ParameterError("assets", f"assets must hold 1 to {MAX_ASSETS} instruments, got {n}")


class CorrelatedGbmStepper(LogNormalSteps):
    """Several GBM instruments stepped together, their log-returns mixed by ``factor``
    (None: independent). Row 0 of the first block holds the start prices; as for
    GbmStepper, any split into blocks gives bit-identical prices. The live market
    steps its GBM instruments with one of these.
    """

    def __init__(self, models: Sequence[Gbm], factor: np.ndarray | None, rng: np.random.Generator) -> None:
        super().__init__(
            np.array([m.start_price for m in models]),
            np.array([m.log_drift for m in models]),
            np.array([m.log_volatility for m in models]),
            factor,
            rng,
        )
