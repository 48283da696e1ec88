"""--workers N: the parent reaps a dead worker and forks it again on the same port,
gives up when workers cannot run, and leaves no child behind."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import select
import signal
import time
from pathlib import Path

from server.app import TEST_WORKER_HOST, ServerOptions, start_server
from server.sim.universe import DEFAULT_MARKET
from server.workers import RestartPolicy, Supervisor
from tests.conftest import call_on_new_connections
from tests.server_process import ServerProcess

LISTENING = r"\[(\d+)\] server\.app: listening on 127\.0\.0\.1:(\d+)"


def test_a_killed_worker_is_restarted_on_the_same_port_and_all_stop_on_sigterm(python):
    args = ("--port", "0", "--workers", "2", "--log-level", "DEBUG", "--grace", "2")
    with ServerProcess(python, *args) as server:
        first = server.wait_for(LISTENING, count=2)
        pids = [int(m.group(1)) for m in first]
        port = first[0].group(2)
        assert first[1].group(2) == port

        os.kill(pids[0], signal.SIGKILL)
        server.wait_for(rf"worker \d \(pid {pids[0]}\) was killed by SIGKILL; restarting in 0\.5 s")
        new = int(server.wait_for(r"worker \d restarted as pid (\d+)")[0].group(1))
        assert new not in pids
        server.wait_for(rf"\[{new}\] server\.app: listening on 127\.0\.0\.1:{port}\n")
        # Each new connection goes to one of the two workers, chosen by the kernel.
        served = f"[{new}] server.servicer: whole path"
        call_on_new_connections(f"127.0.0.1:{port}", lambda: served in server.log)
        assert server.stop() == 0
        log = server.log
        assert served in log, "64 connections and none reached the new worker"
        for pid in (pids[1], new):
            assert f"(pid {pid}) exited with status 0" in log
        assert "all workers stopped\n" in log
        assert "Traceback" not in log
    for pid in (*pids, new):
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} left behind"


def test_workers_that_cannot_start_make_the_parent_give_up(python):
    # Every worker fails to bind (the parent's reservation of the port succeeds).
    env = {**os.environ, TEST_WORKER_HOST: "256.1.1.1"}
    with ServerProcess(python, "--port", "0", "--workers", "2", env=env) as server:
        assert server.wait(timeout=60) == 1
        log = server.log
    assert "Traceback" not in log
    assert len(re.findall("giving up", log)) == 1
    assert re.search(r"ERROR \[\d+\] server\.workers: giving up: 5 worker deaths within 30 s", log)
    failures = re.findall(r"server\.app: worker \d: cannot listen on 256\.1\.1\.1:\d+: (.*)", log)
    assert len(failures) >= 5
    assert set(failures) == {"--host 256.1.1.1 is not a valid IP address"}
    for index in (0, 1):  # each worker's restarts back off: 0.5 s, then 1 s, ...
        death = rf"worker {index} \(pid \d+\) exited with status 1"
        delays = re.findall(rf"{death}; restarting in ([\d.]+) s", log)
        assert delays == ["0.5", "1.0", "2.0", "4.0"][: len(delays)]
    assert len(re.findall(r"worker \d restarted as pid \d+", log)) >= 3
    assert "all workers stopped" not in log


def test_a_worker_started_after_the_market_epoch_is_current_before_it_serves():
    # A restarted worker joins a market that has been ticking since the parent started.
    epoch = time.time() - 50 * DEFAULT_MARKET.wall_interval

    async def start_late() -> int:
        running = await start_server(ServerOptions(port=0, market_seed=1, market_epoch=epoch))
        try:
            return running.servicer.feed.last.sequence  # before the clock's task ever ran
        finally:
            await running.shutdown(0)

    assert asyncio.run(start_late()) >= 50


def test_a_worker_that_cannot_be_forked_counts_as_a_death(monkeypatch, caplog):
    def no_fork() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    policy = RestartPolicy(first_delay=0.01, max_delay=0.04)
    supervisor = Supervisor(2, lambda index: 0, where="nowhere", stop_timeout=1, policy=policy)
    with caplog.at_level(logging.INFO, logger="server.workers"):
        assert supervisor.run() == 1
    messages = [record.getMessage() for record in caplog.records]
    cannot = "could not be forked (Resource temporarily unavailable)"
    assert sum(cannot in message for message in messages) == 5
    assert messages[-1].startswith("giving up: 5 worker deaths within 30 s")


def test_workers_stop_when_their_parent_is_killed(python):
    # SIGKILL leaves the parent no chance to pass anything on: the kernel tells the workers.
    with ServerProcess(python, "--port", "0", "--workers", "2", "--grace", "1") as server:
        pids = [int(m.group(1)) for m in server.wait_for(LISTENING, count=2)]
        handles = [os.pidfd_open(pid) for pid in pids]
        try:
            os.kill(server.proc.pid, signal.SIGKILL)
            for handle, pid in zip(handles, pids, strict=True):
                ended, _, _ = select.select([handle], [], [], 30)  # readable once the process is gone
                assert ended, f"worker {pid} kept serving after its parent died"
        finally:
            for handle in handles:
                os.close(handle)
        server.wait_for(r"shutting down", count=2)  # each drained on its way out
