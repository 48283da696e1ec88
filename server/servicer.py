"""MarketDataService: translates requests to generator calls and frames replies.

No maths here: the plan comes from server.requests, the prices from
server.generator.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from server import wire
from server.feed import (
    HEARTBEAT_MAX,
    HEARTBEAT_MIN,
    LimitExceeded,
    MarketFeed,
    Subscriber,
    exchange_timestamp,
)
from server.generator import ParameterError, check_range
from server.market import DEFAULT_MARKET
from server.paths import Block, PathBlocks
from server.requests import GbmPlan, Limits, plan_path_stream, plan_path_unary, plan_stream, plan_unary

_LOGGER = logging.getLogger(__name__)

try:  # gRPC exposes no public type for "the call is gone" on a server write.
    from grpc._cython.cygrpc import ExecuteBatchError as _WRITE_AFTER_PEER_LEFT
except ImportError:  # pragma: no cover - another gRPC build: let it surface
    _WRITE_AFTER_PEER_LEFT = ()

# Blocks at least this large are generated on a worker thread (numpy releases
# the GIL), so the event loop keeps serving other calls meanwhile.
OFFLOAD_MIN_PRICES = 8_192
WIRES = ("fast", "protobuf")
# How many large chunks a stream may have generated before the sender takes them.
# One to three ran alike on a 2-core machine, six no better; deeper only costs memory.
AHEAD_CHUNKS = 2
T = TypeVar("T")
# Share of the shutdown grace period after which open streams are ended with
# UNAVAILABLE, before gRPC cancels whatever is still running.
DRAIN_SHARE = 0.9


class StreamTracker:
    """Counts calls, open streams and streamed prices; safe to read from any thread.

    Tests use ``wait_idle`` and ``wait_for`` to see that a cancelled stream has
    really stopped generating, without sleeping.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.active = 0
        self.started = 0
        self.unary_calls = 0
        self.prices_generated = 0

    def opened(self) -> None:
        with self._cond:
            self.active += 1
            self.started += 1

    def closed(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def unary(self) -> None:
        with self._cond:
            self.unary_calls += 1

    def generated(self, n: int) -> None:
        with self._cond:
            self.prices_generated += n
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[StreamTracker], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no stream is open; False if ``timeout`` seconds pass first."""
        return self.wait_for(lambda t: t.active == 0, timeout)


def invalid_argument(err: ParameterError) -> grpc.Status:
    """INVALID_ARGUMENT with the message and a google.rpc.BadRequest naming the field."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=err.field, description=str(err))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(err), details=[detail])
    )


class MarketDataServicer(market_data_pb2_grpc.MarketDataServiceServicer):
    """Replies are serialized here (see add_to_server): with ``wire="fast"``
    straight from numpy buffers, with ``wire="protobuf"`` through the generated
    classes, which gives the same bytes more slowly and is kept for comparison."""

    def __init__(
        self,
        limits: Limits | None = None,
        tracker: StreamTracker | None = None,
        wire: str = "fast",
        feed: MarketFeed | None = None,
    ) -> None:
        if wire not in WIRES:
            raise ValueError(f"wire must be one of {WIRES}, got {wire!r}")
        self.limits = limits or Limits()
        self.tracker = tracker or StreamTracker()
        self.wire = wire
        self.feed = feed or MarketFeed(DEFAULT_MARKET)
        self._draining = asyncio.Event()

    def begin_shutdown(self, grace: float) -> None:
        """Let open streams run for most of ``grace`` seconds, then end them with UNAVAILABLE."""
        asyncio.get_running_loop().call_later(grace * DRAIN_SHARE, self._draining.set)
        # Subscriptions never end by themselves: end them now, with a clear status.
        self.feed.close_subscriptions()

    async def _plan(
        self,
        rpc: str,
        planner: Callable[[market_data_pb2.GbmRequest, Limits], GbmPlan],
        request: market_data_pb2.GbmRequest,
        context: grpc.aio.ServicerContext,
    ) -> GbmPlan:
        try:
            return planner(request, self.limits)
        except ParameterError as err:
            _LOGGER.info("rejected %s: %s", rpc, err)
            await context.abort_with_status(invalid_argument(err))
            raise AssertionError("abort_with_status returned") from err  # pragma: no cover

    def _encoder(self, plan: GbmPlan, message: type) -> Callable[[Block], bytes]:
        """How this request's replies become bytes: numpy-native, or via the generated classes."""
        symbols = plan.extras.symbols
        if self.wire == "fast":
            return wire.PathEncoder(message, plan.seed, plan.symbol, symbols).encode
        chunked = "offset" in message.DESCRIPTOR.fields_by_name

        def encode(block: Block) -> bytes:
            reply = message(prices=block.prices, seed=plan.seed, symbol=plan.symbol)
            if chunked:
                reply.offset = block.offset
            if block.timestamps is not None:
                reply.timestamps[:] = block.timestamps.tolist()
            if block.bid is not None:
                reply.bid[:] = block.bid.tolist()
                reply.ask[:] = block.ask.tolist()
            if block.bars is not None and len(block.bars):
                b = block.bars
                reply.bars.CopyFrom(
                    market_data_pb2.Bars(
                        start_time=b.start.tolist(),
                        open=b.open,
                        high=b.high,
                        low=b.low,
                        close=b.close,
                        volume=b.volume.tolist(),
                    )
                )
            if symbols:
                reply.symbols[:] = symbols
            return reply.SerializeToString()

        return encode

    async def GetGbmPrices(
        self, request: market_data_pb2.GbmRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        plan = await self._plan("GetGbmPrices", plan_unary, request, context)
        return await self._whole_path(plan, market_data_pb2.GbmPrices, context)

    async def GetPrices(
        self, request: market_data_pb2.PathRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        plan = await self._plan("GetPrices", plan_path_unary, request, context)
        return await self._whole_path(plan, market_data_pb2.Prices, context)

    async def StreamGbmPrices(
        self, request: market_data_pb2.GbmRequest, context: grpc.aio.ServicerContext
    ) -> None:
        plan = await self._plan("StreamGbmPrices", plan_stream, request, context)
        await self._stream_path(plan, market_data_pb2.GbmPriceChunk, context)

    async def StreamPrices(
        self, request: market_data_pb2.PathRequest, context: grpc.aio.ServicerContext
    ) -> None:
        plan = await self._plan("StreamPrices", plan_path_stream, request, context)
        await self._stream_path(plan, market_data_pb2.PriceChunk, context)

    async def _whole_path(self, plan: GbmPlan, message: type, context: grpc.aio.ServicerContext) -> bytes:
        self.tracker.unary()
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("whole path periods=%d seed=%d", plan.periods, plan.seed)

        def produce() -> bytes:
            return self._encoder(plan, message)(PathBlocks(plan).whole(self.limits.default_chunk_size))

        try:
            return await _run(produce, offload=plan.periods >= OFFLOAD_MIN_PRICES)
        except ParameterError as err:  # found only while generating (a calendar that runs dry)
            await context.abort_with_status(invalid_argument(err))

    async def _stream_path(self, plan: GbmPlan, message: type, context: grpc.aio.ServicerContext) -> None:
        _LOGGER.debug("stream periods=%d seed=%d chunk_size=%d", plan.periods, plan.seed, plan.chunk_size)
        loop = asyncio.get_running_loop()
        blocks = PathBlocks(plan)
        encode = self._encoder(plan, message)
        offload = plan.chunk_size >= OFFLOAD_MIN_PRICES

        def produce() -> tuple[int, int, bytes]:
            block = blocks.next(plan.chunk_size)
            return block.offset, block.count, encode(block)

        started = loop.time()
        self.tracker.opened()
        ahead = _Ahead(produce, -(-plan.periods // plan.chunk_size), offload)
        try:
            while (upcoming := ahead.next()) is not None:
                try:
                    offset, count, data = await upcoming
                except ParameterError as err:  # found only while generating (a calendar that runs dry)
                    await context.abort_with_status(invalid_argument(err))
                self.tracker.generated(count)
                if plan.ticks_per_second is not None:
                    # The chunk is due when its last tick is; the first tick is at start.
                    due = started + (offset + count - 1) / plan.ticks_per_second
                    await self._sleep_until(due, loop)
                await self._abort_if_draining(context, offset)
                if not await _send(context, data):
                    _LOGGER.debug("stream ended by the client before offset %d", offset)
                    return
        finally:
            ahead.close()
            self.tracker.closed()

    async def ListInstruments(
        self, request: market_data_pb2.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> market_data_pb2.ListInstrumentsResponse:
        config = self.feed.config
        return market_data_pb2.ListInstrumentsResponse(
            instruments=[
                market_data_pb2.InstrumentInfo(
                    symbol=i.symbol,
                    start_price=i.start_price,
                    mu=i.mu,
                    sigma=i.sigma,
                    tick_size=i.tick_size,
                    model=i.model,
                )
                for i in config.instruments
            ],
            wall_seconds_per_tick=config.wall_interval,
            simulated_seconds_per_tick=config.simulated_seconds_per_tick,
            seed=self.feed.market.seed,
        )

    async def GetLastPrices(
        self, request: market_data_pb2.GetLastPricesRequest, context: grpc.aio.ServicerContext
    ) -> market_data_pb2.LastPrices:
        symbols = list(request.symbols) or list(self.feed.config.symbols)
        try:
            positions = self.feed.market.index_of(symbols)
        except ParameterError as err:
            await context.abort_with_status(invalid_argument(err))
        tick = self.feed.last
        reply = market_data_pb2.LastPrices(
            sequence=tick.sequence,
            prices=[
                market_data_pb2.SymbolPrice(symbol=s, price=float(tick.prices[n]))
                for s, n in zip(symbols, positions, strict=True)
            ],
        )
        reply.exchange_time.CopyFrom(exchange_timestamp(self.feed.exchange_time))
        return reply

    async def Subscribe(
        self, request: market_data_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> None:
        feed = self.feed
        try:
            heartbeat = _heartbeat_seconds(request, feed.limits.heartbeat_seconds)
            subscriber = feed.subscribe(list(request.symbols))
        except ParameterError as err:
            await context.abort_with_status(invalid_argument(err))
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        subscriber.send(feed.encoding.event(subscriber.positions, wire.EVENT_SNAPSHOT))
        await self._pump(subscriber, context, lambda: heartbeat)

    async def ManageSubscription(
        self,
        requests: AsyncIterator[market_data_pb2.SubscriptionRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        feed = self.feed
        heartbeat = [feed.limits.heartbeat_seconds]
        try:
            subscriber = feed.open_managed()
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))

        async def apply_requests() -> None:
            try:
                async for request in requests:
                    heartbeat[0] = _heartbeat_seconds(request, heartbeat[0])
                    add = request.subscribe.symbols if request.HasField("subscribe") else ()
                    remove = request.unsubscribe.symbols if request.HasField("unsubscribe") else ()
                    outcome, added = feed.change(subscriber, list(add), list(remove))
                    if outcome:
                        subscriber.send(feed.status_event(outcome))
                    if added:
                        subscriber.send(feed.encoding.event(added, wire.EVENT_SNAPSHOT))
            except ParameterError as err:
                subscriber.fail(err)

        reader = asyncio.create_task(apply_requests())
        try:
            await self._pump(subscriber, context, lambda: heartbeat[0])
        finally:
            reader.cancel()

    async def _pump(
        self, subscriber: Subscriber, context: grpc.aio.ServicerContext, heartbeat: Callable[[], float]
    ) -> None:
        """Send a subscriber's messages until it ends; always unregisters it."""
        feed = self.feed
        if self._draining.is_set():
            subscriber.close()
        try:
            while True:
                event = await subscriber.next(heartbeat())
                if isinstance(subscriber.problem, ParameterError):
                    await context.abort_with_status(invalid_argument(subscriber.problem))
                if subscriber.closing:
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        "server is shutting down; subscribe again to another server",
                    )
                if subscriber.overflowed:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"subscriber fell more than {feed.limits.buffer_ticks} ticks behind the market and "
                        "was disconnected (server policy --slow-subscriber disconnect); "
                        "read faster or subscribe to fewer symbols",
                    )
                if not await _send(context, event if event is not None else feed.encoding.heartbeat):
                    _LOGGER.debug("subscriber left")
                    return
        finally:
            feed.unsubscribe(subscriber)

    async def _sleep_until(self, due: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until ``due`` on the loop clock, or until draining starts."""
        delay = due - loop.time()
        if delay > 0 and not self._draining.is_set():
            try:
                await asyncio.wait_for(self._draining.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _abort_if_draining(self, context: grpc.aio.ServicerContext, offset: int) -> None:
        if self._draining.is_set():
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"server is shutting down; the stream stopped before offset {offset}. "
                "Send the same request with the returned seed to another server to replay it.",
            )


async def _send(context: grpc.aio.ServicerContext, message: bytes) -> bool:
    """Write one message of a stream; False if the client has already gone.

    gRPC fails a write that races the client's cancel before it reports the
    cancel; that is the client leaving, not a server fault to log.
    """
    try:
        await context.write(message)
    except _WRITE_AFTER_PEER_LEFT:
        return False
    return True


def _heartbeat_seconds(request, current: float) -> float:
    """The request's heartbeat_seconds, checked, or ``current`` when it has none."""
    if not request.HasField("heartbeat_seconds"):
        return current
    check_range("heartbeat_seconds", request.heartbeat_seconds, HEARTBEAT_MIN, HEARTBEAT_MAX, unit="s")
    return request.heartbeat_seconds


async def _run(produce: Callable[[], T], offload: bool) -> T:
    """Run ``produce`` on a worker thread (numpy releases the GIL) or, when small, right here."""
    if offload:
        return await asyncio.get_running_loop().run_in_executor(None, produce)
    return produce()


class _Ahead:
    """Produces a stream's chunks in order, up to AHEAD_CHUNKS before the sender needs them.

    Large chunks are made on a thread of the stream's own (numpy releases the
    GIL), so generation runs on one core while gRPC sends on the other; small
    ones are made inline, one at a time, as the thread hop would cost more.
    """

    def __init__(self, produce: Callable[[], T], total: int, offload: bool) -> None:
        self._produce = produce
        self._left = total
        self._pending: collections.deque[asyncio.Future[T]] = collections.deque()
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream")
            if offload
            else None
        )
        self._depth = AHEAD_CHUNKS if offload else 1

    def _submit(self) -> asyncio.Future[T]:
        if self._executor is not None:
            return asyncio.wrap_future(self._executor.submit(self._produce))
        future = asyncio.get_running_loop().create_future()
        future.set_result(self._produce())
        return future

    def next(self) -> asyncio.Future[T] | None:
        """The next chunk's future (None after the last), keeping the pipeline full."""
        while self._left and len(self._pending) < self._depth + 1:
            self._pending.append(self._submit())
            self._left -= 1
        return self._pending.popleft() if self._pending else None

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _serialize(reply: bytes | Message) -> bytes:
    """Streams and price replies arrive already serialized; the rest are messages."""
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


_HANDLER_KINDS = {  # (client streams, server streams) -> gRPC's handler factory
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_to_server(servicer: MarketDataServicer, server: grpc.aio.Server) -> None:
    """Register every method the proto declares, its shape and request type read from the descriptor."""
    service = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"]
    handlers = {
        method.name: _HANDLER_KINDS[method.client_streaming, method.server_streaming](
            getattr(servicer, method.name),
            request_deserializer=getattr(market_data_pb2, method.input_type.name).FromString,
            response_serializer=_serialize,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
