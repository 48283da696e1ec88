"""--workers N: forked server processes, kept running by the parent that forked them.

The parent creates no gRPC object (gRPC forbids forking once one exists). It
forks the workers, then sleeps in ``sigtimedwait`` with SIGCHLD, SIGTERM and
SIGINT blocked, so no signal is lost between two forks or two looks:

- a worker that dies (crash, SIGKILL, a start-up failure) is reaped at once and
  forked again after a backoff that doubles with each quick death;
- too many deaths in a short time mean a worker cannot run at all, so the
  parent stops the others and gives up instead of restarting forever;
- SIGTERM or SIGINT is passed on to every worker and nobody is restarted any
  more; a worker still running long after its grace is killed.

Every child is waited for, so none is left a zombie.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

_LOGGER = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_LONGEST_SLEEP = 1.0  # seconds: the parent looks at its workers at least this often


@dataclass(frozen=True)
class RestartPolicy:
    """How the parent restarts dead workers, and when it stops trying."""

    first_delay: float = 0.5  # seconds before a worker's first restart
    max_delay: float = 10.0  # the delay doubles with each death, up to this
    healthy_after: float = 10.0  # a worker that lived this long restarts after first_delay again
    max_deaths: int = 5  # this many deaths...
    window: float = 30.0  # ...within this many seconds, and the parent gives up


@dataclass
class _Slot:
    """One of the N workers: its current process, or when to fork it again."""

    index: int
    delay: float
    pid: int | None = None
    started: float = 0.0
    restart_at: float | None = None


def describe_exit(code: int) -> str:
    """``os.waitstatus_to_exitcode``'s result in words: a status or a signal."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


class Supervisor:
    """Forks ``count`` workers running ``work(index)`` (an exit code) and keeps them running."""

    def __init__(
        self,
        count: int,
        work: Callable[[int], int],
        where: str,
        stop_timeout: float,
        policy: RestartPolicy | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        """``where`` ends the log lines about all workers (``on 127.0.0.1:50051``);
        ``stop_timeout`` is how long stopping workers get before they are killed;
        ``on_exit(pid)`` is called for each worker reaped."""
        self.policy = policy or RestartPolicy()
        self.slots = [_Slot(index, self.policy.first_delay) for index in range(count)]
        self.work = work
        self.where = where
        self.stop_timeout = stop_timeout
        self.on_exit = on_exit
        self.deaths: collections.deque[float] = collections.deque()
        self.stop_deadline: float | None = None  # set once stopping begins
        self.killed = False
        self.failed = 0  # workers that did not stop cleanly once stopping began
        self.gave_up = False
        self._mask: set[signal.Signals] = set()

    def run(self) -> int:
        """Serve until every worker stopped: 0 if all stopped cleanly when asked to, else 1."""
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for slot in self.slots:
                self._fork(slot, time.monotonic())
            _LOGGER.info("started %d workers %s", len(self.slots), self.where)
            while self.stop_deadline is None or self._running():
                self._step()
        except BaseException:  # a bug here: the workers must not outlive their parent unnoticed
            for slot in self._running():
                os.kill(slot.pid, signal.SIGTERM)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        if self.gave_up:
            return 1
        _LOGGER.info("all workers stopped%s", f" ({self.failed} failed)" if self.failed else "")
        return 1 if self.failed else 0

    def _running(self) -> list[_Slot]:
        return [slot for slot in self.slots if slot.pid is not None]

    def _step(self) -> None:
        """Reap, restart what is due, then sleep until a signal or the next thing to do."""
        now = time.monotonic()
        for slot in self._running():
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
            if pid:
                self._reaped(slot, os.waitstatus_to_exitcode(status), now)
        if self.stop_deadline is not None and not self._running():
            return
        if self.stop_deadline is None:
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now and self._fork(slot, now):
                    _LOGGER.info("worker %d restarted as pid %d", slot.index, slot.pid)
        elif now >= self.stop_deadline and not self.killed:
            self._kill_the_rest()
        info = signal.sigtimedwait(_SIGNALS, self._sleep(now))
        if info is not None and info.si_signo != signal.SIGCHLD:
            self._stop(signal.Signals(info.si_signo))

    def _sleep(self, now: float) -> float:
        wake = [now + _LONGEST_SLEEP]
        if self.stop_deadline is None:
            wake += [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        elif not self.killed:
            wake.append(self.stop_deadline)
        return max(0.0, min(wake) - now)

    def _fork(self, slot: _Slot, now: float) -> bool:
        """Start ``slot``'s worker; False (counted as a death) if no process could be made."""
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:  # out of memory or processes: like a worker that died at once
            self._died(slot, f"worker {slot.index} could not be forked ({err.strerror})", now)
            return False
        if pid == 0:  # the worker: default signal handling back, then its own server
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
                _end_with(parent)
                code = self.work(slot.index)
            except BaseException:  # a bug: the traceback is what its reader needs
                _LOGGER.exception("worker %d failed", slot.index)
            finally:
                logging.shutdown()
                os._exit(code)
        slot.pid, slot.started, slot.restart_at = pid, now, None
        return True

    def _reaped(self, slot: _Slot, code: int, now: float) -> None:
        pid, slot.pid = slot.pid, None
        if self.on_exit is not None:
            self.on_exit(pid)
        if self.stop_deadline is not None:  # stopping: an exit is expected, only its status counts
            # Killed by the signal passed on: it came before the worker's handlers, so nothing was open.
            clean = code in (0, -signal.SIGTERM, -signal.SIGINT)
            self.failed += not clean
            level = logging.INFO if clean else logging.WARNING
            _LOGGER.log(level, "worker %d (pid %d) %s", slot.index, pid, describe_exit(code))
            return
        self._died(slot, f"worker {slot.index} (pid {pid}) {describe_exit(code)}", now)

    def _died(self, slot: _Slot, what: str, now: float) -> None:
        """Count a death, then restart ``slot`` after its backoff, or give up."""
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - self.policy.window:
            self.deaths.popleft()
        if len(self.deaths) >= self.policy.max_deaths:
            _LOGGER.warning("%s", what)
            self._give_up()
            return
        if now - slot.started >= self.policy.healthy_after:
            slot.delay = self.policy.first_delay
        slot.restart_at = now + slot.delay
        _LOGGER.warning("%s; restarting in %.1f s", what, slot.delay)
        slot.delay = min(2 * slot.delay, self.policy.max_delay)

    def _give_up(self) -> None:
        self.gave_up = True
        _LOGGER.error(
            "giving up: %d worker deaths within %g s (the lines above say why); "
            "stopping the other workers and exiting with status 1",
            len(self.deaths),
            self.policy.window,
        )
        self._stop(signal.SIGTERM)

    def _stop(self, signum: signal.Signals) -> None:
        """Pass ``signum`` to every worker; from the first one on, nobody is restarted."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.stop_timeout
            if not self.gave_up:
                _LOGGER.info("%s: stopping the workers (%d running)", signum.name, len(self._running()))
        for slot in self.slots:
            slot.restart_at = None
            if slot.pid is not None:
                os.kill(slot.pid, signum)

    def _kill_the_rest(self) -> None:
        self.killed = True
        for slot in self._running():
            _LOGGER.error(
                "worker %d (pid %d) still running %g s after it was asked to stop: killing it",
                slot.index,
                slot.pid,
                self.stop_timeout,
            )
            os.kill(slot.pid, signal.SIGKILL)


def _end_with(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the parent dies, even by SIGKILL, so no
    worker serves on as an orphan; then it shuts down gracefully like any other. (Linux; on
    another system this does nothing.)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)
