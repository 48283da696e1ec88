"""Random streams: every draw comes from a PCG64 generator seeded through
``numpy.random.SeedSequence``; global random state is never touched.

A seed gives one main stream (the prices) and independent child streams picked
by a spawn key, for draws that must not disturb it: the volume model of bars,
and each non-GBM instrument of the live market (``market.instrument_rng``).
"""

from __future__ import annotations

import secrets

import numpy as np

from .checks import ParameterError, quoted

# Volumes of bars draw from this child stream of a path's seed, so asking for
# bars never changes the prices (Merton's own children use keys 0 to 2).
VOLUME_STREAM = 1000


def new_seed() -> int:
    """A fresh 64-bit seed from the operating system's secure source.

    Not from a fast generator seeded once: every path without a seed returns the
    one drawn for it, and 312 of those let anyone rebuild a Mersenne Twister's
    state, so predict the next seed drawn, the live market's included.
    """
    return secrets.randbits(64)


def make_rng(seed: int, stream: int | None = None) -> np.random.Generator:
    """The project's random stream for ``seed``: PCG64 seeded via SeedSequence.

    ``stream`` picks an independent child stream of the same seed (the
    SeedSequence spawn key), for draws that must not disturb the main one.
    """
    if not 0 <= seed < 2**64:
        raise ParameterError("seed", f"seed must be in [0, 2^64 - 1], got {quoted(seed)}")
    keys = () if stream is None else (stream,)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=keys)))
