"""MarketEvents from a hostile peer: the numpy reader (client.events) against the generated parser.

The readers of client.events must read any bytes as MarketEvent.FromString
does, or refuse them (DecodeError) exactly when it refuses them. A seeded
writer here makes events as a peer set on confusing them would: mostly what
the serializers write, with a few choices they never make (varints and keys
longer than needed, scalars at their default or written twice, arrays split,
unpacked or cut, enums above 2^31 or 2^32, strings that are not UTF-8,
unknown fields and groups, a oneof arm cut in two or replaced, lengths off by
one), and now and then a byte changed. The concrete disagreements it found
are kept as tests of their own below it.
"""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from client import DecodeError, decode_market_event, events
from marketdata.v1 import market_data_pb2 as pb
from server.wire import varint
from tests.test_client_events import (
    EGROUP,
    I32,
    I64,
    LEN,
    SGROUP,
    VARINT,
    assert_same,
    key,
    length_delimited,
    random_book,
    signed_varint,
)

BOOK_ARMS = {"book_snapshot": 7, "book_update": 8, "top_of_book": 9}
TRADES_ARM = 10
SYMBOLS = ["", "A", "ACME", "BB€", "株式"]
NOT_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"A\xe2\x82"]
UINTS = [0, 1, 127, 128, 2**31, 2**32 - 1, 2**32, 2**32 + 2**31, 2**35, 2**63, 2**64 - 1]
# Enum values as their varint carries them: negatives as 10 bytes, and beyond 32 bits.
ENUMS = [0, 1, 2, 7, 300, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 1, 2**40 + 2, 2**64 - 1, 2**64 - 2**31]
# Field numbers no message here has (the last two make keys of 2^32 and above).
UNKNOWN_NUMBERS = [9, 12, 15, 16, 99, 2**29 - 1, 2**29, 2**31]


class HostileWriter:
    """Writes MarketEvents field by field, each choice the serializers' own except, with
    probability ``odd`` (times a weight), one they never make."""

    def __init__(self, rng: np.random.Generator, odd: float) -> None:
        self.rng = rng
        self.odd_p = odd

    def odd(self, weight: float = 1.0) -> bool:
        return bool(self.rng.random() < self.odd_p * weight)

    def pick(self, values: list):
        return values[int(self.rng.integers(len(values)))]

    # -- wire pieces

    def varint(self, value: int, weight: float = 0.3) -> bytes:
        """``value`` in as few bytes as it needs, or (odd) padded with empty 7-bit groups: up to
        the 10 bytes protobuf reads, or one more; a 10-byte one may carry bits above 64."""
        raw = varint(value)
        if not self.odd(weight):
            return raw
        if len(raw) == 10:
            return raw[:9] + bytes([int(self.rng.integers(0x80))])
        longest = 11 if self.odd(0.5) else 10
        extra = int(self.rng.integers(1, longest - len(raw) + 1))
        return raw[:-1] + bytes([raw[-1] | 0x80]) + b"\x80" * (extra - 1) + b"\x00"

    def key(self, number: int, wire_type: int) -> bytes:
        return self.varint(number << 3 | wire_type, weight=0.2)

    def length(self, size: int) -> bytes:
        if self.odd(0.05):
            size = self.pick([size + 1, max(size - 1, 0), 2**31, 2**63])
        return self.varint(size, weight=0.2)

    def delimited(self, number: int, payload: bytes) -> bytes:
        return self.key(number, LEN) + self.length(len(payload)) + payload

    def stray(self, number: int, depth: int = 0) -> bytes:
        """A field of ``number`` of any wire type, well formed, unless odd."""
        wire_type = self.pick(
            [VARINT, I64, LEN, I32, SGROUP, SGROUP] + ([6, EGROUP] if self.odd(0.1) else [])
        )
        head = self.key(number, wire_type)
        if wire_type == VARINT:
            return head + self.varint(self.pick(UINTS))
        if wire_type == I64:
            return head + self.rng.bytes(8)
        if wire_type == I32:
            return head + self.rng.bytes(4)
        if wire_type == LEN:
            payload = self.pick([b"", b"\x08\x01", self.rng.bytes(int(self.rng.integers(1, 12)))])
            return head + self.length(len(payload)) + payload
        if wire_type == SGROUP:
            if self.odd(0.05):  # nested deeper than protobuf's parser allows, or just within
                levels = int(self.rng.integers(90, 110))
                return key(number, SGROUP) * levels + key(number, EGROUP) * levels
            inside = b""
            if depth < 2:
                inside = b"".join(
                    self.stray(self.pick(UNKNOWN_NUMBERS[:5] + [1, 2]), depth + 1) for _ in range(2)
                )
            end = self.pick([number, number + 1]) if self.odd(0.3) else number
            return head + inside + (b"" if self.odd(0.05) else self.key(end, EGROUP))
        return head  # an end of group outside any, or wire type 6

    def strays(self, numbers: list[int]) -> list[list[bytes]]:
        """Now and then a field the message does not have, or one it has with another wire type."""
        out = []
        for _ in range(3):
            if self.odd(0.5):
                zero = [0] if self.odd(0.2) else []  # field number 0: refused
                out.append([self.stray(self.pick(UNKNOWN_NUMBERS + numbers + zero))])
        return out

    def message(self, fields: list[list[bytes]], numbers: list[int]) -> bytes:
        """Each field's parts (already in its order), fields by number, or (odd) interleaved,
        with stray fields among them."""
        fields = [parts for parts in fields if parts] + self.strays(numbers)
        if not self.odd(0.5):
            return b"".join(b"".join(parts) for parts in fields)
        out = []
        while fields:
            i = int(self.rng.integers(len(fields)))
            out.append(fields[i].pop(0))
            if not fields[i]:
                fields.pop(i)
        return b"".join(out)

    # -- fields

    def scalar(self, number: int, value: int) -> list[bytes]:
        parts = []
        if self.odd(0.2):  # written twice: the last one wins
            parts.append(self.key(number, VARINT) + self.varint(self.pick(UINTS)))
        if value or self.odd(0.3):  # 0 is not written, unless odd
            parts.append(self.key(number, VARINT) + self.varint(value))
        return parts

    def string(self, number: int, value: str) -> list[bytes]:
        raw = value.encode()
        if self.odd(0.1):
            raw = self.pick(NOT_UTF8)
        parts = []
        if self.odd(0.2):
            parts.append(self.delimited(number, b"decoy"))
        if raw or self.odd(0.3):
            parts.append(self.delimited(number, raw))
        return parts

    def array8(self, number: int, count: int) -> list[bytes]:
        raw = self.rng.bytes(8 * count)  # any 8 bytes are a double, a fixed64 or an sfixed64
        if self.odd(0.1):  # not a whole number of values
            raw = raw[:-1] if raw else b"\x00"
        return self._runs(number, [raw[i : i + 8] for i in range(0, len(raw), 8)] or [b""], I64)

    def enums(self, number: int, count: int) -> list[bytes]:
        values = [self.varint(self.pick(ENUMS), weight=0.2) for _ in range(count)]
        if values and self.odd(0.1):  # the last varint cut short
            values[-1] = values[-1][:-1] + bytes([values[-1][-1] | 0x80])
        return self._runs(number, values, VARINT)

    def _runs(self, number: int, values: list[bytes], unpacked: int) -> list[bytes]:
        """One packed run (none if empty), or (odd) several, some empty, some values unpacked."""
        if not self.odd(0.5):
            joined = b"".join(values)
            return [self.delimited(number, joined)] if joined else []
        parts = []
        for start in range(0, len(values) + 1, 3):
            group = values[start : start + 3]
            cut = int(self.rng.integers(len(group) + 1))
            for chunk in (group[:cut], group[cut:]):  # either may be empty: an empty packed run
                if chunk and self.rng.random() < 0.5:
                    parts += [self.key(number, unpacked) + value for value in chunk]
                else:
                    parts.append(self.delimited(number, b"".join(chunk)))
        return parts

    # -- messages

    def book(self) -> bytes:
        levels = self.pick([0, 0, 1, 2, 5])
        fields = [self.string(1, self.pick(SYMBOLS))]
        fields += [self.scalar(n, self.pick(UINTS)) for n in (2, 3)]
        fields += [
            self.array8(n, levels if not self.odd(0.2) else self.pick([0, 1, 3])) for n in (4, 5, 6, 7)
        ]
        fields.append(self.scalar(8, self.pick(UINTS[:6]) if not self.odd(0.3) else self.pick(UINTS)))
        return self.message(fields, list(range(1, 9)))

    def trades(self) -> bytes:
        prints = self.pick([0, 1, 2, 4])
        fields = [self.string(1, self.pick(SYMBOLS))]
        fields += [self.array8(n, prints) for n in (2, 3, 4)]
        fields.append(self.enums(5, prints))
        fields.append(self.array8(6, prints))
        return self.message(fields, list(range(1, 7)))

    def container(self, item) -> bytes:
        items = [[self.delimited(1, item())] for _ in range(self.pick([0, 1, 1, 2, 3]))]
        if self.odd(0.2):
            items.append([self.key(1, LEN) + b"\x00"])  # an empty message
        return self.message([[part for parts in items for part in parts]], [1])

    def timestamp(self) -> bytes:
        seconds = int(self.rng.integers(-(2**40), 2**40))
        nanos = int(self.rng.integers(-(2**31), 2**31)) if self.odd(0.3) else int(self.rng.integers(10**9))
        fields = [self.scalar(1, seconds & (2**64 - 1)), self.scalar(2, nanos & (2**64 - 1))]
        return self.message(fields, [1, 2])

    def arm(self, number: int) -> bytes:
        if number in BOOK_ARMS.values():
            return self.container(self.book)
        if number == TRADES_ARM:
            return self.container(self.trades)
        other = {
            3: pb.PriceSnapshot(prices=[pb.SymbolPrice(symbol="A", price=1.5)]),
            4: pb.PriceUpdate(prices=[pb.SymbolPrice(symbol="B", price=-0.0)]),
            5: pb.Heartbeat(),
            6: pb.SubscriptionStatus(symbols=[pb.SymbolStatus(symbol="A", code=pb.SymbolStatus.SUBSCRIBED)]),
            11: pb.CandleBatch(candles=[pb.Candle(symbol="A", open=1, volume=3)]),
        }[number]
        raw = other.SerializeToString()
        return raw + (self.stray(self.pick([13, 99])) if self.odd(0.3) else b"")

    def event(self) -> bytes:
        number = self.pick([7, 8, 9, 10] * 4 + [3, 4, 5, 6, 11] + [0] * 2)  # 0: no arm
        stamp = self.timestamp()
        stamps = [self.delimited(2, stamp)] if stamp or self.odd(0.2) else []
        if self.odd(0.3):  # the timestamp in two occurrences, cut anywhere
            cut = int(self.rng.integers(len(stamp) + 1))
            stamps = [self.delimited(2, stamp[:cut]), self.delimited(2, stamp[cut:])]
        arms = []
        if number:
            payload = self.arm(number)
            arms = [self.delimited(number, payload)]
            if self.odd(0.3):  # in two occurrences, cut anywhere: at a message's edge, or inside one
                cut = int(self.rng.integers(len(payload) + 1))
                arms = [self.delimited(number, payload[:cut]), self.delimited(number, payload[cut:])]
            if self.odd(0.3):  # another arm first, which this one replaces
                other = self.pick([n for n in (3, 4, 5, 6, 7, 8, 9, 10, 11) if n != number])
                arms.insert(0, self.delimited(other, self.arm(other)))
        fields = [self.scalar(1, self.pick(UINTS)), stamps, arms]
        return self.message(fields, [1, 2, *range(3, 12)])

    def spoil(self, data: bytes) -> bytes:
        """A byte or three changed, inserted or removed; or the bytes cut short."""
        out = bytearray(data)
        for _ in range(int(self.rng.integers(1, 4))):
            at = int(self.rng.integers(len(out) + 1))
            how = self.rng.integers(4)
            if how == 0 and at < len(out):
                out[at] = int(self.rng.integers(256))
            elif how == 1:
                out.insert(at, int(self.rng.integers(256)))
            elif how == 2 and at < len(out):
                del out[at]
            else:
                del out[at:]
        return bytes(out)


def test_hostile_events_read_as_protobuf_reads_them_or_are_refused_likewise(monkeypatch):
    # How each event was read: as written (protobuf's parser into the shadow classes), or
    # rewritten (the generated classes first, their canonical bytes then); and how many were
    # refused. Every way must have had its share, or the writer has stopped reaching it.
    seen = {"as written": 0, "rewritten": 0, "refused": 0}
    as_written, rewritten = events._as_written, events._rewritten

    def counting(name, read):
        def wrapped(*args):
            result = read(*args)
            seen[name] += result is not None
            return result

        return wrapped

    monkeypatch.setattr(events, "_as_written", counting("as written", as_written))
    monkeypatch.setattr(events, "_rewritten", counting("rewritten", rewritten))
    rng = np.random.default_rng(20240611)
    rounds = 2500
    for i in range(rounds):
        writer = HostileWriter(rng, odd=[0.0, 0.03, 0.1, 0.3][i % 4])
        data = writer.event()
        if writer.odd(0.3):
            data = writer.spoil(data)
        try:
            pb.MarketEvent.FromString(data)
        except Exception:  # the generated parser's own error type
            seen["refused"] += 1
        assert_same(data)
    assert all(count > rounds // 100 for count in seen.values()), seen


@pytest.mark.parametrize("fast", [True, False])
def test_many_messages_and_long_enum_runs_read_as_protobuf_reads_them(fast, monkeypatch):
    # Past the slices the reader works in: it takes 1024 messages at a time, and packed enums
    # 2^14 varints at a time (values of 1, 2, 5 and 10 bytes here); as written, or rewritten.
    if not fast:
        monkeypatch.setattr(events, "_as_written", lambda *args: None)
    rng = np.random.default_rng(5)
    books = [random_book(rng) for _ in range(2100)]
    assert_same(pb.MarketEvent(book_update=pb.OrderBooks(books=books)).SerializeToString())
    sides = np.array([1, 2, 300, -1, 2**31 - 1, -(2**31)], dtype=np.int32)
    trades = [pb.Trades(symbol=f"S{i}", aggressors=rng.choice(sides, size=12000).tolist()) for i in range(3)]
    trades.insert(1, pb.Trades(symbol="none"))
    assert_same(pb.MarketEvent(trades=pb.TradeBatch(trades=trades)).SerializeToString())


# -- the disagreements the writer found, one by one

BOOK = (
    key(1, LEN) + varint(1) + b"A" + key(2, VARINT) + varint(5) + length_delimited(4, struct.pack("<d", 2.5))
)
TRADES = (
    key(1, LEN)
    + varint(1)
    + b"T"
    + length_delimited(3, struct.pack("<d", 1.5))
    + length_delimited(5, b"\x02")
)
SNAPSHOT = pb.PriceSnapshot(prices=[pb.SymbolPrice(symbol="A", price=1.5)]).SerializeToString()

# Every kind of message the readers walk themselves, as an event with ``extra`` (whole fields)
# added to that message.
PLACES = {
    "event": lambda extra: (
        extra + key(1, VARINT) + varint(3) + length_delimited(8, length_delimited(1, BOOK))
    ),
    "timestamp": lambda extra: (
        length_delimited(2, extra + key(1, VARINT) + varint(9)) + length_delimited(8, b"")
    ),
    "books": lambda extra: length_delimited(8, extra + length_delimited(1, BOOK)),
    "book": lambda extra: length_delimited(8, length_delimited(1, BOOK + extra)),
    "trades": lambda extra: length_delimited(10, length_delimited(1, TRADES + extra)),
    "replaced arm": lambda extra: (
        length_delimited(3, extra + SNAPSHOT) + length_delimited(9, length_delimited(1, BOOK))
    ),
}


def parses(data: bytes) -> bool:
    try:
        pb.MarketEvent.FromString(data)
    except Exception:  # the generated parser's own error type
        return False
    return True


def padded(value: int, size: int) -> bytes:
    """``value`` as a varint of ``size`` bytes: empty 7-bit groups after its own."""
    raw = varint(value)
    if size == len(raw):
        return raw
    return raw[:-1] + bytes([raw[-1] | 0x80]) + b"\x80" * (size - len(raw) - 1) + b"\x00"


def assert_refused(data: bytes) -> None:
    assert not parses(data)
    with pytest.raises(DecodeError):
        decode_market_event(data)


@pytest.mark.parametrize("place", PLACES)
def test_keys_of_up_to_5_bytes_are_read_and_longer_or_larger_ones_refused(place):
    # Keys of 6 bytes and more, and keys from 2^32 up (field numbers from 2^29), were read as
    # unknown fields; protobuf refuses both.
    write = PLACES[place]
    data = write(padded(15 << 3 | VARINT, 5) + varint(1))
    assert parses(data)
    assert_same(data)
    assert_refused(write(padded(15 << 3 | VARINT, 6) + varint(1)))
    assert_refused(write(varint(2**32) + varint(1)))


@pytest.mark.parametrize(
    "data, count",
    [
        (length_delimited(8, padded(0x0A, 2) + varint(len(BOOK)) + BOOK), 1),  # was skipped: no book
        (length_delimited(10, padded(0x0A, 5) + varint(len(TRADES)) + TRADES), 1),  # no trades
        (length_delimited(8, length_delimited(1, padded(0x22, 3) + varint(8) + struct.pack("<d", 7.5))), 1),
        (length_delimited(10, length_delimited(1, padded(0x2A, 4) + varint(2) + b"\x01\x02")), 1),
        (padded(0x42, 5) + varint(0) + padded(0x12, 2) + varint(4) + padded(0x08, 3) + varint(4), 0),
    ],
    ids=["book", "trades", "bid-prices", "aggressors", "arm-and-timestamp"],
)
def test_fields_under_longer_keys_are_read(data, count):
    assert parses(data)
    assert_same(data)
    decoded = decode_market_event(data)
    assert len(decoded.books if decoded.trades is None else decoded.trades) == count


@pytest.mark.parametrize("place", PLACES)
def test_lengths_of_up_to_5_bytes_are_read_and_longer_ones_refused(place):
    # Protobuf refuses a length of more than 5 bytes, which the readers read.
    write = PLACES[place]
    data = write(key(14, LEN) + padded(1, 5) + b"x")
    assert parses(data)
    assert_same(data)
    assert_refused(write(key(14, LEN) + padded(1, 6) + b"x"))


@pytest.mark.parametrize(
    "write",
    [
        lambda size: key(8, LEN) + padded(len(BOOK) + 2, size) + length_delimited(1, BOOK),  # an arm
        lambda size: length_delimited(8, key(1, LEN) + padded(len(BOOK), size) + BOOK),  # a book
        lambda size: length_delimited(8, length_delimited(1, key(4, LEN) + padded(8, size) + bytes(8))),
        lambda size: length_delimited(10, length_delimited(1, key(1, LEN) + padded(1, size) + b"T")),
        lambda size: key(2, LEN) + padded(2, size) + key(1, VARINT) + varint(9),  # the timestamp
    ],
    ids=["arm", "book", "packed-doubles", "symbol", "timestamp"],
)
def test_lengths_of_known_fields_of_up_to_5_bytes_are_read_and_longer_ones_refused(write):
    assert parses(write(5))
    assert_same(write(5))
    assert_refused(write(6))


CUT_BOOK = length_delimited(1, BOOK)
CUT_TRADES = length_delimited(1, TRADES)


@pytest.mark.parametrize(
    "data",
    [
        length_delimited(8, CUT_BOOK[:3]) + length_delimited(8, CUT_BOOK[3:]),
        length_delimited(10, CUT_TRADES[:5]) + length_delimited(10, CUT_TRADES[5:]),
        length_delimited(7, CUT_BOOK[:2]) + length_delimited(7, CUT_BOOK[2:]) + length_delimited(8, CUT_BOOK),
        length_delimited(3, SNAPSHOT[:4]) + length_delimited(3, SNAPSHOT[4:]) + length_delimited(8, CUT_BOOK),
        length_delimited(2, key(1, VARINT)) + length_delimited(2, varint(5)) + length_delimited(8, CUT_BOOK),
    ],
    ids=["books", "trades", "replaced-books", "replaced-snapshot", "timestamp"],
)
def test_a_message_cut_across_two_occurrences_of_its_field_is_refused(data):
    # Protobuf reads each occurrence of a message field on its own before merging them; the
    # readers joined the occurrences first, and read a message cut in two as whole.
    assert_refused(data)


def test_occurrences_cut_at_the_edges_of_messages_are_merged():
    # The same occurrences, cut between messages instead, are read (and merged) as protobuf does.
    books = CUT_BOOK + length_delimited(1, b"")
    for data in (
        length_delimited(8, books[: len(CUT_BOOK)]) + length_delimited(8, books[len(CUT_BOOK) :]),
        length_delimited(2, key(1, VARINT) + varint(5)) + length_delimited(2, key(2, VARINT) + varint(6)),
    ):
        assert parses(data)
        assert_same(data)
    assert len(decode_market_event(length_delimited(8, CUT_BOOK) * 3).books) == 3


def nested_groups(levels: int) -> bytes:
    return key(95, SGROUP) * levels + key(95, EGROUP) * levels


@pytest.mark.parametrize("place", PLACES)
def test_groups_nested_as_deep_as_protobuf_allows_are_read_and_deeper_ones_refused(place):
    # Groups were skipped by recursion: any depth up to Python's recursion limit read (protobuf
    # stops at some 100 levels, counting the messages around them), and deeper ones raised
    # RecursionError. A replaced arm was checked on its own, one level shallower than in the event.
    write = PLACES[place]
    deepest = next(levels for levels in range(1, 200) if not parses(write(nested_groups(levels + 1))))
    assert 50 < deepest < 150  # protobuf's own limit, less the messages around
    for levels in (1, deepest, deepest + 1, 5000):
        assert_same(write(nested_groups(levels)))


def test_events_with_groups_give_any_exchange_time_the_wire_carries():
    # Seconds beyond year 9999, which Timestamp.ToNanoseconds refuses, and nanos out of range.
    stamp = key(1, VARINT) + signed_varint(-(2**40)) + key(2, VARINT) + signed_varint(-7)
    data = length_delimited(2, stamp) + nested_groups(2) + length_delimited(10, length_delimited(1, TRADES))
    assert_same(data)
    assert decode_market_event(data).exchange_time_ns == -(2**40) * 10**9 - 7


# -- memory

MEMORY_CASES = {
    "enums of a byte": length_delimited(10, length_delimited(1, length_delimited(5, b"\x01" * 2**21))),
    "enums of 5 bytes": length_delimited(
        10, length_delimited(1, length_delimited(5, b"\x81\x80\x80\x80\x01" * 2**18))
    ),
    "enums mixed": length_delimited(
        10, length_delimited(1, length_delimited(5, (b"\x01" * 99 + b"\x81\x01") * 2**14))
    ),
    "enums unpacked": length_delimited(10, length_delimited(1, (key(5, VARINT) + b"\x01") * 2**15)),
    "doubles unpacked": length_delimited(10, length_delimited(1, (key(3, I64) + bytes(8)) * 2**13)),
    "empty books": length_delimited(8, length_delimited(1, b"") * 2**15),
    "empty books and a group": key(3, SGROUP)
    + key(3, EGROUP)
    + length_delimited(8, length_delimited(1, b"") * 2**15),
}


@pytest.mark.parametrize("case", MEMORY_CASES)
def test_reading_holds_a_few_times_what_comes_in_and_goes_out(case):
    # What the readers allocate (as tracemalloc sees it: numpy's arrays and Python's objects, not
    # the C parser's own) at its peak, against the bytes read plus the columns made. Reading
    # packed enums took some 45 bytes a byte (scratch arrays of 8 bytes a byte), unpacked values
    # a memoryview each (200 bytes), and empty books 80 bytes of bytes.join bookkeeping per array.
    data = MEMORY_CASES[case]
    tracemalloc.start()
    try:
        decoded = decode_market_event(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    columns = decoded.books if decoded.trades is None else decoded.trades
    made = sum(
        column.nbytes
        for column in (*vars(columns).values(), *columns.offsets.values())
        if hasattr(column, "nbytes")
    )
    made += 8 * len(columns)  # the symbols (the same empty string, referred to once per message)
    assert peak < 5 * (len(data) + made), (peak, len(data), made)
