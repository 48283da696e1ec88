"""Protobuf wire format for price messages, written straight from numpy buffers.

A ``repeated double`` field is encoded packed: one tag, one length, then the
values as little-endian float64 bytes. That is exactly a numpy float64
buffer, so a chunk of any size costs one memory copy and no per-element
Python work. The other fields are encoded as the protobuf library would
(ascending field numbers, zero values omitted), so the bytes are identical to
``SerializeToString()`` of the generated classes and any protobuf peer
parses them.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from marketdata.v1 import market_data_pb2

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
    if len(prices) == 0:
        return []
    payload = np.ascontiguousarray(prices, dtype=_LITTLE_F8).tobytes()
    return [_key(field_number, _LENGTH_DELIMITED), varint(len(payload)), payload]


def uint_field(field_number: int, value: int) -> bytes:
    return _key(field_number, _VARINT) + varint(value) if value else b""


def string_field(field_number: int, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode("utf-8")
    return _key(field_number, _LENGTH_DELIMITED) + varint(len(data)) + data


_PATH_PRICES = _number_of(market_data_pb2.GbmPrices, "prices")
_PATH_SEED = _number_of(market_data_pb2.GbmPrices, "seed")
_PATH_SYMBOL = _number_of(market_data_pb2.GbmPrices, "symbol")
_CHUNK_PRICES = _number_of(market_data_pb2.GbmPriceChunk, "prices")
_CHUNK_OFFSET = _number_of(market_data_pb2.GbmPriceChunk, "offset")
_CHUNK_SEED = _number_of(market_data_pb2.GbmPriceChunk, "seed")
_CHUNK_SYMBOL = _number_of(market_data_pb2.GbmPriceChunk, "symbol")
assert _PATH_PRICES < _PATH_SEED < _PATH_SYMBOL
assert _CHUNK_PRICES < _CHUNK_OFFSET < _CHUNK_SEED < _CHUNK_SYMBOL


def encode_gbm_prices(prices: np.ndarray, seed: int, symbol: str) -> bytes:
    """A serialized marketdata.v1.GbmPrices."""
    return b"".join(
        [
            *packed_doubles(_PATH_PRICES, prices),
            uint_field(_PATH_SEED, seed),
            string_field(_PATH_SYMBOL, symbol),
        ]
    )


class ChunkEncoder:
    """Serializes the GbmPriceChunk messages of one stream; seed and symbol are fixed."""

    def __init__(self, seed: int, symbol: str) -> None:
        self._tail = uint_field(_CHUNK_SEED, seed) + string_field(_CHUNK_SYMBOL, symbol)

    def encode(self, prices: np.ndarray, offset: int) -> bytes:
        """A serialized marketdata.v1.GbmPriceChunk."""
        return b"".join(
            [*packed_doubles(_CHUNK_PRICES, prices), uint_field(_CHUNK_OFFSET, offset), self._tail]
        )


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
