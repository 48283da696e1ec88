"""How price replies leave the server: generation off the event loop, read-ahead,
pacing, and the drain that cuts streams short at shutdown.

A whole path is generated on a worker thread when large (numpy releases the
GIL). A stream generates up to AHEAD_CHUNKS chunks ahead on a thread of its
own while gRPC sends, so both cores work; a paced one sends each chunk when
its last tick is due. Cancelling the call stops the generation at once.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc

from . import status
from .metrics import StreamTracker
from .requests import CallPlan
from .sim.checks import ParameterError
from .sim.paths import Block, PathBuilder
from .wire import ENCODERS

_LOGGER = logging.getLogger(__name__)

try:  # gRPC exposes no public type for "the call is gone" on a server write.
    from grpc._cython.cygrpc import ExecuteBatchError as _WRITE_AFTER_PEER_LEFT
except ImportError:  # pragma: no cover - another gRPC build: let it surface
    _WRITE_AFTER_PEER_LEFT = ()

# Blocks at least this large are generated on a worker thread (numpy releases
# the GIL), so the event loop keeps serving other calls meanwhile.
OFFLOAD_MIN_PRICES = 8_192
# How many large chunks a stream may have generated before the sender takes them.
# One to three ran alike on a 2-core machine, six no better; deeper only costs memory.
AHEAD_CHUNKS = 2
# Share of the shutdown grace period after which open streams are ended with
# UNAVAILABLE, before gRPC cancels whatever is still running.
DRAIN_SHARE = 0.9
T = TypeVar("T")


class Drain:
    """Shutdown as streams see it: set ``DRAIN_SHARE`` of the grace period after it begins."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def started(self) -> bool:
        return self._event.is_set()

    def begin(self, grace: float) -> None:
        """Let open streams run for most of ``grace`` seconds, then end them with UNAVAILABLE."""
        asyncio.get_running_loop().call_later(grace * DRAIN_SHARE, self._event.set)

    async def sleep_until(self, due: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until ``due`` on the loop clock, or until draining starts."""
        delay = due - loop.time()
        if delay > 0 and not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout=delay)
            except TimeoutError:
                pass


async def send(context: grpc.aio.ServicerContext, message: bytes) -> bool:
    """Write one message of a stream; False if the client has already gone.

    gRPC fails a write that races the client's cancel before it reports the
    cancel; that is the client leaving, not a server fault to log.
    """
    try:
        await context.write(message)
    except _WRITE_AFTER_PEER_LEFT:
        return False
    return True


class PathStreamer:
    """Delivers planned paths: whole (one reply) or streamed (chunks, paced or not)."""

    def __init__(self, tracker: StreamTracker, drain: Drain, wire: str, block_size: int) -> None:
        if wire not in ENCODERS:
            raise ValueError(f"wire must be one of {tuple(ENCODERS)}, got {wire!r}")
        self._tracker, self._drain = tracker, drain
        self._encoder = ENCODERS[wire]
        self._block_size = block_size  # values per block when a whole reply is built in pieces

    def _encode(self, call: CallPlan, message: type) -> Callable[[Block], bytes]:
        return self._encoder(message, call.seed, call.symbol, call.path.symbols).encode

    async def whole(self, call: CallPlan, message: type, context: grpc.aio.ServicerContext) -> bytes:
        """The whole path as one serialized ``message``."""
        self._tracker.unary()
        encode = self._encode(call, message)

        def produce() -> bytes:
            return encode(PathBuilder(call.path).whole(self._block_size))

        try:
            return await _run(produce, offload=call.periods >= OFFLOAD_MIN_PRICES)
        except ParameterError as err:  # found only while generating (a calendar that runs dry)
            await status.abort_invalid(context, err)

    async def stream(self, call: CallPlan, message: type, context: grpc.aio.ServicerContext) -> None:
        """The path as a stream of ``message`` chunks, read ahead, paced if asked."""
        _LOGGER.debug("stream periods=%d seed=%d chunk_size=%d", call.periods, call.seed, call.chunk_size)
        loop = asyncio.get_running_loop()
        builder = PathBuilder(call.path)
        encode = self._encode(call, message)

        def produce() -> tuple[int, int, bytes]:
            block = builder.next(call.chunk_size)
            return block.offset, block.count, encode(block)

        started = loop.time()
        self._tracker.opened()
        offload = call.chunk_size >= OFFLOAD_MIN_PRICES
        ahead = ReadAhead(produce, -(-call.periods // call.chunk_size), offload)
        try:
            while (upcoming := ahead.next()) is not None:
                try:
                    offset, count, data = await upcoming
                except ParameterError as err:  # found only while generating (a calendar that runs dry)
                    await status.abort_invalid(context, err)
                self._tracker.generated(count)
                if call.ticks_per_second is not None:
                    # The chunk is due when its last tick is; the first tick is at start.
                    await self._drain.sleep_until(
                        started + (offset + count - 1) / call.ticks_per_second, loop
                    )
                if self._drain.started:
                    await status.abort(context, grpc.StatusCode.UNAVAILABLE, status.stream_draining(offset))
                if not await send(context, data):
                    _LOGGER.debug("stream ended by the client before offset %d", offset)
                    return
        finally:
            ahead.close()
            self._tracker.closed()


async def _run(produce: Callable[[], T], offload: bool) -> T:
    """Run ``produce`` on a worker thread (numpy releases the GIL) or, when small, right here."""
    if offload:
        return await asyncio.get_running_loop().run_in_executor(None, produce)
    return produce()


class ReadAhead:
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
        try:
            future.set_result(self._produce())
        except Exception as err:  # delivered where the chunk is awaited, as from the thread
            future.set_exception(err)
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
