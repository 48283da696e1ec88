"""Price replies decoded straight into numpy arrays, and streamed chunks joined back into a path.

The packed ``prices`` field of a price message is a run of little-endian
float64 bytes, read with one ``numpy.frombuffer`` instead of one Python float
per element; timestamps, quotes, sizes, bars and trades are packed 8-byte
runs too (a trade's aggressor a run of one-byte varints).
Everything a conforming protobuf parser accepts is accepted here and gives
the same values: fields in any order, repeated scalar fields (the last one
wins), arrays split over several packed runs or sent unpacked, unknown
fields of every wire type (skipped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Self

import numpy as np

from marketdata.v1 import market_data_pb2

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_LITTLE_F8 = np.dtype("<f8")
_EMPTY = np.empty(0, dtype=np.float64)
_EMPTY.flags.writeable = False
_EMPTY_I8 = np.empty(0, dtype=np.int64)
_EMPTY_I8.flags.writeable = False
_EMPTY_U8 = np.empty(0, dtype=np.uint64)
_EMPTY_U8.flags.writeable = False


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


_LITTLE_I8 = np.dtype("<i8")
_LITTLE_U8 = np.dtype("<u8")


def _array(runs: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    if not runs:
        empty = np.empty(0, dtype=dtype.newbyteorder("="))
        empty.flags.writeable = False
        return empty
    values = runs[0] if len(runs) == 1 else np.concatenate(runs)
    if not values.dtype.isnative:  # a big-endian host: convert to native order
        values = values.astype(values.dtype.newbyteorder("="))
    values.flags.writeable = False  # read-only however it arrived, as documented
    return values


def _packed_varints(data: bytes) -> np.ndarray:
    """A packed run of varints as int64 (a negative enum's ten bytes read back as negative):
    one numpy read when every value fits one byte, as Side values do."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if not (raw & 0x80).any():
        return raw.astype(np.int64)
    values, pos = [], 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        values.append(value)
    return np.array(values, dtype=np.uint64).view(np.int64)


def _decode(data: bytes, fields: dict[int, tuple[str, str | np.dtype]]) -> dict[str, object]:
    """Read the fields of one message; ``fields`` maps number -> (name, kind).

    Kinds: an 8-byte numpy dtype (a packed or unpacked repeated double,
    sfixed64 or fixed64: read-only views of ``data`` when packed in one run),
    "uint" (varint, the last wins), "varints" (a packed or unpacked repeated
    enum or integer, as int64), "string" (the last wins), "strings"
    (repeated), "message" (occurrences concatenated, which is how protobuf
    merges them). Unknown fields of every wire type are skipped.
    """
    runs: dict[int, list[np.ndarray]] = {
        n: [] for n, (_, kind) in fields.items() if isinstance(kind, np.dtype) or kind == "varints"
    }
    found: dict[str, object] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        name, kind = fields.get(number, (None, None))
        if isinstance(kind, np.dtype) and wire_type in (_LEN, _I64):
            if wire_type == _LEN:
                length, pos = _read_varint(data, pos)
                if length % 8 or pos + length > end:
                    raise DecodeError("packed 8-byte values of a length that is not a multiple of 8")
            else:
                length = 8
                if pos + 8 > end:
                    raise DecodeError("truncated 8-byte value")
            runs[number].append(np.frombuffer(data, dtype=kind, count=length // 8, offset=pos))
            pos += length
        elif kind == "uint" and wire_type == _VARINT:
            found[name], pos = _read_varint(data, pos)
        elif kind == "varints" and wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
            runs[number].append(np.array([value], dtype=np.uint64).view(np.int64))
        elif kind == "varints" and wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise DecodeError("truncated packed varints")
            runs[number].append(_packed_varints(data[pos : pos + length]))
            pos += length
        elif kind in ("string", "strings", "message") and wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise DecodeError("truncated length-delimited field")
            value = data[pos : pos + length]
            pos += length
            if kind == "message":
                found[name] = found.get(name, b"") + value
                continue
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DecodeError("string field is not valid UTF-8") from err
            if kind == "string":
                found[name] = text
            else:
                found.setdefault(name, []).append(text)
        else:
            pos = _skip(data, pos, number, wire_type)
    for number, collected in runs.items():
        name, kind = fields[number]
        found[name] = _array(collected, _VARINTS if kind == "varints" else kind)
    return found


_VARINTS = np.dtype(np.int64)


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


_BAR_FIELDS = {
    f.number: (
        f.name,
        _LITTLE_U8 if f.name == "volume" else _LITTLE_I8 if f.name == "start_time" else _LITTLE_F8,
    )
    for f in market_data_pb2.Bars.DESCRIPTOR.fields
}


def decode_bars(data: bytes) -> Bars:
    """A serialized marketdata.v1.Bars (empty arrays for empty bytes)."""
    return Bars(**_decode(data, _BAR_FIELDS))


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
_TRADE_FIELDS = {f.number: (f.name, _TRADE_KINDS[f.name]) for f in market_data_pb2.Trades.DESCRIPTOR.fields}


def decode_path_trades(data: bytes) -> PathTrades:
    """A serialized marketdata.v1.Trades of a path (empty arrays for empty bytes)."""
    found = _decode(data, _TRADE_FIELDS)
    found.pop("symbol", None)
    return PathTrades(**found)


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


def _fields(message: type) -> dict[int, tuple[str, str | np.dtype]]:
    return {f.number: (f.name, _KINDS[f.name]) for f in message.DESCRIPTOR.fields}


_PATH = _fields(market_data_pb2.Prices)
_CHUNK = _fields(market_data_pb2.PriceChunk)
# GbmPrices and GbmPriceChunk are the first fields of Prices and PriceChunk: one decoder serves both.
assert all(_PATH[n] == v for n, v in _fields(market_data_pb2.GbmPrices).items())
assert all(_CHUNK[n] == v for n, v in _fields(market_data_pb2.GbmPriceChunk).items())


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
        "bars": decode_bars(found["bars"]) if "bars" in found else None,
        "symbols": symbols,
        "bid_size": found["bid_size"],
        "ask_size": found["ask_size"],
        "trades": decode_path_trades(found["trades"]) if "trades" in found else None,
    }


def decode_prices(data: bytes) -> PricePath:
    """A serialized Prices or GbmPrices as a PricePath (arrays read-only)."""
    return PricePath(**_common(_decode(data, _PATH)))


def decode_price_chunk(data: bytes) -> PriceChunk:
    """A serialized PriceChunk or GbmPriceChunk as a PriceChunk (arrays read-only)."""
    found = _decode(data, _CHUNK)
    return PriceChunk(**_common(found), offset=found.get("offset", 0))


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
