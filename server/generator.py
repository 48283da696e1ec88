"""Price generators: pure numpy, no gRPC.

Every model is a *stepper*: it holds its state and hands out the next block of
n prices on request. One-shot paths, chunked streams and a live market all use
the same stepper, so a path is the same whichever way it is cut into blocks.

Randomness comes only from a ``numpy.random.Generator`` seeded through
``numpy.random.SeedSequence``; global random state is never touched. With the
same seed, parameters and numpy version, a path replays bit for bit.
"""

from __future__ import annotations

import math
import os
import random
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

DEFAULT_TRADING_DAYS_PER_YEAR = 252.0

# Accepted ranges of the GBM parameters. They are wide enough for any market
# (a volatility of 10 is 1000% a year) and narrow enough that every derived
# quantity stays a finite float64.
START_PRICE_MAX = 1e12
MU_ABS_MAX = 10.0
SIGMA_MAX = 10.0
DELTA_MAX = 10_000.0
TRADING_DAYS_MIN = 1.0
TRADING_DAYS_MAX = 1e6


class ParameterError(ValueError):
    """A parameter outside its accepted range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def under(self, path: str) -> ParameterError:
        """The same error for a field nested at ``path`` of a request, e.g. ``merton.sigma``."""
        return ParameterError(f"{path}.{self.field}", f"{path}.{self}")


def check_range(
    field: str,
    value: float,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    unit: str = "",
) -> None:
    """Raise ParameterError unless ``value`` is finite and within [low, high] (or (low, high])."""
    bracket = "(" if low_open else "["
    accepted = f"{bracket}{low:g}, {high:g}]{(' ' + unit) if unit else ''}"
    if not math.isfinite(value):
        raise ParameterError(field, f"{field} must be a finite number in {accepted}, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        raise ParameterError(field, f"{field} must be in {accepted}, got {value!r}")


def years_per_period(delta: float, trading_days_per_year: float) -> float:
    """One period's length in years, after checking both parts (every model has them)."""
    check_range("delta", delta, 0.0, DELTA_MAX, low_open=True, unit="trading days")
    check_range("trading_days_per_year", trading_days_per_year, TRADING_DAYS_MIN, TRADING_DAYS_MAX)
    return delta / trading_days_per_year


@dataclass(frozen=True)
class GbmParams:
    """Geometric Brownian motion with annualised drift and volatility.

    One period lasts ``delta`` trading days, that is
    ``t = delta / trading_days_per_year`` years; the log-return over a period
    is normal with mean ``(mu - sigma**2 / 2) * t`` and standard deviation
    ``sigma * sqrt(t)``.
    """

    start_price: float
    mu: float
    sigma: float
    delta: float = 1.0
    trading_days_per_year: float = DEFAULT_TRADING_DAYS_PER_YEAR

    def __post_init__(self) -> None:
        check_range("start_price", self.start_price, 0.0, START_PRICE_MAX, low_open=True)
        check_range("mu", self.mu, -MU_ABS_MAX, MU_ABS_MAX, unit="per year")
        check_range("sigma", self.sigma, 0.0, SIGMA_MAX, unit="per sqrt(year)")
        years_per_period(self.delta, self.trading_days_per_year)

    @property
    def years_per_period(self) -> float:
        return self.delta / self.trading_days_per_year

    @property
    def log_drift(self) -> float:
        """Mean of the log-return over one period."""
        return (self.mu - 0.5 * self.sigma**2) * self.years_per_period

    @property
    def log_volatility(self) -> float:
        """Standard deviation of the log-return over one period."""
        return self.sigma * math.sqrt(self.years_per_period)


_SEEDS = random.Random(secrets.randbits(128))
# A forked worker must not draw the same seeds as its siblings.
os.register_at_fork(after_in_child=lambda: _SEEDS.seed(secrets.randbits(128)))


def new_seed() -> int:
    """A fresh 64-bit seed (from a generator seeded by the OS, cheaper than a syscall per call)."""
    return _SEEDS.getrandbits(64)


def make_rng(seed: int, stream: int | None = None) -> np.random.Generator:
    """The project's random stream for ``seed``: PCG64 seeded via SeedSequence.

    ``stream`` picks an independent child stream of the same seed (the
    SeedSequence spawn key), for draws that must not disturb the main one.
    """
    if not 0 <= seed < 2**64:
        raise ParameterError("seed", f"seed must be in [0, 2^64 - 1], got {seed!r}")
    keys = () if stream is None else (stream,)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=keys)))


class PriceStepper(Protocol):
    """What every model offers: its position and the next block of prices."""

    @property
    def position(self) -> int:
        """How many prices have been handed out so far."""
        ...

    def next_block(self, n: int) -> np.ndarray:
        """The next ``n`` prices of the path, as a new float64 array."""
        ...


class BlockStepper:
    """What every stepper shares: its position, the start value as the first
    value of the path, and the check on block sizes. Subclasses make blocks."""

    _position = 0

    @property
    def position(self) -> int:
        return self._position

    def next_block(self, n: int) -> np.ndarray:
        if n < 0:
            raise ValueError(f"block size must be >= 0, got {n}")
        with_start = self._position == 0 and n > 0
        block = self._block(n - with_start, with_start)
        self._position += n
        return block

    def _block(self, draws: int, with_start: bool) -> np.ndarray:
        """The next ``draws`` values, preceded by the start value when ``with_start``."""
        raise NotImplementedError


class _LogNormalSteps(BlockStepper):
    """Exact log-space GBM for one instrument (scalar parameters) or several
    (vectors, optionally correlated by ``factor``): S_i = S_0 * exp(sum of i
    normal log-returns). The running log-return is carried between blocks and
    accumulated strictly in step order, so any split of the path into blocks
    gives bit-identical prices.
    """

    def __init__(self, start, drift, vol, factor: np.ndarray | None, rng: np.random.Generator) -> None:
        self._start, self._drift, self._vol = start, drift, vol
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
            increments[...] = _correlate(increments, self._factor_t)
        increments *= self._vol
        increments += self._drift
        np.add.accumulate(acc, axis=0, out=acc)
        self._log_return = acc[-1].copy()
        logs = acc if with_start else acc[1:]
        prices = np.exp(logs, out=logs)
        prices *= self._start
        return prices


def _correlate(shocks: np.ndarray, factor_t: np.ndarray) -> np.ndarray:
    """``shocks @ factor_t``, every row summed in one fixed order (j ascending).

    A BLAS matrix product picks its kernel by shape, and kernels round
    differently: with OpenBLAS on an AVX2 machine a one-row block differed
    from the same row inside a larger block in the last bit, so a stream of
    chunk_size 1 was not the unary path. Separate multiplies and adds give
    every row the same bits whatever the number of rows. The two loops below
    compute the same sums in the same order; each is the faster one for its
    width (numpy's per-call cost against its short inner loops).
    """
    n, k = shocks.shape
    out = np.empty_like(shocks)
    if k <= 8:  # one column at a time: long strided loops
        term = np.empty(n)
        for i in range(k):
            column = out[:, i]
            np.multiply(shocks[:, 0], factor_t[0, i], out=column)
            for j in range(1, k):
                np.multiply(shocks[:, j], factor_t[j, i], out=term)
                column += term
        return out
    np.multiply(shocks[:, :1], factor_t[0], out=out)  # one input column at a time, all outputs
    term = np.empty_like(out)
    for j in range(1, k):
        np.multiply(shocks[:, j : j + 1], factor_t[j], out=term)
        out += term
    return out


class GbmStepper(_LogNormalSteps):
    """One GBM path; the first price handed out is ``start_price`` itself."""

    def __init__(self, params: GbmParams, rng: np.random.Generator) -> None:
        super().__init__(params.start_price, params.log_drift, params.log_volatility, None, rng)
        self._params = params

    @property
    def params(self) -> GbmParams:
        return self._params


def gbm_path(params: GbmParams, periods: int, seed: int) -> np.ndarray:
    """A whole GBM path of ``periods`` prices."""
    return GbmStepper(params, make_rng(seed)).next_block(periods)


def iter_blocks(stepper: PriceStepper, periods: int, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, prices)`` blocks of at most ``block_size`` until ``periods`` prices are out."""
    if block_size < 1:
        raise ValueError(f"block size must be >= 1, got {block_size}")
    while stepper.position < periods:
        offset = stepper.position
        yield offset, stepper.next_block(min(block_size, periods - offset))


def check_correlation(matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Validate a correlation matrix; return a factor A with A @ A.T == matrix.

    It must be square over ``names``, finite, symmetric, with a unit diagonal
    and entries in [-1, 1], and positive semi-definite. A singular matrix (two
    instruments perfectly correlated) is accepted: the factor comes from an
    eigendecomposition, not a Cholesky one.
    """
    k = len(names)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (k, k):
        raise ParameterError(
            "correlation", f"correlation must be {k}x{k} (one row per symbol), got shape {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ParameterError("correlation", "correlation entries must be finite numbers in [-1, 1]")
    if not np.allclose(matrix, matrix.T, rtol=0, atol=1e-12):
        i, j = np.unravel_index(np.argmax(np.abs(matrix - matrix.T)), matrix.shape)
        raise ParameterError(
            "correlation",
            f"correlation must be symmetric: [{names[i]}][{names[j]}] != [{names[j]}][{names[i]}]",
        )
    if not np.allclose(np.diag(matrix), 1.0, rtol=0, atol=1e-12):
        i = int(np.argmax(np.abs(np.diag(matrix) - 1.0)))
        raise ParameterError(
            "correlation", f"correlation diagonal must be 1: [{names[i]}][{names[i]}] = {matrix[i, i]}"
        )
    if np.abs(matrix).max() > 1.0:
        raise ParameterError("correlation", "correlation entries must be in [-1, 1]")
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    if eigenvalues.min() < -1e-10:
        raise ParameterError(
            "correlation",
            f"correlation must be positive semi-definite; its smallest eigenvalue is {eigenvalues.min():.3g}",
        )
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


@dataclass(frozen=True, eq=False)
class CorrelatedGbmParams:
    """Several GBM instruments and the factor of their correlation (None: independent)."""

    assets: tuple[GbmParams, ...]
    factor: np.ndarray | None


class CorrelatedGbmStepper(_LogNormalSteps):
    """Several GBM instruments stepped together, their log-returns correlated.

    ``next_block(n)`` gives an (n, k) array: row i holds every instrument's
    price at step i, row 0 of the first block the start prices. As for
    GbmStepper, any split into blocks gives bit-identical prices.
    """

    def __init__(
        self, params: Sequence[GbmParams], factor: np.ndarray | None, rng: np.random.Generator
    ) -> None:
        super().__init__(
            np.array([p.start_price for p in params]),
            np.array([p.log_drift for p in params]),
            np.array([p.log_volatility for p in params]),
            factor,
            rng,
        )
