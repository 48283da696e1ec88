"""Charts of a path or of its bars, for the command line's --plot (needs matplotlib).

Bars are drawn as candlesticks over a volume panel; a path as a line, with
its bid and ask when quoted. The x axis counts periods (or bars), labelled
with their times when there are any, so nights and weekends take no room.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .decoding import Bars, PricePath, as_datetime64  # noqa: E402

UP, DOWN = "#26a69a", "#ef5350"
MAX_LINE_POINTS = 200_000  # longer paths are thinned evenly for drawing


def draw(path: PricePath, filename: str, title: str = "") -> None:
    """Write a PNG (or any format matplotlib knows from the extension) of ``path``."""
    if path.bars is not None and len(path.bars):
        figure = _candles(path.bars)
    else:
        figure = _line(path)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(filename, dpi=110)
    plt.close(figure)


def _time_labels(axis, nanoseconds: np.ndarray, positions: np.ndarray) -> None:
    if len(nanoseconds) == 0:
        return
    picks = np.unique(np.linspace(0, len(positions) - 1, num=min(6, len(positions))).astype(int))
    stamps = np.datetime_as_string(as_datetime64(nanoseconds[picks]), unit="m")
    axis.set_xticks(positions[picks], [s.replace("T", "\n") for s in stamps])
    axis.set_xlabel("UTC")


def _candles(bars: Bars):
    figure, (prices, volume) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 6), gridspec_kw={"height_ratios": [3, 1]}
    )
    x = np.arange(len(bars))
    rising = bars.close >= bars.open
    colours = np.where(rising, UP, DOWN)
    wicks = [((i, lo), (i, hi)) for i, lo, hi in zip(x, bars.low.tolist(), bars.high.tolist(), strict=True)]
    prices.add_collection(LineCollection(wicks, colors=colours, linewidths=0.8))
    for i, o, c, colour in zip(x, bars.open.tolist(), bars.close.tolist(), colours, strict=True):
        low = min(o, c)
        height = max(abs(c - o), 1e-12)
        prices.add_patch(Rectangle((i - 0.35, low), 0.7, height, facecolor=colour, edgecolor=colour))
    prices.set_xlim(-1, len(bars))
    span = bars.high.max() - bars.low.min()
    prices.set_ylim(bars.low.min() - 0.05 * span, bars.high.max() + 0.05 * span)
    prices.set_ylabel("price")
    prices.grid(alpha=0.3)
    volume.bar(x, bars.volume.astype(float), width=0.7, color=colours)
    volume.set_ylabel("volume")
    volume.grid(alpha=0.3)
    _time_labels(volume, bars.start_time, x)
    return figure


def _line(path: PricePath):
    figure, axis = plt.subplots(figsize=(10, 4.5))
    step = max(1, -(-len(path.prices) // MAX_LINE_POINTS))
    x = np.arange(0, len(path.prices), step)
    prices = path.prices[::step]
    if prices.ndim == 2:
        for column, symbol in zip(prices.T, path.symbols, strict=True):
            axis.plot(x, column, linewidth=0.8, label=symbol)
        axis.legend()
    else:
        axis.plot(x, prices, linewidth=0.8, color="#1f4e79", label="price")
        if len(path.bid):
            axis.fill_between(
                x, path.bid[::step], path.ask[::step], color="#9ecae1", alpha=0.6, label="bid/ask"
            )
            axis.legend()
    axis.set_ylabel("price")
    axis.grid(alpha=0.3)
    if len(path.timestamps):
        _time_labels(axis, path.timestamps[::step], x)
    else:
        axis.set_xlabel("period")
    return figure
