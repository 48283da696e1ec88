"""What the interceptors share: a method handler's one behaviour, running a step before it,
and the exceptions a handler ends with when its call is aborted or its client has gone.

A gRPC method handler carries its code in one of four fields, by the shape of the call;
grpc.aio runs an async generator for the calls that stream replies and a coroutine for the
others, so a step that must come first is wrapped in the one form or the other.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import grpc

try:  # gRPC exposes no public type for these: an abort, and a write after the client left
    from grpc._cython.cygrpc import AbortError, ExecuteBatchError

    WRITE_AFTER_PEER_LEFT: tuple[type[BaseException], ...] = (ExecuteBatchError,)
except ImportError:  # pragma: no cover - another gRPC build: a write that fails surfaces

    class AbortError(Exception):  # type: ignore[no-redef]
        """What HttpContext.abort raises where gRPC has no such type."""

    WRITE_AFTER_PEER_LEFT = ()
# How a handler ends when the call did not: an abort (its code set), or the client gone.
ABORTED: tuple[type[BaseException], ...] = (AbortError,)
LEFT: tuple[type[BaseException], ...] = (asyncio.CancelledError, GeneratorExit, *WRITE_AFTER_PEER_LEFT)

BEHAVIOURS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def behaviour_of(handler: grpc.RpcMethodHandler) -> tuple[str, Callable]:
    """The name of the field that holds ``handler``'s code, and the code."""
    name = next(b for b in BEHAVIOURS if getattr(handler, b) is not None)
    return name, getattr(handler, name)


def run_first(
    handler: grpc.RpcMethodHandler,
    step: Callable[[grpc.aio.ServicerContext], Awaitable[None]],
    **changes: object,
) -> grpc.RpcMethodHandler:
    """``handler`` with ``await step(context)`` before its code (a step that aborts ends the
    call there), and any other ``changes`` to its fields."""
    name, behaviour = behaviour_of(handler)
    if inspect.isasyncgenfunction(behaviour):

        async def replies(request, context):
            await step(context)
            async for reply in behaviour(request, context):
                yield reply

        return handler._replace(**{name: replies}, **changes)

    async def reply(request, context):
        await step(context)
        return await behaviour(request, context)

    return handler._replace(**{name: reply}, **changes)
