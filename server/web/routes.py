"""The HTTP routes: the original /gbm URL, Connect-style calls of every method, price
streams as NDJSON or CSV, the live market as Server-Sent Events, and the live page.

Every route that touches the market or a path makes a call through ``Gateway``: the
request checks, limits and token checks are the gRPC server's own. What this module adds
is only HTTP: reading the request, choosing the format, and writing the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from marketdata.v1 import market_data_pb2 as pb

from ..status import not_a_valid
from . import formats
from .gateway import CallError, Gateway, HttpContext

_LOGGER = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["MarketDataService"]
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 4 * 1024 * 1024  # gRPC's own default for a request message
LARGE_JSON_BYTES = 256 * 1024  # replies and requests past this are converted off the loop
MAX_TIMEOUT_MS = 10**10
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
NDJSON, CSV, JSON, PROTO = "application/x-ndjson", "text/csv", "application/json", "application/proto"
CONNECT_JSON, CONNECT_PROTO = "application/connect+json", "application/connect+proto"
GBM_PARAMETERS = {  # the original URL's parameters: query name -> (GbmRequest field, type)
    "periods": ("periods", int),
    "startPrice": ("start_price", float),
    "mu": ("mu", float),
    "sigma": ("sigma", float),
    "delta": ("delta", float),
    "seed": ("seed", int),
}
GBM_REQUIRED = ("periods", "startPrice", "mu", "sigma", "delta")


def _error_response(error: CallError, extra: dict | None = None) -> Response:
    body = error.connect_json()
    if extra:
        body.update(extra)
    return Response(formats.dumps(body), status_code=error.http_status, media_type=JSON)


def _invalid(message: str, parameter: str | None = None) -> CallError:
    return CallError(grpc.StatusCode.INVALID_ARGUMENT, message, parameter=parameter)


def _peer(request: Request) -> str:
    """The caller as gRPC names one (``ipv4:127.0.0.1:5000``), for limits and logs."""
    client = request.scope.get("client")
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"ipv6:[{host}]:{port}"
    return f"ipv4:{host}:{port}"


def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """The request's headers as gRPC metadata (lower-case names), as the interceptors read it."""
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.scope["headers"]
    )


def _deadline(request: Request) -> float | None:
    """Connect's ``Connect-Timeout-Ms`` as a loop time, or None."""
    value = request.headers.get("connect-timeout-ms")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise _invalid(
            f"Connect-Timeout-Ms must be a whole number of milliseconds up to 10 digits, got {value!r}"
        )
    return asyncio.get_running_loop().time() + int(value) / 1000


async def _body(request: Request, limit: float) -> bytes:
    """The request body, at most MAX_BODY_BYTES, arriving within ``limit`` seconds."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise CallError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request body is {int(length)} bytes; at most {MAX_BODY_BYTES} are accepted",
            http=413,
        )
    parts, size = [], 0
    try:
        async with asyncio.timeout(limit):
            async for part in request.stream():
                size += len(part)
                if size > MAX_BODY_BYTES:
                    raise CallError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the request body is over {MAX_BODY_BYTES} bytes, the most accepted",
                        http=413,
                    )
                parts.append(part)
    except TimeoutError:
        raise CallError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"the request body did not arrive within {limit:g} s (server flag --handshake-timeout-seconds)",
            http=408,
        ) from None
    return b"".join(parts)


def _parse(data: bytes, message: type[Message], as_json: bool) -> Message:
    """``data`` as a request ``message``, or INVALID_ARGUMENT saying why it is not one."""
    try:
        if as_json:
            return json_format.Parse(data or b"{}", message())
        return message.FromString(data)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError, RecursionError, ValueError) as err:
        reason = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise _invalid(f"{not_a_valid(message.DESCRIPTOR.full_name)}: {reason}") from None


async def _parse_off_loop(data: bytes, message: type[Message], as_json: bool) -> Message:
    if len(data) > LARGE_JSON_BYTES:
        return await asyncio.to_thread(_parse, data, message, as_json)
    return _parse(data, message, as_json)


async def _to_json(message: Message) -> bytes:
    if message.ByteSize() > LARGE_JSON_BYTES:
        return await asyncio.to_thread(formats.message_json, message)
    return formats.message_json(message)


def _media_type(request: Request) -> str:
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
    on_error: Callable[[CallError], Response] = _error_response  # before any reply was written


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
    ) -> None:
        self._api, self._method, self._request = api, method, request
        self._message, self._output, self._deadline = message, output, deadline
        self.background = None

    async def __call__(self, scope, receive, send) -> None:
        output, started = self._output, False
        stall = self._api.stall_seconds

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
            try:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            except OSError:  # the client is gone: end the call as gRPC ends a cancelled one
                call.cancel()
                await asyncio.sleep(0)

        context = HttpContext(_peer(self._request), _metadata(self._request), sink, self._deadline)
        call = asyncio.create_task(self._run(context))
        watcher = asyncio.create_task(_watch_disconnect(receive, call))
        error: CallError | None = None
        reply: bytes | None = None
        try:
            reply = await call
        except CallError as err:
            error = err
        except asyncio.CancelledError:
            if not call.cancelled() or asyncio.current_task().cancelling():
                raise
            return  # the client left
        finally:
            watcher.cancel()
        try:
            async with asyncio.timeout(stall):
                if reply is not None:
                    body = output.message(reply)
                    if not isinstance(body, bytes):
                        body = await body
                    await start(200, output.media_type)
                    await send({"type": "http.response.body", "body": body})
                elif error is not None and not started and not output.errors_in_band:
                    await output.on_error(error)(scope, receive, send)
                else:
                    if not started:
                        await start(200, output.media_type)
                    await send({"type": "http.response.body", "body": output.end(error)})
        except TimeoutError:  # the reader took nothing for the stall limit: drop it
            scope.get("extensions", {}).get("marketdata.abort", lambda: None)()
            await asyncio.sleep(0)
        except OSError:
            pass  # the client left before the end

    async def _run(self, context: HttpContext) -> bytes | None:
        gateway = self._api.gateway
        handler = await gateway.handler(self._method, context.metadata)
        # A call the interceptors refuse (no token) never has its request decoded over gRPC;
        # here the request was parsed already, and is not handed on either.
        message = self._message if handler.request_deserializer is not None else None
        return await gateway.call(handler, message, context)


async def _watch_disconnect(receive, call: asyncio.Task) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            call.cancel()
            return


# ---- the routes ---------------------------------------------------------------------------------


class HttpApi:
    """The Starlette app of one server: its routes, over ``gateway``."""

    def __init__(self, gateway: Gateway, body_seconds: float, stall_seconds: float) -> None:
        self.gateway = gateway
        self.body_seconds, self.stall_seconds = body_seconds, stall_seconds
        routes = [
            Route("/", self.page, methods=["GET", "HEAD"]),
            Route("/gbm", self.gbm, methods=["GET"]),
            Route("/v1/subscribe", self.subscribe, methods=["GET"]),
            Route(f"/{SERVICE.full_name}/{{method}}", self.rpc, methods=["GET", "POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ]
        app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
        self.app = _SecurityHeaders(app)

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def gbm(self, request: Request) -> Response:
        """The original URL: ``{"result": [prices], "seed": N}``, start price first."""
        try:
            message = _gbm_request(request)
            deadline = _deadline(request)
        except CallError as err:
            return _gbm_error(err)
        output = Output(JSON, _gbm_result, on_error=_gbm_error)
        return CallResponse(self, "GetGbmPrices", request, message, output, deadline)

    async def rpc(self, request: Request) -> Response:
        method = request.path_params["method"]
        descriptor = SERVICE.methods_by_name.get(method)
        if descriptor is None or not self.gateway.has(method):
            names = ", ".join(m.name for m in SERVICE.methods)
            message = f"{SERVICE.full_name} has no method {method[:100]!r}; it has {names}"
            # Connect answers an unknown procedure with 404, which its clients read as unimplemented.
            return Response(
                formats.dumps({"code": "unimplemented", "message": message}), status_code=404, media_type=JSON
            )
        if descriptor.client_streaming:
            return _error_response(
                CallError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} streams requests, which HTTP/1.1 cannot carry; use gRPC, or GET /v1/subscribe "
                    "for the live market",
                )
            )
        request_type = getattr(pb, descriptor.input_type.name)
        try:
            deadline = _deadline(request)
            message, as_json, enveloped = await self._request_message(request, request_type, descriptor)
            output = self._output(request, descriptor, message, as_json, enveloped)
        except CallError as err:
            return _error_response(err)
        return CallResponse(self, method, request, message, output, deadline)

    async def _request_message(self, request: Request, request_type: type[Message], descriptor):
        """The request message, whether it came as JSON, and whether as a Connect stream."""
        if request.method == "GET":  # Connect's GET: ?message=<JSON>&encoding=json
            query = request.query_params
            encoding = query.get("encoding", "json")
            if encoding != "json":
                raise _invalid(f"encoding must be json on GET (got {encoding[:40]!r}); POST a binary request")
            return await _parse_off_loop(query.get("message", "{}").encode(), request_type, True), True, False
        media = _media_type(request)
        if media in (JSON, PROTO):
            data = await _body(request, self.body_seconds)
            return await _parse_off_loop(data, request_type, media == JSON), media == JSON, False
        if media in (CONNECT_JSON, CONNECT_PROTO) and descriptor.server_streaming:
            data = await _body(request, self.body_seconds)
            if len(data) < 5 or data[0] & 0x01 or struct.unpack(">I", data[1:5])[0] != len(data) - 5:
                raise _invalid("a Connect stream's request must be one uncompressed enveloped message")
            return (
                await _parse_off_loop(data[5:], request_type, media == CONNECT_JSON),
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
                return Output(JSON, lambda data: _to_json(reply_type.FromString(data)))
            return Output(PROTO, lambda data: data)
        if enveloped:
            return _connect_stream(reply_type, as_json)
        return _stream_format(request, reply_type, bool(getattr(message, "bar_interval", "")))

    async def subscribe(self, request: Request) -> Response:
        """The live market as Server-Sent Events (see the module docstring of formats)."""
        query = request.query_params
        unknown = sorted(set(query) - {"symbols", "heartbeat_seconds"})
        if unknown:
            return _error_response(
                _invalid(f"unknown query parameter {unknown[0][:40]!r}; accepted: symbols, heartbeat_seconds")
            )
        symbols = [s.strip() for value in query.getlist("symbols") for s in value.split(",") if s.strip()]
        message = pb.SubscribeRequest(symbols=symbols)
        if "heartbeat_seconds" in query:
            try:
                message.heartbeat_seconds = float(query["heartbeat_seconds"])
            except ValueError:
                return _error_response(
                    _invalid(f"heartbeat_seconds must be a number, got {query['heartbeat_seconds'][:40]!r}")
                )
        resumed = request.headers.get("last-event-id")
        prefix = b""
        if resumed is not None and resumed.isdigit() and len(resumed) <= 20:
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


def _stream_format(request: Request, reply_type: type[Message], bars: bool) -> Output:
    """NDJSON (the default) or CSV, by ``?format=`` or the Accept header."""
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
            raise _invalid(f"format csv is for price streams; {reply_type.DESCRIPTOR.name} comes as ndjson")
        writer = formats.CsvWriter(bars)
        return Output(
            CSV + "; charset=utf-8",
            lambda data: writer.rows(reply_type.FromString(data)),
            end=lambda error: (
                f"# error: {error.connect_json()['code']}: {error.message}\r\n".encode() if error else b""
            ),
        )
    raise _invalid(f"format must be ndjson or csv, got {wanted[:40]!r}")


async def _line(message: Message) -> bytes:
    return await _to_json(message) + b"\n"


def _connect_stream(reply_type: type[Message], as_json: bool) -> Output:
    """Connect's server streams: each reply enveloped, then an end-of-stream message."""

    async def envelope(data: bytes) -> bytes:
        payload = await _to_json(reply_type.FromString(data)) if as_json else data
        return b"\x00" + struct.pack(">I", len(payload)) + payload

    def end(error: CallError | None) -> bytes:
        payload = formats.dumps({"error": error.connect_json()} if error else {})
        return b"\x02" + struct.pack(">I", len(payload)) + payload

    return Output(CONNECT_JSON if as_json else CONNECT_PROTO, envelope, end, errors_in_band=True)


def _gbm_request(request: Request) -> pb.GbmRequest:
    query = request.query_params
    for name in query:
        if name not in GBM_PARAMETERS:
            raise _invalid(
                f"unknown parameter {name[:40]!r}; accepted: {', '.join(GBM_PARAMETERS)}", name[:40]
            )
    missing = [name for name in GBM_REQUIRED if name not in query]
    if missing:
        raise _invalid(f"{missing[0]} is required (all of {', '.join(GBM_REQUIRED)} are)", missing[0])
    message = pb.GbmRequest()
    for name, (field, kind) in GBM_PARAMETERS.items():
        if name not in query:
            continue
        text = query[name]
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise _invalid(f"{name} must be {noun}, got {text[:40]!r}", name) from None
        if kind is int and not 0 <= value < 2**64:
            raise _invalid(f"{name} must be in [0, 2^64), got {text[:40]}", name)
        if kind is float and not math.isfinite(value):
            raise _invalid(f"{name} must be a finite number, got {text[:40]!r}", name)
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


def _gbm_result(data: bytes) -> bytes:
    reply = pb.GbmPrices.FromString(data)
    return formats.dumps({"result": formats.floats(reply.prices), "seed": reply.seed})


def _gbm_error(error: CallError) -> Response:
    """An error of /gbm in the original URL's terms: the query parameter's name, not the field's."""
    message = error.message
    for name, (field, _) in GBM_PARAMETERS.items():
        if message.startswith(field + " "):
            message = name + message[len(field) :]
    parameter = _parameter_of(error)
    renamed = CallError(error.code, message, http=error.http)
    return _error_response(renamed, {"parameter": parameter} if parameter else None)


async def _not_found(request: Request, exc: Exception) -> Response:
    return Response(
        formats.dumps(
            {"code": "not_found", "message": f"no such path: {request.url.path[:100]}; see / for the page"}
        ),
        status_code=404,
        media_type=JSON,
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return Response(
        formats.dumps(
            {
                "code": "unimplemented",
                "message": f"{request.method[:10]} is not allowed on {request.url.path[:100]}",
            }
        ),
        status_code=405,
        media_type=JSON,
    )


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

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *self.HEADERS]}
            await send(message)

        await self._app(scope, receive, with_headers)
