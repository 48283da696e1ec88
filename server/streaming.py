"""How price replies leave the server: generation off the event loop on a shared
pool, read-ahead within a server-wide budget, pacing, stalled readers, and the
drain that cuts streams short at shutdown.

Large blocks are generated on a pool of ``--generation-threads`` threads
shared by every call (numpy releases the GIL), so heavy requests queue there
while small calls and the live market go on. While a stream's chunk is being
sent, its next one is made ahead if the ``--read-ahead-mib`` budget has room,
so generation and sending overlap; otherwise it is made when the last one has
gone. An unread stream therefore holds at most the chunk it is sending (and
one made ahead, counted in the budget), and is ended after ``--stall-seconds``
without progress.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import grpc

from . import status
from .handlers import WRITE_AFTER_PEER_LEFT
from .limits import Limits, bytes_per_period
from .metrics import StreamTracker
from .requests import CallPlan
from .sim.checks import ParameterError
from .sim.paths import Block, PathBuilder
from .wire import ENCODERS

_LOGGER = logging.getLogger(__name__)

# Blocks of at least this many values (periods times instruments) are generated on the
# pool, so the event loop keeps serving other calls meanwhile; smaller ones cost less
# than the thread hop.
OFFLOAD_MIN_VALUES = 8_192
# ...or a block whose timestamps run through at least this many sessions (a few ms of work).
OFFLOAD_MIN_SESSIONS = 256
# Chunks of a stream made before the sender needs them (within the read-ahead budget).
# One to three ran alike on a 2-core machine, six no better; deeper only costs memory.
AHEAD = 2
# Share of the shutdown grace period after which open streams are ended with
# UNAVAILABLE, before gRPC cancels whatever is still running.
DRAIN_SHARE = 0.9
MIB = 1 << 20
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


def _heavy(call: CallPlan, periods: int) -> bool:
    """Whether a block of ``periods`` goes to the pool: many values, or few values stamped
    across many sessions (each session day is worked out in Python), or any block with a
    book (a millisecond or more of array work, however few its periods)."""
    time = call.path.time
    return (
        call.path.book is not None
        or periods * call.columns >= OFFLOAD_MIN_VALUES
        or (time is not None and time.sessions_spanned(0, periods) >= OFFLOAD_MIN_SESSIONS)
    )


class Stalled(Exception):
    """The reader accepted nothing for --stall-seconds."""


async def send(context: grpc.aio.ServicerContext, message: bytes, stall: float) -> bool:
    """Write one message of a stream; False if the client has already gone, Stalled if
    it is still there but took nothing for ``stall`` seconds.

    gRPC fails a write that races the client's cancel before it reports the
    cancel; that is the client leaving, not a server fault to log.
    """
    try:
        if getattr(context, "times_writes", False):  # HTTP's: it times only a reader behind
            await context.write(message)
        else:
            async with asyncio.timeout(stall):
                await context.write(message)
    except WRITE_AFTER_PEER_LEFT:
        return False
    except TimeoutError:
        raise Stalled from None
    return True


class Generation:
    """The threads every call generates large blocks on, and the memory that chunks made
    ahead of their readers may take, all streams together.

    Each thread has a queue of its own; a job goes to the least loaded one, and
    all the chunks of one stream go to the same one, so a stream's chunks are
    made in order, back to back, with their arrays warm in one core's cache.
    """

    def __init__(self, threads: int, read_ahead_bytes: int) -> None:
        self._workers = [_Worker(f"generate-{n}") for n in range(threads)]
        self._load = [0] * threads  # jobs queued or running on each thread
        self._room = read_ahead_bytes
        self.held = 0  # bytes of chunks made ahead and not yet sent

    def least_loaded(self) -> int:
        return min(range(len(self._workers)), key=self._load.__getitem__)

    def submit(self, produce: Callable[[], T], worker: int | None = None) -> asyncio.Future[T]:
        """``produce()`` on thread ``worker`` (the least loaded if None), as a future; a closed
        pool (the server has stopped) gives a cancelled one."""
        worker = self.least_loaded() if worker is None else worker
        try:
            future = asyncio.wrap_future(self._workers[worker].submit(produce))
        except RuntimeError:  # shut down: the call is over anyway
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            return future
        self._load[worker] += 1
        future.add_done_callback(lambda _: self._done(worker))
        return future

    def _done(self, worker: int) -> None:
        self._load[worker] -= 1

    def run(self, produce: Callable[[], T], offload: bool) -> asyncio.Future[T]:
        """``produce()`` on the pool, or right here when small: its result as a future either way
        (an error included, delivered where it is awaited)."""
        if offload:
            return self.submit(produce)
        future = asyncio.get_running_loop().create_future()
        try:
            future.set_result(produce())
        except Exception as err:
            future.set_exception(err)
        return future

    @property
    def room(self) -> int:
        """The bytes all streams (and HTTP replies) may hold for their readers."""
        return self._room

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes of read-ahead room if there is that much."""
        if self.held + size > self._room:
            return False
        self.held += size
        return True

    def free(self, size: int) -> None:
        self.held -= size

    def close(self) -> None:
        for worker in self._workers:
            worker.shutdown()


class _Worker:
    """One thread and its queue of jobs. A daemon: a job still running when the server
    stops (a heavy path takes seconds) must not hold the process past its grace period,
    which the standard executor's threads, joined at exit, would."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise RuntimeError("the generation pool has stopped")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, job))
        return future

    def shutdown(self) -> None:
        """Take no more jobs, cancel those waiting, end the thread after the running one."""
        self._closed = True
        self._jobs.put(None)

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if self._closed:
                future.cancel()
                continue
            if not future.set_running_or_notify_cancel():  # cancelled while it waited
                continue
            try:
                future.set_result(job())
            except BaseException as err:  # delivered where the result is awaited
                future.set_exception(err)


class Lane:
    """A stream's chunks, made in order on one thread of the pool, up to AHEAD of them
    before the sender takes them; those beyond the one it needs now only within the
    server's read-ahead budget."""

    def __init__(self, generation: Generation, produce: Callable[[], tuple], total: int, size: int) -> None:
        self._generation, self._produce = generation, produce
        self._worker = generation.least_loaded()
        self._left = total  # chunks not yet asked for
        self._size = size  # bytes a chunk is expected to take, for the budget
        self._pending: collections.deque[tuple[asyncio.Future, int]] = collections.deque()  # future, reserved

    def _top_up(self) -> None:
        while self._left and len(self._pending) < 1 + AHEAD:
            ahead = bool(self._pending)  # the one the sender needs now is always made
            if ahead and not self._generation.reserve(self._size):
                return
            self._pending.append(
                (self._generation.submit(self._produce, self._worker), self._size if ahead else 0)
            )
            self._left -= 1

    async def next(self) -> tuple[tuple | None, int]:
        """The next chunk (None after the last) and the read-ahead bytes it holds."""
        self._top_up()
        if not self._pending:
            return None, 0
        future, reserved = self._pending.popleft()
        try:
            result = await future
        except BaseException:
            self._generation.free(reserved)
            raise
        self._top_up()
        return result, reserved

    def close(self) -> None:
        """Stop making chunks; give back the budget of those nobody will take."""
        for future, reserved in self._pending:
            future.cancel()
            self._generation.free(reserved)
        self._pending.clear()


class PathStreamer:
    """Delivers planned paths: whole (one reply) or streamed (chunks, paced or not)."""

    def __init__(self, tracker: StreamTracker, drain: Drain, wire: str, limits: Limits) -> None:
        if wire not in ENCODERS:
            raise ValueError(f"wire must be one of {tuple(ENCODERS)}, got {wire!r}")
        self._tracker, self._drain, self._limits = tracker, drain, limits
        self._encoder = ENCODERS[wire]
        self.generation = Generation(limits.generation_threads, limits.read_ahead_mib * MIB)

    def _encode(self, call: CallPlan, message: type) -> Callable[[Block], bytes]:
        return self._encoder(message, call.seed, call.symbol, call.path.symbols).encode

    async def whole(self, call: CallPlan, message: type, context: grpc.aio.ServicerContext) -> bytes:
        """The whole path as one serialized ``message``."""
        self._tracker.unary()
        encode = self._encode(call, message)
        block_size = self._limits.default_chunk_size  # bars are built this many values at a time

        def produce() -> bytes:
            return encode(PathBuilder(call.path).whole(block_size))

        offload = _heavy(call, call.periods)
        try:
            reply = await self.generation.run(produce, offload)
        except ParameterError as err:  # found only while generating (a calendar that runs dry)
            await status.abort_invalid(context, err)
        self._tracker.made_whole(call.periods * call.columns)
        return reply

    async def stream(self, call: CallPlan, message: type, context: grpc.aio.ServicerContext) -> None:
        """The path as a stream of ``message`` chunks, paced if asked (see the module docstring)."""
        _LOGGER.debug("stream periods=%d seed=%d chunk_size=%d", call.periods, call.seed, call.chunk_size)
        loop = asyncio.get_running_loop()
        builder = PathBuilder(call.path)
        encode = self._encode(call, message)
        offload = _heavy(call, call.chunk_size)
        limits, generation = self._limits, self.generation

        def produce() -> tuple[int, int, bytes]:
            block = builder.next(call.chunk_size)
            return block.offset, block.count, encode(block)

        started = loop.time()
        self._tracker.opened()
        lane = None
        if offload:
            size = call.chunk_size * bytes_per_period(call.path)  # a chunk's bytes, about
            lane = Lane(generation, produce, -(-call.periods // call.chunk_size), size)
        reserved = 0  # read-ahead bytes of the chunk in hand
        try:
            while True:
                if lane is not None:
                    try:
                        chunk, reserved = await lane.next()
                    except ParameterError as err:  # found only while generating (a calendar that runs dry)
                        await status.abort_invalid(context, err)
                    if chunk is None:
                        return
                elif builder.position < call.periods:
                    try:
                        chunk = produce()
                    except ParameterError as err:
                        await status.abort_invalid(context, err)
                else:
                    return
                offset, count, data = chunk
                self._tracker.generated(count, call.columns)
                if call.ticks_per_second is not None:
                    # The chunk is due when its last tick is; the first tick is at start.
                    due = started + (offset + count - 1) / call.ticks_per_second
                    await self._drain.sleep_until(due, loop)
                if self._drain.started:
                    await status.abort(context, grpc.StatusCode.UNAVAILABLE, status.stream_draining(offset))
                if loop.time() - started > limits.max_stream_seconds:
                    await status.cut_short(
                        context, "--max-stream-seconds", status.stream_too_long(limits, offset)
                    )
                try:
                    sent = await send(context, data, limits.stall_seconds)
                except Stalled:
                    status.end_stalled(context, limits.stall_seconds)
                    return
                if not sent:
                    _LOGGER.debug("stream ended by the client before offset %d", offset)
                    return
                generation.free(reserved)
                reserved = 0
        finally:
            if lane is not None:
                lane.close()
            generation.free(reserved)
            self._tracker.closed()
