"""What the sync and async clients share: the target, the channel's options, the calls.

MarketDataClient (client.api) and AsyncMarketDataClient (client.aio) differ
only in the channel they open and in whether their methods await; both take
the same target forms and options and balance calls the same way.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2_grpc

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

from .decoding import decode_price_chunk, decode_prices
from .events import decode_market_event
from .security import Security

_SERVICE = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"]

ROUND_ROBIN_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_UNARY_TIMEOUT = 30.0


def channel_options(options: list[tuple[str, object]] | None) -> list[tuple[str, object]]:
    """Every channel balances over all of its target's addresses with round_robin."""
    return [("grpc.service_config", ROUND_ROBIN_CONFIG), *(options or [])]


def channel_target(target: str | Sequence[str]) -> str:
    """A gRPC target for one address, a DNS name, or a list of IP:port addresses.

    A list becomes gRPC's ``ipv4:a:p,b:p`` (or ``ipv6:``) form, one
    subchannel per address; a name such as ``dns:///prices.example:50051``
    resolves to every address the name has. A bare IPv6 address with a port,
    ``::1:50051``, is taken as ``[::1]:50051`` (see bracket_ipv6).
    """
    if isinstance(target, str):
        return bracket_ipv6(target)
    addresses = [bracket_ipv6(address) for address in target]
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


def bracket_ipv6(address: str) -> str:
    """``::1:50051`` as ``[::1]:50051``, the only IPv6 form gRPC reads; anything else unchanged.

    The part after the last colon is the port: an address is bracketed only when
    what comes before it is an IPv6 address and the rest is a number, so names,
    IPv4 addresses, bracketed addresses and schemes (``dns:``, ``ipv6:``,
    ``unix:``) pass through as they are.
    """
    host, _, port = address.rpartition(":")
    if not (port.isascii() and port.isdigit()):
        return address
    try:
        is_ipv6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        return address
    return f"[{host}]:{port}" if is_ipv6 else address


class BaseClient:
    """A channel to a MarketDataService and its stub; subclasses say which kind of channel.

    ``target`` is ``host:port``, a gRPC name such as ``dns:///name:port``, or a
    list of ``IP:port`` addresses. Calls are spread over every address the
    target resolves to with gRPC's own round_robin load balancing (one HTTP/2
    connection per backend), so several server instances share the load.
    ``timeout`` bounds unary calls in seconds; streams have none unless given.

    Security (see client.security): ``tls=True`` checks the server against the
    system's CA certificates, ``ca_file`` against the PEM CAs in that file (and
    implies TLS); ``cert_file`` and ``key_file`` present a client certificate
    (mTLS); ``token`` is sent as ``authorization: Bearer <token>`` on every call.
    A file that cannot be read raises OSError naming it.
    """

    def _open_channel(
        self,
        target: str,
        options: list[tuple[str, object]],
        credentials: grpc.ChannelCredentials | None,
        metadata: tuple[tuple[str, str], ...],
    ) -> grpc.Channel | grpc.aio.Channel:
        raise NotImplementedError

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_UNARY_TIMEOUT,
        options: list[tuple[str, object]] | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        token: str | None = None,
    ) -> None:
        self.target = channel_target(target)
        self.timeout = timeout
        security = Security(tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file, token=token)
        self._channel = self._open_channel(
            self.target, channel_options(options), security.channel_credentials(), security.metadata()
        )
        self._stub = market_data_pb2_grpc.MarketDataServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        # The generated stub would build one Python float per price; these
        # callables decode the price bytes straight into numpy instead.
        self._get = _numpy_call(self._channel, "GetGbmPrices")
        self._stream = _numpy_call(self._channel, "StreamGbmPrices")
        self._get_any = _numpy_call(self._channel, "GetPrices")
        self._stream_any = _numpy_call(self._channel, "StreamPrices")
        # Market events read straight into numpy (books, trades), for subscribe(numpy=True).
        self._subscribe_numpy = _numpy_call(self._channel, "Subscribe", decode_market_event)
        self._manage_numpy = _numpy_call(self._channel, "ManageSubscription", decode_market_event)

    def _unary_timeout(self, timeout: float | None) -> float | None:
        """A unary call's deadline: the call's own, else the client's."""
        return timeout if timeout is not None else self.timeout


def _numpy_call(
    channel: grpc.Channel | grpc.aio.Channel, name: str, decode: Callable[[bytes], object] | None = None
) -> Callable:
    """A callable for method ``name`` whose replies ``decode`` reads straight into numpy; by
    default a price method's (every price reply has the layout of Prices, or PriceChunk when
    streamed)."""
    method = _SERVICE.methods_by_name[name]
    if method.client_streaming:
        make = channel.stream_stream if method.server_streaming else channel.stream_unary
    else:
        make = channel.unary_stream if method.server_streaming else channel.unary_unary
    if decode is None:
        decode = decode_price_chunk if method.server_streaming else decode_prices
    return make(
        f"/{_SERVICE.full_name}/{name}",
        request_serializer=getattr(market_data_pb2, method.input_type.name).SerializeToString,
        response_deserializer=decode,
    )
