"""The price models a PathRequest can name, read from the proto's descriptor.

The ``model`` oneof of PathRequest lists them; each model's message holds its
parameters. Nothing here names a model or a parameter: a model added to the
proto shows up in MODELS, path_request and the command line by itself.
"""

from __future__ import annotations

from marketdata.v1 import market_data_pb2 as pb

_ONEOF = pb.PathRequest.DESCRIPTOR.oneofs_by_name["model"]

MODELS = tuple(f.name for f in _ONEOF.fields)


def path_message(model: str) -> type:
    """The message class of ``model``'s parameters, e.g. pb.MertonModel for "merton"."""
    return getattr(pb, pb.PathRequest.DESCRIPTOR.fields_by_name[model].message_type.name)
