"""MarketDataService: one short method per RPC.

Each method checks its request (``requests``), hands the plan to the part that
does the work (``streaming`` for paths, ``feed`` and ``subscriptions`` for the
live market) and frames the reply. No maths here, and no knowledge of models.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import Message

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

from . import status
from .admission import STREAM, SUBSCRIPTION, UNARY, Admission
from .book_wire import CANDLE_INTERVAL_NAMES, book_message, candles_payload, trades_payload
from .feed import DataRequest, MarketFeed
from .handlers import run_first
from .limits import LimitExceeded, Limits
from .metrics import StreamTracker
from .requests import (
    CallPlan,
    plan_get_gbm_prices,
    plan_get_prices,
    plan_stream_gbm_prices,
    plan_stream_prices,
)
from .sim.checks import ParameterError, check_range, quoted
from .sim.universe import DEFAULT_MARKET, SYMBOL_MAX_CHARS
from .streaming import Drain, Generation, PathStreamer
from .subscriptions import apply_requests, heartbeat_seconds, pump
from .wire import ENCODERS, Undecodable, exchange_timestamp, request_decoder

_LOGGER = logging.getLogger(__name__)
_CANDLES_FIELD = market_data_pb2.GetCandlesResponse.DESCRIPTOR.fields_by_name["candles"].number
# Prints GetTrades returns when its limit is 0.
DEFAULT_TRADES = 100

WIRES = tuple(ENCODERS)
SERVICE = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"]
pb = market_data_pb2


class MarketDataServicer(market_data_pb2_grpc.MarketDataServiceServicer):
    """Price replies are serialized by ``wire``: ``"fast"`` writes them straight from
    numpy buffers, ``"protobuf"`` through the generated classes (the same bytes,
    slower, kept for comparison)."""

    def __init__(
        self,
        limits: Limits | None = None,
        tracker: StreamTracker | None = None,
        wire: str = "fast",
        feed: MarketFeed | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.tracker = tracker or StreamTracker()
        self.feed = feed or MarketFeed(DEFAULT_MARKET)
        self._drain = Drain()
        self._paths = PathStreamer(self.tracker, self._drain, wire, self.limits)
        self.admission = admission or Admission(self.limits, lambda: self.feed.limits)

    @property
    def generation(self) -> Generation:
        """The pool large paths are made on, and the memory they may hold for their readers."""
        return self._paths.generation

    def begin_shutdown(self, grace: float) -> None:
        """Let open streams run for most of ``grace`` seconds; end subscriptions now."""
        self._drain.begin(grace)
        self.feed.close_subscriptions()  # they never end by themselves

    def close(self) -> None:
        """Release the generation pool (after the server has stopped)."""
        self._paths.generation.close()

    async def _checked(
        self, rpc: str, planner: Callable[[Message, Limits], CallPlan], request: Message, context
    ) -> CallPlan:
        try:
            return planner(request, self.limits)
        except ParameterError as err:
            _LOGGER.info("rejected %s: %s", rpc, err)
            await status.abort_invalid(context, err)
        except LimitExceeded as err:
            _LOGGER.info("refused %s: %s", rpc, err)
            await status.refuse(context, err)

    async def _whole(self, call: CallPlan, message: type, context) -> bytes:
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("whole path periods=%d seed=%d", call.periods, call.seed)
        return await self._paths.whole(call, message, context)

    async def GetGbmPrices(self, request: pb.GbmRequest, context: grpc.aio.ServicerContext) -> bytes:
        call = await self._checked("GetGbmPrices", plan_get_gbm_prices, request, context)
        return await self._whole(call, pb.GbmPrices, context)

    async def GetPrices(self, request: pb.PathRequest, context: grpc.aio.ServicerContext) -> bytes:
        call = await self._checked("GetPrices", plan_get_prices, request, context)
        return await self._whole(call, pb.Prices, context)

    async def StreamGbmPrices(self, request: pb.GbmRequest, context: grpc.aio.ServicerContext) -> None:
        call = await self._checked("StreamGbmPrices", plan_stream_gbm_prices, request, context)
        await self._paths.stream(call, pb.GbmPriceChunk, context)

    async def StreamPrices(self, request: pb.PathRequest, context: grpc.aio.ServicerContext) -> None:
        call = await self._checked("StreamPrices", plan_stream_prices, request, context)
        await self._paths.stream(call, pb.PriceChunk, context)

    async def ListInstruments(
        self, request: pb.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstrumentsResponse:
        config = self.feed.config
        reply = pb.ListInstrumentsResponse(
            instruments=[
                pb.InstrumentInfo(
                    symbol=i.symbol,
                    start_price=i.start_price,
                    mu=i.mu,
                    sigma=i.sigma,
                    tick_size=i.tick_size,
                    model=i.model,
                    lot_size=i.lot_size,
                )
                for i in config.instruments
            ],
            wall_seconds_per_tick=config.wall_interval,
            simulated_seconds_per_tick=config.simulated_seconds_per_tick,
        )
        if config.seed is not None:  # the operator published it; a drawn seed stays secret
            reply.seed = config.seed
        return reply

    async def GetLastPrices(
        self, request: pb.GetLastPricesRequest, context: grpc.aio.ServicerContext
    ) -> pb.LastPrices:
        symbols = list(request.symbols) or list(self.feed.config.symbols)
        try:
            self.feed.check_symbol_count(len(symbols), "GetLastPrices")
            positions = self.feed.market.index_of(symbols)
        except ParameterError as err:
            await status.abort_invalid(context, err)
        except LimitExceeded as err:
            await status.refuse(context, err)
        tick = self.feed.last
        return pb.LastPrices(
            sequence=tick.sequence,
            exchange_time=exchange_timestamp(self.feed.exchange_time),
            prices=[
                pb.SymbolPrice(symbol=s, price=float(tick.prices[n]))
                for s, n in zip(symbols, positions, strict=True)
            ],
        )

    async def GetOrderBook(
        self, request: pb.GetOrderBookRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOrderBookResponse:
        feed = self.feed
        try:
            position = self._position(request.symbol)
            depth = feed.book_depth(request.depth, "depth")
        except ParameterError as err:
            await status.abort_invalid(context, err)
        except LimitExceeded as err:
            await status.refuse(context, err)
        return pb.GetOrderBookResponse(
            sequence=feed.depth.sequence,
            exchange_time=exchange_timestamp(feed.exchange_time),
            book=book_message(request.symbol, feed.depth.book(position), depth),
        )

    async def GetTrades(
        self, request: pb.GetTradesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTradesResponse:
        feed = self.feed
        most = feed.limits.trade_history
        default = min(DEFAULT_TRADES, most)
        try:
            position = self._position(request.symbol)
            check_range("limit", request.limit, 0, most, unit=f"prints (0 means {default}; --trade-history)")
        except ParameterError as err:
            await status.abort_invalid(context, err)
        prints = feed.tape.prints(position, request.limit or default)
        ids, prices, sizes, sides, times = zip(*prints, strict=True) if prints else ((),) * 5
        return pb.GetTradesResponse(
            sequence=feed.last.sequence,
            exchange_time=exchange_timestamp(feed.exchange_time),
            trades=pb.Trades.FromString(trades_payload(request.symbol, ids, prices, sizes, sides, times)),
        )

    async def GetCandles(
        self, request: pb.GetCandlesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCandlesResponse:
        feed = self.feed
        most = feed.limits.candle_history
        try:
            position = self._position(request.symbol)
            if request.interval not in CANDLE_INTERVAL_NAMES:
                raise ParameterError(
                    "interval",
                    f"interval must be CANDLE_INTERVAL_1S or CANDLE_INTERVAL_1M, got {request.interval}",
                )
            check_range("limit", request.limit, 0, most, unit="candles (0 means all kept; --candle-history)")
        except ParameterError as err:
            await status.abort_invalid(context, err)
        interval = CANDLE_INTERVAL_NAMES[request.interval]
        candles = feed.tape.candles(position, interval, request.limit or None)
        reply = pb.GetCandlesResponse(
            sequence=feed.last.sequence, exchange_time=exchange_timestamp(feed.exchange_time)
        )
        # Made on the event loop: every candle at once, not a message each (5 ms, not 25, for 3,600).
        reply.MergeFromString(candles_payload(_CANDLES_FIELD, request.symbol, interval, candles))
        return reply

    def _position(self, symbol: str) -> int:
        """The market position of one requested symbol; ParameterError naming ``symbol``."""
        if not self.feed.market.knows(symbol):
            raise ParameterError(
                "symbol",
                f"no instrument {quoted(symbol[: SYMBOL_MAX_CHARS + 1])} in this market; see ListInstruments",
            )
        return self.feed.market.index_of([symbol])[0]

    async def Subscribe(self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext) -> None:
        feed = self.feed
        try:
            heartbeat = heartbeat_seconds(request, feed.limits.heartbeat_seconds)
            data = [DataRequest(d.type, tuple(d.symbols), d.depth) for d in request.data]
            subscriber = feed.subscribe(list(request.symbols), data)
        except ParameterError as err:
            await status.abort_invalid(context, err)
        except LimitExceeded as err:
            await status.refuse(context, err)
        try:
            feed.first_events(subscriber)
        except BaseException:  # whatever it took is given back
            feed.unsubscribe(subscriber)
            raise
        await pump(feed, subscriber, context, lambda: heartbeat, self._drain, self.limits.stall_seconds)

    async def ManageSubscription(
        self, requests: AsyncIterator[pb.SubscriptionRequest], context: grpc.aio.ServicerContext
    ) -> None:
        feed = self.feed
        heartbeat = [feed.limits.heartbeat_seconds]
        try:
            subscriber = feed.open_managed()
        except LimitExceeded as err:
            await status.refuse(context, err)
        reader = asyncio.create_task(apply_requests(feed, subscriber, requests, heartbeat))
        try:
            await pump(
                feed, subscriber, context, lambda: heartbeat[0], self._drain, self.limits.stall_seconds
            )
        finally:
            reader.cancel()


def _serialize(reply: bytes | Message) -> bytes:
    """Price replies arrive already serialized; the rest are messages."""
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


_HANDLER_KINDS = {  # (client streams, server streams) -> gRPC's handler factory
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


async def _admit(name: str, kind: str, admission: Admission, context: grpc.aio.ServicerContext) -> None:
    """Admit a call, or end it with RESOURCE_EXHAUSTED naming the limit it would pass. Its
    slot is held until gRPC has finished the call, not just the handler: a call ended while
    its reader stalls still holds its last message until the reader reads or leaves."""
    try:
        ticket = admission.admit(kind, context.peer())
    except LimitExceeded as err:
        _LOGGER.info("refused %s from %s: %s", name, context.peer(), err)
        await status.refuse(context, err)
    context.add_done_callback(lambda _: ticket.release())


def _guarded(name: str, kind: str, handler: Callable, admission: Admission) -> Callable:
    """``handler``, behind the checks every call passes first: a request that did not decode
    ends the call with INVALID_ARGUMENT and one WARNING line (ManageSubscription's reader
    does the same); a call past a limit ends with RESOURCE_EXHAUSTED naming it."""

    async def guarded(request, context: grpc.aio.ServicerContext):
        if isinstance(request, Undecodable):
            _LOGGER.warning("%s from %s: %s", name, context.peer(), status.not_a_valid(request.message))
            await status.abort(context, grpc.StatusCode.INVALID_ARGUMENT, status.not_a_valid(request.message))
        await _admit(name, kind, admission, context)
        return await handler(request, context)

    return guarded


class AdmitOtherServices(grpc.aio.ServerInterceptor):
    """Health and reflection calls count against the same limits: a Check or another unary
    call like any call (--max-calls), a Watch or a reflection stream like a subscription
    (--max-subscribers, --max-subscribers-per-peer). MarketDataService's own methods are
    admitted by their handlers (add_to_server)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(f"/{SERVICE.full_name}/"):
            return handler
        kind = SUBSCRIPTION if handler.response_streaming else UNARY
        method, admission = details.method, self._admission
        return run_first(handler, lambda context: _admit(method, kind, admission, context))


def _kind(method) -> str:
    """What a method holds while it runs: live events, a price stream, or one reply."""
    if method.output_type.name == "MarketEvent":
        return SUBSCRIPTION
    return STREAM if method.server_streaming else UNARY


def add_to_server(servicer: MarketDataServicer, server: grpc.aio.Server) -> dict[str, grpc.RpcMethodHandler]:
    """Register every method the proto declares, its shape and request type read from the
    descriptor; the handlers, by method name (the HTTP port calls them too)."""
    service = SERVICE
    handlers = {}
    for method in service.methods:
        handler = _guarded(method.name, _kind(method), getattr(servicer, method.name), servicer.admission)
        handlers[method.name] = _HANDLER_KINDS[method.client_streaming, method.server_streaming](
            handler,
            request_deserializer=request_decoder(getattr(market_data_pb2, method.input_type.name)),
            response_serializer=_serialize,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    return handlers
