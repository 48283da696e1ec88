"""MarketDataClient: synthetic prices as numpy arrays, over gRPC.

    with MarketDataClient("127.0.0.1:50051") as md:
        path = md.get_gbm_prices(periods=100, start_price=70, mu=0.05, sigma=0.3)
        with md.stream_gbm_prices(periods=10**7, start_price=70, mu=0.05, sigma=0.3) as stream:
            for chunk in stream:
                ...  # chunk.prices is a numpy array starting at chunk.offset

Prices arrive as read-only float64 arrays decoded straight from the message
bytes (copy one to modify it). Errors surface as ``grpc.RpcError`` with the server's status code and message;
``client.field_violations`` lists the fields an INVALID_ARGUMENT named.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import grpc
from grpc_health.v1 import health_pb2

from marketdata.v1 import market_data_pb2

from .base import BaseClient
from .decoding import PricePath
from .requests import gbm_request, subscribe_request
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
        heartbeat_seconds: float | None = None,
        timeout: float | None = None,
        resubscribe: bool = False,
    ) -> Subscription:
        """Live prices of ``symbols`` (every instrument when empty): a snapshot, then an update per tick.

        ``resubscribe=True`` subscribes again when the server goes away (see Subscription).
        """
        request = subscribe_request(symbols, heartbeat_seconds)
        return Subscription(lambda: self._stub.Subscribe(request, timeout=timeout), resubscribe=resubscribe)

    def manage_subscription(self, *, timeout: float | None = None) -> ManagedSubscription:
        """A subscription whose symbols change while it runs; it starts with none."""
        return ManagedSubscription(lambda requests: self._stub.ManageSubscription(requests, timeout=timeout))
