"""Output writers of get and stream: a path as JSON, CSV or .npy, a chunk at a time.

``Columns`` says what a path's output holds beside its prices (times,
quotes, bars, a basket's symbols) and how each is written; ``PathWriter``
writes the chunks as they come, so a long stream never sits whole in memory.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from typing import IO

import numpy as np

from ..decoding import Bars, PriceChunk, as_datetime64
from .destination import Destination

FORMATS = ("json", "csv", "npy")
# The bars' values after their start time, as the proto orders them; the start time is written as "time".
BAR_VALUES = tuple(f.name for f in fields(Bars) if f.name != "start_time")


def iso_times(nanoseconds: np.ndarray, unit: str) -> list[str]:
    """UTC nanoseconds as ISO 8601 texts to ``unit`` (a numpy datetime unit: "s", "ms", ...)."""
    return [t + "Z" for t in np.datetime_as_string(as_datetime64(nanoseconds), unit=unit)]


@dataclass(frozen=True)
class Columns:
    """What the command line added to the bare path, and how it is written out."""

    time: bool = False
    quotes: bool = False
    bars: bool = False
    time_unit: str = "ms"  # precision of the ISO 8601 times written
    symbols: tuple[str, ...] = ()  # a basket's columns; empty for one instrument

    @property
    def any(self) -> bool:
        return self.time or self.quotes or self.bars

    @property
    def shape_per_period(self) -> tuple[int, ...]:
        return (len(self.symbols),) if self.symbols else ()

    def csv_header(self) -> list[str]:
        if self.bars:
            return ["time", *BAR_VALUES]
        prices = list(self.symbols) or ["price"]
        return ["index", *(["time"] if self.time else []), *prices, *(["bid", "ask"] if self.quotes else [])]

    def format_times(self, chunk: PriceChunk) -> list[str]:
        """The chunk's times (its bars' start times with bars) as ISO 8601 in UTC."""
        if not (self.time or self.bars):
            return []
        nanoseconds = (chunk.bars or Bars.empty()).start_time if self.bars else chunk.timestamps
        return iso_times(nanoseconds, self.time_unit)

    def csv_columns(self, chunk: PriceChunk, times: list[str]) -> list[list[str]]:
        if self.bars:
            bars = chunk.bars or Bars.empty()
            return [times, *(list(map(repr, getattr(bars, name).tolist())) for name in BAR_VALUES)]
        columns = [list(map(str, range(chunk.offset, chunk.offset + len(chunk.prices))))]
        if self.time:
            columns.append(times)
        prices = chunk.prices.reshape(len(chunk.prices), -1)  # one column per instrument
        columns += [list(map(repr, column.tolist())) for column in prices.T]
        if self.quotes:
            columns += [list(map(repr, chunk.bid.tolist())), list(map(repr, chunk.ask.tolist()))]
        return columns

    def json_columns(self, chunk: PriceChunk, times: list[str]) -> dict[str, list]:
        if self.bars:
            bars = chunk.bars or Bars.empty()
            values = zip(times, *(getattr(bars, name).tolist() for name in BAR_VALUES), strict=True)
            return {"bars": [dict(zip(("time", *BAR_VALUES), row, strict=True)) for row in values]}
        columns: dict[str, list] = {}
        if self.time:
            columns["time"] = times
        if self.quotes:
            columns["bid"], columns["ask"] = chunk.bid.tolist(), chunk.ask.tolist()
        return columns

    def json_tail(self, collected: dict[str, list]) -> list[tuple[str, list]]:
        names = (
            ["bars"]
            if self.bars
            else [*(["time"] if self.time else []), *(["bid", "ask"] if self.quotes else [])]
        )
        basket = [("symbols", list(self.symbols))] if self.symbols else []
        return basket + [(name, collected.get(name, [])) for name in names]


class PathWriter:
    """Writes a path piece by piece, so a long stream never sits whole in memory.

    CSV gets one column per thing asked for (time, price, bid, ask; or the
    bars' time, open, high, low, close, volume; a basket has one price column
    per symbol). JSON keeps the original endpoint's ``{"result": [...]}`` (a
    basket's result holds one row per period); timestamps, quotes and bars
    come as extra keys. The .npy format holds prices only (periods x symbols
    for a basket).
    """

    def __init__(self, fmt: str, destination: Destination, periods: int, columns: Columns) -> None:
        self.fmt = fmt
        self.columns = columns
        self.count = 0
        self._destination = destination
        self._periods = periods
        self.out: IO[str] | None = None
        self._array: np.memmap | None = None
        self._started = False
        self._json_extra: dict[str, list] = {}

    def _start(self) -> None:
        """Open the output and write its head: only once there is something to write, so a call that
        fails first leaves stdout empty."""
        self._started = True
        if self.fmt == "npy":
            self._array = np.lib.format.open_memmap(
                self._destination.open_path(),
                mode="w+",
                dtype=np.float64,
                shape=(self._periods, *self.columns.shape_per_period),
            )
            return
        self.out = self._destination.open_text()
        if self.fmt == "json":
            self.out.write('{"result": [')
        else:
            self.out.write(",".join(self.columns.csv_header()) + "\n")

    def write(self, chunk: PriceChunk) -> None:
        if not self._started:
            self._start()
        columns = self.columns
        times = columns.format_times(chunk)
        if self._array is not None:
            self._array[chunk.offset : chunk.offset + len(chunk.prices)] = chunk.prices
        elif self.fmt == "json":
            text = ", ".join(map(repr, chunk.prices.tolist()))
            self.out.write((", " if self.count and text else "") + text)
            for name, values in columns.json_columns(chunk, times).items():
                self._json_extra.setdefault(name, []).extend(values)
        else:
            rows = zip(*columns.csv_columns(chunk, times), strict=True)
            self.out.writelines(",".join(row) + "\n" for row in rows)
        if self.out is not None:
            self.out.flush()  # a reader of a paced stream sees each chunk as it arrives
        self.count += len(chunk.prices)

    def finish(self, seed: int, symbol: str) -> None:
        if not self._started:
            self._start()
        if self._array is not None:
            self._array.flush()
            self._array = None  # unmapped before the file is renamed into place
            print(f"wrote {self.count} prices (seed {seed})", file=sys.stderr)
        elif self.fmt == "json":
            extra = "".join(
                f", {json.dumps(k)}: {json.dumps(v)}" for k, v in self.columns.json_tail(self._json_extra)
            )
            self.out.write(f'], "seed": {seed}, "symbol": {json.dumps(symbol)}{extra}}}\n')
        if self.out is not None:
            self.out.flush()
