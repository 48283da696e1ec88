"""Admission: what each caller holds, and the limits that keep one from taking everything.

Every call of MarketDataService is counted while it runs, by kind and by peer
(one client connection, as gRPC names it: ``ipv4:10.1.2.3:54321``). A call
that would pass a limit is refused at once with RESOURCE_EXHAUSTED naming the
limit and its flag, before any work; nothing else slows down.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from .limits import FeedLimits, LimitExceeded, Limits

UNARY, STREAM, SUBSCRIPTION = "unary", "stream", "subscription"


@dataclass
class Ticket:
    """One admitted call; ``release`` it when the call ends."""

    admission: Admission
    kind: str
    peer: str

    def release(self) -> None:
        self.admission._leave(self)


class Admission:
    """Counts calls in progress and admits a new one only within every limit."""

    def __init__(self, limits: Limits, feed_limits: Callable[[], FeedLimits]) -> None:
        self._limits, self._feed_limits = limits, feed_limits
        self._calls = 0  # unary calls and price streams
        self._streams = 0
        self._subscriptions = 0  # the market's and other services' streams of events
        self._by_peer: collections.Counter[tuple[str, str]] = collections.Counter()

    @property
    def calls(self) -> int:
        return self._calls

    def admit(self, kind: str, peer: str) -> Ticket:
        """A ticket for a call of ``kind`` from ``peer``, or LimitExceeded saying which limit."""
        limits = self._limits
        if kind == SUBSCRIPTION:  # the market's own, and health Watch and reflection streams
            feed_limits = self._feed_limits()
            most = feed_limits.max_subscribers_per_peer
            if self._by_peer[kind, peer] >= most:
                raise LimitExceeded(
                    f"this connection already holds {most} subscriptions, its limit "
                    "(server flag --max-subscribers-per-peer); end one, or subscribe to more "
                    "symbols in one",
                    flag="--max-subscribers-per-peer",
                )
            if self._subscriptions >= feed_limits.max_subscribers:
                raise LimitExceeded(
                    f"the server already holds its limit of {feed_limits.max_subscribers} subscribers "
                    "(server flag --max-subscribers); retry later",
                    flag="--max-subscribers",
                )
            self._subscriptions += 1
        else:
            if self._calls >= limits.max_calls:
                raise LimitExceeded(
                    f"the server is at its limit of {limits.max_calls} calls in progress "
                    "(server flag --max-calls); retry shortly",
                    flag="--max-calls",
                )
            if kind == STREAM:
                if self._streams >= limits.max_streams:
                    raise LimitExceeded(
                        f"the server is at its limit of {limits.max_streams} open price streams "
                        "(server flag --max-streams); retry shortly",
                        flag="--max-streams",
                    )
                if self._by_peer[kind, peer] >= limits.max_streams_per_peer:
                    raise LimitExceeded(
                        f"this connection already has {limits.max_streams_per_peer} price streams open, "
                        "its limit (server flag --max-streams-per-peer); read or cancel one first",
                        flag="--max-streams-per-peer",
                    )
                self._streams += 1
            self._calls += 1
        self._by_peer[kind, peer] += 1
        return Ticket(self, kind, peer)

    def _leave(self, ticket: Ticket) -> None:
        key = (ticket.kind, ticket.peer)
        self._by_peer[key] -= 1
        if not self._by_peer[key]:
            del self._by_peer[key]
        if ticket.kind == SUBSCRIPTION:
            self._subscriptions -= 1
        else:
            self._calls -= 1
            self._streams -= ticket.kind == STREAM
