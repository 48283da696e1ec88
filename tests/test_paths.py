"""GetPrices / StreamPrices: every model over a real server, replay and chunk invariance."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from client import field_violations, gbm_request
from marketdata.v1 import market_data_pb2 as pb
from server.wire import message_field

MODELS = {
    "gbm": pb.GbmModel(start_price=70, mu=0.05, sigma=0.3),
    "arithmetic": pb.ArithmeticModel(start_price=70, mu=2.0, sigma=5.0),
    "merton": pb.MertonModel(
        start_price=70, mu=0.05, sigma=0.2, jump_intensity=20, jump_mean=-0.02, jump_stdev=0.04
    ),
    "heston": pb.HestonModel(start_price=70, mu=0.05, v0=0.04, kappa=2, theta=0.04, xi=0.3, rho=-0.6),
    "ornstein_uhlenbeck": pb.OrnsteinUhlenbeckModel(start=1.0, mean=1.5, kappa=4.0, sigma=0.3),
}


def _request(model: str, **fields) -> pb.PathRequest:
    request = pb.PathRequest(
        periods=fields.pop("periods", 5_000), delta=1.0, seed=fields.pop("seed", 21), **fields
    )
    getattr(request, model).CopyFrom(MODELS[model])
    return request


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("chunk_size", [1, 999, None])
def test_stream_equals_unary_for_every_model(md, model, chunk_size):
    if chunk_size == 1:
        request = _request(model, periods=300, chunk_size=1)
    else:
        request = _request(model, chunk_size=chunk_size)
    whole = md.get_prices(request)
    with md.stream_prices(request) as stream:
        streamed = np.concatenate([c.prices for c in stream])
    assert streamed.tobytes() == whole.prices.tobytes()
    assert whole.seed == 21
    start = MODELS[model].start if model == "ornstein_uhlenbeck" else MODELS[model].start_price
    assert whole.prices[0] == start
    assert np.isfinite(whole.prices).all()


def test_gbm_through_the_general_request_equals_get_gbm_prices(md, stub):
    general = md.get_prices(_request("gbm", periods=1_000, seed=8))
    classic = stub.GetGbmPrices(gbm_request(1_000, 70, 0.05, 0.3, seed=8))
    assert general.prices.tolist() == list(classic.prices)


def test_general_replies_parse_with_the_generated_classes(channel):
    call = channel.unary_unary(
        "/marketdata.v1.MarketDataService/GetPrices", request_serializer=pb.PathRequest.SerializeToString
    )
    reply = pb.Prices.FromString(call(_request("heston", periods=10)))
    assert len(reply.prices) == 10 and reply.seed == 21


@pytest.mark.parametrize(
    ("model", "override", "field"),
    [
        ("merton", {"jump_stdev": -1.0}, "merton.jump_stdev"),
        ("heston", {"rho": 2.0}, "heston.rho"),
        ("ornstein_uhlenbeck", {"kappa": 0.0}, "ornstein_uhlenbeck.kappa"),
        ("arithmetic", {"sigma": float("nan")}, "arithmetic.sigma"),
    ],
)
def test_bad_model_parameters_name_the_field_path(stub, model, override, field):
    request = _request(model)
    for name, value in override.items():
        setattr(getattr(request, model), name, value)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetPrices(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)
    assert [f for f, _ in field_violations(info.value)] == [field]


def test_a_request_without_a_model_is_refused(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetPrices(pb.PathRequest(periods=10, delta=1.0))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "set exactly one of gbm, arithmetic, merton, heston, ornstein_uhlenbeck" in info.value.details()


def test_general_unary_has_the_same_size_cap(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetPrices(_request("gbm", periods=10**7))
    assert "use StreamPrices" in info.value.details()


@pytest.mark.parametrize(("model", "field"), [("ornstein_uhlenbeck", "start"), ("arithmetic", "start_price")])
def test_a_negative_zero_is_answered_as_sent_whatever_came_before(stub, model, field):
    # 0.0 and -0.0 are equal to Python but not to the path they start: a reply must never
    # depend on which of the two an earlier caller sent.
    def first_value(zero: float) -> float:
        request = _request(model, periods=3)
        setattr(getattr(request, model), field, zero)
        return stub.GetPrices(request).prices[0]

    signs = [math.copysign(1.0, first_value(zero)) for zero in (-0.0, 0.0, -0.0, 0.0)]
    assert signs == [-1.0, 1.0, -1.0, 1.0]


def test_a_basket_of_millions_of_assets_is_refused_by_its_count(stub):
    # Two million empty assets fit one 4 MiB request; the count is refused before any is read.
    assets = message_field(1, b"") * 2_000_000  # CorrelatedGbmModel.assets, an empty entry each
    number = pb.PathRequest.DESCRIPTOR.fields_by_name["correlated_gbm"].number
    data = pb.PathRequest(periods=2, delta=1.0, seed=1).SerializeToString() + message_field(number, assets)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetPrices(pb.PathRequest.FromString(data))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "correlated_gbm.assets must hold 1 to 64 instruments, got 2000000"
