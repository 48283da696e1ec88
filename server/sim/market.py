"""The simulated market: a universe of instruments advanced together, tick by tick.

The server's live feed drives a ``Market`` from its clock, tests drive it by
calling ``tick()``; ``advance(n)`` moves it on n ticks at once, bit for bit as
n calls of ``tick()`` would, which is how a late replica catches up. The GBM
instruments share one CorrelatedGbmStepper, so their log-returns can be
correlated; every other instrument has a stepper of its own with an
independent random stream. With a seed the whole market replays exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .checks import ParameterError, listed
from .models import CorrelatedGbmStepper
from .seeding import make_rng, new_seed
from .steppers import BlockStepper
from .ticks import TickGrid
from .universe import MarketConfig


def symbol_key(symbol: str) -> int:
    """A 64-bit key of ``symbol``: the first 8 bytes of its SHA-256. It names the
    instrument's random streams (its price for non-GBM models, its book and trades)
    by symbol rather than by position in the market."""
    return int.from_bytes(hashlib.sha256(symbol.encode("utf-8")).digest()[:8], "big")


def instrument_rng(seed: int, symbol: str) -> np.random.Generator:
    """The random stream of a non-GBM instrument of the market run with ``seed``.

    A child of the market seed's SeedSequence, keyed by the symbol rather than
    by position, so adding, removing or reordering other instruments changes
    none of its draws; and independent of the GBM instruments' stream
    (``make_rng(seed)``), so adding it changes none of theirs.
    """
    return make_rng(seed, stream=symbol_key(symbol))


# How many values a stepper computes at once when the market moves many ticks in one go
# (Market.advance): the GBM basket at most 2^20 (8 MiB of float64, a few times that while a
# block is made), every other stepper 2^13, where its loop of Python floats runs fastest.
ADVANCE_BLOCK_VALUES = 1 << 20
_ADVANCE_SINGLE_VALUES = 1 << 13


def _skip(stepper: BlockStepper, count: int, block: int) -> np.ndarray | float:
    """Move ``stepper`` on by ``count`` values in blocks of at most ``block``; the last value."""
    while count > block:
        stepper.skip(block)
        count -= block
    return stepper.skip(count)


@dataclass(frozen=True)
class MarketTick:
    """Every instrument's price at one step of the market clock."""

    sequence: int  # 1 for the first tick after the start prices, then +1 per tick
    simulated_seconds: float  # trading time since the market opened
    prices: np.ndarray  # in the order of MarketConfig.instruments, rounded to each tick size


class Market:
    """The market state, advanced by ``tick()``: one correlated stepper for the
    GBM instruments, one stepper per other instrument."""

    def __init__(self, config: MarketConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = seed if seed is not None else (config.seed if config.seed is not None else new_seed())
        instruments = config.instruments
        self._gbm = np.array([n for n, i in enumerate(instruments) if i.model == "gbm"], dtype=np.intp)
        gbm_params = config.gbm_params()
        self._gbm_stepper = (
            CorrelatedGbmStepper(gbm_params, config.factor, make_rng(self.seed)) if gbm_params else None
        )
        self._others = [
            (n, model.stepper(instrument_rng(self.seed, i.symbol)))
            for n, (i, model) in enumerate(zip(instruments, config.model_params(), strict=True))
            if i.model != "gbm"
        ]
        # Published values sit on each instrument's grid, as exact decimals. Prices (gbm,
        # merton, heston) never go below one tick; arithmetic and Ornstein-Uhlenbeck values
        # (spreads, rates) may be zero or negative.
        self._grid = TickGrid(
            np.array([i.tick_size for i in instruments]), np.array([i.positive for i in instruments])
        )
        self._index = {s: n for n, s in enumerate(config.symbols)}
        self.last = MarketTick(0, 0.0, self._grid.round(self._step()))

    def _step(self) -> np.ndarray:
        """Every instrument's next unrounded value, in market order."""
        values = np.empty(len(self.config.instruments))
        if self._gbm_stepper is not None:
            values[self._gbm] = self._gbm_stepper.next_block(1)[0]
        for n, stepper in self._others:
            values[n] = stepper.next_block(1)[0]
        return values

    def tick(self) -> MarketTick:
        """Advance every instrument by one step; all subscribers see this same tick."""
        values = self._step()
        sequence = self.last.sequence + 1
        self.last = MarketTick(
            sequence, sequence * self.config.simulated_seconds_per_tick, self._grid.round(values)
        )
        return self.last

    def advance(self, ticks: int, block_values: int = ADVANCE_BLOCK_VALUES) -> MarketTick:
        """Move the market on by ``ticks`` at once: the last of them is bit for bit what
        as many ``tick()`` calls give, and the state afterwards the same, but the ticks
        between are never rounded or kept. Each stepper makes blocks of about
        ``block_values`` values at most, so the memory stays bounded however far it goes;
        a replica started long after its market's epoch catches up this way."""
        if ticks < 1:
            raise ValueError(f"advance needs at least 1 tick, got {ticks}")
        if ticks == 1:
            return self.tick()
        values = np.empty(len(self.config.instruments))
        if self._gbm_stepper is not None:
            rows = max(1, block_values // len(self._gbm))
            values[self._gbm] = _skip(self._gbm_stepper, ticks, rows)
        for n, stepper in self._others:
            values[n] = _skip(stepper, ticks, min(block_values, _ADVANCE_SINGLE_VALUES))
        sequence = self.last.sequence + ticks
        self.last = MarketTick(
            sequence, sequence * self.config.simulated_seconds_per_tick, self._grid.round(values)
        )
        return self.last

    def knows(self, symbol: str) -> bool:
        return symbol in self._index

    def index_of(self, symbols: Sequence[str]) -> list[int]:
        """Positions of ``symbols``; ParameterError listing every unknown one."""
        unknown = [s for s in symbols if s not in self._index]
        if unknown:
            raise ParameterError("symbols", f"unknown symbols: {listed(unknown)}")
        return [self._index[s] for s in symbols]

    def last_price(self, symbol: str) -> float:
        return float(self.last.prices[self.index_of([symbol])[0]])
