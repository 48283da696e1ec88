"""What strangers can send: malformed bytes, oversized lists, stalled readers and floods,
against a real server. Each test bounds its time; none asserts a speed."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading

import grpc
import pytest

from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1.market_data_pb2_grpc import MarketDataServiceStub
from server.feed import Subscriber
from server.limits import ConnectionLimits, FeedLimits, Limits, flags
from server.sim.universe import Instrument, MarketConfig
from tests.conftest import REPO_ROOT, ServerThread
from tests.server_process import ServerProcess, run_server

SERVICE = pb.DESCRIPTOR.services_by_name["MarketDataService"]
# Bytes no protobuf parser accepts: a varint cut short, a wire type that does not exist, a
# group never closed; and (below) a string field that is not UTF-8.
MALFORMED = {
    "truncated-varint": b"\x08\x80",
    "no-such-wire-type": b"\x0f",
    "group-never-closed": b"\x0b\x08\x01",
}


def _bad_utf8(message: type) -> bytes:
    """``message`` with its first string field set to bytes that are not UTF-8."""
    field = next(f for f in message.DESCRIPTOR.fields if f.type == f.TYPE_STRING)
    return bytes([field.number << 3 | 2, 2, 0xFF, 0xFE])


def _has_string(method) -> bool:
    return any(f.type == f.TYPE_STRING for f in method.input_type.fields)


# Every method whose request comes alone, with every kind of bad bytes that applies to it.
CASES = [
    (method, kind)
    for method in SERVICE.methods
    if not method.client_streaming
    for kind in [*MALFORMED, *(["bad-utf8"] if _has_string(method) else [])]
]


@pytest.mark.parametrize(("method", "kind"), CASES, ids=[f"{m.name}-{k}" for m, k in CASES])
def test_undecodable_requests_are_invalid_argument_with_one_warning(channel, caplog, method, kind):
    request_type = getattr(pb, method.input_type.name)
    data = _bad_utf8(request_type) if kind == "bad-utf8" else MALFORMED[kind]
    path = f"/{SERVICE.full_name}/{method.name}"
    call = channel.unary_stream(path) if method.server_streaming else channel.unary_unary(path)
    with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as info:
        reply = call(data, timeout=10)
        if method.server_streaming:
            list(reply)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == f"request is not a valid {request_type.DESCRIPTOR.full_name}"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "not a valid" in r.getMessage()]
    assert len(warnings) == 1
    assert not any(r.exc_info for r in caplog.records)


def test_an_undecodable_message_mid_subscription_ends_it_with_invalid_argument(server, channel, caplog):
    outgoing: queue.Queue = queue.Queue()

    def requests():
        while (item := outgoing.get(timeout=10)) is not None:
            yield item

    call = channel.stream_stream(f"/{SERVICE.full_name}/ManageSubscription")(requests(), timeout=20)
    subscribe = pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["ACME"]))
    outgoing.put(subscribe.SerializeToString())
    events = iter(call)
    first = pb.MarketEvent.FromString(next(events))
    assert first.WhichOneof("event") == "status"
    with caplog.at_level(logging.INFO):
        outgoing.put(MALFORMED["truncated-varint"])
        with pytest.raises(grpc.RpcError) as info:
            for _ in events:  # the snapshot of ACME, maybe heartbeats, then the end
                pass
    outgoing.put(None)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request is not a valid marketdata.v1.SubscriptionRequest" in info.value.details()
    assert any("not a valid" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert not any(r.exc_info for r in caplog.records)


LONG = "Z" * 10_000


def _timezone(text: str) -> pb.PathRequest:
    request = pb.PathRequest(periods=5, delta=1.0, seed=1)
    request.gbm.start_price = 70.0
    request.time.start_time.seconds = 1_772_461_800
    request.time.calendar.timezone = text
    return request


def _bar_interval(text: str) -> pb.PathRequest:
    request = _timezone("America/New_York")
    request.bar_interval = text
    return request


@pytest.mark.parametrize(
    ("build", "field"), [(_timezone, "time.calendar.timezone"), (_bar_interval, "bar_interval")]
)
def test_errors_quote_at_most_about_a_hundred_characters_of_an_input(stub, caplog, build, field):
    with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as info:
        stub.GetPrices(build(LONG))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # not a metadata overflow
    details = info.value.details()
    assert details.startswith(field) and "(10000 characters)" in details
    assert len(details) < 300
    assert all(len(r.getMessage()) < 500 for r in caplog.records)


def test_errors_list_at_most_ten_items_then_say_how_many_more(stub):
    unknown = [f"NOPE{i}" for i in range(500)]
    with pytest.raises(grpc.RpcError) as info:
        stub.GetLastPrices(pb.GetLastPricesRequest(symbols=["ACME", *unknown]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "unknown symbols: " + ", ".join(unknown[:10]) + " ... and 490 more"


def test_an_empty_symbol_is_named_as_such(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetLastPrices(pb.GetLastPricesRequest(symbols=["ACME", ""]))
    assert info.value.details() == "unknown symbols: ''"


def _repeated_paths(descriptor, prefix: str = "") -> set[str]:
    """Every repeated field reachable in a request message, as a dotted path."""
    found = set()
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        if _repeated(field):
            found.add(path)
        elif field.message_type is not None and field.message_type.full_name.startswith("marketdata."):
            found |= _repeated_paths(field.message_type, f"{path}.")
    return found


def _repeated(field) -> bool:
    # protobuf 6 has is_repeated; older releases only the label.
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _basket(assets: int, correlation: int) -> pb.PathRequest:
    request = pb.PathRequest(periods=5, delta=1.0, seed=1)
    for i in range(assets):
        request.correlated_gbm.assets.add(symbol=f"A{i}", start_price=10.0, sigma=0.1)
    request.correlated_gbm.correlation.extend([0.5] * correlation)
    return request


def _calendar(weekdays: int, holidays: int) -> pb.PathRequest:
    request = _timezone("America/New_York")
    request.time.calendar.weekdays.extend([1] * weekdays)
    request.time.calendar.holidays.extend(["2030-01-01"] * holidays)
    return request


MANY = 100_000
# Each repeated field of every request, and a request that repeats it MANY times with
# everything else valid: the answer names the field and the limit, and the server stays up.
OVERSIZED = {
    ("GetLastPricesRequest", "symbols"): (
        "GetLastPrices",
        pb.GetLastPricesRequest(symbols=["ACME"] * MANY),
        "--max-symbols",
    ),
    ("SubscribeRequest", "symbols"): (
        "Subscribe",
        pb.SubscribeRequest(symbols=["ACME"] * MANY),
        "--max-symbols",
    ),
    ("SubscribeRequest", "data"): (
        "Subscribe",
        pb.SubscribeRequest(data=[pb.DataSubscription(type=pb.TRADES)] * MANY),
        "one per data type",
    ),
    ("SubscriptionRequest", "subscribe.symbols"): (
        "ManageSubscription",
        pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["ACME"] * MANY)),
        "--max-symbols",
    ),
    ("SubscriptionRequest", "unsubscribe.symbols"): (
        "ManageSubscription",
        pb.SubscriptionRequest(unsubscribe=pb.SymbolList(symbols=["ACME"] * MANY)),
        "--max-symbols",
    ),
    ("PathRequest", "correlated_gbm.assets"): ("GetPrices", _basket(MANY, 0), "correlated_gbm.assets"),
    ("PathRequest", "correlated_gbm.correlation"): (
        "GetPrices",
        _basket(2, MANY),
        "correlated_gbm.correlation",
    ),
    ("PathRequest", "time.calendar.weekdays"): ("GetPrices", _calendar(MANY, 0), "time.calendar.weekdays"),
    ("PathRequest", "time.calendar.holidays"): ("GetPrices", _calendar(0, MANY), "time.calendar.holidays"),
}


def test_every_repeated_field_of_every_request_is_covered_below():
    requests = {m.input_type.name: m.input_type for m in SERVICE.methods}
    repeated = {(name, path) for name, message in requests.items() for path in _repeated_paths(message)}
    assert repeated == set(OVERSIZED)


@pytest.mark.parametrize("case", OVERSIZED, ids=[".".join(c) for c in OVERSIZED])
def test_a_repeated_field_is_capped(channel, stub, case):
    method, request, named = OVERSIZED[case]
    data = request.SerializeToString()
    path = f"/{SERVICE.full_name}/{method}"
    with pytest.raises(grpc.RpcError) as info:
        if method == "ManageSubscription":
            list(channel.stream_stream(path)(iter([data]), timeout=30))
        elif method == "Subscribe":
            list(channel.unary_stream(path)(data, timeout=30))
        else:
            channel.unary_unary(path)(data, timeout=30)
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert named in info.value.details()
    assert str(MANY) in info.value.details()  # how many were sent
    assert stub.GetLastPrices(pb.GetLastPricesRequest(symbols=["ACME"])).prices[0].symbol == "ACME"


def _market_file(path, instruments: int, wall_seconds_per_tick: float, speed: float = 1.0):
    lines = ["[market]", f"wall_seconds_per_tick = {wall_seconds_per_tick}", f"speed = {speed}", ""]
    for n in range(instruments):
        lines += [
            "[[instrument]]",
            f'symbol = "R{n:04d}"',
            'model = "ornstein_uhlenbeck"',
            "start = 1.0\nmean = 1.0\nkappa = 2.0\nsigma = 0.3",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(("wall", "speed"), [(0.1, 1e6), (1e-6, 1.0)])
def test_a_market_clock_faster_than_a_millisecond_is_refused_at_start(python, tmp_path, wall, speed):
    market = _market_file(tmp_path / "fast.toml", 2, wall, speed)
    done = run_server(python, "--port", "0", "--market", str(market))
    assert done.returncode != 0
    assert "must be at least 0.001 s" in done.stderr


def test_a_market_that_cannot_keep_up_never_stops_the_server_answering_or_stopping(python, tmp_path):
    # 600 instruments with their own steppers cost more than the 1 ms between ticks: the
    # market falls behind for good. Calls are still answered and SIGTERM still ends it.
    market = _market_file(tmp_path / "heavy.toml", 600, 0.001)
    with ServerProcess(python, "--port", "0", "--market", str(market), "--grace", "1") as server:
        with grpc.insecure_channel(f"127.0.0.1:{_port(server)}") as channel:
            stub = MarketDataServiceStub(channel)
            request = pb.GbmRequest(periods=100, start_price=70.0, sigma=0.3, delta=1.0)
            for _ in range(5):
                assert len(stub.GetGbmPrices(request, timeout=20).prices) == 100
            feed = stub.Subscribe(pb.SubscribeRequest(symbols=["R0000"]), timeout=20)
            kinds = [next(feed).WhichOneof("event"), next(feed).WhichOneof("event")]
            feed.cancel()
            assert kinds == ["snapshot", "update"]  # the market does move, if late
        assert server.stop() == 0


def _port(server: ServerProcess) -> int:
    return int(server.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[0].group(1))


# --- limits on what callers hold ------------------------------------------------------------------


def _connection(target: str) -> grpc.Channel:
    """A channel with a connection of its own (gRPC shares one between channels by default)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def _open_stream(channel: grpc.Channel, periods: int = 10**9):
    """A price stream that nobody reads (the server's first chunk goes out, then it waits)."""
    request = pb.GbmRequest(periods=periods, start_price=70.0, sigma=0.3, delta=1.0, seed=1)
    return MarketDataServiceStub(channel).StreamGbmPrices(request, timeout=60)


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        next(iter(call)) if hasattr(call, "__next__") else call()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return info.value


@pytest.fixture
def limited():
    srv = ServerThread(Limits(max_streams=4, max_streams_per_peer=3, max_calls=6, stall_seconds=60))
    yield srv
    srv.stop()


def test_one_connection_cannot_take_every_stream_slot(limited):
    with _connection(limited.target) as hog, _connection(limited.target) as other:
        held = [_open_stream(hog) for _ in range(3)]
        for call in held:
            next(call)  # open for sure: its first chunk came
        refused = _refused(_open_stream(hog))
        assert "--max-streams-per-peer" in refused.details()
        fourth = _open_stream(other)  # another connection still gets one
        next(fourth)
        refused = _refused(_open_stream(other))  # but not past the server's total
        assert "--max-streams" in refused.details() and "per-peer" not in refused.details()
        for call in [*held, fourth]:
            call.cancel()
        assert limited.tracker.wait_idle(timeout=30)
        again = _open_stream(hog)  # a cancelled stream gives its slot back
        next(again)
        again.cancel()


def test_calls_past_the_server_limit_are_refused_naming_the_flag(limited):
    with _connection(limited.target) as first, _connection(limited.target) as second:
        held = [_open_stream(first) for _ in range(3)] + [_open_stream(second) for _ in range(1)]
        for call in held:
            next(call)
        stub = MarketDataServiceStub(second)
        request = pb.GbmRequest(periods=10, start_price=70.0, delta=1.0)
        for _ in range(2):  # two unary calls still fit the six
            assert len(stub.GetGbmPrices(request, timeout=10).prices) == 10
        for call in held:
            call.cancel()
    srv = ServerThread(Limits(max_calls=1))
    try:
        with _connection(srv.target) as channel:
            busy = _open_stream(channel)
            next(busy)
            refused = _refused(lambda: MarketDataServiceStub(channel).GetGbmPrices(request, timeout=10))
            assert "--max-calls" in refused.details()
            busy.cancel()
    finally:
        srv.stop()


def test_one_connection_cannot_take_every_subscription_slot():
    srv = ServerThread(feed_limits=FeedLimits(max_subscribers=300, max_subscribers_per_peer=5))
    try:
        with _connection(srv.target) as hog, _connection(srv.target) as other:
            hog_stub, other_stub = MarketDataServiceStub(hog), MarketDataServiceStub(other)
            held = [hog_stub.Subscribe(pb.SubscribeRequest(symbols=["ACME"]), timeout=60) for _ in range(5)]
            for call in held:
                assert next(call).WhichOneof("event") == "snapshot"
            refused = _refused(hog_stub.Subscribe(pb.SubscribeRequest(), timeout=60))
            assert "--max-subscribers-per-peer" in refused.details()
            fresh = other_stub.Subscribe(pb.SubscribeRequest(), timeout=60)
            assert next(fresh).WhichOneof("event") == "snapshot"  # the others are not locked out
            for call in [*held, fresh]:
                call.cancel()
    finally:
        srv.stop()


def _ends_for_stalling(call) -> None:
    """Read what was already in flight, then the end: RESOURCE_EXHAUSTED naming the flag."""
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--stall-seconds" in info.value.details()


def test_a_stream_whose_reader_takes_nothing_is_ended_after_the_stall_limit():
    srv = ServerThread(Limits(stall_seconds=1.0))
    try:
        with _connection(srv.target) as channel:
            stalled = _open_stream(channel)
            assert srv.tracker.wait_for(lambda t: t.started == 1, timeout=30)
            assert srv.tracker.wait_idle(timeout=60), "the server still holds the unread stream"
            _ends_for_stalling(stalled)
    finally:
        srv.stop()


def test_a_subscription_whose_reader_takes_nothing_is_ended_after_the_stall_limit():
    # Whole books of 100 symbols, 50 levels a side (about 160 kB a tick: every level's size
    # drifts), twenty times a second fill any flow-control window within seconds.
    wide = tuple(Instrument(f"S{i:04d}", 100.0, 0.0, 0.2) for i in range(100))
    market = MarketConfig(instruments=wide, wall_seconds_per_tick=0.05)
    srv = ServerThread(Limits(stall_seconds=1.0), market=market, market_clock=True)
    try:
        with _connection(srv.target) as channel:
            books = pb.DataSubscription(type=pb.ORDER_BOOK, depth=50)
            silent = MarketDataServiceStub(channel).Subscribe(pb.SubscribeRequest(data=[books]), timeout=120)
            feed = srv.running.servicer.feed
            assert feed.wait_subscribers(lambda n: n == 1, timeout=30)
            assert feed.wait_subscribers(lambda n: n == 0, timeout=90), "the unread subscription stayed"
            _ends_for_stalling(silent)
    finally:
        srv.stop()


def test_unread_streams_hold_no_more_read_ahead_than_the_budget():
    srv = ServerThread(Limits(read_ahead_mib=1, stall_seconds=60))
    generation = srv.running.servicer._paths.generation
    try:
        with _connection(srv.target) as channel:
            calls = [_open_stream(channel) for _ in range(4)]
            # Each stream makes its first chunk (1 MiB), sends it, and may make one more ahead.
            assert srv.tracker.wait_for(lambda t: t.prices_generated >= 4 * 131_072, timeout=30)
            assert generation.held <= 1 << 20
            for call in calls:
                call.cancel()
            assert srv.tracker.wait_idle(timeout=30)
        assert generation.held == 0
    finally:
        srv.stop()


def test_streams_end_at_the_lifetime_limit_and_longer_paced_ones_are_refused():
    srv = ServerThread(Limits(max_stream_seconds=0.5))
    try:
        with _connection(srv.target) as channel:
            stub = MarketDataServiceStub(channel)
            paced = pb.GbmRequest(periods=100, start_price=70.0, delta=1.0, ticks_per_second=10)
            refused = _refused(stub.StreamGbmPrices(paced, timeout=30))
            assert "--max-stream-seconds" in refused.details()
            endless = pb.GbmRequest(periods=10**12, start_price=70.0, delta=1.0, seed=1)
            with pytest.raises(grpc.RpcError) as info:
                for _ in stub.StreamGbmPrices(endless, timeout=60):
                    pass
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-stream-seconds" in info.value.details()
    finally:
        srv.stop()


@pytest.mark.parametrize("pace", [5e-324, 1e-4])
def test_a_pace_slower_than_one_value_in_a_thousand_seconds_is_refused(stub, pace):
    request = pb.GbmRequest(periods=10, start_price=70.0, delta=1.0, ticks_per_second=pace)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamGbmPrices(request, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least 0.001" in info.value.details()


def test_heavy_calls_wait_their_turn_on_the_bounded_generation_pool():
    # Six heavy calls at once on a server with one generation thread: they all complete, small
    # calls are answered meanwhile, and the work runs on the pool that exists from the start:
    # a thread started per call would mean unbounded concurrency for heavy work.
    srv = ServerThread(Limits(generation_threads=1))
    before = {t.ident for t in threading.enumerate()}
    heavy = pb.PathRequest(periods=400_000, delta=1 / 23_400, seed=1)
    heavy.heston.start_price, heavy.heston.v0, heavy.heston.kappa = 70.0, 0.04, 2.0
    heavy.heston.theta, heavy.heston.xi, heavy.heston.rho = 0.04, 0.3, -0.7
    small = pb.GbmRequest(periods=100, start_price=70.0, sigma=0.3, delta=1.0)
    try:
        with _connection(srv.target) as busy, _connection(srv.target) as light:
            calls = [MarketDataServiceStub(busy).GetPrices.future(heavy, timeout=120) for _ in range(6)]
            answered = [
                len(MarketDataServiceStub(light).GetGbmPrices(small, timeout=60).prices) for _ in range(20)
            ]
            assert answered == [100] * 20
            assert all(len(call.result().prices) == 400_000 for call in calls)
        started = [t.name for t in threading.enumerate() if t.ident not in before]
        assert started == [], "threads were started to do the heavy work"
    finally:
        srv.stop()


@pytest.mark.parametrize("tick", [1e-310, 1e-12, 2e6])
def test_a_market_tick_off_the_path_grid_is_refused_at_start_not_a_crash(python, tmp_path, tick):
    market = tmp_path / "tick.toml"
    market.write_text(f'[[instrument]]\nsymbol = "A"\nstart_price = 1\nsigma = 0.1\ntick_size = {tick!r}\n')
    done = run_server(python, "--port", "0", "--market", str(market))
    assert done.returncode == 2
    assert "tick_size must be in [1e-09, 1e+06]" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_readme_lists_every_limit_with_its_flag_and_default():
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Limits") : readme.index("## Error contract")]
    rows = {line.split("|")[2].strip(" `"): line for line in table.splitlines() if line.startswith("| ")}
    for limits in (Limits, FeedLimits, ConnectionLimits):
        for flag, spec in flags(limits):
            default = spec.default
            shown = (
                "off"
                if isinstance(default, bool)
                else f"{default:,}"
                if isinstance(default, int)
                else f"{default:g}"
                if isinstance(default, float)
                else default
            )
            assert flag in rows, f"{flag} has no row in the README's Limits table"
            assert f"| {shown} |" in rows[flag], f"{flag}: the README does not show its default {shown}"


def test_sigterm_ends_a_server_that_strangers_keep_busy(python):
    # Heavy calls queued on the pool, streams nobody reads and a live subscription: SIGTERM
    # still ends it, with exit 0, well within a generous bound.
    heavy = pb.PathRequest(periods=2**23, delta=1 / 23_400, seed=1, bar_interval="1h")
    heavy.gbm.start_price, heavy.gbm.sigma = 70.0, 0.3
    heavy.time.start_time.seconds = 1_772_409_600
    with ServerProcess(python, "--port", "0", "--grace", "1") as server:
        with _connection(f"127.0.0.1:{_port(server)}") as channel:
            stub = MarketDataServiceStub(channel)
            busy = [stub.GetPrices.future(heavy, timeout=120) for _ in range(6)]
            unread = [_open_stream(channel) for _ in range(4)]
            live = stub.Subscribe(pb.SubscribeRequest(), timeout=120)
            assert next(live).WhichOneof("event") == "snapshot"
            next(unread[-1])  # every call is in: the streams were admitted before it
            assert server.stop(timeout=15) == 0
            for call in [*busy, *unread]:
                call.cancel()


def test_a_few_values_stamped_across_many_sessions_are_made_off_the_event_loop():
    # 22 periods of 10,000 one-minute sessions walk 220,000 days in Python: seconds of work
    # that must not run on the event loop, small as the reply is.
    from client import path_request
    from server.requests import plan_get_prices
    from server.streaming import _heavy

    request = path_request(
        "gbm",
        22,
        10_000,
        model_params={"start_price": 70.0, "sigma": 0.3},
        seed=1,
        start_time=dt.datetime(1678, 1, 1, tzinfo=dt.UTC),
        calendar=pb.TradingCalendar(weekdays=range(1, 8), session_open="00:00", session_close="00:01"),
    )
    call = plan_get_prices(request, Limits())
    assert _heavy(call, call.periods)
    small = plan_get_prices(path_request("gbm", 22, model_params={"start_price": 70.0}, seed=1), Limits())
    assert not _heavy(small, small.periods)


def test_a_subscription_may_not_repeat_a_symbol(stub):
    with pytest.raises(grpc.RpcError) as info:
        next(stub.Subscribe(pb.SubscribeRequest(symbols=["ACME", "GLOBEX", "ACME"]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "repeated: ACME" in info.value.details()


def test_answers_a_manage_subscription_reader_leaves_unread_are_bounded(monkeypatch):
    # Each request names 1,000 unknown symbols (a 60 kB answer); the reader reads nothing.
    # The answers waiting for it never pass --subscriber-buffer (2 here).
    waiting = []
    send = Subscriber.send

    def watched(self, message):
        send(self, message)
        waiting.append(len(self._control))

    monkeypatch.setattr(Subscriber, "send", watched)
    srv = ServerThread(Limits(stall_seconds=2.0), feed_limits=FeedLimits(buffer_ticks=2))
    flood = pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=[f"U{i:04d}" for i in range(1000)]))
    try:
        with _connection(srv.target) as channel:
            call = MarketDataServiceStub(channel).ManageSubscription(iter([flood] * 300), timeout=120)
            feed = srv.running.servicer.feed
            assert feed.wait_subscribers(lambda n: n == 1, timeout=30)
            assert feed.wait_subscribers(lambda n: n == 0, timeout=90), "the flooding subscriber stayed"
            with pytest.raises(grpc.RpcError) as info:
                for _ in call:
                    pass
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert waiting and max(waiting) <= 2
    finally:
        srv.stop()


@pytest.mark.parametrize("symbol", ["X" * 33, "€" * 40])
def test_manage_subscription_refuses_symbols_no_instrument_could_have(channel, symbol):
    request = pb.SubscriptionRequest(subscribe=pb.SymbolList(symbols=["ACME", symbol]))
    call = channel.stream_stream(f"/{SERVICE.full_name}/ManageSubscription")(
        iter([request.SerializeToString()]), timeout=10
    )
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 32 characters" in info.value.details()


def test_a_stalled_reader_that_leaves_puts_no_traceback_in_the_log(python):
    with ServerProcess(python, "--port", "0", "--stall-seconds", "1", "--grace", "1") as server:
        with _connection(f"127.0.0.1:{_port(server)}") as channel:
            stalled = _open_stream(channel)
            server.wait_for(r"ended a call from ipv4:127\.0\.0\.1:\d+: its reader accepted nothing")
            stalled.cancel()  # the status the server could not send yet has nowhere to go now
        assert server.stop() == 0
    assert "Traceback" not in server.log and " ERROR " not in server.log, server.log


def test_health_watch_streams_count_like_subscriptions():
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    srv = ServerThread(feed_limits=FeedLimits(max_subscribers_per_peer=3))
    try:
        with _connection(srv.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(3)]
            for watch in watches:
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            refused = _refused(health.Watch(health_pb2.HealthCheckRequest(), timeout=60))
            assert "--max-subscribers-per-peer" in refused.details()
            check = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.SERVING  # unary calls still go
            for watch in watches:
                watch.cancel()
    finally:
        srv.stop()
