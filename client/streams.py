"""What a streaming call returns: iterators that cancel the call when their ``with`` block ends.

PriceStream yields a path's chunks; Subscription yields live market events
(MarketEvent messages, or DecodedEvents when asked for numpy) and counts the
ticks a slow reader skipped (``gaps``), subscribing again after a lost server
if asked; ManagedSubscription changes its symbols and data types while it
runs.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

import grpc

from marketdata.v1 import market_data_pb2

from .decoding import PriceChunk
from .events import BOOK_KINDS, DecodedEvent, event_kind, exchange_time_ns
from .requests import add_symbols_request, remove_symbols_request

Event = market_data_pb2.MarketEvent | DecodedEvent
# Events a new subscription starts over with: its books follow its own snapshot (the book
# sequence says whether an update follows), and status answers its own requests.
_STARTS_OVER = frozenset({*BOOK_KINDS, "status"})
# Events whose every tick counts (prints, candle changes): a replayed tick is dropped by kind.
_BY_KIND = frozenset({"trades", "candles"})


class _CancelOnExit(AbstractContextManager):
    """Leaving a ``with`` block cancels the call, so the server stops its work."""

    def cancel(self) -> None:
        self._call.cancel()

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


class SequenceGaps:
    """Counts ``gaps``: market ticks skipped for a subscriber (a slow reader
    under the conflate policy), from the sequence numbers of its last-price
    updates. (Books say their own gaps: see client.book.BookKeeper.)"""

    last_sequence: int | None = None
    gaps = 0

    def _count(self, event: Event) -> Event:
        kind = event_kind(event)
        if kind == "snapshot":
            self.last_sequence = event.sequence  # a new (re)subscription restarts the count
        elif kind == "update":
            if self.last_sequence is not None:
                self.gaps += max(0, event.sequence - self.last_sequence - 1)
            self.last_sequence = event.sequence
        return event


class PriceStream(_CancelOnExit):
    """Iterates the chunks of one StreamGbmPrices call; ``cancel()`` stops the server's work.

    Use it as a context manager so that leaving the block early cancels the call.
    """

    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[PriceChunk]:
        return iter(self._call)


class Subscription(SequenceGaps, _CancelOnExit):
    """Iterates the events of one Subscribe call, counting ``gaps``: MarketEvent messages, or
    DecodedEvents (books and trades as numpy arrays) for ``subscribe(numpy=True)``.

    With ``resubscribe``, a subscription the server ends with UNAVAILABLE
    (shutdown, restart, lost connection) is made again, after a backoff, up
    to ``max_reconnects`` times in a row. ``cancel()``, or leaving a ``with``
    block, ends it at once.

    Sequence numbers never go back across a resubscription. Replicas of one
    market (servers sharing a market file with its seed and epoch) agree on
    every tick, but the one a subscription moves to may be a tick or two
    behind; so the new subscription's events up to the last tick already
    yielded are dropped, its snapshot too when it is not newer. The first
    event after the move may then be an update: it carries the price of every
    subscribed symbol all the same. Snapshots and updates come with strictly
    increasing sequence numbers; a heartbeat may repeat the last one, never
    go below it. One case starts over instead: a server running a market run
    of its own (restarted with no epoch in its market file) numbers its ticks
    from 0 again, stamped later than anything yielded; its snapshot is
    yielded, and the sequence goes on from there.

    Other data types follow their own rule: book events (book_snapshot,
    book_update, top_of_book) of the new subscription are all yielded, since
    its books start over from its own snapshot and each update names the book
    sequence it follows; trades and candles of ticks already yielded are
    dropped, kind by kind.
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
        self._last: tuple[int, int] | None = None  # sequence and exchange time (ns) last yielded
        self._last_of: dict[str, tuple[int, int]] = {}  # the same for trades and candles
        self.reconnects = 0

    def __iter__(self) -> Iterator[Event]:
        failures = 0
        resumed = False  # a new subscription that has not yet passed the last event yielded
        while True:
            try:
                for event in self._call:
                    failures = 0
                    kind = event_kind(event)
                    if kind not in _STARTS_OVER:
                        if resumed and self._behind(event, kind):
                            continue
                        resumed = False
                        self._last = (event.sequence, exchange_time_ns(event))
                        if kind in _BY_KIND:
                            self._last_of[kind] = self._last
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
                resumed = self._last is not None

    def _behind(self, event: Event, kind: str | None) -> bool:
        """Whether an event of a new subscription is at or before the last one yielded in
        the same market run (a replica a tick or two behind the one before)."""
        last = self._last_of.get(kind) if kind in _BY_KIND else self._last
        if last is None:
            return False
        sequence, stamp = last
        if event.sequence > sequence:
            return False
        if exchange_time_ns(event) > stamp:  # numbered again from 0, later: a new run
            return False
        return event.sequence < sequence or kind != "heartbeat"

    def cancel(self) -> None:
        self._cancelled = True
        super().cancel()


class ManagedSubscription(Subscription):
    """A ManageSubscription call: change symbols with ``subscribe``/``unsubscribe``, for one
    data type at a time (last prices unless ``data_type`` says otherwise: a name of
    client.DATA_TYPES or a DataType), while iterating its events (status answers, snapshots,
    updates, books, trades, heartbeats). Subscribing a book again with another ``depth``
    changes its depth."""

    _DONE = object()

    def __init__(self, start: Callable[[Iterator[market_data_pb2.SubscriptionRequest]], grpc.Call]) -> None:
        self._requests: queue.Queue = queue.Queue()
        super().__init__(lambda: start(self._request_iterator()))

    def _request_iterator(self) -> Iterator[market_data_pb2.SubscriptionRequest]:
        while (request := self._requests.get()) is not self._DONE:
            yield request

    def subscribe(
        self,
        symbols: Sequence[str],
        *,
        data_type: str | int | None = None,
        depth: int = 0,
        heartbeat_seconds: float | None = None,
    ) -> None:
        """Add ``symbols`` for ``data_type``; ``depth`` levels a side for "order_book" (0: 10)."""
        self._requests.put(add_symbols_request(symbols, data_type, depth, heartbeat_seconds))

    def unsubscribe(self, symbols: Sequence[str], *, data_type: str | int | None = None) -> None:
        """Remove ``symbols`` from ``data_type``."""
        self._requests.put(remove_symbols_request(symbols, data_type))

    def cancel(self) -> None:
        self._requests.put(self._DONE)
        super().cancel()
