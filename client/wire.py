"""Parses price messages straight into numpy arrays.

The packed ``prices`` field of a GbmPrices or GbmPriceChunk is a run of
little-endian float64 bytes, read with one ``numpy.frombuffer`` instead of one
Python float per element. Everything a conforming protobuf parser accepts is
accepted here and gives the same values: fields in any order, repeated
scalar fields (the last one wins), prices split over several packed runs or
sent unpacked, unknown fields of every wire type (skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketdata.v1 import market_data_pb2

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_LITTLE_F8 = np.dtype("<f8")
_EMPTY = np.empty(0, dtype=np.float64)
_EMPTY.flags.writeable = False


class DecodeError(ValueError):
    """The bytes are not a valid protobuf message."""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _skip(data: bytes, pos: int, field_number: int, wire_type: int) -> int:
    """Position after the value of an unknown field."""
    if wire_type == _VARINT:
        return _read_varint(data, pos)[1]
    if wire_type == _I64:
        end = pos + 8
    elif wire_type == _I32:
        end = pos + 4
    elif wire_type == _LEN:
        length, pos = _read_varint(data, pos)
        end = pos + length
    elif wire_type == _SGROUP:
        while True:
            key, pos = _read_varint(data, pos)
            if key & 7 == _EGROUP:
                if key >> 3 != field_number:
                    raise DecodeError("mismatched end of group")
                return pos
            pos = _skip(data, pos, key >> 3, key & 7)
    else:
        raise DecodeError(f"invalid wire type {wire_type}")
    if end > len(data):
        raise DecodeError("truncated field")
    return end


def decode_prices_message(
    data: bytes, prices_field: int, int_fields: dict[int, str], string_field: int
) -> tuple[np.ndarray, dict[str, int], str]:
    """Read a message made of one repeated double, some uint64 and one string field.

    The prices come back as a read-only float64 view of ``data`` when they
    arrived in one packed run (the usual case), else as a new array.
    """
    runs: list[np.ndarray] = []
    ints = dict.fromkeys(int_fields.values(), 0)
    text = b""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if number == prices_field and wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            if length % 8 or pos + length > end:
                raise DecodeError("packed doubles of a length that is not a multiple of 8")
            runs.append(np.frombuffer(data, dtype=_LITTLE_F8, count=length // 8, offset=pos))
            pos += length
        elif number == prices_field and wire_type == _I64:
            if pos + 8 > end:
                raise DecodeError("truncated double")
            runs.append(np.frombuffer(data, dtype=_LITTLE_F8, count=1, offset=pos))
            pos += 8
        elif number in int_fields and wire_type == _VARINT:
            ints[int_fields[number]], pos = _read_varint(data, pos)
        elif number == string_field and wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise DecodeError("truncated string")
            text = data[pos : pos + length]
            pos += length
        else:
            pos = _skip(data, pos, number, wire_type)
    if not runs:
        prices = _EMPTY
    elif len(runs) == 1:
        prices = runs[0]
    else:
        prices = np.concatenate(runs)
    if prices.dtype != np.float64:  # a big-endian host: convert to native order
        prices = prices.astype(np.float64)
    try:
        symbol = text.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError("string field is not valid UTF-8") from err
    return prices, ints, symbol


def _numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


_PATH = _numbers(market_data_pb2.GbmPrices)
_CHUNK = _numbers(market_data_pb2.GbmPriceChunk)
_PATH_INTS = {_PATH["seed"]: "seed"}
_CHUNK_INTS = {_CHUNK["offset"]: "offset", _CHUNK["seed"]: "seed"}


@dataclass(frozen=True)
class PricePath:
    """A whole path: ``prices[0]`` is the start price; ``seed`` replays it."""

    prices: np.ndarray
    seed: int
    symbol: str


@dataclass(frozen=True)
class PriceChunk:
    """A consecutive piece of a streamed path, starting at index ``offset``."""

    prices: np.ndarray
    offset: int
    seed: int
    symbol: str


def decode_gbm_prices(data: bytes) -> PricePath:
    """A serialized marketdata.v1.GbmPrices as a PricePath (prices read-only)."""
    prices, ints, symbol = decode_prices_message(data, _PATH["prices"], _PATH_INTS, _PATH["symbol"])
    return PricePath(prices=prices, seed=ints["seed"], symbol=symbol)


def decode_gbm_price_chunk(data: bytes) -> PriceChunk:
    """A serialized marketdata.v1.GbmPriceChunk as a PriceChunk (prices read-only)."""
    prices, ints, symbol = decode_prices_message(data, _CHUNK["prices"], _CHUNK_INTS, _CHUNK["symbol"])
    return PriceChunk(prices=prices, offset=ints["offset"], seed=ints["seed"], symbol=symbol)
