"""What the server counts: calls, open streams and streamed values."""

from __future__ import annotations

import threading
from collections.abc import Callable


class StreamTracker:
    """Counts calls, open streams and streamed values; safe to read from any thread.

    Tests use ``wait_idle`` and ``wait_for`` to see that a cancelled stream has
    really stopped generating, without sleeping.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.active = 0
        self.started = 0
        self.unary_calls = 0
        self.prices_generated = 0

    def opened(self) -> None:
        with self._cond:
            self.active += 1
            self.started += 1

    def closed(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def unary(self) -> None:
        with self._cond:
            self.unary_calls += 1

    def generated(self, n: int) -> None:
        with self._cond:
            self.prices_generated += n
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[StreamTracker], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no stream is open; False if ``timeout`` seconds pass first."""
        return self.wait_for(lambda t: t.active == 0, timeout)
