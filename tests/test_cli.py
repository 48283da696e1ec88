"""The sample client script, run as users run it: a subprocess against a real server."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import termios

import numpy as np

from client import MarketDataClient, path_request
from server.sim.models import Gbm, gbm_path
from server.sim.universe import DEFAULT_MARKET, MarketConfig
from tests.conftest import REPO_ROOT, ServerThread

ORIGINAL = Gbm(70.0, 0.05, 0.3, delta=1.0)


def run_client(python, *args, timeout=60):
    return subprocess.run(
        [python, "-m", "client", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_terminal(python, *args, stream="stdout", rows=40, columns=120) -> tuple[int, bytes, bytes]:
    """Run the client with ``stream`` (stdout or stderr) on a pseudo-terminal of ``rows`` x
    ``columns`` (a real terminal has a size; tqdm draws nothing on a zero-width one): its exit
    code, what the terminal showed, and stderr when stdout is the terminal (stdout is dropped
    otherwise)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    on_stdout = stream == "stdout"
    try:
        proc = subprocess.Popen(
            [python, "-m", "client", *args],
            cwd=REPO_ROOT,
            stdout=terminal if on_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if on_stdout else terminal,
        )
        os.close(terminal)
        seen = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal closes when the client exits
                break
            if not data:
                break
            seen += data
        code = proc.wait(timeout=30)
        return code, seen, proc.stderr.read() if on_stdout else b""
    finally:
        os.close(controller)


def test_get_prints_json_shaped_like_the_original_endpoint(python, server):
    done = run_client(
        python,
        "--target",
        server.target,
        "get",
        "--periods",
        "100",
        "--start-price",
        "70",
        "--mu",
        "0.05",
        "--sigma",
        "0.3",
        "--delta",
        "1",
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"result", "seed", "symbol"}
    assert len(body["result"]) == 100
    assert body["result"][0] == 70.0
    assert body["result"] == gbm_path(ORIGINAL, 100, body["seed"]).tolist()


def test_stream_json_equals_get_json(python, server):
    args = ["--periods", "1000", "--seed", "99", "--symbol", "ABC"]
    got = run_client(python, "--target", server.target, "get", *args)
    streamed = run_client(python, "--target", server.target, "stream", *args, "--chunk-size", "64")
    assert got.returncode == streamed.returncode == 0, got.stderr + streamed.stderr
    assert (
        json.loads(got.stdout)
        == json.loads(streamed.stdout)
        == {
            "result": gbm_path(ORIGINAL, 1000, 99).tolist(),
            "seed": 99,
            "symbol": "ABC",
        }
    )


def test_stream_csv(python, server):
    done = run_client(
        python, "--target", server.target, "stream", "--periods", "5", "--seed", "2", "--format", "csv"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "index,price"
    expected = gbm_path(ORIGINAL, 5, 2)
    assert [tuple(line.split(",")) for line in lines[1:]] == [
        (str(i), repr(p)) for i, p in enumerate(expected.tolist())
    ]


def test_stream_npy_file(python, server, tmp_path):
    out = tmp_path / "path.npy"
    done = run_client(
        python,
        "--target",
        server.target,
        "stream",
        "--periods",
        "100000",
        "--seed",
        "5",
        "--chunk-size",
        "7000",
        "--format",
        "npy",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert np.load(out).tobytes() == gbm_path(ORIGINAL, 100_000, 5).tobytes()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_exits_nonzero_with_a_readable_message(python):
    done = run_client(python, "--target", f"127.0.0.1:{_closed_port()}", "--timeout", "5", "get")
    assert done.returncode == 1
    assert "cannot reach the server" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_argument_exits_nonzero_naming_the_field(python, server):
    done = run_client(python, "--target", server.target, "get", "--sigma", "-1")
    assert done.returncode == 1
    assert "invalid argument (sigma)" in done.stderr
    assert "[0, 10]" in done.stderr
    assert "Traceback" not in done.stderr


def test_deadline_exceeded_exits_nonzero(python, server):
    done = run_client(
        python,
        "--target",
        server.target,
        "--timeout",
        "0.5",
        "stream",
        "--periods",
        "100",
        "--ticks-per-second",
        "10",
    )
    assert done.returncode == 1
    assert "deadline exceeded" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_command_line_exits_2(python):
    done = run_client(python, "get", "--periods", "many")
    assert done.returncode == 2
    assert "--periods" in done.stderr


def test_ctrl_c_stops_a_stream_cleanly(python, server):
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "client",
            "--target",
            server.target,
            "stream",
            "--periods",
            "1000",
            "--ticks-per-second",
            "10",
            "--chunk-size",
            "1",
            "--format",
            "csv",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        header, first = proc.stdout.readline(), proc.stdout.readline()
        assert header == "index,price\n", proc.stderr.read() if not header else header
        assert first == "0,70.0\n"  # the stream is live
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        assert "interrupted" in err, err
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_progress_bar_shows_on_a_terminal_only(python, server, tmp_path):
    args = [
        "--target",
        server.target,
        "stream",
        "--periods",
        "200000",
        "--format",
        "npy",
        "-o",
        tmp_path / "p.npy",
    ]
    code, seen, _ = read_terminal(python, *args, stream="stderr", rows=24, columns=100)
    assert code == 0
    assert b"200k/200k" in seen
    piped = run_client(python, *args)
    assert piped.returncode == 0
    assert "200k/200k" not in piped.stderr


def test_subscribe_prints_json_lines(python):
    fast = MarketConfig(instruments=DEFAULT_MARKET.instruments, seed=3, wall_seconds_per_tick=0.01)
    srv = ServerThread(market=fast, market_clock=True)
    try:
        done = run_client(python, "--target", srv.target, "subscribe", "GLOBEX", "ACME", "--count", "3")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert lines[0]["kind"] == "snapshot"
        updates = [line for line in lines if line["kind"] == "update"]
        assert len(updates) == 3
        assert list(updates[0]["prices"]) == ["GLOBEX", "ACME"]
        sequences = [u["sequence"] for u in updates]
        assert sequences == sorted(sequences)
        bad = run_client(python, "--target", srv.target, "subscribe", "NOPE")
        assert bad.returncode == 1
        assert "unknown symbols: NOPE" in bad.stderr
    finally:
        srv.stop()


def test_subscribe_draws_a_live_table_on_a_terminal(python):
    fast = MarketConfig(instruments=DEFAULT_MARKET.instruments, seed=3, wall_seconds_per_tick=0.01)
    srv = ServerThread(market=fast, market_clock=True)
    try:
        code, seen, stderr = read_terminal(
            python, "--target", srv.target, "subscribe", "ACME", "--count", "2", rows=24, columns=100
        )
        assert code == 0, stderr
    finally:
        srv.stop()
    assert b"\x1b[2J" in seen  # redrawn in place
    assert b"ACME" in seen and b"change" in seen
    assert b'"kind"' not in seen


def test_ctrl_c_ends_a_subscription_cleanly(python, server):
    # The session server's market clock is off: the subscription waits on
    # heartbeats when Ctrl-C arrives.
    proc = subprocess.Popen(
        [python, "-m", "client", "--target", server.target, "subscribe", "ACME", "--heartbeat", "0.05"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline())["kind"] == "snapshot"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130
        assert "subscription ended" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_models_timestamps_and_quotes_come_out_as_csv_columns(python, server):
    done = run_client(
        python,
        "--target",
        server.target,
        "get",
        "--model",
        "heston",
        "--periods",
        "50",
        "--period",
        "1m",
        "--calendar",
        "nyse",
        "--start-time",
        "2026-03-02T15:00:00Z",
        "--spread-bps",
        "10",
        "--tick-size",
        "0.01",
        "--seed",
        "4",
        "--format",
        "csv",
    )
    assert done.returncode == 0, done.stderr
    header, *rows = [line.split(",") for line in done.stdout.splitlines()]
    assert header == ["index", "time", "price", "bid", "ask"]
    assert len(rows) == 50
    assert rows[0][1] == "2026-03-02T15:00:00.000Z" and rows[1][1] == "2026-03-02T15:01:00.000Z"
    for _, _, price, bid, ask in rows:
        assert float(bid) < float(price) < float(ask)
        assert len(price.split(".")[1]) <= 2  # on the 0.01 grid


def _bars_args(server, command, *extra):
    return [
        "--target",
        server.target,
        command,
        "--model",
        "merton",
        "--periods",
        "30000",
        "--period",
        "1s",
        "--calendar",
        "nyse",
        "--holiday",
        "2026-03-03",
        "--start-time",
        "2026-03-02",
        "--bars",
        "15m",
        "--seed",
        "5",
        *extra,
    ]


def test_streamed_bars_equal_the_bars_of_one_call_and_can_be_drawn(python, server, tmp_path):
    chart = tmp_path / "candles.png"
    got = run_client(python, *_bars_args(server, "get", "--format", "csv", "--plot", str(chart)))
    streamed = run_client(python, *_bars_args(server, "stream", "--format", "csv", "--chunk-size", "4000"))
    assert got.returncode == streamed.returncode == 0, got.stderr + streamed.stderr
    assert got.stdout == streamed.stdout
    header, *rows = [line.split(",") for line in got.stdout.splitlines()]
    assert header == ["time", "open", "high", "low", "close", "volume"]
    # 23,400 s on Monday (26 bars), the holiday skipped, 6,600 s on Wednesday (8 bars, the last partial).
    assert len(rows) == 26 + 8
    assert rows[0][0] == "2026-03-02T14:30:00.000Z" and rows[26][0] == "2026-03-04T14:30:00.000Z"
    for _, o, h, lo, c, _ in rows:
        assert float(h) >= max(float(o), float(c)) >= min(float(o), float(c)) >= float(lo)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_line_chart_of_a_quoted_path(python, server, tmp_path):
    chart = tmp_path / "line.png"
    done = run_client(
        python,
        "--target",
        server.target,
        "get",
        "--periods",
        "300",
        "--start-time",
        "2026-03-02T00:00:00+01:00",
        "--spread-vol",
        "3",
        "--seed",
        "6",
        "--plot",
        str(chart),
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"result", "seed", "symbol", "time", "bid", "ask"}
    assert body["result"] == gbm_path(ORIGINAL, 300, 6).tolist()  # quotes leave the path as it was
    assert body["time"][:2] == ["2026-03-01T23:00:00.000Z", "2026-03-02T23:00:00.000Z"]
    assert all(b < p < a for b, p, a in zip(body["bid"], body["result"], body["ask"], strict=True))
    assert chart.stat().st_size > 10_000


def test_flags_that_would_be_ignored_are_refused(python):
    for args, words in (
        (["get", "--kappa", "2"], "--kappa applies to --model heston or ornstein_uhlenbeck"),
        (["get", "--bars", "1m", "--format", "npy", "-o", "x.npy"], "npy holds prices only"),
        (["get", "--period", "1s", "--delta", "1"], "--delta or --period"),
        (["get", "--volume-rate", "5"], "--volume-rate applies to --bars"),
        (["get", "--period", "fast"], "250ms, 1s, 5m, 1h or 1d"),
    ):
        done = run_client(python, *args)
        assert done.returncode == 2, args
        assert words in done.stderr, done.stderr


def test_integers_outside_their_proto_fields_are_refused_on_the_command_line(python):
    for args, flag in (
        (["get", "--seed", "-1"], "--seed"),
        (["get", "--seed", str(2**64)], "--seed"),
        (["get", "--periods", "-5"], "--periods"),
        (["stream", "--chunk-size", "-1"], "--chunk-size"),
        (["stream", "--chunk-size", str(2**32)], "--chunk-size"),
    ):
        done = run_client(python, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert flag in done.stderr and "whole number from 0 to 2^" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_bad_model_parameter_exits_1_naming_its_field(python, server):
    done = run_client(python, "--target", server.target, "get", "--model", "heston", "--rho", "3")
    assert done.returncode == 1
    assert "invalid argument (heston.rho)" in done.stderr and "[-1, 1]" in done.stderr
    assert "Traceback" not in done.stderr


def test_times_are_printed_as_finely_as_the_period_needs(python, server):
    done = run_client(
        python,
        "--target",
        server.target,
        "get",
        "--periods",
        "3",
        "--period",
        "1.5ms",
        "--start-time",
        "2026-03-02T14:30:00Z",
        "--format",
        "csv",
    )
    assert done.returncode == 0, done.stderr
    times = [line.split(",")[1] for line in done.stdout.splitlines()[1:]]
    assert times == [
        "2026-03-02T14:30:00.000000Z",
        "2026-03-02T14:30:00.001500Z",
        "2026-03-02T14:30:00.003000Z",
    ]


def test_a_correlated_basket_gets_one_column_per_symbol(python, server):
    basket = ["--model", "correlated_gbm", "--asset", "AAA:50:0.05:0.2", "--asset", "BBB:80:0.02:0.4"]
    done = run_client(
        python,
        "--target",
        server.target,
        "stream",
        *basket,
        "--correlation",
        "0.8",
        "--periods",
        "4000",
        "--seed",
        "3",
        "--chunk-size",
        "999",
        "--format",
        "csv",
    )
    assert done.returncode == 0, done.stderr
    header, *rows = [line.split(",") for line in done.stdout.splitlines()]
    assert header == ["index", "AAA", "BBB"]
    prices = np.array([[float(a), float(b)] for _, a, b in rows])
    assert prices.shape == (4000, 2) and prices[0].tolist() == [50.0, 80.0]
    # The same basket through the library, with the matrix written out, gives the same prices.
    request = path_request(
        "correlated_gbm",
        4000,
        model_params={
            "assets": [
                {"symbol": "AAA", "start_price": 50, "mu": 0.05, "sigma": 0.2},
                {"symbol": "BBB", "start_price": 80, "mu": 0.02, "sigma": 0.4},
            ],
            "correlation": [1, 0.8, 0.8, 1],
        },
        seed=3,
    )
    with MarketDataClient(server.target) as md:
        assert md.get_prices(request).prices.tolist() == prices.tolist()
    mixed = run_client(python, "get", *basket, "--sigma", "0.3")
    assert mixed.returncode == 2 and "carry their own" in mixed.stderr
