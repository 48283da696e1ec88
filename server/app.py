"""Wiring: builds the gRPC server, registers health and reflection, parses
flags, handles signals. The only module that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from marketdata.v1 import market_data_pb2

from . import logs
from .admission import Admission
from .auth import TokenAuth, TokenFile
from .feed import MarketFeed
from .limits import ConnectionLimits, FeedLimits, Limits, flags
from .metrics import StreamTracker
from .net import address, is_loopback, why_not_bound
from .observability import Observability, ObservabilityOptions, add_flags, for_workers, options_from
from .servicer import WIRES, AdmitOtherServices, MarketDataServicer, add_to_server
from .sim.checks import ParameterError
from .sim.seeding import new_seed
from .sim.universe import DEFAULT_MARKET, MarketConfig, load_market
from .tls import CertificateFiles, TlsOptions
from .web import HttpListener, http_listener
from .workers import Supervisor

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAME = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"].full_name
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRACE_SECONDS = 5.0
STOP_MARGIN_SECONDS = 10.0  # a worker still running this long after its grace is killed
# A test hook, read only by workers: the host they bind instead of --host, so a test can
# make every worker fail to bind while the parent's reservation of the port succeeds.
TEST_WORKER_HOST = "MARKETDATA_TEST_WORKER_HOST"


@dataclass
class RunningServer:
    """A started server and the parts a caller may need to reach."""

    server: grpc.aio.Server
    port: int
    servicer: MarketDataServicer
    health: health.aio.HealthServicer
    health_server: grpc.aio.Server | None = None  # --health-port
    health_port: int | None = None
    certificates: CertificateFiles | None = None  # with TLS
    observability: Observability | None = None
    http: HttpListener | None = None  # --http-port

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    async def shutdown(self, grace: float) -> None:
        """Turn health NOT_SERVING, give open calls ``grace`` seconds, then stop."""
        _LOGGER.info("shutting down: health NOT_SERVING, %.1f s grace for open calls", grace)
        await self.health.enter_graceful_shutdown()
        self.servicer.begin_shutdown(grace)
        stopping = [self.server.stop(grace)]
        if self.http is not None:  # subscriptions over HTTP were ended above, like gRPC's
            stopping.append(self.http.stop(grace))
        if self.health_server is not None:  # probes keep seeing NOT_SERVING while calls drain
            stopping.append(self.health_server.stop(grace))
        await asyncio.gather(*stopping)
        await self.servicer.feed.stop()
        self.servicer.close()
        if self.observability is not None:
            await asyncio.to_thread(self.observability.close)
        _LOGGER.info("stopped")


@dataclass(frozen=True)
class ServerOptions:
    """Everything one server process is started with (the command line's flags)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free one
    limits: Limits = field(default_factory=Limits)
    grace: float = DEFAULT_GRACE_SECONDS
    wire: str = "fast"
    market: MarketConfig = DEFAULT_MARKET
    feed_limits: FeedLimits = field(default_factory=FeedLimits)
    market_seed: int | None = None  # None: the market file's seed, else a fresh one
    market_epoch: float | None = None  # wall time of tick 0; None: now
    market_clock: bool = True  # False: tests advance servicer.feed themselves
    reuse_port: bool = False  # only for --workers, which share one port
    observability: ObservabilityOptions = field(default_factory=ObservabilityOptions)
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    tls: TlsOptions | None = None  # None: plaintext
    auth_tokens: str | None = None  # a token file: MarketDataService calls need a token
    allow_insecure: bool = False  # tokens over plaintext on a non-loopback address
    health_port: int | None = None  # a plaintext port serving only grpc.health.v1
    http_port: int | None = None  # HTTP/JSON, SSE and the live page; 0 picks a free port

    def check_security(self) -> None:
        """ValueError for tokens that would cross a network in the clear."""
        if self.auth_tokens and self.tls is None and not is_loopback(self.host) and not self.allow_insecure:
            raise ValueError(
                f"--auth-tokens over plaintext on --host {self.host} would send every token in the "
                "clear: add --tls-cert and --tls-key, listen on a loopback address, or pass "
                "--allow-insecure (for a network you trust, such as a mesh that encrypts)"
            )


async def start_server(
    options: ServerOptions | None = None, stop: threading.Event | None = None
) -> RunningServer:
    """Start serving and report SERVING; the live market starts ticking too. ``stop``
    (set by a signal) cuts short the market's catch-up before serving."""
    options = options or ServerOptions()
    options.check_security()
    # Bind as gRPC will (it sets SO_REUSEADDR) to say in one line why the address cannot
    # be served, before gRPC logs and raises a RuntimeError that does not say.
    reuse = [socket.SO_REUSEADDR] + ([socket.SO_REUSEPORT] if options.reuse_port else [])
    _bound_socket(options.host, options.port, reuse).close()
    if options.health_port:
        _bound_socket(options.host, options.health_port, reuse, "--health-port").close()
    # Held from here: bound now, so a busy port is said at once; served once gRPC serves.
    http_socket = (
        None
        if options.http_port is None
        else _bound_socket(options.host, options.http_port, reuse, "--http-port")
    )
    try:
        return await _start(options, stop, http_socket)
    except BaseException:
        if http_socket is not None:
            http_socket.close()
        raise


async def _start(
    options: ServerOptions, stop: threading.Event | None, http_socket: socket.socket | None
) -> RunningServer:
    # gRPC turns SO_REUSEPORT on by default on Linux, so a second server on a
    # busy port would silently share it; a single server must fail instead.
    certificates = CertificateFiles(options.tls) if options.tls is not None else None
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if options.auth_tokens is not None:
        interceptors.append(TokenAuth(TokenFile(options.auth_tokens), SERVICE_NAME))
    observability = Observability(options.observability, options.host)  # /metrics, if asked for
    feed = MarketFeed(
        options.market,
        seed=options.market_seed,
        limits=options.feed_limits,
        epoch=options.market_epoch,
        metrics=observability.metrics,
    )
    admission = Admission(options.limits, lambda: feed.limits)
    interceptors.append(AdmitOtherServices(admission))
    server_options = [
        ("grpc.so_reuseport", 1 if options.reuse_port else 0),
        *options.connection_limits.channel_options(),
    ]
    # The observer first: it sees every call the others refuse.
    interceptors = [*observability.interceptors, *interceptors]
    server = grpc.aio.server(options=server_options, interceptors=interceptors)
    if options.market_clock:  # computed up to now before listening: a late replica's is hours behind
        await asyncio.to_thread(feed.catch_up_before_serving, stop)
    if stop is not None and stop.is_set():  # a signal during the catch-up: never listen at all
        observability.close()
        raise StoppedBeforeServing
    servicer = MarketDataServicer(
        options.limits,
        tracker=StreamTracker(observability.metrics),
        wire=options.wire,
        feed=feed,
        admission=admission,
    )
    handlers = add_to_server(servicer, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    host = options.host
    try:
        bound = _listen(server, host, options.port, certificates)
        health_server, health_bound = None, None
        if options.health_port:
            # Kubernetes' grpc probes speak plaintext only: this port serves the health service
            # and nothing else, whatever the main port requires.
            health_server = grpc.aio.server(
                options=server_options,
                interceptors=[*observability.interceptors, AdmitOtherServices(admission)],
            )
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
            health_bound = _listen(health_server, host, options.health_port, None)
    except OSError:
        observability.close()
        raise
    http = None
    if http_socket is not None:  # the same handlers behind the same interceptors
        http = http_listener(
            http_socket,
            handlers,
            interceptors,
            SERVICE_NAME,
            options.limits,
            options.connection_limits,
            certificates.ssl_context() if certificates is not None else None,
            servicer.generation,
        )
    await server.start()
    if health_server is not None:
        await health_server.start()
    if http is not None:
        await http.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if options.market_clock:
        feed.start()
    security = "plaintext" if certificates is None else "mTLS" if options.tls.mutual else "TLS"
    tokens = ", tokens required" if options.auth_tokens else ""
    _LOGGER.info("listening on %s:%d", host, bound)
    _LOGGER.info("security: %s%s", security, tokens)
    if health_server is not None:
        _LOGGER.info("health service (plaintext) on %s:%d", host, health_bound)
    if http is not None:
        scheme = "http" if certificates is None else "https"
        _LOGGER.info("HTTP, JSON and the live page on %s://%s/", scheme, address(host, http.port))
    if certificates is None and not is_loopback(host):
        _LOGGER.warning(
            "serving plaintext on %s, a non-loopback address: anyone on the network can read and "
            "alter the traffic; use --tls-cert and --tls-key",
            host,
        )
    observability.announce()
    return RunningServer(
        server=server,
        port=bound,
        servicer=servicer,
        health=health_servicer,
        health_server=health_server,
        health_port=health_bound,
        certificates=certificates,
        observability=observability,
        http=http,
    )


def _listen(server: grpc.aio.Server, host: str, port: int, certificates: CertificateFiles | None) -> int:
    """Add a port to ``server``; the port bound, or OSError with one line."""
    where = address(host, port)
    try:
        if certificates is None:
            bound = server.add_insecure_port(where)
        else:
            bound = server.add_secure_port(where, certificates.credentials())
    except RuntimeError:  # the address was free a moment ago
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {where}: gRPC could not bind it (GRPC_VERBOSITY=debug says why)")
    return bound


class StoppedBeforeServing(Exception):
    """SIGTERM or SIGINT arrived while the server was starting (catching up its market)."""


async def serve(options: ServerOptions) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop, stopping = asyncio.Event(), threading.Event()  # the second for start-up's worker thread
    with _signals_call(lambda: (stop.set(), stopping.set())):
        try:
            running = await start_server(options, stopping)
        except StoppedBeforeServing:
            _LOGGER.info("stopped while starting, before listening")
            return
        await stop.wait()
        await running.shutdown(options.grace)


@contextlib.contextmanager
def _signals_call(callback: Callable[[], object]) -> Iterator[None]:
    """Inside the block, SIGTERM and SIGINT call ``callback`` on the running loop.

    Set before start-up, so that a signal landing during it waits for it. Taken
    off before the loop closes its wakeup fd (a signal then would print a
    traceback), back to what the process had (SIG_DFL in a worker), with both
    signals held back in this thread meanwhile so none meets asyncio's defaults.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        loop.add_signal_handler(signum, callback)
    try:
        yield
    finally:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            for signum in signals:
                loop.remove_signal_handler(signum)
                signal.signal(signum, previous[signum])
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _bound_socket(host: str, port: int, options: list[int], flag: str = "--port") -> socket.socket:
    """A TCP socket bound (not listening) to ``host:port`` with the SOL_SOCKET ``options``
    set, or OSError with one line saying why not and what to do (``flag``: the port's flag)."""
    where = address(host, port)
    numeric = ":" in host or host.replace(".", "").isdigit()  # never sent to DNS
    flags = socket.AI_PASSIVE | (socket.AI_NUMERICHOST if numeric else 0)
    try:
        candidates = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=flags)
    except socket.gaierror as err:
        what = "is not a valid IP address" if numeric else f"does not resolve ({err.strerror})"
        raise OSError(f"cannot listen on {where}: --host {host} {what}") from None
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in candidates:  # like gRPC: the first that binds
        sock = socket.socket(family, kind, proto)
        try:
            for option in options:
                sock.setsockopt(socket.SOL_SOCKET, option, 1)
            sock.bind(sockaddr)
            return sock
        except OSError as err:
            sock.close()
            errors.append(err)
    raise OSError(f"cannot listen on {where}: {why_not_bound(errors[0], host, flag)}")


@contextlib.contextmanager
def _reserved_port(host: str, port: int) -> Iterator[int]:
    """Bind (not listen) ``host:port`` with SO_REUSEPORT, so port 0 becomes one
    concrete port that every worker then binds too. Held until the last worker
    is gone: without SO_REUSEADDR, no other user's socket can take the port."""
    sock = _bound_socket(host, port, [socket.SO_REUSEPORT])
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _serve_worker(options: ServerOptions, index: int) -> int:
    """One worker's life: serve until SIGTERM (0), or one line and 1 if it cannot start."""
    options = replace(options, host=os.environ.get(TEST_WORKER_HOST, options.host))
    try:
        asyncio.run(serve(options))
    except OSError as err:
        _LOGGER.error("worker %d: %s", index, err)
        return 1
    return 0


def run_workers(options: ServerOptions, workers: int) -> int:
    """Fork ``workers`` server processes sharing one port through SO_REUSEPORT,
    and keep them running (``server/workers.py``: restarts, backoff, giving up).

    The fork happens before any gRPC object exists, as gRPC requires; the
    kernel spreads incoming connections over the workers. SIGTERM or SIGINT
    to this process is passed on, and each worker shuts down gracefully.
    """
    # Every worker, restarted ones too, runs the same market: one seed and one clock epoch, the
    # market file's when it names them, else chosen here.
    seed = options.market.seed if options.market.seed is not None else new_seed()
    epoch = options.market.epoch if options.market.epoch is not None else time.time()
    shared = replace(options, market_seed=seed, market_epoch=epoch, reuse_port=True)
    with (
        _reserved_port(options.host, options.port) as bound,
        for_workers(options.observability, options.host) as observed,  # one /metrics for all
    ):
        worker_options = replace(shared, port=bound, observability=observed.worker_options)
        supervisor = Supervisor(
            workers,
            lambda index: _serve_worker(worker_options, index),
            where=f"on {options.host}:{bound}",
            stop_timeout=options.grace + STOP_MARGIN_SECONDS,
            on_exit=observed.worker_exited,
        )
        return supervisor.run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketdata-server",
        description="Serve synthetic market prices (marketdata.v1.MarketDataService) over gRPC.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default %(default)s)"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=DEFAULT_HTTP_PORT,
        metavar="N",
        help="also serve HTTP on --host at this port: JSON calls, price streams as NDJSON or CSV, the "
        "live market as Server-Sent Events, the original /gbm URL and the live page at /; same "
        "checks, limits, TLS and tokens as gRPC; 0: off (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default %(default)s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="seconds open calls get to finish on SIGTERM/SIGINT (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port through SO_REUSEPORT (default %(default)s)",
    )
    parser.add_argument(
        "--wire",
        choices=WIRES,
        default="fast",
        help="reply encoding: fast (straight from numpy) or protobuf (generated classes, "
        "same bytes, slower; for comparison) (default %(default)s)",
    )
    parser.add_argument(
        "--market",
        metavar="FILE",
        help="TOML file of the live market's instruments, correlation and clock "
        "(default: a built-in market of four symbols)",
    )
    security = parser.add_argument_group("security (see the README's Deploying section)")
    security.add_argument(
        "--tls-cert", metavar="FILE", help="serve TLS only, with this PEM certificate chain"
    )
    security.add_argument(
        "--tls-key", metavar="FILE", help="the PEM private key of --tls-cert (not encrypted)"
    )
    security.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require client certificates signed by these PEM CA certificates (mTLS); needs --tls-cert",
    )
    security.add_argument(
        "--auth-tokens",
        metavar="FILE",
        help="MarketDataService calls need 'authorization: Bearer <token>' with a token of this file "
        "(a token or name:token a line; re-read when it changes); health and reflection stay open",
    )
    security.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow --auth-tokens over plaintext on a non-loopback --host",
    )
    security.add_argument(
        "--health-port",
        type=int,
        default=0,
        metavar="N",
        help="also serve grpc.health.v1 alone, in plaintext, on this port, for probes that cannot "
        "speak TLS (Kubernetes); 0: off (default %(default)s)",
    )
    add_flags(parser)  # --metrics-port, --log-format, --access-log
    groups = (
        ("limits on paths and streams", Limits),
        ("limits on subscriptions", FeedLimits),
        ("limits on connections", ConnectionLimits),
    )
    for title, limits in groups:
        group = parser.add_argument_group(title)
        for flag, spec in flags(limits):
            kind = type(spec.default)
            if kind is bool:
                group.add_argument(
                    flag, dest=spec.name, action="store_true", help=f"{spec.metadata['help']} (default off)"
                )
                continue
            group.add_argument(
                flag,
                dest=spec.name,
                type=kind,
                default=spec.default,
                metavar=None if "choices" in spec.metadata["argparse"] else kind.__name__.upper(),
                help=f"{spec.metadata['help']} (default %(default)s)",
                **spec.metadata["argparse"],
            )
    return parser


class _ClientsLeaving(logging.Filter):
    """gRPC logs a traceback at ERROR when the status of a call cannot be sent because its
    client has gone (a stalled reader that then cancels), or when it cancels a call's
    coroutine at the end of the shutdown grace. Both are callers leaving, not faults: such a
    record becomes one DEBUG line, shown only when the server logs at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cancelled = record.exc_info is not None and record.exc_info[0] is asyncio.CancelledError
        if not (
            message.startswith("ExecuteBatchError raised in core")
            or (message.startswith("Exception not handled by _handle_exceptions") and cancelled)
        ):
            return True
        method = message.rsplit("[", 1)[-1].rstrip("]")
        return logs.demote(record, "a call of %s ended while its client or the server was leaving", method)


def _limits(limits: type[T], args: argparse.Namespace) -> T:
    """A limits object from the flags its fields declare; a refusal names the flag, not the field."""
    try:
        return limits(**{spec.name: getattr(args, spec.name) for _, spec in flags(limits)})
    except ValueError as err:
        message = str(err)
        for flag, spec in flags(limits):
            if message.startswith(f"{spec.name} "):
                raise ValueError(flag + message[len(spec.name) :]) from None
        raise


def _market(parser: argparse.ArgumentParser, path: str | None) -> MarketConfig:
    """The --market file's market. A file that cannot be read or is wrong is a bad
    argument (exit 2, as argparse's own file arguments); one line says what to fix."""
    if path is None:
        return DEFAULT_MARKET
    try:
        return load_market(path)
    except OSError as err:
        message = f"--market {path}: cannot read it ({err.strerror or err})"
    except ParameterError as err:  # the message names the file, the field and what it accepts
        message = f"--market {err}"
    except ValueError as err:  # not text at all
        message = f"--market {path}: not a TOML file ({err})"
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def _check_extra_port(parser: argparse.ArgumentParser, flag: str, port: int, others: dict[str, int]) -> None:
    """A port flag where 0 is off: in range, and none of the ``others`` ports (exit 2 if not)."""
    if not 0 <= port <= 65535 or (port and port in others.values()):
        parser.error(f"{flag} must be in [1, 65535] and not {' or '.join(others)}, or 0 for off; got {port}")


def _tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsOptions | None:
    """The TLS flags, checked now: the files must be readable and the key must match."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            parser.error(
                "--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS with client certificates)"
            )
        return None
    if args.tls_cert is None or args.tls_key is None:
        parser.error("--tls-cert and --tls-key go together: give both")
    options = TlsOptions(args.tls_cert, args.tls_key, args.tls_client_ca)
    CertificateFiles(options)  # TlsFileError (a ValueError) names the flag and the file
    return options


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535], got {args.port}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.grace < 0:
        parser.error(f"--grace must be >= 0 seconds, got {args.grace}")
    _check_extra_port(parser, "--health-port", args.health_port, {"--port": args.port})
    _check_extra_port(
        parser, "--http-port", args.http_port, {"--port": args.port, "--health-port": args.health_port}
    )
    try:
        options = ServerOptions(
            host=args.host,
            port=args.port,
            limits=_limits(Limits, args),
            grace=args.grace,
            wire=args.wire,
            market=_market(parser, args.market),
            feed_limits=_limits(FeedLimits, args),
            connection_limits=_limits(ConnectionLimits, args),
            tls=_tls(parser, args),
            auth_tokens=args.auth_tokens,
            allow_insecure=args.allow_insecure,
            health_port=args.health_port or None,
            http_port=args.http_port or None,
            observability=options_from(parser, args),
        )
        options.check_security()
        if args.auth_tokens is not None:
            TokenFile(args.auth_tokens)  # a file that cannot serve is a bad argument, said now
    except (ValueError, OSError) as err:
        parser.error(str(err))
    logs.configure(args.log_level, args.log_format)
    for noisy in ("asyncio", "grpc._cython.cygrpc"):  # their DEBUG lines drown ours
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("grpc._cython.cygrpc").addFilter(_ClientsLeaving())
    logging.getLogger("grpc._cython.cygrpc").addFilter(logs.UndecodableMetadata())
    try:
        if args.workers > 1:
            return run_workers(options, args.workers)
        asyncio.run(serve(options))
    except OSError as err:
        _LOGGER.error("%s", err)
        return 1
    return 0
