"""Timestamps for a path: plain UTC steps, or steps inside trading sessions.

Without a calendar, value i of a path is stamped start + i x step. With one,
the path's clock runs only during sessions: weekdays that are not holidays,
from the session open to the close in the exchange's time zone (so DST moves
the UTC time of the open, not the local one). Step i lands i x step seconds
of session time after the first session moment at or after the start,
rolling over to the next session when a session is used up. Timestamps come back as
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


class TimeAxis:
    """UTC nanoseconds of path positions, computed block by block.

    Position i is ``i x step_ns`` after the start: of wall time without a
    calendar, of session time with one (the first session moment at or after
    the start). Integer nanoseconds throughout, so any block split gives the
    same stamps. Session opens are worked out once per day and kept.
    """

    def __init__(self, start_ns: int, step_ns: int, calendar: TradingCalendar | None = None) -> None:
        if step_ns < 1:
            raise ParameterError("step", f"the period must be at least 1 ns, got {step_ns} ns")
        if not -(2**63) <= start_ns < 2**63:
            raise ParameterError("start_time", "start_time is outside the years 1678 to 2262")
        self.start_ns = start_ns
        self.step_ns = step_ns
        self.calendar = calendar
        if calendar is None:
            return
        self._zone = ZoneInfo(calendar.timezone)
        self._session_ns = calendar.session_seconds * NS
        self._next_day, self._lead_ns = self._first_session_moment(start_ns)
        self._opens: list[int] = []
        self._shifts: list[int] = []
        self._opens_array = np.empty(0, dtype=np.int64)
        self._shifts_array = np.empty(0, dtype=np.int64)

    def _first_session_moment(self, start_ns: int) -> tuple[dt.date, int]:
        """The first session day at or after ``start_ns`` and how far into its session that is."""
        cal = self.calendar
        local = dt.datetime.fromtimestamp(start_ns // NS, self._zone)
        day = local.date()
        if cal.is_session_day(day):
            open_ns = int(dt.datetime.combine(day, cal.open, tzinfo=self._zone).timestamp()) * NS
            into = start_ns - open_ns
            if into < self._session_ns:
                return day, max(into, 0)
        return day + dt.timedelta(days=1), 0

    def _extend(self, days: int) -> None:
        """Know the opens of at least ``days`` session days (a year more, so a stream's
        chunks do not each rebuild the arrays)."""
        cal = self.calendar
        day = self._next_day
        scanned = 0
        wanted = days + 256
        while len(self._opens) < wanted:
            if cal.is_session_day(day):
                local = dt.datetime.combine(day, cal.open, tzinfo=self._zone)
                open_ns = int(local.timestamp()) * NS
                if open_ns + self._session_ns >= 2**63:  # the end of int64 nanosecond time
                    if len(self._opens) >= days:
                        break
                    raise ParameterError("periods", "the path would run past the year 2262")
                self._opens.append(open_ns)
                self._shifts.append(int(local.utcoffset().total_seconds()) * NS)
                scanned = 0
            day += dt.timedelta(days=1)
            scanned += 1
            if scanned > 366 + len(cal.holidays):
                raise ParameterError("calendar", "the calendar has no session day in a whole year")
        self._next_day = day
        self._opens_array = np.array(self._opens, dtype=np.int64)
        self._shifts_array = np.array(self._shifts, dtype=np.int64)

    def _days(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        offsets = self._lead_ns + np.arange(first, first + n, dtype=np.int64) * self.step_ns
        days = offsets // self._session_ns
        if n and days[-1] >= len(self._opens):
            self._extend(int(days[-1]) + 1)
        return days, offsets - days * self._session_ns

    def stamps(self, first: int, n: int) -> np.ndarray:
        """UTC nanoseconds of positions ``first`` to ``first + n - 1``."""
        if self.calendar is None:
            return self.start_ns + np.arange(first, first + n, dtype=np.int64) * self.step_ns
        days, within = self._days(first, n)
        return self._opens_array[days] + within

    def local_shifts(self, first: int, n: int) -> np.ndarray:
        """Local time minus UTC of each position, in ns (zeros without a calendar)."""
        if self.calendar is None:
            return np.zeros(n, dtype=np.int64)
        days, _ = self._days(first, n)
        return self._shifts_array[days]

    def check_fits(self, periods: int) -> None:
        """Refuse a path whose last stamp would not fit int64 nanoseconds (after 2262)."""
        span = (periods - 1) * self.step_ns
        if self.calendar is not None:
            cal = self.calendar
            sessions = (self._lead_ns + span) // self._session_ns + 1
            # Calendar days needed, generously: whole weeks of sessions, a spare week, and a
            # week for each holiday that could fall in the way (one costs at most a week).
            first = dt.datetime.fromtimestamp(self.start_ns // NS, dt.UTC).date() - dt.timedelta(days=1)
            holidays = sum(1 for h in cal.holidays if h >= first and h.weekday() in cal.weekdays)
            weeks = -(-sessions // len(cal.weekdays)) + 1 + holidays
            span = weeks * 7 * 86_400 * NS
        if self.start_ns + span >= 2**63:
            raise ParameterError(
                "periods", "the path would run past the year 2262, the end of int64 nanosecond time"
            )


def timestamps(
    start: dt.datetime | dt.date, step_seconds: float, n: int, calendar: TradingCalendar | None = None
) -> np.ndarray:
    """UTC nanoseconds of the n values of a path (see the module docstring)."""
    if not (math.isfinite(step_seconds) and step_seconds > 0):
        raise ParameterError("step_seconds", f"step_seconds must be > 0, got {step_seconds!r}")
    if isinstance(start, dt.datetime):
        if start.tzinfo is None:
            raise ParameterError("start_time", "start_time must be a time-zone-aware datetime")
        start_ns = int(start.timestamp()) * NS + start.microsecond * 1000
    else:
        if calendar is None:
            raise ParameterError("start_time", "a date alone needs a calendar; give a datetime")
        zone = ZoneInfo(calendar.timezone)
        start_ns = int(dt.datetime.combine(start, dt.time(), tzinfo=zone).timestamp()) * NS
    return TimeAxis(start_ns, round(step_seconds * NS), calendar).stamps(0, n)
