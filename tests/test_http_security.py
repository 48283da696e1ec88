"""TLS, mTLS and tokens on the HTTP port: the gRPC port's files and token file, the same
answers, with certificates the test makes."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.tls import TlsOptions
from tests.certificates import TestCA
from tests.conftest import ServerThread

METHOD = "/marketdata.v1.MarketDataService/"
GBM = "/gbm?periods=5&startPrice=70&mu=0.05&sigma=0.3&delta=1"
TOKEN = "desk-0123456789abcdefghij"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def _trusting(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _get(port: int, context: ssl.SSLContext, path: str = GBM) -> httpx.Response:
    with httpx.Client(verify=context, timeout=15) as client:
        return client.get(f"https://localhost:{port}{path}")


def test_tls_serves_https_with_the_grpc_ports_certificate(ca: TestCA) -> None:
    issued = ca.issue("server", "localhost")
    srv = ServerThread(http_port=0, tls=TlsOptions(str(issued.cert), str(issued.key)))
    try:
        port = srv.running.http_port
        assert _get(port, _trusting(ca.cert)).status_code == 200
        with pytest.raises(httpx.TransportError):  # plaintext finds no HTTP there
            httpx.get(f"http://localhost:{port}{GBM}", timeout=15)
        (ca.folder / "other").mkdir()
        other = TestCA(ca.folder / "other", "other CA")
        with pytest.raises(httpx.ConnectError):
            _get(port, _trusting(other.cert))
    finally:
        srv.stop()


def test_mtls_needs_a_client_certificate_signed_by_the_client_ca(ca: TestCA) -> None:
    issued = ca.issue("server", "localhost")
    client = ca.issue("client", "trader", server=False)
    srv = ServerThread(http_port=0, tls=TlsOptions(str(issued.cert), str(issued.key), str(ca.cert)))
    try:
        port = srv.running.http_port
        assert _get(port, _trusting(ca.cert, client.cert, client.key)).status_code == 200
        with pytest.raises(httpx.TransportError):
            _get(port, _trusting(ca.cert))
    finally:
        srv.stop()


def test_renewed_certificate_files_serve_new_https_connections(ca: TestCA, tmp_path: Path) -> None:
    first = ca.issue("server", "localhost")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    srv = ServerThread(http_port=0, tls=TlsOptions(str(cert), str(key)))
    try:
        port = srv.running.http_port
        assert _get(port, _trusting(ca.cert)).status_code == 200
        (tmp_path / "new").mkdir()
        renewed_ca = TestCA(tmp_path / "new", "renewed CA")
        renewed = renewed_ca.issue("server", "localhost")
        for path, data in ((key, renewed.key.read_bytes()), (cert, renewed.cert.read_bytes())):
            staged = path.with_suffix(".new")
            staged.write_bytes(data)
            os.replace(staged, path)
        assert _get(port, _trusting(renewed_ca.cert)).status_code == 200
        with pytest.raises(httpx.ConnectError):
            _get(port, _trusting(ca.cert))
    finally:
        srv.stop()


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerThread]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{TOKEN}\n")
    srv = ServerThread(http_port=0, auth_tokens=str(tokens))
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", GBM, None),
        ("POST", METHOD + "ListInstruments", {}),
        ("POST", METHOD + "StreamGbmPrices", {"periods": 5, "startPrice": 1, "delta": 1}),
        ("GET", "/v1/subscribe", None),
    ],
)
def test_tokens_are_needed_over_http_too(token_server: ServerThread, method, path, body) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{token_server.running.http_port}", timeout=15) as client:
        refused = client.request(method, path, json=body)
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthenticated"
        assert "requires a token" in refused.json()["message"]
        wrong = client.request(method, path, json=body, headers={"authorization": "Bearer nope-0123456789"})
        assert wrong.status_code == 401
        assert "not valid" in wrong.json()["message"]
        if path == "/v1/subscribe":
            headers = {"authorization": f"Bearer {TOKEN}"}
            with client.stream(method, path, headers=headers) as allowed:
                assert allowed.status_code == 200
            return
        allowed = client.request(method, path, json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200, allowed.text
        if method == "POST":  # a stranger's body is never decoded: bad bytes still get 401, not 400
            garbage = client.post(path, content=b"{not json", headers={"content-type": "application/json"})
            assert garbage.status_code == 401
