"""The distribution as someone else installs it: one top-level package, marketdata, whose
server and client work outside this checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SOURCES = ("pyproject.toml", "README.md", "protos", "marketdata", "server", "client")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (generated modules included), offline."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, source / name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (built,) = tmp.glob("*.whl")
    return built


def test_the_wheel_holds_one_top_level_package_with_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"marketdata"}, "no server, client, bench or tests at the top of site-packages"
    for folder in ("server", "client"):
        for module in (REPO_ROOT / folder).rglob("*.py"):
            assert f"marketdata/{module.relative_to(REPO_ROOT).as_posix()}" in names, module
    for static in (REPO_ROOT / "server" / "web" / "static").rglob("*"):  # the live page and its chart library
        if static.is_file():
            assert f"marketdata/{static.relative_to(REPO_ROOT).as_posix()}" in names, static
    for generated in (
        "market_data_pb2.py",
        "market_data_pb2.pyi",
        "market_data_pb2_grpc.py",
        "market_data.binpb",
    ):
        assert f"marketdata/v1/{generated}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "marketdata-server = marketdata.server.app:main" in scripts
    assert "marketdata-client = marketdata.client.cli:main" in scripts


def test_the_installed_server_and_client_work_away_from_the_checkout(wheel, python, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # Run from an empty folder, the installed copy first on the path: nothing of the checkout is seen.
    env = {**os.environ, "PYTHONPATH": str(site)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = subprocess.Popen(
        [python, "-m", "marketdata.server", "--port", "0"],
        cwd=elsewhere,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        for line in server.stderr:
            found = re.search(r"marketdata\.server\.app: listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                port = found.group(1)
                break
        assert port is not None, "the installed server did not start"
        got = subprocess.run(
            [python, "-m", "marketdata.client", "--target", f"127.0.0.1:{port}", "get", "--periods", "5"],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        assert len(json.loads(got.stdout)["result"]) == 5
        where = subprocess.run(
            [
                python,
                "-c",
                "import marketdata.client, marketdata.server.sim; print(marketdata.client.__file__)",
            ],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert Path(where.stdout.strip()).is_relative_to(site)
        helped = subprocess.run(
            [python, "-m", "marketdata.client", "get", "--help"],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Volatility of the variance" in helped.stdout  # the descriptor set with comments came along
    finally:
        server.terminate()
        server.wait(timeout=30)
