"""Server-Sent Events as the bench's subscribers read them: a text/event-stream body,
fed in whatever pieces the network delivers, split into events; and the exchange
time a market event carries, for its lag.

Pure (no sockets, no clock), so the parsing is tested on its own
(tests/test_bench_sse.py) and the subscribers' process only adds the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

_EXCHANGE_TIME = re.compile(rb'"exchangeTime"\s*:\s*"([^"]{1,64})"')
_STAMPS_KEPT = 1024  # exchange times remembered (every subscriber sees the same few at once)


@dataclass(frozen=True)
class Event:
    """One dispatched event: its type ("message" when the stream names none), the last
    event id seen on the stream (None before any) and its data lines joined by newlines."""

    type: str
    id: str | None
    data: bytes


class EventReader:
    """Turns a text/event-stream body, fed piece by piece, into events.

    Follows the format's rules the bench meets: lines end in LF, CRLF or CR (a CRLF
    may be split between two pieces); a blank line dispatches the event; lines
    starting with a colon are comments (heartbeats); one space after a field's colon
    is dropped; several data lines join with LF; an event without data is not
    dispatched; the last id carries over to the events after it.
    """

    def __init__(self) -> None:
        self._pending = b""  # the start of an event whose blank line has not come yet
        self._after_cr = False  # the last piece ended in CR: an LF first in the next belongs to it
        self._last_id: str | None = None

    def feed(self, piece: bytes) -> list[Event]:
        if self._after_cr and piece.startswith(b"\n"):
            piece = piece[1:]
        self._after_cr = piece.endswith(b"\r")
        text = self._pending + piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, self._pending = text.split(b"\n\n")
        events = []
        for block in blocks:
            event = self._dispatch(block)
            if event is not None:
                events.append(event)
        return events

    def _dispatch(self, block: bytes) -> Event | None:
        kind, data = "message", []
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                kind = value.decode()
            elif name == b"id" and b"\0" not in value:
                self._last_id = value.decode()
        if not data:
            return None
        return Event(kind, self._last_id, b"\n".join(data))


class ExchangeTimes:
    """Seconds since the Unix epoch of the ``exchangeTime`` in an event's JSON data,
    remembered per stamp: a tick reaches every subscriber with the same one."""

    def __init__(self) -> None:
        self._seen: dict[bytes, float] = {}

    def __call__(self, data: bytes) -> float:
        match = _EXCHANGE_TIME.search(data)
        if match is None:
            raise ValueError(f"no exchangeTime in the event data {data[:100]!r}")
        stamp = match[1]
        seconds = self._seen.get(stamp)
        if seconds is None:
            parsed = Timestamp()
            parsed.FromJsonString(stamp.decode())
            seconds = parsed.ToNanoseconds() / 1e9
            if len(self._seen) >= _STAMPS_KEPT:
                self._seen.clear()
            self._seen[stamp] = seconds
        return seconds
