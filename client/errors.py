"""What a failed call says beyond its status code, for programs.

Every error of a call is a ``grpc.RpcError`` carrying the server's status
code and message; an INVALID_ARGUMENT also carries a ``google.rpc.BadRequest``
naming each field at fault, which ``field_violations`` reads.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of a google.rpc.BadRequest in an error, if any."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None:
        return []
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found
