"""ListInstruments and GetLastPrices over a real server, with the market clock under test control."""

from __future__ import annotations

import grpc
import pytest

from client import field_violations
from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from server.sim.market import Market
from server.sim.universe import DEFAULT_MARKET, Instrument, MarketConfig
from tests.conftest import ServerThread
from tests.server_process import run_server

SMALL = MarketConfig(
    instruments=(Instrument("AAA", 100.0, 0.05, 0.2), Instrument("BBB", 20.0, 0.0, 0.4, tick_size=0.05)),
    seed=11,
    wall_seconds_per_tick=0.5,
    speed=5.0,
)


@pytest.fixture
def market_server():
    srv = ServerThread(market=SMALL)
    yield srv
    srv.stop()


def _stub(srv: ServerThread, channel: grpc.Channel):
    return market_data_pb2_grpc.MarketDataServiceStub(channel)


def test_list_instruments_describes_the_universe_and_clock(market_server):
    with grpc.insecure_channel(market_server.target) as channel:
        reply = _stub(market_server, channel).ListInstruments(market_data_pb2.ListInstrumentsRequest())
    assert [i.symbol for i in reply.instruments] == ["AAA", "BBB"]
    assert reply.instruments[1].tick_size == 0.05
    assert reply.instruments[0].sigma == 0.2
    assert reply.wall_seconds_per_tick == pytest.approx(0.1)
    assert reply.seed == 11


def test_instruments_of_other_models_are_listed_and_served():
    rate = Instrument.of_model(
        "RATE", "ornstein_uhlenbeck", {"start": 0.5, "mean": -0.2, "kappa": 50, "sigma": 2}
    )
    config = MarketConfig(instruments=(*SMALL.instruments, rate), seed=12)
    srv = ServerThread(market=config)
    reference = Market(config)
    try:
        with grpc.insecure_channel(srv.target) as channel:
            stub = _stub(srv, channel)
            listed = stub.ListInstruments(market_data_pb2.ListInstrumentsRequest())
            srv.advance_market(40)
            last = stub.GetLastPrices(market_data_pb2.GetLastPricesRequest(symbols=["RATE"]))
    finally:
        srv.stop()
    assert [i.model for i in listed.instruments] == ["gbm", "gbm", "ornstein_uhlenbeck"]
    assert (listed.instruments[2].start_price, listed.instruments[2].sigma) == (0.5, 2.0)
    for _ in range(40):
        expected = reference.tick()
    assert last.prices[0].price == expected.prices[2]


def test_last_prices_follow_the_market_clock_and_replay_by_seed(market_server):
    reference = Market(SMALL)  # the same seed: the same market, tick for tick
    with grpc.insecure_channel(market_server.target) as channel:
        stub = _stub(market_server, channel)
        opening = stub.GetLastPrices(market_data_pb2.GetLastPricesRequest())
        assert opening.sequence == 0
        assert [(p.symbol, p.price) for p in opening.prices] == [("AAA", 100.0), ("BBB", 20.0)]
        market_server.advance_market(25)
        for _ in range(25):
            expected = reference.tick()
        later = stub.GetLastPrices(market_data_pb2.GetLastPricesRequest(symbols=["BBB", "AAA"]))
    assert later.sequence == 25
    assert [p.symbol for p in later.prices] == ["BBB", "AAA"]
    assert [p.price for p in later.prices] == [expected.prices[1], expected.prices[0]]
    assert later.exchange_time.ToNanoseconds() >= opening.exchange_time.ToNanoseconds()


def test_unknown_symbols_are_refused_with_their_names(market_server):
    with grpc.insecure_channel(market_server.target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _stub(market_server, channel).GetLastPrices(
                market_data_pb2.GetLastPricesRequest(symbols=["AAA", "NOPE", "ZZZ"])
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown symbols: NOPE, ZZZ" in info.value.details()
    assert [f for f, _ in field_violations(info.value)] == ["symbols"]


def test_the_server_clock_ticks_the_market():
    fast = MarketConfig(instruments=SMALL.instruments, wall_seconds_per_tick=0.001)
    srv = ServerThread(market=fast, market_clock=True)
    try:
        with grpc.insecure_channel(srv.target) as channel:
            stub = _stub(srv, channel)
            # A tick is due every millisecond: a few hundred calls see it move.
            for _ in range(500):
                if stub.GetLastPrices(market_data_pb2.GetLastPricesRequest(), timeout=5).sequence > 0:
                    break
            else:
                pytest.fail("the market clock never ticked")
    finally:
        srv.stop()


def test_a_seed_the_server_drew_is_never_revealed(server):
    # The default market names no seed: the server drew one, and telling it would let any
    # client compute every future price (a contest, a game or a class exercise ruined).
    with grpc.insecure_channel(server.target) as channel:
        reply = _stub(server, channel).ListInstruments(market_data_pb2.ListInstrumentsRequest())
    assert not reply.HasField("seed")
    assert server.running.servicer.feed.market.seed not in (reply.seed, None)


def test_default_market_is_served_when_no_file_is_given(server):
    with grpc.insecure_channel(server.target) as channel:
        reply = _stub(server, channel).ListInstruments(market_data_pb2.ListInstrumentsRequest())
    assert tuple(i.symbol for i in reply.instruments) == DEFAULT_MARKET.symbols


def test_server_refuses_a_bad_market_file_at_start(python, tmp_path):
    bad = tmp_path / "market.toml"
    bad.write_text('[[instrument]]\nsymbol = "A"\nstart_price = 1\nsigma = -1\n')
    done = run_server(python, "--port", "0", "--market", str(bad))
    assert done.returncode == 2
    assert str(bad) in done.stderr
    assert "sigma must be in [0, 10]" in done.stderr


def test_feeds_with_one_seed_and_epoch_publish_the_same_ticks_whenever_they_start():
    # What --workers relies on: each worker's feed computes the same market.
    from server.feed import MarketFeed

    early = MarketFeed(SMALL, seed=9, epoch=1000.0)
    late = MarketFeed(SMALL, seed=9, epoch=1000.0)
    interval = SMALL.wall_interval
    for n in range(1, 8):
        early.catch_up(1000.0 + n * interval)
    assert late.catch_up(1000.0 + 7.5 * interval) == 6  # started late: six ticks computed silently
    assert early.last.sequence == late.last.sequence == 7
    assert early.last.prices.tobytes() == late.last.prices.tobytes()
    assert early.exchange_time == late.exchange_time == 1000.0 + 7 * interval
    assert late.catch_up(1000.0 + 7.9 * interval) == 0
    assert late.last.sequence == 7  # nothing new is due yet
