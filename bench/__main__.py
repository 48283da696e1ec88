"""make bench: one table, every row measured in this launch, medians of several runs.

Rows: the in-process generation limit L; streaming 10M prices into one numpy
array over gRPC (generated classes vs the numpy-native wire path); small
unary calls against an empty-handler floor and the original Flask endpoint;
server memory while streaming 100M prices; --workers 2 against 1; live
subscribers; what timestamps, quotes, bars and baskets cost on a stream;
what abusive clients cost others; how soon a replica started a day after its
market's epoch serves; what /metrics and the access log cost small calls
and a stream; the HTTP port: the original /gbm URL against Flask, and live
subscribers over Server-Sent Events; live order-book subscribers, and the
client's CPU per book update with and without its numpy path.

Unary load comes from h2load (nghttp2's load generator, written in C), so
the Python servers, not a Python load generator, are what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from bench import client_book
from bench.replicas import replica_rows
from client import CALENDARS, MarketDataClient, path_request
from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from server.limits import Limits
from server.logs import JsonFormatter
from server.metrics import ServiceMetrics
from server.observability import ACCESS_LOGGER, ObserveCalls
from server.sim.models import Gbm, GbmStepper
from server.sim.seeding import make_rng

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS = dict(start_price=70.0, mu=0.05, sigma=0.3, delta=1.0)
GET_PATH = "/marketdata.v1.MarketDataService/GetGbmPrices"
GBM_URL = "/gbm?periods=100&startPrice=70&mu=0.05&sigma=0.3&delta=1"  # the original endpoint's
BUSY_TICK_SECONDS = 0.1
HTTP_CONCURRENCY = 16
# Row 12's subscriber counts; 1,000 is the default of --max-subscribers and of --max-connections.
SSE_LADDER = (100, 250, 500, 750, 1000)
SSE_P99_MS = 50.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---------------------------------------------------------------- processes


@dataclass
class Service:
    """A server in a child process, and its CPU and memory as the kernel counts them."""

    proc: subprocess.Popen
    port: int
    log: list[str]

    def pids(self) -> list[int]:
        """The process and its children (the workers of --workers N)."""
        found = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                found += [int(p) for p in (task / "children").read_text().split()]
            except FileNotFoundError:  # a thread that ended meanwhile (Flask's, one a connection)
                pass
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLOCK_TICKS

    def memory_kib(self, key: str) -> int:
        """VmRSS (now) or VmHWM (peak) of the main process, in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def launch(
    args: Sequence[str], ready: str = r"(?:listening|workers) on 127\.0\.0\.1:(\d+)", root: Path = REPO_ROOT
) -> Service:
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    port: list[int] = []
    found = threading.Event()
    listening = {"n": 0}
    workers = 1
    if "--workers" in args:
        workers = int(args[list(args).index("--workers") + 1])

    def drain() -> None:
        for line in proc.stdout:
            log.append(line)
            match = re.search(ready, line)
            if match and not port:
                port.append(int(match.group(1)))
            if "listening on" in line:
                listening["n"] += 1
            if port and listening["n"] >= workers:
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(timeout=60):
        proc.kill()
        raise RuntimeError(f"{' '.join(args)} did not start:\n{''.join(log)}")
    return Service(proc, port[0], log)


HTTP_READY = r"HTTP, JSON and the live page on http://127\.0\.0\.1:(\d+)/"


def launch_server(*flags: str, root: Path = REPO_ROOT, ready: str | None = None) -> Service:
    """The project's server (of the checkout at ``root``) on a free port, logging its start and stop.

    Its HTTP port is off unless ``flags`` set one: the default, 8080, is one fixed port,
    which two servers launched side by side (or anything else on the machine) would both
    want. A checkout from before the HTTP port has no such flag and gets none."""
    if "--http-port" not in flags and "--http-port" in (root / "server" / "app.py").read_text():
        flags = ("--http-port", "0", *flags)
    args = ["-m", "server", "--port", "0", "--log-level", "INFO", *flags]
    return launch(args, root=root) if ready is None else launch(args, ready=ready, root=root)


def launch_http_server(*flags: str) -> Service:
    """The project's server with its HTTP port on a free port, as users start it
    (``--http-port N``; 0 turns it off); ``port`` is the HTTP one, read from its log."""
    port = free_port()
    service = launch_server("--http-port", str(port), *flags, ready=HTTP_READY)
    if service.port != port:
        service.stop()
        raise RuntimeError(f"asked for HTTP on port {port}, the server logged {service.port}")
    return service


# ---------------------------------------------------------------- measurements


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def generation_rate(n: int, chunk: int) -> float:
    """Prices per second of the project's stepper, in process, chunk by chunk into one array."""
    out = np.empty(n)
    stepper = GbmStepper(Gbm(**PARAMS), make_rng(1))
    started = time.perf_counter()
    while stepper.position < n:
        offset = stepper.position
        block = stepper.next_block(min(chunk, n - offset))
        out[offset : offset + len(block)] = block
    return n / (time.perf_counter() - started)


def stream_rate_fast(target: str, n: int) -> float:
    out = np.empty(n)
    started = time.perf_counter()
    with MarketDataClient(target) as md, md.stream_gbm_prices(periods=n, seed=1, **PARAMS) as stream:
        for chunk in stream:
            out[chunk.offset : chunk.offset + len(chunk.prices)] = chunk.prices
    return n / (time.perf_counter() - started)


def stream_rate_generated(target: str, n: int) -> float:
    out = np.empty(n)
    request = market_data_pb2.GbmRequest(periods=n, seed=1, **PARAMS)
    started = time.perf_counter()
    with grpc.insecure_channel(target) as channel:
        for chunk in market_data_pb2_grpc.MarketDataServiceStub(channel).StreamGbmPrices(request):
            out[chunk.offset : chunk.offset + len(chunk.prices)] = chunk.prices
    return n / (time.perf_counter() - started)


def stream_discard(target: str, n: int) -> None:
    with MarketDataClient(target) as md, md.stream_gbm_prices(periods=n, seed=1, **PARAMS) as stream:
        for _ in stream:
            pass


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time per request


def grpc_body() -> bytes:
    message = market_data_pb2.GbmRequest(periods=100, **PARAMS).SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def _h2load_once(url: str, concurrency: int, requests: int, body: bytes | None, http1: bool, tmp: Path):
    log = tmp / "requests.log"
    cmd = ["h2load", "-c", str(concurrency), "-m", "1", "-n", str(requests), f"--log-file={log}"]
    if http1:
        cmd.append("--h1")
    if body is not None:
        data = tmp / "body.bin"
        data.write_bytes(body)
        cmd += ["-d", str(data), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=300)
    ok = re.search(r"(\d+) succeeded, (\d+) failed", done.stdout)
    if not ok or int(ok.group(2)) or int(ok.group(1)) != requests:
        raise RuntimeError(f"requests failed:\n{done.stdout}")
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", done.stdout).group(1))
    fields = [line.split("\t") for line in log.read_text().splitlines() if line]
    latencies_us = np.array([int(f[2]) for f in fields])
    return rps, latencies_us


def h2load(
    url: str, concurrency: int, seconds: float, service: Service, body: bytes | None, http1: bool = False
) -> Load:
    """Drive ``url`` with ``concurrency`` connections, one request in flight each, for about ``seconds``.

    A short first run warms up and sizes the measured run. (Counted runs, as
    h2load's timed mode never ends against some HTTP/1.1 servers.)
    """
    with tempfile.TemporaryDirectory() as tmp:
        warm_rps, _ = _h2load_once(url, concurrency, 50 * concurrency, body, http1, Path(tmp))
        requests = max(200, int(warm_rps * seconds))
        cpu_before = service.cpu_seconds()
        rps, latencies_us = _h2load_once(url, concurrency, requests, body, http1, Path(tmp))
        cpu_after = service.cpu_seconds()
    return Load(
        rps=rps,
        p50_ms=float(np.percentile(latencies_us, 50)) / 1000,
        p99_ms=float(np.percentile(latencies_us, 99)) / 1000,
        cpu_us=(cpu_after - cpu_before) / requests * 1e6,
    )


def median_load(runs: int, measure: Callable[[], Load]) -> Load:
    return medians([measure() for _ in range(runs)])


def medians(results: Sequence[Load]) -> Load:
    return Load(
        *(statistics.median(getattr(r, f) for r in results) for f in ("rps", "p50_ms", "p99_ms", "cpu_us"))
    )


def check_replies(service: Service) -> None:
    """h2load counts HTTP 200s; make sure they are real answers first."""
    with MarketDataClient(f"127.0.0.1:{service.port}") as md:
        assert len(md.get_gbm_prices(periods=100, **PARAMS).prices) == 100


# ---------------------------------------------------------------- the table


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}, numpy {np.__version__}, "
        f"starlette {version('starlette')}, uvicorn {version('uvicorn')}"
    )


def load_average() -> str:
    """The machine's 1-minute load average: other work on a shared machine moves the rows."""
    return f"load average {os.getloadavg()[0]:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per row; the median is shown")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each unary load run")
    parser.add_argument("--stream-prices", type=int, default=10_000_000)
    parser.add_argument("--rss-prices", type=int, default=100_000_000)
    parser.add_argument(
        "--rows",
        default="1,2,3,4,5,6,7,8,9,10,11,12,13,14",
        help="which rows to measure (default %(default)s; rows 2 and 7 measure row 1 too)",
    )
    parser.add_argument(
        "--sse-seconds", type=float, default=5.0, help="measurement per step of row 12's subscriber ladder"
    )
    parser.add_argument(
        "--compare",
        metavar="DIR",
        type=Path,
        help="instead of the rows: an A/B run of rows 2b and 3 (GetGbmPrices) between this checkout (A) "
        "and the one in DIR (B, with its generated code), runs alternating A, B, A, B",
    )
    args = parser.parse_args(argv)
    wanted = {int(r) for r in args.rows.split(",")}
    if shutil.which("h2load") is None:
        print("make bench needs h2load (Debian/Ubuntu: apt-get install nghttp2-client)", file=sys.stderr)
        return 1

    rows: list[tuple[str, str, str]] = []

    def row(what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))
        print(f"  {what}: {value} {note}", file=sys.stderr, flush=True)

    chunk = Limits().default_chunk_size
    n = args.stream_prices
    print(f"measuring on {machine()}; {load_average()}", file=sys.stderr)
    if args.compare is not None:
        compare_rows(args, args.compare.resolve(), row)
        return print_table(args, rows)

    # 1. The limit L (the stream rows need it).
    if wanted & {1, 2, 7}:
        limit = median_of(args.runs, lambda: generation_rate(n, chunk)) / 1e6
        row(
            f"1. in-process generation, {n / 1e6:.0f}M prices (L)",
            f"{limit:.1f} M prices/s",
            f"chunks of {chunk}",
        )

    measurements = {  # each row (or rows) of the table, in order
        2: lambda: stream_rows(args, limit, row),  # streams
        3: lambda: unary_rows(args, row),  # small unary calls against the floor and the original endpoint
        4: lambda: memory_row(args, row),  # memory while streaming 100M prices
        5: lambda: workers_rows(args, row),
        6: lambda: subscriber_rows(row),  # live subscribers
        7: lambda: additions_rows(args, limit, row),  # what PathRequest's additions cost on a stream
        8: lambda: abuse_rows(row),  # unread streams and heavy calls against small calls and the market
        9: lambda: replica_rows(min(args.runs, 3), row),  # a replica a day late (each run takes seconds)
        10: lambda: observability_rows(args, row),  # what metrics and the access log cost
        11: lambda: http_gbm_rows(args, row),  # the original URL on the HTTP port against Flask
        12: lambda: sse_rows(args, row),  # live subscribers over SSE
        13: lambda: book_rows(row),  # live order-book subscribers
        14: lambda: client_book_rows(row),  # the client's CPU per book update, numpy path or not
    }
    for number, measure in measurements.items():
        if number in wanted:
            measure()

    return print_table(args, rows)


def print_table(args: argparse.Namespace, rows: list[tuple[str, str, str]]) -> int:
    print(f"\nMachine: {machine()}; medians of {args.runs} runs; {load_average()} at the end.\n")
    print("| measurement | result | notes |")
    print("|---|---|---|")
    for what, value, note in rows:
        print(f"| {what} | {value} | {note} |")
    return 0


def busy_market(folder: Path) -> Path:
    """A market file of 100 GBM instruments ticking 10 times a second (rows 6 and 12)."""
    market = folder / "market.toml"
    lines = ["[market]", f"wall_seconds_per_tick = {BUSY_TICK_SECONDS}", "seed = 1", ""]
    for n in range(100):
        lines += ["[[instrument]]", f'symbol = "SYM{n:03d}"', "start_price = 100.0", "sigma = 0.3", ""]
    market.write_text("\n".join(lines))
    return market


def run_subscribers(service, module: str, *args: str) -> tuple[dict, float]:
    """Run load generator ``module`` against ``service`` for 5 s: the JSON it prints, and the
    server's CPU meanwhile as a share of one core."""
    cpu_before, started = service.cpu_seconds(), time.perf_counter()
    command = [sys.executable, "-m", module, "--target", f"127.0.0.1:{service.port}", *args, "--seconds", "5"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=600)
    cpu = (service.cpu_seconds() - cpu_before) / (time.perf_counter() - started)
    return json.loads(done.stdout), cpu


def subscriber_rows(row: Callable[..., None]) -> None:
    """How many all-symbol subscribers of a 100-instrument, 10-tick/s market keep p99 lag under 50 ms."""
    with tempfile.TemporaryDirectory() as tmp:
        market = busy_market(Path(tmp))
        service = launch_server("--market", str(market), "--max-subscribers", "100000")
        try:
            best = 0
            for count in (100, 250, 500, 750, 1000, 1500, 2000, 3000):
                result, cpu = run_subscribers(service, "bench.subscribers", "--subscribers", str(count))
                row(
                    f"6. live feed, 100 symbols x 10 ticks/s, {count} subscribers",
                    f"p99 lag {result['p99_ms']:.1f} ms",
                    f"p50 {result['p50_ms']:.1f} ms, {result['updates']:,} updates, "
                    f"server CPU {cpu:.0%} of a core",
                )
                if result["ended_early"] or result["p99_ms"] >= 50:
                    break
                best = count
            row("6. subscribers held with p99 lag < 50 ms", f"{best:,}", "largest step that passed")
        finally:
            service.stop()


BOOK_SUBSCRIBERS = 100
BOOK_DEPTH = 10
BOOK_P99_MS = 50.0


def book_rows(row: Callable[..., None]) -> None:
    """Book updates delivered to 100 subscribers of every symbol's depth-10 book in a
    100-instrument, 10-tick/s market (issue 13's target: p99 lag under 50 ms), and the server's CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        market = busy_market(Path(tmp))
        service = launch_server("--market", str(market))
        try:
            args = ("--subscribers", str(BOOK_SUBSCRIBERS), "--depth", str(BOOK_DEPTH))
            result, cpu = run_subscribers(service, "bench.book_subscribers", *args)
            met = (
                not result["ended_early"] and result["p99_ms"] is not None and result["p99_ms"] < BOOK_P99_MS
            )
            row(
                f"13. books, 100 symbols x 10 ticks/s, {BOOK_SUBSCRIBERS} depth-{BOOK_DEPTH} subscribers",
                f"{result['book_updates_per_second']:,.0f} book updates/s, p99 lag {result['p99_ms']:.1f} ms",
                f"p50 {result['p50_ms']:.1f} ms; {result['events']:,} events; "
                f"{result['not_following']} updates not following their book; "
                f"server CPU {cpu:.0%} of a core; "
                f"target p99 < {BOOK_P99_MS:.0f} ms {'met' if met else 'MISSED'}",
            )
        finally:
            service.stop()


def client_book_rows(row: Callable[..., None]) -> None:
    """The client's CPU per book update (100 symbols at depth 10 an event), with the generated
    classes and with the numpy path (issue 13's target: numpy at most 0.5x): the decoding alone
    (what the numpy path replaces), and the decoding with the books kept up to date."""
    events = client_book.make_events(100, BOOK_DEPTH, 300)
    results = client_book.cpu_per_event(
        {
            "decode only: protobuf to columns": client_book.protobuf_decode,
            "decode only: numpy": client_book.numpy_decode,
            "protobuf + dict": client_book.protobuf_dicts,
            "protobuf + BookKeeper": client_book.protobuf_keeper,
            "numpy + BookKeeper": client_book.numpy_keeper,
        },
        events,
        passes=5,
    )
    for name, spent in results.items():
        row(
            f"14. client CPU per book event, 100 symbols x depth {BOOK_DEPTH}: {name}",
            f"{spent * 1e6:,.0f} us",
        )
    decoding = results["decode only: numpy"] / results["decode only: protobuf to columns"]
    row(
        "14. numpy decoding / protobuf decoding (target <= 0.5x)",
        f"{decoding:.2f}x",
        f"target {'met' if decoding <= 0.5 else 'MISSED'}",
    )
    numpy_path = results["numpy + BookKeeper"]
    row(
        "14. with the books kept: numpy + BookKeeper / protobuf + BookKeeper",
        f"{numpy_path / results['protobuf + BookKeeper']:.2f}x",
        f"{numpy_path / results['protobuf + dict']:.2f}x of protobuf + dict per side",
    )


def gbm_json(port: int) -> dict:
    """The original URL's answer, read once before h2load counts 200s as answers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{GBM_URL}", timeout=30) as reply:
        answer = json.loads(reply.read())
    if len(answer["result"]) != 100:
        raise RuntimeError(f"GET {GBM_URL} on port {port} gave {len(answer['result'])} prices, not 100")
    return answer


def http_gbm_rows(args: argparse.Namespace, row: Callable[..., None]) -> None:
    """GET /gbm (periods=100) on the server's HTTP port and on the Flask baseline, h2load over
    HTTP/1.1 keep-alive with 16 connections, their runs alternating so both meet the same machine."""
    ours = launch_http_server()
    flask = launch(["-m", "bench.flask_baseline"])
    try:
        if "seed" not in gbm_json(ours.port):
            raise RuntimeError("GET /gbm on the HTTP port answered without its seed")
        gbm_json(flask.port)
        services = {"the HTTP port": ours, "Flask": flask}
        loads: dict[str, list[Load]] = {name: [] for name in services}
        for _ in range(args.runs):
            for name, service in services.items():
                url = f"http://127.0.0.1:{service.port}{GBM_URL}"
                loads[name].append(h2load(url, HTTP_CONCURRENCY, args.seconds, service, None, http1=True))
        results = {name: medians(runs) for name, runs in loads.items()}
        for name, load in results.items():
            row(
                f"11. GET /gbm periods=100, concurrency {HTTP_CONCURRENCY}, HTTP/1.1, {name}",
                f"{load.rps:,.0f} req/s",
                f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, server CPU {load.cpu_us:.0f} us/req",
            )
        http, baseline = results["the HTTP port"], results["Flask"]
        row(
            "11. GET /gbm: the HTTP port / Flask",
            f"{http.rps / baseline.rps:.2f} x Flask",
            f"CPU/req {http.cpu_us / baseline.cpu_us:.2f} x Flask's; target >= 2 x Flask; "
            f"req/s of each run: {', '.join(f'{r.rps:,.0f}' for r in loads['the HTTP port'])} "
            f"vs {', '.join(f'{r.rps:,.0f}' for r in loads['Flask'])}",
        )
    finally:
        flask.stop()
        ours.stop()


def sse_rows(args: argparse.Namespace, row: Callable[..., None]) -> None:
    """How many all-symbol SSE subscribers (GET /v1/subscribe on the HTTP port) of a
    100-instrument, 10-tick/s market keep p99 lag under 50 ms. The subscribers are one
    process of their own (bench.sse_subscribers), held on a growing ladder; the server's CPU
    is read over each step's measurement."""
    with tempfile.TemporaryDirectory() as tmp:
        service = launch_http_server("--market", str(busy_market(Path(tmp))))
        client = None
        try:
            client = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.sse_subscribers",
                    "--port",
                    str(service.port),
                    "--ladder",
                    ",".join(str(n) for n in SSE_LADDER),
                    "--seconds",
                    str(args.sse_seconds),
                    "--tick-seconds",
                    str(BUSY_TICK_SECONDS),
                    "--stop-p99-ms",
                    str(SSE_P99_MS),
                ],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            best, cpu_before, started = 0, 0.0, 0.0
            for line in client.stdout:
                step = json.loads(line)
                if "measuring" in step:
                    cpu_before, started = service.cpu_seconds(), time.perf_counter()
                    continue
                what = f"12. live feed over SSE, 100 symbols x 10 ticks/s, {step['subscribers']} subscribers"
                if "subscribed" in step:
                    row(what, f"{step['subscribed']} subscribed", "; ".join(step["failed"]))
                    continue
                cpu = (service.cpu_seconds() - cpu_before) / (time.perf_counter() - started)
                passed = not step["lost"] and step["p99_ms"] is not None and step["p99_ms"] < SSE_P99_MS
                row(
                    what,
                    f"p99 lag {step['p99_ms']:.1f} ms",
                    f"p50 {step['p50_ms']:.1f} ms, max {step['max_ms']:.1f} ms; "
                    f"{step['updates']:,} of {step['expected']:,} updates, {step['missed']} ticks skipped; "
                    f"read by the client: p50 {step['read_p50_ms']:.1f}, p99 {step['read_p99_ms']:.1f} ms; "
                    f"server CPU {cpu:.0%}, client CPU {step['client_cpu']:.0%} of a core"
                    + (f"; lost: {', '.join(step['lost'])}" if step["lost"] else ""),
                )
                if passed:
                    best = step["subscribers"]
            if client.wait(timeout=60):
                raise RuntimeError(f"bench.sse_subscribers exited with {client.returncode}")
            row(
                f"12. SSE subscribers held with p99 lag < {SSE_P99_MS:.0f} ms",
                f"{best:,}",
                f"largest step that passed (of {', '.join(str(n) for n in SSE_LADDER)}); target >= 250",
            )
        finally:
            if client is not None and client.poll() is None:
                client.kill()
                client.wait()
            service.stop()


def additions_rows(args: argparse.Namespace, limit: float, row: Callable[..., None]) -> None:
    """StreamPrices of 10M one-second GBM steps on the NYSE calendar, bare and with each addition."""
    n = args.stream_prices
    gbm = {"start_price": 70.0, "mu": 0.05, "sigma": 0.3}
    timed = {"start_time": dt.datetime(2026, 3, 2, tzinfo=dt.UTC), "calendar": CALENDARS["nyse"]}
    assets = [{"symbol": f"A{i}", "start_price": 50.0 + i, "sigma": 0.2} for i in range(4)]
    cases = (
        ("bare", path_request("gbm", n, 1 / 23_400, model_params=gbm, seed=1)),
        ("timestamps", path_request("gbm", n, 1 / 23_400, model_params=gbm, seed=1, **timed)),
        (
            "timestamps + 0.01 tick + 5 bp quotes",
            path_request(
                "gbm", n, 1 / 23_400, model_params=gbm, seed=1, tick_size=0.01, spread_bps=5, **timed
            ),
        ),
        ("1m bars", path_request("gbm", n, 1 / 23_400, model_params=gbm, seed=1, bar_interval="1m", **timed)),
        (
            "correlated_gbm, 4 assets",
            path_request(
                "correlated_gbm",
                n // 4,
                1 / 23_400,
                model_params={"assets": assets, "correlation": np.full(16, 0.5) + 0.5 * np.eye(4).ravel()},
                seed=1,
            ),
        ),
    )
    service = launch_server()
    try:
        for label, request in cases:

            def measure(r: market_data_pb2.PathRequest = request) -> float:
                started = time.perf_counter()
                with MarketDataClient(f"127.0.0.1:{service.port}") as md, md.stream_prices(r) as stream:
                    for _ in stream:
                        pass
                return n / (time.perf_counter() - started)

            rate = median_of(args.runs, measure) / 1e6
            row(
                f"7. StreamPrices {n / 1e6:.0f}M values, {label}",
                f"{rate:.1f} M values/s",
                f"{rate / limit:.2f} x L",
            )
    finally:
        service.stop()


def stream_rows(args: argparse.Namespace, limit: float, row: Callable[..., None]) -> None:
    """10M prices into one numpy array, through the generated classes and the numpy-native wire."""
    n = args.stream_prices
    fast, slow = launch_server(), launch_server("--wire", "protobuf")
    try:
        for number, label, measure, service in (
            ("2a", "generated classes", stream_rate_generated, slow),
            ("2b", "numpy-native wire", stream_rate_fast, fast),
        ):
            rate = median_of(args.runs, lambda m=measure, s=service: m(f"127.0.0.1:{s.port}", n)) / 1e6
            row(
                f"{number}. StreamGbmPrices {n / 1e6:.0f}M, {label}",
                f"{rate:.1f} M prices/s",
                f"{rate / limit:.2f} x L",
            )
    finally:
        fast.stop()
        slow.stop()


def unary_rows(args: argparse.Namespace, row: Callable[..., None]) -> None:
    fast = launch_server()
    empty = launch(["-m", "bench.empty_server"])
    flask = launch(["-m", "bench.flask_baseline"])
    flask_port = flask.port
    try:
        check_replies(fast)
        body = grpc_body()
        flask_url = f"http://127.0.0.1:{flask_port}{GBM_URL}"
        for concurrency in (1, 16):
            results: dict[str, Load] = {}
            for name, service, url, req, h1 in (
                ("GetGbmPrices", fast, f"http://127.0.0.1:{fast.port}{GET_PATH}", body, False),
                (
                    "empty handler (gRPC floor)",
                    empty,
                    f"http://127.0.0.1:{empty.port}{GET_PATH}",
                    body,
                    False,
                ),
                ("Flask /gbm JSON", flask, flask_url, None, True),
            ):
                load = median_load(
                    args.runs,
                    lambda s=service, u=url, r=req, h=h1, c=concurrency: h2load(u, c, args.seconds, s, r, h),
                )
                results[name] = load
                row(
                    f"3. periods=100, concurrency {concurrency}, {name}",
                    f"{load.rps:,.0f} req/s",
                    f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
                    f"server CPU {load.cpu_us:.0f} us/req",
                )
            ours, floor, flask_load = (
                results["GetGbmPrices"],
                results["empty handler (gRPC floor)"],
                results["Flask /gbm JSON"],
            )
            row(
                f"3. ratios at concurrency {concurrency}",
                f"{ours.rps / flask_load.rps:.2f} x Flask, {ours.rps / floor.rps:.2f} x floor",
                f"CPU/req {ours.cpu_us / flask_load.cpu_us:.2f} x Flask's",
            )
    finally:
        empty.stop()
        flask.stop()
        fast.stop()


def small_call_latencies(target: str, seconds: float) -> np.ndarray:
    """Milliseconds of sequential GetGbmPrices(periods=100) calls on a connection of their own."""
    request = market_data_pb2.GbmRequest(periods=100, **PARAMS)
    latencies = []
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        call = market_data_pb2_grpc.MarketDataServiceStub(channel).GetGbmPrices
        ends = time.perf_counter() + seconds
        while time.perf_counter() < ends:
            started = time.perf_counter()
            call(request, timeout=30)
            latencies.append(time.perf_counter() - started)
    return np.array(latencies) * 1e3


def heavy_requests(count: int) -> list[market_data_pb2.PathRequest]:
    """Heavy unary calls, in turn: 1h bars over 2^23 one-second values; Heston with timestamps,
    a tick and quotes; a 64-asset basket."""
    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    session = {"start_time": start, "calendar": CALENDARS["nyse"]}
    heston = {"start_price": 70, "mu": 0.05, "v0": 0.04, "kappa": 2, "theta": 0.04, "xi": 0.3, "rho": -0.7}
    assets = [{"symbol": f"A{j}", "start_price": 50.0 + j, "sigma": 0.2} for j in range(64)]
    correlation = (np.full((64, 64), 0.3) + 0.7 * np.eye(64)).ravel().tolist()
    kinds = (
        lambda i: path_request(
            "gbm",
            2**23,
            1 / 23_400,
            model_params={"start_price": 70, "sigma": 0.3},
            seed=i,
            bar_interval="1h",
            **session,
        ),
        lambda i: path_request(
            "heston",
            130_000,
            1 / 23_400,
            model_params=heston,
            seed=i,
            tick_size=0.01,
            spread_bps=5,
            **session,
        ),
        lambda i: path_request(
            "correlated_gbm",
            8_000,
            1 / 23_400,
            model_params={"assets": assets, "correlation": correlation},
            seed=i,
        ),
    )
    return [kinds[i % len(kinds)](i) for i in range(count)]


def abuse_rows(row: Callable[..., None]) -> None:
    """What one abusive client costs everyone else, with the server's default limits."""
    service = launch_server()
    target = f"127.0.0.1:{service.port}"
    try:
        check_replies(service)
        idle = service.memory_kib("VmRSS")
        # 500 streams nobody reads, from one client on one connection.
        unread_request = market_data_pb2.GbmRequest(periods=10**12, seed=1, **PARAMS)
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as hog:
            stub = market_data_pb2_grpc.MarketDataServiceStub(hog)
            unread = [stub.StreamGbmPrices(unread_request, timeout=600) for _ in range(500)]
            time.sleep(3)  # let the server admit, refuse and fill what it will
            refused = sum(1 for call in unread if call.done())
            held = service.memory_kib("VmRSS")
            latencies = small_call_latencies(target, 5.0)
            for call in unread:
                call.cancel()
        row(
            "8. server RSS, idle / 500 unread streams from one client",
            f"{idle / 1024:.0f} / {held / 1024:.0f} MiB",
            f"+{(held - idle) / 1024:.0f} MiB (target <= +256); {500 - refused} open, {refused} refused "
            "(--max-streams-per-peer)",
        )
        row(
            "8. GetGbmPrices(periods=100) from a second client meanwhile",
            f"p50 {np.percentile(latencies, 50):.2f} ms, p99 {np.percentile(latencies, 99):.2f} ms",
            f"{len(latencies):,} calls; target p99 <= 50 ms",
        )
        # 32 heavy unary calls at once, a small-call client and a market watcher meanwhile.
        watched = {"updates": 0, "missed": 0}
        stop = threading.Event()

        def watch() -> None:
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                events = market_data_pb2_grpc.MarketDataServiceStub(channel).Subscribe(
                    market_data_pb2.SubscribeRequest(), timeout=600
                )
                last = None
                try:
                    for event in events:
                        if stop.is_set():
                            events.cancel()
                        if event.HasField("update"):
                            if last is not None:
                                watched["missed"] += event.sequence - last - 1
                            watched["updates"] += 1
                            last = event.sequence
                except grpc.RpcError:
                    pass

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as heavy:
            stub = market_data_pb2_grpc.MarketDataServiceStub(heavy)
            started = time.perf_counter()
            calls = [stub.GetPrices.future(r, timeout=600) for r in heavy_requests(32)]
            latencies = small_call_latencies(target, 10.0)
            done = sum(call.done() for call in calls)
            for call in calls:
                call.result() if call.done() else call.cancel()
            elapsed = time.perf_counter() - started
        stop.set()
        watcher.join(timeout=10)
        row(
            "8. GetGbmPrices(periods=100) during 32 concurrent heavy calls",
            f"p50 {np.percentile(latencies, 50):.2f} ms, p99 {np.percentile(latencies, 99):.2f} ms",
            f"{len(latencies):,} calls; target p99 <= 100 ms; {done} heavy calls done in {elapsed:.0f} s",
        )
        row(
            "8. market ticks missed during the heavy calls",
            f"{watched['missed']}",
            f"{watched['updates']} updates watched; target 0",
        )
    finally:
        service.stop()


def compare_rows(args: argparse.Namespace, other: Path, row: Callable[..., None]) -> None:
    """Rows 2b and 3 for two servers in one launch, their runs interleaved so that both
    meet the same machine: A is this checkout, B the one at ``other``."""
    services = {"A": launch_server(), "B": launch_server(root=other)}
    try:
        for service in services.values():
            check_replies(service)
        n = args.stream_prices
        rates: dict[str, list[float]] = {name: [] for name in services}
        for _ in range(args.runs):
            for name, service in services.items():
                rates[name].append(stream_rate_fast(f"127.0.0.1:{service.port}", n) / 1e6)
        a, b = (statistics.median(rates[name]) for name in services)
        row(f"A/B 2b. StreamGbmPrices {n / 1e6:.0f}M", f"A {a:.1f}, B {b:.1f} M prices/s", f"B/A {b / a:.2f}")
        body = grpc_body()
        for concurrency in (1, 16):
            loads: dict[str, list[Load]] = {name: [] for name in services}
            for _ in range(args.runs):
                for name, service in services.items():
                    url = f"http://127.0.0.1:{service.port}{GET_PATH}"
                    loads[name].append(h2load(url, concurrency, args.seconds, service, body))
            a, b = (medians(loads[name]) for name in services)
            row(
                f"A/B 3. GetGbmPrices periods=100, concurrency {concurrency}",
                f"A {a.rps:,.0f}, B {b.rps:,.0f} req/s",
                f"B/A {b.rps / a.rps:.2f}; p99 A {a.p99_ms:.2f}, B {b.p99_ms:.2f} ms; "
                f"CPU A {a.cpu_us:.0f}, B {b.cpu_us:.0f} us/req",
            )
    finally:
        for service in services.values():
            service.stop()


def memory_row(args: argparse.Namespace, row: Callable[..., None]) -> None:
    fresh = launch_server()
    try:
        check_replies(fresh)
        idle = fresh.memory_kib("VmRSS")
        stream_discard(f"127.0.0.1:{fresh.port}", args.rss_prices)
        peak = fresh.memory_kib("VmHWM")
        row(
            f"4. server RSS, idle / peak streaming {args.rss_prices / 1e6:.0f}M prices",
            f"{idle / 1024:.0f} / {peak / 1024:.0f} MiB",
            f"+{(peak - idle) / 1024:.0f} MiB",
        )
    finally:
        fresh.stop()


def workers_rows(args: argparse.Namespace, row: Callable[..., None]) -> None:
    rates = {}
    for workers in (1, 2):
        service = launch_server("--workers", str(workers))
        try:
            check_replies(service)
            url = f"http://127.0.0.1:{service.port}{GET_PATH}"
            rates[workers] = median_load(
                args.runs, lambda s=service, u=url: h2load(u, 16, args.seconds, s, grpc_body())
            )
            row(f"5. periods=100, concurrency 16, --workers {workers}", f"{rates[workers].rps:,.0f} req/s")
        finally:
            service.stop()
    row("5. --workers 2 / --workers 1", f"{rates[2].rps / rates[1].rps:.2f} x")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def observability_rows(args: argparse.Namespace, row: Callable[..., None]) -> None:
    """Small calls (server CPU per request) and a 10M stream with metrics off, with
    --metrics-port, and with --metrics-port plus the JSON access log; and the observing
    interceptor alone, in process, per call."""
    body = grpc_body()
    variants = (
        ("off", ()),
        ("--metrics-port", ("--metrics-port", str(free_port()))),
        ("--metrics-port, --log-format json", ("--metrics-port", str(free_port()), "--log-format", "json")),
    )
    for name, flags in variants:
        service = launch_server(*flags)
        target = f"127.0.0.1:{service.port}"
        try:
            check_replies(service)
            url = f"http://{target}{GET_PATH}"
            load = median_load(args.runs, lambda s=service, u=url: h2load(u, 16, args.seconds, s, body))
            rate = median_of(args.runs, lambda t=target: stream_rate_fast(t, args.stream_prices))
            row(
                f"10. metrics {name}: periods=100, concurrency 16",
                f"{load.rps:,.0f} req/s",
                f"server CPU {load.cpu_us:.0f} us/req; StreamGbmPrices {rate / 1e6:.1f} M prices/s",
            )
        finally:
            service.stop()
    for name, access_log in (("metrics", False), ("metrics and access log", True)):
        cost = interceptor_cost(access_log)
        row(f"10. the observing interceptor alone, {name}", f"{cost:.1f} us/call", "in process")


def interceptor_cost(access_log: bool, calls: int = 200_000) -> float:
    """Microseconds one unary call spends in the observing interceptor: a call through the
    wrapped handler less a call of the bare one (the access log as JSON lines to /dev/null)."""

    class Context:
        def peer(self) -> str:
            return "ipv4:127.0.0.1:50000"

        def code(self) -> None:
            return None

    class Details:
        method = GET_PATH

    async def bare(request, context):
        return request

    async def continuation(details):
        return grpc.unary_unary_rpc_method_handler(bare)

    async def measure() -> float:
        observer = ObserveCalls(ServiceMetrics(CollectorRegistry()), access_log)
        wrapped = (await observer.intercept_service(continuation, Details())).unary_unary
        context = Context()
        times = []
        for handler in (bare, wrapped, bare, wrapped):
            started = time.perf_counter()
            for _ in range(calls):
                await handler(b"", context)
            times.append((time.perf_counter() - started) / calls)
        return (min(times[1], times[3]) - min(times[0], times[2])) * 1e6

    with open(os.devnull, "w") as devnull:
        lines = logging.StreamHandler(devnull)
        lines.setFormatter(JsonFormatter())
        propagate, ACCESS_LOGGER.propagate = ACCESS_LOGGER.propagate, False
        ACCESS_LOGGER.addHandler(lines)
        ACCESS_LOGGER.setLevel(logging.INFO)
        try:
            return asyncio.run(measure())
        finally:
            ACCESS_LOGGER.removeHandler(lines)
            ACCESS_LOGGER.propagate = propagate


if __name__ == "__main__":
    sys.exit(main())
