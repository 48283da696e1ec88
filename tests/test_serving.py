"""Serving beyond one process: round_robin over several servers, --workers, and
the two reply encodings giving the same bytes on the wire."""

from __future__ import annotations

import re
import signal
import subprocess
import threading

import grpc
import pytest

from client import MarketDataClient, channel_target, gbm_request
from marketdata.v1 import market_data_pb2
from server.limits import Limits
from tests.conftest import REPO_ROOT, ServerThread, call_on_new_connections

GET = "/marketdata.v1.MarketDataService/GetGbmPrices"
STREAM = "/marketdata.v1.MarketDataService/StreamGbmPrices"


def test_channel_target_forms():
    assert channel_target("prices:50051") == "prices:50051"
    assert channel_target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert channel_target(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"
    with pytest.raises(ValueError, match="dns:///"):
        channel_target(["prices.internal:50051"])
    with pytest.raises(ValueError, match="one family"):
        channel_target(["127.0.0.1:1", "[::1]:2"])


def test_round_robin_spreads_calls_over_every_server():
    servers = [ServerThread(), ServerThread()]
    try:
        with MarketDataClient([s.target for s in servers]) as md:
            # round_robin only picks connected backends: call until both are.
            for _ in range(200):
                md.get_gbm_prices(periods=10, start_price=70, mu=0.05, sigma=0.3)
                if all(s.tracker.unary_calls for s in servers):
                    break
            before = [s.tracker.unary_calls for s in servers]
            for _ in range(20):
                md.get_gbm_prices(periods=10, start_price=70, mu=0.05, sigma=0.3)
            after = [s.tracker.unary_calls for s in servers]
        assert all(before), "one server never got a call"
        assert [a - b for a, b in zip(after, before, strict=True)] == [10, 10]
    finally:
        for s in servers:
            s.stop()


@pytest.mark.parametrize("rpc", [GET, STREAM])
def test_fast_and_protobuf_encodings_send_identical_bytes(rpc):
    fast, slow = ServerThread(), ServerThread(wire="protobuf")
    request = gbm_request(40_000, 70, 0.05, 0.3, seed=31, chunk_size=9_000, symbol="€")
    try:
        replies = []
        for srv in (fast, slow):
            with grpc.insecure_channel(srv.target) as channel:
                serializer = market_data_pb2.GbmRequest.SerializeToString
                if rpc == GET:
                    call = channel.unary_unary(rpc, request_serializer=serializer)
                    replies.append([call(request)])
                else:
                    call = channel.unary_stream(rpc, request_serializer=serializer)
                    replies.append(list(call(request)))
        assert replies[0] == replies[1]
        assert sum(len(r) for r in replies[0]) > 40_000 * 8
    finally:
        fast.stop()
        slow.stop()


def test_workers_share_one_port_and_stop_together_on_sigterm(python):
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "server",
            "--port",
            "0",
            "--http-port",
            "0",
            "--workers",
            "2",
            "--log-level",
            "DEBUG",
            "--grace",
            "2",
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    listening = threading.Event()

    def read_log() -> None:
        for line in proc.stderr:
            lines.append(line)
            if sum("listening on" in x for x in lines) == 2:
                listening.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert listening.wait(timeout=30), "".join(lines)
        port = re.search(r"started 2 workers on 127\.0\.0\.1:(\d+)", "".join(lines)).group(1)
        worker_pids = set(re.findall(r"\[(\d+)\] server\.app: listening on", "".join(lines)))
        assert len(worker_pids) == 2
        # Each new connection goes to one worker, chosen by the kernel: call until both have served.
        served = re.compile(r"\[(\d+)\] server\.servicer: whole path")
        call_on_new_connections(
            f"127.0.0.1:{port}", lambda: set(served.findall("".join(lines))) == worker_pids
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        reader.join(timeout=10)
        log = "".join(lines)
        assert set(served.findall(log)) == worker_pids, "64 connections, and one worker served them all"
        for pid in worker_pids:
            assert f"[{pid}] server.app: stopped" in log
        assert "all workers stopped" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_worker_count_is_a_usage_error(python):
    done = subprocess.run(
        [python, "-m", "server", "--workers", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "--workers must be >= 1" in done.stderr


def test_limits_reject_chunk_sizes_that_cannot_fit_a_message():
    with pytest.raises(ValueError, match="4 MiB"):
        Limits(max_chunk_size=10**6)
