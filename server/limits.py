"""What one caller may ask of the server: the limits set by flags, and the
message-size arithmetic that keeps every reply inside gRPC's 4 MiB."""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields

from .sim.book import MAX_LEVELS as MAX_BOOK_LEVELS
from .sim.paths import PathPlan

# gRPC refuses to receive messages over 4 MiB unless both sides raise the limit.
GRPC_DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Room for everything in a price message besides the packed arrays: field
# tags, the length prefixes, offset, seed and a symbol of the longest length.
MESSAGE_OVERHEAD_BYTES = 256
# The most prices one message can carry and still fit the default limit.
MAX_PRICES_PER_MESSAGE = (GRPC_DEFAULT_MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD_BYTES) // 8
# A bar costs six 8-byte values.
MAX_BARS_PER_MESSAGE = (GRPC_DEFAULT_MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD_BYTES) // 48
# GetPrices with bar_interval generates its whole fine path (a chunk at a time) within one call:
# at most this many values, so one call stays a few seconds of work.
MAX_UNARY_BAR_STEPS = 2**23

TICKS_PER_SECOND_MAX = 1e9
# A paced stream sends at least one value this often (one every 1000 s): a slower one would
# hold its slot all but forever.
TICKS_PER_SECOND_MIN = 1e-3
# A paced stream with no chunk_size sends about this much wall time of ticks per message.
PACED_CHUNK_SECONDS = 0.01

SLOW_POLICIES = ("conflate", "disconnect")
# GetTrades answers the whole history in one reply: a print costs at most 33 bytes (id,
# price, size, time and a byte of side), so 100,000 of them stay well inside 4 MiB.
TRADE_HISTORY_MAX = 100_000
# GetCandles likewise: a candle of the longest symbol is about 110 bytes.
CANDLE_HISTORY_MAX = 20_000
HEARTBEAT_MIN = 0.05
HEARTBEAT_MAX = 3600.0
# Connection timings above a day are a typo rather than a choice (and gRPC holds milliseconds as int).
MAX_CONNECTION_SECONDS = 86_400.0


class LimitExceeded(Exception):
    """A caller asked for more than a limit allows; the message names the limit and its flag.
    Callers get RESOURCE_EXHAUSTED, and /metrics counts the refusal under ``flag``."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.flag = flag  # the server flag that sets the limit, e.g. "--max-calls"


def limit(default: object, flag: str, help: str, **argparse: object) -> object:
    """A limit's field: its default, the server flag that sets it and the flag's help
    (app builds the command line from these, and the README's Limits table lists them)."""
    return field(default=default, metadata={"flag": flag, "help": help, "argparse": argparse})


def flags(limits: type) -> list[tuple[str, Field]]:
    """Each (flag, field) of a limits class, in declaration order."""
    return [(f.metadata["flag"], f) for f in fields(limits)]


@dataclass(frozen=True)
class Limits:
    """What calls of price paths may hold: sizes, concurrency, memory and time."""

    max_periods: int = limit(10**12, "--max-periods", "largest periods a request may ask for")
    max_chunk_size: int = limit(
        MAX_PRICES_PER_MESSAGE, "--max-chunk-size", f"largest chunk_size, at most {MAX_PRICES_PER_MESSAGE}"
    )
    # 1 MiB messages: the fastest in a sweep of 32Ki..512Ki prices on 2 cores
    # (make bench); smaller chunks pay gRPC's per-message cost more often.
    default_chunk_size: int = limit(
        131_072, "--default-chunk-size", "prices per stream message when chunk_size is unset"
    )
    max_calls: int = limit(
        256, "--max-calls", "calls in progress at once, subscriptions aside (unary calls and price streams)"
    )
    max_streams: int = limit(32, "--max-streams", "StreamPrices and StreamGbmPrices calls open at once")
    max_streams_per_peer: int = limit(
        8, "--max-streams-per-peer", "price streams open at once on one client connection"
    )
    generation_threads: int = limit(
        2, "--generation-threads", "threads that generate large paths, shared by every call"
    )
    read_ahead_mib: int = limit(
        64,
        "--read-ahead-mib",
        "MiB that all streams together may hold in chunks made before their reader asks, and HTTP "
        "replies over 256 KiB waiting for theirs; beyond it a stream makes its next chunk only once "
        "the last is sent, and an HTTP reply is refused",
    )
    stall_seconds: float = limit(
        30.0,
        "--stall-seconds",
        "a stream or subscription whose reader accepts nothing for this long is ended",
    )
    max_stream_seconds: float = limit(
        3_600.0,
        "--max-stream-seconds",
        "longest a price stream may run; a paced one planned to run longer is refused at once",
    )

    def __post_init__(self) -> None:
        if self.max_periods < 1:
            raise ValueError(f"max_periods must be >= 1, got {self.max_periods}")
        if not 1 <= self.max_chunk_size <= MAX_PRICES_PER_MESSAGE:
            raise ValueError(
                f"max_chunk_size must be in [1, {MAX_PRICES_PER_MESSAGE}] so a chunk fits "
                f"gRPC's 4 MiB message limit, got {self.max_chunk_size}"
            )
        if not 1 <= self.default_chunk_size <= self.max_chunk_size:
            raise ValueError(
                f"default_chunk_size must be in [1, max_chunk_size={self.max_chunk_size}], "
                f"got {self.default_chunk_size}"
            )
        _at_least_one(self, "max_calls", "max_streams", "max_streams_per_peer", "generation_threads")
        _positive(self, "read_ahead_mib", "stall_seconds", "max_stream_seconds")

    @property
    def max_unary_periods(self) -> int:
        return min(self.max_periods, MAX_PRICES_PER_MESSAGE)


@dataclass(frozen=True)
class FeedLimits:
    """What live subscriptions may hold, and how slow readers are treated."""

    # make bench row 6: 500 subscribers of every symbol kept p99 lag under 50 ms on 2 cores.
    max_subscribers: int = limit(1_000, "--max-subscribers", "live subscriptions held at once")
    max_subscribers_per_peer: int = limit(
        100, "--max-subscribers-per-peer", "live subscriptions held at once on one client connection"
    )
    max_symbols: int = limit(1_000, "--max-symbols", "symbols in one subscription or GetLastPrices call")
    buffer_ticks: int = limit(
        16, "--subscriber-buffer", "updates queued for one subscriber before --slow-subscriber applies"
    )
    heartbeat_seconds: float = limit(
        1.0, "--heartbeat", "seconds of silence before a subscription gets a heartbeat"
    )
    slow_policy: str = limit(
        "conflate",
        "--slow-subscriber",
        "when a subscriber's buffer is full: conflate (skip to the latest prices; sequence numbers "
        "show the gap) or disconnect (end it with RESOURCE_EXHAUSTED)",
        choices=SLOW_POLICIES,
    )

    max_book_depth: int = limit(
        50,
        "--max-book-depth",
        "levels a side of an order book a subscription or GetOrderBook may ask for (1 to 50)",
    )
    max_book_subscriptions: int = limit(
        10_000,
        "--max-book-subscriptions",
        "order-book and top-of-book subscriptions held at once, one per symbol of each subscriber",
    )
    trade_history: int = limit(
        1_000,
        "--trade-history",
        f"trade prints kept per instrument for GetTrades, at most {TRADE_HISTORY_MAX:,} "
        "(one reply holds them all)",
    )
    candle_history: int = limit(
        3_600,
        "--candle-history",
        f"candles kept per instrument and interval (1s, 1m) for GetCandles, at most {CANDLE_HISTORY_MAX:,}",
    )

    def __post_init__(self) -> None:
        if self.slow_policy not in SLOW_POLICIES:
            raise ValueError(f"slow policy must be one of {SLOW_POLICIES}, got {self.slow_policy!r}")
        _at_least_one(
            self,
            "max_subscribers",
            "max_subscribers_per_peer",
            "max_symbols",
            "buffer_ticks",
            "max_book_subscriptions",
            "trade_history",
            "candle_history",
        )
        if self.trade_history > TRADE_HISTORY_MAX:
            raise ValueError(f"trade_history must be in [1, {TRADE_HISTORY_MAX}], got {self.trade_history}")
        if self.candle_history > CANDLE_HISTORY_MAX:
            raise ValueError(
                f"candle_history must be in [1, {CANDLE_HISTORY_MAX}], got {self.candle_history}"
            )
        if not 1 <= self.max_book_depth <= MAX_BOOK_LEVELS:
            raise ValueError(f"max_book_depth must be in [1, {MAX_BOOK_LEVELS}], got {self.max_book_depth}")
        if not HEARTBEAT_MIN <= self.heartbeat_seconds <= HEARTBEAT_MAX:
            raise ValueError(f"heartbeat must be in [{HEARTBEAT_MIN}, {HEARTBEAT_MAX}] s")


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may hold, and how long: gRPC's own connection settings."""

    max_connections: int = limit(
        1_000, "--max-connections", "client connections open at once; gRPC closes any beyond it"
    )
    handshake_timeout_seconds: float = limit(
        10.0,
        "--handshake-timeout-seconds",
        "a new connection that has not finished its HTTP/2 (and TLS) handshake by then is closed",
    )
    max_connection_idle_seconds: float = limit(
        300.0,
        "--max-connection-idle-seconds",
        "a connection with no call for this long is closed (GOAWAY; clients reconnect when they "
        "next call); 0: never",
    )
    max_connection_age_seconds: float = limit(
        0.0,
        "--max-connection-age-seconds",
        "a connection this old is asked to go (GOAWAY), so clients re-resolve and spread over new "
        "replicas; 0: never",
    )
    max_connection_age_grace_seconds: float = limit(
        30.0,
        "--max-connection-age-grace-seconds",
        "after that, what calls still open on it get before it is closed (0: as long as they run)",
    )
    keepalive_seconds: float = limit(
        60.0,
        "--keepalive-seconds",
        "the server pings a connection quiet for this long, to find clients that vanished",
    )
    keepalive_timeout_seconds: float = limit(
        20.0,
        "--keepalive-timeout-seconds",
        "a ping not answered within this closes the connection, and frees what its calls held",
    )
    keepalive_min_ping_seconds: float = limit(
        10.0,
        "--keepalive-min-ping-seconds",
        "clients may ping at most this often while no data flows; a client that pings faster is "
        "told too_many_pings and disconnected",
    )
    keepalive_permit_without_calls: bool = limit(
        False,
        "--keepalive-permit-without-calls",
        "accept client pings on a connection that has no call (else they count as too many)",
    )

    def __post_init__(self) -> None:
        _at_least_one(self, "max_connections")
        _positive(self, "handshake_timeout_seconds", "keepalive_seconds", "keepalive_timeout_seconds")
        for name in (
            "max_connection_idle_seconds",
            "max_connection_age_seconds",
            "max_connection_age_grace_seconds",
            "keepalive_min_ping_seconds",
        ):
            value = getattr(self, name)
            if not 0 <= value <= MAX_CONNECTION_SECONDS:
                raise ValueError(f"{name} must be in [0, {MAX_CONNECTION_SECONDS:g}], got {value}")
        for name in ("handshake_timeout_seconds", "keepalive_seconds", "keepalive_timeout_seconds"):
            value = getattr(self, name)
            if value > MAX_CONNECTION_SECONDS:
                raise ValueError(f"{name} must be at most {MAX_CONNECTION_SECONDS:g}, got {value}")

    def channel_options(self) -> list[tuple[str, int]]:
        """The gRPC server options these limits set."""

        def ms(seconds: float) -> int:
            return max(1, round(seconds * 1000))

        options = [
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.server_handshake_timeout_ms", ms(self.handshake_timeout_seconds)),
            ("grpc.keepalive_time_ms", ms(self.keepalive_seconds)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout_seconds)),
            ("grpc.http2.ping_timeout_ms", ms(self.keepalive_timeout_seconds)),  # newer gRPC reads this
            # The server's own pings go on however long a call stays quiet (gRPC stops after two
            # without data by default, and a vanished client on a quiet subscription would then
            # never be found).
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", round(self.keepalive_min_ping_seconds * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
        ]
        if self.max_connection_idle_seconds:
            options.append(("grpc.max_connection_idle_ms", ms(self.max_connection_idle_seconds)))
        if self.max_connection_age_seconds:
            options.append(("grpc.max_connection_age_ms", ms(self.max_connection_age_seconds)))
            if self.max_connection_age_grace_seconds:
                options.append(
                    ("grpc.max_connection_age_grace_ms", ms(self.max_connection_age_grace_seconds))
                )
        return options


def _at_least_one(limits: object, *names: str) -> None:
    for name in names:
        if getattr(limits, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(limits, name)}")


def _positive(limits: object, *names: str) -> None:
    for name in names:
        if not getattr(limits, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(limits, name)}")


# The most periods of a path with a book in one reply or chunk: a period's book costs 5 us
# with the default parameters and up to about 150 us (a volatile price that reaches new
# levels every period, refresh_ticks = 1), so one message stays a few seconds of work at worst.
MAX_BOOK_PERIODS_PER_MESSAGE = 16_384
# A trade print on the wire: its id, price and lots (8 bytes each) and its aggressor (a
# one-byte varint), and its time (8 more) when the path has time.
PRINT_BYTES = 25
# The tags and lengths of the book's fields: bid_size, ask_size, the trades message and its
# five arrays (at most 5 bytes each).
BOOK_OVERHEAD_BYTES = 64


def bytes_per_period(plan: PathPlan) -> int:
    """Reply bytes one period of the path costs at most, for the message-size caps (bars
    aside): a value per instrument, a timestamp, a bid and an ask, the lots at both, and the
    prints of a move through every level of the book and one more."""
    size = 8 * max(1, len(plan.symbols)) + 8 * (plan.time is not None) + 16 * (plan.quotes is not None)
    book = plan.book
    if book is not None:
        size += 16 * book.top_of_book
        if book.trades:
            size += (book.params.levels + 1) * (PRINT_BYTES + 8 * (plan.time is not None))
    return size


def array_budget(plan: PathPlan) -> int:
    """Bytes of a reply left for the arrays: the limit less everything else, symbols included.

    MESSAGE_OVERHEAD_BYTES leaves about 90 bytes to spare, enough for the tags
    and lengths of timestamps, bid and ask; a book's fields have their own."""
    fixed = MESSAGE_OVERHEAD_BYTES + sum(len(s.encode("utf-8")) + 3 for s in plan.symbols)
    fixed += BOOK_OVERHEAD_BYTES * (plan.book is not None)
    return GRPC_DEFAULT_MAX_MESSAGE_BYTES - fixed


def book_periods_cap(plan: PathPlan) -> int | None:
    """The most periods one reply or chunk of this plan may hold for its book's work (None
    without a book): MAX_BOOK_PERIODS_PER_MESSAGE."""
    return MAX_BOOK_PERIODS_PER_MESSAGE if plan.book is not None else None


def chunk_cap(limits: Limits, plan: PathPlan) -> tuple[int, str]:
    """The largest chunk_size for this plan, and why it is lower than the server's, if it is."""
    if plan.bar_interval_ns is not None:
        # A chunk closes at most one bar per value, plus the one carried over.
        cap = MAX_BARS_PER_MESSAGE - 1
    else:
        cap = array_budget(plan) // bytes_per_period(plan)
    book = book_periods_cap(plan)
    if book is not None and book < min(cap, limits.max_chunk_size):
        return (
            book,
            " (a book's work is bounded per message: its sizes and prints cost up to 150 us a period)",
        )
    if cap >= limits.max_chunk_size:
        return limits.max_chunk_size, ""
    return cap, " (so that a chunk with these timestamps, quotes, book, bars or assets fits 4 MiB)"
