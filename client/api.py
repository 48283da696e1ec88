"""MarketDataClient: synthetic prices as numpy arrays, over gRPC.

    with MarketDataClient("127.0.0.1:50051") as md:
        path = md.get_gbm_prices(periods=100, start_price=70, mu=0.05, sigma=0.3)
        with md.stream_gbm_prices(periods=10**7, start_price=70, mu=0.05, sigma=0.3) as stream:
            for chunk in stream:
                ...  # chunk.prices is a numpy array starting at chunk.offset

Prices arrive as read-only float64 arrays decoded straight from the message
bytes (copy one to modify it). Errors surface as ``grpc.RpcError`` with the server's status code and message;
``field_violations`` lists the fields an INVALID_ARGUMENT named.
"""

from __future__ import annotations

import ipaddress
import json
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Self

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from client.decoding import PriceChunk, PricePath, decode_price_chunk, decode_prices
from client.requests import gbm_request, subscribe_request
from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

_SERVICE = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"]
ROUND_ROBIN_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_UNARY_TIMEOUT = 30.0


class _CancelOnExit:
    """Leaving a ``with`` block cancels the call, so the server stops its work."""

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class SequenceGaps:
    """Counts ``gaps``: market ticks skipped for a subscriber (a slow reader
    under the conflate policy), from the sequence numbers of its updates."""

    last_sequence: int | None = None
    gaps = 0

    def _count(self, event: market_data_pb2.MarketEvent) -> market_data_pb2.MarketEvent:
        if event.HasField("snapshot"):
            self.last_sequence = event.sequence  # a new (re)subscription restarts the count
        elif event.HasField("update"):
            if self.last_sequence is not None:
                self.gaps += max(0, event.sequence - self.last_sequence - 1)
            self.last_sequence = event.sequence
        return event


def channel_options(options: list[tuple[str, object]] | None) -> list[tuple[str, object]]:
    """Every channel balances over all of its target's addresses with round_robin."""
    return [("grpc.service_config", ROUND_ROBIN_CONFIG), *(options or [])]


class PriceStream(_CancelOnExit):
    """Iterates the chunks of one StreamGbmPrices call; ``cancel()`` stops the server's work.

    Use it as a context manager so that leaving the block early cancels the call.
    """

    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[PriceChunk]:
        return iter(self._call)


def channel_target(target: str | Sequence[str]) -> str:
    """A gRPC target for one address, a DNS name, or a list of IP:port addresses.

    A list becomes gRPC's ``ipv4:a:p,b:p`` (or ``ipv6:``) form, one
    subchannel per address; a name such as ``dns:///prices.example:50051``
    resolves to every address the name has.
    """
    if isinstance(target, str):
        return target
    addresses = list(target)
    if not addresses:
        raise ValueError("target: give at least one address")
    families = set()
    for address in addresses:
        host = address.rsplit(":", 1)[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise ValueError(
                f"target: {address!r} is not IP:port; for a DNS name with several "
                "addresses pass 'dns:///name:port' as a single target"
            ) from None
    if len(families) > 1:
        raise ValueError("target: mix of IPv4 and IPv6 addresses; use one family")
    return f"ipv{families.pop()}:" + ",".join(addresses)


class MarketDataClient:
    """A channel to a MarketDataService; close it, or use it as a context manager.

    ``target`` is ``host:port``, a gRPC name such as ``dns:///name:port``, or a
    list of ``IP:port`` addresses. Calls are spread over every address the
    target resolves to with gRPC's own round_robin load balancing (one HTTP/2
    connection per backend), so several server instances share the load.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_UNARY_TIMEOUT,
        options: list[tuple[str, object]] | None = None,
    ) -> None:
        """``timeout`` bounds unary calls in seconds; streams have none unless given."""
        self.target = channel_target(target)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.target, options=channel_options(options))
        # The generated stub would build one Python float per price; these
        # callables decode the price bytes straight into numpy instead.
        self._get = _numpy_call(self._channel, "GetGbmPrices")
        self._stream = _numpy_call(self._channel, "StreamGbmPrices")
        self._get_any = _numpy_call(self._channel, "GetPrices")
        self._stream_any = _numpy_call(self._channel, "StreamPrices")
        stub = market_data_pb2_grpc.MarketDataServiceStub(self._channel)
        self._list_instruments = stub.ListInstruments
        self._last_prices = stub.GetLastPrices
        self._subscribe = stub.Subscribe
        self._manage = stub.ManageSubscription

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
        return self._get(request, timeout=timeout if timeout is not None else self.timeout)

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
        return self._get_any(request, timeout=timeout if timeout is not None else self.timeout)

    def stream_prices(
        self, request: market_data_pb2.PathRequest, timeout: float | None = None
    ) -> PriceStream:
        """A path of any model in chunks, as numpy arrays."""
        return PriceStream(self._stream_any(request, timeout=timeout))

    def list_instruments(self, timeout: float | None = None) -> market_data_pb2.ListInstrumentsResponse:
        """The live market's instruments, clock and seed."""
        return self._list_instruments(
            market_data_pb2.ListInstrumentsRequest(), timeout=timeout if timeout is not None else self.timeout
        )

    def get_last_prices(
        self, symbols: Sequence[str] = (), timeout: float | None = None
    ) -> market_data_pb2.LastPrices:
        """The last price of ``symbols`` (every instrument when empty), all at one tick."""
        return self._last_prices(
            market_data_pb2.GetLastPricesRequest(symbols=list(symbols)),
            timeout=timeout if timeout is not None else self.timeout,
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
        return Subscription(lambda: self._subscribe(request, timeout=timeout), resubscribe=resubscribe)

    def manage_subscription(self, *, timeout: float | None = None) -> ManagedSubscription:
        """A subscription whose symbols change while it runs; it starts with none."""
        return ManagedSubscription(lambda requests: self._manage(requests, timeout=timeout))


class Subscription(SequenceGaps, _CancelOnExit):
    """Iterates the MarketEvent messages of one Subscribe call, counting ``gaps``.

    With ``resubscribe``, a subscription the server ends with UNAVAILABLE
    (shutdown, restart, lost connection) is made again, after a backoff, up
    to ``max_reconnects`` times in a row; each new one starts with a fresh
    snapshot. ``cancel()``, or leaving a ``with`` block, ends it at once.
    """

    def __init__(
        self,
        start: Callable[[], grpc.Call],
        *,
        resubscribe: bool = False,
        max_reconnects: int = 10,
        backoff_seconds: float = 0.1,
    ) -> None:
        self._start = start
        self._call = start()
        self._resubscribe = resubscribe
        self._max_reconnects = max_reconnects
        self._backoff = backoff_seconds
        self._cancelled = False
        self.reconnects = 0

    def __iter__(self) -> Iterator[market_data_pb2.MarketEvent]:
        failures = 0
        while True:
            try:
                for event in self._call:
                    failures = 0
                    yield self._count(event)
                return
            except grpc.RpcError as error:
                retry = (
                    self._resubscribe and not self._cancelled and error.code() == grpc.StatusCode.UNAVAILABLE
                )
                if not retry or failures >= self._max_reconnects:
                    raise
                time.sleep(min(5.0, self._backoff * 2**failures))
                failures += 1
                self.reconnects += 1
                self._call = self._start()

    def cancel(self) -> None:
        self._cancelled = True
        super().cancel()


class ManagedSubscription(Subscription):
    """A ManageSubscription call: change symbols with ``subscribe``/``unsubscribe``
    while iterating its events (status answers, snapshots, updates, heartbeats)."""

    _DONE = object()

    def __init__(self, start: Callable[[Iterator[market_data_pb2.SubscriptionRequest]], grpc.Call]) -> None:
        self._requests: queue.Queue = queue.Queue()
        super().__init__(lambda: start(self._request_iterator()))

    def _request_iterator(self) -> Iterator[market_data_pb2.SubscriptionRequest]:
        while (request := self._requests.get()) is not self._DONE:
            yield request

    def subscribe(self, symbols: Sequence[str], *, heartbeat_seconds: float | None = None) -> None:
        request = market_data_pb2.SubscriptionRequest(subscribe=market_data_pb2.SymbolList(symbols=symbols))
        if heartbeat_seconds is not None:
            request.heartbeat_seconds = heartbeat_seconds
        self._requests.put(request)

    def unsubscribe(self, symbols: Sequence[str]) -> None:
        self._requests.put(
            market_data_pb2.SubscriptionRequest(unsubscribe=market_data_pb2.SymbolList(symbols=symbols))
        )

    def cancel(self) -> None:
        self._requests.put(self._DONE)
        super().cancel()


def _numpy_call(
    channel: grpc.Channel, name: str
) -> grpc.UnaryUnaryMultiCallable | grpc.UnaryStreamMultiCallable:
    """A callable for price method ``name`` whose replies decode straight into numpy."""
    method = _SERVICE.methods_by_name[name]
    make = channel.unary_stream if method.server_streaming else channel.unary_unary
    return make(
        f"/{_SERVICE.full_name}/{name}",
        request_serializer=getattr(market_data_pb2, method.input_type.name).SerializeToString,
        # Every price reply has the layout of Prices (whole) or PriceChunk (streamed).
        response_deserializer=decode_price_chunk if method.server_streaming else decode_prices,
    )


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
