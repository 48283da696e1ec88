"""What the server counts.

``StreamTracker`` counts calls, open streams and streamed values for the tests
and the servicer. ``ServiceMetrics`` holds the Prometheus metrics that
``--metrics-port`` serves: gRPC's own under the names every gRPC dashboard
knows (grpc_server_*, as go-grpc-prometheus and py-grpc-prometheus name them),
and the service's (marketdata_*). The code that does the work updates them
at events that are already rare next to the work (a chunk, a tick, a
subscription), never once per value. With metrics off there is no
ServiceMetrics at all and each of those places skips one ``is None`` test.

With ``--workers N`` every worker records into files in a directory the parent
made (prometheus-client's multiprocess mode) and the parent serves them all
in one scrape (``metrics_for_workers``).
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    values,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .net import address, why_not_bound

# Distinct methods labelled one by one; any further ones share the label "other", so a
# caller inventing method names cannot grow the metrics without end.
MAX_LABELLED_METHODS = 128
OTHER = "other"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# /metrics answers this many connections at once, a thread each; any more are closed at once.
# A Prometheus server scrapes a target one request at a time: a few spare are for people.
MAX_SCRAPES = 8
# A connection that sends nothing for this long is closed, so idle ones cannot hold the slots.
SCRAPE_IDLE_SECONDS = 10.0


class StreamTracker:
    """Counts calls, open streams and streamed values; safe to read from any thread.

    Tests use ``wait_idle`` and ``wait_for`` to see that a cancelled stream has
    really stopped generating, without sleeping. Given ``metrics``, it also
    keeps the open-streams gauge and the values-generated counter.
    """

    def __init__(self, metrics: ServiceMetrics | None = None) -> None:
        self._cond = threading.Condition()
        self._metrics = metrics
        self.active = 0
        self.started = 0
        self.unary_calls = 0
        self.prices_generated = 0

    def opened(self) -> None:
        with self._cond:
            self.active += 1
            self.started += 1
        if self._metrics is not None:
            self._metrics.open_streams.inc()

    def closed(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()
        if self._metrics is not None:
            self._metrics.open_streams.dec()

    def unary(self) -> None:
        with self._cond:
            self.unary_calls += 1

    def generated(self, n: int, columns: int = 1) -> None:
        """A stream made ``n`` more periods of ``columns`` values each."""
        with self._cond:
            self.prices_generated += n
            self._cond.notify_all()
        if self._metrics is not None:
            self._metrics.values_generated.inc(n * columns)

    def made_whole(self, values: int) -> None:
        """A unary call made a whole path of ``values`` values."""
        if self._metrics is not None:
            self._metrics.values_generated.inc(values)

    def wait_for(self, predicate: Callable[[StreamTracker], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no stream is open; False if ``timeout`` seconds pass first."""
        return self.wait_for(lambda t: t.active == 0, timeout)


_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class ServiceMetrics:
    """Every metric /metrics shows, in ``registry`` (None in a worker of --workers: its
    values go to the multiprocess directory, which the parent reads)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", _GRPC_LABELS, registry=r
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status code.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.received = Counter(
            "grpc_server_msg_received_total", "Messages received from clients.", _GRPC_LABELS, registry=r
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total", "Messages sent to clients.", _GRPC_LABELS, registry=r
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC's handler to its end, in seconds.",
            _GRPC_LABELS,
            registry=r,
        )
        self.values_generated = Counter(
            "marketdata_values_generated_total",
            "Simulated values made for paths and streams (periods times instruments).",
            registry=r,
        )
        self.open_streams = Gauge(
            "marketdata_open_streams",
            "Price streams (StreamPrices, StreamGbmPrices) open now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.subscribers = Gauge(
            "marketdata_subscribers",
            "Live-market subscriptions (Subscribe, ManageSubscription) open now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.book_subscriptions = Gauge(
            "marketdata_book_subscriptions",
            "Order-book and top-of-book subscriptions held now, one per symbol of each subscriber "
            "(limit: --max-book-subscriptions).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.market_sequence = Gauge(
            "marketdata_market_sequence",
            "Sequence number of the live market's last published tick.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ticks_behind = Gauge(
            "marketdata_market_ticks_behind",
            "Ticks the live market was behind its clock when it last published (0: on time).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ticks_skipped = Counter(
            "marketdata_market_ticks_skipped_total",
            "Ticks computed but never published because the market clock fell behind.",
            registry=r,
        )
        self.conflated = Counter(
            "marketdata_conflated_updates_total",
            "Updates dropped for slow subscribers under --slow-subscriber conflate.",
            registry=r,
        )
        self.refused = Counter(
            "marketdata_requests_refused_total",
            "Requests refused with RESOURCE_EXHAUSTED, by the limit's flag.",
            ("limit",),
            registry=r,
        )
        self.cut_short = Counter(
            "marketdata_calls_ended_by_limit_total",
            "Calls ended early with RESOURCE_EXHAUSTED by a limit, by its flag "
            "(slow-subscriber: disconnects of slow subscribers).",
            ("limit",),
            registry=r,
        )
        self._methods: dict[tuple[str, str], MethodMetrics] = {}

    def method(self, grpc_type: str, full_method: str) -> MethodMetrics:
        """The metrics of one method (``/package.Service/Method``) and call type."""
        key = (grpc_type, full_method)
        found = self._methods.get(key)
        if found is None:
            service, _, name = full_method.lstrip("/").rpartition("/")
            if len(self._methods) >= MAX_LABELLED_METHODS:
                service, name = OTHER, OTHER
            found = self._methods[key] = MethodMetrics(self, (grpc_type, service, name))
        return found

    def note_end(self, limit: str | None, refused: bool) -> None:
        """Count a call that a limit refused or ended (``limit``: its flag)."""
        if limit is not None:
            (self.refused if refused else self.cut_short).labels(limit.lstrip("-")).inc()


class MethodMetrics:
    """One method's series, looked up once and kept, so a call pays no label look-up."""

    __slots__ = ("_by_code", "_handled", "_labels", "handling", "received", "sent", "started")

    def __init__(self, metrics: ServiceMetrics, labels: tuple[str, str, str]) -> None:
        self._labels = labels
        self._handled = metrics.handled
        self._by_code: dict[str, Counter] = {}
        self.started = metrics.started.labels(*labels)
        self.received = metrics.received.labels(*labels)
        self.sent = metrics.sent.labels(*labels)
        self.handling = metrics.handling.labels(*labels)

    def handled(self, code: str) -> Counter:
        found = self._by_code.get(code)
        if found is None:
            found = self._by_code[code] = self._handled.labels(*self._labels, code)
        return found


@dataclass
class CallRecord:
    """What a call's handler tells the code that observes it: the limit that ended it."""

    limit: str | None = None  # the limit's flag, e.g. "--max-calls"
    refused: bool = False  # refused before any work, rather than cut short


# The running call's record, set by the observing interceptor in the call's own task.
_CALL: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("marketdata_call", default=None)


def begin_call() -> CallRecord:
    """A record for the call running in this task."""
    record = CallRecord()
    _CALL.set(record)
    return record


def note_limit(flag: str, refused: bool) -> None:
    """Note that the running call ends with RESOURCE_EXHAUSTED because of the limit ``flag``
    sets: ``refused`` at once, or cut short later. Nothing when nobody observes calls."""
    record = _CALL.get()
    if record is not None:
        record.limit, record.refused = flag, refused


def single_process_registry() -> CollectorRegistry:
    """A registry of this server's own, with the process, platform and GC collectors."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


@dataclass
class MetricsEndpoint:
    """The HTTP server of /metrics, on a daemon thread."""

    server: object
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _ScrapeHandler(WSGIRequestHandler):
    """One scrape: silent (no line per request), and closed when its client goes quiet."""

    def setup(self) -> None:
        self.timeout = SCRAPE_IDLE_SECONDS  # read at each connection, so a test may shorten it
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ScrapeServer(ThreadingWSGIServer):
    """The /metrics HTTP server: a thread per connection, at most MAX_SCRAPES at once.

    prometheus-client's own server starts a thread for every connection and waits on each
    for as long as its client likes, so a crowd of idle connections would make thousands
    of threads that fight the gRPC server for the interpreter (and its health checks time
    out). Here the connections beyond the limit are closed unanswered, and a quiet client
    is dropped after SCRAPE_IDLE_SECONDS; its timeout, a reset or a client gone while the
    reply is written end the thread without a word in the log."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out, reset or left: nothing the operator can act on


def _start_scrape_server(host: str, port: int, registry: CollectorRegistry):
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("ScrapeServer", (_ScrapeServer,), {"address_family": family})
    server = make_server(
        address[0], port, make_wsgi_app(registry), server_class, handler_class=_ScrapeHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve ``registry`` at http://host:port/metrics, or OSError with one line saying why not."""
    try:
        server, thread = _start_scrape_server(host, port, registry)
    except OSError as err:
        why = why_not_bound(err, host, "--metrics-port")
        raise OSError(f"cannot serve metrics on {address(host, port)}: {why}") from None
    return MetricsEndpoint(server, thread)


def record_for_parent(directory: str) -> None:
    """In a worker of --workers: record every metric made from now on into ``directory``,
    for the parent to serve. prometheus-client picks its value store when it is imported,
    from PROMETHEUS_MULTIPROC_DIR; the worker was forked from a parent that imported it
    without, so it switches here, in its own process only, before making any metric."""
    os.environ[MULTIPROC_ENV] = directory
    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.MultiProcessValue()


_INHERITED: list[MetricsEndpoint] = []  # the parent's endpoints, closed in every child it forks


def _close_inherited() -> None:
    for endpoint in _INHERITED:
        endpoint.server.socket.close()  # the child's copy; the parent keeps serving
    _INHERITED.clear()


os.register_at_fork(after_in_child=_close_inherited)


class _WorkersCollector(MultiProcessCollector):
    """prometheus-client's multiprocess collector, minus files with no header yet.

    A worker creates its file empty and sizes it a moment later, and one killed in between
    leaves it empty for good. The library fails the whole scrape on such a file
    (prometheus/client_python#1199, open as of 0.26); an empty file holds no samples, so
    leaving it out loses nothing."""

    def collect(self):
        return self.merge([f for f in glob.glob(os.path.join(self._path, "*.db")) if _has_header(f)])


def _has_header(path: str) -> bool:
    try:
        return os.path.getsize(path) >= 8
    except FileNotFoundError:  # a dead worker's live gauges, removed meanwhile
        return False


@dataclass
class WorkersMetrics:
    """The parent's side of --workers with --metrics-port: where workers record, and the
    endpoint that serves all of them."""

    directory: str
    endpoint: MetricsEndpoint

    def worker_exited(self, pid: int) -> None:
        """Forget a dead worker's gauges (its counters still count in the totals)."""
        mark_process_dead(pid, self.directory)


@contextlib.contextmanager
def metrics_for_workers(host: str, port: int) -> Iterator[WorkersMetrics]:
    """A fresh directory for the workers' metrics and /metrics serving them all from this
    process, both gone on the way out. Workers forked meanwhile close their copy of the
    endpoint's socket at once."""
    directory = tempfile.mkdtemp(prefix="marketdata-metrics-")
    try:
        registry = CollectorRegistry()
        _WorkersCollector(registry, path=directory)
        endpoint = serve_metrics(host, port, registry)
        _INHERITED.append(endpoint)
        try:
            yield WorkersMetrics(directory, endpoint)
        finally:
            _INHERITED.remove(endpoint)
            endpoint.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
