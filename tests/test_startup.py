"""Start-up mistakes end the server with one line and no traceback: exit 1 when the
address cannot be served, 2 for a bad argument (a flag, or the --market file)."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from client import MarketDataClient
from server.app import build_parser
from tests.conftest import REPO_ROOT
from tests.server_process import ServerProcess, run_server

WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@WORKERS
def test_a_port_in_use_is_one_line_and_exit_1(python, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_server(python, "--port", str(port), "--workers", workers)
    assert done.returncode == 1
    assert one_line(done).endswith(
        f"server.app: cannot listen on 127.0.0.1:{port}: the port is in use by another process: "
        "choose another --port (0 picks a free one)"
    )


def test_a_health_port_in_use_names_its_own_flag(python):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_server(python, "--port", "0", "--health-port", str(port))
    assert done.returncode == 1
    assert one_line(done).endswith(  # and not "(0 picks a free one)": 0 turns it off
        f"server.app: cannot listen on 127.0.0.1:{port}: the port is in use by another process: "
        "choose another --health-port"
    )


@WORKERS
@pytest.mark.parametrize(
    "host, why",
    [
        ("256.1.1.1", "--host 256.1.1.1 is not a valid IP address"),
        ("192.0.2.1", "--host 192.0.2.1 is not an address of this machine: use one of its own, or 0.0.0.0"),
    ],
)
def test_a_bad_host_is_one_line_and_exit_1(python, workers, host, why):
    done = run_server(python, "--host", host, "--port", "0", "--workers", workers)
    assert done.returncode == 1
    assert one_line(done).endswith(f"server.app: cannot listen on {host}:0: {why}")


def _missing(tmp_path):
    return tmp_path / "nowhere.toml", "cannot read it (No such file or directory)"


def _directory(tmp_path):
    return tmp_path, "cannot read it (Is a directory)"


def _under_a_file(tmp_path):
    # A path through a file: no process can read it, root included (chmod 0 stops only others).
    (tmp_path / "plain").write_text("")
    return tmp_path / "plain" / "market.toml", "cannot read it (Not a directory)"


def _not_toml(tmp_path):
    path = tmp_path / "market.toml"
    path.write_text("[[instrument]\n")
    return path, "not valid TOML"


def _binary(tmp_path):
    path = tmp_path / "market.toml"
    path.write_bytes(b"\xff\xfe\x00")
    return path, "not a TOML file"


def _bad_value(tmp_path):
    path = tmp_path / "market.toml"
    path.write_text('[[instrument]]\nsymbol = "A"\nstart_price = 1\nsigma = -1\n')
    return path, "sigma must be in [0, 10]"


@pytest.mark.parametrize(
    "market",
    [
        _missing,
        _directory,
        _under_a_file,
        _not_toml,
        _binary,
        _bad_value,
    ],
)
def test_a_market_file_that_cannot_be_used_is_one_line_and_exit_2(python, tmp_path, market):
    path, why = market(tmp_path)
    done = run_server(python, "--port", "0", "--market", str(path))
    assert done.returncode == 2
    line = one_line(done)
    assert line.startswith(f"marketdata-server: error: --market {path}: ")
    assert why in line


def test_log_level_takes_any_case(python):
    with ServerProcess(python, "--port", "0", "--log-level", "debug") as server:
        port = server.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[0].group(1)
        with MarketDataClient(f"127.0.0.1:{port}") as md:
            md.get_gbm_prices(periods=5, start_price=70, mu=0.05, sigma=0.3)
        assert server.stop() == 0
        assert " DEBUG " in server.log


def test_the_readme_synopsis_names_every_server_flag():
    readme = (REPO_ROOT / "README.md").read_text()
    synopsis = readme[
        readme.index("    .venv/bin/python -m server [") : readme.index("(also `marketdata-server`")
    ]
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert re.search(rf"[\[ ]{re.escape(flag)}[ \]]", synopsis), (
                    f"{flag} is missing from the synopsis"
                )


@WORKERS
def test_a_metrics_port_in_use_is_one_line_and_exit_1(python, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_server(python, "--port", "0", "--metrics-port", str(port), "--workers", workers)
    assert done.returncode == 1
    assert one_line(done).endswith(
        f"server.app: cannot serve metrics on 127.0.0.1:{port}: the port is in use by another process: "
        "choose another --metrics-port"
    )


@pytest.mark.parametrize(
    "args, why",
    [
        (["--metrics-port", "70000"], "--metrics-port must be in [0, 65535] (0 turns metrics off)"),
        (["--port", "5099", "--metrics-port", "5099"], "--metrics-port must differ from --port"),
        (
            ["--port", "0", "--health-port", "5099", "--metrics-port", "5099"],
            "--metrics-port must differ from --health-port",
        ),
        (
            ["--port", "0", "--http-port", "5099", "--metrics-port", "5099"],
            "--metrics-port must differ from --http-port",
        ),
        (["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
    ],
)
def test_bad_metrics_and_log_flags_are_usage_errors(python, args, why):
    done = run_server(python, *args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"marketdata-server: error: {why}")
    assert "Traceback" not in done.stderr
