"""Market events read into numpy (client.events) agree with the generated parser on every encoding.

The generated parser is the oracle: events are written in many ways (fields
in any order, arrays packed, unpacked or split, scalars repeated, unknown
fields, a oneof arm merged or replaced, messages cut short or corrupted) and
whatever it reads, the numpy decoder must read the same, or refuse the bytes
when it refuses them.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor

from client import (
    BookColumns,
    DecodeError,
    TradeColumns,
    decode_market_event,
    event_books,
    event_trades,
    events,
)
from marketdata.v1 import market_data_pb2 as pb
from server.wire import varint

LEN, I64, VARINT, I32, SGROUP, EGROUP = 2, 1, 0, 5, 3, 4


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return key(number, LEN) + varint(len(payload)) + payload


def signed_varint(value: int) -> bytes:
    return varint(value & 0xFFFFFFFFFFFFFFFF)  # negatives as 10 bytes, as protobuf writes int32/int64


UNKNOWN = [
    key(99, VARINT) + varint(2**63),
    key(98, I64) + struct.pack("<d", 1.5),
    length_delimited(97, b"\x00\x01anything"),
    key(96, I32) + struct.pack("<f", 2.5),
    key(95, SGROUP) + key(1, VARINT) + varint(5) + length_delimited(2, b"z") + key(95, EGROUP),
    key(15, VARINT) + varint(7),  # a free number below 16: a one-byte key the layouts do not know
]

_PACK = {
    FieldDescriptor.TYPE_DOUBLE: "<d",
    FieldDescriptor.TYPE_FIXED64: "<Q",
    FieldDescriptor.TYPE_SFIXED64: "<q",
}


def scrambled(message, rng: np.random.Generator, *, unknown: bool = True) -> bytes:
    """``message`` (an OrderBook or Trades) written another way that protobuf reads as the same:
    fields in a random order, each array split into packed runs and single unpacked values,
    scalars first written with another value, unknown fields between them."""
    per_field: list[list[bytes]] = []
    for field, value in message.ListFields():
        parts: list[bytes] = []
        if field.is_repeated:
            values = list(value)
            cuts = sorted(rng.choice(len(values) + 1, size=min(3, len(values) + 1), replace=False).tolist())
            for chunk in np.split(np.arange(len(values)), cuts):
                chunk_values = [values[i] for i in chunk]
                if not chunk_values and rng.random() < 0.5:
                    continue
                parts += _array_parts(field, chunk_values, packed=bool(rng.random() < 0.6))
        elif field.type == FieldDescriptor.TYPE_STRING:
            if rng.random() < 0.3:
                parts.append(length_delimited(field.number, b"decoy"))
            parts.append(length_delimited(field.number, value.encode()))
        else:
            if rng.random() < 0.3:
                parts.append(key(field.number, VARINT) + varint(12345))
            parts.append(key(field.number, VARINT) + varint(value))
        per_field.append(parts)
    if unknown:
        per_field += [[UNKNOWN[i]] for i in rng.choice(len(UNKNOWN), size=2, replace=False)]
    return _interleave(per_field, rng)


def _array_parts(field, values, *, packed: bool) -> list[bytes]:
    if field.type == FieldDescriptor.TYPE_ENUM:
        encoded = [signed_varint(v) for v in values]
        if packed:
            return [length_delimited(field.number, b"".join(encoded))]
        return [key(field.number, VARINT) + e for e in encoded]
    fmt = _PACK[field.type]
    if packed:
        return [length_delimited(field.number, b"".join(struct.pack(fmt, v) for v in values))]
    return [key(field.number, I64) + struct.pack(fmt, v) for v in values]


def _interleave(per_field: list[list[bytes]], rng: np.random.Generator) -> bytes:
    """The parts of every field in a random order that keeps each field's own parts in order."""
    queues = [list(parts) for parts in per_field if parts]
    out = []
    while queues:
        i = int(rng.integers(len(queues)))
        out.append(queues[i].pop(0))
        if not queues[i]:
            queues.pop(i)
    return b"".join(out)


def pick(rng: np.random.Generator, values: list):
    return values[int(rng.integers(len(values)))]


def random_book(rng: np.random.Generator) -> pb.OrderBook:
    book = pb.OrderBook(
        symbol=pick(rng, ["", "A", "ACME", "BB€", "株式" * 3, "X" * 40]),
        sequence=pick(rng, [0, 1, 127, 128, 300, 2**35, 2**64 - 1]),
        previous_sequence=pick(rng, [0, 1, 16383, 16384, 2**63]),
        depth=pick(rng, [0, 1, 10, 50, 2**32 - 1]),
    )
    for prices, sizes in ((book.bid_prices, book.bid_sizes), (book.ask_prices, book.ask_sizes)):
        count = int(rng.choice([0, 1, 3, 10, 17, 60]))  # 17 and 60 doubles need 2-byte lengths
        prices.extend(rng.choice([70.01, -0.0, 1e-310, np.inf, np.nan, 1e300], size=count).tolist())
        lots = np.array([0, 1, 127, 2**40, 2**63, 2**64 - 1], dtype=np.uint64)
        sizes.extend(rng.choice(lots, size=count).tolist())
    return book


def random_trades(rng: np.random.Generator) -> pb.Trades:
    count = pick(rng, [0, 1, 4, 20])
    return pb.Trades(
        symbol=pick(rng, ["ACME", "€", ""]),
        trade_ids=rng.integers(0, 2**63, count).tolist(),
        prices=rng.normal(70, 1, count).tolist(),
        sizes=rng.integers(1, 2**40, count).tolist(),
        # BUY, SELL, an unknown value, one of more than a byte, a negative one (10 bytes)
        aggressors=rng.choice([1, 2, 0, 7, 300, -1, 2**31 - 1], size=count).tolist(),
        times=rng.integers(-(2**62), 2**62, count).tolist(),
    )


def random_event(rng: np.random.Generator, kind: str) -> pb.MarketEvent:
    event = pb.MarketEvent(sequence=int(rng.integers(0, 2**64, dtype=np.uint64)))
    event.exchange_time.FromNanoseconds(int(rng.integers(-(2**40), 2**62)))
    count = pick(rng, [0, 1, 5, 30])
    if kind == "trades":
        event.trades.trades.extend(random_trades(rng) for _ in range(count))
    else:
        getattr(event, kind).books.extend(random_book(rng) for _ in range(count))
    return event


def write_event(event: pb.MarketEvent, rng: np.random.Generator, *, canonical: bool) -> bytes:
    """An event as the generated serializer writes it, or scrambled: its books or trades
    scrambled, the oneof arm possibly split in two (protobuf merges them) or preceded by
    another arm (which it replaces), the timestamp possibly split, unknown fields around."""
    if canonical:
        return event.SerializeToString()
    kind = event.WhichOneof("event")
    items = list(event.trades.trades if kind == "trades" else getattr(event, kind).books)
    number = pb.MarketEvent.DESCRIPTOR.fields_by_name[kind].number
    inner = [length_delimited(1, scrambled(item, rng)) for item in items]
    if rng.random() < 0.5:
        inner.insert(int(rng.integers(len(inner) + 1)), UNKNOWN[int(rng.integers(len(UNKNOWN)))])
    split = int(rng.integers(len(inner) + 1))
    arms = [length_delimited(number, b"".join(inner[:split]))]
    if rng.random() < 0.5:
        arms.append(length_delimited(number, b"".join(inner[split:])))
    else:
        arms[0] = length_delimited(number, b"".join(inner))
    if rng.random() < 0.3:  # another arm first, replaced by this one
        other = pick(rng, [n for n in range(3, 12) if n != number])
        payload = b""
        if other in (7, 8, 9):
            payload = length_delimited(1, random_book(rng).SerializeToString())
        elif other == 10:
            payload = length_delimited(1, random_trades(rng).SerializeToString())
        arms.insert(0, length_delimited(other, payload))
    stamp = event.exchange_time
    stamps = [length_delimited(2, key(1, VARINT) + signed_varint(stamp.seconds))]
    stamps.append(length_delimited(2, key(2, VARINT) + signed_varint(stamp.nanos)))
    head = [key(1, VARINT) + varint(event.sequence)]
    return _interleave([head, stamps, arms, [UNKNOWN[0]]], rng)


def assert_same(data: bytes) -> None:
    """The numpy decoder reads ``data`` as the generated parser does, or refuses it likewise."""
    try:
        theirs = pb.MarketEvent.FromString(data)
    except Exception:  # the generated parser's own error type
        with pytest.raises(DecodeError):
            decode_market_event(data)
        return
    mine = decode_market_event(data)
    kind = theirs.WhichOneof("event")
    assert mine.kind == kind
    assert mine.sequence == theirs.sequence
    stamp = theirs.exchange_time  # any seconds and nanos (ToNanoseconds refuses some)
    assert mine.exchange_time_ns == stamp.seconds * 1_000_000_000 + stamp.nanos
    if kind == "trades":
        assert mine.books is None and mine.message is None
        _same_rows(mine.trades, theirs.trades.trades)
    elif kind in ("book_snapshot", "book_update", "top_of_book"):
        assert mine.trades is None and mine.message is None
        _same_rows(mine.books, getattr(theirs, kind).books)
    else:
        assert mine.books is None and mine.trades is None
        assert mine.message == (theirs if kind else None)


def _same_rows(columns: BookColumns | TradeColumns, messages) -> None:
    assert len(columns) == len(messages)
    for row, message in zip(columns, messages, strict=True):
        for field in message.DESCRIPTOR.fields:
            mine, theirs = getattr(row, field.name), getattr(message, field.name)
            if not field.is_repeated:
                assert mine == theirs, field.name
                continue
            assert not mine.flags.writeable
            expected = np.array(list(theirs), dtype=columns._layout.dtypes[field.name].newbyteorder("="))
            assert mine.dtype == expected.dtype, field.name
            assert mine.tobytes() == expected.tobytes(), field.name  # nan and -0.0 too


KINDS = ["book_snapshot", "book_update", "top_of_book", "trades"]


@pytest.mark.parametrize("kind", KINDS)
def test_events_as_the_server_writes_them_decode_as_protobuf_reads_them(kind, monkeypatch):
    # All of them are read as written (protobuf's parser into the shadow classes), none rewritten.
    monkeypatch.setattr(events, "_rewritten", None)
    rng = np.random.default_rng(1)
    for _ in range(40):
        assert_same(write_event(random_event(rng, kind), rng, canonical=True))


@pytest.mark.parametrize("kind", KINDS)
def test_events_written_any_other_way_decode_as_protobuf_reads_them(kind, monkeypatch):
    rewritten_ones = []  # read as written is tried first, and gives up on most of them
    rewritten = events._rewritten
    monkeypatch.setattr(events, "_rewritten", lambda *args: rewritten_ones.append(1) or rewritten(*args))
    rng = np.random.default_rng(2)
    for _ in range(60):
        event = random_event(rng, kind)
        data = write_event(event, rng, canonical=False)
        read = pb.MarketEvent.FromString(data)
        read.DiscardUnknownFields()
        assert read.SerializeToString() == event.SerializeToString()  # the scrambling keeps the meaning
        assert_same(data)
    assert len(rewritten_ones) > 30  # most of them went through the generated classes


@pytest.mark.parametrize(
    "book",
    [
        # bid_prices unpacked: to the shadow (bytes) an unknown field that writes back as long
        key(1, LEN)
        + varint(1)
        + b"A"
        + key(4, I64)
        + struct.pack("<d", 9.5)
        + key(4, I64)
        + struct.pack("<d", 9.0),
        # bid_sizes in two packed runs: the shadow keeps only the last
        length_delimited(5, struct.pack("<Q", 3)) + length_delimited(5, struct.pack("<Q", 4)),
        # sequence twice, the last one winning; depth written at its default
        key(2, VARINT) + varint(7) + key(2, VARINT) + varint(8) + key(8, VARINT) + varint(0),
        # an unknown field inside a book, and one in the container
        key(1, LEN) + varint(1) + b"B" + UNKNOWN[0],
    ],
    ids=["unpacked", "split", "repeated-or-default", "unknown"],
)
def test_what_the_shadow_cannot_hold_is_read_through_the_generated_classes(book, monkeypatch):
    rewritten_ones = []
    rewritten = events._rewritten
    monkeypatch.setattr(events, "_rewritten", lambda *args: rewritten_ones.append(1) or rewritten(*args))
    books = length_delimited(1, book) + length_delimited(1, key(1, LEN) + varint(1) + b"C")
    for container in (books, books + UNKNOWN[1]):
        data = key(1, VARINT) + varint(5) + length_delimited(8, container)  # a book_update
        assert_same(data)
    assert rewritten_ones == [1, 1]


@pytest.mark.parametrize("fast", [True, False])  # as written first, or always through the generated classes
@pytest.mark.parametrize("kind", ["book_update", "trades"])  # the book kinds share one reader
def test_cut_or_corrupted_events_are_refused_as_protobuf_refuses_them(kind, fast, monkeypatch):
    if not fast:
        monkeypatch.setattr(events, "_as_written", lambda *args: None)
    rng = np.random.default_rng(3)
    for canonical in (True, False):
        event = random_event(rng, kind)
        while not (event.trades.trades if kind == "trades" else getattr(event, kind).books):
            event = random_event(rng, kind)
        data = write_event(event, rng, canonical=canonical)
        for end in range(len(data)):
            assert_same(data[:end])
        for _ in range(150):
            spoilt = bytearray(data)
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
                spoilt[at] = int(rng.integers(256))
            assert_same(bytes(spoilt))


@pytest.mark.parametrize(
    "data",
    [
        length_delimited(8, length_delimited(1, key(4, LEN) + varint(12) + bytes(12))),  # not 8-byte values
        length_delimited(8, length_delimited(1, key(1, LEN) + varint(2) + b"\xff\xfe")),  # symbol not UTF-8
        length_delimited(8, length_delimited(1, key(2, VARINT) + b"\xff" * 11)),  # varint over 10 bytes
        length_delimited(8, length_delimited(1, key(0, VARINT) + varint(1))),  # field number 0
        length_delimited(8, length_delimited(1, key(99, 7))),  # no such wire type
        length_delimited(8, length_delimited(1, key(95, SGROUP) + key(94, EGROUP))),  # group closed wrong
        length_delimited(8, key(1, LEN) + varint(50) + b"short"),  # a book longer than its container
        length_delimited(10, length_delimited(1, key(5, LEN) + varint(1) + b"\x80")),  # enum cut inside
        length_delimited(3, length_delimited(1, b"\xff")) + length_delimited(8, b""),  # a bad replaced arm
        length_delimited(2, key(1, VARINT) + b"\x80"),  # a bad timestamp
    ],
)
def test_malformed_events_raise_decode_error(data):
    with pytest.raises(Exception):  # noqa: B017 - the generated parser's own error type
        pb.MarketEvent.FromString(data)
    with pytest.raises(DecodeError):
        decode_market_event(data)


def test_other_kinds_come_as_the_generated_message():
    update = pb.MarketEvent(sequence=9, update=pb.PriceUpdate(prices=[pb.SymbolPrice(symbol="A", price=1.5)]))
    status = pb.MarketEvent(
        status=pb.SubscriptionStatus(
            symbols=[pb.SymbolStatus(symbol="A", code=pb.SymbolStatus.SUBSCRIBED, type=pb.ORDER_BOOK)]
        )
    )
    candles = pb.MarketEvent(candles=pb.CandleBatch(candles=[pb.Candle(symbol="A", open=1, volume=3)]))
    heartbeat = pb.MarketEvent(sequence=4, heartbeat=pb.Heartbeat())
    for event in (update, status, candles, heartbeat):
        decoded = decode_market_event(event.SerializeToString())
        assert decoded.kind == event.WhichOneof("event")
        assert decoded.message == event
        assert decoded.sequence == event.sequence
    empty = decode_market_event(b"")
    assert (empty.kind, empty.sequence, empty.exchange_time_ns, empty.message) == (None, 0, 0, None)


def test_columns_hold_every_book_end_to_end_with_offsets():
    books = [
        pb.OrderBook(symbol="A", sequence=5, bid_prices=[2.0, 1.0], bid_sizes=[3, 4], depth=2),
        pb.OrderBook(symbol="B", sequence=6, ask_prices=[9.0], ask_sizes=[1]),
        pb.OrderBook(symbol="C", bid_prices=[7.0], bid_sizes=[2], ask_prices=[8.0], ask_sizes=[5]),
    ]
    event = pb.MarketEvent(book_update=pb.OrderBooks(books=books))
    columns = decode_market_event(event.SerializeToString()).books
    assert columns.symbol == ("A", "B", "C")
    assert columns.sequence.tolist() == [5, 6, 0]
    assert columns.bid_prices.tolist() == [2.0, 1.0, 7.0]
    assert columns.offsets["bid_prices"].tolist() == [0, 2, 2, 3]
    assert columns.counts("ask_sizes").tolist() == [0, 1, 1]
    assert columns[-1].ask_sizes.tolist() == [5]
    assert columns.bid_sizes.dtype == np.uint64 and columns.depth.dtype == np.uint32
    picked = columns.select(np.array([True, False, True]))
    assert picked.symbol == ("A", "C") and picked.bid_prices.tolist() == [2.0, 1.0, 7.0]
    assert picked.offsets["ask_prices"].tolist() == [0, 0, 1]
    # The generated messages' path gives the same columns.
    from_messages = event_books(event)
    for name in BookColumns._layout.names:
        mine, theirs = getattr(columns, name), getattr(from_messages, name)
        assert mine == theirs if isinstance(mine, tuple) else mine.tobytes() == theirs.tobytes()


def test_trade_columns_of_the_generated_messages_equal_the_decoded_ones():
    rng = np.random.default_rng(4)
    event = random_event(rng, "trades")
    while not event.trades.trades:
        event = random_event(rng, "trades")
    decoded = decode_market_event(event.SerializeToString()).trades
    converted = event_trades(event)
    for name in TradeColumns._layout.names:
        mine, theirs = getattr(decoded, name), getattr(converted, name)
        if isinstance(mine, tuple):
            assert mine == theirs
        else:
            assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes()
            if name in decoded.offsets:
                assert decoded.offsets[name].tolist() == converted.offsets[name].tolist()
