"""The live feed: runs the simulated Market on the server's clock, stamps each
tick and queues it for every subscriber.

The clock counts from the market's epoch (the market file's, else the start):
tick n is due at epoch + n x the wall interval and stamped with that time, so
replicas given the same file publish the same ticks at the same times, and one
started late computes the ticks it missed (Market.advance) before serving.

The Market (``sim.market``) is pure; this module adds wall time and the
subscribers' bounded queues. Tests leave the clock off and call
``advance()`` themselves.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence

from marketdata.v1 import market_data_pb2

from .limits import FeedLimits, LimitExceeded
from .metrics import ServiceMetrics
from .sim.checks import ParameterError, listed, quoted
from .sim.market import Market, MarketTick
from .sim.universe import MarketConfig
from .wire import TickEncoding

_LOGGER = logging.getLogger(__name__)


class MarketFeed:
    """A Market, the wall time of its last tick, and the task that ticks it."""

    def __init__(
        self,
        config: MarketConfig,
        seed: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        limits: FeedLimits | None = None,
        epoch: float | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        """``epoch`` is the wall time of tick 0; tick n is due at epoch + n x wall_interval.
        Unset, it is the market file's ``epoch``, else now. Feeds given the same seed and
        epoch (replicas sharing a market file, the workers of --workers N) publish the same
        prices at the same sequence numbers and exchange times. metrics, if
        given, follow the subscribers, the sequence, conflation and the clock's lag."""
        self.market = Market(config, seed)
        self.metrics = metrics
        self.limits = limits or FeedLimits()
        self._wall_clock = wall_clock
        if epoch is None:
            epoch = config.epoch if config.epoch is not None else wall_clock()
        self.epoch = epoch
        self._slice_ticks = 1  # ticks computed at once while catching up (see _catch_up_slice)
        self.exchange_time = self.epoch  # of the last tick (the opening prices at first)
        self._clock: _Clock | None = None
        self._subscribers: set[Subscriber] = set()
        self._changed = threading.Condition()  # for tests and operators on other threads
        self._published = self.market.last
        self.encoding = TickEncoding(self.market.last, config.symbols, self.exchange_time)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def wait_subscribers(self, predicate: Callable[[int], bool], timeout: float) -> bool:
        """Block (from another thread) until ``predicate(subscriber_count)`` holds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(len(self._subscribers)), timeout)

    def check_symbol_count(self, count: int, what: str, most: int | None = None) -> None:
        """LimitExceeded when one request names more than ``most`` symbols (--max-symbols)."""
        most = self.limits.max_symbols if most is None else most
        if count > most:
            raise LimitExceeded(
                f"{what} may name at most {most} symbols (server flag --max-symbols), got {count}",
                flag="--max-symbols",
            )

    def subscribe(self, symbols: Sequence[str]) -> Subscriber:
        """Register a subscriber; ParameterError for unknown or repeated symbols, LimitExceeded
        for limits."""
        symbols = tuple(symbols) or self.config.symbols
        self.check_symbol_count(len(symbols), "a subscription")
        repeated = [s for s, n in collections.Counter(symbols).items() if n > 1]
        if repeated:  # each copy would cost a price entry on every tick
            raise ParameterError("symbols", f"symbols must not repeat; repeated: {listed(repeated)}")
        return self._register(Subscriber(tuple(self.market.index_of(symbols)), symbols, self.limits))

    def open_managed(self) -> Subscriber:
        """A subscriber with no symbols yet (ManageSubscription); LimitExceeded when full."""
        return self._register(Subscriber((), (), self.limits))

    def _register(self, subscriber: Subscriber) -> Subscriber:
        if len(self._subscribers) >= self.limits.max_subscribers:
            raise LimitExceeded(
                f"the server already holds its limit of {self.limits.max_subscribers} subscribers "
                "(server flag --max-subscribers); retry later",
                flag="--max-subscribers",
            )
        with self._changed:
            self._subscribers.add(subscriber)
            self._changed.notify_all()
        if self.metrics is not None:
            self.metrics.subscribers.set(len(self._subscribers))
        return subscriber

    def change(
        self, subscriber: Subscriber, add: Sequence[str], remove: Sequence[str]
    ) -> tuple[list[tuple[str, int, str]], tuple[int, ...]]:
        """Apply one change; per-symbol (symbol, SymbolStatus code, message), and the positions added."""
        codes = market_data_pb2.SymbolStatus
        current = dict.fromkeys(subscriber.symbols)  # ordered, and each look-up O(1)
        outcome: list[tuple[str, int, str]] = []
        added: list[int] = []
        for symbol in add:
            if symbol in current:
                outcome.append((symbol, codes.ALREADY_SUBSCRIBED, ""))
            elif not self.market.knows(symbol):
                outcome.append(
                    (symbol, codes.UNKNOWN_SYMBOL, f"no instrument {quoted(symbol)} in this market")
                )
            elif len(current) >= self.limits.max_symbols:
                outcome.append(
                    (
                        symbol,
                        codes.LIMIT_EXCEEDED,
                        f"at most {self.limits.max_symbols} symbols per subscription",
                    )
                )
            else:
                current[symbol] = None
                added.append(self.market.index_of([symbol])[0])
                outcome.append((symbol, codes.SUBSCRIBED, ""))
        for symbol in remove:
            if symbol in current:
                del current[symbol]
                outcome.append((symbol, codes.UNSUBSCRIBED, ""))
            else:
                outcome.append((symbol, codes.NOT_SUBSCRIBED, ""))
        subscriber.symbols = tuple(current)
        subscriber.positions = tuple(self.market.index_of(current))
        return outcome, tuple(added)

    def status_event(self, outcome: list[tuple[str, int, str]]) -> bytes:
        """A MarketEvent carrying a SubscriptionStatus, stamped with the last tick."""
        status = market_data_pb2.SubscriptionStatus(
            symbols=[market_data_pb2.SymbolStatus(symbol=s, code=c, message=m) for s, c, m in outcome]
        )
        return self.encoding.status(status.SerializeToString())

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._changed:
            self._subscribers.discard(subscriber)
            self._changed.notify_all()
        if self.metrics is not None:
            self.metrics.subscribers.set(len(self._subscribers))

    def close_subscriptions(self) -> None:
        """Ask every subscription to end (server shutdown)."""
        for subscriber in list(self._subscribers):
            subscriber.close()

    @property
    def config(self) -> MarketConfig:
        return self.market.config

    @property
    def last(self) -> MarketTick:
        """The last published tick (the market itself may already be computing the next)."""
        return self._published

    def advance(self, exchange_time: float | None = None) -> MarketTick:
        """One tick of the market, published to every subscriber, stamped
        ``exchange_time`` (default: now). For tests, with the clock off."""
        tick = self.market.tick()
        self.publish(tick, self._wall_clock() if exchange_time is None else exchange_time)
        return tick

    def publish(self, tick: MarketTick, exchange_time: float) -> None:
        """Make ``tick`` the last one and queue it for every subscriber (on the event loop)."""
        self._published = tick
        self.exchange_time = exchange_time
        self.encoding = TickEncoding(tick, self.config.symbols, exchange_time)
        dropped = 0
        for subscriber in self._subscribers:
            if subscriber.positions:
                dropped += subscriber.offer(self.encoding.event(subscriber.positions))
        if self.metrics is not None:
            self.metrics.market_sequence.set(tick.sequence)
            if dropped:
                self.metrics.conflated.inc(dropped)

    def due_sequence(self, now: float) -> int:
        """The sequence number of the last tick due at wall time ``now`` (0 or less before
        the epoch: the opening prices stand until then)."""
        return int((now - self.epoch) / self.config.wall_interval + 1e-9)

    def compute_due(
        self, now: float, stop: threading.Event | None = None, budget: float | None = None
    ) -> tuple[MarketTick, float, int] | None:
        """Advance the market towards the tick due at wall time ``now``, computing the
        ticks before it silently (so every feed of the same seed and epoch agrees): the
        last tick computed, its scheduled exchange time and how many were passed over;
        None when nothing is due (or ``stop`` was set). With ``budget`` (seconds), stop
        early once that much time is spent, so a market that is behind still publishes.

        Many ticks are computed at once (Market.advance, bit for bit the same as one
        at a time), in slices of about SLICE_SECONDS (half the budget, if less) of work,
        between which ``stop`` and the budget are looked at."""
        interval = self.config.wall_interval
        due = self.due_sequence(now)
        market = self.market
        first = market.last.sequence
        if first >= due:
            return None
        work = SLICE_SECONDS if budget is None else min(SLICE_SECONDS, budget / 2)
        deadline = None if budget is None else time.monotonic() + budget
        while market.last.sequence < due:
            if stop is not None and stop.is_set():
                return None
            self._catch_up_slice(due - market.last.sequence, work)
            if deadline is not None and time.monotonic() >= deadline:
                break
        tick = market.last
        return tick, self.epoch + tick.sequence * interval, tick.sequence - first - 1

    def _catch_up_slice(self, behind: int, seconds: float) -> None:
        """Compute up to ``behind`` ticks at once, as many as about ``seconds`` of work
        allows at the pace of the last slice, and at most twice as many as it had: a
        slice stays short whatever a tick of this market costs."""
        ticks = min(behind, self._slice_ticks)
        started = time.monotonic()
        self.market.advance(ticks)
        spent = time.monotonic() - started
        fits = int(seconds * ticks / spent) if spent > 0 else 2 * ticks
        self._slice_ticks = max(1, min(2 * ticks, fits, MAX_SLICE_TICKS))

    def catch_up(self, now: float, stop: threading.Event | None = None) -> int:
        """Publish the tick due at wall time ``now`` (see compute_due); how many were skipped."""
        due = self.compute_due(now, stop)
        if due is None:
            return 0
        tick, exchange_time, skipped = due
        self.publish(tick, exchange_time)
        return skipped

    def catch_up_before_serving(self, stop: threading.Event | None = None) -> None:
        """Compute the market up to now before the server listens: a replica started long
        after its market's epoch (a restarted worker, a new pod) serves the current tick
        from its first call. Two passes: to the time it starts, then over the time that
        took; the clock does the rest, even for a market that cannot keep up. A catch-up
        over a second of the clock or more is logged, with progress every
        PROGRESS_SECONDS; ``stop`` (a signal) ends it early."""
        target = self._wall_clock()
        behind = self.due_sequence(target) - self.market.last.sequence
        if behind <= 0:
            if self.epoch > target:
                _LOGGER.info("the market opens at its epoch, %s: opening prices until then", _utc(self.epoch))
            return
        logged = behind * self.config.wall_interval >= 1.0
        if logged:
            _LOGGER.info(
                "computing the %d ticks of the market since its epoch, %s, before serving",
                behind,
                _utc(self.epoch),
            )
        started = time.monotonic()
        report = started + PROGRESS_SECONDS
        for _ in range(2):
            while (due := self.compute_due(target, stop, PROGRESS_SECONDS)) is not None:
                tick, exchange_time, _ = due
                self.publish(tick, exchange_time)
                if logged and time.monotonic() >= report:
                    left = self.due_sequence(target) - tick.sequence
                    _LOGGER.info("computed the market up to tick %d; %d more to go", tick.sequence, left)
                    report = time.monotonic() + PROGRESS_SECONDS
            target = self._wall_clock()
        if logged and not (stop is not None and stop.is_set()):
            _LOGGER.info(
                "computed the market up to tick %d in %.1f s",
                self.market.last.sequence,
                time.monotonic() - started,
            )

    def start(self) -> None:
        """Tick every ``config.wall_interval`` seconds on a thread of the clock's own,
        publishing each tick on the running event loop."""
        if self._clock is None:
            self._clock = _Clock(self, asyncio.get_running_loop())
            self._clock.start()

    async def stop(self) -> None:
        if self._clock is not None:
            self._clock.stop()
            self._clock.join(timeout=1)
            self._clock = None


# The most time the clock spends computing ticks before it publishes the latest one.
PUBLISH_BUDGET = 0.05
# Catch-up work comes in slices of about this many seconds, between which the clock looks at
# its stop signal and budget; and at most this many ticks a slice.
SLICE_SECONDS = 0.1
MAX_SLICE_TICKS = 1 << 16
# A long catch-up before serving says how it goes this often.
PROGRESS_SECONDS = 10.0
# At most one "fell behind" line this often, however far behind the clock stays.
WARNING_SECONDS = 10.0


def _utc(seconds: float) -> str:
    """A wall time as ISO 8601 UTC, for the log."""
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Clock(threading.Thread):
    """The market clock: computes each tick when it is due, whatever the event loop is
    doing (requests never delay the market), and hands it to the loop to publish."""

    def __init__(self, feed: MarketFeed, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="market-clock", daemon=True)
        self._feed, self._loop = feed, loop
        self._stopped = threading.Event()
        self._behind = 0  # ticks passed over since the last warning
        self._next_warning = 0.0

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        feed = self._feed
        interval = feed.config.wall_interval
        while not self._stopped.is_set():
            next_due = feed.epoch + (feed.market.last.sequence + 1) * interval
            if self._stopped.wait(max(0.0, next_due - feed._wall_clock())):
                return
            # Behind, it publishes at least every PUBLISH_BUDGET of work, with the gap showing.
            due = feed.compute_due(feed._wall_clock(), self._stopped, PUBLISH_BUDGET)
            if due is None:
                continue
            tick, exchange_time, skipped = due
            self._behind += skipped
            if feed.metrics is not None:
                feed.metrics.ticks_skipped.inc(skipped)
                feed.metrics.ticks_behind.set(max(0, feed.due_sequence(feed._wall_clock()) - tick.sequence))
            if self._behind and time.monotonic() >= self._next_warning:
                _LOGGER.warning(
                    "market clock fell %d ticks behind since the last warning; subscribers see the gaps",
                    self._behind,
                )
                self._behind, self._next_warning = 0, time.monotonic() + WARNING_SECONDS
            try:
                self._loop.call_soon_threadsafe(feed.publish, tick, exchange_time)
            except RuntimeError:  # the loop has closed: the server is gone
                return


class Subscriber:
    """One subscription's bounded queue of encoded updates."""

    def __init__(self, positions: tuple[int, ...], symbols: tuple[str, ...], limits: FeedLimits) -> None:
        self.positions = positions
        self.symbols = symbols
        self._limits = limits
        self._queue: collections.deque[bytes] = collections.deque()
        self._control: collections.deque[bytes] = collections.deque()  # never conflated
        self._wake = asyncio.Event()
        self.problem: Exception | None = None  # set by a request reader to end the stream
        self.overflowed = False  # the disconnect policy ended it
        self.closing = False  # the server is shutting down
        self.skipped = 0  # updates dropped by conflation

    def offer(self, update: bytes) -> int:
        """Queue an update without ever blocking the market; how many queued ones it dropped."""
        dropped = 0
        if len(self._queue) >= self._limits.buffer_ticks:
            if self._limits.slow_policy == "disconnect":
                self.overflowed = True
            else:
                # Every update carries all of the subscriber's symbols, so the
                # newest one holds the latest price of each: keep only it.
                dropped = len(self._queue)
                self.skipped += dropped
                self._queue.clear()
        if not self.overflowed:
            self._queue.append(update)
        self._wake.set()
        return dropped

    def send(self, message: bytes) -> None:
        """Queue a control message (a status or snapshot): sent before updates, never dropped.
        A reader that lets more than --subscriber-buffer of them pile up is ended instead."""
        if len(self._control) >= self._limits.buffer_ticks:
            self.fail(
                LimitExceeded(
                    f"more than {self._limits.buffer_ticks} answers to ManageSubscription requests are "
                    "waiting for the reader (server flag --subscriber-buffer); read the stream as you "
                    "send requests",
                    flag="--subscriber-buffer",
                )
            )
            return
        self._control.append(message)
        self._wake.set()

    def fail(self, problem: Exception) -> None:
        self.problem = problem
        self._wake.set()

    def close(self) -> None:
        self.closing = True
        self._wake.set()

    async def next(self, timeout: float) -> bytes | None:
        """The next message to send, or None after ``timeout`` seconds of quiet."""
        if not (self._control or self._queue or self.overflowed or self.closing or self.problem):
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra task
                    await self._wake.wait()
            except TimeoutError:
                return None
        if self._control:
            return self._control.popleft()
        return self._queue.popleft() if self._queue else None
