"""asyncio flavour of the client, for strategies that run on an event loop.

async with AsyncMarketDataClient("127.0.0.1:50051") as md:
    async for event in md.subscribe(["ACME"]):
        ...
    async for event in md.subscribe(data=[data_subscription("order_book", ["ACME"])], numpy=True):
        keeper.apply(event)  # a client.BookKeeper
    async with md.manage_subscription(numpy=True) as managed:
        await managed.subscribe(["ACME"], data_type="order_book", depth=5)
        async for event in managed:
            ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import grpc
from grpc_health.v1 import health_pb2

from marketdata.v1 import market_data_pb2

from .base import BaseClient
from .requests import add_symbols_request, candle_interval, remove_symbols_request, subscribe_request
from .security import aio_interceptors
from .streams import Event, SequenceGaps


class AsyncSubscription(SequenceGaps, AbstractAsyncContextManager):
    """Async iterator of one Subscribe call's events (MarketEvents, or DecodedEvents with
    ``numpy=True``); counts ``gaps`` like Subscription. Leaving an ``async with`` block
    cancels the call."""

    def __init__(self, call: grpc.aio.UnaryStreamCall | grpc.aio.StreamStreamCall) -> None:
        self._call = call

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for event in self._call:
            yield self._count(event)

    def cancel(self) -> None:
        self._call.cancel()

    async def __aexit__(self, *exc_info: object) -> None:
        self.cancel()


class AsyncManagedSubscription(AsyncSubscription):
    """A ManageSubscription call on the event loop, like ManagedSubscription: ``await
    subscribe(...)`` and ``await unsubscribe(...)`` while another task (or the same one, in
    between) reads its events with ``async for``. Once the call has ended, the next change
    raises its error (grpc.aio.AioRpcError), or asyncio.InvalidStateError after a cancel."""

    async def subscribe(
        self,
        symbols: Sequence[str],
        *,
        data_type: str | int | None = None,
        depth: int = 0,
        heartbeat_seconds: float | None = None,
    ) -> None:
        """Add ``symbols`` for ``data_type``; ``depth`` levels a side for "order_book" (0: 10)."""
        await self._call.write(add_symbols_request(symbols, data_type, depth, heartbeat_seconds))

    async def unsubscribe(self, symbols: Sequence[str], *, data_type: str | int | None = None) -> None:
        """Remove ``symbols`` from ``data_type``."""
        await self._call.write(remove_symbols_request(symbols, data_type))


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

    def manage_subscription(
        self, *, timeout: float | None = None, numpy: bool = False
    ) -> AsyncManagedSubscription:
        """A subscription whose symbols and data types change while it runs; it starts with none.
        ``numpy=True`` yields DecodedEvents, as for subscribe."""
        call = self._manage_numpy if numpy else self._stub.ManageSubscription
        return AsyncManagedSubscription(call(timeout=timeout))
