"""One live market across replicas: servers given the same market file (its seed and
epoch) publish the same prices at the same sequence numbers and exchange times, each
computing them itself; one started late catches up exactly; a resubscribing client
never sees the sequence go back."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import tomllib
from pathlib import Path

import grpc
import pytest

from client import MarketDataClient
from client.streams import Subscription
from marketdata.v1 import market_data_pb2 as pb
from server.feed import MarketFeed
from server.sim.checks import ParameterError
from server.sim.market import Market
from server.sim.universe import Instrument, MarketConfig, load_market, parse_epoch, parse_market
from tests.server_process import ServerProcess, run_server

INSTRUMENTS = """
[[instrument]]
symbol = "AAA"
start_price = 100.0
mu = 0.05
sigma = 0.2

[[instrument]]
symbol = "BBB"
start_price = 20.0
sigma = 0.4
tick_size = 0.05

[[instrument]]
symbol = "JUMP"
model = "merton"
start_price = 40.0
mu = 0.03
sigma = 0.25
jump_intensity = 20.0
jump_mean = -0.02
jump_stdev = 0.05

[[instrument]]
symbol = "VOL"
model = "heston"
start_price = 60.0
mu = 0.04
v0 = 0.09
kappa = 2.0
theta = 0.04
xi = 0.5
rho = -0.7

[[instrument]]
symbol = "RATE"
model = "ornstein_uhlenbeck"
start = 0.5
mean = -0.25
kappa = 12.6
sigma = 0.8
tick_size = 0.001
"""
CORRELATION = "[[1, 0.6, 0, 0, 0], [0.6, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]"


def _market_file(path: Path, epoch: dt.datetime, wall_seconds_per_tick: float) -> Path:
    stamp = epoch.isoformat().replace("+00:00", "Z")
    path.write_text(
        f"[market]\nseed = 31\nepoch = {stamp}\nwall_seconds_per_tick = {wall_seconds_per_tick}\n"
        f"simulated_seconds_per_tick = 60\ncorrelation = {CORRELATION}\n{INSTRUMENTS}"
    )
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _target(server: ServerProcess) -> str:
    return server.wait_for(r"listening on (127\.0\.0\.1:\d+)")[0].group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ticks(events, count: int) -> dict[int, tuple[tuple[tuple[str, float], ...], int]]:
    """``count`` snapshots and updates: their prices and exchange time (ns) by sequence."""
    seen = {}
    for event in events:
        if event.HasField("heartbeat"):
            continue
        body = event.snapshot if event.HasField("snapshot") else event.update
        seen[event.sequence] = (
            tuple((p.symbol, p.price) for p in body.prices),
            event.exchange_time.ToNanoseconds(),
        )
        if len(seen) == count:
            return seen
    raise AssertionError("the subscription ended")


def test_replicas_started_apart_agree_and_a_moved_subscription_never_goes_back(python, tmp_path):
    # 50 ticks a second since a minute ago: each replica computes 3,000 ticks before serving.
    epoch = _now() - dt.timedelta(seconds=60)
    market = _market_file(tmp_path / "market.toml", epoch, 0.02)
    flags = ("--market", str(market), "--subscriber-buffer", "1000", "--grace", "1")
    port_b = _free_port()
    with ServerProcess(python, "--port", "0", *flags) as a:
        target_a, target_b = _target(a), f"127.0.0.1:{port_b}"
        # A client of both; B is not up yet, so its subscription starts on A.
        with MarketDataClient([target_a, target_b]) as md:
            moving = md.subscribe(resubscribe=True, heartbeat_seconds=60, timeout=120)
            events = iter(moving)
            yielded = [next(events)]
            while yielded[-1].sequence < yielded[0].sequence + 50:  # B starts a second after A, or more
                yielded.append(next(events))
            with ServerProcess(python, "--port", str(port_b), *flags) as b:
                assert _target(b) == target_b
                with (
                    MarketDataClient(target_a) as on_a,
                    MarketDataClient(target_b) as on_b,
                    on_a.subscribe(heartbeat_seconds=60, timeout=60) as from_a,
                    on_b.subscribe(heartbeat_seconds=60, timeout=60) as from_b,
                ):
                    ticks_a, ticks_b = _ticks(from_a, 40), _ticks(from_b, 40)
                common = sorted(ticks_a.keys() & ticks_b.keys())
                assert len(common) >= 30, (sorted(ticks_a), sorted(ticks_b))
                for sequence in common:
                    assert ticks_a[sequence] == ticks_b[sequence], sequence
                    # Stamped with the tick's scheduled time, from the epoch: the same on every host.
                    assert ticks_a[sequence][1] == round((epoch.timestamp() + sequence * 0.02) * 1e9)
                for target in (target_a, target_b):
                    with MarketDataClient(target) as md_one:
                        assert md_one.list_instruments().seed == 31  # named in the file, so published

                a.proc.kill()  # the replica serving the subscription dies
                a.proc.wait(timeout=10)
                for _ in range(30):
                    yielded.append(next(events))
                moving.cancel()
    assert moving.reconnects >= 1
    sequences = [e.sequence for e in yielded if not e.HasField("heartbeat")]
    assert all(x < y for x, y in zip(sequences, sequences[1:], strict=False)), sequences


def test_a_replica_started_hours_after_the_epoch_agrees_with_one_that_ticked_all_along(python, tmp_path):
    # A tick every 2 s for the last 8 hours: 14,400 ticks computed before it serves.
    epoch = _now() - dt.timedelta(hours=8)
    market = _market_file(tmp_path / "market.toml", epoch, 2.0)
    with ServerProcess(python, "--port", "0", "--market", str(market)) as late:
        target = _target(late)
        late.wait_for(r"computing the \d+ ticks of the market since its epoch")
        with MarketDataClient(target) as md:
            last = md.get_last_prices()
    assert last.sequence >= 14_400
    # The replica that ran all along: the same file's market, ticked one tick at a time.
    reference = Market(load_market(market))
    for _ in range(last.sequence):
        reference.tick()
    assert [p.price for p in last.prices] == reference.last.prices.tolist()
    assert last.exchange_time.ToNanoseconds() == round((epoch.timestamp() + last.sequence * 2.0) * 1e9)


# --- the epoch in the market file ------------------------------------------------------------------


def _epoch_of(value: str) -> float | None:
    return parse_market(tomllib.loads(f"[market]\nepoch = {value}\n[[instrument]]\n{INSTRUMENTS_ONE}")).epoch


INSTRUMENTS_ONE = 'symbol = "AAA"\nstart_price = 1.0\nsigma = 0.1\n'


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T14:30:00Z",  # a TOML offset date-time
        "2026-03-02T15:30:00+01:00",
        '"2026-03-02T14:30:00Z"',  # an ISO 8601 string
        '"2026-03-02T09:30:00-05:00"',
        '"2026-03-02 14:30Z"',
    ],
)
def test_the_epoch_is_one_instant_however_it_is_written(value):
    assert _epoch_of(value) == 1772461800.0


def test_the_epoch_keeps_its_microseconds_exactly():
    # Whole microseconds divided once: the float every host computes for this instant.
    assert _epoch_of("2026-03-02T14:30:00.000001Z") == 1772461800000001 / 1_000_000
    assert parse_epoch("1970-01-01T00:00:00.123456Z") == 0.123456


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-03-02T14:30:00", "epoch must say its UTC offset"),  # a TOML local date-time
        ('"2026-03-02T14:30:00"', "epoch must say its UTC offset"),
        ('"2026-03-02"', "epoch must say its UTC offset"),
        ("2026-03-02", "epoch must be a date and time with Z or a UTC offset"),  # a TOML date
        ("14:30:00", "epoch must be a date and time with Z or a UTC offset"),
        ("1772461800", "epoch must be a date and time with Z or a UTC offset"),
        ('"yesterday"', "epoch must be an ISO 8601 instant"),
        ("1969-12-31T23:59:59Z", "epoch must be from 1970-01-01T00:00:00Z until 2262-01-01T00:00:00Z"),
        ("2262-01-01T00:00:00Z", "epoch must be from 1970-01-01T00:00:00Z until 2262-01-01T00:00:00Z"),
        ('"0001-01-01T00:30:00+01:00"', "epoch must be from 1970-01-01T00:00:00Z"),
    ],
)
def test_a_bad_epoch_is_refused_naming_it(value, message):
    with pytest.raises(ParameterError, match="^" + message) as info:
        _epoch_of(value)
    assert info.value.field == "epoch"


def test_an_epoch_given_in_code_is_checked_too():
    aaa = (Instrument("AAA", 1.0, 0.0, 0.1),)
    assert MarketConfig(aaa, epoch=1772461800.0).epoch == 1772461800.0
    for bad in (-1.0, float("nan"), 1e12, 1772461800):  # before 1970, not a number, past 2262, an int
        with pytest.raises(ParameterError, match="epoch must be a float of seconds"):
            MarketConfig(aaa, epoch=bad)


def test_a_server_refuses_a_bad_epoch_in_one_line(python, tmp_path):
    market = tmp_path / "market.toml"
    market.write_text(f"[market]\nepoch = 2026-03-02T14:30:00\n[[instrument]]\n{INSTRUMENTS_ONE}")
    done = run_server(python, "--port", "0", "--market", str(market))
    assert done.returncode == 2
    assert f"--market {market}: epoch must say its UTC offset" in done.stderr
    assert "Traceback" not in done.stderr


# --- the feed on the epoch's clock -----------------------------------------------------------------


def test_a_feed_runs_on_the_files_epoch_and_shows_the_opening_prices_until_it():
    config = load_epoch_market(1772461800.0)
    feed = MarketFeed(config, wall_clock=lambda: 1772461800.0 - 5)  # started before the epoch
    assert feed.epoch == 1772461800.0 and feed.exchange_time == 1772461800.0
    assert feed.compute_due(1772461800.0 - 1) is None
    assert feed.last.sequence == 0
    interval = config.wall_interval
    assert feed.catch_up(1772461800.0 + 2.5 * interval) == 1  # tick 2 published, tick 1 passed over
    assert feed.last.sequence == 2
    assert feed.exchange_time == 1772461800.0 + 2 * interval
    # An epoch given to the feed (what --workers passes on) wins over the file's.
    assert MarketFeed(config, epoch=5.0).epoch == 5.0


def test_a_long_catch_up_comes_in_slices_that_a_budget_or_a_stop_cut_short():
    config = load_epoch_market(1772461800.0)
    feed = MarketFeed(config)
    now = 1772461800.0 + 100_000 * config.wall_interval
    tick, _, _ = feed.compute_due(now, budget=0.0)  # no time to spare: one slice, then publish
    assert 1 <= tick.sequence < 100_000
    stop = threading.Event()
    stop.set()
    assert feed.compute_due(now, stop) is None
    assert feed.catch_up(now) == 100_000 - tick.sequence - 1
    assert feed.last.sequence == 100_000


def load_epoch_market(epoch: float) -> MarketConfig:
    text = (
        f"[market]\nseed = 4\nepoch = {dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()}\n{INSTRUMENTS}"
    )
    return parse_market(tomllib.loads(text))


# --- the resubscribing client ----------------------------------------------------------------------


class _Lost(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


class _Call:
    """What a Subscribe call yields: ``events``, then UNAVAILABLE when ``lost``."""

    def __init__(self, events: list[pb.MarketEvent], lost: bool) -> None:
        self.events, self.lost = events, lost

    def __iter__(self):
        yield from self.events
        if self.lost:
            raise _Lost()

    def cancel(self) -> None:
        pass


def _event(kind: str, sequence: int, seconds: float) -> pb.MarketEvent:
    event = pb.MarketEvent(sequence=sequence)
    event.exchange_time.FromNanoseconds(round(seconds * 1e9))
    getattr(event, kind).SetInParent()
    return event


def test_a_resubscription_drops_what_was_seen_and_starts_over_only_for_a_new_market_run():
    epoch, interval = 1772461800.0, 0.1

    def at(kind: str, sequence: int, run_epoch: float = epoch) -> pb.MarketEvent:
        return _event(kind, sequence, run_epoch + sequence * interval)

    calls = [
        _Call([at("snapshot", 20), at("update", 21)], lost=True),
        # Another replica, two ticks behind the first when the subscription lands on it.
        _Call(
            [at("snapshot", 19), at("update", 20), at("update", 21), at("heartbeat", 21), at("update", 22)],
            True,
        ),
        # A server restarted with no epoch in its file: a market run of its own, from 0, later.
        _Call([at("snapshot", 0, epoch + 3600), at("update", 1, epoch + 3600)], lost=False),
    ]
    subscription = Subscription(lambda: calls.pop(0), resubscribe=True, backoff_seconds=0.0)
    seen = [(e.WhichOneof("event"), e.sequence) for e in subscription]
    assert seen == [
        ("snapshot", 20),
        ("update", 21),
        ("heartbeat", 21),  # nothing new since 21: a heartbeat may repeat it
        ("update", 22),
        ("snapshot", 0),
        ("update", 1),
    ]
    assert subscription.reconnects == 2
    assert subscription.gaps == 0


def test_a_signal_during_the_catch_up_stops_the_server_before_it_ever_listens(python, tmp_path):
    market = tmp_path / "old.toml"
    market.write_text(  # a year at a tick a millisecond: far more than this test waits for
        '[market]\nseed = 5\nepoch = "2025-01-01T00:00:00Z"\nwall_seconds_per_tick = 0.001\n'
        '[[instrument]]\nsymbol = "A"\nstart_price = 10\nsigma = 0.2\n'
    )
    with ServerProcess(python, "--port", "0", "--market", str(market)) as server:
        server.wait_for(r"computing the \d+ ticks of the market since its epoch")
        assert server.stop(timeout=30) == 0
        assert "listening on" not in server.log
        assert "stopped while starting, before listening" in server.log
