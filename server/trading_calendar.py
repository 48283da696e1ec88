"""Timestamps for a path: plain UTC steps, or steps inside trading sessions.

Without a calendar, value i of a path is stamped start + i x step. With one,
the path's clock runs only during sessions: weekdays that are not holidays,
from the session open to the close in the exchange's time zone (so DST moves
the UTC time of the open, not the local one). Step i lands i x step seconds
of session time after the first open at or after the start date, rolling
over to the next session when a session is used up. Timestamps come back as
one int64 array of UTC nanoseconds, not one object per price.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from server.generator import ParameterError

NS = 1_000_000_000


@dataclass(frozen=True)
class TradingCalendar:
    timezone: str = "America/New_York"
    open: dt.time = dt.time(9, 30)
    close: dt.time = dt.time(16, 0)
    weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ParameterError(
                "timezone", f"timezone must be an IANA name such as America/New_York, got {self.timezone!r}"
            ) from None
        if not self.open < self.close:
            raise ParameterError("session", f"session open {self.open} must be before close {self.close}")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ParameterError("weekdays", "weekdays must be a non-empty set of 0 (Monday) to 6 (Sunday)")

    @property
    def session_seconds(self) -> int:
        day = dt.date(2000, 1, 3)
        return int(
            (dt.datetime.combine(day, self.close) - dt.datetime.combine(day, self.open)).total_seconds()
        )

    def is_session_day(self, day: dt.date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def session_opens(self, first: dt.date, count: int) -> np.ndarray:
        """UTC nanoseconds of the opens of the ``count`` session days from ``first`` on."""
        zone = ZoneInfo(self.timezone)
        opens = []
        day = first
        while len(opens) < count:
            if self.is_session_day(day):
                local = dt.datetime.combine(day, self.open, tzinfo=zone)
                opens.append(int(local.timestamp()) * NS)
            day += dt.timedelta(days=1)
            if (day - first).days > 366 * 50 + count * 7:
                raise ParameterError("calendar", "the calendar has no session days")
        return np.array(opens, dtype=np.int64)


def timestamps(
    start: dt.datetime | dt.date, step_seconds: float, n: int, calendar: TradingCalendar | None = None
) -> np.ndarray:
    """UTC nanoseconds of the n values of a path (see the module docstring)."""
    if not (math.isfinite(step_seconds) and step_seconds > 0):
        raise ParameterError("step_seconds", f"step_seconds must be > 0, got {step_seconds!r}")
    offsets = np.arange(n, dtype=np.float64) * step_seconds
    if calendar is None:
        if not isinstance(start, dt.datetime) or start.tzinfo is None:
            raise ParameterError("start_time", "start_time must be a time-zone-aware datetime")
        return int(start.timestamp() * NS) + np.round(offsets * NS).astype(np.int64)
    first = start.date() if isinstance(start, dt.datetime) else start
    length = calendar.session_seconds
    days = np.floor_divide(offsets, length).astype(np.int64)
    within = offsets - days * length
    opens = calendar.session_opens(first, int(days[-1]) + 1 if n else 0)
    return opens[days] + np.round(within * NS).astype(np.int64)
