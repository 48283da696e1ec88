"""The numpy-native wire path agrees with the generated protobuf classes, byte for byte."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from client.decoding import (
    DecodeError,
    decode_price_chunk,
    decode_prices,
)
from marketdata.v1 import market_data_pb2
from server.limits import MAX_PRICES_PER_MESSAGE
from server.sim.bars import Bars as ServerBars
from server.sim.paths import Block, Prints
from server.wire import PathEncoder, ProtobufPathEncoder, varint

Chunk = market_data_pb2.GbmPriceChunk
Path = market_data_pb2.GbmPrices


def encode_gbm_prices(prices: np.ndarray, seed: int, symbol: str) -> bytes:
    """A GbmPrices reply as the server writes it."""
    return PathEncoder(Path, seed, symbol).encode(Block(0, len(prices), prices))


def encode_chunk(prices: np.ndarray, offset: int, seed: int, symbol: str) -> bytes:
    """A GbmPriceChunk as the server writes it."""
    return PathEncoder(Chunk, seed, symbol).encode(Block(offset, len(prices), prices))


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
        fast = encode_chunk(prices, offset, seed, symbol)
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
    mine = decode_price_chunk(data)
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
    data = UNKNOWN_FIELDS[unknown] + encode_chunk(prices, 4, 7, "S") + UNKNOWN_FIELDS[unknown]
    _same_chunk(decode_price_chunk(data), Chunk.FromString(data))


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
    mine, theirs = decode_price_chunk(data), Chunk.FromString(data)
    _same_chunk(mine, theirs)
    assert mine.prices.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (mine.seed, mine.symbol) == (12, "last")


def test_unpacked_prices_are_accepted():
    data = b"".join(_key(1, 1) + struct.pack("<d", p) for p in (3.0, 1.0, 2.0)) + _key(2, 0) + varint(9)
    mine, theirs = decode_prices(data), Path.FromString(data)
    assert mine.prices.tolist() == list(theirs.prices) == [3.0, 1.0, 2.0]
    assert mine.seed == theirs.seed == 9


def test_empty_message_decodes_to_defaults():
    chunk = decode_price_chunk(b"")
    assert chunk.prices.shape == (0,)
    assert (chunk.offset, chunk.seed, chunk.symbol) == (0, 0, "")


def test_decoded_prices_are_read_only_views():
    data = encode_gbm_prices(np.array([1.0, 2.0]), 1, "")
    path = decode_prices(data)
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
        decode_price_chunk(data)
    with pytest.raises(Exception):  # noqa: B017 - the generated parser's own error type
        Chunk.FromString(data)


def test_market_events_equal_the_generated_serializer_and_are_encoded_once():
    from google.protobuf import timestamp_pb2

    from server.sim.market import MarketTick
    from server.wire import TickEncoding

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


# --- Prices and PriceChunk: timestamps, quotes, bars and symbols ---------------------------------

# One timestamp per period: before the epoch, the int64 extremes, and an ordinary instant.
TIMESTAMPS = np.array([-(2**63), -(2**62) - 7, -1, 0, 1_772_809_200_123_456_789, 2**63 - 1], dtype=np.int64)
PERIODS = len(TIMESTAMPS)
SYMBOLS_CASES = {"no-symbols": (), "one-symbol": ("AAPL",), "symbols": ("", "ÉURO/€", "株式", "B")}
# (seed, symbol, offset): all zero, so proto3 leaves them out, or all at their largest.
HEADERS = {"zero-header": (0, "", 0), "full-header": (2**64 - 1, "ÉURO/€ 株", 10**12)}
EXTRA_MESSAGES = {"Prices": market_data_pb2.Prices, "PriceChunk": market_data_pb2.PriceChunk}


def _server_bars(n: int, seed: int = 3) -> ServerBars:
    """``n`` bars whose start times reach the int64 extremes and volumes the fixed64 maximum."""
    rng = np.random.default_rng(seed)
    close = rng.lognormal(size=n)
    start = np.sort(rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64, endpoint=True))
    volume = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    if n > 1:
        start[[0, -1]] = [-(2**63), 2**63 - 1]
    extremes = np.array([0, 2**63, 2**64 - 2, 2**64 - 1], dtype=np.uint64)  # around int64 and fixed64 limits
    k = min(n, len(extremes))
    volume[n - k :] = extremes[len(extremes) - k :]
    return ServerBars(start, close * 0.99, close * 1.02, close * 0.97, close, volume)


BARS_CASES = {"no-bars": None, "zero-bars": 0, "one-bar": 1, "many-bars": 500}


def _block(
    prices: str, stamped: bool, quoted: bool, bars: str, symbols: tuple[str, ...], offset: int
) -> Block:
    columns = max(1, len(symbols))
    values = np.random.default_rng(4).lognormal(size=PERIODS * columns) if prices == "values" else np.empty(0)
    n_bars = BARS_CASES[bars]
    return Block(
        offset,
        PERIODS,
        values,
        timestamps=TIMESTAMPS if stamped else None,
        bid=values - 0.25 if quoted else None,
        ask=values + 0.5 if quoted else None,
        bars=None if n_bars is None else _server_bars(n_bars),
    )


def _generated(message: type, block: Block, seed: int, symbol: str, symbols: tuple[str, ...]):
    """The message the generated class builds from the same inputs (no bars field for zero bars)."""
    generated = message(prices=block.prices.tolist(), seed=seed, symbol=symbol, symbols=list(symbols))
    if "offset" in message.DESCRIPTOR.fields_by_name:
        generated.offset = block.offset
    if block.timestamps is not None:
        generated.timestamps.extend(int(t) for t in block.timestamps)
    if block.bid is not None:
        generated.bid.extend(block.bid.tolist())
        generated.ask.extend(block.ask.tolist())
    if block.bars is not None and len(block.bars):
        bars = block.bars
        generated.bars.start_time.extend(int(t) for t in bars.start_time)
        for name in ("open", "high", "low", "close"):
            getattr(generated.bars, name).extend(getattr(bars, name).tolist())
        generated.bars.volume.extend(int(v) for v in bars.volume)
    return generated


EXTRAS_CASES = pytest.mark.parametrize(
    "prices, stamped, quoted, bars, symbols, header",
    [
        (prices, stamped, quoted, bars, symbols, header)
        for prices in ("values", "no-prices")
        for stamped in (False, True)
        for quoted in (False, True)
        for bars in BARS_CASES
        for symbols in SYMBOLS_CASES
        for header in HEADERS
    ],
)


@pytest.mark.parametrize("kind", EXTRA_MESSAGES)
@EXTRAS_CASES
def test_path_encoder_bytes_equal_the_generated_serializer(
    kind, prices, stamped, quoted, bars, symbols, header
):
    message = EXTRA_MESSAGES[kind]
    seed, symbol, offset = HEADERS[header]
    names = SYMBOLS_CASES[symbols]
    block = _block(prices, stamped, quoted, bars, names, offset)
    fast = PathEncoder(message, seed, symbol, names).encode(block)
    expected = _generated(message, block, seed, symbol, names)
    assert fast == expected.SerializeToString()
    parsed = message.FromString(fast)
    assert parsed.HasField("bars") == (block.bars is not None and len(block.bars) > 0)
    assert list(parsed.symbols) == list(names)


@pytest.mark.parametrize("name", PRICE_CASES)
@pytest.mark.parametrize("kind", ["GbmPrices", "GbmPriceChunk"])
@pytest.mark.parametrize("header", HEADERS)
def test_path_encoder_of_plain_blocks_equals_the_generated_gbm_serializer(name, kind, header):
    message = getattr(market_data_pb2, kind)
    seed, symbol, offset = HEADERS[header]
    prices = PRICE_CASES[name]
    fast = PathEncoder(message, seed, symbol).encode(Block(offset, len(prices), prices))
    expected = message(prices=prices, seed=seed, symbol=symbol)
    if kind == "GbmPriceChunk":
        expected.offset = offset
    assert fast == expected.SerializeToString()


def _assert_array(mine: np.ndarray, expected: np.ndarray, dtype: type) -> None:
    """Same dtype, shape and bytes (so -0.0, infinities and int extremes compare exactly)."""
    assert mine.dtype == dtype
    assert mine.shape == expected.shape
    assert mine.tobytes() == np.ascontiguousarray(expected, dtype=dtype).tobytes()


def _same_as_generated(mine, theirs) -> None:
    """A decoded PricePath/PriceChunk holds what the generated parser read from the same bytes."""
    symbols = tuple(theirs.symbols)
    prices = np.array(theirs.prices, dtype=np.float64)
    _assert_array(mine.prices, prices.reshape(-1, len(symbols)) if symbols else prices, np.float64)
    _assert_array(mine.timestamps, np.array(theirs.timestamps, dtype=np.int64), np.int64)
    _assert_array(mine.bid, np.array(theirs.bid, dtype=np.float64), np.float64)
    _assert_array(mine.ask, np.array(theirs.ask, dtype=np.float64), np.float64)
    assert (mine.seed, mine.symbol, mine.symbols) == (theirs.seed, theirs.symbol, symbols)
    if hasattr(theirs, "offset"):
        assert mine.offset == theirs.offset
    assert (mine.bars is not None) == theirs.HasField("bars")
    if mine.bars is not None:
        _assert_array(mine.bars.start_time, np.array(theirs.bars.start_time, dtype=np.int64), np.int64)
        for name in ("open", "high", "low", "close"):
            _assert_array(getattr(mine.bars, name), np.array(getattr(theirs.bars, name)), np.float64)
        _assert_array(mine.bars.volume, np.array(theirs.bars.volume, dtype=np.uint64), np.uint64)


DECODERS = {"Prices": decode_prices, "PriceChunk": decode_price_chunk}


@pytest.mark.parametrize("kind", EXTRA_MESSAGES)
@EXTRAS_CASES
def test_decoding_gives_back_the_encoded_arrays(kind, prices, stamped, quoted, bars, symbols, header):
    message = EXTRA_MESSAGES[kind]
    seed, symbol, offset = HEADERS[header]
    names = SYMBOLS_CASES[symbols]
    block = _block(prices, stamped, quoted, bars, names, offset)
    data = PathEncoder(message, seed, symbol, names).encode(block)
    mine = DECODERS[kind](data)

    shape = (-1, len(names)) if names else (-1,)
    _assert_array(mine.prices, block.prices.reshape(shape), np.float64)
    empty = np.empty(0)
    _assert_array(mine.timestamps, TIMESTAMPS if stamped else empty, np.int64)
    _assert_array(mine.bid, block.bid if quoted else empty, np.float64)
    _assert_array(mine.ask, block.ask if quoted else empty, np.float64)
    assert (mine.seed, mine.symbol, mine.symbols) == (seed, symbol, names)
    if kind == "PriceChunk":
        assert mine.offset == offset
    if block.bars is None or len(block.bars) == 0:
        assert mine.bars is None
    else:
        assert len(mine.bars) == len(block.bars)
        _assert_array(mine.bars.start_time, block.bars.start_time, np.int64)
        for name in ("open", "high", "low", "close"):
            _assert_array(getattr(mine.bars, name), getattr(block.bars, name), np.float64)
        _assert_array(mine.bars.volume, block.bars.volume, np.uint64)
    arrays = [mine.prices, mine.timestamps, mine.bid, mine.ask]
    if mine.bars is not None:
        arrays += [mine.bars.start_time, mine.bars.open, mine.bars.volume]
    assert not any(a.flags.writeable for a in arrays)

    _same_as_generated(mine, message.FromString(data))


def test_gbm_messages_decode_with_the_general_decoders():
    prices = PRICE_CASES["special-values"]
    path = encode_gbm_prices(prices, 5, "S")
    chunk = encode_chunk(prices, 9, 6, "T")
    _same_as_generated(decode_prices(path), market_data_pb2.Prices.FromString(path))
    _same_as_generated(decode_price_chunk(chunk), market_data_pb2.PriceChunk.FromString(chunk))
    assert decode_price_chunk(chunk).offset == 9


def _bars_message(bars: ServerBars, part: slice = slice(None), names=None):
    """A generated Bars holding ``part`` of each array named in ``names`` (default: all)."""
    arrays = {
        "start_time": bars.start_time,
        "open": bars.open,
        "high": bars.high,
        "low": bars.low,
        "close": bars.close,
        "volume": bars.volume,
    }
    return market_data_pb2.Bars(
        **{
            name: [v.item() for v in values[part]]
            for name, values in arrays.items()
            if names is None or name in names
        }
    )


@pytest.mark.parametrize("kind", EXTRA_MESSAGES)
@pytest.mark.parametrize("split", ["each-array-split", "arrays-in-different-occurrences"])
def test_bars_split_over_two_occurrences_decode_to_their_concatenation(kind, split):
    message = EXTRA_MESSAGES[kind]
    bars_number = message.DESCRIPTOR.fields_by_name["bars"].number
    symbol_number = message.DESCRIPTOR.fields_by_name["symbol"].number
    bars = _server_bars(7)
    if split == "each-array-split":
        first, second = _bars_message(bars, slice(0, 3)), _bars_message(bars, slice(3, None))
    else:
        first = _bars_message(bars, names={"start_time", "high", "volume"})
        second = _bars_message(bars, names={"open", "low", "close"})
    data = b"".join(
        [
            _len_field(bars_number, first.SerializeToString()),
            _len_field(symbol_number, b"between"),
            _len_field(bars_number, second.SerializeToString()),
        ]
    )
    mine, theirs = DECODERS[kind](data), message.FromString(data)
    _same_as_generated(mine, theirs)
    assert mine.symbol == "between"
    _assert_array(mine.bars.start_time, bars.start_time, np.int64)
    _assert_array(mine.bars.open, bars.open, np.float64)
    _assert_array(mine.bars.close, bars.close, np.float64)
    _assert_array(mine.bars.volume, bars.volume, np.uint64)


def test_an_empty_bars_submessage_is_bars_with_no_entries():
    data = _len_field(7, b"")
    mine, theirs = decode_prices(data), market_data_pb2.Prices.FromString(data)
    assert theirs.HasField("bars")
    assert mine.bars is not None and len(mine.bars) == 0
    _same_as_generated(mine, theirs)


@pytest.mark.parametrize("kind", EXTRA_MESSAGES)
def test_unpacked_timestamps_are_accepted(kind):
    message = EXTRA_MESSAGES[kind]
    number = message.DESCRIPTOR.fields_by_name["timestamps"].number
    unpacked = b"".join(_key(number, 1) + struct.pack("<q", t) for t in TIMESTAMPS[:4].tolist())
    packed = _len_field(number, TIMESTAMPS[4:].tobytes())  # runs of both kinds append in order
    data = unpacked + packed
    mine, theirs = DECODERS[kind](data), message.FromString(data)
    _same_as_generated(mine, theirs)
    _assert_array(mine.timestamps, TIMESTAMPS, np.int64)


def test_unpacked_bar_times_and_volumes_are_accepted():
    bars = _server_bars(4)
    payload = b"".join(
        [*(_key(1, 1) + struct.pack("<q", t) for t in bars.start_time.tolist())]
        + [*(_key(6, 1) + struct.pack("<Q", v) for v in bars.volume.tolist())]
    )
    data = _len_field(7, payload)
    mine, theirs = decode_prices(data), market_data_pb2.Prices.FromString(data)
    _same_as_generated(mine, theirs)
    _assert_array(mine.bars.start_time, bars.start_time, np.int64)
    _assert_array(mine.bars.volume, bars.volume, np.uint64)


@pytest.mark.parametrize("kind", EXTRA_MESSAGES)
@pytest.mark.parametrize(
    "n_prices, symbols_before, symbols_after",
    [
        (4, ("A", "B", "C"), ()),
        (1, ("A", "B"), ()),
        (4, ("A", "B"), ("C",)),  # every symbols entry counts, wherever it is
        (3, ("",), ("€",)),
    ],
)
def test_prices_that_do_not_fill_rows_of_symbols_are_refused(kind, n_prices, symbols_before, symbols_after):
    message = EXTRA_MESSAGES[kind]
    numbers = message.DESCRIPTOR.fields_by_name
    data = b"".join(
        [
            *(_len_field(numbers["symbols"].number, s.encode()) for s in symbols_before),
            _len_field(numbers["prices"].number, np.arange(float(n_prices)).tobytes()),
            *(_len_field(numbers["symbols"].number, s.encode()) for s in symbols_after),
        ]
    )
    assert len(message.FromString(data).prices) == n_prices  # a valid message, but no table
    with pytest.raises(DecodeError):
        DECODERS[kind](data)


@pytest.mark.parametrize("n_symbols", [1, 2, 3])
def test_prices_that_fill_rows_of_symbols_take_one_column_per_symbol(n_symbols):
    symbols = ("A", "B€", "")[:n_symbols]
    prices = np.arange(6.0)
    block = Block(0, 6 // n_symbols, prices)
    data = PathEncoder(market_data_pb2.Prices, 1, "", symbols).encode(block)
    path = decode_prices(data)
    assert path.prices.shape == (6 // n_symbols, n_symbols)
    assert path.prices[:, -1].tolist() == prices[n_symbols - 1 :: n_symbols].tolist()
    empty = decode_prices(PathEncoder(market_data_pb2.Prices, 1, "", symbols).encode(Block(0, 0, prices[:0])))
    assert empty.prices.shape == (0, n_symbols)


def test_arrays_decoded_from_several_runs_are_read_only_too():
    data = _key(1, 1) + struct.pack("<d", 1.0) + _key(1, 1) + struct.pack("<d", 2.0)
    path = decode_prices(data)
    assert path.prices.tolist() == [1.0, 2.0]
    assert not path.prices.flags.writeable


# --- Prices and PriceChunk: a book's sizes and trades ---------------------------------------------


def _prints(count: int, stamped: bool) -> Prints:
    """``count`` prints with ids, lots and times up to their types' extremes, both aggressors."""
    rng = np.random.default_rng(8)
    ids = np.sort(rng.integers(0, 2**62, size=count, dtype=np.int64))
    times = np.sort(rng.integers(-(2**63), 2**63 - 1, size=count, dtype=np.int64, endpoint=True))
    if count:
        ids[-1], times[[0, -1]] = 2**63 - 1, [-(2**63), 2**63 - 1]
    return Prints(
        ids,
        rng.lognormal(size=count),
        rng.integers(1, 2**40, size=count, dtype=np.int64),
        rng.choice(np.array([1, 2], dtype=np.int8), size=count),
        times if stamped else None,
    )


# (sizes at the quotes, prints: None for none asked, else how many, stamped with times)
BOOK_CASES = {
    "sizes": (True, None, False),
    "trades": (False, 40, False),
    "no-prints": (False, 0, False),
    "both-with-times": (True, 40, True),
}


def _book_block(book: str, offset: int) -> Block:
    sizes, prints, stamped = BOOK_CASES[book]
    values = np.random.default_rng(4).lognormal(size=PERIODS)
    lots = np.array([1, 10, 2**31, 2**40, 0, 7], dtype=np.int64)  # 0: a period out of the book's range
    return Block(
        offset,
        PERIODS,
        values,
        timestamps=TIMESTAMPS if stamped else None,
        bid=values - 0.25,
        ask=values + 0.5,
        bid_size=lots if sizes else None,
        ask_size=lots[::-1].copy() if sizes else None,
        trades=None if prints is None else _prints(prints, stamped),
    )


@pytest.mark.parametrize("kind", EXTRA_MESSAGES)
@pytest.mark.parametrize("book", BOOK_CASES)
@pytest.mark.parametrize("header", HEADERS)
def test_a_books_sizes_and_trades_are_the_generated_serializers_bytes_and_decode_back(kind, book, header):
    message = EXTRA_MESSAGES[kind]
    seed, symbol, offset = HEADERS[header]
    block = _book_block(book, offset)
    fast = PathEncoder(message, seed, symbol).encode(block)
    assert fast == ProtobufPathEncoder(message, seed, symbol).encode(block)
    parsed = message.FromString(fast)
    assert parsed.HasField("trades") == (block.trades is not None)  # present even with no prints
    mine = DECODERS[kind](fast)
    empty = np.empty(0)
    _assert_array(mine.bid_size, block.bid_size if block.bid_size is not None else empty, np.uint64)
    _assert_array(mine.ask_size, block.ask_size if block.ask_size is not None else empty, np.uint64)
    assert (mine.trades is None) == (block.trades is None)
    if block.trades is not None:
        t = block.trades
        _assert_array(mine.trades.trade_ids, t.ids, np.uint64)
        _assert_array(mine.trades.prices, t.prices, np.float64)
        _assert_array(mine.trades.sizes, t.sizes, np.uint64)
        _assert_array(mine.trades.aggressors, t.aggressors, np.int64)
        _assert_array(mine.trades.times, t.times if t.times is not None else empty, np.int64)
        assert np.array_equal(mine.trades.periods, t.ids // 64)
        assert list(mine.trades.trade_ids) == list(parsed.trades.trade_ids)
        assert list(mine.trades.aggressors) == list(parsed.trades.aggressors)
        assert not mine.trades.trade_ids.flags.writeable


def test_trades_decode_from_any_encoding_the_generated_parser_accepts():
    # Aggressors unpacked, one of them an enum value this client does not know (a negative
    # one is ten bytes long); the trades field twice, which protobuf merges into one.
    tag = varint((5 << 3) | 0)
    first = market_data_pb2.Trades(trade_ids=[64, 65], prices=[1.5, 1.25], sizes=[3, 4]).SerializeToString()
    first += tag + varint(1) + tag + varint(2**64 - 3)  # -3 as an int32 enum
    second = market_data_pb2.Trades(trade_ids=[128], prices=[1.75], sizes=[9], aggressors=[2], times=[5])
    second_bytes = second.SerializeToString()
    key = varint((market_data_pb2.Prices.DESCRIPTOR.fields_by_name["trades"].number << 3) | 2)
    data = b"".join(key + varint(len(part)) + part for part in (first, second_bytes))
    theirs = market_data_pb2.Prices.FromString(data).trades
    mine = decode_prices(data).trades
    assert mine.trade_ids.tolist() == list(theirs.trade_ids) == [64, 65, 128]
    assert mine.aggressors.tolist() == list(theirs.aggressors) == [1, -3, 2]
    assert mine.sizes.tolist() == list(theirs.sizes) and mine.times.tolist() == list(theirs.times) == [5]
    assert mine.prices.tolist() == list(theirs.prices)
