"""MarketEvents read straight from their bytes: order books and trades as numpy columns.

A book_update of 100 symbols at depth 10 carries some 4,000 numbers. Read
through the generated classes, each becomes a Python object on its way into
numpy. ``decode_market_event`` has protobuf's own parser read the books (or
trades) into shadow classes of the same messages whose arrays are declared
``bytes``: a packed array is one length-delimited run either way, so each
book's array arrives as one bytes object, and one numpy call reads every
book's. Bytes the serializers would not write (an array split or unpacked, a
field repeated or unknown) are read by a general wire reader instead, under
protobuf's rules (fields in any order, arrays packed, unpacked or split over
several runs, scalars repeated with the last one winning, unknown fields
skipped, a oneof arm that comes twice merged, one replaced by another arm
dropped, each occurrence of a message read on its own, keys and lengths of at
most 5 bytes; malformed bytes raise DecodeError). An event holding a group
(wire types 3 and 4, which proto3 serializers never write) is read by the
generated classes: whether protobuf accepts one depends on how deeply it nests,
and the limit is the parser's own.

The books of one event come out as ``BookColumns``: one entry per book in
each scalar column (symbol, sequence, ...), and each array field of every
book end to end in one read-only array, with ``offsets`` saying where each
book's part starts. Indexing or iterating the columns gives one book at a
time (``BookArrays``, views into the columns); ``client.book.BookKeeper``
applies whole columns at once. Trades are the same (``TradeColumns``,
``TradeArrays``). Events of the other kinds (last prices, heartbeats,
subscription status, candles) are parsed by the generated class and carried
as ``DecodedEvent.message``.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor

from marketdata.v1 import market_data_pb2 as pb

from .decoding import _I32, _I64, _LEN, _SGROUP, _VARINT, DecodeError, _read_varint

# How a field of a columns message is read, by wire key (field number and wire type).
_STRING, _UINT, _PACKED8, _ONE8, _PACKED_VARINTS, _ONE_VARINT = range(6)
_ARRAY_TYPES = {
    FieldDescriptor.TYPE_DOUBLE: np.dtype("<f8"),
    FieldDescriptor.TYPE_FIXED64: np.dtype("<u8"),
    FieldDescriptor.TYPE_SFIXED64: np.dtype("<i8"),
}
_UINT_TYPES = {
    FieldDescriptor.TYPE_UINT64: np.dtype(np.uint64),
    FieldDescriptor.TYPE_UINT32: np.dtype(np.uint32),
}
_ENUM = np.dtype(np.int32)  # protobuf keeps an enum as int32, unknown values included


class _Layout:
    """How the fields of one message type become columns: a string, unsigned scalars, arrays
    of 8-byte values and arrays of enums (the kinds OrderBook and Trades hold)."""

    def __init__(self, descriptor) -> None:
        self.names = [f.name for f in descriptor.fields]
        self.dtypes: dict[str, np.dtype] = {}
        self.arrays: list[str] = []  # array fields, in number order
        self.keys: dict[int, tuple[int, int]] = {}  # wire key -> (how to read it, row slot)
        for slot, f in enumerate(descriptor.fields):
            if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated:
                self.keys[f.number << 3 | _LEN] = (_STRING, slot)
            elif f.type in _UINT_TYPES and not f.is_repeated:
                self.dtypes[f.name] = _UINT_TYPES[f.type]
                self.keys[f.number << 3 | _VARINT] = (_UINT, slot)
            elif f.is_repeated and f.type in _ARRAY_TYPES:
                self.dtypes[f.name] = _ARRAY_TYPES[f.type]
                self.keys[f.number << 3 | _LEN] = (_PACKED8, slot)
                self.keys[f.number << 3 | _I64] = (_ONE8, slot)
                self.arrays.append(f.name)
            elif f.is_repeated and f.type == FieldDescriptor.TYPE_ENUM:
                self.dtypes[f.name] = _ENUM
                self.keys[f.number << 3 | _LEN] = (_PACKED_VARINTS, slot)
                self.keys[f.number << 3 | _VARINT] = (_ONE_VARINT, slot)
                self.arrays.append(f.name)
            else:
                raise TypeError(f"{descriptor.name}.{f.name}: no column kind for this field")
        # A row starts with every field at its default; arrays count their bytes there.
        self.empty_row = ["" if name not in self.dtypes else 0 for name in self.names]
        self.array_slots = [self.names.index(name) for name in self.arrays]
        self.arrays8 = [name for name in self.arrays if self.dtypes[name] != _ENUM]
        self.enums = [name for name in self.arrays if self.dtypes[name] == _ENUM]
        self.shadow = _shadow(descriptor)
        self.fields_of = operator.attrgetter(*self.names)  # every field of a message, in one call


_SHADOWS = descriptor_pool.DescriptorPool()


def _shadow(descriptor) -> type:
    """A container class (field 1: repeated ``items``) of a copy of message ``descriptor`` whose
    arrays are declared ``bytes``: a packed array is one length-delimited run on the wire either
    way, so protobuf's parser hands it over as bytes."""
    file = descriptor_pb2.FileDescriptorProto(
        name=f"shadow/{descriptor.name}.proto", package="shadow", syntax="proto3"
    )
    message = file.message_type.add()
    descriptor.CopyToProto(message)
    for f in message.field:
        if f.label == FieldDescriptor.LABEL_REPEATED:
            f.label = FieldDescriptor.LABEL_OPTIONAL
            f.type = FieldDescriptor.TYPE_BYTES
            f.ClearField("type_name")
            f.ClearField("options")
    file.message_type.add(name=f"{descriptor.name}Container").field.add(
        name="items",
        number=1,
        label=FieldDescriptor.LABEL_REPEATED,
        type=FieldDescriptor.TYPE_MESSAGE,
        type_name=f".shadow.{descriptor.name}",
    )
    _SHADOWS.Add(file)
    return message_factory.GetMessageClass(
        _SHADOWS.FindMessageTypeByName(f"shadow.{descriptor.name}Container")
    )


def _columns(data: bytes, start: int, end: int, layout: _Layout) -> tuple[dict, dict]:
    """Read the messages of field 1 (``books``, ``trades``) of the container at data[start:end]:
    (columns by field name, offsets by array field name)."""
    body = data[start:end] if start or end != len(data) else data
    columns = _fast_columns(body, layout)
    if columns is not None:
        return columns
    return _any_columns(data, _message_spans(data, start, end), layout)


def _message_spans(data: bytes, pos: int, end: int) -> np.ndarray:
    """(start, end) of each message of field 1 in the container at data[pos:end], in order."""
    spans = []
    while pos < end:
        if data[pos] == 0x0A:
            pos += 1
        else:  # another field (skipped), or field 1 in a longer key
            key, pos = _read_key(data, pos, end)
            if key != 0x0A:
                pos = _skip_within(data, pos, key, end)
                continue
        if pos + 1 < end and (low := data[pos]) < 0x80:
            length = low
            pos += 1
        elif pos + 1 < end and (high := data[pos + 1]) < 0x80:  # 128 to 16383 bytes
            length = (low & 0x7F) | high << 7
            pos += 2
        else:
            length, pos = _read_size(data, pos)
        stop = pos + length
        if stop > end:
            raise DecodeError("truncated message")
        spans.append((pos, stop))
        pos = stop
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


def _fast_columns(body: bytes, layout: _Layout) -> tuple[dict, dict] | None:
    """The columns of a container as the generated serializers write it, read by protobuf's
    own parser into ``layout.shadow``: the same messages with every array declared ``bytes``,
    so that each array comes out as one bytes object (never an object per value) and every
    array of an event is joined and read by one numpy call.

    None when the bytes say something the shadow cannot hold the same way: an array split
    over several runs or sent unpacked, a scalar written twice or at its default, an unknown
    field. Each of those makes the shadow, written back, shorter than ``body`` (a dropped run,
    a dropped field), and the general reader reads them. Bytes protobuf would refuse are
    refused here too (DecodeError), or by the general reader."""
    try:
        container = layout.shadow.FromString(body)
    except Exception:  # the generated parser's own error type; the general reader says what
        return None
    container.DiscardUnknownFields()
    if container.ByteSize() != len(body):
        return None
    items = container.items
    count = len(items)
    # Every field of every message, field by field; a slice of messages at a time, so that the
    # tuples of a message's fields stay few however many messages come.
    values: dict[str, list] = {name: [] for name in layout.names}
    for first in range(0, count, _MESSAGES_AT_ONCE):
        fields_of = map(layout.fields_of, items[first : first + _MESSAGES_AT_ONCE])
        for name, column in zip(layout.names, zip(*fields_of, strict=True), strict=True):
            values[name] += column
    columns: dict[str, object] = {}
    offsets: dict[str, np.ndarray] = {}
    for name in layout.names:
        dtype = layout.dtypes.get(name)
        if dtype is None:  # the string, checked as UTF-8 by the parser
            columns[name] = tuple(values[name])
        elif name not in layout.arrays:
            columns[name] = _frozen(np.array(values[name], dtype=dtype) if count else np.zeros(0, dtype))
    # The arrays of 8-byte values: one join of their bytes, field after field, and views into it.
    names = layout.arrays8
    parts = list(itertools.chain.from_iterable(values[name] for name in names))
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)).reshape(len(names), count)
    if (lengths & 7).any():
        raise DecodeError("packed 8-byte values of a length that is not a multiple of 8")
    ends = np.zeros((len(names), count + 1), dtype=np.int64)
    np.cumsum(lengths // 8, axis=1, out=ends[:, 1:])
    every = np.frombuffer(_joined(parts), dtype="<u8")
    start = 0
    for row, name in enumerate(names):
        stop = start + int(ends[row, -1])
        columns[name] = _native(every[start:stop].view(layout.dtypes[name]))
        offsets[name] = _frozen(ends[row])
        start = stop
    for name in layout.enums:
        lengths = np.fromiter(map(len, values[name]), dtype=np.int64, count=count)
        raw = np.frombuffer(_joined(values[name]), dtype=np.uint8)
        stops = np.cumsum(lengths)
        if (raw[stops[lengths > 0] - 1] >= 0x80).any():
            raise DecodeError("packed varints end inside a varint")
        columns[name], counts = _varint_array(raw, stops)
        offsets[name] = _frozen(np.concatenate(([0], counts)))
    return columns, offsets


_MESSAGES_AT_ONCE = 1024


def _joined(parts: list[bytes]) -> bytes:
    """The parts end to end. bytes.join holds 80 bytes of bookkeeping per part, a lot for a
    2-byte book of empty arrays: past some thousands of parts, the empty ones are left out first
    (which costs more than it saves on the few hundred parts of a usual event)."""
    return b"".join(parts if len(parts) < 4096 else filter(None, parts))


def _any_columns(data: bytes, spans: np.ndarray, layout: _Layout) -> tuple[dict, dict]:
    """The columns of messages written in any valid way: fields read one by one."""
    view = memoryview(data)
    keys = layout.keys
    empty_row = layout.empty_row
    # Each array's bytes, every message's end to end: one buffer, never an object per value.
    pieces = {slot: bytearray() for slot in layout.array_slots}
    rows = []
    for pos, stop in spans.tolist():
        row = empty_row.copy()
        while pos < stop:
            key = data[pos]
            if key < 0x80:
                pos += 1
            else:
                key, pos = _read_key(data, pos, stop)
            entry = keys.get(key)
            if entry is None:
                pos = _skip_within(data, pos, key, stop)
                continue
            how, slot = entry
            if how == _ONE8:
                if pos + 8 > stop:
                    raise DecodeError("truncated 8-byte value")
                pieces[slot] += view[pos : pos + 8]
                row[slot] += 8
                pos += 8
                continue
            begin = pos
            value, pos = _varint_within(data, pos, stop)
            if how == _UINT:
                row[slot] = value
                continue
            if how == _ONE_VARINT:
                pieces[slot] += view[begin:pos]  # one varint is a packed run of one
                row[slot] += pos - begin
                continue
            if pos - begin > 5 or value >= _LONGEST:  # a length, as _read_size reads one
                raise DecodeError("length of more than 5 bytes or not below 2^31 - 1")
            after = pos + value
            if after > stop:
                raise DecodeError("truncated length-delimited field")
            if how == _PACKED8:
                if value & 7:
                    raise DecodeError("packed 8-byte values of a length that is not a multiple of 8")
                pieces[slot] += view[pos:after]
                row[slot] += value
            elif how == _PACKED_VARINTS:
                if value and data[after - 1] >= 0x80:
                    raise DecodeError("packed varints end inside a varint")
                pieces[slot] += view[pos:after]
                row[slot] += value
            else:
                try:
                    row[slot] = str(data[pos:after], "utf-8")
                except UnicodeDecodeError as err:
                    raise DecodeError("string field is not valid UTF-8") from err
            pos = after
        rows.append(row)
    return _assemble(layout, rows, pieces)


def _assemble(layout: _Layout, rows: list[list], pieces: dict[int, bytearray]) -> tuple[dict, dict]:
    by_field = list(zip(*rows, strict=True)) if rows else [()] * len(layout.names)
    columns: dict[str, object] = {}
    offsets: dict[str, np.ndarray] = {}
    for slot, name in enumerate(layout.names):
        values = by_field[slot]
        dtype = layout.dtypes.get(name)
        if dtype is None:
            columns[name] = tuple(values)
        elif name not in layout.arrays:
            scalars = np.array(values, dtype=np.uint64)
            columns[name] = _frozen(scalars if dtype == np.uint64 else scalars.astype(dtype))
        else:
            raw = pieces[slot]
            ends = np.cumsum(np.array(values, dtype=np.int64))
            if dtype == _ENUM:
                columns[name], counts = _varint_array(np.frombuffer(raw, dtype=np.uint8), ends)
            else:
                columns[name] = _native(np.frombuffer(raw, dtype=dtype))
                counts = ends // 8
            offsets[name] = _frozen(np.concatenate(([0], counts)))
    return columns, offsets


def _varint_array(raw: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed varints as int32 (an enum's low 32 bits, as protobuf keeps them), and how many of
    them end before each byte offset of ``ends``; ``raw`` ends with the last byte of a varint.
    Some thousands of varints at a time, so that the scratch arrays (8 bytes a byte) stay small
    however long the run."""
    last = raw < 0x80  # the last byte of each varint
    if last.all():  # one byte each: every value below 128
        return _frozen(raw.astype(np.int32)), ends
    stops = np.flatnonzero(last)
    del last
    values = np.empty(len(stops), dtype=np.uint32)
    begin = 0  # where the block's first varint starts
    for first in range(0, len(stops), _VARINTS_AT_ONCE):
        block = stops[first : first + _VARINTS_AT_ONCE] - begin
        starts = np.concatenate(([0], block[:-1] + 1))
        lengths = block - starts + 1
        if lengths.max() > 10:
            raise DecodeError("varint longer than 10 bytes")
        within = np.arange(int(block[-1]) + 1) - np.repeat(starts, lengths)
        bits = (raw[begin : begin + len(within)] & 0x7F).astype(np.uint64) << (7 * within).astype(np.uint64)
        values[first : first + len(block)] = np.add.reduceat(bits, starts).astype(np.uint32)
        begin += len(within)
    return _frozen(values.view(np.int32)), np.searchsorted(stops, ends)


_VARINTS_AT_ONCE = 1 << 14


def _varint_within(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, pos = _read_varint(data, pos)
    if pos > end:
        raise DecodeError("truncated varint")
    return value, pos


# The parser refuses lengths from 2^31 - 1 up, and lengths or keys written in more than 5 bytes.
_LONGEST = 0x7FFFFFFF


def _read_size(data: bytes, pos: int) -> tuple[int, int]:
    """The length of a length-delimited field at data[pos:], as protobuf's parser reads one."""
    size, after = _read_varint(data, pos)
    if after - pos > 5 or size >= _LONGEST:
        raise DecodeError("length of more than 5 bytes or not below 2^31 - 1")
    return size, after


def _read_key(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The key of a field at data[pos:end], as protobuf's parser reads one: it refuses a key
    of more than 5 bytes or of 2^32 and above (field numbers stop below 2^29)."""
    key = data[pos]
    if key < 0x80:
        return key, pos + 1
    key, after = _read_varint(data, pos)
    if after - pos > 5 or key > 0xFFFFFFFF:
        raise DecodeError("field key longer than 5 bytes or above 2^32 - 1")
    if after > end:
        raise DecodeError("truncated field key")
    return key, after


class _Group(Exception):
    """A group (wire type 3) met on the wire: the event goes to the generated classes (see the
    module docstring)."""


def _skip_within(data: bytes, pos: int, key: int, end: int) -> int:
    """The position after the value of unknown field ``key`` at data[pos:end]."""
    if key < 8:
        raise DecodeError("field number 0")
    wire_type = key & 7
    if wire_type == _VARINT:
        pos = _read_varint(data, pos)[1]
    elif wire_type == _I64:
        pos += 8
    elif wire_type == _LEN:
        length, pos = _read_size(data, pos)
        pos += length
    elif wire_type == _I32:
        pos += 4
    elif wire_type == _SGROUP:
        raise _Group
    else:  # an end of group outside any, or no such wire type
        raise DecodeError(f"unexpected wire type {wire_type}")
    if pos > end:
        raise DecodeError("truncated field")
    return pos


def _native(values: np.ndarray) -> np.ndarray:
    if not values.dtype.isnative:  # a big-endian host
        values = values.astype(values.dtype.newbyteorder("="))
    return _frozen(values)


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


class _Columns:
    """Messages of one repeated field as columns (see the module docstring)."""

    _layout: ClassVar[_Layout]
    _row: ClassVar[type]

    offsets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.symbol)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} messages")
        index %= len(self)
        values = {}
        for name in self._layout.names:
            column = getattr(self, name)
            if name in self.offsets:
                bounds = self.offsets[name]
                values[name] = column[bounds[index] : bounds[index + 1]]
            elif isinstance(column, tuple):
                values[name] = column[index]
            else:
                values[name] = int(column[index])
        return self._row(**values)

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self)))

    def counts(self, name: str) -> np.ndarray:
        """How many elements of array field ``name`` each message has."""
        bounds = self.offsets[name]
        return bounds[1:] - bounds[:-1]

    @classmethod
    def decode(cls, data: bytes, start: int = 0, end: int | None = None):
        """The messages of a serialized container (OrderBooks, TradeBatch) at data[start:end]."""
        columns, offsets = _columns(data, start, len(data) if end is None else end, cls._layout)
        return cls(**columns, offsets=offsets)

    @classmethod
    def from_messages(cls, messages: Iterable):
        """Columns of generated messages (OrderBook, Trades) or of rows (BookArrays, TradeArrays)."""
        messages = list(messages)
        layout = cls._layout
        columns: dict[str, object] = {}
        offsets: dict[str, np.ndarray] = {}
        for name in layout.names:
            dtype = layout.dtypes.get(name)
            values = [getattr(m, name) for m in messages]
            if dtype is None:
                columns[name] = tuple(values)
            elif name in layout.arrays:
                counts = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
                flat = itertools.chain.from_iterable(values)
                columns[name] = _frozen(
                    np.fromiter(flat, dtype=dtype.newbyteorder("="), count=int(counts.sum()))
                )
                offsets[name] = _frozen(np.concatenate(([0], np.cumsum(counts))))
            else:
                columns[name] = _frozen(np.array(values, dtype=dtype))
        return cls(**columns, offsets=offsets)

    def select(self, mask: np.ndarray):
        """The messages where boolean ``mask`` (one entry per message) is True, as columns."""
        keep = np.flatnonzero(mask)
        columns: dict[str, object] = {}
        offsets: dict[str, np.ndarray] = {}
        for name in self._layout.names:
            column = getattr(self, name)
            if isinstance(column, tuple):
                columns[name] = tuple(column[i] for i in keep)
            elif name in self.offsets:
                bounds = self.offsets[name]
                counts = bounds[keep + 1] - bounds[keep]
                rows = np.repeat(bounds[keep] - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
                columns[name] = _frozen(column[rows + np.arange(int(counts.sum()))])
                offsets[name] = _frozen(np.concatenate(([0], np.cumsum(counts))))
            else:
                columns[name] = _frozen(column[keep])
        return type(self)(**columns, offsets=offsets)


@dataclass(frozen=True, eq=False)
class BookArrays:
    """One OrderBook: prices float64, sizes in lots uint64 (read-only views), best levels first."""

    symbol: str
    sequence: int
    previous_sequence: int
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    depth: int


@dataclass(frozen=True, eq=False)
class BookColumns(_Columns):
    """The OrderBook messages of one OrderBooks, as columns: ``symbol``, ``sequence``,
    ``previous_sequence`` and ``depth`` have one entry per book; ``bid_prices`` and the other
    arrays hold every book's levels, book after book, book i's at
    ``offsets[name][i]:offsets[name][i + 1]``. ``columns[i]`` is book i as BookArrays."""

    _layout: ClassVar[_Layout] = _Layout(pb.OrderBook.DESCRIPTOR)
    _row: ClassVar[type] = BookArrays

    symbol: tuple[str, ...]
    sequence: np.ndarray
    previous_sequence: np.ndarray
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    depth: np.ndarray
    offsets: dict[str, np.ndarray] = field(repr=False)


@dataclass(frozen=True, eq=False)
class TradeArrays:
    """One symbol's prints (one Trades message): ids and sizes uint64, prices float64,
    aggressors int32 (Side: BUY 1, SELL 2), times int64 UTC nanoseconds."""

    symbol: str
    trade_ids: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    aggressors: np.ndarray
    times: np.ndarray


@dataclass(frozen=True, eq=False)
class TradeColumns(_Columns):
    """The Trades messages of one TradeBatch as columns, like BookColumns: one ``symbol`` per
    message, every message's prints end to end in the arrays."""

    _layout: ClassVar[_Layout] = _Layout(pb.Trades.DESCRIPTOR)
    _row: ClassVar[type] = TradeArrays

    symbol: tuple[str, ...]
    trade_ids: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    aggressors: np.ndarray
    times: np.ndarray
    offsets: dict[str, np.ndarray] = field(repr=False)


assert [f.name for f in fields(BookArrays)] == BookColumns._layout.names
assert [f.name for f in fields(TradeArrays)] == TradeColumns._layout.names

_ARMS = {f.number: f.name for f in pb.MarketEvent.DESCRIPTOR.oneofs_by_name["event"].fields}
BOOK_KINDS = ("book_snapshot", "book_update", "top_of_book")
_DECODED = {name: BookColumns for name in BOOK_KINDS} | {"trades": TradeColumns}


@dataclass(frozen=True, eq=False)
class DecodedEvent:
    """A MarketEvent read without the generated classes.

    ``kind`` is the name of the event's oneof arm (as ``MarketEvent.WhichOneof("event")``), None
    when it has none. Book events (book_snapshot, book_update, top_of_book) carry ``books``,
    trade events ``trades``; every other kind is parsed by the generated class into
    ``message``. ``exchange_time_ns`` is the exchange time in UTC nanoseconds.
    """

    sequence: int
    exchange_time_ns: int
    kind: str | None
    books: BookColumns | None = None
    trades: TradeColumns | None = None
    message: pb.MarketEvent | None = None

    @property
    def exchange_time(self) -> timestamp_pb2.Timestamp:
        """The exchange time as a Timestamp, as MarketEvent.exchange_time."""
        stamp = timestamp_pb2.Timestamp()
        stamp.FromNanoseconds(self.exchange_time_ns)
        return stamp


def event_kind(event: pb.MarketEvent | DecodedEvent) -> str | None:
    """The oneof arm of a MarketEvent or a DecodedEvent: "snapshot", "book_update", ..."""
    if isinstance(event, DecodedEvent):
        return event.kind
    return event.WhichOneof("event")


def exchange_time_ns(event: pb.MarketEvent | DecodedEvent) -> int:
    if isinstance(event, DecodedEvent):
        return event.exchange_time_ns
    return event.exchange_time.ToNanoseconds()


def decode_market_event(data: bytes) -> DecodedEvent:
    """A serialized MarketEvent: books and trades as numpy columns, other kinds parsed by the
    generated class (see the module docstring). Raises DecodeError on malformed bytes."""
    try:
        return _decode_event(data)
    except _Group:  # no serializer writes one
        return _decode_with_groups(data)


def _decode_event(data: bytes) -> DecodedEvent:
    sequence = 0
    stamp: list[tuple[int, int]] = []
    arm: str | None = None
    arm_parts: list[tuple[int, int, int]] = []  # where each occurrence's key, value and end are
    replaced: list[tuple[str, list[tuple[int, int, int]]]] = []
    pos, end = 0, len(data)
    while pos < end:
        at = pos
        key, pos = _read_key(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if key == 0x08:
            sequence, pos = _read_varint(data, pos)
        elif wire_type == _LEN and (number == 2 or number in _ARMS):
            length, pos = _read_size(data, pos)
            if pos + length > end:
                raise DecodeError("truncated length-delimited field")
            if number == 2:
                stamp.append((pos, pos + length))
            elif _ARMS[number] == arm:  # the same arm again: protobuf merges the two
                arm_parts.append((at, pos, pos + length))
            else:  # another arm replaces the one before, which must still be well formed
                if arm is not None:
                    replaced.append((arm, arm_parts))
                arm, arm_parts = _ARMS[number], [(at, pos, pos + length)]
            pos += length
        else:
            pos = _skip_within(data, pos, key, end)
    for name, parts in replaced:
        _check_arm(data, name, parts)
    nanoseconds = _timestamp_ns(data, stamp)
    decoder = _DECODED.get(arm)
    if decoder is None:
        message = _parse(pb.MarketEvent, data, "MarketEvent") if arm is not None else None
        return DecodedEvent(sequence, nanoseconds, arm, message=message)
    columns = _decode_arm(decoder, data, arm_parts)
    if decoder is TradeColumns:
        return DecodedEvent(sequence, nanoseconds, arm, trades=columns)
    return DecodedEvent(sequence, nanoseconds, arm, books=columns)


def _decode_arm(decoder: type[_Columns], data: bytes, parts: list[tuple[int, int, int]]) -> _Columns:
    if len(parts) == 1:
        return decoder.decode(data, *parts[0][1:])
    # Protobuf reads each occurrence on its own before merging them: a message cut across two
    # is malformed, so the messages are found occurrence by occurrence.
    spans = np.concatenate([_message_spans(data, start, stop) for _, start, stop in parts])
    columns, offsets = _any_columns(data, spans, decoder._layout)
    return decoder(**columns, offsets=offsets)


def _check_arm(data: bytes, name: str, parts: list[tuple[int, int, int]]) -> None:
    """Whether an arm that a later one replaced was well formed, as protobuf checks it: each
    occurrence on its own."""
    decoder = _DECODED.get(name)
    for at, start, stop in parts:
        if decoder is not None:
            decoder.decode(data, start, stop)
        else:  # as a field of an event, so that the parser allows the nesting it allows there
            _parse(pb.MarketEvent, data[at:stop], name)


def _parse(message: type, data: bytes, what: str):
    try:
        return message.FromString(data)
    except Exception as err:  # the generated parser's own error type
        raise DecodeError(f"malformed {what}") from err


def _decode_with_groups(data: bytes) -> DecodedEvent:
    """An event holding a group: protobuf's parser says whether it is well formed, and its
    bytes written again without unknown fields (groups among them) are read as any others."""
    event = _parse(pb.MarketEvent, data, "MarketEvent")
    kind = event.WhichOneof("event")
    if kind in _DECODED:
        event.DiscardUnknownFields()
        canonical = event.SerializeToString()
        del event  # not kept while the columns are made
        return _decode_event(canonical)
    stamp = event.exchange_time  # by hand: ToNanoseconds refuses seconds beyond year 9999
    nanoseconds = stamp.seconds * 1_000_000_000 + stamp.nanos
    return DecodedEvent(event.sequence, nanoseconds, kind, message=event if kind else None)


def _timestamp_ns(data: bytes, parts: list[tuple[int, int]]) -> int:
    """The google.protobuf.Timestamp (seconds int64, nanos int32) at the data[start:end] of
    ``parts`` in nanoseconds: each occurrence read on its own, a later value winning."""
    seconds = nanos = 0
    for pos, end in parts:
        while pos < end:
            key, pos = _read_key(data, pos, end)
            if key == 0x08:
                seconds, pos = _varint_within(data, pos, end)
            elif key == 0x10:
                nanos, pos = _varint_within(data, pos, end)
            else:
                pos = _skip_within(data, pos, key, end)
    seconds -= (seconds >> 63) << 64  # two's complement
    nanos &= 0xFFFFFFFF
    nanos -= (nanos >> 31) << 32
    return seconds * 1_000_000_000 + nanos


def book_columns(books: BookColumns | pb.OrderBooks | pb.OrderBook | BookArrays | Iterable) -> BookColumns:
    """Books in any form as BookColumns: decoded columns (as they are), an OrderBooks message,
    one OrderBook or BookArrays, or an iterable of them."""
    if isinstance(books, BookColumns):
        return books
    if isinstance(books, pb.OrderBooks):
        return BookColumns.from_messages(books.books)
    if isinstance(books, pb.OrderBook | BookArrays):
        return BookColumns.from_messages([books])
    return BookColumns.from_messages(books)


def event_books(event: pb.MarketEvent | DecodedEvent) -> BookColumns | None:
    """The books of a book event (book_snapshot, book_update, top_of_book) as columns; None
    for other kinds."""
    if isinstance(event, DecodedEvent):
        return event.books
    kind = event.WhichOneof("event")
    if kind not in BOOK_KINDS:
        return None
    return BookColumns.from_messages(getattr(event, kind).books)


def event_trades(event: pb.MarketEvent | DecodedEvent) -> TradeColumns | None:
    """The trades of a trades event as columns; None for other kinds."""
    if isinstance(event, DecodedEvent):
        return event.trades
    if event.WhichOneof("event") != "trades":
        return None
    return TradeColumns.from_messages(event.trades.trades)
