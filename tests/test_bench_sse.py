"""make bench's reading of Server-Sent Events (bench/sse.py): the same events however the
network splits the stream, and the exchange time an update carries."""

from __future__ import annotations

import pytest

from bench.sse import Event, EventReader, ExchangeTimes

STREAM = (
    b"retry: 1000\n\n"  # no data: not an event
    b'id: 41\nevent: snapshot\ndata: {"sequence":"41"}\n\n'
    b": heartbeat 41\n\n"  # a comment only
    b'id: 42\r\nevent: update\r\ndata:{"a":1}\r\ndata:  two\r\n\r\n'  # CRLF; one space dropped
    b"event: update\rdata: carried id\r\r"  # CR alone; the id carries over
    b"data: no type\n\n"
    b"id: 43\nevent: update\ndata: cut"  # unfinished: not dispatched yet
)
EXPECTED = [
    Event("snapshot", "41", b'{"sequence":"41"}'),
    Event("update", "42", b'{"a":1}\n two'),
    Event("update", "42", b"carried id"),
    Event("message", "42", b"no type"),
]


def test_the_stream_fed_whole_gives_its_events():
    assert EventReader().feed(STREAM) == EXPECTED


def test_the_stream_cut_anywhere_gives_the_same_events():
    for cut in range(1, len(STREAM)):
        reader = EventReader()
        assert reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:]) == EXPECTED, f"cut at {cut}"


def test_a_byte_at_a_time_gives_the_same_events_and_the_last_once_finished():
    reader = EventReader()
    events = [event for n in range(len(STREAM)) for event in reader.feed(STREAM[n : n + 1])]
    assert events == EXPECTED
    assert reader.feed(b"\n\n") == [Event("update", "43", b"cut")]


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("2026-11-27T03:00:00Z", 1795748400.0),
        ("2026-11-27T03:00:00.100Z", 1795748400.1),
        ("2026-11-27T03:00:00.879905024Z", 1795748400.879905024),
    ],
)
def test_the_exchange_time_of_an_event(stamp, seconds):
    data = b'{"sequence":"7","exchangeTime":"%s","update":{"prices":[]}}' % stamp.encode()
    times = ExchangeTimes()
    assert times(data) == pytest.approx(seconds, abs=1e-6)
    assert times(data) == pytest.approx(seconds, abs=1e-6)  # remembered, the same


def test_an_event_without_an_exchange_time_is_an_error():
    with pytest.raises(ValueError, match="no exchangeTime"):
        ExchangeTimes()(b'{"sequence":"7"}')
