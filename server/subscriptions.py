"""Live subscriptions as RPCs: a subscriber's messages pumped onto its call, and
ManageSubscription's requests applied as they arrive."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc

from marketdata.v1 import market_data_pb2

from . import status
from .feed import MarketFeed, Subscriber
from .limits import HEARTBEAT_MAX, HEARTBEAT_MIN, LimitExceeded
from .sim.checks import ParameterError, check_range, listed
from .sim.universe import SYMBOL_MAX_CHARS
from .streaming import Drain, Stalled, send
from .wire import Undecodable

_LOGGER = logging.getLogger(__name__)


def heartbeat_seconds(request, current: float) -> float:
    """The request's heartbeat_seconds, checked, or ``current`` when it has none."""
    if not request.HasField("heartbeat_seconds"):
        return current
    check_range("heartbeat_seconds", request.heartbeat_seconds, HEARTBEAT_MIN, HEARTBEAT_MAX, unit="s")
    return request.heartbeat_seconds


async def apply_requests(
    feed: MarketFeed,
    subscriber: Subscriber,
    requests: AsyncIterator[market_data_pb2.SubscriptionRequest],
    heartbeat: list[float],
) -> None:
    """Apply each ManageSubscription request: a status event, then a snapshot of what was
    added. A bad request ends the subscription (the pump reports it)."""
    try:
        async for request in requests:
            if subscriber.problem is not None:  # ended: read no more of its requests
                return
            if isinstance(request, Undecodable):
                _LOGGER.warning("ManageSubscription: %s", status.not_a_valid(request.message))
                raise ParameterError("request", status.not_a_valid(request.message))
            heartbeat[0] = heartbeat_seconds(request, heartbeat[0])
            add = request.subscribe.symbols if request.HasField("subscribe") else ()
            remove = request.unsubscribe.symbols if request.HasField("unsubscribe") else ()
            # Enough to drop a full subscription and add another; each symbol is answered apart.
            most = 2 * feed.limits.max_symbols
            feed.check_symbol_count(len(add) + len(remove), "one SubscriptionRequest", most)
            too_long = [s for s in (*add, *remove) if len(s) > SYMBOL_MAX_CHARS]
            if too_long:  # no instrument has such a name, and each would be echoed back
                raise ParameterError(
                    "symbols",
                    f"market symbols have at most {SYMBOL_MAX_CHARS} characters; got {listed(too_long)}",
                )
            action = request.subscribe if request.HasField("subscribe") else request.unsubscribe
            kind = feed.data_type(action.type, "type")
            # The status goes first (it jumps the queue); the snapshots follow in tick order.
            outcome, snapshot = feed.change(subscriber, list(add), list(remove), kind, action.depth)
            if outcome:
                subscriber.send(feed.status_event(outcome, kind))
            if snapshot is not None:
                subscriber.send(snapshot)
    except (ParameterError, LimitExceeded) as err:
        subscriber.fail(err)


async def pump(
    feed: MarketFeed,
    subscriber: Subscriber,
    context: grpc.aio.ServicerContext,
    heartbeat: Callable[[], float],
    drain: Drain,
    stall: float,
) -> None:
    """Send a subscriber's messages until it ends; always unregisters it."""
    if drain.started:
        subscriber.close()
    try:
        while True:
            event = await subscriber.next(heartbeat())
            if isinstance(subscriber.problem, ParameterError):
                await status.abort_invalid(context, subscriber.problem)
            if isinstance(subscriber.problem, LimitExceeded):
                await status.refuse(context, subscriber.problem)
            if subscriber.closing:
                await status.abort(context, grpc.StatusCode.UNAVAILABLE, status.SUBSCRIPTION_CLOSING)
            if subscriber.overflowed:
                await status.cut_short(
                    context, "--slow-subscriber", status.slow_subscriber(feed.limits.buffer_ticks)
                )
            try:
                sent = await send(context, event if event is not None else feed.encoding.heartbeat, stall)
            except Stalled:
                status.end_stalled(context, stall)
                return
            if not sent:
                _LOGGER.debug("subscriber left")
                return
    finally:
        feed.unsubscribe(subscriber)
