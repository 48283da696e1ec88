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


def _post(method: str, body: bytes, length: int | None = None) -> bytes:
    """A POST of a JSON ``body`` to ``method``, written by hand: its Content-Length may lie."""
    return (
        b"POST %s%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (METHOD.encode(), method.encode(), len(body) if length is None else length, body)
    )


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
        sock.sendall(_post("GetGbmPrices", b'{"periods": ', length=100))
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
        sock.sendall(_post("StreamPrices", body))
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
            sock.sendall(_post("GetPrices", body))
            assert seen.event.wait(timeout=30), "the unread reply was kept"
            assert strict.running.servicer.admission.calls == 0
            received = _closed_by_server(sock)
        assert len(received) < 4_000_000  # of about 12 MB: cut off, not delivered at the reader's pace
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)


# ---- found by a hostile review -----------------------------------------------------------------------


def test_replies_held_for_readers_count_against_read_ahead_mib() -> None:
    """A 10 MB /gbm reply does not fit in 4 MiB: refused, instead of held for a reader that may
    never read it (50 such readers once took the server past 500 MiB)."""
    srv = ServerThread(http_port=0, limits=Limits(read_ahead_mib=4))
    try:
        base = f"http://127.0.0.1:{srv.running.http_port}/gbm?startPrice=1&mu=0&sigma=0.1&delta=1"
        refused = httpx.get(base + "&periods=524256", timeout=30)
        assert refused.status_code == 429
        assert "--read-ahead-mib" in refused.json()["message"]
        assert srv.running.servicer.generation.held == 0
        assert len(httpx.get(base + "&periods=1000", timeout=30).json()["result"]) == 1000
    finally:
        srv.stop()


def test_a_body_trickling_after_its_reply_does_not_keep_the_connection(strict: ServerThread) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET " + GBM.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"x")  # one more byte of the body, and no more
        assert b"HTTP/1.1" not in _closed_by_server(sock)


def test_clients_that_leave_mid_body_leave_no_traceback(strict: ServerThread, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            with _connect(strict) as sock:
                sock.sendall(_post("GetGbmPrices", b"{", length=10))
        # A request after them is answered: by then the server has read every one of them.
        assert httpx.get(f"http://127.0.0.1:{strict.running.http_port}{GBM}", timeout=15).status_code == 200
        odd = httpx.post(
            f"http://127.0.0.1:{strict.running.http_port}{METHOD}GetGbmPrices",
            json={},
            headers={"connect-timeout-ms": "\u00b2".encode("latin-1")},
            timeout=15,
        )
    assert odd.status_code == 400 and "Connect-Timeout-Ms" in odd.json()["message"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_fault_answers_500_and_is_logged_within_a_bound(strict: ServerThread, caplog, monkeypatch) -> None:
    from server.web import calls

    def broken(message):
        raise RuntimeError("a planted fault")

    monkeypatch.setattr(calls.formats, "message_json", broken)
    url = f"http://127.0.0.1:{strict.running.http_port}{METHOD}ListInstruments"
    with caplog.at_level(logging.ERROR, logger="server.web.routes"):
        replies = [httpx.post(url, json={}, timeout=15) for _ in range(15)]
    assert {r.status_code for r in replies} == {500}
    assert replies[0].json()["code"] == "internal"
    faults = [r for r in caplog.records if r.name == "server.web.routes"]
    assert len(faults) == 10 and all(r.exc_info for r in faults)  # ten a minute, the rest counted
    monkeypatch.undo()
    assert httpx.post(url, json={}, timeout=15).status_code == 200


def test_large_requests_are_decoded_two_at_a_time(strict: ServerThread, monkeypatch) -> None:
    from server.web import calls

    entered, release = threading.Semaphore(0), threading.Event()
    parse = calls.parse

    def slow(data, message, as_json):
        entered.release()
        release.wait(30)
        return parse(data, message, as_json)

    monkeypatch.setattr(calls, "parse", slow)
    url = f"http://127.0.0.1:{strict.running.http_port}{METHOD}GetLastPrices"
    body = '{"symbols": ["ACME"]}' + " " * 100_000  # over 16 KiB, and a request like any other
    results: list[int] = []
    senders = [
        threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    url, content=body, headers={"content-type": "application/json"}, timeout=30
                ).status_code
            )
        )
        for _ in range(2)
    ]
    try:
        for sender in senders:
            sender.start()
        assert entered.acquire(timeout=15) and entered.acquire(timeout=15)
        third = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=15)
        assert third.status_code == 429
        assert "decoding 2 large requests" in third.json()["message"]
    finally:
        release.set()
        for sender in senders:
            sender.join(30)
    assert results == [200, 200]  # the two being decoded were answered


def test_a_json_body_over_256_kib_is_refused(strict: ServerThread) -> None:
    url = f"http://127.0.0.1:{strict.running.http_port}{METHOD}GetLastPrices"
    padded = b'{"symbols": ["ACME"]}' + b" " * (256 * 1024)
    reply = httpx.post(url, content=padded, headers={"content-type": "application/json"}, timeout=15)
    assert reply.status_code == 413
    assert (
        httpx.post(url, content=padded[:-100], headers={"content-type": "application/json"}).status_code
        == 200
    )


def test_a_reader_at_full_speed_leaves_the_server_serving_others(strict: ServerThread) -> None:
    """uvicorn's send does not wait while the socket keeps up: a stream read as fast as it is
    made once held the loop for its whole life, and went on after its client left."""
    port = strict.running.http_port
    endless = {"periods": 10**9, "startPrice": 10, "sigma": 0.1, "delta": 1}
    with httpx.Client(timeout=15) as reader:
        with reader.stream("POST", f"http://127.0.0.1:{port}{METHOD}StreamGbmPrices", json=endless) as stream:
            chunks = stream.iter_bytes()
            for _ in range(20):  # read as fast as it comes
                next(chunks)
            other = httpx.get(f"http://127.0.0.1:{port}{GBM}", timeout=15)  # answered meanwhile
            assert other.status_code == 200
            for _ in range(20):
                next(chunks)
    assert strict.tracker.wait_idle(timeout=15), "the stream went on after its reader left"
