"""Every bad input gets INVALID_ARGUMENT naming the field and its accepted range."""

from __future__ import annotations

import math

import grpc
import pytest

from client import field_violations, gbm_request
from marketdata.v1 import market_data_pb2_grpc
from server.limits import MAX_PRICES_PER_MESSAGE, Limits
from tests.conftest import ServerThread

GOOD = {"periods": 100, "start_price": 70.0, "mu": 0.05, "sigma": 0.3, "delta": 1.0}

# (field named in the error, request overrides, text the accepted range shows)
BAD_INPUTS = [
    ("periods", {"periods": 0}, "[1, "),
    ("periods", {"periods": 10**12 + 1}, "[1, 1000000000000]"),
    ("start_price", {"start_price": 0.0}, "(0, "),
    ("start_price", {"start_price": -5.0}, "(0, "),
    ("start_price", {"start_price": math.nan}, "finite"),
    ("start_price", {"start_price": math.inf}, "finite"),
    ("mu", {"mu": math.nan}, "finite"),
    ("mu", {"mu": -math.inf}, "finite"),
    ("mu", {"mu": 1e6}, "[-10, 10]"),
    ("sigma", {"sigma": -0.01}, "[0, 10]"),
    ("sigma", {"sigma": math.inf}, "finite"),
    ("delta", {"delta": 0.0}, "(0, 10000]"),
    ("delta", {"delta": -1.0}, "(0, 10000]"),
    ("delta", {"delta": math.nan}, "finite"),
    ("trading_days_per_year", {"trading_days_per_year": 0.0}, "[1, 1e+06]"),
    ("trading_days_per_year", {"trading_days_per_year": -252.0}, "[1, 1e+06]"),
    ("trading_days_per_year", {"trading_days_per_year": math.inf}, "finite"),
    ("chunk_size", {"chunk_size": 0}, f"[1, {MAX_PRICES_PER_MESSAGE}]"),
    ("chunk_size", {"chunk_size": MAX_PRICES_PER_MESSAGE + 1}, f"[1, {MAX_PRICES_PER_MESSAGE}]"),
    ("ticks_per_second", {"ticks_per_second": -1.0}, "[0, "),
    ("ticks_per_second", {"ticks_per_second": math.nan}, "finite"),
    ("symbol", {"symbol": "x" * 129}, "at most 128 bytes"),
]


def _check(error: grpc.RpcError, field: str, accepted: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()
    assert accepted in error.details()
    # The same, machine-readable, as a google.rpc.BadRequest detail.
    assert [f for f, _ in field_violations(error)] == [field]


@pytest.mark.parametrize(("field", "overrides", "accepted"), BAD_INPUTS)
def test_stream_rejects_bad_input(stub, field, overrides, accepted):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamGbmPrices(gbm_request(**(GOOD | overrides))))
    _check(info.value, field, accepted)


@pytest.mark.parametrize(
    ("field", "overrides", "accepted"),
    [b for b in BAD_INPUTS if b[0] not in ("chunk_size", "ticks_per_second", "periods")],
)
def test_unary_rejects_bad_input(stub, field, overrides, accepted):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetGbmPrices(gbm_request(**(GOOD | overrides)))
    _check(info.value, field, accepted)


@pytest.mark.parametrize("periods", [0, MAX_PRICES_PER_MESSAGE + 1, 10**9])
def test_unary_periods_out_of_range(stub, periods):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetGbmPrices(gbm_request(**(GOOD | {"periods": periods})))
    _check(info.value, "periods", f"[1, {MAX_PRICES_PER_MESSAGE}]")
    if periods > 0:
        assert "use StreamGbmPrices" in info.value.details()
        assert "4 MiB" in info.value.details()


def test_server_keeps_serving_after_bad_input(stub):
    for _, overrides, _ in BAD_INPUTS:
        with pytest.raises(grpc.RpcError):
            stub.GetGbmPrices(gbm_request(**(GOOD | overrides)), timeout=10)
    reply = stub.GetGbmPrices(gbm_request(**GOOD), timeout=10)
    assert len(reply.prices) == 100


def test_smaller_server_caps_are_enforced_and_reported():
    srv = ServerThread(Limits(max_periods=1_000, max_chunk_size=50, default_chunk_size=10))
    try:
        with grpc.insecure_channel(srv.target) as channel:
            stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                list(stub.StreamGbmPrices(gbm_request(**(GOOD | {"periods": 1_001}))))
            _check(info.value, "periods", "[1, 1000]")
            with pytest.raises(grpc.RpcError) as info:
                list(stub.StreamGbmPrices(gbm_request(**(GOOD | {"chunk_size": 51}))))
            _check(info.value, "chunk_size", "[1, 50]")
            chunks = list(stub.StreamGbmPrices(gbm_request(**(GOOD | {"periods": 25}))))
            assert [len(c.prices) for c in chunks] == [10, 10, 5]
    finally:
        srv.stop()
