"""The numpy core on its own: shape, positivity, distribution, replay, block invariance."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest

from server.sim.checks import ParameterError
from server.sim.models import Gbm, GbmStepper, gbm_path
from server.sim.seeding import make_rng, new_seed
from server.sim.steppers import iter_blocks

ORIGINAL = Gbm(start_price=70.0, mu=0.05, sigma=0.3, delta=1.0)


def test_original_example_has_periods_prices_starting_at_start_price():
    prices = gbm_path(ORIGINAL, 100, seed=1)
    assert prices.shape == (100,)
    assert prices.dtype == np.float64
    assert prices[0] == 70.0
    assert np.all(prices[1:] != 70.0)


def test_single_period_is_just_the_start_price():
    assert gbm_path(ORIGINAL, 1, seed=3).tolist() == [70.0]


@pytest.mark.parametrize(
    "params",
    [
        ORIGINAL,
        Gbm(start_price=1e-6, mu=-10.0, sigma=10.0, delta=10_000.0, trading_days_per_year=1.0),
        Gbm(start_price=1e12, mu=10.0, sigma=10.0, delta=5.0),
        Gbm(start_price=5.0, mu=0.0, sigma=0.0, delta=1.0),
    ],
    ids=["original", "extreme-down", "extreme-up", "no-volatility"],
)
def test_prices_are_never_negative_or_nan(params):
    prices = gbm_path(params, 200_000, seed=11)
    assert not np.isnan(prices).any()
    assert (prices >= 0).all()


def test_zero_volatility_is_pure_drift():
    params = Gbm(start_price=100.0, mu=0.1, sigma=0.0, delta=1.0)
    prices = gbm_path(params, 253, seed=0)
    expected = 100.0 * np.exp(0.1 * np.arange(253) / 252)
    np.testing.assert_allclose(prices, expected, rtol=1e-12)


def test_log_returns_match_the_closed_form():
    # t = delta / 252 years; log-returns ~ N((mu - sigma^2/2) t, sigma^2 t), i.i.d.
    mu, sigma, delta = 0.05, 0.3, 1.0
    n = 1_000_000
    prices = gbm_path(Gbm(70.0, mu, sigma, delta=delta), n + 1, seed=2024)
    r = np.diff(np.log(prices))
    t = delta / 252
    mean, sd = (mu - sigma**2 / 2) * t, sigma * math.sqrt(t)
    # Standard errors of the sample mean, standard deviation, skewness and
    # excess kurtosis of n normal draws; 5 of them is the tolerance.
    assert abs(r.mean() - mean) < 5 * sd / math.sqrt(n)
    assert abs(r.std() - sd) < 5 * sd / math.sqrt(2 * n)
    z = (r - r.mean()) / r.std()
    assert abs(np.mean(z**3)) < 5 * math.sqrt(6 / n)
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(24 / n)
    # Independence: lag-1 autocorrelation has standard error 1/sqrt(n).
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1]) < 5 / math.sqrt(n)


def test_trading_days_per_year_sets_the_period_length():
    n = 400_000
    sigma = 0.2
    prices = gbm_path(Gbm(50.0, 0.0, sigma, delta=1.0, trading_days_per_year=365.0), n + 1, seed=5)
    sd = sigma * math.sqrt(1 / 365)
    assert abs(np.diff(np.log(prices)).std() - sd) < 5 * sd / math.sqrt(2 * n)


def test_same_seed_replays_bit_for_bit_and_other_seeds_differ():
    a = gbm_path(ORIGINAL, 10_000, seed=42)
    b = gbm_path(ORIGINAL, 10_000, seed=42)
    c = gbm_path(ORIGINAL, 10_000, seed=43)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a[1:], c[1:])


def test_seed_zero_and_largest_seed_are_valid():
    assert gbm_path(ORIGINAL, 10, seed=0).tobytes() == gbm_path(ORIGINAL, 10, seed=0).tobytes()
    assert gbm_path(ORIGINAL, 10, seed=2**64 - 1).shape == (10,)
    with pytest.raises(ParameterError, match="seed"):
        make_rng(2**64)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1000, 4096, 65_537, 100_003])
def test_any_block_size_gives_the_same_path(block):
    whole = gbm_path(ORIGINAL, 100_003, seed=9)
    stepper = GbmStepper(ORIGINAL, make_rng(9))
    pieces = list(iter_blocks(stepper, 100_003, block))
    assert [offset for offset, _ in pieces] == list(range(0, 100_003, block))
    assert np.concatenate([p for _, p in pieces]).tobytes() == whole.tobytes()


def test_global_random_state_is_neither_used_nor_changed():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = gbm_path(ORIGINAL, 1000, seed=8)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(999)
    assert gbm_path(ORIGINAL, 1000, seed=8).tobytes() == a.tobytes()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("start_price", {"start_price": 0.0}),
        ("start_price", {"start_price": -1.0}),
        ("start_price", {"start_price": math.inf}),
        ("mu", {"mu": math.nan}),
        ("mu", {"mu": 11.0}),
        ("sigma", {"sigma": -0.1}),
        ("sigma", {"sigma": math.inf}),
        ("delta", {"delta": 0.0}),
        ("delta", {"delta": -1.0}),
        ("trading_days_per_year", {"trading_days_per_year": 0.0}),
        ("trading_days_per_year", {"trading_days_per_year": math.nan}),
    ],
)
def test_bad_parameters_raise_naming_the_field_and_range(field, kwargs):
    args = {"start_price": 70.0, "mu": 0.05, "sigma": 0.3, "delta": 1.0} | kwargs
    with pytest.raises(ParameterError) as info:
        Gbm(**args)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field} must be")
    assert "[" in str(info.value) or "(" in str(info.value)


def test_a_forked_worker_draws_other_seeds_than_its_parent():
    # --workers forks server processes; drawn seeds must not repeat across them.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report one seed and leave at once
        os.write(write_end, str(new_seed()).encode())
        os._exit(0)
    os.close(write_end)
    child_seed = int(os.read(read_end, 64))
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_seed != new_seed()


def _untemper(value: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output (its tempering undone)."""
    value ^= value >> 18
    value ^= (value << 15) & 0xEFC60000
    result = value
    for _ in range(5):
        result = value ^ ((result << 7) & 0x9D2C5680)
    value, result = result, result
    for _ in range(3):
        result = value ^ (result >> 11)
    return result & 0xFFFFFFFF


def test_seeds_handed_out_do_not_predict_the_next_one():
    # Every path without a seed returns the seed drawn for it. Were those consecutive outputs
    # of one Mersenne Twister, 312 of them would give its whole state, and with it the next
    # seed drawn (the live market's too): rebuild the state and see that the guess misses.
    words = []
    for _ in range(312):
        seed = new_seed()
        words += [seed & 0xFFFFFFFF, seed >> 32]
    clone = random.Random()
    clone.setstate((3, (*(_untemper(w) for w in words), 624), None))
    assert clone.getrandbits(64) != new_seed()
