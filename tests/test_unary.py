"""GetGbmPrices over a real server, and its agreement with the stream."""

from __future__ import annotations

import numpy as np
import pytest

from client import gbm_request
from marketdata.v1 import market_data_pb2
from server.limits import MAX_PRICES_PER_MESSAGE
from server.sim.models import Gbm, gbm_path


def test_original_example(md):
    path = md.get_gbm_prices(periods=100, start_price=70, mu=0.05, sigma=0.3, delta=1, symbol="XYZ")
    assert path.prices.shape == (100,)
    assert path.prices[0] == 70.0
    assert (path.prices > 0).all()
    assert path.symbol == "XYZ"
    # The server used the generator with the seed it reports.
    expected = gbm_path(Gbm(70.0, 0.05, 0.3, delta=1.0), 100, seed=path.seed)
    assert path.prices.tobytes() == expected.tobytes()


def test_without_seed_the_server_draws_one_that_replays_the_path(md):
    first = md.get_gbm_prices(periods=500, start_price=70, mu=0.05, sigma=0.3)
    second = md.get_gbm_prices(periods=500, start_price=70, mu=0.05, sigma=0.3)
    assert first.seed != second.seed
    assert not np.array_equal(first.prices, second.prices)
    replay = md.get_gbm_prices(periods=500, start_price=70, mu=0.05, sigma=0.3, seed=first.seed)
    assert replay.seed == first.seed
    assert replay.prices.tobytes() == first.prices.tobytes()


def test_seed_zero_is_a_seed(stub):
    reply = stub.GetGbmPrices(gbm_request(50, 70, 0.05, 0.3, seed=0))
    assert reply.seed == 0
    assert list(reply.prices) == gbm_path(Gbm(70, 0.05, 0.3), 50, seed=0).tolist()


def test_unset_trading_days_per_year_means_252(md):
    unset = md.get_gbm_prices(periods=300, start_price=70, mu=0.05, sigma=0.3, seed=4)
    explicit = md.get_gbm_prices(
        periods=300, start_price=70, mu=0.05, sigma=0.3, seed=4, trading_days_per_year=252
    )
    crypto = md.get_gbm_prices(
        periods=300, start_price=70, mu=0.05, sigma=0.3, seed=4, trading_days_per_year=365
    )
    assert unset.prices.tobytes() == explicit.prices.tobytes()
    assert not np.array_equal(unset.prices[1:], crypto.prices[1:])


def test_largest_unary_reply_fits_a_default_client(md):
    path = md.get_gbm_prices(periods=MAX_PRICES_PER_MESSAGE, start_price=70, mu=0.05, sigma=0.3, seed=6)
    assert path.prices.shape == (MAX_PRICES_PER_MESSAGE,)
    assert market_data_pb2.GbmPrices(prices=path.prices, seed=2**64 - 1, symbol="x" * 128).ByteSize() <= (
        4 * 1024 * 1024
    )


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000, 16_384, None])
def test_unary_equals_concatenated_stream_byte_for_byte(stub, chunk_size):
    request = gbm_request(5_000, 70, 0.05, 0.3, seed=77, chunk_size=chunk_size)
    unary = stub.GetGbmPrices(request)
    chunks = list(stub.StreamGbmPrices(request))
    streamed = b"".join(np.array(c.prices, dtype=np.float64).tobytes() for c in chunks)
    assert streamed == np.array(unary.prices, dtype=np.float64).tobytes()
    # Also as serialized protobuf: the same doubles on the wire.
    rebuilt = market_data_pb2.GbmPrices(seed=77)
    for c in chunks:
        rebuilt.prices.extend(c.prices)
    assert rebuilt.SerializeToString() == unary.SerializeToString()
