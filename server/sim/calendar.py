"""Trading calendars: the sessions of an exchange in its own time zone.

A session day is a weekday of the calendar that is not a holiday; its session
runs from the open to the close in the exchange's local time, so daylight
saving moves the UTC time of the open, not the local one.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from zoneinfo import available_timezones

from .checks import ParameterError, quoted

# The most holidays one calendar may list (each costs a lookup per session day).
MAX_HOLIDAYS = 10_000


@functools.cache
def _zone_names() -> frozenset[str]:
    """IANA zone names, without the host-dependent ones ("localtime", "Factory", posix/, right/)."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in ("localtime", "Factory") and not name.startswith(("posix/", "right/"))
    )


@dataclass(frozen=True)
class TradingCalendar:
    timezone: str = "America/New_York"
    open: dt.time = dt.time(9, 30)
    close: dt.time = dt.time(16, 0)
    weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.timezone not in _zone_names():
            raise ParameterError(
                "timezone",
                f"timezone must be an IANA name such as America/New_York, got {quoted(self.timezone)}",
            )
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
