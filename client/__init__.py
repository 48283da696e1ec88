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
from client.decoding import join
from client.requests import CALENDARS, gbm_request, path_request

__all__ = [
    "CALENDARS",
    "DEFAULT_TARGET",
    "ManagedSubscription",
    "MarketDataClient",
    "PriceChunk",
    "PricePath",
    "PriceStream",
    "Subscription",
    "field_violations",
    "gbm_request",
    "join",
    "path_request",
]
