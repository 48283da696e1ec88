"""Calls of MarketDataService made from HTTP, through the very handlers gRPC runs.

An HTTP request becomes a call of the registered method handler, behind the same
interceptors as the gRPC server's (metrics and access log, tokens, admission), with an
``HttpContext`` standing in for grpc.aio's ServicerContext. So a call over HTTP meets
the same request checks, limits and token checks, and makes its reply with the same
code, as one over gRPC: there is no second path to keep in step.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import status_pb2

from ..handlers import AbortError, behaviour_of

STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Connect's names for gRPC's codes, and the HTTP status each answers with.
CONNECT_CODES: dict[grpc.StatusCode, tuple[str, int]] = {
    grpc.StatusCode.CANCELLED: ("canceled", 499),
    grpc.StatusCode.UNKNOWN: ("unknown", 500),
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_argument", 400),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
    grpc.StatusCode.NOT_FOUND: ("not_found", 404),
    grpc.StatusCode.ALREADY_EXISTS: ("already_exists", 409),
    grpc.StatusCode.PERMISSION_DENIED: ("permission_denied", 403),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("resource_exhausted", 429),
    grpc.StatusCode.FAILED_PRECONDITION: ("failed_precondition", 400),
    grpc.StatusCode.ABORTED: ("aborted", 409),
    grpc.StatusCode.OUT_OF_RANGE: ("out_of_range", 400),
    grpc.StatusCode.UNIMPLEMENTED: ("unimplemented", 501),
    grpc.StatusCode.INTERNAL: ("internal", 500),
    grpc.StatusCode.UNAVAILABLE: ("unavailable", 503),
    grpc.StatusCode.DATA_LOSS: ("data_loss", 500),
    grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", 401),
}


@dataclass
class CallError(Exception):
    """How a call over HTTP ended, when not with OK: gRPC's code, message and details."""

    code: grpc.StatusCode
    message: str
    details: Sequence[any_pb2.Any] = ()
    http: int | None = None  # an HTTP status that says more than the code's (413, 415)
    parameter: str | None = None  # the URL's query parameter it is about, if any

    @property
    def http_status(self) -> int:
        return self.http or CONNECT_CODES.get(self.code, ("unknown", 500))[1]

    def connect_json(self) -> dict:
        """The error as Connect writes it: code, message, and each detail with its type, its
        bytes (base64, unpadded) and, for people reading it, the detail as JSON."""
        body: dict = {"code": CONNECT_CODES.get(self.code, ("unknown", 500))[0], "message": self.message}
        if self.details:
            body["details"] = [_detail(d) for d in self.details]
        return body


def _detail(detail: any_pb2.Any) -> dict:
    entry = {
        "type": detail.TypeName(),
        "value": base64.b64encode(detail.value).decode("ascii").rstrip("="),
    }
    with contextlib.suppress(Exception):  # a type this process does not know: no debug form
        entry["debug"] = json_format.MessageToDict(detail)
    return entry


@dataclass
class HttpContext:
    """The part of grpc.aio.ServicerContext that the handlers and interceptors use, for a
    call that arrived over HTTP. ``write`` hands each reply message to ``sink``."""

    peer_name: str
    metadata: tuple[tuple[str, str], ...]
    sink: Callable[[bytes], Awaitable[None]] | None = None
    deadline: float | None = None  # loop time
    flow: object | None = None  # uvicorn's FlowControl: ``write_paused`` while the reader is behind
    stall: float | None = None  # --stall-seconds: how long a write may wait for the reader
    times_writes = True  # a class attribute, for streaming.send: ``write`` applies ``stall`` itself
    _code: grpc.StatusCode | None = None
    _details: str = ""
    _status_details: tuple[any_pb2.Any, ...] = ()
    _done: list[Callable[[HttpContext], object]] = field(default_factory=list)

    def peer(self) -> str:
        return self.peer_name

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        self._code, self._details = code, details
        for key, value in trailing_metadata or ():
            if key == STATUS_DETAILS_KEY:
                self._status_details = tuple(status_pb2.Status.FromString(value).details)
        raise AbortError(details)

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)

    async def write(self, message: bytes | Message) -> None:
        """Hand a reply to the response; TimeoutError if the reader takes nothing for ``stall``
        seconds. The timer is armed only when the reader is behind: a write to a reader
        keeping up never waits, and every message of every stream and subscription comes
        here (which is why streaming.send leaves the timing to this context)."""
        if self.sink is None:
            raise RuntimeError("write on a unary call")
        data = message if isinstance(message, bytes) else message.SerializeToString()
        if self.stall is None or self.flow is None or not self.flow.write_paused:
            await self.sink(data)
            return
        async with asyncio.timeout(self.stall):
            await self.sink(data)

    def add_done_callback(self, callback: Callable[[HttpContext], object]) -> None:
        self._done.append(callback)

    def finish(self) -> None:
        """Run the callbacks that wait for the end of the call (once)."""
        callbacks, self._done = self._done, []
        for callback in callbacks:
            callback(self)

    def error(self) -> CallError | None:
        """How the call ended, if not with OK (a code set, or an abort)."""
        if self._code is None or self._code == grpc.StatusCode.OK:
            return None
        return CallError(self._code, self._details, self._status_details)


@dataclass(frozen=True)
class _CallDetails:
    """What an interceptor is told of a call: grpc.HandlerCallDetails' two fields."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class Gateway:
    """Runs a method of the service behind the gRPC server's own interceptors."""

    def __init__(
        self,
        handlers: dict[str, grpc.RpcMethodHandler],
        interceptors: Sequence[grpc.aio.ServerInterceptor],
        service: str,
    ) -> None:
        self._handlers, self._interceptors, self.service = handlers, tuple(interceptors), service

    def has(self, method: str) -> bool:
        return method in self._handlers

    def streams(self, method: str) -> bool:
        """Whether ``method`` streams its replies."""
        return self._handlers[method].response_streaming

    async def handler(self, method: str, metadata: tuple[tuple[str, str], ...]) -> grpc.RpcMethodHandler:
        """``method``'s handler as gRPC would run it: each interceptor wraps it, the first outermost."""
        own = self._handlers[method]

        async def continuation(details: _CallDetails, depth: int = 0) -> grpc.RpcMethodHandler:
            if depth == len(self._interceptors):
                return own
            return await self._interceptors[depth].intercept_service(
                lambda d: continuation(d, depth + 1), details
            )

        return await continuation(_CallDetails(f"/{self.service}/{method}", metadata))

    async def call(
        self,
        handler: grpc.RpcMethodHandler,
        request: Message | None,
        context: HttpContext,
    ) -> bytes | None:
        """Run the call to its end: the unary reply's bytes (None for a stream, whose replies
        went to ``context.write``), or CallError saying how it ended. The caller runs
        ``context.finish()`` once the reply has been written."""
        _, behaviour = behaviour_of(handler)
        try:
            if context.deadline is None:
                reply = await _run(behaviour, request, context)
            else:
                async with asyncio.timeout_at(context.deadline):
                    reply = await _run(behaviour, request, context)
        except AbortError:
            reply = None
        except TimeoutError:
            if context.deadline is None or context.time_remaining():
                raise
            raise CallError(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline (Connect-Timeout-Ms) passed"
            ) from None
        error = context.error()
        if error is not None:
            raise error
        if reply is None:
            return None
        return handler.response_serializer(reply) if handler.response_serializer else reply


async def _run(behaviour: Callable, request: Message | None, context: HttpContext):
    if inspect.isasyncgenfunction(behaviour):
        async with contextlib.aclosing(behaviour(request, context)) as replies:
            async for reply in replies:
                await context.write(reply)
        return None
    return await behaviour(request, context)
