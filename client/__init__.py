"""Client side of marketdata.v1: the library a strategy imports, and the sample CLI.

Everything a program needs comes from here:

    from client import MarketDataClient, path_request, join, CALENDARS
    from client import BookKeeper, data_subscription

The modules behind it, in the order data flows: ``requests`` builds the
messages (``models`` reads the models and their parameters from the proto),
``base``, ``api`` and ``aio`` hold the clients, ``streams`` what a streaming
call returns, ``decoding`` turns reply bytes into numpy arrays (``events``
does it for market events: books and trades), ``book`` keeps order books from
snapshots and updates, ``errors`` reads the fields an error names; ``cli`` is
the sample command line.
"""

from .aio import AsyncManagedSubscription, AsyncMarketDataClient, AsyncSubscription
from .api import MarketDataClient
from .base import DEFAULT_TARGET, DEFAULT_UNARY_TIMEOUT, channel_target
from .book import Book, BookGap, BookKeeper, InvalidBook
from .decoding import Bars, DecodeError, PriceChunk, PricePath, as_datetime64, join
from .errors import field_violations
from .events import (
    BookArrays,
    BookColumns,
    DecodedEvent,
    TradeArrays,
    TradeColumns,
    decode_market_event,
    event_books,
    event_kind,
    event_trades,
)
from .models import MODELS
from .requests import (
    CALENDARS,
    DATA_TYPES,
    data_subscription,
    gbm_request,
    path_request,
    subscribe_request,
)
from .streams import ManagedSubscription, PriceStream, SequenceGaps, Subscription

__all__ = [
    "CALENDARS",
    "DATA_TYPES",
    "DEFAULT_TARGET",
    "DEFAULT_UNARY_TIMEOUT",
    "MODELS",
    "AsyncMarketDataClient",
    "AsyncManagedSubscription",
    "AsyncSubscription",
    "Bars",
    "Book",
    "BookArrays",
    "BookColumns",
    "BookGap",
    "BookKeeper",
    "DecodeError",
    "DecodedEvent",
    "InvalidBook",
    "ManagedSubscription",
    "MarketDataClient",
    "PriceChunk",
    "PricePath",
    "PriceStream",
    "SequenceGaps",
    "Subscription",
    "TradeArrays",
    "TradeColumns",
    "as_datetime64",
    "channel_target",
    "data_subscription",
    "decode_market_event",
    "event_books",
    "event_kind",
    "event_trades",
    "field_violations",
    "gbm_request",
    "join",
    "path_request",
    "subscribe_request",
]
