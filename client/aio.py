"""asyncio flavour of the client, for strategies that run on an event loop.

async with AsyncMarketDataClient("127.0.0.1:50051") as md:
    async for event in md.subscribe(["ACME"]):
        ...
    async for event in md.subscribe(data=[data_subscription("order_book", ["ACME"])], numpy=True):
        keeper.apply(event)  # a client.BookKeeper
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import grpc
from grpc_health.v1 import health_pb2

from marketdata.v1 import market_data_pb2

from .base import BaseClient
from .requests import candle_interval, subscribe_request
from .security import aio_interceptors
from .streams import Event, SequenceGaps


class AsyncSubscription(SequenceGaps):
    """Async iterator of one Subscribe call's events (MarketEvents, or DecodedEvents with
    ``numpy=True``); counts ``gaps`` like Subscription."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self._call = call

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
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

    async def get_order_book(self, symbol: str, depth: int = 0) -> market_data_pb2.GetOrderBookResponse:
        """Like MarketDataClient.get_order_book."""
        request = market_data_pb2.GetOrderBookRequest(symbol=symbol, depth=depth)
        return await self._stub.GetOrderBook(request, timeout=self.timeout)

    async def get_trades(self, symbol: str, limit: int = 0) -> market_data_pb2.GetTradesResponse:
        """Like MarketDataClient.get_trades."""
        request = market_data_pb2.GetTradesRequest(symbol=symbol, limit=limit)
        return await self._stub.GetTrades(request, timeout=self.timeout)

    async def get_candles(
        self, symbol: str, interval: str | int = "1s", limit: int = 0
    ) -> market_data_pb2.GetCandlesResponse:
        """Like MarketDataClient.get_candles."""
        request = market_data_pb2.GetCandlesRequest(
            symbol=symbol, interval=candle_interval(interval), limit=limit
        )
        return await self._stub.GetCandles(request, timeout=self.timeout)

    def subscribe(
        self,
        symbols: Sequence[str] = (),
        *,
        data: Sequence[market_data_pb2.DataSubscription] = (),
        heartbeat_seconds: float | None = None,
        timeout: float | None = None,
        numpy: bool = False,
    ) -> AsyncSubscription:
        """Live prices (or the data types of ``data``), as an async iterator; ``numpy=True`` yields
        DecodedEvents, as MarketDataClient.subscribe does."""
        request = subscribe_request(symbols, heartbeat_seconds, data)
        call = self._subscribe_numpy if numpy else self._stub.Subscribe
        return AsyncSubscription(call(request, timeout=timeout))
