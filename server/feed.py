"""The live feed: runs a Market on the server's clock and stamps each tick.

The Market (server.market) is pure; this module adds wall time. Tests leave
the clock off and call ``advance()`` themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from server.market import Market, MarketConfig, MarketTick

_LOGGER = logging.getLogger(__name__)


class MarketFeed:
    """A Market, the wall time of its last tick, and the task that ticks it."""

    def __init__(
        self, config: MarketConfig, seed: int | None = None, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.market = Market(config, seed)
        self._wall_clock = wall_clock
        self.exchange_time = wall_clock()  # of the last tick (the opening prices at first)
        self._task: asyncio.Task[None] | None = None

    @property
    def config(self) -> MarketConfig:
        return self.market.config

    @property
    def last(self) -> MarketTick:
        return self.market.last

    def advance(self) -> MarketTick:
        """One tick of the market clock, stamped with the current wall time."""
        tick = self.market.tick()
        self.exchange_time = self._wall_clock()
        return tick

    def start(self) -> None:
        """Tick every ``config.wall_interval`` seconds on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="market-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.wall_interval
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.advance()
            if loop.time() - due > interval:
                # Far behind (a stalled process): skip ahead rather than burst.
                _LOGGER.warning("market clock fell behind; resuming from now")
                due = loop.time()
