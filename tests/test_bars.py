"""OHLCV bars and quotes from fine paths: invariants and split independence."""

from __future__ import annotations

import numpy as np
import pytest

from server.sim.bars import INTERVALS, BarBuilder, interval_seconds, ohlcv
from server.sim.checks import ParameterError
from server.sim.models import Gbm, gbm_path
from server.sim.quotes import quotes
from server.sim.seeding import make_rng
from server.sim.volume import step_volumes

# One-second steps over 2.5 trading-ish days of seconds.
SECONDS = 200_000
PARAMS = Gbm(100.0, 0.05, 0.3, delta=1 / 23_400)  # one second of a 6.5 h day


@pytest.fixture(scope="module")
def path():
    prices = gbm_path(PARAMS, SECONDS, seed=4)
    times = np.arange(SECONDS, dtype=np.int64)
    r = np.concatenate(([0.0], np.diff(np.log(prices))))
    volumes = step_volumes(r, PARAMS.log_volatility, 1.0, 2.0, make_rng(5))
    return times, prices, volumes


@pytest.mark.parametrize("name", INTERVALS)
def test_bars_are_consistent(path, name):
    times, prices, volumes = path
    interval = interval_seconds(name)
    bars = ohlcv(times, prices, volumes, interval)
    assert len(bars) == -(-SECONDS // interval)
    assert (bars.start_time % interval == 0).all()
    assert (np.diff(bars.start_time) == interval).all()
    assert (bars.high >= np.maximum(bars.open, bars.close)).all()
    assert (bars.low <= np.minimum(bars.open, bars.close)).all()
    assert bars.volume.sum() == volumes.sum()
    assert bars.open[0] == prices[0] and bars.close[-1] == prices[-1]
    # Each bar's close is the next bar's previous price: no step is lost or doubled.
    assert (bars.close[:-1] == prices[bars.start_time[1:] - 1]).all()


@pytest.mark.parametrize("block", [1_000, 59_999, 131_072])
def test_bars_built_from_blocks_equal_bars_of_the_whole_path(path, block):
    times, prices, volumes = path
    whole = ohlcv(times, prices, volumes, 60)
    builder = BarBuilder(60)
    parts = [
        builder.add(times[i : i + block], prices[i : i + block], volumes[i : i + block])
        for i in range(0, SECONDS, block)
    ]
    parts.append(builder.flush())
    for field in ("start_time", "open", "high", "low", "close", "volume"):
        joined = np.concatenate([getattr(p, field) for p in parts])
        assert joined.tobytes() == getattr(whole, field).tobytes(), field


def test_big_moves_trade_more(path):
    times, prices, volumes = path
    r = np.abs(np.diff(np.log(prices)))
    big = r > np.quantile(r, 0.9)
    assert volumes[1:][big].mean() > volumes[1:][~big].mean()


def test_unknown_interval_is_refused():
    with pytest.raises(ParameterError, match="1s, 1m, 5m, 15m, 1h, 1d"):
        interval_seconds("2m")


def test_quotes_sit_on_the_grid_around_the_mid(path):
    _, prices, _ = path
    bid, ask = quotes(prices, 0.01, spread_bps=5)
    assert (bid <= prices).all() and (ask >= prices).all()
    assert (ask - bid >= 0.01 - 1e-9).all()
    np.testing.assert_allclose(bid / 0.01, np.round(bid / 0.01), atol=1e-6)
    np.testing.assert_allclose(ask / 0.01, np.round(ask / 0.01), atol=1e-6)
    wide_bid, wide_ask = quotes(prices, 0.01, spread_vol=50.0, step_sd=PARAMS.log_volatility)
    assert ((wide_ask - wide_bid) >= (ask - bid) - 1e-9).all()  # 50 step sds is about 60 bp here
    with pytest.raises(ParameterError):
        quotes(prices, 0.01)
