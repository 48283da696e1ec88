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
import numpy as np

from client import decode_market_event
from marketdata.v1 import market_data_pb2

SUBSCRIBERS_PER_CHANNEL = 50
# One subscriber in this many reads every book (the client's numpy path) and checks that each
# update follows its book; the others read only each event's header, so the client process is
# not what the lag measures. Book updates delivered are counted from the readers' share.
SUBSCRIBERS_PER_CHECK = 10
_SNAPSHOT = market_data_pb2.MarketEvent.DESCRIPTOR.fields_by_name["book_snapshot"].number
_UPDATE = market_data_pb2.MarketEvent.DESCRIPTOR.fields_by_name["book_update"].number


class _Stub:
    """Subscribe only, its replies decoded by the client's numpy reader."""

    def __init__(self, call) -> None:
        self.Subscribe = call


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _header(data: bytes) -> tuple[int, float, int]:
    """A MarketEvent's sequence, exchange time (s) and event field number, read from its first
    bytes as the server writes them (sequence, exchange_time, then the event)."""
    pos, sequence, seconds, nanos = 0, 0, 0, 0
    while True:
        key, pos = _varint(data, pos)
        field = key >> 3
        if field == 1:
            sequence, pos = _varint(data, pos)
        elif field == 2:
            length, pos = _varint(data, pos)
            end = pos + length
            while pos < end:
                inner, pos = _varint(data, pos)
                value, pos = _varint(data, pos)
                if inner >> 3 == 1:
                    seconds = value
                else:
                    nanos = value
        else:
            return sequence, seconds + nanos / 1e9, field


async def _subscriber(
    stub,
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
    call = stub.Subscribe(request)
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
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(-(-subscribers // SUBSCRIBERS_PER_CHANNEL))
    ]
    subscribe = "/marketdata.v1.MarketDataService/Subscribe"
    stubs = [
        _Stub(c.unary_stream(subscribe, market_data_pb2.SubscribeRequest.SerializeToString)) for c in channels
    ]
    measuring = asyncio.Event()
    lags: list[float] = []
    counts = [0, 0, 0]  # events, book updates, updates that did not follow
    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = [
        asyncio.create_task(
            _subscriber(
                stubs[n // SUBSCRIBERS_PER_CHANNEL],
                depth,
                n % SUBSCRIBERS_PER_CHECK == 0,
                readies[n],
                measuring,
                lags,
                counts,
            )
        )
        for n in range(subscribers)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
        await asyncio.sleep(1.0)  # settle after the subscription burst
        measuring.set()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        measuring.clear()
        elapsed = time.perf_counter() - started
        failed = sum(t.done() for t in tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    lag_ms = np.array(lags) * 1000
    return {
        "subscribers": subscribers,
        "ended_early": failed,
        "events": counts[0],
        "book_updates": counts[1],
        "book_updates_per_second": counts[1] / elapsed,
        "not_following": counts[2],
        "p50_ms": float(np.percentile(lag_ms, 50)) if len(lags) else None,
        "p99_ms": float(np.percentile(lag_ms, 99)) if len(lags) else None,
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
