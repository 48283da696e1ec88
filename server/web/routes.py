"""The HTTP routes: the original /gbm URL, Connect-style calls of every method, price
streams as NDJSON or CSV, the live market as Server-Sent Events, and the live page.

Every route that touches the market or a path makes a call through ``Gateway``: the
request checks, limits and token checks are the gRPC server's own. What this module adds
is only HTTP: reading the request, choosing the format, and writing the reply.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import struct
from pathlib import Path

import grpc
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from marketdata.v1 import market_data_pb2 as pb

from ..logs import LinesPerMinute
from . import formats
from .calls import (
    JSON,
    MAX_BODY_BYTES,
    MAX_JSON_BODY_BYTES,
    CallResponse,
    ClientLeft,
    Output,
    deadline_of,
    error_response,
    invalid,
    media_type,
    metadata,
    parse,
    parse_off_loop,
    read_body,
    to_json,
)
from .gateway import CallError, Gateway
from .gbm import gbm_error, gbm_request, gbm_result

_LOGGER = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["MarketDataService"]
STATIC = Path(__file__).resolve().parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
NDJSON, CSV, PROTO = "application/x-ndjson", "text/csv", "application/proto"
CONNECT_JSON, CONNECT_PROTO = "application/connect+json", "application/connect+proto"


class HttpApi:
    """The Starlette app of one server: its routes, over ``gateway``."""

    def __init__(self, gateway: Gateway, body_seconds: float, stall_seconds: float, budget) -> None:
        """``budget``: the memory replies may hold for their readers (streaming.Generation's)."""
        self.gateway, self.budget = gateway, budget
        self.body_seconds, self.stall_seconds = body_seconds, stall_seconds
        routes = [
            Route("/", self.page, methods=["GET", "HEAD"]),
            Route("/gbm", self.gbm, methods=["GET"]),
            Route("/v1/subscribe", self.subscribe, methods=["GET"]),
            Route(f"/{SERVICE.full_name}/{{method}}", self.rpc, methods=["GET", "POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ]
        handlers = {404: _not_found, 405: _not_allowed, Exception: _internal}  # Exception: a fault's 500
        app = Starlette(routes=routes, exception_handlers=handlers)
        app.router.redirect_slashes = False  # its redirect would name whatever host the client said
        self.app = _SecurityHeaders(app)

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def gbm(self, request: Request) -> Response:
        """The original URL: ``{"result": [prices], "seed": N}``, start price first."""
        try:
            message = gbm_request(request)
            deadline = deadline_of(request)
        except CallError as err:
            return gbm_error(err)
        output = Output(JSON, gbm_result, on_error=gbm_error)
        return CallResponse(self, "GetGbmPrices", request, message, output, deadline)

    async def rpc(self, request: Request) -> Response:
        method = request.path_params["method"]
        descriptor = SERVICE.methods_by_name.get(method)
        if descriptor is None or not self.gateway.has(method):
            names = ", ".join(m.name for m in SERVICE.methods)
            message = f"{SERVICE.full_name} has no method {method[:100]!r}; it has {names}"
            # Connect answers an unknown procedure with 404, which its clients read as unimplemented.
            return error_response(CallError(grpc.StatusCode.UNIMPLEMENTED, message, http=404))
        if descriptor.client_streaming:
            return error_response(
                CallError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} streams requests, which HTTP/1.1 cannot carry; use gRPC, or GET /v1/subscribe "
                    "for the live market",
                )
            )
        request_type = getattr(pb, descriptor.input_type.name)
        # The interceptors first: a call they refuse (no token) is answered before its body is
        # read, as gRPC answers it before decoding the request.
        handler = await self.gateway.handler(method, metadata(request))
        try:
            deadline = deadline_of(request)
            if handler.request_deserializer is None:
                message, output = None, Output(JSON, lambda data: data)
            else:
                message, as_json, enveloped = await self._request_message(request, request_type, descriptor)
                output = self._output(request, descriptor, message, as_json, enveloped)
        except CallError as err:
            return error_response(err)
        except ClientLeft:
            return Response(status_code=499)  # nobody reads it
        return CallResponse(self, method, request, message, output, deadline, handler)

    async def _request_message(self, request: Request, request_type: type[Message], descriptor):
        """The request message, whether it came as JSON, and whether as a Connect stream."""
        if request.method == "GET":  # Connect's GET: ?message=...&encoding=json|proto[&base64=1]
            return _get_message(request, request_type), request.query_params.get("encoding") != "proto", False
        for header in ("content-encoding", "connect-content-encoding"):
            if request.headers.get(header, "identity").strip().lower() != "identity":
                raise CallError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{header} {request.headers[header][:40]!r} is not supported: send the body uncompressed",
                    http=415,
                )
        media = media_type(request)
        most = MAX_JSON_BODY_BYTES if media in (JSON, CONNECT_JSON) else MAX_BODY_BYTES
        if media in (JSON, PROTO):
            data = await read_body(request, self.body_seconds, most)
            return await parse_off_loop(data, request_type, media == JSON), media == JSON, False
        if media in (CONNECT_JSON, CONNECT_PROTO) and descriptor.server_streaming:
            data = await read_body(request, self.body_seconds, most)
            if len(data) < 5 or data[0] != 0 or struct.unpack(">I", data[1:5])[0] != len(data) - 5:
                raise invalid("a Connect stream's request must be one uncompressed enveloped message")
            return (
                await parse_off_loop(data[5:], request_type, media == CONNECT_JSON),
                media == CONNECT_JSON,
                True,
            )
        accepted = f"{JSON} or {PROTO}" + (
            f", {CONNECT_JSON} or {CONNECT_PROTO}" if descriptor.server_streaming else ""
        )
        raise CallError(
            grpc.StatusCode.INVALID_ARGUMENT, f"Content-Type must be {accepted}; got {media[:60]!r}", http=415
        )

    def _output(
        self, request: Request, descriptor, message: Message, as_json: bool, enveloped: bool
    ) -> Output:
        reply_type = getattr(pb, descriptor.output_type.name)
        if not descriptor.server_streaming:
            if as_json:
                return Output(JSON, lambda data: to_json(reply_type.FromString(data)))
            return Output(PROTO, lambda data: data)
        if enveloped:
            return _connect_stream(reply_type, as_json)
        if reply_type in (pb.PriceChunk, pb.GbmPriceChunk):
            _text_chunks(message)
        book = reply_type is pb.PriceChunk and message.HasField("book")
        return _stream_format(request, reply_type, bool(getattr(message, "bar_interval", "")), book)

    async def subscribe(self, request: Request) -> Response:
        """The live market as Server-Sent Events (see the module docstring of formats)."""
        query = request.query_params
        unknown = sorted(set(query) - {"symbols", "heartbeat_seconds"})
        if unknown:
            return error_response(
                invalid(f"unknown query parameter {unknown[0][:40]!r}; accepted: symbols, heartbeat_seconds")
            )
        symbols = [s.strip() for value in query.getlist("symbols") for s in value.split(",") if s.strip()]
        message = pb.SubscribeRequest(symbols=symbols)
        if "heartbeat_seconds" in query:
            try:
                message.heartbeat_seconds = float(query["heartbeat_seconds"])
            except ValueError:
                return error_response(
                    invalid(f"heartbeat_seconds must be a number, got {query['heartbeat_seconds'][:40]!r}")
                )
        resumed = request.headers.get("last-event-id")
        prefix = b""
        if resumed is not None and resumed.isascii() and resumed.isdigit() and len(resumed) <= 20:
            # Missed ticks cannot be replayed; the first event is a fresh snapshot.
            prefix = b": resuming after event %s with a fresh snapshot\n\n" % resumed.encode()
        first = [prefix + b"retry: 1000\n"]  # EventSource reconnects after 1 s, not 3

        def event(data: bytes) -> bytes:
            text = formats.sse_event(data)
            if first:
                text = first.pop() + text
            return text

        output = Output(
            "text/event-stream",
            event,
            end=lambda error: formats.sse_error(error.connect_json()) if error is not None else b"",
            headers=((b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")),
        )
        return CallResponse(self, "Subscribe", request, message, output, None)


TEXT_CHUNK_DEFAULT = 4_096  # values per line of NDJSON (or rows of CSV) when chunk_size is unset
TEXT_CHUNK_MAX = 16_384  # the most: a chunk's text is made in one go, which holds the server


def _text_chunks(message: Message) -> None:
    """A price stream written as text comes in smaller chunks than gRPC's: the default is
    TEXT_CHUNK_DEFAULT, and a chunk_size over TEXT_CHUNK_MAX is refused."""
    if not message.HasField("chunk_size"):
        message.chunk_size = TEXT_CHUNK_DEFAULT
    elif message.chunk_size > TEXT_CHUNK_MAX:
        raise invalid(
            f"chunk_size must be at most {TEXT_CHUNK_MAX} for a stream written as NDJSON or CSV "
            f"(unset: {TEXT_CHUNK_DEFAULT}), got {message.chunk_size}; gRPC and Connect streams take more"
        )


def _get_message(request: Request, request_type: type[Message]) -> Message:
    """Connect's GET: the request in ``message``, JSON or (``encoding=proto``) binary, plain or
    (``base64=1``) in URL-safe base64. Decoded on the loop: the query is at most 64 KiB."""
    query = request.query_params
    encoding = query.get("encoding", "json")
    if encoding not in ("json", "proto"):
        raise invalid(f"encoding must be json or proto, got {encoding[:40]!r}")
    data = query.get("message", "").encode("utf-8", "surrogateescape")
    if query.get("base64") == "1":
        try:
            data = base64.b64decode(data + b"=" * (-len(data) % 4), altchars=b"-_", validate=True)
        except (ValueError, binascii.Error):
            raise invalid("message is not URL-safe base64 (base64=1)") from None
    return parse(data, request_type, encoding == "json")


def _stream_format(request: Request, reply_type: type[Message], bars: bool, book: bool = False) -> Output:
    """NDJSON (the default) or CSV, by ``?format=`` or the Accept header. A path with a book
    is NDJSON only: its sizes and prints have no CSV columns, and are never dropped silently."""
    wanted = request.query_params.get("format")
    if wanted is None:
        accept = request.headers.get("accept", "")
        wanted = "csv" if CSV in accept and NDJSON not in accept else "ndjson"
    if wanted == "ndjson":
        return Output(
            NDJSON,
            lambda data: _line(reply_type.FromString(data)),
            end=lambda error: formats.dumps({"error": error.connect_json()}) + b"\n" if error else b"",
        )
    if wanted == "csv":
        if reply_type not in (pb.PriceChunk, pb.GbmPriceChunk):
            raise invalid(f"format csv is for price streams; {reply_type.DESCRIPTOR.name} comes as ndjson")
        if book:
            raise invalid(
                "book: a path with a book comes as ndjson (its sizes and trades have no CSV columns)"
            )
        writer = formats.CsvWriter(bars)
        return Output(
            CSV + "; charset=utf-8",
            lambda data: writer.rows(reply_type.FromString(data)),
            end=lambda error: (
                f"# error: {error.connect_json()['code']}: {error.message}\r\n".encode() if error else b""
            ),
        )
    raise invalid(f"format must be ndjson or csv, got {wanted[:40]!r}")


async def _line(message: Message) -> bytes:
    return await to_json(message) + b"\n"


def _connect_stream(reply_type: type[Message], as_json: bool) -> Output:
    """Connect's server streams: each reply enveloped, then an end-of-stream message."""

    async def envelope(data: bytes) -> bytes:
        payload = await to_json(reply_type.FromString(data)) if as_json else data
        return b"\x00" + struct.pack(">I", len(payload)) + payload

    def end(error: CallError | None) -> bytes:
        payload = formats.dumps({"error": error.connect_json()} if error else {})
        return b"\x02" + struct.pack(">I", len(payload)) + payload

    return Output(CONNECT_JSON if as_json else CONNECT_PROTO, envelope, end, errors_in_band=True)


async def _not_found(request: Request, exc: Exception) -> Response:
    message = f"no such path: {request.url.path[:100]}; see / for the page"
    return error_response(CallError(grpc.StatusCode.NOT_FOUND, message))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    message = f"{request.method[:10]} is not allowed on {request.url.path[:100]}"
    return error_response(CallError(grpc.StatusCode.UNIMPLEMENTED, message, http=405))


_INTERNAL = CallError(grpc.StatusCode.INTERNAL, "internal error; it was logged")
# A HEAD of a call would run it and throw its reply away (a subscription, for good).
_HEAD_REFUSED = CallError(grpc.StatusCode.UNIMPLEMENTED, "HEAD is only for / and /static/", http=405)


async def _internal(request: Request, exc: Exception) -> Response:
    return error_response(_INTERNAL)


class _SecurityHeaders:
    """Headers every response carries: what the page may load, and no content sniffing."""

    HEADERS = (
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app) -> None:
        self._app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self._app(scope, receive, send)
        started = False

        async def with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), *self.HEADERS]}
            await send(message)

        path = scope.get("path", "")
        static = path == "/" or path.startswith("/static/")
        if scope.get("method") == "HEAD" and not static:
            refused = error_response(_HEAD_REFUSED)
            refused.headers["allow"] = "GET, POST"
            return await refused(scope, receive, with_headers)
        if static:  # a few small files: whole, never in ranges (a hundred ranges cost a hundred reads)
            scope = {**scope, "headers": [h for h in scope["headers"] if h[0] not in (b"range", b"if-range")]}

        try:
            await self._app(scope, receive, with_headers)
        except asyncio.CancelledError:
            return  # the listener is stopping: the connection is already cut
        except Exception:  # a fault of this server's: one answer, and a bounded log
            _log_fault(scope.get("path", "")[:100])
            if not started:
                await error_response(_INTERNAL)(scope, receive, with_headers)


def _log_fault(path: str) -> None:
    """A fault's traceback, at most FAULT_LINES_PER_MINUTE of them: a stranger who finds a way
    to cause one cannot fill the log with them."""
    unlogged = _FAULT_LINES.allow()
    if unlogged is not None:
        more = f" ({unlogged} more since the last line were not logged)" if unlogged else ""
        _LOGGER.exception("HTTP request to %r failed%s", path, more)


FAULT_LINES_PER_MINUTE = 10
_FAULT_LINES = LinesPerMinute(FAULT_LINES_PER_MINUTE)
