"""asyncio flavour of the client, for strategies that run on an event loop.

async with AsyncMarketDataClient("127.0.0.1:50051") as md:
    async for event in md.subscribe(["ACME"]):
        ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import grpc
from grpc_health.v1 import health_pb2

from marketdata.v1 import market_data_pb2

from .base import BaseClient
from .requests import subscribe_request
from .security import aio_interceptors
from .streams import SequenceGaps


class AsyncSubscription(SequenceGaps):
    """Async iterator of one Subscribe call's MarketEvents; counts ``gaps`` like Subscription."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self._call = call

    def __aiter__(self) -> AsyncIterator[market_data_pb2.MarketEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[market_data_pb2.MarketEvent]:
        async for event in self._call:
            yield self._count(event)

    def cancel(self) -> None:
        self._call.cancel()


class AsyncMarketDataClient(BaseClient, AbstractAsyncContextManager):
    """An asyncio client of a MarketDataService; use ``async with``.

    Takes the same arguments as MarketDataClient (see BaseClient).
    """

    def _open_channel(self, target, options, credentials, metadata) -> grpc.aio.Channel:
        interceptors = aio_interceptors(metadata) if metadata else None
        if credentials is None:
            return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)

    async def close(self) -> None:
        await self._channel.close()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def check_health(self, service: str = "") -> str:
        """Like MarketDataClient.check_health."""
        reply = await self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def get_last_prices(self, symbols: Sequence[str] = ()) -> market_data_pb2.LastPrices:
        """The last price of ``symbols`` (every instrument when empty), all at one tick."""
        return await self._stub.GetLastPrices(
            market_data_pb2.GetLastPricesRequest(symbols=list(symbols)), timeout=self.timeout
        )

    def subscribe(
        self,
        symbols: Sequence[str] = (),
        *,
        heartbeat_seconds: float | None = None,
        timeout: float | None = None,
    ) -> AsyncSubscription:
        """Live prices: a snapshot, then an update per tick, as an async iterator."""
        request = subscribe_request(symbols, heartbeat_seconds)
        return AsyncSubscription(self._stub.Subscribe(request, timeout=timeout))
