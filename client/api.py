"""MarketDataClient: synthetic prices as numpy arrays, over gRPC.

    with MarketDataClient("127.0.0.1:50051") as md:
        path = md.get_gbm_prices(periods=100, start_price=70, mu=0.05, sigma=0.3)
        with md.stream_gbm_prices(periods=10**7, start_price=70, mu=0.05, sigma=0.3) as stream:
            for chunk in stream:
                ...  # chunk.prices is a numpy array starting at chunk.offset

Errors surface as ``grpc.RpcError`` with the server's status code and message;
``field_violations`` lists the fields an INVALID_ARGUMENT named.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_UNARY_TIMEOUT = 30.0


@dataclass(frozen=True)
class PricePath:
    """A whole path: ``prices[0]`` is the start price; ``seed`` replays it."""

    prices: np.ndarray
    seed: int
    symbol: str


@dataclass(frozen=True)
class PriceChunk:
    """A consecutive piece of a streamed path, starting at index ``offset``."""

    prices: np.ndarray
    offset: int
    seed: int
    symbol: str


class PriceStream:
    """Iterates the chunks of one StreamGbmPrices call; ``cancel()`` stops the server's work.

    Use it as a context manager so that leaving the block early cancels the call.
    """

    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[PriceChunk]:
        for message in self._call:
            yield PriceChunk(
                prices=np.array(message.prices, dtype=np.float64),
                offset=message.offset,
                seed=message.seed,
                symbol=message.symbol,
            )

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> PriceStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


def gbm_request(
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
) -> market_data_pb2.GbmRequest:
    """Build a GbmRequest, leaving unset what the caller left as None."""
    request = market_data_pb2.GbmRequest(
        periods=periods, start_price=start_price, mu=mu, sigma=sigma, delta=delta, symbol=symbol
    )
    if trading_days_per_year is not None:
        request.trading_days_per_year = trading_days_per_year
    if seed is not None:
        request.seed = seed
    if chunk_size is not None:
        request.chunk_size = chunk_size
    if ticks_per_second is not None:
        request.ticks_per_second = ticks_per_second
    return request


class MarketDataClient:
    """A channel to one MarketDataService; close it, or use it as a context manager."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_UNARY_TIMEOUT,
        options: list[tuple[str, object]] | None = None,
    ) -> None:
        """``timeout`` bounds unary calls in seconds; streams have none unless given."""
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=options or [])
        self._stub = market_data_pb2_grpc.MarketDataServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> MarketDataClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        reply = self._stub.GetGbmPrices(request, timeout=timeout if timeout is not None else self.timeout)
        return PricePath(
            prices=np.array(reply.prices, dtype=np.float64), seed=reply.seed, symbol=reply.symbol
        )

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
        return PriceStream(self._stub.StreamGbmPrices(request, timeout=timeout))


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of a google.rpc.BadRequest in an error, if any."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None:
        return []
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found
