"""The original URL, ``GET /gbm?periods=&startPrice=&mu=&sigma=&delta=[&seed=]``: its
query read into a GbmRequest, its reply ``{"result": [...], "seed": N}``, and its errors
in its own terms (the query parameter's name, not the field's)."""

from __future__ import annotations

import math
import re

from google.rpc import error_details_pb2
from starlette.requests import Request
from starlette.responses import Response

from marketdata.v1 import market_data_pb2 as pb

from . import formats
from .calls import error_response, invalid
from .gateway import CallError

GBM_PARAMETERS = {  # the original URL's parameters: query name -> (GbmRequest field, type)
    "periods": ("periods", int),
    "startPrice": ("start_price", float),
    "mu": ("mu", float),
    "sigma": ("sigma", float),
    "delta": ("delta", float),
    "seed": ("seed", int),
}
_INTEGER = re.compile(r"-?[0-9]{1,25}")
_NUMBER = re.compile(
    r"-?(?:[0-9]{1,25}(?:\.[0-9]{0,25})?|\.[0-9]{1,25})(?:[eE][-+]?[0-9]{1,4})?|-?inf|nan", re.I
)
GBM_REQUIRED = ("periods", "startPrice", "mu", "sigma", "delta")


def gbm_request(request: Request) -> pb.GbmRequest:
    query = request.query_params
    for name in query:
        if name not in GBM_PARAMETERS:
            raise invalid(
                f"unknown parameter {name[:40]!r}; accepted: {', '.join(GBM_PARAMETERS)}", name[:40]
            )
    missing = [name for name in GBM_REQUIRED if name not in query]
    if missing:
        raise invalid(f"{missing[0]} is required (all of {', '.join(GBM_REQUIRED)} are)", missing[0])
    message = pb.GbmRequest()
    for name, (field, kind) in GBM_PARAMETERS.items():
        given = query.getlist(name)
        if not given:
            continue
        if len(given) > 1:
            raise invalid(f"{name} is given {len(given)} times; give it once", name)
        text = given[0]
        # ASCII digits only: Python's int() and float() also take "1_0", " 5 " and other scripts' digits.
        if not (_INTEGER if kind is int else _NUMBER).fullmatch(text):
            noun = "a whole number" if kind is int else "a number"
            raise invalid(f"{name} must be {noun}, got {text[:40]!r}", name) from None
        value = kind(text)
        if kind is int and not 0 <= value < 2**64:
            raise invalid(f"{name} must be in [0, 2^64), got {text[:40]}", name)
        if kind is float and not math.isfinite(value):
            raise invalid(f"{name} must be a finite number, got {text[:40]!r}", name)
        setattr(message, field, value)
    return message


def _parameter_of(error: CallError) -> str | None:
    """The query parameter an error of GetGbmPrices is about, from the field it names."""
    if error.parameter is not None:
        return error.parameter
    for detail in error.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad) and bad.field_violations:
            field = bad.field_violations[0].field
            return next((n for n, (f, _) in GBM_PARAMETERS.items() if f == field), field)
    return None


def gbm_result(data: bytes) -> bytes:
    reply = pb.GbmPrices.FromString(data)
    return formats.dumps({"result": formats.floats(reply.prices), "seed": reply.seed})


def gbm_error(error: CallError) -> Response:
    """An error of /gbm in the original URL's terms: the query parameter's name, not the field's."""
    message = error.message
    for name, (field, _) in GBM_PARAMETERS.items():
        if message.startswith(field + " "):
            message = name + message[len(field) :]
    parameter = _parameter_of(error)
    renamed = CallError(error.code, message, http=error.http)
    return error_response(renamed, {"parameter": parameter} if parameter else None)
