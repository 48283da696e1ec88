"""The numpy-native wire path agrees with the generated protobuf classes, byte for byte."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from client.wire import DecodeError, decode_gbm_price_chunk, decode_gbm_prices
from marketdata.v1 import market_data_pb2
from server.requests import MAX_PRICES_PER_MESSAGE
from server.wire import ChunkEncoder, encode_gbm_prices, varint

Chunk = market_data_pb2.GbmPriceChunk
Path = market_data_pb2.GbmPrices

SPECIAL = np.array([0.0, -0.0, 1e-310, 5e-324, np.inf, -np.inf, 1.7976931348623157e308, 70.0])

PRICE_CASES = {
    "empty": np.empty(0),
    "one": np.array([70.0]),
    "special-values": SPECIAL,
    "random": np.random.default_rng(1).lognormal(size=1000),
    "largest-chunk": np.random.default_rng(2).lognormal(size=MAX_PRICES_PER_MESSAGE),
}
INT_CASES = [0, 1, 127, 128, 2**32, 2**64 - 1]


@pytest.mark.parametrize("name", PRICE_CASES)
@pytest.mark.parametrize("seed", [0, 2**64 - 1])
@pytest.mark.parametrize("symbol", ["", "AAPL", "ÉURO/€ 株" * 5])
def test_fast_chunk_bytes_equal_the_generated_serializer(name, seed, symbol):
    prices = PRICE_CASES[name]
    for offset in (0, 10**12):
        fast = ChunkEncoder(seed, symbol).encode(prices, offset)
        generated = Chunk(prices=prices, offset=offset, seed=seed, symbol=symbol)
        assert fast == generated.SerializeToString()
        parsed = Chunk.FromString(fast)
        assert np.array(parsed.prices).tobytes() == prices.tobytes()


@pytest.mark.parametrize("name", PRICE_CASES)
@pytest.mark.parametrize("seed", INT_CASES)
def test_fast_path_bytes_equal_the_generated_serializer(name, seed):
    prices = PRICE_CASES[name]
    fast = encode_gbm_prices(prices, seed, "SYM")
    assert fast == Path(prices=prices, seed=seed, symbol="SYM").SerializeToString()


def test_encoder_takes_any_float64_layout():
    base = np.arange(20, dtype=np.float64)
    for view in (base[::2], base.astype(">f8"), base[5:6]):
        assert encode_gbm_prices(view, 1, "") == Path(prices=view.tolist(), seed=1).SerializeToString()


@pytest.mark.parametrize("name", PRICE_CASES)
def test_fast_decoder_agrees_with_the_generated_parser(name):
    prices = PRICE_CASES[name]
    data = Chunk(prices=prices, offset=123, seed=2**64 - 1, symbol="X€").SerializeToString()
    mine = decode_gbm_price_chunk(data)
    theirs = Chunk.FromString(data)
    _same_chunk(mine, theirs)
    assert mine.prices.dtype == np.float64


def _same_chunk(mine, theirs):
    assert mine.prices.tobytes() == np.array(theirs.prices, dtype=np.float64).tobytes()
    assert (mine.offset, mine.seed, mine.symbol) == (theirs.offset, theirs.seed, theirs.symbol)


def _key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + varint(len(payload)) + payload


UNKNOWN_FIELDS = {
    "varint": _key(99, 0) + varint(2**63),
    "fixed64": _key(98, 1) + struct.pack("<d", 1.5),
    "length-delimited": _len_field(97, b"\x00\x01anything"),
    "fixed32": _key(96, 5) + struct.pack("<f", 2.5),
    "group": _key(95, 3) + _key(1, 0) + varint(5) + _key(2, 2) + b"\x01z" + _key(95, 4),
}


@pytest.mark.parametrize("unknown", UNKNOWN_FIELDS)
def test_unknown_fields_are_skipped_like_the_generated_parser_does(unknown):
    prices = np.array([1.0, 2.0, 3.0])
    data = UNKNOWN_FIELDS[unknown] + ChunkEncoder(7, "S").encode(prices, 4) + UNKNOWN_FIELDS[unknown]
    _same_chunk(decode_gbm_price_chunk(data), Chunk.FromString(data))


def test_fields_in_another_order_and_repeated_scalars():
    prices = np.array([1.0, 2.0, 3.0, 4.0])
    data = b"".join(
        [
            _len_field(4, b"first"),
            _key(3, 0) + varint(11),
            _len_field(1, prices[:1].tobytes()),
            _key(2, 0) + varint(5),
            _len_field(1, prices[1:].tobytes()),  # a second packed run appends
            _key(3, 0) + varint(12),  # the last value of a scalar wins
            _len_field(4, b"last"),
        ]
    )
    mine, theirs = decode_gbm_price_chunk(data), Chunk.FromString(data)
    _same_chunk(mine, theirs)
    assert mine.prices.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (mine.seed, mine.symbol) == (12, "last")


def test_unpacked_prices_are_accepted():
    data = b"".join(_key(1, 1) + struct.pack("<d", p) for p in (3.0, 1.0, 2.0)) + _key(2, 0) + varint(9)
    mine, theirs = decode_gbm_prices(data), Path.FromString(data)
    assert mine.prices.tolist() == list(theirs.prices) == [3.0, 1.0, 2.0]
    assert mine.seed == theirs.seed == 9


def test_empty_message_decodes_to_defaults():
    chunk = decode_gbm_price_chunk(b"")
    assert chunk.prices.shape == (0,)
    assert (chunk.offset, chunk.seed, chunk.symbol) == (0, 0, "")


def test_decoded_prices_are_read_only_views():
    data = encode_gbm_prices(np.array([1.0, 2.0]), 1, "")
    path = decode_gbm_prices(data)
    with pytest.raises(ValueError):
        path.prices[0] = 5.0


@pytest.mark.parametrize(
    "data",
    [
        _key(1, 2) + varint(12) + b"\x00" * 12,  # packed doubles, length not a multiple of 8
        _key(1, 2) + varint(16) + b"\x00" * 8,  # truncated packed run
        _key(2, 0) + b"\xff",  # truncated varint
        _key(4, 2) + varint(5) + b"ab",  # truncated string
        _key(4, 2) + varint(2) + b"\xff\xfe",  # symbol not UTF-8
        _key(99, 7),  # no such wire type
        _key(95, 3) + _key(94, 4),  # group closed by another field number
        b"\x80" * 11,  # varint over 10 bytes
    ],
)
def test_malformed_bytes_are_rejected_as_the_generated_parser_does(data):
    with pytest.raises(DecodeError):
        decode_gbm_price_chunk(data)
    with pytest.raises(Exception):  # noqa: B017 - the generated parser's own error type
        Chunk.FromString(data)


def test_market_events_equal_the_generated_serializer_and_are_encoded_once():
    from google.protobuf import timestamp_pb2

    from server.feed import TickEncoding
    from server.market import MarketTick

    tick = MarketTick(sequence=12, simulated_seconds=12.0, prices=np.array([101.25, 0.05, 7.0]))
    encoding = TickEncoding(tick, ("AAA", "BB€", "C"), exchange_time=1_700_000_000.123456789)
    update = encoding.event((2, 0))
    assert encoding.event((2, 0)) is update  # shared by every subscriber of these symbols
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(1_700_000_000.123456789 * 1e9))
    expected = market_data_pb2.MarketEvent(
        sequence=12,
        exchange_time=stamp,
        update=market_data_pb2.PriceUpdate(
            prices=[
                market_data_pb2.SymbolPrice(symbol="C", price=7.0),
                market_data_pb2.SymbolPrice(symbol="AAA", price=101.25),
            ]
        ),
    )
    assert update == expected.SerializeToString()
    heartbeat = market_data_pb2.MarketEvent.FromString(encoding.heartbeat)
    assert heartbeat.WhichOneof("event") == "heartbeat"
    assert heartbeat.sequence == 12
