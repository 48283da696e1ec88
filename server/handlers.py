"""What the interceptors share: a method handler's one behaviour, and running a step before it.

A gRPC method handler carries its code in one of four fields, by the shape of the call;
grpc.aio runs an async generator for the calls that stream replies and a coroutine for the
others, so a step that must come first is wrapped in the one form or the other.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import grpc

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
