"""The volume model of bars: bigger moves trade more.

Each fine period trades a Poisson number of units with mean
``volume_rate * period_seconds * (1 + |z|)``, where z is the period's move in
standard deviations (at most MOVE_CAP); a bar's volume is the sum over its
periods. Volumes draw from their own random stream, so asking for bars never
changes the prices.
"""

from __future__ import annotations

import numpy as np

from .checks import ParameterError, check_range, quoted
from .time_axis import NS

# Moves count for volume up to this many standard deviations (a bound keeps volumes finite).
MOVE_CAP = 50.0
DEFAULT_VOLUME_RATE = 10.0
VOLUME_RATE_MAX = 1e9
# Expected units in one bar at most, so volumes stay far inside 64-bit integers.
VOLUME_MEAN_MAX = 1e15


def check_volume_rate(volume_rate: float, bar_ns: int | None) -> None:
    """The rate's range, and, for bars of ``bar_ns`` (the interval plus one period), a
    bar's expected volume at the largest move factor within VOLUME_MEAN_MAX."""
    check_range("volume_rate", volume_rate, 0.0, VOLUME_RATE_MAX, unit="units per second")
    if bar_ns is None:
        return
    most = VOLUME_MEAN_MAX / (bar_ns / NS * (1 + MOVE_CAP))
    if volume_rate > most:
        raise ParameterError(
            "volume_rate",
            f"volume_rate must be in [0, {most:.6g}] units per second for this period and bar_interval "
            f"(a bar may expect at most {VOLUME_MEAN_MAX:g} units), got {quoted(volume_rate)}",
        )


def step_volumes(
    log_returns: np.ndarray, step_sd: float, step_seconds: float, volume_rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Units traded in each fine step (see the module docstring)."""
    if step_sd > 0:
        # A move beyond MOVE_CAP sds (or not a number, after a price reached 0) counts as MOVE_CAP.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = np.fmin(np.abs(log_returns) / step_sd, MOVE_CAP)
    else:
        z = np.zeros(len(log_returns))
    return rng.poisson(volume_rate * step_seconds * (1.0 + z))
