"""Wiring: builds the gRPC server, registers health and reflection, parses
flags, handles signals. The only module that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from server.requests import MAX_PRICES_PER_MESSAGE, Limits
from server.servicer import MarketDataServicer

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"].full_name
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_GRACE_SECONDS = 5.0


@dataclass
class RunningServer:
    """A started server and the parts a caller may need to reach."""

    server: grpc.aio.Server
    port: int
    servicer: MarketDataServicer
    health: health.aio.HealthServicer

    async def shutdown(self, grace: float) -> None:
        """Turn health NOT_SERVING, give open calls ``grace`` seconds, then stop."""
        _LOGGER.info("shutting down: health NOT_SERVING, %.1f s grace for open calls", grace)
        await self.health.enter_graceful_shutdown()
        self.servicer.begin_shutdown(grace)
        await self.server.stop(grace)
        _LOGGER.info("stopped")


async def start_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    limits: Limits | None = None,
    *,
    reuse_port: bool = False,
) -> RunningServer:
    """Start serving on ``host:port`` (port 0 picks a free one) and report SERVING."""
    # gRPC turns SO_REUSEPORT on by default on Linux, so a second server on a
    # busy port would silently share it; a single server must fail instead.
    options = [("grpc.so_reuseport", 1 if reuse_port else 0)]
    server = grpc.aio.server(options=options)
    servicer = MarketDataServicer(limits)
    market_data_pb2_grpc.add_MarketDataServiceServicer_to_server(servicer, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _LOGGER.info("listening on %s:%d", host, bound)
    return RunningServer(server=server, port=bound, servicer=servicer, health=health_servicer)


async def serve(host: str, port: int, limits: Limits, grace: float) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(host, port, limits)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await running.shutdown(grace)


def build_parser() -> argparse.ArgumentParser:
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="marketdata-server",
        description="Serve synthetic market prices (marketdata.v1.MarketDataService) over gRPC.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default %(default)s)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default %(default)s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="seconds open calls get to finish on SIGTERM/SIGINT (default %(default)s)",
    )
    parser.add_argument(
        "--max-periods",
        type=int,
        default=defaults.max_periods,
        help="largest periods a request may ask for (default %(default)s)",
    )
    parser.add_argument(
        "--max-chunk-size",
        type=int,
        default=defaults.max_chunk_size,
        help=f"largest chunk_size, at most {MAX_PRICES_PER_MESSAGE} (default %(default)s)",
    )
    parser.add_argument(
        "--default-chunk-size",
        type=int,
        default=defaults.default_chunk_size,
        help="prices per stream message when chunk_size is unset (default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535], got {args.port}")
    if args.grace < 0:
        parser.error(f"--grace must be >= 0 seconds, got {args.grace}")
    try:
        limits = Limits(
            max_periods=args.max_periods,
            max_chunk_size=args.max_chunk_size,
            default_chunk_size=args.default_chunk_size,
        )
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, limits, args.grace))
    except OSError as err:
        _LOGGER.error("%s", err)
        return 1
    return 0
