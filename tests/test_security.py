"""TLS, mTLS and bearer tokens, against real servers with certificates made by the test."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from client import AsyncMarketDataClient, MarketDataClient
from marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from server import auth
from server.app import ServerOptions, start_server
from server.app import main as server_main
from server.auth import TokenFile, TokenFileError, parse_tokens
from server.net import is_loopback
from server.tls import CertificateFiles, TlsFileError, TlsOptions
from tests.certificates import TestCA
from tests.conftest import REPO_ROOT, ServerThread
from tests.server_process import ServerProcess

TOKEN = "alice-0123456789abcdef"
OTHER_TOKEN = "bob-fedcba9876543210"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def tls_server(ca: TestCA) -> Iterator[ServerThread]:
    issued = ca.issue("server", "localhost")
    srv = ServerThread(tls=TlsOptions(str(issued.cert), str(issued.key)))
    yield srv
    srv.stop()


@pytest.fixture
def mtls_server(ca: TestCA) -> Iterator[ServerThread]:
    issued = ca.issue("server", "localhost")
    srv = ServerThread(tls=TlsOptions(str(issued.cert), str(issued.key), str(ca.cert)))
    yield srv
    srv.stop()


def _token_file(folder: Path, text: str) -> Path:
    path = folder / "tokens"
    path.write_text(text)
    return path


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(auth_tokens=str(_token_file(tmp_path, f"# traders\nalice:{TOKEN}\n")))
    yield srv
    srv.stop()


def _replace(path: Path, data: bytes) -> None:
    """Swap a file's content in one step, as a renewal tool or Kubernetes does."""
    staged = path.with_suffix(".new")
    staged.write_bytes(data)
    os.replace(staged, path)


def _call(target: str, **security: object) -> grpc.StatusCode:
    """The status of one small GetGbmPrices call with these client settings."""
    with MarketDataClient(target, timeout=10, **security) as md:
        try:
            path = md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
        except grpc.RpcError as error:
            return error.code()
    assert len(path.prices) == 5
    return grpc.StatusCode.OK


# --- TLS ---------------------------------------------------------------------------------


def test_a_tls_server_serves_a_client_that_trusts_its_ca(tls_server, ca):
    assert _call(f"localhost:{tls_server.running.port}", ca_file=str(ca.cert)) == grpc.StatusCode.OK


def test_a_tls_server_refuses_plaintext_and_clients_that_do_not_trust_it(tls_server, tmp_path):
    target = f"localhost:{tls_server.running.port}"
    assert _call(target) == grpc.StatusCode.UNAVAILABLE  # plaintext
    stranger = TestCA(tmp_path, "stranger CA")
    assert _call(target, ca_file=str(stranger.cert)) == grpc.StatusCode.UNAVAILABLE
    assert _call(target, tls=True) == grpc.StatusCode.UNAVAILABLE  # system roots do not know the test CA


def test_the_async_client_speaks_tls_with_a_token(ca, tmp_path):
    issued = ca.issue("server", "localhost")
    srv = ServerThread(
        tls=TlsOptions(str(issued.cert), str(issued.key)),
        auth_tokens=str(_token_file(tmp_path, f"alice:{TOKEN}\n")),
    )
    target = f"localhost:{srv.running.port}"

    async def scenario() -> tuple[list[str], grpc.StatusCode]:
        async with AsyncMarketDataClient(target, ca_file=str(ca.cert), token=TOKEN) as md:
            last = await md.get_last_prices(["ACME"])
        async with AsyncMarketDataClient(target, ca_file=str(ca.cert)) as md:
            try:
                await md.get_last_prices(["ACME"])
            except grpc.aio.AioRpcError as error:
                return [p.symbol for p in last.prices], error.code()
        return [p.symbol for p in last.prices], grpc.StatusCode.OK

    try:
        assert asyncio.run(scenario()) == (["ACME"], grpc.StatusCode.UNAUTHENTICATED)
    finally:
        srv.stop()


def test_mtls_needs_a_client_certificate_from_the_trusted_ca(mtls_server, ca, tmp_path):
    target = f"localhost:{mtls_server.running.port}"
    alice = ca.issue("alice", "alice", server=False)
    assert _call(target, ca_file=str(ca.cert), cert_file=str(alice.cert), key_file=str(alice.key)) == (
        grpc.StatusCode.OK
    )
    assert _call(target, ca_file=str(ca.cert)) == grpc.StatusCode.UNAVAILABLE  # no certificate
    (tmp_path / "rogue").mkdir()
    rogue = TestCA(tmp_path / "rogue", "rogue CA").issue("mallory", "mallory", server=False)
    assert _call(target, ca_file=str(ca.cert), cert_file=str(rogue.cert), key_file=str(rogue.key)) == (
        grpc.StatusCode.UNAVAILABLE
    )


def test_renewed_certificate_files_serve_new_connections_and_keep_open_streams(ca, tmp_path):
    first = ca.issue("server", "localhost")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    srv = ServerThread(tls=TlsOptions(str(cert), str(key)), market_clock=False)
    try:
        target = f"localhost:{srv.running.port}"
        old_client = MarketDataClient(target, ca_file=str(ca.cert))
        subscription = old_client.subscribe(["ACME"])
        events = iter(subscription)
        assert next(events).HasField("snapshot")

        (tmp_path / "new").mkdir()
        renewed_ca = TestCA(tmp_path / "new", "renewed CA")
        renewed = renewed_ca.issue("server", "localhost")
        _replace(key, renewed.key.read_bytes())
        _replace(cert, renewed.cert.read_bytes())

        # A new connection gets the new certificate: only the new CA's clients accept it.
        assert _call(target, ca_file=str(renewed_ca.cert)) == grpc.StatusCode.OK
        assert _call(target, ca_file=str(ca.cert)) == grpc.StatusCode.UNAVAILABLE
        assert srv.running.certificates.reloads == 1
        # The stream opened before the renewal goes on, on its old connection.
        srv.advance_market()
        assert next(events).HasField("update")
        subscription.cancel()
        old_client.close()
    finally:
        srv.stop()


def test_a_half_written_renewal_keeps_the_previous_certificate(ca, tmp_path, caplog):
    first = ca.issue("server", "localhost")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    srv = ServerThread(tls=TlsOptions(str(cert), str(key)))
    try:
        target = f"localhost:{srv.running.port}"
        (tmp_path / "new").mkdir()
        other = TestCA(tmp_path / "new", "other CA").issue("server", "localhost")
        with caplog.at_level(logging.WARNING, logger="server.tls"):
            _replace(cert, other.cert.read_bytes())  # the key of the old pair: they do not match
            for _ in range(3):
                assert _call(target, ca_file=str(ca.cert)) == grpc.StatusCode.OK
        warnings = [r for r in caplog.records if r.name == "server.tls"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "still serving the previous certificate" in warnings[0].getMessage()
        assert srv.running.certificates.reloads == 0
        _replace(key, other.key.read_bytes())  # the renewal completes
        assert _call(target, ca_file=str(ca.cert)) == grpc.StatusCode.UNAVAILABLE
        assert srv.running.certificates.reloads == 1
    finally:
        srv.stop()


def test_certificate_files_are_checked_before_the_server_starts(ca, tmp_path):
    good = ca.issue("server", "localhost")
    (tmp_path / "b").mkdir()
    other = TestCA(tmp_path / "b", "b CA").issue("server", "localhost")
    cases = [
        (TlsOptions(str(tmp_path / "missing.pem"), str(good.key)), "--tls-cert"),
        (TlsOptions(str(good.cert), str(other.key)), "not a certificate and its private key"),
        (TlsOptions(str(good.key), str(good.key)), "not a certificate and its private key"),
        (TlsOptions(str(good.cert), str(good.key), str(tmp_path / "nope")), "--tls-client-ca"),
        (TlsOptions(str(good.cert), str(good.key), str(good.key)), "--tls-client-ca"),
    ]
    (tmp_path / "empty").write_text("hello\n")
    cases.append((TlsOptions(str(tmp_path / "empty"), str(good.key)), "not a PEM file"))
    for options, words in cases:
        with pytest.raises(TlsFileError, match=words):
            CertificateFiles(options)


# --- tokens ------------------------------------------------------------------------------


def test_calls_need_a_known_token(token_server):
    target = token_server.target
    assert _call(target, token=TOKEN) == grpc.StatusCode.OK
    with MarketDataClient(target, timeout=10) as md:
        with pytest.raises(grpc.RpcError) as missing:
            md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in missing.value.details()
    with MarketDataClient(target, timeout=10, token=OTHER_TOKEN) as md:
        with pytest.raises(grpc.RpcError) as unknown:
            md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not valid on this server" in unknown.value.details()
    assert OTHER_TOKEN not in unknown.value.details()


@pytest.mark.parametrize(
    "header", ["Basic " + TOKEN, TOKEN, "Bearer", "Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x"]
)
def test_a_malformed_or_near_miss_authorization_is_refused(token_server, header):
    with grpc.insecure_channel(token_server.target) as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetLastPrices(market_data_pb2.GetLastPricesRequest(), metadata=[("authorization", header)])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_every_kind_of_call_is_guarded_before_its_request_is_read(token_server):
    with grpc.insecure_channel(token_server.target) as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        stream = stub.StreamPrices(market_data_pb2.PathRequest(periods=10))
        subscription = stub.Subscribe(market_data_pb2.SubscribeRequest(symbols=["ACME"]))
        managed = stub.ManageSubscription(iter([market_data_pb2.SubscriptionRequest()]))
        for call in (stream, subscription, managed):
            with pytest.raises(grpc.RpcError) as refused:
                next(call)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Bytes that are no request at all are refused for the token, not decoded.
        raw = channel.unary_unary("/marketdata.v1.MarketDataService/GetPrices")
        with pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff\xff\xff")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_stay_open_without_a_token(token_server):
    with grpc.insecure_channel(token_server.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(answers).list_services_response.service}
        assert "marketdata.v1.MarketDataService" in names


def test_a_changed_token_file_is_picked_up_without_a_restart(token_server, tmp_path, caplog):
    target = token_server.target
    path = tmp_path / "tokens"
    assert _call(target, token=TOKEN) == grpc.StatusCode.OK
    assert _call(target, token=OTHER_TOKEN) == grpc.StatusCode.UNAUTHENTICATED
    _replace(path, f"bob:{OTHER_TOKEN}\n".encode())  # alice revoked, bob added
    assert _call(target, token=OTHER_TOKEN) == grpc.StatusCode.OK
    assert _call(target, token=TOKEN) == grpc.StatusCode.UNAUTHENTICATED
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="server.auth"):
        _replace(path, b"bob:short\n")  # invalid: the tokens read before stay in force
        assert _call(target, token=OTHER_TOKEN) == grpc.StatusCode.OK
        assert _call(target, token=OTHER_TOKEN) == grpc.StatusCode.OK
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.auth"]
    assert len(warnings) == 1 and "stay in force" in warnings[0], warnings
    assert "short" not in warnings[0]


def test_the_log_names_each_peer_once_and_never_a_token(token_server, caplog):
    # Both clients share one connection (gRPC pools equal channels): one peer, two outcomes.
    with caplog.at_level(logging.INFO, logger="server.auth"):
        with MarketDataClient(token_server.target, timeout=10, token=TOKEN) as md:
            for _ in range(3):
                md.get_last_prices()
        with MarketDataClient(token_server.target, timeout=10, token=OTHER_TOKEN) as md:
            for _ in range(3):
                with pytest.raises(grpc.RpcError):
                    md.get_last_prices()
    lines = [r.getMessage() for r in caplog.records if r.name == "server.auth"]
    assert len(lines) == 2, lines
    assert "calls as alice" in lines[0]
    assert "refused" in lines[1] and "ipv4:127.0.0.1:" in lines[1]
    assert all(TOKEN not in line and OTHER_TOKEN not in line for line in lines)


def test_strangers_on_many_connections_get_a_few_log_lines_a_minute(token_server, caplog, monkeypatch):
    minute = [0.0]
    monkeypatch.setattr(auth, "_now", lambda: minute[0] * 60)

    def refused_on_new_connections(count: int) -> None:
        for _ in range(count):  # a channel of its own: a new connection, so a new peer each time
            with MarketDataClient(
                token_server.target,
                timeout=10,
                token=OTHER_TOKEN,
                options=[("grpc.use_local_subchannel_pool", 1)],
            ) as md:
                with pytest.raises(grpc.RpcError):
                    md.get_last_prices()

    with caplog.at_level(logging.WARNING, logger="server.auth"):
        refused_on_new_connections(3 * auth.REFUSAL_LINES_PER_MINUTE)
        lines = [r.getMessage() for r in caplog.records if r.name == "server.auth"]
        assert len(lines) == auth.REFUSAL_LINES_PER_MINUTE, lines
        minute[0] += 1
        refused_on_new_connections(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "server.auth"]
    assert len(lines) == auth.REFUSAL_LINES_PER_MINUTE + 1
    assert (
        f"({2 * auth.REFUSAL_LINES_PER_MINUTE} more refusals since the last line were not logged)"
        in lines[-1]
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("short\n", "16 to 4096 characters"),
        ("alice:has space in it here\n", "may hold only"),
        (f"al ice:{TOKEN}\n", "a name before ':'"),
        (f"a:{TOKEN}\na:{OTHER_TOKEN}\n", "used twice"),
        (f"a:{TOKEN}\nb:{TOKEN}\n", "the same token as 'a'"),
    ],
)
def test_a_bad_token_file_names_its_line_and_never_the_token(text, words):
    with pytest.raises(TokenFileError, match=words) as bad:
        parse_tokens(text, "tokens.txt")
    assert "tokens.txt" in str(bad.value)
    assert TOKEN not in str(bad.value) and OTHER_TOKEN not in str(bad.value)


def test_a_token_file_names_tokens_by_name_or_line(tmp_path):
    path = _token_file(tmp_path, f"\n# comment\n{TOKEN}\nbob:{OTHER_TOKEN}\n")
    tokens = TokenFile(str(path))
    assert tokens.name_of(TOKEN) == "line-3"
    assert tokens.name_of(OTHER_TOKEN) == "bob"
    assert tokens.name_of("x" * 20) is None
    with pytest.raises(TokenFileError, match="no tokens"):
        TokenFile(str(_token_file(tmp_path, "# none yet\n")))


def test_a_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    path = tmp_path / "tokens"
    path.write_bytes(b"\xef\xbb\xbf" + f"alice:{TOKEN}\r\nbob:{OTHER_TOKEN}\r\n".encode())
    tokens = TokenFile(str(path))
    assert tokens.name_of(TOKEN) == "alice" and tokens.name_of(OTHER_TOKEN) == "bob"


def test_a_token_file_too_long_to_read_whole_is_refused_not_cut(tmp_path):
    """A file past the size read must not be parsed as far as the read went: its last line
    would be the first characters of a token, and those would open the server."""
    size = auth.MAX_TOKENS * (auth.MAX_TOKEN_CHARS + 70)  # the most the server reads
    line = f"alice:{TOKEN}\n"
    comment = "#" + "x" * 98 + "\n"
    text = line + comment * ((size - len(line)) // len(comment))
    text += "#" * (size - len(text) - 21) + "\n"  # 20 characters left: 'bob:' and 16 of its token
    path = tmp_path / "tokens"
    path.write_text(text + f"bob:{OTHER_TOKEN}x\n")
    with pytest.raises(TokenFileError, match="longer than") as bad:
        TokenFile(str(path))
    assert OTHER_TOKEN[:16] not in str(bad.value)


def test_a_token_file_that_disappears_keeps_its_tokens_with_one_warning(tmp_path, caplog):
    path = _token_file(tmp_path, f"alice:{TOKEN}\n")
    tokens = TokenFile(str(path))
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="server.auth"):
        assert tokens.name_of(TOKEN) == "alice"
        assert tokens.name_of(TOKEN) == "alice"
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.auth"]
    assert len(warnings) == 1 and "cannot read it" in warnings[0], warnings
    _token_file(tmp_path, f"bob:{OTHER_TOKEN}\n")  # back, with other tokens: read again
    assert tokens.name_of(OTHER_TOKEN) == "bob" and tokens.name_of(TOKEN) is None


def test_a_fifo_or_a_device_in_place_of_a_file_is_refused_without_hanging(ca, tmp_path):
    """Opening a FIFO waits for a writer: at start the server never started, and a token
    file swapped for one at run time would have stopped the event loop for good."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    good = ca.issue("server", "localhost")
    with pytest.raises(TokenFileError, match="cannot read it \\(not a regular file\\)"):
        TokenFile(str(fifo))
    with pytest.raises(TokenFileError, match="not a regular file"):
        TokenFile("/dev/zero")
    with pytest.raises(TlsFileError, match="--tls-cert .*: cannot read it \\(not a regular file\\)"):
        CertificateFiles(TlsOptions(str(fifo), str(good.key)))
    path = _token_file(tmp_path, f"alice:{TOKEN}\n")
    tokens = TokenFile(str(path))
    path.unlink()
    os.mkfifo(path)  # swapped while serving: the tokens read before stay
    assert tokens.name_of(TOKEN) == "alice"


def test_tokens_over_plaintext_off_loopback_need_allow_insecure():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")
    with pytest.raises(ValueError, match="--allow-insecure"):
        ServerOptions(host="0.0.0.0", auth_tokens="tokens").check_security()
    ServerOptions(host="0.0.0.0", auth_tokens="tokens", allow_insecure=True).check_security()
    ServerOptions(host="127.0.0.1", auth_tokens="tokens").check_security()
    ServerOptions(host="0.0.0.0", auth_tokens="tokens", tls=TlsOptions("c", "k")).check_security()


# --- the command line --------------------------------------------------------------------


def _cli(python: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARKETDATA_")}
    return subprocess.run(
        [python, "-m", "client", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
    )


@pytest.fixture
def guarded_server(ca: TestCA, tmp_path: Path) -> Iterator[ServerThread]:
    """TLS, tokens, and a plaintext health port, as the Kubernetes manifests run it."""
    issued = ca.issue("server", "localhost")
    with socket.socket() as probe:  # a free port for the health service
        probe.bind(("127.0.0.1", 0))
        health_port = probe.getsockname()[1]
    srv = ServerThread(
        tls=TlsOptions(str(issued.cert), str(issued.key)),
        auth_tokens=str(_token_file(tmp_path, f"alice:{TOKEN}\n")),
        health_port=health_port,
    )
    yield srv
    srv.stop()


def test_the_cli_reads_tls_and_the_token_from_flags_or_the_environment(python, guarded_server, ca):
    target = f"localhost:{guarded_server.running.port}"
    get = ("get", "--periods", "3", "--seed", "7")
    by_flags = _cli(python, "--target", target, "--tls-ca", str(ca.cert), "--token", TOKEN, *get)
    assert by_flags.returncode == 0, by_flags.stderr
    by_environment = _cli(
        python, "--target", target, *get, env={"MARKETDATA_TLS_CA": str(ca.cert), "MARKETDATA_TOKEN": TOKEN}
    )
    assert by_environment.returncode == 0, by_environment.stderr
    assert json.loads(by_flags.stdout) == json.loads(by_environment.stdout)
    assert len(json.loads(by_flags.stdout)["result"]) == 3


def test_the_cli_says_what_is_missing(python, guarded_server, ca, tmp_path):
    target = f"localhost:{guarded_server.running.port}"
    no_token = _cli(python, "--target", target, "--tls-ca", str(ca.cert), "get", "--periods", "3")
    assert no_token.returncode == 1
    assert no_token.stderr.startswith("error: the server refused the call: this server requires a token")
    assert no_token.stdout == ""
    plaintext = _cli(python, "--target", target, "--token", TOKEN, "--timeout", "5", "get")
    assert plaintext.returncode == 1
    assert "If it serves TLS, add --tls-ca FILE" in plaintext.stderr
    missing = _cli(python, "--target", target, "--tls-ca", str(tmp_path / "nope.pem"), "get")
    assert missing.returncode == 2
    assert "error: --tls-ca " in missing.stderr and "nope.pem: cannot read it" in missing.stderr
    by_variable = _cli(
        python, "--target", target, "get", env={"MARKETDATA_TLS_CA": str(tmp_path / "nope.pem")}
    )
    assert by_variable.returncode == 2
    assert (
        "error: MARKETDATA_TLS_CA " in by_variable.stderr and "nope.pem: cannot read it" in by_variable.stderr
    )
    half = _cli(python, "--target", target, "--tls-ca", str(ca.cert), "--tls-cert", str(ca.cert), "get")
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
    for done in (no_token, plaintext, missing, by_variable, half):
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "token", [f"Bearer {TOKEN}", f"{TOKEN}\n", f"\ufeff{TOKEN}", f"t\u00f8{TOKEN}", f"{TOKEN}\x00", ""]
)
def test_a_token_gRPC_could_not_send_is_refused_before_any_call(token):
    with pytest.raises(ValueError, match="^token: ") as bad:
        MarketDataClient("127.0.0.1:1", token=token)
    assert TOKEN not in str(bad.value)


def test_the_cli_says_a_token_cannot_be_sent_in_one_line(python):
    """A token with a byte order mark (or any character outside a bearer token's) is a bad
    argument, not a call that fails with INTERNAL under gRPC's own error lines."""
    done = _cli(python, "--target", "127.0.0.1:1", "get", env={"MARKETDATA_TOKEN": f"\ufeff{TOKEN}"})
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("marketdata-client: error: MARKETDATA_TOKEN: give the token itself"), last
    assert "Invalid metadata" not in done.stderr and "validate_metadata" not in done.stderr
    assert TOKEN not in done.stderr


def test_tls_files_that_hold_the_wrong_thing_are_refused_before_any_call(ca, tmp_path):
    issued = ca.issue("client", "alice", server=False)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    cases = [
        ({"ca_file": str(issued.key)}, "ca_file .*: not a certificate in PEM"),
        ({"ca_file": str(empty)}, "ca_file .*: not a certificate in PEM"),
        ({"ca_file": str(ca.cert), "cert_file": str(issued.key), "key_file": str(issued.key)}, "cert_file"),
        ({"ca_file": str(ca.cert), "cert_file": str(issued.cert), "key_file": str(issued.cert)}, "key_file"),
    ]
    for files, words in cases:
        with pytest.raises(ValueError, match=words):
            MarketDataClient("localhost:1", **files)


def test_the_cli_says_a_ca_file_holds_no_certificate_in_one_line(python, ca):
    issued = ca.issue("client", "alice", server=False)
    done = _cli(python, "--target", "localhost:1", "health", env={"MARKETDATA_TLS_CA": str(issued.key)})
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith("not a certificate in PEM (no line with '-----BEGIN CERTIFICATE-----')"), last
    assert "Handshaker" not in done.stderr and "Traceback" not in done.stderr


def test_health_answers_on_the_plaintext_port_and_on_tls_without_a_token(python, guarded_server, ca):
    running = guarded_server.running
    plain = _cli(python, "--target", f"127.0.0.1:{running.health_port}", "health")
    assert (plain.returncode, plain.stdout) == (0, "SERVING\n"), plain.stderr
    secure = _cli(python, "--target", f"localhost:{running.port}", "--tls-ca", str(ca.cert), "health")
    assert (secure.returncode, secure.stdout) == (0, "SERVING\n"), secure.stderr
    # The health port serves nothing else: not prices, not reflection.
    with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetLastPrices(
                market_data_pb2.GetLastPricesRequest(), metadata=[("authorization", f"Bearer {TOKEN}")]
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    unknown = _cli(python, "--target", f"127.0.0.1:{running.health_port}", "health", "--service", "nope")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the README's recipe needs the openssl command")
def test_the_readme_openssl_recipe_makes_files_that_serve_mtls(tmp_path):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### TLS and mutual TLS") :]
    recipe = section[
        section.index("```sh\n") + len("```sh\n") : section.index("```\n", section.index("```sh"))
    ]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    srv = ServerThread(
        tls=TlsOptions(str(tmp_path / "server.crt"), str(tmp_path / "server.key"), str(tmp_path / "ca.crt"))
    )
    try:
        target = f"localhost:{srv.running.port}"
        ca, cert, key = (str(tmp_path / name) for name in ("ca.crt", "alice.crt", "alice.key"))
        assert _call(target, ca_file=ca, cert_file=cert, key_file=key) == grpc.StatusCode.OK
        assert (
            _call(f"127.0.0.1:{srv.running.port}", ca_file=ca, cert_file=cert, key_file=key)
            == grpc.StatusCode.OK
        )
        assert _call(target, ca_file=ca) == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop()


def _server(python: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """``python -m server FLAGS`` run to its end: these starts all fail before listening."""
    return subprocess.run(
        [python, "-m", "server", "--port", "0", "--http-port", "0", *flags],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_mistakes_in_security_flags_are_one_line_and_exit_2(ca, tmp_path, capsys):
    good = ca.issue("server", "localhost")
    short = _token_file(tmp_path, "alice:short\n")
    cases = [
        (("--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(good.key)), "--tls-cert"),
        (("--tls-cert", str(good.cert)), "--tls-cert and --tls-key go together"),
        (("--tls-client-ca", str(ca.cert)), "--tls-client-ca needs --tls-cert and --tls-key"),
        (("--tls-cert", str(good.cert), "--tls-key", str(ca.cert)), "not a certificate and its private key"),
        (("--auth-tokens", str(short)), "line 1: a token must have 16 to 4096 characters"),
        (("--auth-tokens", str(tmp_path / "none")), "cannot read it"),
        (("--host", "0.0.0.0", "--auth-tokens", str(short)), "--allow-insecure"),
        (("--health-port", "70000"), "--health-port must be in"),
        (("--max-connections", "0"), "--max-connections must be >= 1"),
    ]
    for flags, words in cases:
        with pytest.raises(SystemExit) as stopped:  # the command line's main, as `python -m server` runs it
            server_main(["--port", "0", *flags])
        stderr = capsys.readouterr().err
        assert stopped.value.code == 2, (flags, stderr)
        assert words in stderr, (flags, stderr)
        assert "Traceback" not in stderr
        assert "short" not in stderr.replace("--auth-tokens", "")  # the token is never shown


def test_plaintext_off_loopback_is_served_with_a_warning(caplog):
    async def start_and_stop() -> None:
        running = await start_server(ServerOptions(host="0.0.0.0", port=0, market_clock=False))
        await running.shutdown(0)

    with caplog.at_level(logging.WARNING, logger="server.app"):
        asyncio.run(start_and_stop())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("serving plaintext on 0.0.0.0" in w and "--tls-cert" in w for w in warnings), warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="server.app"):
        srv = ServerThread()  # loopback: no warning
        srv.stop()
    assert not [r for r in caplog.records if "plaintext" in r.getMessage()]


def test_workers_each_serve_tls_and_check_tokens(python, ca, tmp_path):
    issued = ca.issue("server", "localhost")
    tokens = _token_file(tmp_path, f"alice:{TOKEN}\n")
    flags = ("--port", "0", "--workers", "2", "--tls-cert", str(issued.cert), "--tls-key", str(issued.key))
    with ServerProcess(python, *flags, "--auth-tokens", str(tokens)) as server:
        (first, second) = server.wait_for(r"\[(\d+)\] server\.app: listening on 127\.0\.0\.1:(\d+)", count=2)
        assert first[2] == second[2] and first[1] != second[1]  # two workers, one port
        target = f"localhost:{first[2]}"
        # Separate connections, so the kernel may hand them to either worker: each answers alike.
        options = [("grpc.use_local_subchannel_pool", 1)]
        for _ in range(4):
            with MarketDataClient(
                target, timeout=10, ca_file=str(ca.cert), token=TOKEN, options=options
            ) as md:
                assert md.check_health() == "SERVING"
                assert len(md.get_last_prices(["ACME"]).prices) == 1
            with MarketDataClient(target, timeout=10, ca_file=str(ca.cert), options=options) as md:
                with pytest.raises(grpc.RpcError) as refused:
                    md.get_last_prices()
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert server.stop() == 0
