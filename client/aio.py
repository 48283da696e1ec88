"""asyncio flavour of the client, for strategies that run on an event loop.

async with AsyncMarketDataClient("127.0.0.1:50051") as md:
    async for event in md.subscribe(["ACME"]):
        ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import grpc

from marketdata.v1 import market_data_pb2

from .base import BaseClient
from .requests import subscribe_request
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

    _open_channel = staticmethod(grpc.aio.insecure_channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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
