"""Timestamps of path positions: plain UTC steps, or steps inside trading sessions.

Without a calendar, value i of a path is stamped start + i x step. With one,
the path's clock runs only during sessions (see ``calendar``): step i lands
i x step of session time after the first session moment at or after the
start, rolling over to the next session when a session is used up.
Timestamps come back as one int64 array of UTC nanoseconds, not one object
per value.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np

from .calendar import TradingCalendar
from .checks import ParameterError

NS = 1_000_000_000

_INT64_END = 2**63


class TimeAxis:
    """UTC nanoseconds of path positions, computed block by block.

    Position i is ``i x step_ns`` after the start: of wall time without a
    calendar, of session time with one (from the first session moment at or
    after the start). Each session lasts from its open to its close in UTC,
    so on the day a clock change falls inside a session, that session is an
    hour shorter or longer. Integer nanoseconds throughout, so any block split
    gives the same stamps. Sessions are worked out once per day and kept.
    """

    def __init__(self, start_ns: int, step_ns: int, calendar: TradingCalendar | None = None) -> None:
        if step_ns < 1:
            raise ParameterError("step", f"the period must be at least 1 ns, got {step_ns} ns")
        if not -_INT64_END <= start_ns < _INT64_END:
            raise ParameterError("start_time", "start_time is outside the years 1678 to 2262")
        self.start_ns = start_ns
        self.step_ns = step_ns
        self.calendar = calendar
        if calendar is None:
            return
        self._zone = ZoneInfo(calendar.timezone)
        self._session_ns = calendar.session_seconds * NS
        # Per session day: UTC open, session time elapsed at its open and at its close,
        # the local offset at the open, when it changes (if it does) and to what.
        self._columns: tuple[list[int], ...] = ([], [], [], [], [], [])
        self._arrays = tuple(np.empty(0, dtype=np.int64) for _ in self._columns)
        self._elapsed = 0
        day = dt.datetime.fromtimestamp(start_ns // NS, self._zone).date()
        while True:
            day = self._session_day(day)
            open_ns, close_ns, *_ = self._session(day)
            if start_ns < close_ns:
                break
            day += dt.timedelta(days=1)
        if open_ns < -_INT64_END:
            raise ParameterError(
                "start_time", "with a calendar, start_time must be after the first session of 1677-09-22"
            )
        self._next_day = day
        self._lead_ns = max(0, start_ns - open_ns)
        self._last_close = -_INT64_END

    def _session_day(self, day: dt.date) -> dt.date:
        """The first session day at or after ``day``."""
        for _ in range(367 + len(self.calendar.holidays)):
            if self.calendar.is_session_day(day):
                return day
            day += dt.timedelta(days=1)
        raise ParameterError("calendar", "the calendar has no session day in a whole year")

    def _offset_ns(self, utc_seconds: int) -> int:
        return int(dt.datetime.fromtimestamp(utc_seconds, self._zone).utcoffset().total_seconds()) * NS

    def _session(self, day: dt.date) -> tuple[int, int, int, int, int]:
        """UTC open and close of ``day``'s session, the local offset at the open, the UTC
        moment it changes inside the session (or the int64 end) and the offset after."""
        cal = self.calendar
        open_s = int(dt.datetime.combine(day, cal.open, tzinfo=self._zone).timestamp())
        close_s = max(open_s, int(dt.datetime.combine(day, cal.close, tzinfo=self._zone).timestamp()))
        before, after = self._offset_ns(open_s), self._offset_ns(close_s)
        switch = _INT64_END - 1
        if before != after:  # a clock change inside the session: find its second
            low, high = open_s, close_s
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if self._offset_ns(middle) == after else (middle, high)
            switch = high * NS
        return open_s * NS, close_s * NS, before, switch, after

    def _extend(self, offset: int) -> None:
        """Know the sessions until ``offset`` ns of session time, and a year more, so a
        stream's chunks do not each rebuild the arrays."""
        opens, starts, ends, before, switches, after = self._columns
        wanted = len(opens) + 256
        day = self._next_day
        while self._elapsed <= offset or len(opens) < wanted:
            day = self._session_day(day)
            open_ns, close_ns, offset_before, switch, offset_after = self._session(day)
            day += dt.timedelta(days=1)
            if close_ns >= _INT64_END:  # the end of int64 nanosecond time
                if self._elapsed > offset:
                    break
                raise ParameterError("periods", "the path would run past the year 2262")
            # A day the zone skipped (Pacific/Apia, 2011-12-30) maps onto the next one:
            # a session never starts before the last one closed.
            open_ns = max(open_ns, self._last_close)
            if close_ns <= open_ns:
                continue
            self._last_close = close_ns
            opens.append(open_ns)
            starts.append(self._elapsed)
            self._elapsed += close_ns - open_ns
            ends.append(self._elapsed)
            before.append(offset_before)
            switches.append(switch)
            after.append(offset_after)
        self._next_day = day
        self._arrays = tuple(np.array(column, dtype=np.int64) for column in self._columns)

    def _locate(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each position's session (index) and UTC stamp."""
        offsets = self._lead_ns + np.arange(first, first + n, dtype=np.int64) * self.step_ns
        if n and offsets[-1] >= self._elapsed:
            self._extend(int(offsets[-1]))
        opens, starts, ends = self._arrays[:3]
        sessions = np.searchsorted(ends, offsets, side="right")  # empty sessions are skipped
        return sessions, opens[sessions] + (offsets - starts[sessions])

    def stamps(self, first: int, n: int) -> np.ndarray:
        """UTC nanoseconds of positions ``first`` to ``first + n - 1``."""
        if self.calendar is None:
            return self.start_ns + np.arange(first, first + n, dtype=np.int64) * self.step_ns
        return self._locate(first, n)[1]

    def utc_of_local(self, local_ns: np.ndarray) -> np.ndarray:
        """The UTC instants of local wall-clock times (whole seconds; the first of two
        when the clock repeats). One zone lookup each: for the few starts of 1d bars."""
        if self.calendar is None:
            return np.asarray(local_ns, dtype=np.int64)
        epoch = dt.datetime(1970, 1, 1)
        return np.array(
            [
                int((epoch + dt.timedelta(seconds=t // NS)).replace(tzinfo=self._zone).timestamp()) * NS
                for t in np.asarray(local_ns).tolist()
            ],
            dtype=np.int64,
        )

    def local_shifts(self, first: int, n: int) -> np.ndarray:
        """Local time minus UTC of each position, in ns (zeros without a calendar)."""
        return self.stamps_and_shifts(first, n)[1]

    def stamps_and_shifts(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``stamps`` and ``local_shifts`` of the same positions, locating them once (bars need both)."""
        if self.calendar is None:
            return self.stamps(first, n), np.zeros(n, dtype=np.int64)
        sessions, stamps = self._locate(first, n)
        before, switches, after = self._arrays[3:]
        return stamps, np.where(stamps >= switches[sessions], after[sessions], before[sessions])

    def check_fits(self, periods: int) -> None:
        """Refuse a path whose last stamp would not fit int64 nanoseconds (after 2262)."""
        span = (periods - 1) * self.step_ns
        if self.calendar is not None:
            cal = self.calendar
            if self._lead_ns + span >= _INT64_END:  # session time itself, counted in int64 ns
                raise ParameterError(
                    "periods",
                    "the path would run past the year 2262: more than 292 years of session time, "
                    "beyond int64 nanoseconds",
                )
            sessions = (self._lead_ns + span) // self._session_ns + 1
            # Calendar days needed, generously: whole weeks of sessions, a spare week, and a
            # week for each holiday that could fall in the way (one costs at most a week).
            first = dt.datetime.fromtimestamp(self.start_ns // NS, dt.UTC).date() - dt.timedelta(days=1)
            holidays = sum(1 for h in cal.holidays if h >= first and h.weekday() in cal.weekdays)
            weeks = -(-sessions // len(cal.weekdays)) + 1 + holidays
            span = weeks * 7 * 86_400 * NS
        if self.start_ns + span >= _INT64_END:
            raise ParameterError(
                "periods", "the path would run past the year 2262, the end of int64 nanosecond time"
            )

    def sessions_spanned(self, first: int, n: int) -> int:
        """About how many sessions positions ``first`` to ``first + n - 1`` run through (1 without
        a calendar): stamping them walks that many days, a cost apart from ``n`` itself."""
        if self.calendar is None or n <= 0:
            return 1
        return (n - 1) * self.step_ns // self._session_ns + 1

    def most_bars(self, periods: int, interval_ns: int) -> int:
        """An upper bound on the bars of ``interval_ns`` a path of ``periods`` values makes.
        Each session (the whole path, without a calendar) covering s ns of path time
        touches at most s / interval + 2 intervals."""
        span = (periods - 1) * self.step_ns
        sessions = 1
        if self.calendar is not None:
            # +2 for the partial first and last sessions; a clock change can shorten a
            # session by an hour about once a year, hence the spare one per hundred.
            sessions = span // (self.calendar.session_seconds * NS) + 2
            sessions += sessions // 100 + 1
        return min(periods, span // interval_ns + 2 * sessions)
