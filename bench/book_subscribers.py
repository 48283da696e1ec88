"""Load for the live books: N subscribers of every symbol's order book at a depth,
measuring lag and what was delivered. Run as a separate process by `make bench`:

    python -m bench.book_subscribers --target 127.0.0.1:50051 --subscribers 100 --depth 10 --seconds 5

prints one JSON object: subscribers, book events and book updates (one per symbol
per event) received while measuring, their rate, p50/p99 lag (client receipt time
minus the event's exchange timestamp, both on this machine's clock), and whether any
update failed to follow its book (it never should).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import grpc
import numpy as np

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

SUBSCRIBERS_PER_CHANNEL = 50


async def _subscriber(
    stub, depth: int, ready: asyncio.Event, measuring: asyncio.Event, lags: list[float], counts: list[int]
) -> None:
    request = market_data_pb2.SubscribeRequest(
        data=[market_data_pb2.DataSubscription(type=market_data_pb2.ORDER_BOOK, depth=depth)]
    )
    call = stub.Subscribe(request)
    sequences: dict[str, int] = {}
    try:
        async for event in call:
            kind = event.WhichOneof("event")
            if kind == "book_snapshot":
                sequences.update((b.symbol, b.sequence) for b in event.book_snapshot.books)
                ready.set()
            elif kind == "book_update":
                for book in event.book_update.books:
                    if sequences.get(book.symbol) != book.previous_sequence:
                        counts[2] += 1  # an update that does not follow: a wrong book
                    sequences[book.symbol] = book.sequence
                if measuring.is_set():
                    lags.append(time.time() - event.exchange_time.ToNanoseconds() / 1e9)
                    counts[0] += 1
                    counts[1] += len(event.book_update.books)
    except asyncio.CancelledError:
        call.cancel()
        raise


async def measure(target: str, subscribers: int, depth: int, seconds: float) -> dict:
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(-(-subscribers // SUBSCRIBERS_PER_CHANNEL))
    ]
    stubs = [market_data_pb2_grpc.MarketDataServiceStub(c) for c in channels]
    measuring = asyncio.Event()
    lags: list[float] = []
    counts = [0, 0, 0]  # events, book updates, updates that did not follow
    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = [
        asyncio.create_task(
            _subscriber(stubs[n // SUBSCRIBERS_PER_CHANNEL], depth, readies[n], measuring, lags, counts)
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
