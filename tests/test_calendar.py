"""Timestamps: plain UTC steps, and steps kept inside trading sessions across weekends, holidays and DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from server.sim.calendar import TradingCalendar
from server.sim.checks import ParameterError
from server.sim.time_axis import NS, TimeAxis

NY = ZoneInfo("America/New_York")
HOLIDAY = dt.date(2026, 3, 9)  # a Monday, declared a holiday for the test
CAL = TradingCalendar(holidays=frozenset({HOLIDAY}))


def timestamps(start: dt.datetime | dt.date, step_seconds: float, n: int, calendar=None) -> np.ndarray:
    """The first n stamps from a UTC datetime, or from midnight of a date in the calendar's zone."""
    if not isinstance(start, dt.datetime):
        start = dt.datetime.combine(start, dt.time(), tzinfo=ZoneInfo(calendar.timezone))
    return TimeAxis(int(start.timestamp()) * NS, round(step_seconds * NS), calendar).stamps(0, n)


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
    for host_dependent in ("localtime", "Factory", "posix/America/New_York"):
        with pytest.raises(ParameterError, match="IANA"):
            TradingCalendar(timezone=host_dependent)
    with pytest.raises(ParameterError, match="before close"):
        TradingCalendar(open=dt.time(16), close=dt.time(9))
    with pytest.raises(ParameterError, match="the period must be at least 1 ns"):
        TimeAxis(0, 0)


# --- TimeAxis: the block-by-block stamps of the path services ----------------------------------

HOUR = 3600 * NS
LONDON_ZONE = ZoneInfo("Europe/London")
TOKYO_ZONE = ZoneInfo("Asia/Tokyo")
NYSE = TradingCalendar()  # 09:30 to 16:00 New York time, Monday to Friday, no holidays
LONDON = TradingCalendar(timezone="Europe/London", open=dt.time(8), close=dt.time(16, 30))
TOKYO = TradingCalendar(timezone="Asia/Tokyo", open=dt.time(9), close=dt.time(15))
SYDNEY_ZONE = ZoneInfo("Australia/Sydney")
# Opens at 23:00 or 00:00 UTC of the day before its local date: a session spanning midnight UTC.
SYDNEY = TradingCalendar(timezone="Australia/Sydney", open=dt.time(10), close=dt.time(16))


def _ns(moment: dt.datetime) -> int:
    """UTC nanoseconds of an aware datetime, exactly (no float rounding)."""
    whole = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (whole.days * 86_400 + whole.seconds) * NS + whole.microseconds * 1000


def _at(zone: ZoneInfo, *fields: int) -> int:
    return _ns(dt.datetime(*fields, tzinfo=zone))


# (start_ns, step_ns, calendar): steps that do not divide a session, starts inside and outside sessions.
SPLIT_AXES = {
    "utc": (_at(dt.UTC, 2026, 3, 6, 15, 0, 0, 250_000) + 17, 61 * NS + 7, None),
    "utc-before-1970": (-(10**18) - 3, 997 * NS + 1, None),
    "new-york-mid-session": (_at(NY, 2026, 3, 6, 15, 59) + 123, 61 * NS + 7, CAL),  # over holiday and DST
    "new-york-saturday": (_at(NY, 2026, 10, 31, 12), 7 * 60 * NS + 3, CAL),  # the US autumn change
    "london": (_at(LONDON_ZONE, 2026, 3, 26, 7), 59 * NS, LONDON),
    "tokyo": (_at(TOKYO_ZONE, 2026, 3, 2, 14, 30), 113 * NS + 1, TOKYO),
}
N = 20_000


def _pieces(total: int, seed: int) -> list[tuple[int, int]]:
    """(first, n) blocks covering 0..total in irregular sizes, some empty, some over 1000 periods."""
    rng = np.random.default_rng(seed)
    pieces, first = [], 0
    while first < total:
        n = int(min(rng.choice([0, 1, 2, 17, 389, 390, 391, 1_000, 2_345]), total - first))
        pieces.append((first, n))
        first += n
    return pieces


@pytest.mark.parametrize("axis", SPLIT_AXES)
def test_stamps_and_shifts_are_the_same_whatever_the_block_split(axis):
    start_ns, step_ns, calendar = SPLIT_AXES[axis]
    whole = TimeAxis(start_ns, step_ns, calendar)
    stamps, shifts = whole.stamps(0, N), whole.local_shifts(0, N)
    assert stamps.dtype == shifts.dtype == np.int64
    assert (np.diff(stamps) >= step_ns).all()
    pieces = _pieces(N, seed=5)
    for order in ("in-order", "shuffled"):
        split = TimeAxis(start_ns, step_ns, calendar)
        todo = list(range(len(pieces)))
        if order == "shuffled":
            np.random.default_rng(6).shuffle(todo)
        got = {i: (split.stamps(*pieces[i]), split.local_shifts(*pieces[i])) for i in todo}
        assert np.concatenate([got[i][0] for i in range(len(pieces))]).tolist() == stamps.tolist()
        assert np.concatenate([got[i][1] for i in range(len(pieces))]).tolist() == shifts.tolist()
    if calendar is not None:
        # The split is worth testing: blocks straddle sessions, and the path crosses a DST change.
        zone = ZoneInfo(calendar.timezone)
        days = [dt.datetime.fromtimestamp(int(t) // NS, zone).date() for t in stamps]
        assert any(days[first] != days[first + n - 1] for first, n in pieces if n)
        if axis != "tokyo":
            assert len(set(shifts.tolist())) == 2


def test_without_a_calendar_stamp_i_is_start_plus_i_steps_exactly():
    start_ns, step_ns, _ = SPLIT_AXES["utc"]
    axis = TimeAxis(start_ns, step_ns)
    assert axis.stamps(10**7, 3).tolist() == [start_ns + i * step_ns for i in range(10**7, 10**7 + 3)]
    assert axis.local_shifts(5, 4).tolist() == [0, 0, 0, 0]


# Each case: start (New York time, or ns when an int), then the expected first stamp (New York time).
START_CASES = {
    "inside-a-session-keeps-its-time": (_at(NY, 2026, 3, 4, 11, 15, 30) + 123_456_789, None),
    "one-ns-before-the-close-keeps-its-time": (_at(NY, 2026, 3, 4, 16) - 1, None),
    "at-the-open": (_at(NY, 2026, 3, 4, 9, 30), (2026, 3, 4, 9, 30)),
    "before-the-open-waits-for-it": (_at(NY, 2026, 3, 4, 0, 0) + 1, (2026, 3, 4, 9, 30)),
    "at-the-close-moves-to-the-next-open": (_at(NY, 2026, 3, 4, 16), (2026, 3, 5, 9, 30)),
    "after-the-close-moves-to-the-next-open": (_at(NY, 2026, 3, 4, 23, 59), (2026, 3, 5, 9, 30)),
    "friday-evening-moves-to-monday": (_at(NY, 2026, 2, 27, 17), (2026, 3, 2, 9, 30)),
    "weekend-moves-to-monday": (_at(NY, 2026, 2, 28, 12), (2026, 3, 2, 9, 30)),
    # 2026-03-09 is CAL's holiday: the weekend before it and the holiday itself go to Tuesday,
    # whose open is 13:30 UTC after the DST change (14:30 UTC the week before).
    "friday-evening-before-a-holiday-monday": (_at(NY, 2026, 3, 6, 16, 30), (2026, 3, 10, 9, 30)),
    "during-a-holiday-session": (_at(NY, 2026, 3, 9, 11), (2026, 3, 10, 9, 30)),
}


@pytest.mark.parametrize("case", START_CASES)
def test_the_path_starts_at_the_first_session_moment_at_or_after_the_start(case):
    start_ns, expected = START_CASES[case]
    first = start_ns if expected is None else _at(NY, *expected)
    axis = TimeAxis(start_ns, 60 * NS, CAL)
    assert axis.stamps(0, 1).tolist() == [first]


def test_session_time_runs_on_from_a_start_just_before_the_close():
    start_ns = _at(NY, 2026, 3, 4, 16) - 1
    axis = TimeAxis(start_ns, 60 * NS, CAL)
    # One ns of the session is left: the next value is 59.999999999 s into Thursday's session.
    assert axis.stamps(0, 2).tolist() == [start_ns, _at(NY, 2026, 3, 5, 9, 31) - 1]


def test_the_open_after_the_holiday_is_1330_utc():
    axis = TimeAxis(_at(NY, 2026, 3, 9, 11), 60 * NS, CAL)
    assert axis.stamps(0, 1)[0] == _at(dt.UTC, 2026, 3, 10, 13, 30)


@pytest.mark.parametrize(
    "calendar, start, expected_hours",
    [
        # US clocks moved forward on Sunday 2026-03-08: Thu, Fri, Mon, Tue sessions.
        (NYSE, (NY, 2026, 3, 5, 10), [-5, -5, -4, -4]),
        # UK clocks moved forward on Sunday 2026-03-29.
        (LONDON, (LONDON_ZONE, 2026, 3, 26, 9), [0, 0, 1, 1]),
        # ... and back on Sunday 2026-10-25, as US clocks did on 2026-11-01.
        (LONDON, (LONDON_ZONE, 2026, 10, 22, 9), [1, 1, 0, 0]),
        (NYSE, (NY, 2026, 10, 29, 10), [-4, -4, -5, -5]),
        (TOKYO, (TOKYO_ZONE, 2026, 3, 5, 10), [9, 9, 9, 9]),
        # Sydney's summer time ends on Sunday 2026-04-05.
        (SYDNEY, (SYDNEY_ZONE, 2026, 4, 2, 11), [11, 11, 10, 10]),
    ],
)
def test_local_shifts_are_the_exchange_utc_offset(calendar, start, expected_hours):
    zone, *fields = start
    session_ns = calendar.session_seconds * NS
    axis = TimeAxis(_at(zone, *fields), session_ns, calendar)  # one period per session
    shifts = axis.local_shifts(0, 4)
    assert shifts.tolist() == [h * HOUR for h in expected_hours]
    stamps = axis.stamps(0, 4)
    assert [dt.datetime.fromtimestamp(int(t) // NS, zone).utcoffset() for t in stamps] == [
        dt.timedelta(hours=h) for h in expected_hours
    ]


def test_check_fits_without_a_calendar_stops_exactly_at_the_end_of_int64():
    step_ns = 86_400 * NS + 1
    periods = 86_000  # daily steps: about 235 years
    start_ns = 2**63 - 1 - (periods - 1) * step_ns  # the last stamp is the largest int64, in 2262
    axis = TimeAxis(start_ns, step_ns)
    axis.check_fits(periods)
    assert axis.stamps(periods - 1, 1).tolist() == [2**63 - 1]
    assert dt.datetime.fromtimestamp(start_ns // NS, dt.UTC).year == 2026
    for start, refused in ((start_ns, periods + 1), (start_ns + 1, periods), (start_ns, 2**64 - 1)):
        with pytest.raises(ParameterError) as err:  # a last stamp of 2**63 or more does not fit
            TimeAxis(start, step_ns).check_fits(refused)
        assert err.value.field == "periods"


def test_check_fits_with_a_calendar_accepts_a_long_path_before_2262_and_refuses_one_past_it():
    start_ns = _at(NY, 2026, 3, 4, 10)
    axis = TimeAxis(start_ns, 60 * NS, CAL)
    long = 20_000_000  # about 51,000 sessions of minute steps: into the 2220s
    axis.check_fits(long)
    last = axis.stamps(long - 1, 1)[0]
    moment = dt.datetime.fromtimestamp(int(last) // NS, NY)
    assert 2200 < moment.year < 2262
    assert moment.weekday() < 5 and dt.time(9, 30) <= moment.time() < dt.time(16)
    for periods in (40_000_000, 10**15, 2**64 - 1):  # 40 million minute steps would end after 2330
        with pytest.raises(ParameterError) as err:
            axis.check_fits(periods)
        assert err.value.field == "periods"


@pytest.mark.parametrize(
    "start",
    [
        dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC),  # Sunday in Tokyo too
        dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC),  # Sunday in UTC, Monday 08:59 in Tokyo
        dt.datetime(2026, 2, 27, 6, 0, tzinfo=dt.UTC),  # Friday 15:00 in Tokyo: the close
    ],
)
def test_a_calendar_east_of_utc_opens_at_midnight_utc_for_0900_tokyo(start):
    axis = TimeAxis(_ns(start), TOKYO.session_seconds * NS, TOKYO)  # one period per session
    assert axis.stamps(0, 6).tolist() == [
        _at(dt.UTC, 2026, 3, day) for day in (2, 3, 4, 5, 6, 9)
    ]  # Monday 2026-03-02 00:00 UTC on, over the weekend
    assert axis.local_shifts(0, 1).tolist() == [9 * HOUR]


def test_a_start_inside_a_tokyo_session_keeps_its_time():
    start_ns = _at(dt.UTC, 2026, 3, 2, 0, 30)  # Monday 09:30 in Tokyo, but 00:30 UTC
    axis = TimeAxis(start_ns, 60 * NS, TOKYO)
    assert axis.stamps(0, 2).tolist() == [start_ns, start_ns + 60 * NS]
    # The session's last minute is 14:59 Tokyo time; the next value is Tuesday's 09:00, 00:00 UTC.
    last_of_monday = (6 * 60 - 30) - 1
    assert axis.stamps(last_of_monday, 2).tolist() == [
        _at(dt.UTC, 2026, 3, 2, 5, 59),
        _at(dt.UTC, 2026, 3, 3),
    ]


@pytest.mark.parametrize(
    "start, first",
    [
        # Monday 10:30 in Sydney, still Sunday in UTC: inside Monday's session, kept.
        (_at(dt.UTC, 2026, 3, 1, 23, 30), _at(dt.UTC, 2026, 3, 1, 23, 30)),
        # Sunday 20:00 in Sydney: Monday's open, which is 23:00 UTC on Sunday.
        (_at(SYDNEY_ZONE, 2026, 3, 1, 20), _at(dt.UTC, 2026, 3, 1, 23)),
        # Monday 16:30 in Sydney, after the close: Tuesday 10:00, 23:00 UTC on Monday.
        (_at(dt.UTC, 2026, 3, 2, 5, 30), _at(dt.UTC, 2026, 3, 2, 23)),
    ],
)
def test_a_session_spanning_midnight_utc_is_placed_by_the_local_date(start, first):
    axis = TimeAxis(start, 60 * NS, SYDNEY)
    assert axis.stamps(0, 1).tolist() == [first]
    assert axis.local_shifts(0, 1).tolist() == [11 * HOUR]


def test_check_fits_refuses_every_path_whose_stamps_do_not_fit_even_with_many_holidays():
    # Monday-only sessions, with the Mondays of February and March 2262 holidays.
    mondays = [dt.date(2262, 1, 6) + dt.timedelta(weeks=w) for w in range(13)]
    assert {d.weekday() for d in mondays} == {0}
    calendar = TradingCalendar(
        timezone="UTC", weekdays=frozenset({0}), holidays=frozenset(d for d in mondays if d.month in (2, 3))
    )
    start_ns, step_ns = _at(dt.UTC, 2262, 1, 1), calendar.session_seconds * NS  # a period per session
    for periods in range(1, 20):
        try:
            TimeAxis(start_ns, step_ns, calendar).check_fits(periods)
        except ParameterError as err:
            assert err.field == "periods"
            break
        # Accepted: the stamps must fit (they fail with OverflowError, or a late ParameterError).
        TimeAxis(start_ns, step_ns, calendar).stamps(0, periods)


# Sunday-only sessions from 01:00 to 04:00 New York time: the clocks change inside them.
NIGHT = TradingCalendar(open=dt.time(1), close=dt.time(4), weekdays=frozenset({6}))


@pytest.mark.parametrize(
    ("sunday", "hours"),
    [(dt.date(2026, 3, 8), 2), (dt.date(2026, 11, 1), 4)],  # spring forward, fall back
)
def test_a_session_a_clock_change_falls_in_is_an_hour_shorter_or_longer(sunday, hours):
    start = int(dt.datetime.combine(sunday, dt.time(), tzinfo=NY).timestamp()) * NS
    axis = TimeAxis(start, 60 * NS, NIGHT)  # minute steps; a nominal session holds 180
    stamps = axis.stamps(0, 400)
    shifts = axis.local_shifts(0, 400)
    assert (np.diff(stamps) > 0).all()
    local = [dt.datetime.fromtimestamp(int(t) // NS, NY) for t in stamps]
    assert all(dt.time(1) <= m.time() < dt.time(4) for m in local)
    assert sum(m.date() == sunday for m in local) == hours * 60
    # The shift each stamp gets is the zone's offset at that instant: bars align on local time.
    expected = [int(m.utcoffset().total_seconds()) * NS for m in local]
    assert shifts.tolist() == expected
    assert len(set(expected[: hours * 60])) == 2
    # Any split gives the same stamps.
    pieces = [axis_piece for a, b in ((0, 7), (7, 150), (150, 400)) for axis_piece in axis.stamps(a, b - a)]
    assert pieces == stamps.tolist()
