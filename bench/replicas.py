"""Row 9: a replica started a day after its market's epoch, timed from `python -m server`
to the first Subscribe update it sends (it computes the 864,000 ticks it missed first).

    python -m bench.replicas [--runs 3]

prints one line per market: the median seconds to the first update, and the catch-up
time the server logged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from marketdata.v1 import market_data_pb2, market_data_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent

# The other models' [[instrument]] bodies, as in the README's examples.
OTHERS = {
    "merton": "start_price = 40.0\nmu = 0.03\nsigma = 0.25\njump_intensity = 20.0\njump_mean = -0.02\n"
    "jump_stdev = 0.05",
    "arithmetic": "start_price = 10.0\nmu = 0.5\nsigma = 2.0",
    "ornstein_uhlenbeck": "start = 0.5\nmean = -0.25\nkappa = 12.6\nsigma = 0.8",
    "heston": "start_price = 70.0\nmu = 0.05\nv0 = 0.04\nkappa = 2.0\ntheta = 0.04\nxi = 0.6\nrho = -0.7",
}
# (label, GBM instruments in sectors of 10, GBM instruments correlated with nothing,
#  one dense correlation for every GBM instrument, other models' counts)
MARKETS = (
    (
        "80 GBM (40 in 4 correlated sectors), 8 Merton, 4 arithmetic, 4 OU, 4 Heston",
        40,
        40,
        False,
        {"merton": 8, "arithmetic": 4, "ornstein_uhlenbeck": 4, "heston": 4},
    ),
    ("100 GBM in 10 correlated sectors", 100, 0, False, {}),
    ("100 GBM, one dense correlation (0.5 for every pair)", 0, 100, True, {}),
)


def market_file(path: Path, sectors: int, alone: int, dense: bool, others: dict[str, int]) -> None:
    """A market of 10 ticks a second whose epoch was 24 hours ago."""
    gbm = sectors + alone
    count = gbm + sum(others.values())
    correlation = np.eye(count)
    for first in range(0, sectors, 10):
        correlation[first : first + 10, first : first + 10] = 0.6
    if dense:
        correlation[:gbm, :gbm] = 0.5
    np.fill_diagonal(correlation, 1.0)
    epoch = dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)
    lines = ["[market]", "seed = 1", "wall_seconds_per_tick = 0.1", f"epoch = {epoch.isoformat()}"]
    lines.append("correlation = [" + ",\n".join(str(row.tolist()) for row in correlation) + "]")
    bodies = [f"start_price = {50.0 + n}\nmu = 0.05\nsigma = 0.3" for n in range(gbm)]
    bodies += [f'model = "{model}"\n{OTHERS[model]}' for model, n in others.items() for _ in range(n)]
    for n, body in enumerate(bodies):
        lines += ["", "[[instrument]]", f'symbol = "S{n:03d}"', body]
    path.write_text("\n".join(lines) + "\n")


def first_update(market: Path) -> tuple[float, float]:
    """Seconds from starting the server to its first Subscribe update, and the catch-up it logged."""
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", "0", "--market", str(market)],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = []
        while not (match := re.search(r"listening on (\S+:\d+)", log[-1] if log else "")):
            line = server.stderr.readline()
            if not line:
                raise RuntimeError("the server ended before listening:\n" + "".join(log))
            log.append(line)
        with grpc.insecure_channel(match[1]) as channel:
            stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
            for event in stub.Subscribe(market_data_pb2.SubscribeRequest(), timeout=120):
                if event.HasField("update"):
                    break
        seconds = time.perf_counter() - started
        caught_up = re.search(r"computed the market up to tick \d+ in ([\d.]+) s", "".join(log))
        return seconds, float(caught_up[1]) if caught_up else float("nan")
    finally:
        server.terminate()
        server.wait(timeout=30)


def replica_rows(runs: int, row: Callable[..., None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for label, sectors, alone, dense, others in MARKETS:
            market = Path(tmp) / "market.toml"
            times = []
            for _ in range(runs):
                market_file(market, sectors, alone, dense, others)  # a fresh epoch: 24 h ago now
                times.append(first_update(market))
            row(
                f"9. replica started 24 h after its epoch, 10 ticks/s: {label}",
                f"first update after {statistics.median(t for t, _ in times):.1f} s",
                f"catch-up {statistics.median(c for _, c in times):.1f} s (864,000 ticks)",
            )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per market; the median is shown")
    args = parser.parse_args()
    replica_rows(args.runs, lambda what, value, note="": print(f"{what}: {value}, {note}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
