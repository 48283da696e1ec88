"""The simulated market core: universe files, correlation, ticks, replay (no gRPC yet)."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib

import numpy as np
import pytest

from server.sim import models
from server.sim.checks import ParameterError
from server.sim.correlation import check_correlation
from server.sim.market import Market, instrument_rng
from server.sim.models import CorrelatedGbmStepper, Gbm
from server.sim.seeding import make_rng
from server.sim.universe import (
    DEFAULT_MARKET,
    MODELS,
    TRADING_SECONDS_PER_DAY,
    Instrument,
    MarketConfig,
    load_market,
    parse_market,
)

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
    params = [Gbm(100.0, 0.05, s, delta=1.0) for s in (0.2, 0.4, 0.3)]
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
    params = [Gbm(100.0, 0.05, 0.2, delta=1.0), Gbm(50.0, 0.0, 0.5, delta=1.0)]
    factor = check_correlation(np.array([[1.0, 0.6], [0.6, 1.0]]), "ab")
    whole = CorrelatedGbmStepper(params, factor, make_rng(5)).next_block(5000)
    stepper = CorrelatedGbmStepper(params, factor, make_rng(5))
    pieces = []
    while stepper.position < 5000:
        pieces.append(stepper.next_block(min(block, 5000 - stepper.position)))
    assert np.concatenate(pieces).tobytes() == whole.tobytes()


@pytest.mark.parametrize("assets", [3, 12])
def test_wide_baskets_do_not_depend_on_the_block_size_either(assets):
    # Both ways of summing the correlated shocks (narrow and wide baskets) must give every
    # row the same bits whether it comes alone or inside a larger block.
    rng = np.random.default_rng(assets)
    params = [Gbm(100.0, 0.05, s, delta=1.0) for s in rng.uniform(0.1, 0.5, assets)]
    shared = rng.uniform(0.1, 0.9)
    rho = np.full((assets, assets), shared) + (1 - shared) * np.eye(assets)
    factor = check_correlation(rho, [str(i) for i in range(assets)])
    whole = CorrelatedGbmStepper(params, factor, make_rng(8)).next_block(600)
    stepper = CorrelatedGbmStepper(params, factor, make_rng(8))
    pieces = [stepper.next_block(1) for _ in range(300)] + [stepper.next_block(300)]
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


# --- Price models other than GBM ---------------------------------------------------------------

# One [[instrument]] table per model, as a universe file spells it.
RATE_OU = (
    'symbol = "RATE"\nmodel = "ornstein_uhlenbeck"\nstart = 0.5\nmean = -0.25\nkappa = 12.6\nsigma = 0.8\n'
)
JUMPY_MERTON = (
    'symbol = "JUMPY"\nmodel = "merton"\nstart_price = 40.0\nmu = 0.03\nsigma = 0.25\n'
    "jump_intensity = 20.0\njump_mean = -0.02\njump_stdev = 0.05\n"
)
VOL_HESTON = (
    'symbol = "VOL"\nmodel = "heston"\nstart_price = 60.0\nmu = 0.04\nv0 = 0.09\nkappa = 2.0\n'
    "theta = 0.04\nxi = 0.5\nrho = -0.7\ntick_size = 0.05\n"
)
SPREAD_ARITHMETIC = 'symbol = "SPREAD"\nmodel = "arithmetic"\nstart_price = 0.3\nsigma = 2.0\n'
AAA = 'symbol = "AAA"\nstart_price = 100.0\nmu = 0.05\nsigma = 0.2\n'
BBB = 'symbol = "BBB"\nstart_price = 20.0\nmodel = "gbm"\nsigma = 0.4\ntick_size = 0.05\n'


def universe(*tables: str, market: str = "seed = 11\nsimulated_seconds_per_tick = 3600\n") -> MarketConfig:
    """A MarketConfig from [[instrument]] bodies and a [market] body, through the TOML parser."""
    text = f"[market]\n{market}\n" + "".join(f"[[instrument]]\n{t}\n" for t in tables)
    return parse_market(tomllib.loads(text))


def run(market: Market, ticks: int) -> np.ndarray:
    """The opening prices and ``ticks`` more, one row per tick."""
    return np.array([market.last.prices] + [market.tick().prices for _ in range(ticks)])


@pytest.mark.parametrize(
    ("table", "model", "parameters", "summary", "positive"),
    [
        (BBB, "gbm", {"start_price": 20.0, "mu": 0.0, "sigma": 0.4}, (20.0, 0.0, 0.4), True),
        (
            SPREAD_ARITHMETIC,
            "arithmetic",
            {"start_price": 0.3, "mu": 0.0, "sigma": 2.0},
            (0.3, 0.0, 2.0),
            False,
        ),
        (
            JUMPY_MERTON,
            "merton",
            {"start_price": 40.0, "mu": 0.03, "sigma": 0.25, "jump_intensity": 20.0}
            | {"jump_mean": -0.02, "jump_stdev": 0.05},
            (40.0, 0.03, 0.25),
            True,
        ),
        (
            VOL_HESTON,
            "heston",
            {
                "start_price": 60.0,
                "mu": 0.04,
                "v0": 0.09,
                "kappa": 2.0,
                "theta": 0.04,
                "xi": 0.5,
                "rho": -0.7,
            },
            (60.0, 0.04, 0.3),  # sigma shows the initial volatility, sqrt(v0)
            True,
        ),
        (
            RATE_OU,
            "ornstein_uhlenbeck",
            {"start": 0.5, "mean": -0.25, "kappa": 12.6, "sigma": 0.8},
            (0.5, 0.0, 0.8),  # no drift parameter: mu shows 0
            False,
        ),
    ],
)
def test_each_model_parses_from_a_universe_file(table, model, parameters, summary, positive):
    config = universe(AAA, table)
    instrument = config.instruments[1]
    assert instrument.model == model
    assert dict(instrument.parameters) == parameters
    assert list(dict(instrument.parameters)) == list(parameters), "in the order of the protobuf message"
    assert (instrument.start_price, instrument.mu, instrument.sigma) == pytest.approx(summary, abs=1e-15)
    assert instrument.positive is positive
    assert config.instruments[0].model == "gbm"
    params = config.model_params()[1]
    assert params.delta == 3600 / TRADING_SECONDS_PER_DAY, "the period is the market's tick"
    market = Market(config)
    assert market.last.prices[1] == round(summary[0] / instrument.tick_size) * instrument.tick_size
    run(market, 50)


def test_instruments_can_be_built_in_code_as_well():
    ou = {"start": 0.5, "mean": -0.25, "kappa": 12.6, "sigma": 0.8}
    built = Instrument.of_model("RATE", "ornstein_uhlenbeck", ou)
    assert built == universe(RATE_OU).instruments[0]
    assert dataclasses.replace(built, tick_size=0.05).tick_size == 0.05
    acme = Instrument("ACME", 70.0, 0.05, 0.30)
    assert acme.model == "gbm" and dict(acme.parameters) == {"start_price": 70.0, "mu": 0.05, "sigma": 0.30}
    assert acme == Instrument.of_model("ACME", "gbm", {"start_price": 70.0, "mu": 0.05, "sigma": 0.30})
    assert sorted(MODELS) == sorted(["gbm", "arithmetic", "merton", "heston", "ornstein_uhlenbeck"])
    # The summary ListInstruments shows must agree with the model's parameters.
    with pytest.raises(ParameterError, match=r"must be \(0.5, 0.0, 0.8\)") as info:
        Instrument("RATE", 1.0, 0.0, 0.8, model="ornstein_uhlenbeck", parameters=tuple(ou.items()))
    assert info.value.field == "parameters"


OU_HEAD = 'symbol = "RATE"\nmodel = "ornstein_uhlenbeck"\n'
MERTON_HEAD = 'symbol = "RATE"\nmodel = "merton"\nstart_price = 1\nsigma = 0.1\njump_intensity = 1\n'
HESTON_HEAD = (
    'symbol = "RATE"\nmodel = "heston"\nstart_price = 1\nv0 = 0.04\nkappa = 1\ntheta = 0.04\nxi = 0.3\n'
)


@pytest.mark.parametrize(
    ("table", "field", "message"),
    [
        (
            'symbol = "RATE"\nmodel = "levy"\nstart = 1\n',
            "model",
            "model must be one of gbm, arithmetic, merton",
        ),
        ('symbol = "RATE"\nmodel = 3\n', "model", "model must be one of .*, got 3"),
        (
            MERTON_HEAD + "jump_mean = 0\n",
            "jump_stdev",
            "jump_stdev is required for model merton, which takes start_price, mu, sigma, jump_intensity",
        ),
        (OU_HEAD + "mean = 1\nkappa = 1\nsigma = 1\n", "start", "start is required"),
        (
            OU_HEAD + "start = 1\nmean = 1\nkappa = 1\nsigma = 1\nmu = 0.1\n",
            "mu",
            "mu is not a parameter of model ornstein_uhlenbeck, which takes start, mean, kappa, sigma",
        ),
        (
            OU_HEAD + "start_price = 1\nmean = 1\nkappa = 1\nsigma = 1\n",
            "start_price",
            "start_price is not a parameter of model ornstein_uhlenbeck",
        ),
        (
            OU_HEAD + "start = 1\nmean = 1\nkappa = 0\nsigma = 1\n",
            "kappa",
            r"kappa must be in \(0, 10000\] per year",
        ),
        (
            OU_HEAD + "start = 1\nmean = 1\nkappa = 1\nsigma = -1\n",
            "sigma",
            r"sigma must be in \[0, 1e\+12\]",
        ),
        (HESTON_HEAD + "rho = 1.5\n", "rho", r"rho must be in \[-1, 1\], got 1.5"),
        (
            MERTON_HEAD + "jump_mean = 0\njump_stdev = -0.1\n",
            "jump_stdev",
            r"jump_stdev must be in \[0, 5\]",
        ),
        (
            OU_HEAD + 'start = 1\nmean = "high"\nkappa = 1\nsigma = 1\n',
            "mean",
            "mean must be a number, got 'high'",
        ),
    ],
)
def test_bad_model_tables_name_the_instrument_the_field_and_the_range(table, field, message):
    assert universe(AAA, HESTON_HEAD + "rho = 0\n").instruments[1].model == "heston", "the control is fine"
    with pytest.raises(ParameterError, match=re.escape("instrument #2 (RATE): ") + message) as info:
        universe(AAA, table)
    assert info.value.field == field


def test_a_bad_model_table_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(f"[[instrument]]\n{OU_HEAD}start = 1\nmean = 1\nkappa = -2\nsigma = 1\n")
    with pytest.raises(
        ParameterError, match=re.escape(f"{path}: instrument #1 (RATE): kappa must be in (0, ")
    ):
        load_market(path)


def test_only_gbm_instruments_can_be_correlated():
    correlated = "correlation = [[1, 0.5, 0.2], [0.5, 1, 0], [0.2, 0, 1]]\n"
    with pytest.raises(
        ParameterError, match=r"correlation to RATE \(ornstein_uhlenbeck\), JUMPY \(merton\)"
    ) as info:
        universe(AAA, RATE_OU, JUMPY_MERTON, market=correlated)
    assert info.value.field == "correlation"
    # Zero off the diagonal is fine; the GBM block keeps its correlation.
    config = universe(AAA, RATE_OU, BBB, market="correlation = [[1, 0, 0.6], [0, 1, 0], [0.6, 0, 1]]\n")
    np.testing.assert_allclose(config.factor @ config.factor.T, [[1.0, 0.6], [0.6, 1.0]], atol=1e-12)
    # The whole matrix is still checked first.
    with pytest.raises(ParameterError, match="must be 3x3"):
        universe(AAA, RATE_OU, BBB, market="correlation = [[1, 0.6], [0.6, 1]]\n")


def test_an_all_gbm_market_is_the_correlated_gbm_stepper_rounded():
    rho = np.array([[1.0, 0.7], [0.7, 1.0]])
    config = universe(
        AAA, BBB, market="seed = 5\nsimulated_seconds_per_tick = 600\ncorrelation = [[1, 0.7], [0.7, 1]]\n"
    )
    delta = 600 / (6.5 * 3600)
    params = [Gbm(100.0, 0.05, 0.2, delta=delta), Gbm(20.0, 0.0, 0.4, delta=delta)]
    raw = CorrelatedGbmStepper(params, check_correlation(rho, ["AAA", "BBB"]), make_rng(5)).next_block(1001)
    # Today's rounding, written out: whole ticks, at least one, in exact decimal units.
    sizes, units, scale = np.array([0.01, 0.05]), np.array([1.0, 5.0]), np.array([100.0, 100.0])
    expected = np.maximum(np.round(raw / sizes), 1.0) * units / scale
    assert run(Market(config), 1000).tobytes() == expected.tobytes()


def test_a_mixed_market_replays_exactly_for_the_same_seed():
    config = universe(AAA, RATE_OU, VOL_HESTON, JUMPY_MERTON, SPREAD_ARITHMETIC)
    a, b, c = run(Market(config), 300), run(Market(config), 300), run(Market(config, seed=12), 300)
    assert a.tobytes() == b.tobytes()
    assert (a != c).any(axis=0).all(), "another seed moves every instrument differently"


def test_adding_non_gbm_instruments_leaves_the_gbm_prices_unchanged():
    gbm_only = universe(AAA, BBB, market="seed = 3\ncorrelation = [[1, 0.6], [0.6, 1]]\n")
    mixed = universe(
        JUMPY_MERTON,
        AAA,
        RATE_OU,
        BBB,
        market="seed = 3\ncorrelation = [[1, 0, 0, 0], [0, 1, 0, 0.6], [0, 0, 1, 0], [0, 0.6, 0, 1]]\n",
    )
    alone, together = run(Market(gbm_only), 500), run(Market(mixed), 500)
    assert together[:, [1, 3]].tobytes() == alone.tobytes()
    # A non-GBM instrument's stream is keyed by its symbol: other instruments do not move it either.
    merton_alone = run(Market(universe(JUMPY_MERTON, market="seed = 3\n")), 500)
    assert together[:, 0].tobytes() == merton_alone[:, 0].tobytes()


def test_instrument_streams_are_distinct_and_derived_from_the_seed():
    def draws(rng):
        return rng.standard_normal(4).tobytes()

    assert draws(instrument_rng(7, "RATE")) == draws(instrument_rng(7, "RATE"))
    others = {draws(instrument_rng(8, "RATE")), draws(instrument_rng(7, "RATF")), draws(make_rng(7))}
    assert draws(instrument_rng(7, "RATE")) not in others and len(others) == 3


@pytest.mark.parametrize(
    ("table", "stepper", "params"),
    [
        (SPREAD_ARITHMETIC, models.ArithmeticStepper, lambda d: models.Arithmetic(0.3, 0.0, 2.0, delta=d)),
        (
            JUMPY_MERTON,
            models.MertonStepper,
            lambda d: models.Merton(40.0, 0.03, 0.25, 20.0, -0.02, 0.05, delta=d),
        ),
        (
            VOL_HESTON,
            models.HestonStepper,
            lambda d: models.Heston(60.0, 0.04, 0.09, 2.0, 0.04, 0.5, -0.7, delta=d),
        ),
        (
            RATE_OU,
            models.OrnsteinUhlenbeckStepper,
            lambda d: models.OrnsteinUhlenbeck(0.5, -0.25, 12.6, 0.8, delta=d),
        ),
    ],
)
def test_a_non_gbm_instrument_follows_its_own_stepper_rounded(table, stepper, params):
    config = universe(AAA, table)
    instrument = config.instruments[1]
    raw = stepper(params(3600 / (6.5 * 3600)), instrument_rng(11, instrument.symbol)).next_block(801)
    ticks = np.round(raw / instrument.tick_size)
    if instrument.positive:
        ticks = np.maximum(ticks, 1.0)
    decimals = len(repr(instrument.tick_size).split(".")[1])
    expected = ticks * round(instrument.tick_size * 10**decimals) / 10.0**decimals
    np.testing.assert_array_equal(run(Market(config), 800)[:, 1], expected)


def test_spreads_and_rates_may_be_zero_or_negative_while_prices_keep_a_one_tick_floor():
    config = universe(
        f"{OU_HEAD.replace('RATE', 'NEG')}start = -1.0\nmean = -2.0\nkappa = 5.0\nsigma = 0.5\n",
        'symbol = "FALL"\nmodel = "arithmetic"\nstart_price = 0.0\nmu = -100.0\nsigma = 0.0\n',
        f"{OU_HEAD.replace('RATE', 'ZERO')}start = -0.004\nmean = -0.004\nkappa = 1.0\nsigma = 0.0\n",
        'symbol = "PENNY"\nmodel = "heston"\nstart_price = 0.004\nv0 = 0.04\nkappa = 1\ntheta = 0.04\n'
        "xi = 0.3\nrho = 0\n",
    )
    prices = run(Market(config), 200)
    assert (prices[:, 0] < 0).all()
    for column in (0, 1):
        steps = prices[:, column] / 0.01
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert prices[0, 1] == 0.0 and (np.diff(prices[:, 1]) < 0).all(), (
        "no floor: the spread falls through zero"
    )
    assert [repr(p) for p in prices[:, 2].tolist()] == ["0.0"] * 201, "rounds to zero, never -0.0"
    assert prices[0, 3] == 0.01, "a price is never published below one tick"


def test_an_ornstein_uhlenbeck_instrument_reverts_to_its_mean():
    mean, kappa, stdev = -0.5, 25.2, 0.2  # kappa t = 0.1 per one-day tick
    sigma = stdev * math.sqrt(2 * kappa)
    table = f"{OU_HEAD}start = 3.0\nmean = {mean}\nkappa = {kappa}\nsigma = {sigma}\n"
    market = Market(universe(table, market="seed = 21\nsimulated_seconds_per_tick = 23400\n"))
    burn_in, n = 200, 20_000  # 200 ticks shrink the start's distance from the mean by e^-20
    values = run(market, burn_in + n)[burn_in + 1 :, 0]
    # Consecutive values have correlation phi, so the sample mean's variance is
    # stdev^2 / n * (1 + phi) / (1 - phi); allow 5 standard errors plus half a tick of rounding.
    phi = math.exp(-kappa / 252)
    tolerance = 5 * stdev * math.sqrt((1 + phi) / (1 - phi) / n) + 0.005
    assert abs(values.mean() - mean) < tolerance, (values.mean(), tolerance)
    # The spread around the mean is the stationary one, sigma^2 / (2 kappa): the sample variance of an
    # AR(1) has variance 2 stdev^4 / n * (1 + phi^2) / (1 - phi^2); the rounding adds tick^2 / 12.
    variance_tolerance = 5 * stdev**2 * math.sqrt(2 / n * (1 + phi**2) / (1 - phi**2)) + 0.01**2
    assert abs(values.var() - stdev**2) < variance_tolerance, (values.var(), variance_tolerance)
