"""The HTTP port's own limits, each against a real server: connections, slow or silent
clients, oversized heads and bodies, readers that stop reading; and the port in the
life of the process (flags, workers, SIGTERM with streams open)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from server.limits import ConnectionLimits, Limits
from tests.conftest import ServerThread, free_port
from tests.server_process import ServerProcess, run_server

METHOD = "/marketdata.v1.MarketDataService/"
GBM = "/gbm?periods=5&startPrice=70&mu=0.05&sigma=0.3&delta=1"
QUICK = ConnectionLimits(handshake_timeout_seconds=0.5, max_connection_idle_seconds=0.5, max_connections=3)


@pytest.fixture(scope="module")
def strict() -> Iterator[ServerThread]:
    srv = ServerThread(http_port=0, connection_limits=QUICK, limits=Limits(stall_seconds=1))
    yield srv
    srv.stop()


def _connect(srv: ServerThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.running.http_port), timeout=15)
    return sock


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket's timeout)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_a_silent_connection_is_closed_after_the_handshake_timeout(strict: ServerThread) -> None:
    with _connect(strict) as sock:
        assert _closed_by_server(sock) == b""


def test_a_request_head_sent_slowly_is_cut_off(strict: ServerThread) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET /gbm HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        assert _closed_by_server(sock) == b""


def test_an_oversized_head_is_refused(strict: ServerThread) -> None:
    with _connect(strict) as sock:
        sock.sendall(
            b"GET " + GBM.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        )
        assert _closed_by_server(sock).startswith(b"HTTP/1.1 400 ")


def test_an_idle_keep_alive_connection_is_closed(strict: ServerThread) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET " + GBM.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = _closed_by_server(sock)  # answered, then closed when idle
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"result"' in reply


def test_a_body_that_never_arrives_gets_408(strict: ServerThread) -> None:
    with _connect(strict) as sock:
        sock.sendall(
            b"POST " + METHOD.encode() + b"GetGbmPrices HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"periods": '
        )
        reply = _closed_by_server(sock)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"--handshake-timeout-seconds" in reply


def test_connections_past_the_limit_are_closed_and_the_rest_served(strict: ServerThread) -> None:
    held = [_connect(strict) for _ in range(3)]
    try:
        for sock in held:  # each has begun a request, so none is closed as silent meanwhile
            sock.sendall(b"GET ")
        with _connect(strict) as extra:
            extra.sendall(b"GET " + GBM.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _closed_by_server(extra) == b"", "a connection past --max-connections was served"
        held[0].close()
        # A place is free again (the server sees the close before the next connection).
        url = f"http://127.0.0.1:{strict.running.http_port}{GBM}"
        for _ in range(50):  # the close reaches the server's loop within a few tries
            try:
                if httpx.get(url, timeout=15).status_code == 200:
                    break
            except httpx.TransportError:
                continue
        else:
            pytest.fail("no connection was served after one of the held ones closed")
    finally:
        for sock in held:
            sock.close()


def test_a_reader_that_stops_reading_is_dropped_and_its_stream_ended(strict: ServerThread) -> None:
    body = json.dumps({"periods": 50_000_000, "delta": 1, "gbm": {"startPrice": 1}}).encode()
    with _connect(strict) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"POST "
            + METHOD.encode()
            + b"StreamPrices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert strict.tracker.wait_for(lambda t: t.active == 1, timeout=15)
        # Nothing is read: the server's writes block, and --stall-seconds (1 s here) ends it.
        assert strict.tracker.wait_idle(timeout=30), "the stream held on for a reader that reads nothing"


# ---- the port in the process -----------------------------------------------------------------------


def test_the_command_line_serves_http_and_says_where(python: str) -> None:
    port = free_port()
    with ServerProcess(python, "--port", "0", "--http-port", str(port)) as server:
        server.wait_for(rf"HTTP, JSON and the live page on http://127\.0\.0\.1:{port}/")
        reply = httpx.get(
            f"http://127.0.0.1:{port}/gbm?periods=100&startPrice=70.0&mu=0.05&sigma=0.30&delta=1.0"
        )
        assert reply.status_code == 200 and len(reply.json()["result"]) == 100
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--port", "5555", "--http-port", "5555"], "--http-port must be in [1, 65535] and not --port"),
        (["--http-port", "70000"], "--http-port must be in [1, 65535]"),
    ],
)
def test_bad_http_ports_are_refused_in_one_line(python: str, flags, says) -> None:
    done = run_server(python, *flags)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"marketdata-server: error: {says}")


def test_a_busy_http_port_is_said_in_one_line(python: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = run_server(python, "--port", "0", "--http-port", str(busy.getsockname()[1]))
    assert done.returncode == 1
    assert "the port is in use by another process: choose another --http-port" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigterm_with_sse_subscribers_open_ends_them_and_exits(python: str) -> None:
    port = free_port()
    with ServerProcess(python, "--port", "0", "--http-port", str(port), "--grace", "2") as server:
        server.wait_for("HTTP, JSON and the live page")
        with (
            httpx.Client(timeout=15) as client,
            client.stream("GET", f"http://127.0.0.1:{port}/v1/subscribe") as sse,
        ):
            lines = sse.iter_lines()
            assert next(lines).startswith("retry:")
            server.proc.send_signal(signal.SIGTERM)
            rest = list(lines)  # ends when the server ends the response
        assert "event: error" in rest
        assert server.proc.wait(timeout=15) == 0
        assert "Traceback" not in server.log


def test_workers_share_the_http_port(python: str) -> None:
    port = free_port()
    with ServerProcess(python, "--port", "0", "--http-port", str(port), "--workers", "2") as server:
        server.wait_for("HTTP, JSON and the live page", count=2)
        seeds = {httpx.get(f"http://127.0.0.1:{port}{GBM}&seed=9").json()["seed"] for _ in range(4)}
        assert seeds == {9}
        assert server.stop() == 0


class _Seen(logging.Handler):
    """Sets ``event`` when a record's message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_a_reply_left_unread_is_dropped_and_its_slot_freed(strict: ServerThread) -> None:
    """A 4 MiB reply is about 12 MB of JSON: a client that asks and never reads must not keep
    it (nor its --max-calls slot) beyond --stall-seconds."""
    seen = _Seen("dropped an HTTP reader that accepted nothing")
    logger = logging.getLogger("server.web.calls")
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    body = json.dumps({"periods": 500_000, "delta": 1, "gbm": {"startPrice": 1, "sigma": 0.2}}).encode()
    try:
        with _connect(strict) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                b"POST "
                + METHOD.encode()
                + b"GetPrices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert seen.event.wait(timeout=30), "the unread reply was kept"
            assert strict.running.servicer.admission.calls == 0
            received = _closed_by_server(sock)
        assert len(received) < 4_000_000  # of about 12 MB: cut off, not delivered at the reader's pace
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
