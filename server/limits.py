"""What one caller may ask of the server: the limits set by flags, and the
message-size arithmetic that keeps every reply inside gRPC's 4 MiB."""

from __future__ import annotations

from dataclasses import dataclass

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
# A paced stream with no chunk_size sends about this much wall time of ticks per message.
PACED_CHUNK_SECONDS = 0.01

SLOW_POLICIES = ("conflate", "disconnect")
HEARTBEAT_MIN = 0.05
HEARTBEAT_MAX = 3600.0


@dataclass(frozen=True)
class Limits:
    """Caps on paths, set by command-line flags."""

    max_periods: int = 10**12
    max_chunk_size: int = MAX_PRICES_PER_MESSAGE
    # 1 MiB messages: the fastest in a sweep of 32Ki..512Ki prices on 2 cores
    # (make bench); smaller chunks pay gRPC's per-message cost more often.
    default_chunk_size: int = 131_072

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

    @property
    def max_unary_periods(self) -> int:
        return min(self.max_periods, MAX_PRICES_PER_MESSAGE)


@dataclass(frozen=True)
class FeedLimits:
    """Caps and policies of live subscriptions, set by server flags."""

    max_subscribers: int = 10_000
    max_symbols: int = 1_000  # per subscription
    buffer_ticks: int = 16  # updates queued for one subscriber before the slow policy applies
    heartbeat_seconds: float = 1.0
    slow_policy: str = "conflate"

    def __post_init__(self) -> None:
        if self.slow_policy not in SLOW_POLICIES:
            raise ValueError(f"slow policy must be one of {SLOW_POLICIES}, got {self.slow_policy!r}")
        for name in ("max_subscribers", "max_symbols", "buffer_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not HEARTBEAT_MIN <= self.heartbeat_seconds <= HEARTBEAT_MAX:
            raise ValueError(f"heartbeat must be in [{HEARTBEAT_MIN}, {HEARTBEAT_MAX}] s")


def bytes_per_period(plan: PathPlan) -> int:
    """Reply bytes one period of the path costs, for the message-size caps (bars aside):
    a value per instrument, a timestamp, a bid and an ask."""
    return 8 * max(1, len(plan.symbols)) + 8 * (plan.time is not None) + 16 * (plan.quotes is not None)


def array_budget(plan: PathPlan) -> int:
    """Bytes of a reply left for the arrays: the limit less everything else, symbols included.

    MESSAGE_OVERHEAD_BYTES leaves about 90 bytes to spare, enough for the tags
    and lengths of timestamps, bid and ask."""
    fixed = MESSAGE_OVERHEAD_BYTES + sum(len(s.encode("utf-8")) + 3 for s in plan.symbols)
    return GRPC_DEFAULT_MAX_MESSAGE_BYTES - fixed


def chunk_cap(limits: Limits, plan: PathPlan) -> tuple[int, str]:
    """The largest chunk_size for this plan, and why it is lower than the server's, if it is."""
    if plan.bar_interval_ns is not None:
        # A chunk closes at most one bar per value, plus the one carried over.
        cap = MAX_BARS_PER_MESSAGE - 1
    else:
        cap = array_budget(plan) // bytes_per_period(plan)
    if cap >= limits.max_chunk_size:
        return limits.max_chunk_size, ""
    return cap, " (so that a chunk with these timestamps, quotes, bars or assets fits 4 MiB)"
