"""A real gRPC server on loopback that plays back scripted market events and records the requests.

For tests of the client and its command line against events written exactly
as a test wants them (broken books included): Subscribe sends the script's
serialized events (then, if asked, holds the stream open until the server
stops), ManageSubscription answers each request with the next scripted
event, the unary book, trade and candle calls return scripted replies.
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc

from marketdata.v1 import market_data_pb2 as pb

SERVICE = "marketdata.v1.MarketDataService"
HOLD_SECONDS = 60  # the longest a held stream stays open


class ScriptedServer:
    def __init__(
        self,
        events: list[bytes] = (),
        *,
        hold: bool = False,
        error: tuple[grpc.StatusCode, str] | None = None,
        replies: dict[str, object] | None = None,
    ) -> None:
        self.events = list(events)
        self.hold = hold
        self.error = error
        self.replies = replies or {}
        self.requests: list[tuple[str, object]] = []
        self.stopping = threading.Event()
        self.holding = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        raw = lambda data: data  # noqa: E731 - events are sent as the script wrote them
        handlers = {
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self._subscribe, request_deserializer=pb.SubscribeRequest.FromString, response_serializer=raw
            ),
            "ManageSubscription": grpc.stream_stream_rpc_method_handler(
                self._manage, request_deserializer=pb.SubscriptionRequest.FromString, response_serializer=raw
            ),
        }
        for name in ("GetOrderBook", "GetTrades", "GetCandles"):
            request_type = getattr(pb, f"{name}Request")
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                self._unary(name),
                request_deserializer=request_type.FromString,
                response_serializer=lambda reply: reply.SerializeToString(),
            )
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self._server.start()

    def _subscribe(self, request, context):
        self.requests.append(("Subscribe", request))
        if self.error is not None:
            context.abort(*self.error)
        yield from self.events
        if self.hold:
            self.holding.set()
            self.stopping.wait(HOLD_SECONDS)

    def _manage(self, requests, context):
        answers = iter(self.events)
        for request in requests:
            self.requests.append(("ManageSubscription", request))
            answer = next(answers, None)
            if answer is None:
                return
            yield answer

    def _unary(self, name):
        def answer(request, context):
            self.requests.append((name, request))
            return self.replies[name]

        return answer

    def stop(self) -> None:
        self.stopping.set()
        self._server.stop(0).wait(10)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
