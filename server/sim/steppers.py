"""The stepper: a model's state plus "the next block of n values".

One-shot paths, chunked streams and the live market all use the same stepper,
so a path is the same whichever way it is cut into blocks: state is carried
between blocks and every random draw is taken in the same order whatever the
block size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np


class PriceStepper(Protocol):
    """What every model's stepper offers: its position and the next block of values."""

    @property
    def position(self) -> int:
        """How many values have been handed out so far."""
        ...

    def next_block(self, n: int) -> np.ndarray:
        """The next ``n`` values of the path, as a new float64 array."""
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

    def skip(self, n: int) -> np.ndarray | float:
        """Move on by ``n`` values (at least 1) and return only the last: the state
        afterwards, and that value, are bit for bit those of ``next_block(n)``.
        The live market catches up with it; steppers override it where leaving
        the other values out saves work."""
        if n < 1:
            raise ValueError(f"skip needs at least 1 value, got {n}")
        return self.next_block(n)[-1]

    def _block(self, draws: int, with_start: bool) -> np.ndarray:
        """The next ``draws`` values, preceded by the start value when ``with_start``."""
        raise NotImplementedError


class FillStepper(BlockStepper):
    """A stepper whose steps fill an array in place, after its start value."""

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


def iter_blocks(stepper: PriceStepper, periods: int, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, values)`` blocks of at most ``block_size`` until ``periods`` values are out."""
    if block_size < 1:
        raise ValueError(f"block size must be >= 1, got {block_size}")
    while stepper.position < periods:
        offset = stepper.position
        yield offset, stepper.next_block(min(block_size, periods - offset))
