"""MarketEvents read straight from their bytes: order books and trades as numpy columns.

A book_update of 100 symbols at depth 10 carries some 4,000 numbers. Read
through the generated classes, each becomes a Python object on its way into
numpy. ``decode_market_event`` has protobuf's own parser read the event into
a shadow of the generated classes, built from the same descriptors, in which
the arrays of OrderBook and Trades are declared ``bytes``: a packed array is
one length-delimited run either way, so each book's array arrives as one
bytes object, and one numpy call reads every book's.

The shadow holds an event the same way only when it is written as the
serializers write it. Anything else (an array split or unpacked, a field
repeated, at its default or unknown, a oneof arm twice or replaced, a group)
makes the shadow, written back without unknown fields, shorter than the
bytes read; such an event is parsed by the generated classes, which decide
what it means and whether it is well formed (DecodeError when not), and
their canonical bytes are read as above. So every event reads exactly as
``MarketEvent.FromString`` reads it, and only protobuf walks the wire.

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

from .decoding import DecodeError

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
_COLUMN_MESSAGES = ("OrderBook", "Trades")  # the messages whose arrays the shadow holds as bytes


class _Layout:
    """How the fields of one message type become columns: a string, unsigned scalars, arrays
    of 8-byte values and arrays of enums (the kinds OrderBook and Trades hold)."""

    def __init__(self, descriptor) -> None:
        self.names = [f.name for f in descriptor.fields]
        self.dtypes: dict[str, np.dtype] = {}
        self.arrays: list[str] = []  # array fields, in number order
        for f in descriptor.fields:
            if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated:
                continue
            if f.type in _UINT_TYPES and not f.is_repeated:
                self.dtypes[f.name] = _UINT_TYPES[f.type]
            elif f.is_repeated and f.type in _ARRAY_TYPES:
                self.dtypes[f.name] = _ARRAY_TYPES[f.type]
                self.arrays.append(f.name)
            elif f.is_repeated and f.type == FieldDescriptor.TYPE_ENUM:
                self.dtypes[f.name] = _ENUM
                self.arrays.append(f.name)
            else:
                raise TypeError(f"{descriptor.name}.{f.name}: no column kind for this field")
        self.arrays8 = [name for name in self.arrays if self.dtypes[name] != _ENUM]
        self.enums = [name for name in self.arrays if self.dtypes[name] == _ENUM]
        self.fields_of = operator.attrgetter(*self.names)  # every field of a message, in one call


def _shadow_pool() -> descriptor_pool.DescriptorPool:
    """The generated files again, in a pool of their own, with the arrays of the column
    messages declared ``bytes``."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        if file is pb.DESCRIPTOR:
            for message in proto.message_type:
                if message.name not in _COLUMN_MESSAGES:
                    continue
                for f in message.field:
                    if f.label == FieldDescriptor.LABEL_REPEATED:
                        f.label = FieldDescriptor.LABEL_OPTIONAL
                        f.type = FieldDescriptor.TYPE_BYTES
                        f.ClearField("type_name")
                        f.ClearField("options")
        pool.Add(proto)
        added.add(file.name)

    add(pb.DESCRIPTOR)
    return pool


_SHADOWS = _shadow_pool()


def _shadow_of(real: type) -> type:
    """The shadow class of a generated message class."""
    return message_factory.GetMessageClass(_SHADOWS.FindMessageTypeByName(real.DESCRIPTOR.full_name))


_SHADOW_EVENT = _shadow_of(pb.MarketEvent)


def _as_written(shadow: type, data: bytes):
    """``data`` in the shadow class, or None unless the shadow holds every byte of it (see the
    module docstring): parsed, stripped of unknown fields, and as long as ``data`` written back."""
    try:
        message = shadow.FromString(data)
    except Exception:  # the generated parser's own error type: the generated classes say why
        return None
    message.DiscardUnknownFields()
    return message if message.ByteSize() == len(data) else None


def _rewritten(shadow: type, real: type, data: bytes):
    """``data`` as the generated class ``real`` reads it, written again as its serializer
    writes it (without unknown fields), in the shadow class; DecodeError when it refuses it."""
    try:
        message = real.FromString(data)
    except Exception as err:  # the generated parser's own error type
        raise DecodeError(f"malformed {real.DESCRIPTOR.name}") from err
    message.DiscardUnknownFields()
    return shadow.FromString(message.SerializeToString())


def _read(shadow: type, real: type, data: bytes):
    message = _as_written(shadow, data)
    return message if message is not None else _rewritten(shadow, real, data)


def _columns(items, layout: _Layout) -> tuple[dict, dict]:
    """The shadow messages ``items`` (a repeated field: books or trades) as columns: (columns by
    field name, offsets by array field name). DecodeError for an array protobuf would refuse
    (8-byte values whose length is not a multiple of 8, packed varints cut inside one)."""
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
    _container: ClassVar[type]  # the generated class of the container, and its repeated field
    _items: ClassVar[str]
    _shadow_container: ClassVar[type]

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
    def decode(cls, data: bytes):
        """The messages of a serialized container (OrderBooks, TradeBatch), read as
        decode_market_event reads an event's."""
        container = _read(cls._shadow_container, cls._container, data)
        columns, offsets = _columns(getattr(container, cls._items), cls._layout)
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
    _container: ClassVar[type] = pb.OrderBooks
    _items: ClassVar[str] = "books"
    _shadow_container: ClassVar[type] = _shadow_of(pb.OrderBooks)

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
    _container: ClassVar[type] = pb.TradeBatch
    _items: ClassVar[str] = "trades"
    _shadow_container: ClassVar[type] = _shadow_of(pb.TradeBatch)

    symbol: tuple[str, ...]
    trade_ids: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    aggressors: np.ndarray
    times: np.ndarray
    offsets: dict[str, np.ndarray] = field(repr=False)


assert [f.name for f in fields(BookArrays)] == BookColumns._layout.names
assert [f.name for f in fields(TradeArrays)] == TradeColumns._layout.names

BOOK_KINDS = ("book_snapshot", "book_update", "top_of_book")


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
        seconds, nanos = divmod(self.exchange_time_ns, 1_000_000_000)
        return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def event_kind(event: pb.MarketEvent | DecodedEvent) -> str | None:
    """The oneof arm of a MarketEvent or a DecodedEvent: "snapshot", "book_update", ..."""
    if isinstance(event, DecodedEvent):
        return event.kind
    return event.WhichOneof("event")


def exchange_time_ns(event: pb.MarketEvent | DecodedEvent) -> int:
    if isinstance(event, DecodedEvent):
        return event.exchange_time_ns
    return _nanoseconds(event.exchange_time)


def _nanoseconds(stamp) -> int:
    """A Timestamp in nanoseconds, whatever its seconds (Timestamp.ToNanoseconds refuses those
    past year 9999, which the wire may carry)."""
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def decode_market_event(data: bytes) -> DecodedEvent:
    """A serialized MarketEvent: books and trades as numpy columns, other kinds parsed by the
    generated class (see the module docstring). Raises DecodeError on malformed bytes."""
    event = _read(_SHADOW_EVENT, pb.MarketEvent, data)
    kind = event.WhichOneof("event")
    sequence, nanoseconds = event.sequence, _nanoseconds(event.exchange_time)
    if kind in BOOK_KINDS:
        columns, offsets = _columns(getattr(event, kind).books, BookColumns._layout)
        return DecodedEvent(sequence, nanoseconds, kind, books=BookColumns(**columns, offsets=offsets))
    if kind == "trades":
        columns, offsets = _columns(event.trades.trades, TradeColumns._layout)
        return DecodedEvent(sequence, nanoseconds, kind, trades=TradeColumns(**columns, offsets=offsets))
    del event
    message = pb.MarketEvent.FromString(data) if kind is not None else None  # read once already
    return DecodedEvent(sequence, nanoseconds, kind, message=message)


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
