"""Load for the live feed: N subscribers of every symbol, measuring lag.

Lag is client receipt time minus the event's exchange timestamp (both read
from this machine's clock). Run as a separate process by `make bench`:

    python -m bench.subscribers --target 127.0.0.1:50051 --subscribers 1000 --seconds 5

prints one JSON object: subscribers connected, updates received, p50/p99 lag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

SUBSCRIBERS_PER_CHANNEL = 100


async def _subscriber(stub, ready: asyncio.Event, measuring: asyncio.Event, lags: list[float]) -> None:
    call = stub.Subscribe(market_data_pb2.SubscribeRequest())
    try:
        async for event in call:
            if event.HasField("snapshot"):
                ready.set()
            elif event.HasField("update") and measuring.is_set():
                lags.append(time.time() - event.exchange_time.ToNanoseconds() / 1e9)
    except asyncio.CancelledError:
        call.cancel()
        raise


async def hold(
    target: str,
    count: int,
    per_channel: int,
    subscriber: Callable[[grpc.aio.Channel, int, asyncio.Event, asyncio.Event], Awaitable[None]],
    seconds: float,
) -> tuple[int, float]:
    """``count`` subscribers, ``per_channel`` to a channel: ``subscriber(channel, n, ready,
    measuring)`` runs subscriber n, sets ``ready`` once subscribed and measures while
    ``measuring`` is set. Once all are ready and a second has settled the subscription burst,
    measures for ``seconds``: how many subscribers ended early, and the seconds measured."""
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(-(-count // per_channel))
    ]
    measuring = asyncio.Event()
    readies = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(subscriber(channels[n // per_channel], n, readies[n], measuring))
        for n in range(count)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
        await asyncio.sleep(1.0)  # settle after the subscription burst
        measuring.set()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        measuring.clear()
        elapsed = time.perf_counter() - started
        return sum(t.done() for t in tasks), elapsed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()


def lag_percentiles(lags: list[float]) -> dict[str, float | None]:
    """p50 and p99 of lags in seconds, as milliseconds (None without any)."""
    lag_ms = np.array(lags) * 1000
    return {
        "p50_ms": float(np.percentile(lag_ms, 50)) if len(lags) else None,
        "p99_ms": float(np.percentile(lag_ms, 99)) if len(lags) else None,
    }


async def measure(target: str, subscribers: int, seconds: float) -> dict:
    lags: list[float] = []

    def subscriber(channel: grpc.aio.Channel, _: int, ready: asyncio.Event, measuring: asyncio.Event):
        return _subscriber(market_data_pb2_grpc.MarketDataServiceStub(channel), ready, measuring, lags)

    failed, _ = await hold(target, subscribers, SUBSCRIBERS_PER_CHANNEL, subscriber, seconds)
    return {"subscribers": subscribers, "ended_early": failed, "updates": len(lags), **lag_percentiles(lags)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.target, args.subscribers, args.seconds))))


if __name__ == "__main__":
    main()
