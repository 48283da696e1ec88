"""Every accepted request gives finite values: prices of gbm, merton, heston and
correlated_gbm inside the band [PRICE_FLOOR, PRICE_CEILING], so above zero, arithmetic and
Ornstein-Uhlenbeck values finite, at every corner of every accepted range, with ticks, quotes
and bars, whatever the block split; while every path that never left the band is bit for bit
the plain ``start * exp(log-return)`` it always was."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from client import join, path_request
from marketdata.v1 import market_data_pb2 as pb
from server.sim.bars import Bars
from server.sim.checks import ParameterError
from server.sim.correlation import correlate
from server.sim.models import MAX_ASSETS, MODELS, Asset, CorrelatedGbm, Gbm, Heston, Merton, Model
from server.sim.models.base import PRICE_CEILING, PRICE_FLOOR
from server.sim.paths import PathBuilder, PathPlan
from server.sim.quotes import QuoteSpec, quotes
from server.sim.seeding import make_rng
from server.sim.ticks import TICK_SIZE_MAX, TICK_SIZE_MIN, TickGrid
from server.sim.time_axis import NS, TimeAxis
from server.sim.volume import MOVE_CAP, VOLUME_MEAN_MAX, VOLUME_RATE_MAX, check_volume_rate
from tests.test_cli import run_client

TINY = math.ulp(0.0)  # 5e-324: the nearest double inside an open end at zero
# Each parameter's accepted range as its two ends (an open end at zero taken as TINY); a test
# holds these to the models' own checks, so a range that moves moves its corners here too.
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "gbm": {"start_price": (TINY, 1e12), "mu": (-10.0, 10.0), "sigma": (0.0, 10.0)},
    "arithmetic": {"start_price": (-1e12, 1e12), "mu": (-1e12, 1e12), "sigma": (0.0, 1e12)},
    "merton": {
        "start_price": (TINY, 1e12),
        "mu": (-10.0, 10.0),
        "sigma": (0.0, 10.0),
        "jump_intensity": (0.0, 1e4),
        "jump_mean": (-5.0, 5.0),
        "jump_stdev": (0.0, 5.0),
    },
    "heston": {
        "start_price": (TINY, 1e12),
        "mu": (-10.0, 10.0),
        "v0": (0.0, 100.0),
        "kappa": (0.0, 1e3),
        "theta": (0.0, 100.0),
        "xi": (0.0, 100.0),
        "rho": (-1.0, 1.0),
    },
    "ornstein_uhlenbeck": {
        "start": (-1e12, 1e12),
        "mean": (-1e12, 1e12),
        "kappa": (TINY, 1e4),
        "sigma": (0.0, 1e12),
    },
}
PERIOD = {"delta": (TINY, 1e4), "trading_days_per_year": (1.0, 1e6)}
SINGLE = list(RANGES)
PERIODS = 40
SPLIT = (1, 5, 31)  # block sizes, cycled: a path cut at its first step, and anywhere else
# A tick of 17 significant digits: rounding to it multiplies a value by 10^25 on the way.
LONG_TICK = 1.2345678901234567e-9
ADDITIONS = {
    "bare": {},
    "tick 1e-9": {"tick_size": TICK_SIZE_MIN},
    "tick 1e6": {"tick_size": TICK_SIZE_MAX},
    "17-digit tick": {"tick_size": LONG_TICK},
    "quotes 10000 bps": {"quotes": QuoteSpec(spread_bps=1e4)},
    "quotes TINY bps, tick 1e6": {"quotes": QuoteSpec(spread_bps=TINY), "tick_size": TICK_SIZE_MAX},
    "quotes 1000 vol, 17-digit tick": {"quotes": QuoteSpec(spread_volatility=1e3), "tick_size": LONG_TICK},
    "quotes TINY vol, tick 1e-9": {"quotes": QuoteSpec(spread_volatility=TINY), "tick_size": TICK_SIZE_MIN},
}
BASKET_ADDITIONS = [name for name, added in ADDITIONS.items() if "quotes" not in added]
# Bars need time, a period of at least 1 ns and a bar at least one period long, so their
# periods are the shortest (1 ns, 1s bars) and the longest (1 day, 1d bars) that allow them.
DAY_NS = 86_400 * NS
BAR_STEPS = 70  # enough for +10 a period (mu = 10, one year a period) to reach the ceiling
BAR_PERIODS = {"1 ns, 1s bars": (1, NS), "1 day, 1d bars": (DAY_NS, DAY_NS)}


def _model(name: str, values: dict[str, float]) -> Model:
    return MODELS[name](**values)


def corners(name: str) -> Iterator[dict[str, float]]:
    """Every combination of the ends of model ``name``'s parameters and of the period's."""
    ranges = {**RANGES[name], **PERIOD}
    for ends in itertools.product(*ranges.values()):
        yield dict(zip(ranges, ends, strict=True))


def _basket(assets: list[dict], correlation, delta: float, days: float) -> CorrelatedGbm:
    named = tuple(
        Asset(f"A{i}", Gbm(**a, delta=delta, trading_days_per_year=days)) for i, a in enumerate(assets)
    )
    return CorrelatedGbm(named, tuple(correlation), delta=delta, trading_days_per_year=days)


def baskets() -> Iterator[CorrelatedGbm]:
    """Baskets at the corners: one asset at each corner of GBM's ranges, all eight together
    (independent, perfectly correlated, perfectly anti-correlated in pairs) and 64 assets,
    each at every corner of the period."""
    gbm = RANGES["gbm"]
    assets = [dict(zip(gbm, ends, strict=True)) for ends in itertools.product(*gbm.values())]
    signs = np.array([1.0, -1.0] * 4)
    for period in itertools.product(*PERIOD.values()):
        yield from (_basket([a], (), *period) for a in assets)
        yield _basket(assets, (), *period)
        yield _basket(assets, np.ones(64), *period)
        yield _basket(assets, np.outer(signs, signs).ravel(), *period)
        yield _basket((assets * 8)[:MAX_ASSETS], (), *period)


def _arrays(block) -> list[np.ndarray]:
    arrays = [block.prices]
    arrays += [a for a in (block.bid, block.ask) if a is not None]
    if block.bars is not None:
        arrays += [getattr(block.bars, f) for f in Bars.__dataclass_fields__]
    return arrays


def _split(plan: PathPlan) -> list[bytes]:
    """The plan's path cut into blocks of SPLIT's sizes, joined again, as bytes per array."""
    builder = PathBuilder(plan)
    blocks = []
    for size in itertools.cycle(SPLIT):
        if builder.position >= plan.periods:
            break
        blocks.append(builder.next(size))
    parts = zip(*(_arrays(b) for b in blocks), strict=True)
    return [np.concatenate(p).tobytes() for p in parts]


def check_path(plan: PathPlan, where: str) -> None:
    """The plan's whole path is finite (positive and in the band for prices), and any split
    into blocks gives the same bytes."""
    model = plan.model
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # none on the way, either
        whole = PathBuilder(plan).next(plan.periods)
    bars = whole.bars
    values = [whole.prices] if bars is None else [bars.open, bars.high, bars.low, bars.close]
    for v in values:
        assert np.isfinite(v).all(), f"{where}: {v}"
        if model.positive:
            assert (v > 0).all(), f"{where}: {v}"
            if not plan.tick_size:
                assert ((v >= PRICE_FLOOR) & (v <= PRICE_CEILING)).all(), f"{where}: {v}"
    for quote in (whole.bid, whole.ask):
        assert quote is None or np.isfinite(quote).all(), f"{where}: {quote}"
    if whole.bid is not None:
        assert (whole.ask >= whole.bid).all(), where
    if bars is not None:
        assert len(bars) and bars.volume.dtype == np.int64 and (bars.volume >= 0).all(), where
    assert _split(plan) == [a.tobytes() for a in _arrays(whole)], f"{where}: split"


# --- the corners --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SINGLE)
def test_the_corners_are_the_ends_of_every_accepted_range(name):
    ranges = {**RANGES[name], **PERIOD}
    lowest = {p: low for p, (low, _) in ranges.items()}
    for parameter, ends in ranges.items():
        for end, outward in zip(ends, (-math.inf, math.inf), strict=True):
            _model(name, {**lowest, parameter: end})
            with pytest.raises(ParameterError) as err:
                _model(name, {**lowest, parameter: math.nextafter(end, outward)})
            assert err.value.field == parameter


def test_a_basket_takes_one_to_max_assets_and_any_correlation_in_its_range():
    assert sum(1 for _ in baskets()) == 4 * 12
    one = {"start_price": 1.0, "mu": 0.0, "sigma": 1.0}
    for count in (0, MAX_ASSETS + 1):
        with pytest.raises(ParameterError, match="assets must hold"):
            CorrelatedGbm.from_values({"assets": [one] * count}, 1.0, 252.0)
    with pytest.raises(ParameterError, match=r"in \[-1, 1\]"):
        CorrelatedGbm.from_values(
            {"assets": [one] * 2, "correlation": (1, 1.0000001, 1.0000001, 1)}, 1.0, 252.0
        )


@pytest.mark.parametrize("addition", ADDITIONS)
@pytest.mark.parametrize("name", SINGLE)
def test_every_corner_of_a_model_gives_finite_values_whatever_the_split(name, addition):
    for values in corners(name):
        plan = PathPlan(_model(name, values), PERIODS, 1, **ADDITIONS[addition])
        check_path(plan, f"{name} {values} {addition}")


@pytest.mark.parametrize("addition", BASKET_ADDITIONS)
def test_every_corner_of_a_basket_gives_finite_positive_prices_whatever_the_split(addition):
    for basket in baskets():
        plan = PathPlan(basket, PERIODS, 2, **ADDITIONS[addition])
        check_path(plan, f"{[a.model for a in basket.assets[:8]]} {basket.correlation[:8]} {addition}")


@pytest.mark.parametrize("bars", BAR_PERIODS)
@pytest.mark.parametrize("name", SINGLE)
def test_every_corner_of_a_model_gives_finite_bars_and_whole_volumes(name, bars):
    step_ns, interval_ns = BAR_PERIODS[bars]
    # Without ticks, the highest volume rate these bars allow (as requests check it); with the
    # finest ticks the default rate, with the coarsest none.
    most = min(VOLUME_RATE_MAX, VOLUME_MEAN_MAX / ((step_ns + interval_ns) / NS * (1 + MOVE_CAP)))
    check_volume_rate(most, step_ns + interval_ns)
    ranges = {**RANGES[name], "trading_days_per_year": PERIOD["trading_days_per_year"]}
    for ends in itertools.product(*ranges.values()):
        values = {**dict(zip(ranges, ends, strict=True)), "delta": step_ns / DAY_NS}
        for tick, rate in ((0.0, most), (TICK_SIZE_MIN, 10.0), (TICK_SIZE_MAX, 0.0)):
            plan = PathPlan(
                _model(name, values),
                BAR_STEPS,
                3,
                time=TimeAxis(0, step_ns),
                bar_interval_ns=interval_ns,
                tick_size=tick,
                volume_rate=rate,
            )
            check_path(plan, f"{name} {values} {bars} tick {tick} rate {rate}")


def test_heston_variance_stays_finite_over_long_paths_at_its_widest_corners():
    # The corners that drive the variance furthest (kappa t = 1e7, or no mean reversion at all).
    for kappa, rho in itertools.product((0.0, 1e3), (-1.0, 1.0)):
        model = Heston(1e12, 10.0, 100.0, kappa, 100.0, 100.0, rho, delta=1e4, trading_days_per_year=1.0)
        stepper = model.stepper(make_rng(4))
        for _ in range(4):
            prices = stepper.next_block(5_000)
            assert math.isfinite(stepper.variance), (kappa, rho)
            assert ((prices >= PRICE_FLOOR) & (prices <= PRICE_CEILING)).all(), (kappa, rho)


def test_the_band_survives_the_finest_ticks_and_the_widest_quotes():
    # Rounding to a tick of 17 significant digits multiplies by up to 1e25 on the way, and the
    # widest quote (1000 x a period's volatility of 1000) by 5e5: at 1e280 this overflowed.
    edges = np.array([PRICE_FLOOR, PRICE_CEILING])
    for tick in (
        TICK_SIZE_MIN,
        math.nextafter(TICK_SIZE_MIN, 1),
        LONG_TICK,
        math.nextafter(TICK_SIZE_MAX, 0),
    ):
        assert np.isfinite(TickGrid(tick, True).round(edges)).all()
        for spread in ({"spread_bps": 1e4}, {"spread_vol": 1e3, "step_sd": 1e3}):
            for side in quotes(edges, tick, **spread):
                assert np.isfinite(side).all(), (tick, spread)


# --- the band: the plain product inside it, clamped outside it, and back -------------------------


def plain_maths(model: Model, periods: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``periods`` prices as the models computed them before the band (``start *
    exp(log-return)``, which may overflow to inf or round to 0), from the same draws, and each
    price's exact log."""
    if isinstance(model, Heston):
        return _heston_maths(model, periods, seed)
    if isinstance(model, Merton):
        return _merton_maths(model, periods, seed)
    if isinstance(model, Gbm):
        start, drift, vol, factor = model.start_price, model.log_drift, model.log_volatility, None
    else:
        gbms = [a.model for a in model.assets]
        start = np.array([m.start_price for m in gbms])
        drift = np.array([m.log_drift for m in gbms])
        vol = np.array([m.log_volatility for m in gbms])
        factor = model.factor
    logs = np.zeros((periods, *np.shape(start)))
    make_rng(seed).standard_normal(out=logs[1:])
    if factor is not None:
        logs[1:] = correlate(logs[1:], np.ascontiguousarray(factor.T))
    logs[1:] *= vol
    logs[1:] += drift
    np.add.accumulate(logs, axis=0, out=logs)
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(logs) * start, logs + np.log(start)


def _merton_maths(m: Merton, periods: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    t, n = m.years, periods - 1
    diffusion, counts, sizes = make_rng(seed).spawn(3)
    z, jumps, y = (
        diffusion.standard_normal(n),
        counts.poisson(m.jump_intensity * t, n),
        sizes.standard_normal(n),
    )
    drift = (m.mu - m.sigma**2 / 2 - m.jump_intensity * m.jump_compensator) * t
    steps = drift + m.sigma * math.sqrt(t) * z + m.jump_mean * jumps + m.jump_stdev * np.sqrt(jumps) * y
    logs = np.add.accumulate(np.concatenate(([0.0], steps)))
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(logs) * m.start_price, logs + np.log(m.start_price)


def _heston_maths(m: Heston, periods: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    t = m.years
    shocks = make_rng(seed).standard_normal((periods - 1, 2))
    z_var = m.rho * shocks[:, 0] + math.sqrt(1 - m.rho**2) * shocks[:, 1]
    logs = np.empty(periods)
    log_price = logs[0] = math.log(m.start_price)
    v = m.v0
    for i in range(periods - 1):
        vp = v if v > 0.0 else 0.0
        root = math.sqrt(vp)
        log_price += (m.mu - vp / 2) * t + root * math.sqrt(t) * shocks[i, 0]
        v += m.kappa * (m.theta - vp) * t + m.xi * root * math.sqrt(t) * z_var[i]
        logs[i + 1] = log_price
    with np.errstate(over="ignore", under="ignore"):
        prices = np.exp(logs)
    prices[0] = m.start_price
    return prices, logs


def _assets(*specs: tuple[float, float, float], **period: float) -> tuple[Asset, ...]:
    return tuple(Asset(f"S{i}", Gbm(*spec, **period)) for i, spec in enumerate(specs))


# Requests anyone makes: their paths never come near the band, and must stay bit for bit.
ORDINARY = [
    (Gbm(70.0, 0.05, 0.3), 200_000),
    (Gbm(1e12, -10.0, 2.0, delta=5.0), 2_000),
    (Gbm(1e-300, 0.05, 0.3), 5_000),  # tiny, but positive before, so the same now
    (Gbm(1e-310, 0.05, 0.3), 5_000),  # subnormal start prices too
    (Gbm(TINY, 0.0, 0.0), 50),
    (Gbm(70.0, 10.0, 10.0, delta=1 / 390), 20_000),
    (Merton(70.0, 0.05, 0.3, 5.0, -0.02, 0.05), 20_000),
    (Merton(70.0, 0.05, 0.3, 1e4, 0.01, 0.02), 5_000),
    (Heston(70.0, 0.05, 0.09, 2.0, 0.09, 0.3, -0.7), 5_000),
    (Heston(1e-300, 0.05, 1.0, 5.0, 1.0, 3.0, -0.9), 3_000),
    (
        CorrelatedGbm(
            _assets((50, 0.05, 0.2), (80, 0.02, 0.4), (1e-3, -0.1, 1.5)),
            (1, 0.8, 0.3, 0.8, 1, 0.5, 0.3, 0.5, 1),
        ),
        20_000,
    ),
]
# Paths that leave the band and come back: driftless walks of about 50 (log) a step.
WILD_PERIOD = {"delta": 125.0, "trading_days_per_year": 1.0}
WILD = [
    (Gbm(1.0, 10.0, math.sqrt(20.0), **WILD_PERIOD), 3_000),
    (Gbm(TINY, 10.0, math.sqrt(20.0), **WILD_PERIOD), 3_000),
    # Jumps of mean log -4.5 (so E[e^Y] = 1) 275 times a step, against a drift of 9.9 x 125.
    (Merton(1.0, 9.9, 0.0, 2.2, -4.5, 3.0, **WILD_PERIOD), 3_000),
    (Heston(1.0, 10.0, 20.0, 0.0, 20.0, 0.0, 0.0, **WILD_PERIOD), 3_000),
    (
        CorrelatedGbm(
            _assets((1e12, 10.0, math.sqrt(20.0)), (1.0, 10.0, math.sqrt(20.0)), **WILD_PERIOD),
            (1, -1, -1, 1),
            **WILD_PERIOD,
        ),
        3_000,
    ),
]


def _blocks(model: Model, periods: int, seed: int) -> np.ndarray:
    stepper = model.stepper(make_rng(seed))
    parts = [stepper.next_block(size) for size in (1, 2, periods // 3)]
    parts.append(stepper.next_block(periods - stepper.position))
    return np.concatenate(parts)


@pytest.mark.parametrize(
    ("model", "periods"), ORDINARY, ids=lambda x: type(x).__name__ if isinstance(x, Model) else str(x)
)
def test_paths_inside_the_band_are_the_plain_product_bit_for_bit(model, periods):
    plain, _ = plain_maths(model, periods, 5)
    assert ((plain >= PRICE_FLOOR) & (plain <= PRICE_CEILING)).all()
    assert model.stepper(make_rng(5)).next_block(periods).tobytes() == plain.tobytes()
    assert _blocks(model, periods, 5).tobytes() == plain.tobytes()


@pytest.mark.parametrize(
    ("model", "periods"), WILD, ids=lambda x: type(x).__name__ if isinstance(x, Model) else str(x)
)
def test_a_path_is_clamped_at_the_edges_of_the_band_and_comes_back_unchanged(model, periods):
    plain, exact = plain_maths(model, periods, 6)
    inside = (plain > 0) & (plain <= PRICE_CEILING)
    with np.errstate(over="ignore", under="ignore"):
        clamped = np.clip(np.exp(exact), PRICE_FLOOR, PRICE_CEILING)
    expected = np.where(inside, plain, clamped)
    prices = model.stepper(make_rng(6)).next_block(periods)
    # The premise (of this seed): the plain product overflows, passes the ceiling or rounds to
    # 0, and comes back, twice or more. Meanwhile the price is the exact one, clamped (with a
    # start of 5e-324 the product overflows where the price is still ordinary).
    assert (inside[1:] & ~inside[:-1]).sum() >= 2
    assert prices.tobytes() == expected.tobytes()
    assert _blocks(model, periods, 6).tobytes() == expected.tobytes()


# --- over a real server --------------------------------------------------------------------------


def test_get_gbm_prices_of_the_issue_gives_the_ceiling_not_inf(stub):
    request = pb.GbmRequest(
        periods=3, start_price=1e12, mu=10, sigma=0, delta=1e4, trading_days_per_year=1, seed=1
    )
    assert list(stub.GetGbmPrices(request).prices) == [1e12, PRICE_CEILING, PRICE_CEILING]


@pytest.mark.parametrize("mu", [-10.0, 10.0])
def test_a_thousand_prices_at_the_widest_corner_are_positive_finite_and_replay_in_chunks(md, mu):
    request = path_request(
        "gbm",
        1_000,
        1e4,
        model_params={"start_price": 1e12, "mu": mu, "sigma": 10.0},
        trading_days_per_year=1.0,
        seed=9,
    )
    prices = md.get_prices(request).prices
    assert ((prices >= PRICE_FLOOR) & (prices <= PRICE_CEILING)).all()
    request.chunk_size = 7
    with md.stream_prices(request) as stream:
        assert join(stream).prices.tobytes() == prices.tobytes()


@pytest.mark.parametrize(
    ("model", "params"),
    [
        # Both climb 1e5 (log) a period to the ceiling; Heston's theta gives the widest quotes there.
        (
            "merton",
            {"start_price": 1e12, "mu": 10, "sigma": 0, "jump_intensity": 0, "jump_mean": 5, "jump_stdev": 5},
        ),
        (
            "heston",
            {"start_price": 1e12, "mu": 10, "v0": 0, "kappa": 0, "theta": 100, "xi": 0, "rho": -1},
        ),
        ("arithmetic", {"start_price": 1e12, "mu": 1e12, "sigma": 1e12}),
        ("ornstein_uhlenbeck", {"start": -1e12, "mean": 1e12, "kappa": TINY, "sigma": 1e12}),
    ],
)
def test_get_prices_at_a_corner_with_ticks_and_quotes_is_finite(md, model, params):
    request = path_request(
        model,
        500,
        1e4,
        model_params=params,
        trading_days_per_year=1.0,
        seed=10,
        tick_size=LONG_TICK,
        spread_volatility=1e3,
    )
    path = md.get_prices(request)
    for values in (path.prices, path.bid, path.ask):
        assert np.isfinite(values).all()
    assert not MODELS[model].positive or (path.prices > 0).all()


def test_the_cli_example_of_the_issue_prints_valid_json(python, server):
    example = "get --periods 3 --start-price 1e12 --mu 10 --sigma 0 --delta 10000 --trading-days-per-year 1"
    done = run_client(python, "--target", server.target, *example.split())
    assert done.returncode == 0, done.stderr

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    assert json.loads(done.stdout, parse_constant=refuse)["result"] == [1e12, PRICE_CEILING, PRICE_CEILING]
