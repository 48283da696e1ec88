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
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from marketdata.v1 import market_data_pb2

from .book_wire import DataKey, DepthEncoding
from .limits import FeedLimits, LimitExceeded
from .metrics import ServiceMetrics
from .sim.checks import ParameterError, listed, quoted
from .sim.depth import DepthTick, MarketDepth, Tape
from .sim.market import Market, MarketTick
from .sim.universe import MarketConfig
from .wire import EVENT_SNAPSHOT, TickEncoding

_LOGGER = logging.getLogger(__name__)

_TYPES = market_data_pb2.DataType
LAST_PRICE, TOP_OF_BOOK, ORDER_BOOK = _TYPES.LAST_PRICE, _TYPES.TOP_OF_BOOK, _TYPES.ORDER_BOOK
_TYPE_NAMES = {value: name for name, value in _TYPES.items() if value}
# Data types that count against --max-book-subscriptions.
BOOK_TYPES = (TOP_OF_BOOK, ORDER_BOOK)
# Levels a side of a book asked for with depth 0.
DEFAULT_BOOK_DEPTH = 10


class DataRequest(NamedTuple):
    """One DataSubscription of a SubscribeRequest: a data type, its symbols (empty: every
    instrument) and, for ORDER_BOOK, the depth (0: DEFAULT_BOOK_DEPTH)."""

    kind: int
    symbols: tuple[str, ...]
    depth: int


def _book_count(subscriber: Subscriber) -> int:
    return sum(len(subscriber.data.get(kind, ())) for kind in BOOK_TYPES)


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
        # Books and trades follow the published ticks: computed with each (on the clock's
        # thread when it runs), kept for the unary calls, encoded once for every subscriber.
        self._depth_model = MarketDepth(config, self.market.seed)
        self.depth: DepthTick = self._depth_model.next(self.market.last)
        self.tape = Tape(len(config.instruments), self.limits.trade_history, self.limits.candle_history)
        self.depth_encoding = DepthEncoding(
            self.depth, None, config.symbols, self.encoding.time, _nanoseconds(self.exchange_time), self.tape
        )
        self._book_subscriptions = 0  # (subscriber, symbol) pairs of ORDER_BOOK and TOP_OF_BOOK
        # Positions whose books some subscriber follows, replaced whole (the clock's thread reads it).
        self._watched: frozenset[int] = frozenset()
        self._watchers: collections.Counter[int] = collections.Counter()  # position -> subscribers

    @property
    def book_subscriptions(self) -> int:
        """Order-book and top-of-book subscriptions held: one per symbol of each subscriber."""
        return self._book_subscriptions

    @book_subscriptions.setter
    def book_subscriptions(self, count: int) -> None:
        self._book_subscriptions = count
        if self.metrics is not None:
            self.metrics.book_subscriptions.set(count)

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

    def subscribe(self, symbols: Sequence[str], data: Sequence[DataRequest] = ()) -> Subscriber:
        """Register a subscriber to the last prices of ``symbols`` or to ``data`` (per data type);
        ParameterError for unknown or repeated symbols and bad types or depths, LimitExceeded
        for limits. Both empty: the last prices of every instrument."""
        if data and symbols:
            raise ParameterError(
                "symbols",
                "give either symbols or data, not both: ask for last prices with a LAST_PRICE entry of data",
            )
        if len(data) > len(_TYPE_NAMES):
            raise ParameterError(
                "data",
                f"data may hold at most {len(_TYPE_NAMES)} entries, one per data type, got {len(data)}",
            )
        if not data:
            data = [DataRequest(LAST_PRICE, tuple(symbols), 0)]
        wanted: dict[int, dict[str, int]] = {}
        for n, request in enumerate(data):
            kind = self.data_type(request.kind, f"data[{n}].type")
            if kind in wanted:
                raise ParameterError(
                    f"data[{n}].type",
                    f"each data type may be asked for once; {_TYPE_NAMES[kind]} is repeated",
                )
            names = tuple(request.symbols) or self.config.symbols
            self.check_symbol_count(len(names), "a subscription")
            repeated = [s for s, count in collections.Counter(names).items() if count > 1]
            if repeated:  # each copy would cost an entry on every tick
                raise ParameterError("symbols", f"symbols must not repeat; repeated: {listed(repeated)}")
            self.market.index_of(names)  # unknown symbols
            depth = self.book_depth(request.depth, f"data[{n}].depth") if kind == ORDER_BOOK else 0
            wanted[kind] = dict.fromkeys(names, depth)
        self._reserve_books(sum(len(v) for k, v in wanted.items() if k in BOOK_TYPES))
        prices = tuple(wanted.pop(LAST_PRICE, ()))
        subscriber = Subscriber(tuple(self.market.index_of(prices)), prices, self.limits)
        subscriber.data = wanted
        self._rekey(subscriber)
        try:
            return self._register(subscriber)
        except LimitExceeded:
            self.book_subscriptions -= _book_count(subscriber)
            raise

    def first_events(self, subscriber: Subscriber) -> None:
        """Queue what a new subscription gets first, at once: a snapshot of its prices, its
        books whole, or a heartbeat when it has neither (trades and candles only), so a
        client knows it is subscribed."""
        if subscriber.positions:
            subscriber.send(self.encoding.event(subscriber.positions, EVENT_SNAPSHOT))
        encoding = self.depth_encoding
        subscriber.offer(lambda: [e for k, p, d in subscriber.data_key for e in encoding.snapshot(k, p, d)])
        if not subscriber.positions and not any(k in BOOK_TYPES for k, _, _ in subscriber.data_key):
            subscriber.send(self.encoding.heartbeat)

    def book_depth(self, depth: int, field: str) -> int:
        """A requested book depth, checked: 0 means DEFAULT_BOOK_DEPTH (or every level the
        model has, or --max-book-depth, if fewer); more than the model's levels is invalid,
        more than --max-book-depth refused."""
        levels = self.config.book.levels
        default = min(DEFAULT_BOOK_DEPTH, levels, self.limits.max_book_depth)
        if depth == 0:
            depth = default
        if not 1 <= depth <= levels:
            raise ParameterError(field, f"{field} must be in [0, {levels}] (0 means {default}), got {depth}")
        if depth > self.limits.max_book_depth:
            raise LimitExceeded(
                f"{field} may be at most {self.limits.max_book_depth} levels (server flag --max-book-depth), "
                f"got {depth}",
                flag="--max-book-depth",
            )
        return depth

    @staticmethod
    def data_type(kind: int, field: str) -> int:
        """A DataType from a request (unset: LAST_PRICE); ParameterError naming ``field``."""
        kind = kind or LAST_PRICE
        if kind not in _TYPE_NAMES:
            raise ParameterError(
                field, f"{field} must be one of {', '.join(_TYPE_NAMES.values())}, got {kind}"
            )
        return kind

    def _reserve_books(self, count: int) -> None:
        """Count ``count`` more book subscriptions, or LimitExceeded past --max-book-subscriptions."""
        most = self.limits.max_book_subscriptions
        if self.book_subscriptions + count > most:
            raise LimitExceeded(
                f"the server holds {self.book_subscriptions} order-book and top-of-book subscriptions "
                f"and {count} more would pass its limit of {most} (server flag --max-book-subscriptions)",
                flag="--max-book-subscriptions",
            )
        self.book_subscriptions += count

    def _watch(self, subscriber: Subscriber, sign: int) -> None:
        """Count (sign 1) or uncount (-1) the books ``subscriber`` follows among the watched."""
        for kind, positions, _ in subscriber.data_key:
            if kind in BOOK_TYPES:
                self._watchers.update({p: sign for p in positions})
        self._watchers = +self._watchers  # drop the positions nobody follows any more
        self._watched = frozenset(self._watchers)

    def _rekey(self, subscriber: Subscriber) -> None:
        """Recompute a subscriber's DepthEncoding key after its data types changed."""
        key = []
        for kind in sorted(subscriber.data):
            symbols = subscriber.data[kind]
            if symbols:
                positions = tuple(self.market.index_of(list(symbols)))
                key.append((kind, positions, tuple(symbols.values())))
        subscriber.data_key = tuple(key)

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
        self._watch(subscriber, 1)
        if self.metrics is not None:
            self.metrics.subscribers.set(len(self._subscribers))
        return subscriber

    def change(
        self,
        subscriber: Subscriber,
        add: Sequence[str],
        remove: Sequence[str],
        kind: int = LAST_PRICE,
        depth: int = 0,
    ) -> tuple[list[tuple[str, int, str]], bytes | None]:
        """Apply one change to the ``kind`` data of a subscriber: per symbol (symbol,
        SymbolStatus code, message), and the price snapshot of the symbols added, to send after
        the status (books added are queued whole, in tick order). ``depth`` is checked (book_depth)."""
        codes = market_data_pb2.SymbolStatus
        if kind == LAST_PRICE:
            current = dict.fromkeys(subscriber.symbols, 0)  # ordered, and each look-up O(1)
        else:
            current = dict(subscriber.data.get(kind, {}))
        if kind == ORDER_BOOK and add:
            depth = self.book_depth(depth, "subscribe.depth")
        outcome: list[tuple[str, int, str]] = []
        added: dict[str, int] = {}
        for symbol in add:
            if symbol in current and current[symbol] == (depth if kind == ORDER_BOOK else 0):
                outcome.append((symbol, codes.ALREADY_SUBSCRIBED, ""))
            elif not self.market.knows(symbol):
                outcome.append(
                    (symbol, codes.UNKNOWN_SYMBOL, f"no instrument {quoted(symbol)} in this market")
                )
            elif symbol in current:  # another depth: a new snapshot follows
                current[symbol] = added[symbol] = depth
                outcome.append((symbol, codes.SUBSCRIBED, ""))
            elif len(current) >= self.limits.max_symbols:
                outcome.append(
                    (
                        symbol,
                        codes.LIMIT_EXCEEDED,
                        f"at most {self.limits.max_symbols} symbols per subscription",
                    )
                )
            elif kind in BOOK_TYPES and self.book_subscriptions >= self.limits.max_book_subscriptions:
                outcome.append(
                    (
                        symbol,
                        codes.LIMIT_EXCEEDED,
                        f"the server holds its limit of {self.limits.max_book_subscriptions} order-book "
                        "and top-of-book subscriptions (server flag --max-book-subscriptions)",
                    )
                )
            else:
                if kind in BOOK_TYPES:
                    self.book_subscriptions += 1
                current[symbol] = added[symbol] = depth if kind == ORDER_BOOK else 0
                outcome.append((symbol, codes.SUBSCRIBED, ""))
        for symbol in remove:
            if symbol in current:
                del current[symbol]
                added.pop(symbol, None)
                if kind in BOOK_TYPES:
                    self.book_subscriptions -= 1
                outcome.append((symbol, codes.UNSUBSCRIBED, ""))
            else:
                outcome.append((symbol, codes.NOT_SUBSCRIBED, ""))
        if kind == LAST_PRICE:
            subscriber.symbols = tuple(current)
            subscriber.positions = tuple(self.market.index_of(current))
            if added:
                return outcome, self.encoding.event(tuple(self.market.index_of(list(added))), EVENT_SNAPSHOT)
        else:
            self._watch(subscriber, -1)
            subscriber.data[kind] = current
            self._rekey(subscriber)
            self._watch(subscriber, 1)
            if added:  # queued as a tick is, so a reader that reads nothing holds no more
                positions, depths = tuple(self.market.index_of(list(added))), tuple(added.values())
                self._count_conflated(
                    subscriber.offer(lambda: self.depth_encoding.snapshot(kind, positions, depths))
                )
        return outcome, None

    def status_event(self, outcome: list[tuple[str, int, str]], kind: int = LAST_PRICE) -> bytes:
        """A MarketEvent carrying a SubscriptionStatus about ``kind``, stamped with the last tick."""
        status = market_data_pb2.SubscriptionStatus(
            symbols=[
                market_data_pb2.SymbolStatus(symbol=s, code=c, message=m, type=kind) for s, c, m in outcome
            ]
        )
        return self.encoding.status(status.SerializeToString())

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._changed:
            if subscriber in self._subscribers:
                self.book_subscriptions -= _book_count(subscriber)
                self._watch(subscriber, -1)
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

    def depth_at(self, tick: MarketTick) -> DepthTick:
        """The books and trades of ``tick``, the next one to publish; called once per published
        tick, in order, from the thread that computes them. The books subscribers follow are
        computed here (on the clock's thread when it runs), not on the event loop."""
        return self._depth_model.next(tick, self._watched)

    def publish(self, tick: MarketTick, exchange_time: float, depth: DepthTick | None = None) -> None:
        """Make ``tick`` (and ``depth``, its books and trades, computed here when None) the last
        one and queue it for every subscriber (on the event loop)."""
        if depth is None:
            depth = self.depth_at(tick)
        self._published = tick
        self.exchange_time = exchange_time
        self.encoding = TickEncoding(tick, self.config.symbols, exchange_time)
        time_ns = _nanoseconds(exchange_time)
        for position, trades in enumerate(depth.trades):
            if trades is not None:
                self.tape.add(position, trades, time_ns)
        previous, self.depth = self.depth, depth
        self.depth_encoding = DepthEncoding(
            depth, previous, self.config.symbols, self.encoding.time, time_ns, self.tape
        )
        dropped = 0
        for subscriber in self._subscribers:
            if subscriber.positions or subscriber.data_key:
                dropped += subscriber.offer(functools.partial(self._bundle, subscriber))
        if self.metrics is not None:
            self.metrics.market_sequence.set(tick.sequence)
        self._count_conflated(dropped)

    def _count_conflated(self, dropped: int) -> None:
        """Count ``dropped`` updates conflated away on /metrics."""
        if dropped and self.metrics is not None:
            self.metrics.conflated.inc(dropped)

    def _bundle(self, subscriber: Subscriber) -> list[bytes]:
        """A subscriber's events of the tick just published: its prices, then books, trades
        and candles (whole books if it asked for a fresh snapshot)."""
        events = [self.encoding.event(subscriber.positions)] if subscriber.positions else []
        if subscriber.data_key:
            events += self.depth_encoding.events(subscriber.data_key, subscriber.resnapshot)
            subscriber.resnapshot = False
        return events

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


def _nanoseconds(seconds: float) -> int:
    """A wall time in seconds as integer nanoseconds, as its Timestamp holds it."""
    return round(seconds * 1e9)


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
            # The next tick is computed ahead, half an interval before it is due (its prices and
            # books depend on nothing but the sequence), so at its time it is only handed over:
            # what it costs to compute is not a delay every subscriber sees.
            if self._stopped.wait(max(0.0, next_due - interval / 2 - feed._wall_clock())):
                return
            ahead = None
            if feed.due_sequence(feed._wall_clock()) <= feed.market.last.sequence:
                tick = feed.market.tick()
                ahead = tick, feed.depth_at(tick)
                if self._stopped.wait(max(0.0, next_due - feed._wall_clock())):
                    return
                if feed.due_sequence(feed._wall_clock()) == tick.sequence:
                    if not self._hand_over(tick, next_due, ahead[1]):
                        return
                    continue
            # Behind, it publishes at least every PUBLISH_BUDGET of work, with the gap showing.
            due = feed.compute_due(feed._wall_clock(), self._stopped, PUBLISH_BUDGET)
            if due is None:
                if ahead is not None:  # computed ahead, then nothing more due (a clock step back)
                    if not self._hand_over(ahead[0], next_due, ahead[1]):
                        return
                continue
            tick, exchange_time, skipped = due
            skipped += ahead is not None  # the tick computed ahead was passed over too
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
            if not self._hand_over(tick, exchange_time, feed.depth_at(tick)):
                return

    def _hand_over(self, tick: MarketTick, exchange_time: float, depth: DepthTick) -> bool:
        """Have the event loop publish ``tick``; False once the loop has closed (the server is gone)."""
        try:
            self._loop.call_soon_threadsafe(self._feed.publish, tick, exchange_time, depth)
        except RuntimeError:
            return False
        return True


class Subscriber:
    """One subscription's bounded queue of encoded updates."""

    def __init__(self, positions: tuple[int, ...], symbols: tuple[str, ...], limits: FeedLimits) -> None:
        self.positions = positions  # LAST_PRICE: market positions of its symbols
        self.symbols = symbols
        # Other data types: type -> {symbol: depth (ORDER_BOOK) or 0}, in the order subscribed,
        # and the same as market positions (DepthEncoding's key).
        self.data: dict[int, dict[str, int]] = {}
        self.data_key: DataKey = ()
        self.resnapshot = False  # its next books must be whole: it skipped ticks
        self._limits = limits
        # One entry per tick: that tick's events, sent in order.
        self._queue: collections.deque[collections.deque[bytes]] = collections.deque()
        self._control: collections.deque[bytes] = collections.deque()  # never conflated
        self._wake = asyncio.Event()
        self.problem: Exception | None = None  # set by a request reader to end the stream
        self.overflowed = False  # the disconnect policy ended it
        self.closing = False  # the server is shutting down
        self.skipped = 0  # updates dropped by conflation

    def offer(self, make: Callable[[], Sequence[bytes]]) -> int:
        """Queue one tick's events without ever blocking the market; how many queued ticks it
        dropped. ``make()`` makes them once room is made, so a subscriber conflated just now
        is sent whole books (resnapshot); a subscriber ended by the disconnect policy gets none."""
        dropped = self._make_room()
        if not self.overflowed:
            events = make()
            if events:  # an empty tick queues nothing
                self._queue.append(collections.deque(events))
                self._wake.set()
        return dropped

    def _make_room(self) -> int:
        """Before a tick is queued: when --subscriber-buffer ticks wait already, drop them all
        (conflate: every tick carries each symbol's latest price, and books come whole after
        it) or mark the subscriber overflowed (disconnect); how many ticks were dropped."""
        if len(self._queue) < self._limits.buffer_ticks:
            return 0
        if self._limits.slow_policy == "disconnect":
            self.overflowed = True
            self._wake.set()
            return 0
        dropped = len(self._queue)
        self.skipped += dropped
        self._queue.clear()
        self.resnapshot = True
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
        if not self._queue:
            return None
        tick = self._queue[0]
        event = tick.popleft()
        if not tick:
            self._queue.popleft()
        return event
