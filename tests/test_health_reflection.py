"""Standard discovery: grpc.health.v1 reports SERVING, reflection lists the API."""

from __future__ import annotations

from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "marketdata.v1.MarketDataService"


def test_health_reports_serving_for_the_server_and_the_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {SERVICE, "grpc.health.v1.Health"} <= services
    service = DescriptorPool(database).FindServiceByName(SERVICE)
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {
        "GetGbmPrices",
        "StreamGbmPrices",
        "GetPrices",
        "StreamPrices",
        "ListInstruments",
        "GetLastPrices",
        "Subscribe",
        "ManageSubscription",
        "GetOrderBook",
        "GetTrades",
        "GetCandles",
    }
    assert methods["StreamGbmPrices"].output_type.full_name == "marketdata.v1.GbmPriceChunk"
    assert "seed" in methods["GetGbmPrices"].input_type.fields_by_name
