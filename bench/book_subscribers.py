"""Load for the live books: N subscribers of every symbol's order book at a depth,
measuring lag and what was delivered. Run as a separate process by `make bench`:

    python -m bench.book_subscribers --target 127.0.0.1:50051 --subscribers 100 --depth 10 --seconds 5

prints one JSON object: subscribers, book events and book updates (one per symbol
per event) received while measuring, their rate, p50/p99 lag (client receipt time
minus the event's exchange timestamp, both on this machine's clock), and whether any
update failed to follow its book (it never should). One subscriber in ten reads its
books with the client's numpy path (client.decode_market_event) and checks them; the
rest read each event's header only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import grpc

from bench.subscribers import hold, lag_percentiles
from client import decode_market_event
from client.decoding import _read_varint
from marketdata.v1 import market_data_pb2

SUBSCRIBERS_PER_CHANNEL = 50
# One subscriber in this many reads every book (the client's numpy path) and checks that each
# update follows its book; the others read only each event's header, so the client process is
# not what the lag measures. Book updates delivered are counted from the readers' share.
SUBSCRIBERS_PER_CHECK = 10
_SNAPSHOT = market_data_pb2.MarketEvent.DESCRIPTOR.fields_by_name["book_snapshot"].number
_UPDATE = market_data_pb2.MarketEvent.DESCRIPTOR.fields_by_name["book_update"].number
_SUBSCRIBE = "/marketdata.v1.MarketDataService/Subscribe"


def _header(data: bytes) -> tuple[int, float, int]:
    """A MarketEvent's sequence, exchange time (s) and event field number, read from its first
    bytes as the server writes them (sequence, exchange_time, then the event)."""
    pos, sequence, seconds, nanos = 0, 0, 0, 0
    while True:
        key, pos = _read_varint(data, pos)
        field = key >> 3
        if field == 1:
            sequence, pos = _read_varint(data, pos)
        elif field == 2:
            length, pos = _read_varint(data, pos)
            end = pos + length
            while pos < end:
                inner, pos = _read_varint(data, pos)
                value, pos = _read_varint(data, pos)
                if inner >> 3 == 1:
                    seconds = value
                else:
                    nanos = value
        else:
            return sequence, seconds + nanos / 1e9, field


async def _subscriber(
    subscribe,
    depth: int,
    checks: bool,
    ready: asyncio.Event,
    measuring: asyncio.Event,
    lags: list[float],
    counts: list[int],
) -> None:
    """One subscriber: every event's lag from its header; the subscribers that ``checks`` also
    read every book with the client's numpy path and check that each update follows."""
    request = market_data_pb2.SubscribeRequest(
        data=[market_data_pb2.DataSubscription(type=market_data_pb2.ORDER_BOOK, depth=depth)]
    )
    call = subscribe(request)
    sequences: dict[str, int] = {}
    try:
        async for data in call:
            received = time.time()
            _, exchange_time, field = _header(data)
            if field == _SNAPSHOT:
                ready.set()
            elif field == _UPDATE and measuring.is_set():
                lags.append(received - exchange_time)
                counts[0] += 1
            if not checks or field not in (_SNAPSHOT, _UPDATE):
                continue
            books = decode_market_event(data).books
            if field == _SNAPSHOT:
                sequences.update(zip(books.symbol, books.sequence.tolist(), strict=True))
                continue
            previous = books.previous_sequence.tolist()
            for symbol, before, after in zip(books.symbol, previous, books.sequence.tolist(), strict=True):
                if sequences.get(symbol) != before:
                    counts[2] += 1  # an update that does not follow: a wrong book
                sequences[symbol] = after
            if measuring.is_set():
                counts[1] += len(books.symbol) * SUBSCRIBERS_PER_CHECK
    except asyncio.CancelledError:
        call.cancel()
        raise


async def measure(target: str, subscribers: int, depth: int, seconds: float) -> dict:
    lags: list[float] = []
    counts = [0, 0, 0]  # events, book updates, updates that did not follow

    def subscriber(channel: grpc.aio.Channel, n: int, ready: asyncio.Event, measuring: asyncio.Event):
        # Raw bytes: no deserializer, so each subscriber reads only what it needs.
        subscribe = channel.unary_stream(_SUBSCRIBE, market_data_pb2.SubscribeRequest.SerializeToString)
        checks = n % SUBSCRIBERS_PER_CHECK == 0
        return _subscriber(subscribe, depth, checks, ready, measuring, lags, counts)

    failed, elapsed = await hold(target, subscribers, SUBSCRIBERS_PER_CHANNEL, subscriber, seconds)
    return {
        "subscribers": subscribers,
        "ended_early": failed,
        "events": counts[0],
        "book_updates": counts[1],
        "book_updates_per_second": counts[1] / elapsed,
        "not_following": counts[2],
        **lag_percentiles(lags),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.target, args.subscribers, args.depth, args.seconds))))


if __name__ == "__main__":
    main()
