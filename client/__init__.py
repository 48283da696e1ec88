"""Client side of marketdata.v1: the library a strategy imports, and the sample CLI."""

from client.api import (
    DEFAULT_TARGET,
    ManagedSubscription,
    MarketDataClient,
    PriceChunk,
    PricePath,
    PriceStream,
    Subscription,
    field_violations,
)

__all__ = [
    "DEFAULT_TARGET",
    "ManagedSubscription",
    "MarketDataClient",
    "PriceChunk",
    "PricePath",
    "PriceStream",
    "Subscription",
    "field_violations",
]
