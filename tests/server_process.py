"""`python -m server` as a child process, its log read line by line as it comes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading

from tests.conftest import REPO_ROOT, http_off


def run_server(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m server ARGS`` run to its end (a start that fails), its output captured."""
    return subprocess.run(
        [python, "-m", "server", *http_off(args)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )


class ServerProcess:
    """The server in a session of its own, so that leaving the ``with`` block
    kills it and every worker it forked, whatever the test saw."""

    def __init__(self, python: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "server", *http_off(args)],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the log, once there are that many."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._ended or len(re.findall(pattern, "".join(self._lines))) >= count, timeout
            )
            matches = list(re.finditer(pattern, "".join(self._lines)))
        assert len(matches) >= count, f"{count} x {pattern!r} not in the log:\n{self.log}"
        return matches[:count]

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code, once the process ended and its whole log was read."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # the server and its workers, if any is left
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
