"""Moments of the additional models against their closed forms (seeded; 5 standard errors)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from server.sim.checks import ParameterError
from server.sim.models import (
    Arithmetic,
    ArithmeticStepper,
    CorrelatedGbm,
    Heston,
    HestonStepper,
    Merton,
    MertonStepper,
    OrnsteinUhlenbeck,
    OrnsteinUhlenbeckStepper,
)
from server.sim.seeding import make_rng

T = 1 / 252


def _within(sample: np.ndarray, mean: float, variance: float) -> None:
    """Sample mean and variance within 5 standard errors (the variance's from the sample's 4th moment)."""
    n = len(sample)
    assert abs(sample.mean() - mean) < 5 * math.sqrt(variance / n), (sample.mean(), mean)
    centred = sample - sample.mean()
    se_var = math.sqrt(max(np.mean(centred**4) - sample.var() ** 2, 0.0) / n)
    assert abs(sample.var() - variance) < 5 * se_var, (sample.var(), variance)


def test_arithmetic_increments():
    params = Arithmetic(start_price=10.0, mu=2.0, sigma=3.0)
    path = ArithmeticStepper(params, make_rng(1)).next_block(400_001)
    assert path[0] == 10.0
    _within(np.diff(path), 2.0 * T, 9.0 * T)


def test_arithmetic_paths_can_go_below_zero():
    path = ArithmeticStepper(Arithmetic(1.0, 0.0, 50.0), make_rng(2)).next_block(1000)
    assert path.min() < 0


def test_merton_log_returns_carry_the_jump_moments():
    p = Merton(start_price=50.0, mu=0.08, sigma=0.2, jump_intensity=25.0, jump_mean=-0.03, jump_stdev=0.05)
    path = MertonStepper(p, make_rng(3)).next_block(400_001)
    assert path[0] == 50.0 and (path > 0).all()
    lam = p.jump_intensity * T
    mean = (p.mu - p.sigma**2 / 2 - p.jump_intensity * p.jump_compensator) * T + lam * p.jump_mean
    variance = p.sigma**2 * T + lam * (p.jump_stdev**2 + p.jump_mean**2)
    _within(np.diff(np.log(path)), mean, variance)


def test_merton_without_jumps_is_gbm():
    p = Merton(50.0, 0.05, 0.3, 0.0, 0.0, 0.0)
    r = np.diff(np.log(MertonStepper(p, make_rng(4)).next_block(200_001)))
    _within(r, (0.05 - 0.045) * T, 0.09 * T)


def test_heston_variance_mean_reverts_as_the_closed_form_says():
    p = Heston(start_price=100.0, mu=0.05, v0=0.09, kappa=2.0, theta=0.04, xi=0.3, rho=-0.7)
    rng = make_rng(5)
    finals, prices = [], []
    for _ in range(2000):
        stepper = HestonStepper(p, rng)
        path = stepper.next_block(253)  # one year of daily steps
        finals.append(stepper.variance)
        prices.append(path[-1])
    finals = np.array(finals)
    expected = p.theta + (p.v0 - p.theta) * math.exp(-p.kappa * 1.0)
    assert abs(finals.mean() - expected) < 5 * finals.std() / math.sqrt(len(finals))
    assert min(prices) > 0


def test_heston_full_truncation_survives_a_violated_feller_condition():
    # 2 kappa theta < xi^2: the variance hits zero often; prices stay finite and positive.
    p = Heston(100.0, 0.0, v0=0.04, kappa=0.5, theta=0.04, xi=1.5, rho=0.0)
    path = HestonStepper(p, make_rng(6)).next_block(20_000)
    assert np.isfinite(path).all() and (path > 0).all()


def test_ou_reaches_its_stationary_mean_and_variance():
    p = OrnsteinUhlenbeck(start=1.5, mean=1.5, kappa=5.0, sigma=0.4)
    x = OrnsteinUhlenbeckStepper(p, make_rng(7)).next_block(400_000)
    a = math.exp(-p.kappa * T)
    effective = len(x) * (1 - a) / (1 + a)  # independent samples' worth of an AR(1) path
    var = p.stationary_variance
    assert abs(x.mean() - p.mean) < 5 * math.sqrt(var / effective)
    assert abs(x.var() - var) < 5 * var * math.sqrt(2 / effective)
    # And one step: x' - mean = a (x - mean) + noise, with the exact noise variance.
    residual = (x[1:] - p.mean) - a * (x[:-1] - p.mean)
    _within(residual, 0.0, var * (1 - a**2))


STEPPERS = {
    "arithmetic": lambda rng: ArithmeticStepper(Arithmetic(10.0, 1.0, 2.0), rng),
    "merton": lambda rng: MertonStepper(Merton(10.0, 0.05, 0.2, 30.0, -0.02, 0.04), rng),
    "heston": lambda rng: HestonStepper(Heston(10.0, 0.05, 0.04, 2.0, 0.04, 0.3, -0.5), rng),
    "ou": lambda rng: OrnsteinUhlenbeckStepper(OrnsteinUhlenbeck(0.0, 1.0, 3.0, 0.5), rng),
}


@pytest.mark.parametrize("model", STEPPERS)
@pytest.mark.parametrize("block", [1, 3, 1000])
def test_every_model_is_independent_of_the_block_size(model, block):
    whole = STEPPERS[model](make_rng(9)).next_block(3000)
    stepper = STEPPERS[model](make_rng(9))
    pieces = []
    while stepper.position < 3000:
        pieces.append(stepper.next_block(min(block, 3000 - stepper.position)))
    assert np.concatenate(pieces).tobytes() == whole.tobytes()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Arithmetic(1.0, 0.0, -1.0), "sigma"),
        (lambda: Merton(1.0, 0.0, 0.2, -1.0, 0.0, 0.1), "jump_intensity"),
        (lambda: Merton(1.0, 0.0, 0.2, 1.0, 0.0, math.nan), "jump_stdev"),
        (lambda: Heston(1.0, 0.0, 0.04, 1.0, 0.04, 0.3, 1.5), "rho"),
        (lambda: Heston(1.0, 0.0, -0.01, 1.0, 0.04, 0.3, 0.0), "v0"),
        (lambda: OrnsteinUhlenbeck(0.0, 0.0, 0.0, 1.0), "kappa"),
        (lambda: OrnsteinUhlenbeck(0.0, 0.0, 1.0, 1.0, delta=0.0), "delta"),
    ],
)
def test_bad_model_parameters_name_the_field(build, field):
    with pytest.raises(ParameterError) as info:
        build()
    assert info.value.field == field


class _Unreadable(Sequence):
    """A sequence that only knows its length: reading an entry fails the test."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        raise AssertionError("an entry was read before the count was checked")


def test_a_basket_checks_its_counts_before_reading_any_entry():
    with pytest.raises(ParameterError, match="assets must hold 1 to 64 instruments, got 2000000") as info:
        CorrelatedGbm.from_values({"assets": _Unreadable(2_000_000)}, 1.0, 252.0)
    assert info.value.field == "assets"
    two = [
        {"symbol": "A", "start_price": 1.0, "sigma": 0.1},
        {"symbol": "B", "start_price": 2.0, "sigma": 0.1},
    ]
    with pytest.raises(ParameterError, match="n x n = 4 numbers .* got 500000") as info:
        CorrelatedGbm.from_values({"assets": two, "correlation": _Unreadable(500_000)}, 1.0, 252.0)
    assert info.value.field == "correlation"
