"""The server run as the Kubernetes Deployment runs it: its args, its mounted files.

Everything but three things comes from deploy/k8s as it is: every flag and
value of the container's args, the market file of the ConfigMap, and the
layout the volumes give the files. The three differences, each for a reason:
- the ports are free ones, and the host 127.0.0.1, so the test listens on
  loopback only and never collides with another server;
- the TLS certificate and the tokens are made by the test (git holds none);
- the market file's epoch is moved to a minute ago, so the server does not
  spend a minute catching up the months since the shipped epoch (catching up
  is tested on its own in test_replicas.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import urllib.request
from pathlib import Path

import grpc
import pytest

from client import MarketDataClient
from tests.certificates import TestCA
from tests.deploy_args import deployment_args, flag_value, lay_out_mounts
from tests.server_process import ServerProcess

TOKEN = "ops-0123456789abcdefghij"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _with(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value replaced (the flag must be there once)."""
    flag_value(args, flag)
    changed = list(args)
    changed[changed.index(flag) + 1] = value
    return changed


@pytest.fixture
def pod(python: str, tmp_path: Path):
    """The server started with the Deployment's args over a folder laid out like the pod's mounts."""
    ca = TestCA(tmp_path)
    issued = ca.issue("server", "localhost")
    tokens = tmp_path / "tokens-source"
    tokens.write_text(f"ops:{TOKEN}\n")
    mounts = tmp_path / "etc-marketdata"
    lay_out_mounts(
        mounts,
        {
            "/etc/marketdata/tls/tls.crt": issued.cert,
            "/etc/marketdata/tls/tls.key": issued.key,
            "/etc/marketdata/tokens/tokens": tokens,
        },
    )
    args = deployment_args(mounts)
    market = Path(flag_value(args, "--market"))
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text, count = re.subn(r"(?m)^epoch = \S+", f"epoch = {recent}", market.read_text())
    assert count == 1, "the market file has no epoch line to move"
    market.write_text(text)

    grpc_port, health_port, metrics_port, http_port = _free_ports(4)
    for flag, value in (
        ("--host", "127.0.0.1"),
        ("--port", str(grpc_port)),
        ("--health-port", str(health_port)),
        ("--metrics-port", str(metrics_port)),
        ("--http-port", str(http_port)),
    ):
        args = _with(args, flag, value)
    with ServerProcess(python, *args) as server:
        server.wait_for(rf"listening on 127\.0\.0\.1:{grpc_port}\b")
        yield server, ca, grpc_port, health_port, metrics_port, http_port


def test_the_deployments_command_line_serves_as_the_manifests_expect(pod):
    server, ca, grpc_port, health_port, metrics_port, http_port = pod
    # The probes' port: plaintext health, SERVING.
    with MarketDataClient(f"127.0.0.1:{health_port}", timeout=10) as md:
        assert md.check_health() == "SERVING"
    # Clients: TLS with the CA, and a token of the mounted file; none, and they are refused.
    target = f"localhost:{grpc_port}"
    with MarketDataClient(target, timeout=10, ca_file=str(ca.cert), token=TOKEN) as md:
        symbols = [i.symbol for i in md.list_instruments().instruments]
        assert symbols == ["ACME", "GLOBEX", "INDEX", "RATE"]  # the ConfigMap's market
        assert md.get_last_prices(["ACME"]).prices[0].price > 0
    with MarketDataClient(target, timeout=10, ca_file=str(ca.cert)) as md:
        with pytest.raises(grpc.RpcError) as refused:
            md.get_last_prices()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # HTTPS on the http port, with the same CA and the same tokens.
    context = ssl.create_default_context(cafile=str(ca.cert))
    request = urllib.request.Request(
        f"https://localhost:{http_port}/gbm?periods=5&startPrice=70&mu=0.05&sigma=0.3&delta=1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as reply:
        assert len(json.loads(reply.read())["result"]) == 5
    # The scrape the annotations point at.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    handled = re.findall(r"grpc_server_handled_total\{([^}]*)\} (\S+)", metrics)
    codes = {
        (re.search(r'grpc_method="(\w+)"', labels)[1], re.search(r'grpc_code="(\w+)"', labels)[1])
        for labels, value in handled
        if float(value) > 0
    }
    assert {("ListInstruments", "OK"), ("GetLastPrices", "OK"), ("GetLastPrices", "UNAUTHENTICATED")} <= codes
    # SIGTERM: the drain --grace allows, exit 0; every log line is one JSON object.
    assert server.stop() == 0
    lines = server.log.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(lines) > 3
    assert any(r["logger"] == "server.access" and r.get("code") == "UNAUTHENTICATED" for r in records)
    assert all(TOKEN not in line for line in lines)
