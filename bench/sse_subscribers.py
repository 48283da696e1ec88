"""Load for the live feed over HTTP: N Server-Sent Events subscribers of every symbol
(`GET /v1/subscribe`), measuring lag.

Lag is the wall time an update's last bytes reached this end's socket (the
kernel's receive timestamp) minus the event's exchangeTime, the tick's
scheduled time, both on this machine's clock; the read lag, when this process
got round to reading them, is reported beside it. Run as a separate process by
`make bench` (row 12):

    python -m bench.sse_subscribers --port 8080 --ladder 100,250,500,750 --seconds 4

For each step of the ladder it opens connections until N are subscribed, waits
for every snapshot, then measures for --seconds. It prints one JSON line when a
step's measurement starts ({"measuring": N}) and one with its result, and stops
after a step whose p99 lag reaches --stop-p99-ms or that lost a subscriber.
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time

import h11
import numpy as np

from bench.sse import EventReader, ExchangeTimes

HOST = "127.0.0.1"
SUBSCRIBE_SECONDS = 60.0  # to open a step's new connections and see all their snapshots
SETTLE_SECONDS = 1.0  # after the subscription burst, before measuring
# Linux's SO_TIMESTAMPNS (asm-generic; the socket module does not name it): every read
# comes with the wall time the kernel queued its last bytes, as a struct timespec.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")
READ_BYTES = 1 << 16


class Window:
    """What the subscribers saw during a step's measurement."""

    def __init__(self) -> None:
        self.open = False
        self.lags: list[float] = []  # kernel arrival - exchangeTime
        self.read_lags: list[float] = []  # this process's read - exchangeTime
        self.missed = 0  # sequence numbers skipped between a subscriber's updates (conflation)
        self.exchange_time = ExchangeTimes()

    def start(self) -> None:
        self.lags, self.read_lags, self.missed, self.open = [], [], 0, True


class Subscription:
    """One HTTP/1.1 connection holding one subscription of every symbol.

    Its socket is read with recvmsg for the kernel's arrival time of the bytes, so
    the lag does not include the time this process's one thread, reading hundreds
    of sockets after each tick, takes to come to this one (that is measured too,
    as the read lag)."""

    def __init__(self, sock: socket.socket, window: Window) -> None:
        self.sock, self.window = sock, window
        self.http = h11.Connection(h11.CLIENT)
        self.events = EventReader()
        self.snapshot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended: str | None = None
        self.sequence: int | None = None

    @classmethod
    async def open(cls, port: int, window: Window) -> Subscription:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), SUBSCRIBE_SECONDS)
            subscription = cls(sock, window)
            request = h11.Request(
                method="GET",
                target="/v1/subscribe",
                headers=[("Host", f"{HOST}:{port}"), ("Accept", "text/event-stream")],
            )
            await loop.sock_sendall(
                sock, subscription.http.send(request) + subscription.http.send(h11.EndOfMessage())
            )
        except BaseException:
            sock.close()
            raise
        loop.add_reader(sock.fileno(), subscription.readable)
        return subscription

    def readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_BYTES, socket.CMSG_SPACE(TIMESPEC.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as problem:
            self.end(f"connection lost: {problem}")
            return
        read = time.time()
        arrived = read
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
                seconds, nanoseconds = TIMESPEC.unpack_from(value)
                arrived = seconds + nanoseconds / 1e9
        try:
            self.http.receive_data(data)  # b"" is the end of the connection
            while (message := self.http.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(message, h11.Response) and message.status_code != 200:
                    self.end(f"HTTP {message.status_code}")
                    return
                if isinstance(message, h11.Data):
                    for event in self.events.feed(bytes(message.data)):
                        self.seen(event.type, event.id, event.data, arrived, read)
                elif isinstance(message, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self.end("the server ended the stream")
                    return
        except (h11.ProtocolError, ValueError) as problem:
            self.end(f"unreadable: {problem}")

    def seen(self, kind: str, event_id: str | None, data: bytes, arrived: float, read: float) -> None:
        window = self.window
        if kind == "snapshot":
            self.sequence = int(event_id) if event_id else None
            if not self.snapshot.done():
                self.snapshot.set_result(None)
        elif kind == "update":
            sequence = int(event_id) if event_id else None
            if window.open:
                exchange_time = window.exchange_time(data)
                window.lags.append(arrived - exchange_time)
                window.read_lags.append(read - exchange_time)
                if self.sequence is not None and sequence is not None:
                    window.missed += max(0, sequence - self.sequence - 1)
            self.sequence = sequence
        elif kind == "error":
            self.end(f"error event {data[:200].decode(errors='replace')}")

    def end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
            if not self.snapshot.done():
                self.snapshot.set_exception(ConnectionError(why))
            self.close()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


async def ladder(
    port: int, steps: list[int], seconds: float, tick_seconds: float, stop_p99_ms: float
) -> None:
    window = Window()
    held: list[Subscription] = []
    try:
        for count in steps:
            while len(held) < count:
                held.append(await Subscription.open(port, window))
            await asyncio.wait([s.snapshot for s in held], timeout=SUBSCRIBE_SECONDS)
            subscribed = sum(s.snapshot.done() and s.snapshot.exception() is None for s in held)
            if subscribed < count:
                reasons = sorted({s.ended or "no snapshot" for s in held if s.ended or not s.snapshot.done()})
                report({"subscribers": count, "subscribed": subscribed, "failed": reasons[:5]})
                return
            await asyncio.sleep(SETTLE_SECONDS)
            report({"measuring": count})
            cpu = time.process_time()
            window.start()
            await asyncio.sleep(seconds)
            window.open = False
            cpu = (time.process_time() - cpu) / seconds
            lost = sorted({s.ended for s in held if s.ended})
            lag_ms = np.array(window.lags) * 1e3
            read_ms = np.array(window.read_lags) * 1e3
            result = {
                "subscribers": count,
                "updates": len(window.lags),
                "expected": round(count * seconds / tick_seconds),
                "missed": window.missed,
                "lost": lost[:5],
                "p50_ms": float(np.percentile(lag_ms, 50)) if len(lag_ms) else None,
                "p99_ms": float(np.percentile(lag_ms, 99)) if len(lag_ms) else None,
                "max_ms": float(lag_ms.max()) if len(lag_ms) else None,
                "read_p50_ms": float(np.percentile(read_ms, 50)) if len(read_ms) else None,
                "read_p99_ms": float(np.percentile(read_ms, 99)) if len(read_ms) else None,
                "client_cpu": cpu,
            }
            report(result)
            if lost or result["p99_ms"] is None or result["p99_ms"] >= stop_p99_ms:
                return
    finally:
        for subscription in held:
            subscription.close()


def report(line: dict) -> None:
    print(json.dumps(line), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sse_subscribers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True, help="the server's HTTP port on 127.0.0.1")
    parser.add_argument("--ladder", default="100,250,500,750", help="subscriber counts, in increasing order")
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement per step")
    parser.add_argument("--tick-seconds", type=float, default=0.1, help="the market's wall seconds per tick")
    parser.add_argument("--stop-p99-ms", type=float, default=50.0, help="no further steps after this p99 lag")
    args = parser.parse_args()
    steps = [int(n) for n in args.ladder.split(",")]
    if steps != sorted(steps) or steps[0] < 1 or steps[-1] > 10_000:
        print("--ladder: increasing counts in [1, 10000]", file=sys.stderr)
        return 2
    asyncio.run(ladder(args.port, steps, args.seconds, args.tick_seconds, args.stop_p99_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
