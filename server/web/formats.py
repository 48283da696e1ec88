"""Reply messages as HTTP writes them: protobuf's canonical JSON, CSV rows, SSE events.

``to_json`` writes what ``google.protobuf.json_format`` writes (a test holds the two
to the same meaning), but turns the long numeric arrays of price replies into JSON in
bulk: json_format takes over a second for a 4 MiB reply, this about a hundredth of it.
"""

from __future__ import annotations

import datetime
import functools
import math

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from marketdata.v1 import market_data_pb2 as pb

_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_WIDE_INTEGERS = (  # canonical JSON writes these as strings
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
)
_BULK = 32  # arrays at least this long are converted in bulk


def floats(values) -> np.ndarray | list:
    """Doubles as canonical JSON has them: numbers, and the strings "NaN", "Infinity" and
    "-Infinity" for the rest."""
    array = np.asarray(values, dtype=np.float64)
    if np.isfinite(array).all():
        return array
    return [
        v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
        for v in array.tolist()
    ]


def _repeated(descriptor: FieldDescriptor) -> bool:
    if hasattr(descriptor, "is_repeated"):  # protobuf 6.31 on; ``label`` is gone in 7
        return descriptor.is_repeated
    return descriptor.label == FieldDescriptor.LABEL_REPEATED


def to_dict(message: Message) -> dict:
    """``message`` as json_format.MessageToDict gives it, long numeric arrays as numpy arrays
    (which ``dumps`` writes)."""
    bulk: dict[str, object] = {}
    nested: dict[str, dict] = {}
    for descriptor, value in message.ListFields():
        repeated = _repeated(descriptor)
        if repeated and len(value) >= _BULK:
            if descriptor.type in _FLOATS:
                bulk[descriptor.name] = floats(value)
            elif descriptor.type in _WIDE_INTEGERS:
                bulk[descriptor.name] = [str(v) for v in value]
        elif (
            descriptor.message_type is not None
            and not repeated
            and descriptor.message_type.full_name != "google.protobuf.Timestamp"
        ):
            nested[descriptor.name] = to_dict(value)
    if not bulk and not nested:
        return json_format.MessageToDict(message)
    light = type(message)()
    light.CopyFrom(message)
    for name in (*bulk, *nested):
        light.ClearField(name)
    plain = json_format.MessageToDict(light)
    result = {}
    for descriptor, _ in message.ListFields():  # the field order json_format uses
        name = descriptor.name
        if name in bulk:
            result[descriptor.json_name] = bulk[name]
        elif name in nested:
            result[descriptor.json_name] = nested[name]
        elif descriptor.json_name in plain:
            result[descriptor.json_name] = plain[descriptor.json_name]
    return result


def dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def message_json(message: Message) -> bytes:
    return dumps(to_dict(message))


# ---- CSV ----------------------------------------------------------------------------------


def _utc(nanoseconds: int) -> str:
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{nanos:09d}Z".replace(".000000000Z", "Z")


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\r\n') or text[:1] in ("=", "+", "-", "@"):
        return '"' + text.replace('"', '""') + '"'
    return text


class CsvWriter:
    """A path's chunks as CSV: a header, then a row a period, or a row a bar when the
    request asked for ``bars``. The first chunk says which columns there are."""

    def __init__(self, bars: bool) -> None:
        self._bars = bars
        self._header_sent = False
        self._width = 1
        self._stamps = self._quotes = False

    def rows(self, chunk: Message) -> bytes:
        if self._bars:
            return self._bar_rows(chunk.bars)
        lines = []
        if not self._header_sent:
            symbols = list(getattr(chunk, "symbols", ()))
            self._width = max(1, len(symbols))
            self._stamps = len(getattr(chunk, "timestamps", ())) > 0
            self._quotes = len(getattr(chunk, "bid", ())) > 0
            columns = ["index", *(["time"] if self._stamps else [])]
            columns += [_csv_field(s) for s in symbols] if symbols else ["price"]
            columns += ["bid", "ask"] if self._quotes else []
            lines.append(",".join(columns) + "\r\n")
            self._header_sent = True
        prices = np.asarray(chunk.prices, dtype=np.float64).reshape(-1, self._width).tolist()
        stamps = chunk.timestamps if self._stamps else None
        bid, ask = (chunk.bid, chunk.ask) if self._quotes else (None, None)
        offset = chunk.offset
        for n, row in enumerate(prices):
            cells = [str(offset + n)]
            if stamps is not None:
                cells.append(_utc(stamps[n]))
            cells += [repr(v) for v in row]
            if bid is not None:
                cells += [repr(bid[n]), repr(ask[n])]
            lines.append(",".join(cells) + "\r\n")
        return "".join(lines).encode()

    def _bar_rows(self, bars: pb.Bars) -> bytes:
        lines = []
        if not self._header_sent:
            lines.append("start_time,open,high,low,close,volume\r\n")
            self._header_sent = True
        for row in zip(bars.start_time, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True):
            lines.append(f"{_utc(row[0])},{row[1]!r},{row[2]!r},{row[3]!r},{row[4]!r},{row[5]}\r\n")
        return "".join(lines).encode()


# ---- Server-Sent Events ----------------------------------------------------------------------

_EVENT_KINDS = ("snapshot", "update", "status")


@functools.lru_cache(maxsize=512)
def sse_event(data: bytes) -> bytes:
    """One serialized MarketEvent as an SSE event (id: its sequence). Subscribers to the same
    symbols receive the very same bytes for a tick, so each is turned into text once."""
    event = pb.MarketEvent.FromString(data)
    kind = event.WhichOneof("event")
    if kind not in _EVENT_KINDS:  # a heartbeat: a comment, which EventSource ignores
        return b": heartbeat %d\n\n" % event.sequence
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.sequence, kind.encode(), message_json(event))


def sse_error(payload: dict) -> bytes:
    return b"event: error\ndata: " + dumps(payload) + b"\n\n"
