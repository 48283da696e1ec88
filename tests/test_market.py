"""The simulated market core: universe files, correlation, ticks, replay (no gRPC yet)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from server.generator import CorrelatedGbmStepper, GbmParams, ParameterError, check_correlation, make_rng
from server.market import DEFAULT_MARKET, Instrument, Market, MarketConfig, load_market

TOML = """
[market]
seed = 42
wall_seconds_per_tick = 0.1
simulated_seconds_per_tick = 60
speed = 2
correlation = [[1.0, 0.8], [0.8, 1.0]]

[[instrument]]
symbol = "AAA"
start_price = 100.0
mu = 0.05
sigma = 0.2
tick_size = 0.01

[[instrument]]
symbol = "BBB"
start_price = 20.0
sigma = 0.4
tick_size = 0.05
"""


def test_a_market_file_loads(tmp_path):
    path = tmp_path / "market.toml"
    path.write_text(TOML)
    config = load_market(path)
    assert config.symbols == ("AAA", "BBB")
    assert config.seed == 42
    assert config.wall_interval == pytest.approx(0.05)
    assert config.instruments[1] == Instrument("BBB", 20.0, 0.0, 0.4, 0.05)
    market = Market(config)
    assert market.last.sequence == 0
    assert market.last.prices.tolist() == [100.0, 20.0]


def test_ticks_advance_every_instrument_on_its_price_grid():
    market = Market(DEFAULT_MARKET, seed=1)
    ticks = [market.tick() for _ in range(500)]
    assert [t.sequence for t in ticks] == list(range(1, 501))
    assert ticks[-1].simulated_seconds == 500 * DEFAULT_MARKET.simulated_seconds_per_tick
    sizes = np.array([i.tick_size for i in DEFAULT_MARKET.instruments])
    prices = np.array([t.prices for t in ticks])
    steps = prices / sizes
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    assert (prices > 0).all()
    assert (np.diff(prices, axis=0) != 0).any(axis=0).all(), "every instrument moves"
    assert market.last_price("ACME") == ticks[-1].prices[0]


def test_the_same_seed_replays_the_market_and_another_does_not():
    a, b, c = Market(DEFAULT_MARKET, seed=7), Market(DEFAULT_MARKET, seed=7), Market(DEFAULT_MARKET, seed=8)
    pa = np.array([a.tick().prices for _ in range(300)])
    pb = np.array([b.tick().prices for _ in range(300)])
    pc = np.array([c.tick().prices for _ in range(300)])
    assert pa.tobytes() == pb.tobytes()
    assert not np.array_equal(pa, pc)


def test_unknown_symbols_are_listed():
    market = Market(DEFAULT_MARKET, seed=1)
    assert market.index_of(["GLOBEX", "ACME"]) == [1, 0]
    with pytest.raises(ParameterError, match="unknown symbols: NOPE, ZZZ"):
        market.index_of(["ACME", "NOPE", "ZZZ"])


def test_correlated_log_returns_show_the_configured_correlation():
    rho = np.array([[1.0, 0.8, -0.3], [0.8, 1.0, 0.0], [-0.3, 0.0, 1.0]])
    params = [GbmParams(100.0, 0.05, s, 1.0) for s in (0.2, 0.4, 0.3)]
    n = 200_000
    stepper = CorrelatedGbmStepper(params, check_correlation(rho, "abc"), make_rng(3))
    returns = np.diff(np.log(stepper.next_block(n + 1)), axis=0)
    realised = np.corrcoef(returns.T)
    # Standard error of a sample correlation: (1 - rho^2) / sqrt(n); 5 of them.
    tolerance = 5 * (1 - rho**2) / math.sqrt(n) + 1e-12
    assert (np.abs(realised - rho) <= tolerance).all(), realised
    # Each instrument keeps its own volatility.
    sd = returns.std(axis=0)
    expected = np.array([p.log_volatility for p in params])
    assert (np.abs(sd - expected) < 5 * expected / math.sqrt(2 * n)).all()


@pytest.mark.parametrize("block", [1, 2, 7, 1000])
def test_correlated_paths_do_not_depend_on_the_block_size(block):
    params = [GbmParams(100.0, 0.05, 0.2, 1.0), GbmParams(50.0, 0.0, 0.5, 1.0)]
    factor = check_correlation(np.array([[1.0, 0.6], [0.6, 1.0]]), "ab")
    whole = CorrelatedGbmStepper(params, factor, make_rng(5)).next_block(5000)
    stepper = CorrelatedGbmStepper(params, factor, make_rng(5))
    pieces = []
    while stepper.position < 5000:
        pieces.append(stepper.next_block(min(block, 5000 - stepper.position)))
    assert np.concatenate(pieces).tobytes() == whole.tobytes()


def test_perfect_correlation_is_accepted():
    factor = check_correlation(np.ones((2, 2)), "ab")
    np.testing.assert_allclose(factor @ factor.T, np.ones((2, 2)), atol=1e-12)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[1.0, 0.5], [0.4, 1.0]], "symmetric"),
        ([[1.0, 0.5], [0.5, 0.9]], "diagonal must be 1"),
        ([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]], "positive semi-definite"),
        ([[1.0, 0.5]], "must be 3x3"),
        ([[1.0, math.nan, 0], [math.nan, 1.0, 0], [0, 0, 1.0]], "finite"),
        ([[1.0, 1.5, 0], [1.5, 1.0, 0], [0, 0, 1.0]], r"\[-1, 1\]"),
    ],
)
def test_bad_correlation_matrices_are_rejected(matrix, message):
    with pytest.raises(ParameterError, match=message) as info:
        # One symbol per row, except for the wrong-shape case, which has three symbols.
        check_correlation(np.array(matrix), "xyz" if len(matrix) == 1 else "xyz"[: len(matrix)])
    assert info.value.field == "correlation"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("[market]\n", "instrument", "at least one"),
        ('[[instrument]]\nsymbol = "A"\nsigma = 0.2\n', "start_price", "start_price is required"),
        ('[[instrument]]\nsymbol = "A"\nstart_price = -1\nsigma = 0.2\n', "start_price", r"\(0, "),
        ('[[instrument]]\nsymbol = "A"\nstart_price = 1\nsigma = "high"\n', "sigma", "must be a number"),
        (
            '[[instrument]]\nsymbol = "A"\nstart_price = 1\nsigma = 0.1\n'
            '[[instrument]]\nsymbol = "A"\nstart_price = 2\nsigma = 0.1\n',
            "instruments",
            "repeated: A",
        ),
        ("[market\n", "market", "not valid TOML"),
        (
            '[market]\nspeed = 0\n[[instrument]]\nsymbol = "A"\nstart_price = 1\nsigma = 0.1\n',
            "speed",
            "speed",
        ),
    ],
)
def test_bad_market_files_name_the_file_and_the_field(tmp_path, text, field, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ParameterError, match=message) as info:
        load_market(path)
    assert info.value.field == field
    assert str(path) in str(info.value)


def test_the_default_market_is_valid_and_correlated():
    assert len(DEFAULT_MARKET.symbols) >= 3
    assert DEFAULT_MARKET.factor is not None
    assert MarketConfig(instruments=DEFAULT_MARKET.instruments).factor is None


def test_published_prices_print_as_decimals_on_the_grid():
    market = Market(DEFAULT_MARKET, seed=2)
    for _ in range(2000):
        for price, instrument in zip(market.tick().prices.tolist(), DEFAULT_MARKET.instruments, strict=True):
            decimals = len(repr(instrument.tick_size).split(".")[1])
            assert len(repr(price).split(".")[1]) <= decimals, (price, instrument)
