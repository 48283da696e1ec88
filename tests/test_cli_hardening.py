"""The command line when things go wrong: -o FILE replaced whole or not at all, nothing half-written
on stdout before data arrives, a shutting-down server told from an unreachable one, IPv6 targets."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess

import numpy as np
import pytest

from client import MarketDataClient
from client.base import channel_target
from server.sim.models import gbm_path
from tests.conftest import REPO_ROOT, server_process
from tests.test_cli import ORIGINAL, _closed_port, run_client

KEPT = "what was there before\n"
PACED = ["--periods", "1000", "--ticks-per-second", "10", "--chunk-size", "1"]  # 100 s: never finishes here


def _kept_file(tmp_path, name):
    out = tmp_path / name
    out.write_text(KEPT)
    return out


def _assert_left_as_it_was(out):
    assert out.read_text() == KEPT
    assert [p.name for p in out.parent.iterdir()] == [out.name], "no temporary file remains"


@pytest.mark.parametrize(
    ("command", "fmt"), [("get", "json"), ("stream", "json"), ("stream", "csv"), ("stream", "npy")]
)
def test_output_file_is_untouched_when_the_server_is_unreachable(python, tmp_path, command, fmt):
    out = _kept_file(tmp_path, f"keep.{fmt}")
    done = run_client(
        python,
        "--target",
        f"127.0.0.1:{_closed_port()}",
        "--timeout",
        "5",
        command,
        "--format",
        fmt,
        "-o",
        out,
    )
    assert done.returncode == 1
    assert "cannot reach the server" in done.stderr
    assert "keep." in done.stderr and "left as it was" in done.stderr
    _assert_left_as_it_was(out)


@pytest.mark.parametrize("fmt", ["json", "csv", "npy"])
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["stream", "--sigma", "-1"], "invalid argument (sigma)"),
        (["--timeout", "0.5", "stream", *PACED], "deadline exceeded"),  # cut after prices were written
    ],
    ids=["invalid-argument", "deadline"],
)
def test_output_file_is_untouched_when_the_server_ends_the_call(python, server, tmp_path, args, said, fmt):
    out = _kept_file(tmp_path, f"keep.{fmt}")
    done = run_client(python, "--target", server.target, *args, "--format", fmt, "-o", out)
    assert done.returncode == 1
    assert said in done.stderr
    _assert_left_as_it_was(out)


@pytest.mark.parametrize("fmt", ["json", "npy"])
def test_output_file_is_untouched_after_ctrl_c(python, fresh_server, tmp_path, fmt):
    out = _kept_file(tmp_path, f"keep.{fmt}")
    args = ["--target", fresh_server.target, "stream", *PACED, "--format", fmt, "-o", str(out)]
    proc = subprocess.Popen([python, "-m", "client", *args], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        # The server has sent prices: the client is writing them when Ctrl-C lands.
        assert fresh_server.tracker.wait_for(lambda t: t.prices_generated >= 2, timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130
        assert "interrupted" in err and "left as it was" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_left_as_it_was(out)


@pytest.mark.parametrize("fmt", ["json", "csv", "npy"])
def test_output_file_is_replaced_whole_on_success(python, server, tmp_path, fmt):
    out = _kept_file(tmp_path, f"path.{fmt}")
    out.chmod(0o640)
    args = ["--periods", "20000", "--seed", "8", "--chunk-size", "999"]
    done = run_client(python, "--target", server.target, "stream", *args, "--format", fmt, "-o", out)
    assert done.returncode == 0, done.stderr
    expected = gbm_path(ORIGINAL, 20_000, 8)
    if fmt == "npy":
        assert np.load(out).tobytes() == expected.tobytes()
    elif fmt == "json":
        assert json.loads(out.read_text())["result"] == expected.tolist()
    else:
        rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
        assert [float(price) for _, price in rows] == expected.tolist()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert out.stat().st_mode & 0o777 == 0o640, "the replaced file keeps its permissions"


def test_output_to_a_file_that_cannot_be_created_is_one_line(python, server, tmp_path):
    done = run_client(python, "--target", server.target, "get", "-o", tmp_path / "missing" / "p.json")
    assert done.returncode == 1
    assert "cannot write" in done.stderr and "p.json" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_stdout_stays_empty_when_the_call_fails_before_data(python, server, fmt):
    bad = run_client(python, "--target", server.target, "stream", "--sigma", "-1", "--format", fmt)
    assert bad.returncode == 1 and "invalid argument (sigma)" in bad.stderr
    assert bad.stdout == ""
    gone = run_client(
        python, "--target", f"127.0.0.1:{_closed_port()}", "--timeout", "5", "stream", "--format", fmt
    )
    assert gone.returncode == 1 and "cannot reach the server" in gone.stderr
    assert gone.stdout == ""


def _client(python, *args):
    return subprocess.Popen(
        [python, "-m", "client", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _shut_down_under(server, proc, live):
    """Once the client printed a first line that ``live`` accepts (its call is open), shut the server
    down with a grace period; the client's exit code, stdout and stderr."""
    try:
        first = proc.stdout.readline()
        assert live(first), first
        done = server.submit(server.running.shutdown(grace=1.0))
        # Read through the same buffered streams as the first line (communicate() would read
        # the pipes beneath them and lose what readline() had already buffered); the client
        # exits, closing them, once the server has ended its call.
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=30)
        done.result(timeout=30)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _says_shutting_down(err, target):
    assert f"the server at {target} is shutting down (server is shutting down;" in err
    assert "retry or use another server" in err
    assert "cannot reach" not in err and "Is it running" not in err
    assert "Traceback" not in err


def test_a_stream_cut_by_shutdown_says_so_and_that_stdout_is_incomplete(python, fresh_server):
    proc = _client(python, "--target", fresh_server.target, "stream", *PACED, "--format", "csv")
    code, out, err = _shut_down_under(fresh_server, proc, lambda line: line == "index,price\n")
    assert code == 1
    _says_shutting_down(err, fresh_server.target)
    assert "stdout is incomplete" in err
    assert out.startswith("0,70.0\n")


def test_a_subscription_cut_by_shutdown_says_the_server_is_shutting_down(python, fresh_server):
    proc = _client(python, "--target", fresh_server.target, "subscribe", "ACME", "--json")
    code, _, err = _shut_down_under(fresh_server, proc, lambda line: json.loads(line)["kind"] == "snapshot")
    assert code == 1
    _says_shutting_down(err, fresh_server.target)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("::1:50061", "[::1]:50061"),
        ("fe80::1:443", "[fe80::1]:443"),
        ("2001:db8::7:50051", "[2001:db8::7]:50051"),
        ("[::1]:50061", "[::1]:50061"),
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("localhost:50051", "localhost:50051"),
        ("dns:///prices.example:50051", "dns:///prices.example:50051"),
        ("ipv6:[::1]:50051", "ipv6:[::1]:50051"),
        ("ipv4:127.0.0.1:50051", "ipv4:127.0.0.1:50051"),
        ("unix:/tmp/marketdata.sock", "unix:/tmp/marketdata.sock"),
        ("unix:///tmp/a:b", "unix:///tmp/a:b"),
        ("::1", "::1"),  # no port: left to gRPC
        (["::1:50061", "[::2]:50062"], "ipv6:[::1]:50061,[::2]:50062"),
        (["127.0.0.1:1", "127.0.0.2:2"], "ipv4:127.0.0.1:1,127.0.0.2:2"),
    ],
)
def test_channel_target_brackets_a_bare_ipv6_address(given, expected):
    assert channel_target(given) == expected


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not _ipv6_loopback(), reason="no IPv6 loopback: socket.has_ipv6 is false or ::1 cannot be bound"
)
def test_a_bare_ipv6_target_reaches_a_server_on_ipv6_loopback(python):
    with server_process(python, "--host", "::1") as (proc, target):
        assert re.fullmatch(r"::1:\d+", target), target  # the bare form, as the server's log line writes it
        done = run_client(python, "--target", target, "get", "--periods", "5", "--seed", "3")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"] == gbm_path(ORIGINAL, 5, 3).tolist()
        with MarketDataClient(target) as md:
            path = md.get_gbm_prices(5, 70, 0.05, 0.3, seed=3)
        assert path.prices.tolist() == gbm_path(ORIGINAL, 5, 3).tolist()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
