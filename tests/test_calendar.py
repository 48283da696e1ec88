"""Timestamps: plain UTC steps, and steps kept inside trading sessions across weekends, holidays and DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from server.generator import ParameterError
from server.trading_calendar import TradingCalendar, timestamps

NY = ZoneInfo("America/New_York")
HOLIDAY = dt.date(2026, 3, 9)  # a Monday, declared a holiday for the test
CAL = TradingCalendar(holidays=frozenset({HOLIDAY}))


def _local(ns: np.ndarray) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(int(t) // 10**9, NY) for t in ns]


def test_plain_utc_steps():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ts = timestamps(start, 0.5, 5)
    assert ts.dtype == np.int64
    assert (np.diff(ts) == 500_000_000).all()
    assert ts[0] == int(start.timestamp()) * 10**9


def test_no_timestamp_leaves_a_session_and_weekends_and_holidays_are_skipped():
    ts = timestamps(dt.date(2026, 3, 5), 60, 20_000, CAL)  # minute steps over about 51 sessions
    assert (np.diff(ts) > 0).all()
    for moment in _local(ts):
        assert moment.weekday() < 5
        assert moment.date() != HOLIDAY
        assert dt.time(9, 30) <= moment.time() < dt.time(16, 0)
    days = {m.date() for m in _local(ts)}
    assert dt.date(2026, 3, 6) in days and dt.date(2026, 3, 10) in days


def test_the_open_stays_at_0930_local_across_the_dst_change():
    # US clocks moved forward on 2026-03-08: the open is 14:30 UTC before, 13:30 UTC after.
    ts = timestamps(dt.date(2026, 3, 6), 23_400, 3, CAL)  # one step per session: each session's open
    utc = [dt.datetime.fromtimestamp(int(t) // 10**9, dt.UTC) for t in ts]
    assert [u.strftime("%m-%d %H:%M") for u in utc] == ["03-06 14:30", "03-10 13:30", "03-11 13:30"]
    assert {m.strftime("%H:%M") for m in _local(ts)} == {"09:30"}


def test_bad_calendars_are_refused():
    with pytest.raises(ParameterError, match="IANA"):
        TradingCalendar(timezone="Mars/Olympus")
    with pytest.raises(ParameterError, match="before close"):
        TradingCalendar(open=dt.time(16), close=dt.time(9))
    with pytest.raises(ParameterError, match="time-zone-aware"):
        timestamps(dt.datetime(2026, 1, 1), 1.0, 3)
