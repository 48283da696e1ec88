"""--log-format json: every line the server writes is one JSON object, calls included
(the access log), tracebacks included as a field."""

from __future__ import annotations

import datetime
import json
import logging
import socket
import sys

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from client import MarketDataClient
from server.logs import JsonFormatter
from tests.server_process import ServerProcess
from tests.test_metrics import free_port, grpc_labels, value, wait_for_samples

ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"


def test_json_logs_are_one_object_a_line_with_the_calls_in_them(python):
    metrics_port = free_port()
    args = ("--port", "0", "--log-format", "json", "--metrics-port", str(metrics_port))
    with ServerProcess(python, *args) as server:
        port = server.wait_for(r'"message": "listening on 127\.0\.0\.1:(\d+)"')[0].group(1)
        server.wait_for(rf'"message": "metrics on http://127\.0\.0\.1:{metrics_port}/metrics"')
        with MarketDataClient(f"127.0.0.1:{port}") as md:
            md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
            with pytest.raises(grpc.RpcError):
                md.get_gbm_prices(periods=5, start_price=-1, mu=0.05, sigma=0.3)
        unary = grpc_labels("GetGbmPrices")
        samples = wait_for_samples(  # the command line's --metrics-port serves
            metrics_port,
            lambda s: value(s, "grpc_server_handled_total", **unary, grpc_code="INVALID_ARGUMENT"),
        )
        assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == 1
        assert value(samples, "grpc_server_handled_total", **unary, grpc_code="INVALID_ARGUMENT") == 1
        assert server.stop() == 0
        lines = server.log.splitlines()

    entries = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
        datetime.datetime.strptime(entry["time"], ISO_UTC)
    calls = [e for e in entries if e["logger"] == "server.access"]  # on by default with json
    assert [(c["method"], c["code"]) for c in calls] == [
        ("/marketdata.v1.MarketDataService/GetGbmPrices", "OK"),
        ("/marketdata.v1.MarketDataService/GetGbmPrices", "INVALID_ARGUMENT"),
    ]
    for call in calls:
        assert call["level"] == "INFO"
        assert call["peer"].startswith("ipv4:127.0.0.1:")
        assert isinstance(call["duration"], float) and 0 <= call["duration"] < 60
    assert any(e["message"] == "stopped" for e in entries)


def test_text_logs_carry_no_access_log_unless_asked(python):
    with ServerProcess(python, "--port", "0") as server:
        port = server.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[0].group(1)
        with MarketDataClient(f"127.0.0.1:{port}") as md:
            md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
        assert server.stop() == 0
    assert "server.access" not in server.log
    assert "server.app: stopped" in server.log


def test_a_traceback_is_one_field_of_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed here"
    assert entry["level"] == "ERROR"
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert entry["exc_info"].endswith("ValueError: bad\nthing")


def _call_with_raw_metadata(port: int, name: bytes, value: bytes) -> None:
    """One ListInstruments call over HTTP/2 written by hand (h2), so that a metadata value
    can hold bytes gRPC's own clients refuse to send; returns once the call is answered."""
    config = h2.config.H2Configuration(validate_outbound_headers=False, normalize_outbound_headers=False)
    connection = h2.connection.H2Connection(config)
    connection.initiate_connection()
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/marketdata.v1.MarketDataService/ListInstruments"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (name, value),
    ]
    connection.send_headers(1, headers)
    connection.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)  # an empty request message
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(connection.data_to_send())
        while data := sock.recv(65536):
            events = connection.receive_data(data)
            sock.sendall(connection.data_to_send())
            if any(isinstance(e, h2.events.StreamEnded) for e in events):
                return
    raise AssertionError("the server closed the connection without answering the call")


def test_metadata_that_is_not_utf8_makes_no_traceback_and_is_never_logged(python, tmp_path):
    """gRPC logs such a value, whole, at ERROR with a traceback: once a call for any stranger,
    and the value may be a token that lost a byte. The server keeps it to a DEBUG line."""
    token = "alice-0123456789abcdef"
    (tmp_path / "tokens").write_text(f"alice:{token}\n")
    args = ("--port", "0", "--auth-tokens", str(tmp_path / "tokens"), "--access-log")
    with ServerProcess(python, *args) as server:
        port = int(server.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[0].group(1))
        near_miss = b"Bearer " + token.encode().replace(b"0", b"\xff", 1)
        _call_with_raw_metadata(port, b"authorization", near_miss)
        server.wait_for(r"ListInstruments UNAUTHENTICATED")
        assert server.stop() == 0
    assert "Traceback" not in server.log and "Invalid encoding" not in server.log, server.log
    assert "alice-" not in server.log and "123456789abcdef" not in server.log
