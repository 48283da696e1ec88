"""Order books, trades and candles of the live feed, serialized once per tick.

As ``wire.TickEncoding`` does for prices, ``DepthEncoding`` encodes what a
tick brings, lazily and once: each symbol's book at each depth asked for
(whole, or as the levels changed since the last published tick), its trades
and its forming candles, then each distinct subscription's events, shared by
every subscriber asking for the same. Packed arrays are written with
struct from a book's short lists and straight from numpy for trades; the
bytes are what the protobuf classes would write.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Sequence

import numpy as np
from google.protobuf import timestamp_pb2

from marketdata.v1 import market_data_pb2 as pb

from .sim.book import Book, LevelChange, Side, Trades, side_changes
from .sim.depth import CANDLE_INTERVALS, Candle, DepthTick, Tape
from .wire import encode_trades, market_event, message_field, string_field, uint_field, varint


def _numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


_BOOK = _numbers(pb.OrderBook)
_EVENT = _numbers(pb.MarketEvent)
_LIST = 1  # OrderBooks.books, TradeBatch.trades, CandleBatch.candles
assert _numbers(pb.OrderBooks)["books"] == _numbers(pb.TradeBatch)["trades"] == _LIST
assert _numbers(pb.CandleBatch)["candles"] == _LIST
assert list(_BOOK.values()) == sorted(_BOOK.values())

EVENT_BOOK_SNAPSHOT = _EVENT["book_snapshot"]
EVENT_BOOK_UPDATE = _EVENT["book_update"]
EVENT_TOP_OF_BOOK = _EVENT["top_of_book"]
EVENT_TRADES = _EVENT["trades"]
EVENT_CANDLES = _EVENT["candles"]

# A tick's books (or trades, or candles) come in as many events of one kind as keep each
# under this size: whole books of every symbol of a large market at depth 50 would pass gRPC's
# 4 MiB in one. One book at depth 50 is under 2 kB, so every entry fits.
MAX_EVENT_BYTES = 1 << 20

# The proto's Side of the model's aggressor (+1 buy, -1 sell); each value one varint byte.
_SIDE_BYTES = {int(Side.BUY): pb.BUY, int(Side.SELL): pb.SELL}
# Candle intervals by the data type that subscribes to them, by name, and by the enum of requests.
CANDLE_NAMES = {pb.CANDLES_1S: "1s", pb.CANDLES_1M: "1m"}
CANDLE_ENUMS = {"1s": pb.CANDLE_INTERVAL_1S, "1m": pb.CANDLE_INTERVAL_1M}
CANDLE_INTERVAL_NAMES = {enum: name for name, enum in CANDLE_ENUMS.items()}
assert set(CANDLE_ENUMS) == set(CANDLE_INTERVALS)


def _packed_list(key: bytes, values: list, code: str) -> bytes:
    """A packed repeated field of 8-byte values from a short list (struct beats numpy there)."""
    if not values:
        return b""
    payload = struct.pack(f"<{len(values)}{code}", *values)
    return key + varint(len(payload)) + payload


_KEYS = {name: varint((number << 3) | 2) for name, number in _BOOK.items()}


def book_payload(
    symbol: str,
    sequence: int,
    previous: int,
    depth: int,
    bids: tuple[list[float], list[int]],
    asks: tuple[list[float], list[int]],
) -> bytes:
    """One serialized OrderBook, its levels as lists."""
    n, k = _BOOK, _KEYS
    return b"".join(
        [
            string_field(n["symbol"], symbol),
            uint_field(n["sequence"], sequence),
            uint_field(n["previous_sequence"], previous),
            _packed_list(k["bid_prices"], bids[0], "d"),
            _packed_list(k["bid_sizes"], bids[1], "Q"),
            _packed_list(k["ask_prices"], asks[0], "d"),
            _packed_list(k["ask_sizes"], asks[1], "Q"),
            uint_field(n["depth"], depth),
        ]
    )


def whole_book(symbol: str, book: Book, depth: int) -> bytes:
    """A serialized OrderBook of every level of ``book`` to ``depth``."""
    return book_payload(symbol, book.sequence, 0, depth, *_lists(book, depth))


def _lists(book: Book, depth: int) -> tuple[tuple[list[float], list[int]], tuple[list[float], list[int]]]:
    """The bids and asks of ``book`` to ``depth`` as (prices, sizes) lists."""
    return (
        (book.bid_prices[:depth].tolist(), book.bid_sizes[:depth].tolist()),
        (book.ask_prices[:depth].tolist(), book.ask_sizes[:depth].tolist()),
    )


def _prices_and_sizes(changes: list[LevelChange]) -> tuple[list[float], list[int]]:
    """One side's level changes as the (prices, sizes) lists book_payload writes."""
    return [c.price for c in changes], [c.size for c in changes]


def book_message(symbol: str, book: Book, depth: int) -> pb.OrderBook:
    """A book as a protobuf OrderBook (unary replies)."""
    return pb.OrderBook.FromString(whole_book(symbol, book, depth))


def trades_entry(symbol: str, trades: Trades, time_ns: int) -> bytes:
    """One instrument's prints of one tick as an entry of TradeBatch.trades."""
    return message_field(
        _LIST,
        trades_payload(
            symbol, trades.ids, trades.prices, trades.sizes, trades.sides, [time_ns] * len(trades)
        ),
    )


def trades_payload(
    symbol: str,
    ids: Sequence[int],
    prices: Sequence[float],
    sizes: Sequence[int],
    sides: Sequence[int],
    times: Sequence[int],
) -> bytes:
    """A serialized Trades message from parallel sequences (sides as the model's +1/-1)."""
    return encode_trades(
        np.asarray(ids),
        np.asarray(prices),
        np.asarray(sizes),
        bytes(_SIDE_BYTES[int(s)] for s in sides),
        np.asarray(times, dtype=np.int64),
        symbol,
    )


_CANDLE = _numbers(pb.Candle)
_STAMP = _numbers(timestamp_pb2.Timestamp)
assert list(_CANDLE.values()) == sorted(_CANDLE.values())
_PRICES = ("open", "high", "low", "close")
_START = operator.attrgetter("start_ns")
_LOTS = operator.attrgetter("volume", "count")
_OHLC = operator.attrgetter(*_PRICES)
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_TEN = np.arange(10)


def _varint_columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value (uint64; an int64 negative is ten bytes, as protobuf writes it) as varint
    bytes: a row as wide as the longest, and which of its bytes belong to each value."""
    values = values.view(np.uint64) if values.dtype == np.int64 else values
    widest = max(1, (int(values.max()).bit_length() + 6) // 7) if len(values) else 1
    shifts = _SHIFTS[:widest]
    groups = (values[:, None] >> shifts) & np.uint64(0x7F)
    width = 1 + np.count_nonzero((values[:, None] >> shifts[1:]) != 0, axis=1)
    more = _TEN[:widest] < (width - 1)[:, None]
    return (groups | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8), _TEN[:widest] < width[
        :, None
    ]


def _constant(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The same bytes in each of ``count`` rows, all of them kept."""
    return np.tile(np.frombuffer(data, dtype=np.uint8), (count, 1)), np.ones((count, len(data)), dtype=bool)


def _tagged(number: int, wire_type: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    return _constant(varint(number << 3 | wire_type), count)


def candles_payload(number: int, symbol: str, interval: str, candles: Sequence[Candle]) -> bytes:
    """Field ``number`` of a message, repeated, holding ``candles`` as serialized pb.Candle
    messages: the bytes protobuf writes (each field in number order, zeros left out), made for
    every candle at once (a message per candle costs some 7 us; a reply holds up to 20,000)."""
    count = len(candles)
    if not count:
        return b""
    starts = np.fromiter(map(_START, candles), dtype=np.int64, count=count)
    lots = np.fromiter(itertools.chain.from_iterable(map(_LOTS, candles)), dtype=np.uint64, count=2 * count)
    prices = np.fromiter(
        itertools.chain.from_iterable(map(_OHLC, candles)), dtype=np.float64, count=4 * count
    )
    prices = prices.reshape(count, 4)
    seconds, nanos = np.divmod(starts, 1_000_000_000)
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # each candle's fields, columns of bytes and masks

    def scalar(field: int, values: np.ndarray) -> None:
        present = values != 0
        if not present.any():  # left out of every candle
            return
        key, key_mask = _tagged(field, 0, count)
        value, value_mask = _varint_columns(values)
        parts.extend([(key, key_mask & present[:, None]), (value, value_mask & present[:, None])])

    prefix = string_field(_CANDLE["symbol"], symbol) + uint_field(_CANDLE["interval"], CANDLE_ENUMS[interval])
    parts.append(_constant(prefix, count))
    stamp_at = len(parts)
    scalar(_STAMP["seconds"], seconds)
    scalar(_STAMP["nanos"], nanos)
    stamp_length = sum(mask.sum(axis=1) for _, mask in parts[stamp_at:])
    stamp_key = _tagged(_CANDLE["start_time"], 2, count)
    parts[stamp_at:stamp_at] = [stamp_key, _varint_columns(stamp_length)]  # the Timestamp is always set
    for column, name in enumerate(_PRICES):
        bits = prices[:, column].view(np.uint64)
        present = (bits != 0)[:, None]  # -0.0 is written, as protobuf writes it
        key, key_mask = _tagged(_CANDLE[name], 1, count)
        value = np.ascontiguousarray(prices[:, column]).astype("<f8").view(np.uint8).reshape(count, 8)
        parts.extend([(key, key_mask & present), (value, np.broadcast_to(present, (count, 8)))])
    scalar(_CANDLE["volume"], lots[0::2])
    scalar(_CANDLE["trade_count"], lots[1::2])
    length = sum(mask.sum(axis=1) for _, mask in parts)
    parts[0:0] = [_tagged(number, 2, count), _varint_columns(length)]
    data = np.concatenate([columns for columns, _ in parts], axis=1)
    mask = np.concatenate([np.broadcast_to(m, columns.shape) for columns, m in parts], axis=1)
    return data[mask].tobytes()


def candle_message(symbol: str, interval: str, candle: Candle) -> pb.Candle:
    message = pb.Candle(
        symbol=symbol,
        interval=CANDLE_ENUMS[interval],
        open=candle.open,
        high=candle.high,
        low=candle.low,
        close=candle.close,
        volume=candle.volume,
        trade_count=candle.count,
    )
    message.start_time.FromNanoseconds(candle.start_ns)
    return message


# What a subscription asks of the books and trades: per data type, its symbols' market
# positions (and, for ORDER_BOOK, each one's depth), in the order subscribed. Hashable, so
# subscribers asking the same share one encoding.
DataKey = tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...]


class DepthEncoding:
    """One tick's books, trades and candles, serialized once per distinct request."""

    def __init__(
        self,
        depth: DepthTick,
        previous: DepthTick | None,
        symbols: tuple[str, ...],
        time: bytes,
        time_ns: int,
        tape: Tape,
    ) -> None:
        self.sequence = depth.sequence
        self._depth, self._previous, self._symbols = depth, previous, symbols
        self._time, self._time_ns, self._tape = time, time_ns, tape
        self._events: dict[tuple[DataKey, bool], list[bytes]] = {}
        self._entries: dict[tuple, bytes] = {}  # (what, position, depth or interval) -> entry

    def _entry(self, what: str, position: int, arg: object) -> bytes:
        key = (what, position, arg)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = getattr(self, what)(position, arg)
        return entry

    def _whole(self, position: int, depth: int) -> bytes:
        return message_field(_LIST, whole_book(self._symbols[position], self._depth.book(position), depth))

    def _update(self, position: int, depth: int) -> bytes:
        """The changed levels at ``depth`` since the last published tick (perhaps none)."""
        new, old = self._depth.book(position), self._previous.book(position)
        (new_bids, new_asks), (old_bids, old_asks) = _lists(new, depth), _lists(old, depth)
        bids = _prices_and_sizes(side_changes(Side.BUY, *old_bids, *new_bids))
        asks = _prices_and_sizes(side_changes(Side.SELL, *old_asks, *new_asks))
        # An entry even when nothing changed: each symbol's book sequence moves with every
        # update, so a client checks previous_sequence against the last one it applied.
        payload = book_payload(self._symbols[position], new.sequence, old.sequence, depth, bids, asks)
        return message_field(_LIST, payload)

    def _trades(self, position: int, _: object = None) -> bytes:
        trades = self._depth.trades[position]
        if trades is None or not len(trades):
            return b""
        return trades_entry(self._symbols[position], trades, self._time_ns)

    def _candle(self, position: int, interval: str) -> bytes:
        trades = self._depth.trades[position]
        candle = self._tape.forming(position, interval)
        if trades is None or not len(trades) or candle is None:
            return b""
        return message_field(
            _LIST, candle_message(self._symbols[position], interval, candle).SerializeToString()
        )

    def events(self, key: DataKey, snapshot: bool) -> list[bytes]:
        """The events of this tick for a subscription asking ``key``; with ``snapshot``, whole
        books instead of changes (a new subscription, or one that skipped ticks)."""
        cached = self._events.get((key, snapshot))
        if cached is not None:
            return cached
        out = []
        for kind, positions, depths in key:
            out += self._events_of(kind, positions, depths, snapshot)
        self._events[key, snapshot] = out
        return out

    def _events_of(
        self, kind: int, positions: tuple[int, ...], depths: tuple[int, ...], snapshot: bool
    ) -> list[bytes]:
        if kind in (pb.TOP_OF_BOOK, pb.ORDER_BOOK):  # books not computed yet: in one batch
            self._depth.prepare(positions)
        if kind == pb.TOP_OF_BOOK:
            return self._split(EVENT_TOP_OF_BOOK, [self._entry("_whole", p, 1) for p in positions])
        if kind == pb.ORDER_BOOK:
            pairs = zip(positions, depths, strict=True)
            if snapshot or self._previous is None:
                return self._split(EVENT_BOOK_SNAPSHOT, [self._entry("_whole", p, d) for p, d in pairs])
            self._previous.prepare(positions)
            return self._split(EVENT_BOOK_UPDATE, [self._entry("_update", p, d) for p, d in pairs])
        if kind == pb.TRADES:
            return self._split(EVENT_TRADES, [self._entry("_trades", p, None) for p in positions])
        if kind in CANDLE_NAMES:
            return self._split(
                EVENT_CANDLES, [self._entry("_candle", p, CANDLE_NAMES[kind]) for p in positions]
            )
        raise ValueError(f"no events for data type {kind}")

    def _split(self, kind: int, entries: list[bytes]) -> list[bytes]:
        """Events of ``kind`` holding the non-empty ``entries``, as few as keep each under
        MAX_EVENT_BYTES (a market of many symbols at depth 50 would pass gRPC's 4 MiB in one);
        none when every entry is empty."""
        events, part, size = [], [], 0
        for entry in entries:
            if not entry:
                continue
            if part and size + len(entry) > MAX_EVENT_BYTES:
                events.append(market_event(self.sequence, self._time, kind, b"".join(part)))
                part, size = [], 0
            part.append(entry)
            size += len(entry)
        if part:
            events.append(market_event(self.sequence, self._time, kind, b"".join(part)))
        return events

    def snapshot(self, kind: int, positions: tuple[int, ...], depths: tuple[int, ...]) -> list[bytes]:
        """What a new subscription to ``kind`` gets first: whole books (ORDER_BOOK, TOP_OF_BOOK);
        nothing for trades and candles, which come as they happen."""
        if kind in (pb.ORDER_BOOK, pb.TOP_OF_BOOK):
            return self._events_of(kind, positions, depths, snapshot=True)
        return []
