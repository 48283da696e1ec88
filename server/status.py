"""How failures reach callers: every status the service ends a call with, and its words."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .limits import LimitExceeded
from .metrics import note_limit
from .sim.checks import ParameterError

_LOGGER = logging.getLogger(__name__)


def invalid_argument(err: ParameterError) -> grpc.Status:
    """INVALID_ARGUMENT with the message and a google.rpc.BadRequest naming the field."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=err.field, description=str(err))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(err), details=[detail])
    )


async def abort_invalid(context: grpc.aio.ServicerContext, err: ParameterError) -> NoReturn:
    """End the call with INVALID_ARGUMENT naming the field (see invalid_argument)."""
    await context.abort_with_status(invalid_argument(err))
    raise AssertionError("abort_with_status returned") from err  # pragma: no cover


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with ``code`` and ``message``."""
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


async def refuse(context: grpc.aio.ServicerContext, err: LimitExceeded) -> NoReturn:
    """End the call with RESOURCE_EXHAUSTED naming the limit it would pass (counted by its flag)."""
    note_limit(err.flag, refused=True)
    await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))


async def cut_short(context: grpc.aio.ServicerContext, flag: str, message: str) -> NoReturn:
    """End a running call with RESOURCE_EXHAUSTED because of the limit ``flag`` sets."""
    note_limit(flag, refused=False)
    await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def not_a_valid(message: str) -> str:
    """Why a request that does not decode was refused (``message``: the type's full name)."""
    return f"request is not a valid {message}"


SUBSCRIPTION_CLOSING = "server is shutting down; subscribe again to another server"


def stream_draining(offset: int) -> str:
    """Why a stream was cut by shutdown, and how to get the rest."""
    return (
        f"server is shutting down; the stream stopped before offset {offset}. "
        "Send the same request with the returned seed to another server to replay it."
    )


def stream_too_long(limits, offset: int) -> str:
    """Why a stream was ended for running past --max-stream-seconds."""
    return (
        f"the stream ran longer than the server allows (--max-stream-seconds "
        f"{limits.max_stream_seconds:g}) and stopped before offset {offset}"
    )


def end_stalled(context: grpc.aio.ServicerContext, stall: float) -> None:
    """Mark a call whose reader accepted nothing for ``stall`` seconds as ended with
    RESOURCE_EXHAUSTED. Not abort: that would wait, like any send, for the reader to make
    room; the handler returns at once and gRPC sends the status once the reader reads (or
    drops the call with its connection). Its admission ticket is held until then."""
    _LOGGER.info("ended a call from %s: its reader accepted nothing for %g s", context.peer(), stall)
    note_limit("--stall-seconds", refused=False)
    context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
    context.set_details(
        f"the reader accepted nothing for {stall:g} s (server flag --stall-seconds) and the call "
        "was ended; read the stream as it comes"
    )


def slow_subscriber(buffer_ticks: int) -> str:
    """Why a subscriber under --slow-subscriber disconnect was ended."""
    return (
        f"subscriber fell more than {buffer_ticks} ticks behind the market and "
        "was disconnected (server policy --slow-subscriber disconnect); "
        "read faster or subscribe to fewer symbols"
    )
