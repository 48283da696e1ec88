"""The floor: the same grpc.aio server stack with a handler that does nothing.

It serves GetGbmPrices's method path, parses the request as the real server
does, and answers an empty reply, so any time above this is the service's own.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from marketdata.v1 import market_data_pb2


async def _empty(request: market_data_pb2.GbmRequest, context: grpc.aio.ServicerContext) -> bytes:
    return b""


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(
        _empty,
        request_deserializer=market_data_pb2.GbmRequest.FromString,
        response_serializer=lambda data: data,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("marketdata.v1.MarketDataService", {"GetGbmPrices": handler}),)
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
