"""Every reply written from numpy: price messages and the live feed's events.

A ``repeated double`` field is encoded packed: one tag, one length, then the
values as little-endian float64 bytes. That is exactly a numpy float64
buffer, so a chunk of any size costs one memory copy and no per-element
Python work. The other fields are encoded as the protobuf library would
(ascending field numbers, zero values omitted), so the bytes are identical to
``SerializeToString()`` of the generated classes and any protobuf peer
parses them.

``ProtobufPathEncoder`` builds the same price messages through the generated
classes instead: the same bytes, slower, kept so the two can be compared
(``--wire protobuf``, make bench).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError, Message

from marketdata.v1 import market_data_pb2

from .sim.bars import Bars
from .sim.market import MarketTick
from .sim.paths import Block, Prints

_LENGTH_DELIMITED = 2
_VARINT = 0
_LITTLE_F8 = np.dtype("<f8")


def varint(value: int) -> bytes:
    """Base-128 varint of an unsigned integer below 2**64."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field_number: int, wire_type: int) -> bytes:
    return varint((field_number << 3) | wire_type)


def _number_of(message: type, name: str) -> int:
    return message.DESCRIPTOR.fields_by_name[name].number


def packed_doubles(field_number: int, prices: np.ndarray) -> list[bytes]:
    """The pieces of a packed repeated double field; nothing for an empty array."""
    return packed(field_number, prices, _LITTLE_F8)


def packed(field_number: int, values: np.ndarray, dtype: np.dtype) -> list[bytes]:
    """A packed repeated field of 8-byte values (double, sfixed64, fixed64); nothing when empty."""
    if len(values) == 0:
        return []
    payload = np.ascontiguousarray(values, dtype=dtype).tobytes()
    return [_key(field_number, _LENGTH_DELIMITED), varint(len(payload)), payload]


def uint_field(field_number: int, value: int) -> bytes:
    return _key(field_number, _VARINT) + varint(value) if value else b""


def string_field(field_number: int, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode("utf-8")
    return _key(field_number, _LENGTH_DELIMITED) + varint(len(data)) + data


_LITTLE_I8 = np.dtype("<i8")
_LITTLE_U8 = np.dtype("<u8")
_BARS = {f.name: f.number for f in market_data_pb2.Bars.DESCRIPTOR.fields}
assert list(_BARS) == ["start_time", "open", "high", "low", "close", "volume"]
assert list(_BARS.values()) == sorted(_BARS.values())


def encode_bars(bars: Bars) -> bytes:
    """A serialized marketdata.v1.Bars from the simulation's Bars."""
    return b"".join(
        [
            *packed(_BARS["start_time"], bars.start_time, _LITTLE_I8),
            *(
                piece
                for name in ("open", "high", "low", "close")
                for piece in packed_doubles(_BARS[name], getattr(bars, name))
            ),
            *packed(_BARS["volume"], bars.volume, _LITTLE_U8),
        ]
    )


_ENCODING_ORDER = (
    "prices",
    "offset",
    "seed",
    "symbol",
    "timestamps",
    "bid",
    "ask",
    "bars",
    "symbols",
    "bid_size",
    "ask_size",
    "trades",
)
_TRADES = {f.name: f.number for f in market_data_pb2.Trades.DESCRIPTOR.fields}
assert list(_TRADES) == ["symbol", "trade_ids", "prices", "sizes", "aggressors", "times"]
assert list(_TRADES.values()) == sorted(_TRADES.values())


def encode_prints(prints: Prints) -> bytes:
    """A serialized marketdata.v1.Trades (no symbol) from a path block's prints."""
    aggressors = np.ascontiguousarray(prints.aggressors, dtype=np.uint8).tobytes()
    return encode_trades(prints.ids, prints.prices, prints.sizes, aggressors, prints.times)


def encode_trades(
    ids: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
    aggressors: bytes,
    times: np.ndarray | None,
    symbol: str = "",
) -> bytes:
    """A serialized marketdata.v1.Trades from parallel arrays; ``aggressors`` one byte each
    (Side numbers below 128: a packed varint each is one byte), ``times`` None for none."""
    return b"".join(
        [
            string_field(_TRADES["symbol"], symbol),
            *packed(_TRADES["trade_ids"], ids, _LITTLE_U8),
            *packed_doubles(_TRADES["prices"], prices),
            *packed(_TRADES["sizes"], sizes, _LITTLE_U8),
            message_field(_TRADES["aggressors"], aggressors) if aggressors else b"",
            *(packed(_TRADES["times"], times, _LITTLE_I8) if times is not None else ()),
        ]
    )


@functools.cache
def _layout(message: type) -> dict[str, int]:
    """Field numbers of a price message, checked to ascend in the order PathEncoder writes them."""
    numbers = {f.name: f.number for f in message.DESCRIPTOR.fields}
    order = [numbers[name] for name in _ENCODING_ORDER if name in numbers]
    assert order == sorted(order), f"{message.__name__} fields are not in the encoding order"
    return numbers


class PathEncoder:
    """Serializes the replies of one request from its blocks (``sim.paths.Block``).

    ``message`` is the reply type: GbmPrices or Prices for a whole path,
    GbmPriceChunk or PriceChunk for a stream. Fields go out in ascending
    number, as the protobuf library writes them, so the bytes are the same.
    """

    def __init__(self, message: type, seed: int, symbol: str, symbols: tuple[str, ...] = ()) -> None:
        self._numbers = numbers = _layout(message)
        self._offset = numbers.get("offset")
        self._fixed = uint_field(numbers["seed"], seed) + string_field(numbers["symbol"], symbol)
        # Every entry of a repeated string is written, empty ones included.
        self._symbols = b"".join(message_field(numbers["symbols"], s.encode("utf-8")) for s in symbols)

    def encode(self, block: Block) -> bytes:
        n = self._numbers
        parts = packed_doubles(n["prices"], block.prices)
        if self._offset is not None:
            parts.append(uint_field(self._offset, block.offset))
        parts.append(self._fixed)
        if block.timestamps is not None:
            parts += packed(n["timestamps"], block.timestamps, _LITTLE_I8)
        if block.bid is not None:
            parts += packed_doubles(n["bid"], block.bid)
            parts += packed_doubles(n["ask"], block.ask)
        if block.bars is not None and len(block.bars):
            parts.append(message_field(n["bars"], encode_bars(block.bars)))
        parts.append(self._symbols)
        if block.bid_size is not None:
            parts += packed(n["bid_size"], block.bid_size, _LITTLE_U8)
            parts += packed(n["ask_size"], block.ask_size, _LITTLE_U8)
        if block.trades is not None:  # present, even empty, whenever asked for
            parts.append(message_field(n["trades"], encode_prints(block.trades)))
        return b"".join(parts)


_I64 = 1


def double_field(field_number: int, value: float) -> bytes:
    # proto3 leaves a 0.0 out; -0.0 is kept, as the protobuf library does.
    if value == 0.0 and math.copysign(1.0, value) > 0:
        return b""
    return _key(field_number, _I64) + struct.pack("<d", value)


def message_field(field_number: int, payload: bytes) -> bytes:
    """A nested message (or any length-delimited value) as field ``field_number``."""
    return _key(field_number, _LENGTH_DELIMITED) + varint(len(payload)) + payload


_SP_SYMBOL = _number_of(market_data_pb2.SymbolPrice, "symbol")
_SP_PRICE = _number_of(market_data_pb2.SymbolPrice, "price")
_LIST_PRICES = _number_of(market_data_pb2.PriceUpdate, "prices")
assert _LIST_PRICES == _number_of(market_data_pb2.PriceSnapshot, "prices")
_EV_SEQUENCE = _number_of(market_data_pb2.MarketEvent, "sequence")
_EV_TIME = _number_of(market_data_pb2.MarketEvent, "exchange_time")
EVENT_SNAPSHOT = _number_of(market_data_pb2.MarketEvent, "snapshot")
EVENT_UPDATE = _number_of(market_data_pb2.MarketEvent, "update")
EVENT_HEARTBEAT = _number_of(market_data_pb2.MarketEvent, "heartbeat")
EVENT_STATUS = _number_of(market_data_pb2.MarketEvent, "status")


def price_entry(symbol: str, price: float) -> bytes:
    """One ``repeated SymbolPrice prices`` entry; entries concatenate into a list."""
    return message_field(_LIST_PRICES, string_field(_SP_SYMBOL, symbol) + double_field(_SP_PRICE, price))


def market_event(sequence: int, exchange_time: bytes, kind: int, entries: bytes) -> bytes:
    """A serialized MarketEvent; ``exchange_time`` is a serialized Timestamp and
    ``entries`` the payload of the ``kind`` field: concatenated price entries of a
    snapshot or update, a serialized SubscriptionStatus, or nothing for a heartbeat."""
    return b"".join(
        [
            uint_field(_EV_SEQUENCE, sequence),
            message_field(_EV_TIME, exchange_time),
            message_field(kind, entries),
        ]
    )


class ProtobufPathEncoder:
    """PathEncoder's replies built with the generated classes: the reference it is compared with."""

    def __init__(self, message: type, seed: int, symbol: str, symbols: tuple[str, ...] = ()) -> None:
        self._message, self._seed, self._symbol, self._symbols = message, seed, symbol, symbols
        self._chunked = "offset" in message.DESCRIPTOR.fields_by_name

    def encode(self, block: Block) -> bytes:
        reply = self._message(prices=block.prices, seed=self._seed, symbol=self._symbol)
        if self._chunked:
            reply.offset = block.offset
        if block.timestamps is not None:
            reply.timestamps[:] = block.timestamps.tolist()
        if block.bid is not None:
            reply.bid[:] = block.bid.tolist()
            reply.ask[:] = block.ask.tolist()
        if block.bars is not None and len(block.bars):
            b = block.bars
            reply.bars.CopyFrom(
                market_data_pb2.Bars(
                    start_time=b.start_time.tolist(),
                    open=b.open,
                    high=b.high,
                    low=b.low,
                    close=b.close,
                    volume=b.volume.tolist(),
                )
            )
        if self._symbols:
            reply.symbols[:] = self._symbols
        if block.bid_size is not None:
            reply.bid_size[:] = block.bid_size.tolist()
            reply.ask_size[:] = block.ask_size.tolist()
        if block.trades is not None:
            t = block.trades
            reply.trades.SetInParent()
            reply.trades.trade_ids[:] = t.ids.tolist()
            reply.trades.prices[:] = t.prices.tolist()
            reply.trades.sizes[:] = t.sizes.tolist()
            reply.trades.aggressors[:] = t.aggressors.tolist()
            if t.times is not None:
                reply.trades.times[:] = t.times.tolist()
        return reply.SerializeToString()


ENCODERS = {"fast": PathEncoder, "protobuf": ProtobufPathEncoder}


@dataclass(frozen=True)
class Undecodable:
    """Request bytes that are not a valid ``message`` (its full name): handed to the
    handler instead of an exception, so the call ends with INVALID_ARGUMENT, not UNKNOWN."""

    message: str


def request_decoder(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """How gRPC turns a request's bytes into ``message``: never raises."""
    name = message.DESCRIPTOR.full_name

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message.FromString(data)
        except (DecodeError, ValueError, RecursionError):
            return Undecodable(name)

    return decode


def exchange_timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A wall time in seconds as the Timestamp every market message carries."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


class TickEncoding:
    """One tick serialized once: each symbol's price entry, and each distinct
    subscription's whole message, shared by every subscriber asking for it.
    Nothing is encoded until a subscriber needs it, so a market nobody
    follows costs no encoding at all."""

    def __init__(self, tick: MarketTick, symbols: tuple[str, ...], exchange_time: float) -> None:
        self.sequence = tick.sequence
        self._tick, self._symbols, self._exchange_time = tick, symbols, exchange_time
        self._messages: dict[tuple[tuple[int, ...], int], bytes] = {}

    @functools.cached_property
    def time(self) -> bytes:
        """The tick's exchange time as a serialized Timestamp."""
        return exchange_timestamp(self._exchange_time).SerializeToString()

    @functools.cached_property
    def _entries(self) -> list[bytes]:
        prices = self._tick.prices.tolist()
        return [price_entry(s, p) for s, p in zip(self._symbols, prices, strict=True)]

    def event(self, positions: tuple[int, ...], kind: int = EVENT_UPDATE) -> bytes:
        key = (positions, kind)
        message = self._messages.get(key)
        if message is None:
            entries = b"".join(self._entries[p] for p in positions)
            message = self._messages[key] = market_event(self.sequence, self.time, kind, entries)
        return message

    @functools.cached_property
    def heartbeat(self) -> bytes:
        """The tick's heartbeat event, encoded once however many subscribers are quiet."""
        return market_event(self.sequence, self.time, EVENT_HEARTBEAT, b"")

    def status(self, payload: bytes) -> bytes:
        """A status event (a serialized SubscriptionStatus) stamped with this tick."""
        return market_event(self.sequence, self.time, EVENT_STATUS, payload)
