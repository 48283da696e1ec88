"""Catching up: a market moved on many ticks at once is bit for bit the market ticked one
tick at a time, whatever the split into calls and blocks (what lets a replica started
long after its epoch agree with one that ran all along)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from server.sim import models
from server.sim.correlation import check_correlation, correlate
from server.sim.market import Market
from server.sim.models import CorrelatedGbmStepper, Gbm
from server.sim.seeding import make_rng
from server.sim.universe import Instrument, MarketConfig

DELTA = 1 / 2340  # ten trading seconds a step


def _sectors(assets: int, size: int, rho: float) -> np.ndarray:
    """A correlation matrix of sectors of ``size`` assets (then uncorrelated ones): its
    factor has many exact zeros, which the wide sums skip."""
    matrix = np.eye(assets)
    for first in range(0, assets - size + 1, size):
        matrix[first : first + size, first : first + size] = rho
    np.fill_diagonal(matrix, 1.0)
    return matrix


def _basket(assets: int, seed: int) -> CorrelatedGbmStepper:
    rng = np.random.default_rng(assets)
    params = [Gbm(100.0, 0.05, s, delta=DELTA) for s in rng.uniform(0.1, 0.5, assets)]
    factor = check_correlation(_sectors(assets, 4, 0.6), [str(i) for i in range(assets)])
    return CorrelatedGbmStepper(params, factor, make_rng(seed))


STEPPERS = {
    "gbm": lambda: models.Gbm(70.0, 0.05, 0.3, delta=DELTA).stepper(make_rng(1)),
    "arithmetic": lambda: models.Arithmetic(0.3, 0.1, 2.0, delta=DELTA).stepper(make_rng(2)),
    "merton": lambda: models.Merton(40.0, 0.03, 0.25, 20.0, -0.02, 0.05, delta=DELTA).stepper(make_rng(3)),
    "heston": lambda: models.Heston(60.0, 0.04, 0.09, 2.0, 0.04, 0.5, -0.7, delta=DELTA).stepper(make_rng(4)),
    "ornstein_uhlenbeck": lambda: models.OrnsteinUhlenbeck(0.5, -0.25, 12.6, 0.8, delta=DELTA).stepper(
        make_rng(5)
    ),
    "narrow basket": lambda: _basket(3, 6),
    "wide basket": lambda: _basket(12, 7),
}


@pytest.mark.parametrize("name", STEPPERS)
def test_skipping_gives_the_last_value_of_the_same_block_and_the_same_state(name):
    skipping, stepping = STEPPERS[name](), STEPPERS[name]()
    for n in (1, 5, 1100, 3000, 2):  # from the start value on; short and long skips
        assert np.asarray(skipping.skip(n)).tobytes() == stepping.next_block(n)[-1].tobytes()
    assert skipping.position == stepping.position == 4108
    assert skipping.next_block(50).tobytes() == stepping.next_block(50).tobytes()


def test_a_wide_basket_gives_the_same_rows_in_a_long_block_as_one_at_a_time():
    # Blocks of thousands of rows are summed another way (long rows, zero terms skipped);
    # every row must still have the bits it has alone.
    whole = _basket(12, 9).next_block(5000)
    stepper = _basket(12, 9)
    pieces = [stepper.next_block(1) for _ in range(50)] + [stepper.next_block(4950)]
    assert np.concatenate(pieces).tobytes() == whole.tobytes()
    # The skipped zero terms change at most the sign of a zero sum, never a value.
    rng = np.random.default_rng(3)
    shocks = rng.standard_normal((4096, 12))
    factor_t = check_correlation(_sectors(12, 4, 0.6), [str(i) for i in range(12)]).T.copy()
    assert (factor_t == 0).sum() > 12, "the test needs a factor with zeros"
    rows = np.concatenate([correlate(shocks[i : i + 1], factor_t) for i in range(len(shocks))])
    np.testing.assert_array_equal(correlate(shocks, factor_t), rows)


def test_heston_steps_are_the_step_by_step_recursion():
    # The log-price's steps are computed together once the variances are known; the
    # result must be the one-step-at-a-time recursion, bit for bit.
    model = models.Heston(60.0, 0.04, 0.09, 3.0, 0.04, 0.9, -0.7, delta=1.0)
    got = model.stepper(make_rng(12)).next_block(2001)[1:]
    shocks = make_rng(12).standard_normal((2000, 2))
    z_var = model.rho * shocks[:, 0] + math.sqrt(1 - model.rho**2) * shocks[:, 1]
    t = model.years
    log_price, v, expected, truncated = math.log(model.start_price), model.v0, [], 0
    for i in range(2000):
        vp = v if v > 0.0 else 0.0
        truncated += vp == 0.0
        root = math.sqrt(vp)
        log_price += (model.mu - vp / 2) * t + root * math.sqrt(t) * shocks[i, 0]
        v += model.kappa * (model.theta - vp) * t + model.xi * root * math.sqrt(t) * z_var[i]
        expected.append(log_price)
    assert truncated, "the variance should dip below zero on this path"
    assert got.tobytes() == np.exp(np.array(expected)).tobytes()  # a start of 1 in the price band


def _every_model_market() -> MarketConfig:
    gbm = [Instrument(f"G{n:02d}", 50.0 + n, 0.05, 0.1 + 0.03 * n) for n in range(10)]
    others = [
        Instrument.of_model(
            "JUMP",
            "merton",
            dict(
                start_price=40.0, mu=0.03, sigma=0.25, jump_intensity=20.0, jump_mean=-0.02, jump_stdev=0.05
            ),
        ),
        Instrument.of_model(
            "VOL",
            "heston",
            dict(start_price=60.0, mu=0.04, v0=0.09, kappa=2.0, theta=0.04, xi=0.5, rho=-0.7),
            tick_size=0.05,
        ),
        Instrument.of_model("RATE", "ornstein_uhlenbeck", dict(start=0.5, mean=-0.25, kappa=12.6, sigma=0.8)),
        Instrument.of_model("SPREAD", "arithmetic", dict(start_price=0.3, sigma=2.0), tick_size=0.001),
    ]
    correlation = np.eye(14)
    correlation[:10, :10] = _sectors(10, 4, 0.7)
    correlation[8, 9] = correlation[9, 8] = 0.3  # and a pair outside the sectors
    return MarketConfig(tuple(gbm + others), correlation, seed=21, simulated_seconds_per_tick=60.0)


TICKS = 3000


@pytest.fixture(scope="module")
def ticked() -> tuple[Market, np.ndarray]:
    """The market ticked TICKS times one tick at a time, and its next values before rounding."""
    market = Market(_every_model_market())
    for _ in range(TICKS):
        market.tick()
    return market, market._step()


@pytest.mark.parametrize(
    ("splits", "block_values"),
    [
        ([TICKS], 1 << 20),  # one call, one block each
        ([1, 2, 1000, 1997], 1 << 20),  # calls of every size
        ([TICKS], 500),  # many blocks: 50 rows of the basket, 500 values of the others
        ([1100, 1900], 77),  # blocks that divide nothing evenly
    ],
)
def test_advancing_many_ticks_at_once_is_ticking_one_at_a_time(ticked, splits, block_values):
    reference, next_values = ticked
    advanced = Market(_every_model_market())
    for ticks in splits:
        advanced.advance(ticks, block_values=block_values)
    assert advanced.last.sequence == reference.last.sequence == TICKS
    assert advanced.last.simulated_seconds == reference.last.simulated_seconds
    assert advanced.last.prices.tobytes() == reference.last.prices.tobytes()
    # The states agree too: the next values, before any rounding, are the same bits.
    assert advanced._step().tobytes() == next_values.tobytes()


def test_advance_needs_at_least_one_tick():
    with pytest.raises(ValueError, match="at least 1 tick"):
        Market(_every_model_market()).advance(0)
