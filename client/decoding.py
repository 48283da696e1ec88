"""Price replies decoded straight into numpy arrays, and streamed chunks joined back into a path.

The packed ``prices`` field of a price message is a run of little-endian
float64 bytes, read with one ``numpy.frombuffer`` instead of one Python float
per element; timestamps, quotes, sizes, bars and trades are packed 8-byte
runs too (a trade's aggressor a run of one-byte varints).

The reader here reads only the form the serializers write: each array in one
packed run, each sub-message once, keys and lengths within protobuf's limits,
unknown fields other than groups (skipped). Bytes in any other form (an array
split or unpacked, a sub-message in two occurrences, a group, a key or length
written long, ...) or not well formed are parsed by the generated class,
which decides what they mean and whether they are well formed (DecodeError
when not); its rewrite of them, without unknown fields, is read instead. So
any bytes read as the generated class's ``FromString`` reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Self, TypeVar

import numpy as np

from marketdata.v1 import market_data_pb2

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_LITTLE_F8 = np.dtype("<f8")
_LITTLE_I8 = np.dtype("<i8")
_LITTLE_U8 = np.dtype("<u8")
_EMPTY = np.empty(0, dtype=np.float64)
_EMPTY.flags.writeable = False
_EMPTY_I8 = np.empty(0, dtype=np.int64)
_EMPTY_I8.flags.writeable = False
_EMPTY_U8 = np.empty(0, dtype=np.uint64)
_EMPTY_U8.flags.writeable = False


class DecodeError(ValueError):
    """The bytes are not a valid protobuf message."""


class _Unusual(Exception):
    """Bytes the reader leaves to the generated class: in a form the serializers never write,
    or not well formed."""


def _read_varint(data: bytes, pos: int, longest: int = 10) -> tuple[int, int]:
    """The varint at ``pos`` (its low 64 bits, as protobuf keeps them) and the position after it.
    _Unusual when it is longer than ``longest`` bytes or cut off."""
    if pos < len(data) and data[pos] < 0x80:  # keys and most values: one byte
        return data[pos], pos + 1
    result = 0
    for at in range(pos, min(pos + longest, len(data))):
        byte = data[at]
        result |= (byte & 0x7F) << 7 * (at - pos)
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, at + 1
    raise _Unusual("a varint too long or cut off")


def _frozen(values: np.ndarray) -> np.ndarray:
    if not values.dtype.isnative:  # a big-endian host: convert to native order
        values = values.astype(values.dtype.newbyteorder("="))
    values.flags.writeable = False  # read-only however it arrived, as documented
    return values


def _enums(data: bytes) -> np.ndarray:
    """A packed run of enum varints as protobuf keeps them, each the low 32 bits of its varint as
    an int32 (widened to int64 here). One numpy read when every value fits one byte, as Side
    values do; otherwise a few thousand varints at a time, with no Python object per value."""
    raw = np.frombuffer(data, dtype=np.uint8)
    last = raw < 0x80  # the last byte of each varint
    if last.all():
        return raw.astype(np.int64)
    if not last[-1]:
        raise _Unusual("packed varints end inside one")
    stops = np.flatnonzero(last)
    del last
    values = np.empty(len(stops), dtype=np.int64)
    for first in range(0, len(stops), _VARINTS_AT_ONCE):
        block = stops[first : first + _VARINTS_AT_ONCE]
        starts = np.concatenate((stops[first - 1 : first] + 1 if first else [0], block[:-1] + 1))
        if (block - starts).max() >= 10:
            raise _Unusual("a varint longer than 10 bytes")
        low = np.zeros(len(block), dtype=np.uint32)
        for i in range(5):  # 5 bytes of 7 bits hold the low 32 bits (the uint32 drops the rest)
            at = starts + i
            bits = (raw[np.minimum(at, block)] & 0x7F).astype(np.uint32) << np.uint32(7 * i)
            low |= np.where(at <= block, bits, np.uint32(0))
        values[first : first + len(block)] = low.view(np.int32)
    return values


_VARINTS_AT_ONCE = 1 << 14
_LONGEST_LENGTH = 2**31 - 2  # the longest a length-delimited field protobuf reads can be


class _Layout:
    """The fields of one message: number -> (name, kind, dtype), and read-only empty arrays for
    the arrays a message leaves out.

    Kinds (from ``fields``, which maps number -> (name, kind)): an 8-byte numpy dtype (a packed
    repeated double, sfixed64 or fixed64, read as a view of the bytes: kind "array"), "uint" (a
    varint, the last wins), "varints" (a packed repeated enum, as int64), "string" (the last
    wins), "strings" (repeated), "message" (the bytes of a sub-message).
    """

    def __init__(self, fields: dict[int, tuple[str, str | np.dtype]]) -> None:
        self.fields: dict[int, tuple[str, str, np.dtype | None]] = {}
        self.empty: dict[str, np.ndarray] = {}
        for number, (name, kind) in fields.items():
            if isinstance(kind, np.dtype):
                self.fields[number] = (name, "array", kind)
                self.empty[name] = _frozen(np.empty(0, dtype=kind))
            else:
                self.fields[number] = (name, kind, None)
                if kind == "varints":
                    self.empty[name] = _frozen(np.empty(0, dtype=np.int64))


def _decode(data: bytes, layout: _Layout) -> dict[str, object]:
    """Read the fields of one message as the serializers write it (see _Layout): arrays as
    read-only views of ``data``; unknown fields other than groups skipped. _Unusual for any other
    form, or for bytes not well formed."""
    found: dict[str, object] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos, 5)
        number, wire_type = key >> 3, key & 7
        if not 0 < number < 2**29:
            raise _Unusual("a field number of 0 or past 2^29 - 1")
        name, kind, dtype = layout.fields.get(number, _UNKNOWN)
        if wire_type == _VARINT and kind in ("uint", None):
            value, pos = _read_varint(data, pos)
            if kind == "uint":
                found[name] = value
        elif wire_type in (_I64, _I32) and kind is None:
            pos += 8 if wire_type == _I64 else 4
            if pos > end:
                raise _Unusual("a fixed-size value cut off")
        elif wire_type == _LEN and kind != "uint":
            length, pos = _read_varint(data, pos, 5)
            if length > min(end - pos, _LONGEST_LENGTH):
                raise _Unusual("a length past the end")
            start, pos = pos, pos + length
            if kind is None:
                continue
            if kind in ("string", "strings"):
                try:
                    text = data[start:pos].decode("utf-8")
                except UnicodeDecodeError as err:
                    raise _Unusual("a string that is not UTF-8") from err
                if kind == "string":
                    found[name] = text
                else:
                    found.setdefault(name, []).append(text)
            elif name in found:
                raise _Unusual("an array or sub-message in more than one occurrence")
            elif kind == "message":
                found[name] = data[start:pos]
            elif kind == "varints":
                found[name] = _frozen(_enums(data[start:pos]))
            elif length % 8:
                raise _Unusual("packed 8-byte values of a length that is not a multiple of 8")
            else:
                found[name] = _frozen(np.frombuffer(data, dtype=dtype, count=length // 8, offset=start))
        else:  # a group, an invalid wire type, or a known field with a wire type not its own
            raise _Unusual("a field in a form the serializers never write")
    return {**layout.empty, **found}


_UNKNOWN = (None, None, None)


def _rewritten(message: type, data: bytes) -> bytes:
    """``data`` as the generated class ``message`` reads it, written again by its serializer
    without unknown fields; DecodeError when it refuses ``data``."""
    try:
        parsed = message.FromString(data)
    except Exception as err:  # the generated parser's own error type
        raise DecodeError(f"malformed {message.DESCRIPTOR.name}") from err
    parsed.DiscardUnknownFields()
    return parsed.SerializeToString()


_T = TypeVar("_T")


def _read(message: type, read: Callable[[bytes], _T], data: bytes) -> _T:
    """``read(data)``; when it meets bytes it leaves to the generated class, ``read`` of their
    rewrite (see the module docstring)."""
    try:
        return read(data)
    except _Unusual:
        return read(_rewritten(message, data))


class _Parallel:
    """Parallel arrays, a dataclass's fields, one entry per row: their length, and parts
    joined field by field."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    @classmethod
    def concatenate(cls, parts: Sequence[Self]) -> Self:
        """The rows of ``parts`` one after the other, field by field."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


@dataclass(frozen=True)
class Bars(_Parallel):
    """OHLCV bars as parallel arrays, named as the fields of marketdata.v1.Bars.

    ``start_time`` is in UTC nanoseconds since the epoch; ``volume`` is unsigned.
    """

    start_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def empty(cls) -> Bars:
        """No bars: read-only empty arrays of each field's type."""
        return decode_bars(b"")


_BAR_FIELDS = _Layout(
    {
        f.number: (
            f.name,
            _LITTLE_U8 if f.name == "volume" else _LITTLE_I8 if f.name == "start_time" else _LITTLE_F8,
        )
        for f in market_data_pb2.Bars.DESCRIPTOR.fields
    }
)


def _bars(data: bytes) -> Bars:
    return Bars(**_decode(data, _BAR_FIELDS))


def decode_bars(data: bytes) -> Bars:
    """A serialized marketdata.v1.Bars (empty arrays for empty bytes)."""
    return _read(market_data_pb2.Bars, _bars, data)


@dataclass(frozen=True)
class PathTrades(_Parallel):
    """A path's trade prints as parallel arrays, named as the fields of marketdata.v1.Trades:
    ``trade_ids`` (period x 64 + index in the period, unsigned), ``prices``, ``sizes`` in lots
    (unsigned), ``aggressors`` (1 BUY, 2 SELL, as marketdata.v1.Side), ``times`` (UTC ns,
    empty when the request has no time). A print's period is ``trade_ids // 64``."""

    trade_ids: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    aggressors: np.ndarray
    times: np.ndarray

    @property
    def periods(self) -> np.ndarray:
        """The period of each print."""
        return self.trade_ids // 64


_TRADE_KINDS = {
    "symbol": "string",
    "trade_ids": _LITTLE_U8,
    "prices": _LITTLE_F8,
    "sizes": _LITTLE_U8,
    "aggressors": "varints",
    "times": _LITTLE_I8,
}
_TRADE_FIELDS = _Layout(
    {f.number: (f.name, _TRADE_KINDS[f.name]) for f in market_data_pb2.Trades.DESCRIPTOR.fields}
)


def _path_trades(data: bytes) -> PathTrades:
    found = _decode(data, _TRADE_FIELDS)
    found.pop("symbol", None)
    return PathTrades(**found)


def decode_path_trades(data: bytes) -> PathTrades:
    """A serialized marketdata.v1.Trades of a path (empty arrays for empty bytes)."""
    return _read(market_data_pb2.Trades, _path_trades, data)


_KINDS = {
    "prices": _LITTLE_F8,
    "offset": "uint",
    "seed": "uint",
    "symbol": "string",
    "timestamps": _LITTLE_I8,
    "bid": _LITTLE_F8,
    "ask": _LITTLE_F8,
    "bars": "message",
    "symbols": "strings",
    "bid_size": _LITTLE_U8,
    "ask_size": _LITTLE_U8,
    "trades": "message",
}


def _fields(message: type) -> _Layout:
    return _Layout({f.number: (f.name, _KINDS[f.name]) for f in message.DESCRIPTOR.fields})


_PATH = _fields(market_data_pb2.Prices)
_CHUNK = _fields(market_data_pb2.PriceChunk)
# GbmPrices and GbmPriceChunk are the first fields of Prices and PriceChunk: one decoder serves both.
assert all(_PATH.fields[n] == v for n, v in _fields(market_data_pb2.GbmPrices).fields.items())
assert all(_CHUNK.fields[n] == v for n, v in _fields(market_data_pb2.GbmPriceChunk).fields.items())


@dataclass(frozen=True)
class PricePath:
    """A whole path: ``prices[0]`` is the start price; ``seed`` replays it.

    With several instruments (``symbols`` set) ``prices`` has one column per
    symbol. ``timestamps`` (UTC ns), ``bid``, ``ask`` and ``bars`` are empty
    unless the request asked for them; with bars, ``prices`` is empty. With a
    book, ``bid_size`` and ``ask_size`` (lots, unsigned) are the sizes at the
    bid and ask, and ``trades`` the prints (None unless asked for).
    """

    prices: np.ndarray
    seed: int
    symbol: str
    timestamps: np.ndarray = field(default_factory=lambda: _EMPTY_I8)
    bid: np.ndarray = field(default_factory=lambda: _EMPTY)
    ask: np.ndarray = field(default_factory=lambda: _EMPTY)
    bars: Bars | None = None
    symbols: tuple[str, ...] = ()
    bid_size: np.ndarray = field(default_factory=lambda: _EMPTY_U8)
    ask_size: np.ndarray = field(default_factory=lambda: _EMPTY_U8)
    trades: PathTrades | None = None


@dataclass(frozen=True)
class PriceChunk(PricePath):
    """A consecutive piece of a streamed path, starting at period ``offset``."""

    offset: int = 0


def _common(found: dict[str, object]) -> dict[str, object]:
    symbols = tuple(found.get("symbols", ()))
    prices = found["prices"]
    if symbols:
        if len(prices) % len(symbols):
            raise DecodeError(f"{len(prices)} prices do not make rows of {len(symbols)} symbols")
        prices = prices.reshape(-1, len(symbols))
    return {
        "prices": prices,
        "seed": found.get("seed", 0),
        "symbol": found.get("symbol", ""),
        "timestamps": found["timestamps"],
        "bid": found["bid"],
        "ask": found["ask"],
        "bars": _bars(found["bars"]) if "bars" in found else None,
        "symbols": symbols,
        "bid_size": found["bid_size"],
        "ask_size": found["ask_size"],
        "trades": _path_trades(found["trades"]) if "trades" in found else None,
    }


def _prices(data: bytes) -> PricePath:
    return PricePath(**_common(_decode(data, _PATH)))


def _price_chunk(data: bytes) -> PriceChunk:
    found = _decode(data, _CHUNK)
    return PriceChunk(**_common(found), offset=found.get("offset", 0))


def decode_prices(data: bytes) -> PricePath:
    """A serialized Prices or GbmPrices as a PricePath (arrays read-only)."""
    return _read(market_data_pb2.Prices, _prices, data)


def decode_price_chunk(data: bytes) -> PriceChunk:
    """A serialized PriceChunk or GbmPriceChunk as a PriceChunk (arrays read-only)."""
    return _read(market_data_pb2.PriceChunk, _price_chunk, data)


def join(chunks: Iterable[PriceChunk]) -> PricePath:
    """One PricePath from a stream's chunks (in order), as GetPrices would have sent it."""
    parts = list(chunks)
    if not parts:
        raise ValueError("no chunks to join")
    first = parts[0]
    bars = [c.bars for c in parts if c.bars is not None]
    trades = [c.trades for c in parts if c.trades is not None]
    return PricePath(
        prices=np.concatenate([c.prices for c in parts]),
        seed=first.seed,
        symbol=first.symbol,
        timestamps=np.concatenate([c.timestamps for c in parts]),
        bid=np.concatenate([c.bid for c in parts]),
        ask=np.concatenate([c.ask for c in parts]),
        bars=Bars.concatenate(bars) if bars else None,
        symbols=first.symbols,
        bid_size=np.concatenate([c.bid_size for c in parts]),
        ask_size=np.concatenate([c.ask_size for c in parts]),
        trades=PathTrades.concatenate(trades) if trades else None,
    )


def as_datetime64(nanoseconds: np.ndarray) -> np.ndarray:
    """UTC nanoseconds since the epoch (timestamps, bar start times) as numpy datetime64[ns] values."""
    return np.asarray(nanoseconds).astype("datetime64[ns]")
