"""Price replies from a hostile server: the numpy decoders (client.decoding) against the generated parser.

decode_prices, decode_price_chunk, decode_bars and decode_path_trades must
read any bytes as the generated class's FromString reads them, or refuse them
(DecodeError, nothing else) exactly when it refuses them. A seeded writer
makes Prices and PriceChunk replies as a server set on confusing the client
would (it reuses the MarketEvent writer of test_client_events_hostile for the
wire pieces and the Trades message): keys, lengths and varints longer than
needed, arrays split, unpacked or cut, sub-messages in two occurrences cut
anywhere, unknown fields of every wire type, nested and broken groups, and
now and then bytes changed or cut off. The concrete disagreements it found
are kept as tests of their own below it.
"""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from client import DecodeError, decoding
from client.decoding import decode_bars, decode_path_trades, decode_price_chunk, decode_prices
from marketdata.v1 import market_data_pb2 as pb
from server.wire import varint
from tests.test_client_events import EGROUP, I64, LEN, SGROUP, VARINT, key, length_delimited
from tests.test_client_events_hostile import NOT_UTF8, SYMBOLS, UINTS, HostileWriter, padded
from tests.test_wire import _assert_array, _same_as_generated

DECODERS = {pb.Prices: decode_prices, pb.PriceChunk: decode_price_chunk}


def assert_same(data: bytes, message: type = pb.Prices) -> None:
    """The decoder of ``message`` reads ``data`` as the generated parser does, or refuses it
    likewise; besides, prices that do not make whole rows of the symbols are refused."""
    decode = DECODERS[message]
    try:
        theirs = message.FromString(data)
    except Exception:  # the generated parser's own error type
        with pytest.raises(DecodeError):
            decode(data)
        return
    if theirs.symbols and len(theirs.prices) % len(theirs.symbols):
        with pytest.raises(DecodeError, match="rows"):
            decode(data)
        return
    mine = decode(data)
    _same_as_generated(mine, theirs)  # prices, timestamps, quotes, seed, symbols, offset, bars
    _assert_array(mine.bid_size, np.array(theirs.bid_size, dtype=np.uint64), np.uint64)
    _assert_array(mine.ask_size, np.array(theirs.ask_size, dtype=np.uint64), np.uint64)
    arrays = [mine.prices, mine.timestamps, mine.bid, mine.ask, mine.bid_size, mine.ask_size]
    assert (mine.trades is not None) == theirs.HasField("trades")
    if mine.trades is not None:
        _same_trades(mine.trades, theirs.trades)
        arrays += [getattr(mine.trades, name) for name in ("trade_ids", "prices", "aggressors")]
    if mine.bars is not None:
        arrays += [mine.bars.start_time, mine.bars.close, mine.bars.volume]
    assert not any(array.flags.writeable for array in arrays)


def _same_trades(mine: decoding.PathTrades, theirs: pb.Trades) -> None:
    _assert_array(mine.trade_ids, np.array(theirs.trade_ids, dtype=np.uint64), np.uint64)
    _assert_array(mine.prices, np.array(theirs.prices, dtype=np.float64), np.float64)
    _assert_array(mine.sizes, np.array(theirs.sizes, dtype=np.uint64), np.uint64)
    _assert_array(mine.aggressors, np.array(theirs.aggressors, dtype=np.int64), np.int64)
    _assert_array(mine.times, np.array(theirs.times, dtype=np.int64), np.int64)


def assert_same_part(data: bytes, message: type) -> None:
    """decode_bars or decode_path_trades against the generated Bars or Trades."""
    decode = decode_bars if message is pb.Bars else decode_path_trades
    try:
        theirs = message.FromString(data)
    except Exception:  # the generated parser's own error type
        with pytest.raises(DecodeError):
            decode(data)
        return
    mine = decode(data)
    if message is pb.Trades:
        _same_trades(mine, theirs)
        return
    _assert_array(mine.start_time, np.array(theirs.start_time, dtype=np.int64), np.int64)
    for name in ("open", "high", "low", "close"):
        _assert_array(getattr(mine, name), np.array(getattr(theirs, name), dtype=np.float64), np.float64)
    _assert_array(mine.volume, np.array(theirs.volume, dtype=np.uint64), np.uint64)


class PriceWriter(HostileWriter):
    """Writes Prices and PriceChunk replies (and their Bars and Trades) field by field, as
    HostileWriter writes events: the serializers' choices, and with probability ``odd`` others."""

    def bars(self) -> bytes:
        count = self.pick([0, 0, 1, 3])
        fields = [self.array8(n, count if not self.odd(0.2) else self.pick([0, 1, 2])) for n in range(1, 7)]
        return self.message(fields, list(range(1, 7)))

    def occurrences(self, number: int, payload: bytes) -> list[bytes]:
        """A sub-message field once, or (odd) in two occurrences cut anywhere: at the edge of a
        field, or inside one."""
        if not self.odd(0.5):
            return [self.delimited(number, payload)]
        cut = int(self.rng.integers(len(payload) + 1))
        return [self.delimited(number, payload[:cut]), self.delimited(number, payload[cut:])]

    def reply(self, message: type) -> bytes:
        numbers = {f.name: f.number for f in message.DESCRIPTOR.fields}
        periods = self.pick([0, 1, 2, 5])
        symbols = self.pick([[], [], ["A"], ["A", "B€"], ["", "株式", "X"]])
        prices = periods * max(1, len(symbols))
        fields = [self.array8(numbers["prices"], prices if not self.odd(0.1) else prices + 1)]
        header = [name for name in ("seed", "offset") if name in numbers]
        fields += [self.scalar(numbers[name], self.pick(UINTS)) for name in header]
        fields.append(self.string(numbers["symbol"], self.pick(SYMBOLS)))
        for name in ("timestamps", "bid", "ask", "bid_size", "ask_size"):
            if self.rng.random() < 0.5:
                fields.append(self.array8(numbers[name], periods))
        raw = [s.encode() if not self.odd(0.05) else self.pick(NOT_UTF8) for s in symbols]
        fields.append([self.delimited(numbers["symbols"], s) for s in raw])
        if self.rng.random() < 0.4:
            fields.append(self.occurrences(numbers["bars"], self.bars()))
        if self.rng.random() < 0.4:
            fields.append(self.occurrences(numbers["trades"], self.trades()))
        return self.message(fields, list(numbers.values()))


def test_hostile_replies_read_as_protobuf_reads_them_or_are_refused_likewise(monkeypatch):
    # How each reply was read: by the numpy reader as written, or from the generated class's
    # rewrite; and how many were refused. Each must have had its share, or the writer has
    # stopped reaching it.
    seen = {"as written": 0, "rewritten": 0, "refused": 0}
    rewrites = []
    rewritten = decoding._rewritten

    def counting(message, data):
        rewrites.append(message)
        return rewritten(message, data)

    monkeypatch.setattr(decoding, "_rewritten", counting)
    rng = np.random.default_rng(20240612)
    rounds = 1500
    for i in range(rounds):
        writer = PriceWriter(rng, odd=[0.0, 0.03, 0.1, 0.3][i % 4])
        message = (pb.Prices, pb.PriceChunk)[i % 2]
        data = writer.reply(message)
        if writer.odd(0.3):
            data = writer.spoil(data)
        rewrites.clear()
        assert_same(data, message)
        if not parses(data, message):
            seen["refused"] += 1
        else:
            seen["rewritten" if rewrites else "as written"] += 1
        part, payload = (pb.Bars, writer.bars()) if i % 2 else (pb.Trades, writer.trades())
        assert_same_part(writer.spoil(payload) if writer.odd(0.3) else payload, part)
    assert all(count > rounds // 20 for count in seen.values()), seen


# -- the disagreements the writer found, one by one

BARS = pb.Bars(
    start_time=[5, -7], open=[1.5, 2.5], high=[2, 3], low=[1, 2], close=[1.75, 2], volume=[9, 2**64 - 1]
)
TRADES = pb.Trades(
    symbol="T", trade_ids=[64, 130], prices=[1.5, -0.0], sizes=[3, 4], aggressors=[1, 2], times=[7, 8]
)
REPLY = pb.Prices(prices=[1.0, 2.0], seed=9, symbol="S", timestamps=[1, 2], bars=BARS, trades=TRADES)

# Every message the reader walks, as a reply with ``extra`` (whole fields) added to it.
PLACES = {
    "prices": lambda extra: extra + REPLY.SerializeToString(),
    "chunk": lambda extra: pb.PriceChunk(prices=[3.0], offset=4).SerializeToString() + extra,
    "bars": lambda extra: length_delimited(7, BARS.SerializeToString() + extra),
    "trades": lambda extra: length_delimited(11, extra + TRADES.SerializeToString()),
}


def message_at(place: str) -> type:
    return pb.PriceChunk if place == "chunk" else pb.Prices


def parses(data: bytes, message: type) -> bool:
    try:
        message.FromString(data)
    except Exception:  # the generated parser's own error type
        return False
    return True


def nested_groups(levels: int) -> bytes:
    return key(95, SGROUP) * levels + key(95, EGROUP) * levels


@pytest.mark.parametrize("place", PLACES)
def test_groups_nested_as_deep_as_protobuf_allows_are_read_and_deeper_ones_refused(place):
    # Groups were skipped by recursion: nested deeper than protobuf allows (some 100 levels,
    # counting the messages around them) they were read, and some thousands deep they raised
    # RecursionError.
    write, message = PLACES[place], message_at(place)
    deepest = next(n for n in range(1, 200) if not parses(write(nested_groups(n + 1)), message))
    assert 50 < deepest < 150
    for levels in (1, deepest, deepest + 1, 5000):
        assert_same(write(nested_groups(levels)), message)


@pytest.mark.parametrize("place", PLACES)
def test_keys_of_up_to_5_bytes_are_read_and_longer_or_larger_ones_refused(place):
    # Keys of 6 bytes and more, and keys from 2^32 up, were skipped as unknown fields.
    write, message = PLACES[place], message_at(place)
    assert parses(write(padded(99 << 3 | VARINT, 5) + varint(1)), message)
    for data in (
        write(padded(99 << 3 | VARINT, 5) + varint(1)),
        write(padded(99 << 3 | VARINT, 6) + varint(1)),
        write(varint(2**32 | VARINT) + varint(1)),
    ):
        assert_same(data, message)
    assert not parses(write(padded(99 << 3 | VARINT, 6) + varint(1)), message)


@pytest.mark.parametrize("place", PLACES)
def test_lengths_of_up_to_5_bytes_are_read_and_longer_ones_refused(place):
    # A length written in 6 bytes or more was read; protobuf refuses it.
    write, message = PLACES[place], message_at(place)
    assert parses(write(key(97, LEN) + padded(1, 5) + b"x"), message)
    assert not parses(write(key(97, LEN) + padded(1, 6) + b"x"), message)
    for size in (5, 6):
        assert_same(write(key(97, LEN) + padded(1, size) + b"x"), message)
        assert_same(write(key(1, LEN) + padded(8, size) + struct.pack("<d", 2.5)), message)  # a known field


@pytest.mark.parametrize("number, payload", [(7, BARS), (11, TRADES)], ids=["bars", "trades"])
def test_a_sub_message_cut_across_two_occurrences_of_its_field_is_refused(number, payload):
    # Protobuf reads each occurrence of a message field on its own before merging them; the
    # reader joined the occurrences and read a field cut in two as whole.
    raw = payload.SerializeToString()
    for cut in range(1, len(raw)):
        data = length_delimited(number, raw[:cut]) + length_delimited(number, raw[cut:])
        assert_same(data)
    assert not parses(length_delimited(number, raw[:2]) + length_delimited(number, raw[2:]), pb.Prices)
    whole = length_delimited(number, raw) + length_delimited(number, raw)  # merged: arrays twice
    assert_same(whole)


@pytest.mark.parametrize("value", [2**31, 2**32 - 1, 2**32 + 1, 2**40 + 2, 2**64 - 2**31, 2**64 - 1])
def test_aggressors_are_the_low_32_bits_of_their_varints_as_protobuf_keeps_an_enum(value):
    # The reader kept all 64 bits: 2^32 + 1 came out as 4294967297 where protobuf reads 1.
    payload = varint(1) + varint(value) + varint(2)
    data = length_delimited(11, length_delimited(5, payload))
    assert_same(data)
    assert_same_part(length_delimited(5, payload), pb.Trades)
    assert decode_prices(data).trades.aggressors[1] == np.array(value, dtype=np.uint64).astype(np.int32)


def test_long_runs_of_aggressors_of_every_length_read_as_protobuf_reads_them():
    # More values than the reader takes at a time, of 1 to 10 bytes each.
    rng = np.random.default_rng(3)
    values = rng.choice(np.array([1, 2, 300, 2**21, 2**31 - 1, 2**35 + 5, -1, -(2**31)]), size=40000)
    trades = pb.Trades(aggressors=values.astype(np.int32).tolist()).SerializeToString()
    trades += key(5, VARINT) + padded(2, 10)  # unpacked, and written in 10 bytes
    assert_same(length_delimited(11, trades))


MEMORY_CASES = {
    "aggressors of a byte": length_delimited(11, length_delimited(5, b"\x01" * 2**20)),
    "aggressors of 5 bytes": length_delimited(11, length_delimited(5, b"\x81\x80\x80\x80\x01" * 2**17)),
    "aggressors mixed": length_delimited(11, length_delimited(5, (b"\x01" * 99 + b"\x81\x01") * 2**13)),
    "aggressors unpacked": length_delimited(11, (key(5, VARINT) + b"\x02") * 2**15),
    "prices unpacked": (key(1, I64) + bytes(8)) * 2**13,
    "empty packed runs": length_delimited(1, b"") * 2**15,
}


@pytest.mark.parametrize("case", MEMORY_CASES)
def test_reading_holds_a_few_times_what_comes_in_and_goes_out(case):
    # What the reader allocates at its peak (as tracemalloc sees it: numpy's arrays and Python's
    # objects, not the C parser's own), against the bytes read plus the arrays made. Multi-byte
    # aggressors were a Python int each (some 40 bytes a byte), an unpacked value an array of its
    # own (over 100 bytes), and each packed run a view of its own.
    data = MEMORY_CASES[case]
    tracemalloc.start()
    try:
        path = decode_prices(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    made = path.prices.nbytes + (path.trades.aggressors.nbytes if path.trades is not None else 0)
    assert peak < 3 * (len(data) + made), (peak, len(data), made)


def test_canonical_replies_are_read_without_the_generated_class(monkeypatch):
    # The serializers' own bytes never go through the generated class: arrays are views of them.
    monkeypatch.setattr(decoding, "_rewritten", None)
    data = REPLY.SerializeToString()
    assert_same(data)
    path = decode_prices(data)
    assert path.prices.base is not None and np.shares_memory(path.prices, np.frombuffer(data, np.uint8))
    assert_same(pb.PriceChunk(prices=[1.0], seed=3, symbols=["A"]).SerializeToString(), pb.PriceChunk)
