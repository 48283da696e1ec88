"""MarketDataClient: synthetic prices as numpy arrays, over gRPC.

    with MarketDataClient("127.0.0.1:50051") as md:
        path = md.get_gbm_prices(periods=100, start_price=70, mu=0.05, sigma=0.3)
        with md.stream_gbm_prices(periods=10**7, start_price=70, mu=0.05, sigma=0.3) as stream:
            for chunk in stream:
                ...  # chunk.prices is a numpy array starting at chunk.offset

Prices arrive as read-only float64 arrays decoded straight from the message
bytes (copy one to modify it). Errors surface as ``grpc.RpcError`` with the server's status code and message;
``client.field_violations`` lists the fields an INVALID_ARGUMENT named.

Order books and trades of the live market:

    keeper = BookKeeper()
    data = [data_subscription("order_book", ["ACME"], depth=10), data_subscription("trades", ["ACME"])]
    with md.subscribe(data=data, numpy=True) as events:
        for event in events:  # DecodedEvents: books and trades as numpy columns
            keeper.apply(event)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import grpc
from grpc_health.v1 import health_pb2

from marketdata.v1 import market_data_pb2

from .base import BaseClient
from .decoding import PricePath
from .requests import candle_interval, gbm_request, subscribe_request
from .security import BearerToken
from .streams import ManagedSubscription, PriceStream, Subscription


class MarketDataClient(BaseClient, AbstractContextManager):
    """A blocking client of a MarketDataService; close it, or use it as a context manager.

    ``MarketDataClient(target, timeout=30.0, options=None, tls=False, ca_file=None,
    cert_file=None, key_file=None, token=None)``: see BaseClient for the target
    forms, load balancing, timeouts, TLS and tokens.
    """

    def _open_channel(self, target, options, credentials, metadata) -> grpc.Channel:
        if credentials is None:
            channel = grpc.insecure_channel(target, options=options)
        else:
            channel = grpc.secure_channel(target, credentials, options=options)
        return grpc.intercept_channel(channel, BearerToken(metadata)) if metadata else channel

    def close(self) -> None:
        self._channel.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_gbm_prices(
        self,
        periods: int,
        start_price: float,
        mu: float,
        sigma: float,
        delta: float = 1.0,
        *,
        trading_days_per_year: float | None = None,
        seed: int | None = None,
        symbol: str = "",
        timeout: float | None = None,
    ) -> PricePath:
        """A whole GBM path in one call (up to about 524 thousand prices)."""
        request = gbm_request(
            periods,
            start_price,
            mu,
            sigma,
            delta,
            trading_days_per_year=trading_days_per_year,
            seed=seed,
            symbol=symbol,
        )
        return self._get(request, timeout=self._unary_timeout(timeout))

    def stream_gbm_prices(
        self,
        periods: int,
        start_price: float,
        mu: float,
        sigma: float,
        delta: float = 1.0,
        *,
        trading_days_per_year: float | None = None,
        seed: int | None = None,
        chunk_size: int | None = None,
        ticks_per_second: float | None = None,
        symbol: str = "",
        timeout: float | None = None,
    ) -> PriceStream:
        """A GBM path in chunks as the server generates them; ``timeout`` bounds the whole stream."""
        request = gbm_request(
            periods,
            start_price,
            mu,
            sigma,
            delta,
            trading_days_per_year=trading_days_per_year,
            seed=seed,
            chunk_size=chunk_size,
            ticks_per_second=ticks_per_second,
            symbol=symbol,
        )
        return PriceStream(self._stream(request, timeout=timeout))

    def get_prices(self, request: market_data_pb2.PathRequest, timeout: float | None = None) -> PricePath:
        """A whole path of any model (build the PathRequest with its ``model`` set)."""
        return self._get_any(request, timeout=self._unary_timeout(timeout))

    def stream_prices(
        self, request: market_data_pb2.PathRequest, timeout: float | None = None
    ) -> PriceStream:
        """A path of any model in chunks, as numpy arrays."""
        return PriceStream(self._stream_any(request, timeout=timeout))

    def list_instruments(self, timeout: float | None = None) -> market_data_pb2.ListInstrumentsResponse:
        """The live market's instruments, clock and seed."""
        return self._stub.ListInstruments(
            market_data_pb2.ListInstrumentsRequest(), timeout=self._unary_timeout(timeout)
        )

    def check_health(self, service: str = "", timeout: float | None = None) -> str:
        """The standard health service's answer for ``service`` ("" is the whole server):
        ``SERVING``, ``NOT_SERVING`` (shutting down) or ``SERVICE_UNKNOWN``. Health needs no token."""
        reply = self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self._unary_timeout(timeout)
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def get_last_prices(
        self, symbols: Sequence[str] = (), timeout: float | None = None
    ) -> market_data_pb2.LastPrices:
        """The last price of ``symbols`` (every instrument when empty), all at one tick."""
        return self._stub.GetLastPrices(
            market_data_pb2.GetLastPricesRequest(symbols=list(symbols)),
            timeout=self._unary_timeout(timeout),
        )

    def subscribe(
        self,
        symbols: Sequence[str] = (),
        *,
        data: Sequence[market_data_pb2.DataSubscription] = (),
        heartbeat_seconds: float | None = None,
        timeout: float | None = None,
        resubscribe: bool = False,
        numpy: bool = False,
    ) -> Subscription:
        """Live prices of ``symbols`` (every instrument when empty): a snapshot, then an update per tick;
        or the data types of ``data`` (entries made by client.data_subscription: order books,
        trades, candles, top of book, last prices), instead of ``symbols``.

        ``numpy=True`` yields DecodedEvents read straight from the bytes (books and trades as
        numpy columns, no protobuf object per level) instead of MarketEvent messages.
        ``resubscribe=True`` subscribes again when the server goes away (see Subscription).
        """
        request = subscribe_request(symbols, heartbeat_seconds, data)
        call = self._subscribe_numpy if numpy else self._stub.Subscribe
        return Subscription(lambda: call(request, timeout=timeout), resubscribe=resubscribe)

    def manage_subscription(
        self, *, timeout: float | None = None, numpy: bool = False
    ) -> ManagedSubscription:
        """A subscription whose symbols and data types change while it runs; it starts with none.
        ``numpy=True`` yields DecodedEvents, as for subscribe."""
        call = self._manage_numpy if numpy else self._stub.ManageSubscription
        return ManagedSubscription(lambda requests: call(requests, timeout=timeout))

    def get_order_book(
        self, symbol: str, depth: int = 0, timeout: float | None = None
    ) -> market_data_pb2.GetOrderBookResponse:
        """The book of ``symbol`` at the last tick, ``depth`` levels a side (0: 10); Book.of(reply.book)
        gives it as numpy arrays."""
        return self._stub.GetOrderBook(
            market_data_pb2.GetOrderBookRequest(symbol=symbol, depth=depth),
            timeout=self._unary_timeout(timeout),
        )

    def get_trades(
        self, symbol: str, limit: int = 0, timeout: float | None = None
    ) -> market_data_pb2.GetTradesResponse:
        """The ``limit`` most recent prints of ``symbol`` (0: 100), oldest first."""
        return self._stub.GetTrades(
            market_data_pb2.GetTradesRequest(symbol=symbol, limit=limit), timeout=self._unary_timeout(timeout)
        )

    def get_candles(
        self, symbol: str, interval: str | int = "1s", limit: int = 0, timeout: float | None = None
    ) -> market_data_pb2.GetCandlesResponse:
        """The live candles of ``symbol`` ("1s" or "1m"), oldest first, the last still forming; the
        ``limit`` most recent (0: every one the server keeps)."""
        request = market_data_pb2.GetCandlesRequest(
            symbol=symbol, interval=candle_interval(interval), limit=limit
        )
        return self._stub.GetCandles(request, timeout=self._unary_timeout(timeout))
