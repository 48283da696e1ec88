"""What a server process shows of itself: Prometheus metrics at ``--metrics-port`` and
one access-log line per finished call (``--access-log``).

``ObserveCalls`` is the outermost interceptor, so it sees every call that reaches a
handler, those that the interceptors inside it refuse included. It wraps the handler
it is given, so that it counts the messages each way and, once the handler is done,
the call's status code and duration: a code set with ``context.set_code``, an abort,
a cancellation or deadline (CANCELLED, DEADLINE_EXCEEDED) and an unexpected
exception (UNKNOWN, as gRPC then sends).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace

import grpc
from prometheus_client import disable_created_metrics

from .handlers import ABORTED, LEFT, behaviour_of
from .metrics import (
    MethodMetrics,
    MetricsEndpoint,
    ServiceMetrics,
    begin_call,
    metrics_for_workers,
    record_for_parent,
    serve_metrics,
    single_process_registry,
)
from .net import address

_LOGGER = logging.getLogger(__name__)
# The access log: its own logger, so it can be routed or silenced apart from the rest.
ACCESS_LOGGER = logging.getLogger(__name__.rpartition(".")[0] + ".access")

_TYPES = {  # (client streams, server streams) -> the grpc_type label
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ObservabilityOptions:
    """What a server process observes of itself."""

    metrics_port: int | None = None  # None: no /metrics; 0 picks a free port (the flag's 0 is off)
    metrics_dir: str | None = None  # a worker of --workers: record here, the parent serves
    access_log: bool = False


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("metrics and logs")
    group.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics on the --host address; "
        "0 turns them off (default %(default)s)",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines as text, or as one JSON object a line (default %(default)s)",
    )
    group.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one INFO line per finished call: peer, method, status code, duration "
        "(default: on with --log-format json, off with text)",
    )


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ObservabilityOptions:
    """The options the flags of ``add_flags`` give; a bad value exits through ``parser.error``."""
    if not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port must be in [0, 65535] (0 turns metrics off), got {args.metrics_port}")
    if args.metrics_port and args.metrics_port == args.port:
        parser.error(f"--metrics-port must differ from --port, both are {args.port}")
    for flag in ("--health-port", "--http-port"):
        if args.metrics_port and args.metrics_port == getattr(args, flag[2:].replace("-", "_"), 0):
            parser.error(f"--metrics-port must differ from {flag}, both are {args.metrics_port}")
    access_log = args.log_format == "json" if args.access_log is None else args.access_log
    return ObservabilityOptions(metrics_port=args.metrics_port or None, access_log=access_log)


class Observability:
    """One server process's metrics, their endpoint and the interceptor that feeds both."""

    def __init__(self, options: ObservabilityOptions, host: str) -> None:
        """Start serving /metrics if asked (OSError with one line if the port cannot be served)."""
        self.metrics: ServiceMetrics | None = None
        self.endpoint: MetricsEndpoint | None = None
        self.registry = None
        if options.metrics_dir is not None:
            record_for_parent(options.metrics_dir)
            self.metrics = ServiceMetrics(None)
        elif options.metrics_port is not None:
            disable_created_metrics()  # the *_created series: twice the lines, read by nobody here
            self.registry = single_process_registry()
            self.metrics = ServiceMetrics(self.registry)
            self.endpoint = serve_metrics(host, options.metrics_port, self.registry)
        self._host = host
        observed = self.metrics is not None or options.access_log
        self.interceptors = [ObserveCalls(self.metrics, options.access_log)] if observed else []

    @property
    def metrics_port(self) -> int | None:
        return None if self.endpoint is None else self.endpoint.port

    def announce(self) -> None:
        """Log where /metrics is (after "listening on", the line that says the server is up)."""
        if self.endpoint is not None:
            _LOGGER.info("metrics on http://%s/metrics", address(self._host, self.endpoint.port))

    def close(self) -> None:
        """Stop serving /metrics (it may take half a second: call it off the event loop)."""
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None


@dataclass
class WorkersObservability:
    """What the parent of --workers gives its workers, and hears from the supervisor."""

    worker_options: ObservabilityOptions
    worker_exited: Callable[[int], None]


@contextlib.contextmanager
def for_workers(options: ObservabilityOptions, host: str) -> Iterator[WorkersObservability]:
    """The parent's part with --workers: with metrics, it serves every worker's at one
    endpoint while the block runs (OSError with one line if it cannot)."""
    if options.metrics_port is None:
        yield WorkersObservability(options, lambda pid: None)
        return
    with metrics_for_workers(host, options.metrics_port) as shared:
        _LOGGER.info("metrics of all workers on http://%s/metrics", address(host, shared.endpoint.port))
        _LOGGER.debug("workers record their metrics in %s", shared.directory)
        worker = replace(options, metrics_port=None, metrics_dir=shared.directory)
        yield WorkersObservability(worker, shared.worker_exited)


class ObserveCalls(grpc.aio.ServerInterceptor):
    """Counts every call (``metrics``, if given) and logs each as it ends (``access_log``)."""

    def __init__(self, metrics: ServiceMetrics | None, access_log: bool) -> None:
        self._metrics = metrics
        self._access_log = access_log

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED, nothing to observe
            return handler
        name, behaviour = behaviour_of(handler)
        streaming = handler.request_streaming or handler.response_streaming
        method = details.method
        series = None
        if self._metrics is not None:
            grpc_type = _TYPES[handler.request_streaming, handler.response_streaming]
            series = self._metrics.method(grpc_type, method)
        if inspect.isasyncgenfunction(behaviour):
            wrapped = self._replies(method, series, behaviour)
        elif inspect.iscoroutinefunction(behaviour):
            wrapped = self._reply(method, series, behaviour, streaming)
        else:  # a plain function, which this server never registers: left as it is
            return handler
        return handler._replace(**{name: wrapped})

    def _reply(self, method: str, series: MethodMetrics | None, behaviour: Callable, streaming: bool):
        async def reply(request, context):
            call = _Call(self, method, series, context)
            if streaming:
                request, context = call.counting(request, context)
            elif series is not None:
                series.received.inc()
            try:
                response = await behaviour(request, context)
            except BaseException as exc:
                call.end(exc)
                raise
            if series is not None and response is not None:
                series.sent.inc()
            call.end(None)
            return response

        return reply

    def _replies(self, method: str, series: MethodMetrics | None, behaviour: Callable):
        async def replies(request, context):
            call = _Call(self, method, series, context)
            request, context = call.counting(request, context)
            sent = series.sent if series is not None else None
            try:
                async with contextlib.aclosing(behaviour(request, context)) as responses:
                    async for response in responses:
                        yield response
                        if sent is not None:
                            sent.inc()
            except BaseException as exc:
                call.end(exc)
                raise
            call.end(None)

        return replies


class _Call:
    """One call as the interceptor follows it, from the start of its handler to the end."""

    __slots__ = ("_context", "_method", "_observer", "_peer", "_record", "_series", "_start")

    def __init__(self, observer: ObserveCalls, method: str, series: MethodMetrics | None, context) -> None:
        self._observer, self._method, self._series, self._context = observer, method, series, context
        self._record = begin_call()
        # Read now: once a deadline has passed, gRPC no longer says who the peer was.
        self._peer = context.peer() if observer._access_log else ""
        if series is not None:
            series.started.inc()
        self._start = time.perf_counter()

    def counting(self, request, context):
        """The request (a stream of them counted as they are read) and a context whose
        writes and reads are counted."""
        series = self._series
        if series is None:
            return request, context
        if hasattr(request, "__aiter__"):
            request = _counted(request, series.received.inc)
        else:
            series.received.inc()
        return request, _CountingContext(context, series)

    def end(self, exc: BaseException | None) -> None:
        duration = time.perf_counter() - self._start
        context = self._context
        code = _final_code(context, exc)
        series = self._series
        if series is not None:  # handled last: a scrape that sees it sees the rest of the call
            if code == "RESOURCE_EXHAUSTED":
                self._observer._metrics.note_end(self._record.limit, self._record.refused)
            series.handling.observe(duration)
            series.handled(code).inc()
        if self._observer._access_log:
            _log_call(self._method, self._peer, code, duration, self._record.limit)


def _final_code(context, exc: BaseException | None) -> str:
    """The status code the call ends with, by the name gRPC gives it (OK, CANCELLED, ...)."""
    if exc is None or isinstance(exc, ABORTED):
        code = context.code()
        if code is None:
            return "OK" if exc is None else "UNKNOWN"
        return code.name if isinstance(code, grpc.StatusCode) else _code_name(code)
    if isinstance(exc, LEFT):  # the client cancelled, its deadline passed, or it is gone
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN"


def _code_name(value: object) -> str:
    """A code given as a number (set_code accepts one), by its name."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.name
    return "UNKNOWN"


def _log_call(method: str, peer: str, code: str, duration: float, limit: str | None) -> None:
    if not method.isprintable() or len(method) > 200:  # a name a caller made up, never a log line break
        method = repr(method[:200])
    extra = {"peer": peer, "method": method, "code": code, "duration": round(duration, 6)}
    if limit is not None:
        extra["limit"] = limit
    ACCESS_LOGGER.info(
        "%s %s %.2f ms from %s%s",
        method,
        code,
        duration * 1e3,
        peer,
        f" (limit {limit})" if limit else "",
        extra=extra,
    )


async def _counted(requests: AsyncIterator, count: Callable[[], None]) -> AsyncIterator:
    async for request in requests:
        count()
        yield request


class _CountingContext:
    """A call's context whose writes (and reads) count messages; the rest passes through."""

    __slots__ = ("_context", "_series")

    def __init__(self, context, series: MethodMetrics) -> None:
        self._context, self._series = context, series

    def __getattr__(self, name: str):
        return getattr(self._context, name)

    async def write(self, message) -> None:
        await self._context.write(message)
        self._series.sent.inc()

    async def read(self):
        message = await self._context.read()
        if message is not grpc.aio.EOF:
            self._series.received.inc()
        return message
