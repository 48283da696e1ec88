"""One call over HTTP: reading its request, running it through the gateway, and writing
its replies as they come (``CallResponse``), with the errors Connect's way."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..status import not_a_valid
from . import formats
from .gateway import CallError, HttpContext

if TYPE_CHECKING:
    from .routes import HttpApi

_LOGGER = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # a binary request: gRPC's own default for a message
MAX_JSON_BODY_BYTES = 256 * 1024  # a JSON request: the largest legitimate one is about 150 KiB
LARGE_JSON_BYTES = 256 * 1024  # replies past this are converted off the loop, and held in the budget
LARGE_REQUEST_BYTES = 16 * 1024  # requests past this are decoded off the loop (JSON: ~1 ms a KiB)
LARGE_PARSES = 2  # such requests decoded at once; one more is refused
JSON = "application/json"


def error_response(error: CallError, extra: dict | None = None) -> Response:
    body = error.connect_json()
    if extra:
        body.update(extra)
    return Response(formats.dumps(body), status_code=error.http_status, media_type=JSON)


def invalid(message: str, parameter: str | None = None) -> CallError:
    return CallError(grpc.StatusCode.INVALID_ARGUMENT, message, parameter=parameter)


def peer(request: Request) -> str:
    """The caller as gRPC names one (``ipv4:127.0.0.1:5000``), for limits and logs."""
    client = request.scope.get("client")
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"ipv6:[{host}]:{port}"
    return f"ipv4:{host}:{port}"


def metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """The request's headers as gRPC metadata (lower-case names), as the interceptors read it."""
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.scope["headers"]
    )


def deadline_of(request: Request) -> float | None:
    """Connect's ``Connect-Timeout-Ms`` as a loop time, or None."""
    value = request.headers.get("connect-timeout-ms")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise invalid(
            f"Connect-Timeout-Ms must be a whole number of milliseconds up to 10 digits, got {value!r}"
        )
    return asyncio.get_running_loop().time() + int(value) / 1000


class ClientLeft(Exception):
    """The HTTP client closed the connection before the call ended."""


async def read_body(request: Request, limit: float, most: int) -> bytes:
    """The request body, at most ``most`` bytes, arriving within ``limit`` seconds."""
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) > most:
        raise CallError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request body is {int(length)} bytes; at most {most} are accepted",
            http=413,
        )
    parts, size = [], 0
    try:
        async with asyncio.timeout(limit):
            async for part in request.stream():
                size += len(part)
                if size > most:
                    raise CallError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the request body is over {most} bytes, the most accepted",
                        http=413,
                    )
                parts.append(part)
    except ClientDisconnect:  # gone half-way through its body: nobody to answer
        raise ClientLeft from None
    except TimeoutError:
        raise CallError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"the request body did not arrive within {limit:g} s (server flag --handshake-timeout-seconds)",
            http=408,
        ) from None
    return b"".join(parts)


def parse(data: bytes, message: type[Message], as_json: bool) -> Message:
    """``data`` as a request ``message``, or INVALID_ARGUMENT saying why it is not one."""
    name = not_a_valid(message.DESCRIPTOR.full_name)
    try:
        if not as_json:
            return message.FromString(data)
        if not data.strip():
            return message()
        if not data.lstrip()[:1] == b"{":
            raise invalid(f"{name}: a JSON object was expected")
        return json_format.Parse(data, message())
    except (json_format.ParseError, DecodeError, UnicodeDecodeError, RecursionError, ValueError) as err:
        raise invalid(f"{name}: {_reason(err)}") from None


_PYTHON_INSIDE = ("object is not", "object has no", "Error:", "sys.set_int_max_str_digits")


def _reason(err: Exception) -> str:
    """json_format's words for what is wrong ("Failed to parse periods field: Couldn't parse
    integer: inf at PathRequest.periods"), without the Python some of them carry (a
    TypeError's text, an interpreter setting)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if any(inside in text for inside in _PYTHON_INSIDE):
        if text.startswith("Failed to parse ") and " field: " in text:
            text = text.partition(" field: ")[0] + " field: not a value of its type"
        elif "digits" in text:
            text = "Failed to load JSON: a number with too many digits"
        else:
            text = "not a value of its field's type"
    return text[:300]


_large_parses = 0


async def parse_off_loop(data: bytes, message: type[Message], as_json: bool) -> Message:
    """A large request is decoded on a thread, at most LARGE_PARSES at once: JSON decoding
    is slow Python, and a stranger's megabyte must not hold the loop or every thread."""
    global _large_parses
    if len(data) <= LARGE_REQUEST_BYTES:
        return parse(data, message, as_json)
    if _large_parses >= LARGE_PARSES:
        raise CallError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the server is already decoding {LARGE_PARSES} large requests (over "
            f"{LARGE_REQUEST_BYTES // 1024} KiB); retry shortly",
        )
    _large_parses += 1
    try:
        return await asyncio.to_thread(parse, data, message, as_json)
    finally:
        _large_parses -= 1


async def to_json(message: Message) -> bytes:
    if message.ByteSize() > LARGE_JSON_BYTES:
        return await asyncio.to_thread(formats.message_json, message)
    return formats.message_json(message)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# ---- one call, its reply written as it comes ---------------------------------------------------


@dataclass
class Output:
    """How a call's replies become bytes: the media type, each reply message, and the end."""

    media_type: str
    message: Callable[[bytes], Awaitable[bytes] | bytes]
    end: Callable[[CallError | None], bytes] = lambda error: b""
    errors_in_band: bool = False  # Connect streams report every error inside the body
    headers: tuple[tuple[bytes, bytes], ...] = ()
    on_error: Callable[[CallError], Response] = error_response  # before any reply was written


class CallResponse(Response):
    """An ASGI response that runs one call and writes its replies as they come. The call is
    cancelled when the client disconnects; a reply the reader does not take within the
    call's stall limit drops the connection."""

    def __init__(
        self,
        api: HttpApi,
        method: str,
        request: Request,
        message: Message | None,
        output: Output,
        deadline: float | None,
        handler: grpc.RpcMethodHandler | None = None,
    ) -> None:
        """``handler``: the method's, behind the interceptors, if the route has it already."""
        self._api, self._method, self._request = api, method, request
        self._message, self._output, self._deadline = message, output, deadline
        self._handler = handler
        self.background = None

    async def __call__(self, scope, receive, send) -> None:
        output, started = self._output, False
        extensions = scope.get("extensions") or {}
        flow = extensions.get("marketdata.flow")  # uvicorn's flow control of this connection
        streaming = self._api.gateway.streams(self._method)

        async def start(status: int, media_type: str) -> None:
            nonlocal started
            started = True
            headers = [(b"content-type", media_type.encode()), *output.headers]
            await send({"type": "http.response.start", "status": status, "headers": headers})

        async def sink(data: bytes) -> None:
            body = output.message(data)
            if not isinstance(body, bytes):
                body = await body
            if not started:
                await start(200, output.media_type)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            # uvicorn's send returns at once while the socket keeps up (and once the client has
            # gone): without this a fast reader's stream would never let the loop run anything
            # else, nor the watcher see the client leave.
            await asyncio.sleep(0)

        context = HttpContext(
            peer(self._request), metadata(self._request), sink, self._deadline, flow, self._api.stall_seconds
        )
        error: CallError | None = None
        reply: bytes | None = None
        dropped = False
        try:
            try:
                if streaming:  # cancelled when the client leaves, as gRPC cancels a call
                    reply = await _until_disconnect(self._run(context), receive)
                else:  # one reply, soon: a client that left finds it unread
                    reply = await self._run(context)
            except CallError as err:
                error = err
            except ClientLeft:
                return
            dropped = await self._end(scope, receive, send, reply, error, started, start, flow)
        finally:
            context.finish()  # the call's slot is free only once its reply has left
        if dropped:
            _LOGGER.info("dropped an HTTP reader that accepted nothing for %g s", self._api.stall_seconds)

    async def _end(self, scope, receive, send, reply, error, started, start, flow) -> bool:
        """Write the reply, the error or the stream's end; drop a reader that takes none of it
        within the stall limit (a reply left unread would hold its memory for good). Whether
        it was dropped."""
        output, budget, held = self._output, self._api.budget, 0
        try:
            if reply is not None:
                body = output.message(reply)
                if not isinstance(body, bytes):
                    body = await body
                if len(body) > LARGE_JSON_BYTES:  # held for its reader: within the shared budget
                    if not budget.reserve(len(body)):
                        await output.on_error(_no_room(len(body), budget))(scope, receive, send)
                        return False
                    held = len(body)
                await start(200, output.media_type)
                await send({"type": "http.response.body", "body": body})
            elif error is not None and not started and not output.errors_in_band:
                await output.on_error(error)(scope, receive, send)
            else:
                if not started:
                    await start(200, output.media_type)
                await send({"type": "http.response.body", "body": output.end(error)})
            if flow is not None and flow.write_paused:
                async with asyncio.timeout(self._api.stall_seconds):
                    await flow.drain()
        except TimeoutError:  # the reader took nothing for the stall limit: drop it
            (scope.get("extensions") or {}).get("marketdata.abort", lambda: None)()
            await asyncio.sleep(0)
            return True
        except OSError:
            pass  # the client left before the end
        finally:
            budget.free(held)
        return False

    async def _run(self, context: HttpContext) -> bytes | None:
        gateway = self._api.gateway
        handler = self._handler or await gateway.handler(self._method, context.metadata)
        # A call the interceptors refuse (no token) never has its request decoded over gRPC;
        # here the request was parsed already, and is not handed on either.
        message = self._message if handler.request_deserializer is not None else None
        return await gateway.call(handler, message, context)


def _no_room(size: int, budget) -> CallError:
    return CallError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the reply ({size / 2**20:.1f} MiB) does not fit in what the server holds for readers that "
        f"have not read yet ({budget.room / 2**20:g} MiB, server flag --read-ahead-mib, shared by "
        "every stream); read replies as they come, or ask for less",
    )


async def _until_disconnect(call: Awaitable, receive):
    """``call``'s result, or _ClientLeft once the client disconnects (the call is cancelled)."""
    task = asyncio.ensure_future(call)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled() and not asyncio.current_task().cancelling():
            raise ClientLeft from None
        raise
    finally:
        watcher.cancel()
