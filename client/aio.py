"""asyncio flavour of the client, for strategies that run on an event loop.

async with AsyncMarketDataClient("127.0.0.1:50051") as md:
    async for event in md.subscribe(["ACME"]):
        ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType

import grpc

from client.api import (
    DEFAULT_TARGET,
    DEFAULT_UNARY_TIMEOUT,
    SequenceGaps,
    channel_options,
    channel_target,
)
from client.requests import subscribe_request
from marketdata.v1 import market_data_pb2, market_data_pb2_grpc


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


class AsyncMarketDataClient:
    """An asyncio channel to a MarketDataService; use ``async with``."""

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_UNARY_TIMEOUT,
        options: list[tuple[str, object]] | None = None,
    ) -> None:
        self.target = channel_target(target)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(self.target, options=channel_options(options))
        self._stub = market_data_pb2_grpc.MarketDataServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncMarketDataClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
