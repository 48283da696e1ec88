"""marketdata-client: the sample command-line client.

    marketdata-client get --periods 100 --start-price 70 --mu 0.05 --sigma 0.3 --delta 1
    marketdata-client stream --periods 10000000 --seed 7 --format npy --output path.npy
    marketdata-client get --model heston --periods 23400 --period 1s --calendar nyse \
        --start-time 2026-03-02 --bars 5m --format csv --plot candles.png
    marketdata-client subscribe ACME GLOBEX

JSON output keeps the original endpoint's shape, ``{"result": [...]}``, plus
the seed that replays the path. Exit codes: 0 success, 1 RPC error or an
output that cannot be written (with a readable message on stderr), 2 bad
command line, 130 interrupted by Ctrl-C. ``-o FILE`` is replaced only when the
whole command succeeds; stdout gets nothing until the first prices arrive.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import re
import signal
import sys
from collections.abc import Sequence

import grpc

from ..api import MarketDataClient
from ..base import DEFAULT_UNARY_TIMEOUT
from ..security import ENVIRONMENT, Security
from .arguments import build_parser
from .checks import check_path_arguments
from .destination import Destination
from .errors import EXIT_INTERRUPTED, EXIT_RPC_ERROR, EXIT_WRITE_ERROR, describe_error
from .live import run_subscribe
from .paths import run_get, run_stream

__all__ = ["main"]

HEALTH_TIMEOUT = 5.0  # a probe that waits longer than this is itself a failure


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "format", None) == "npy" and not args.output:
        parser.error("--format npy needs --output FILE")
    if args.command in ("get", "stream"):
        check_path_arguments(parser, args)
        if args.plot and importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: .venv/bin/pip install -e '.[plot]'")
    if args.timeout is None and args.command == "get":
        args.timeout = DEFAULT_UNARY_TIMEOUT

    if args.command == "health" and args.timeout is None:
        args.timeout = HEALTH_TIMEOUT
    try:
        security = _security(args)
    except (ValueError, OSError) as err:
        parser.error(_as_given(str(err), args))

    destination: Destination | None = None  # where get and stream write; subscribe prints to stdout
    interrupts = _Interrupts()
    try:
        with contextlib.ExitStack() as resources:
            resources.enter_context(interrupts)
            if args.command in ("get", "stream"):
                destination = resources.enter_context(Destination(args.output, binary=args.format == "npy"))
            md = resources.enter_context(MarketDataClient(args.target, **dataclasses.asdict(security)))
            if args.command == "health":
                return _health(md, args)
            if args.command == "get":
                run_get(md, args, destination)
            elif args.command == "stream":
                run_stream(md, args, destination)
            else:
                run_subscribe(md, args, sys.stdout)
    except grpc.RpcError as error:
        if interrupts.seen:
            return _interrupted(args, destination)
        _report(describe_error(error, args.target, args.timeout, security.secure), destination)
        return EXIT_RPC_ERROR
    except KeyboardInterrupt:
        return _interrupted(args, destination)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0
    except OSError as error:
        if interrupts.seen:
            return _interrupted(args, destination)
        # -o FILE or --plot FILE.png cannot be written: a missing folder, no permission, a full disk.
        where = error.filename or args.output or "the output"
        _report(f"error: cannot write {where}: {error.strerror or error}", destination)
        return EXIT_WRITE_ERROR
    except Exception:
        # Ctrl-C raises KeyboardInterrupt wherever the main thread is, and inside gRPC's own
        # locking it can surface as another error (a lock released twice); it is still Ctrl-C.
        if interrupts.seen:
            return _interrupted(args, destination)
        raise
    return 0


def _interrupted(args: argparse.Namespace, destination: Destination | None) -> int:
    """Ctrl-C: what was cancelled, and what it left of the output; exit 130."""
    if args.command == "subscribe":
        what = "the subscription ended"
    else:
        what = (destination and destination.failure_note()) or "nothing was written"
    print(f"\ninterrupted: the call was cancelled; {what}", file=sys.stderr)
    return EXIT_INTERRUPTED


class _Interrupts:
    """While entered, Ctrl-C (SIGINT) is remembered before it raises KeyboardInterrupt, so an
    error it causes on its way out is still reported as an interruption."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: object = None

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _security(args: argparse.Namespace) -> Security:
    """The client's security settings from the flags and MARKETDATA_* variables; files read now,
    so a missing one is a bad argument rather than a failed call."""
    security = Security.from_environment(
        tls=args.tls, ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key, token=args.token
    )
    security.channel_credentials()  # OSError naming a file that cannot be read
    return security


# The command line's flag for each of the library's security settings.
_FLAGS = {"ca_file": "tls_ca", "cert_file": "tls_cert", "key_file": "tls_key", "token": "token"}


def _as_given(message: str, args: argparse.Namespace) -> str:
    """A security message in the words the user used: a setting named by its environment
    variable when it came from one, else by its flag (ca_file -> MARKETDATA_TLS_CA, --tls-ca)."""

    def named(match: re.Match[str]) -> str:
        setting = match.group(0)
        dest = _FLAGS[setting]
        if getattr(args, dest) is None and os.environ.get(ENVIRONMENT[setting]):
            return ENVIRONMENT[setting]
        return f"--{dest.replace('_', '-')}"

    # "token" only where it names the setting: the message's first word, before its colon
    return re.sub(r"\b(?:ca_file|cert_file|key_file)\b|^token(?=:)", named, message)


def _health(md: MarketDataClient, args: argparse.Namespace) -> int:
    """Print the health status; 0 when SERVING, 1 otherwise (a probe's contract)."""
    status = md.check_health(args.service, timeout=args.timeout)
    print(status)
    return 0 if status == "SERVING" else EXIT_RPC_ERROR


def _report(line: str, destination: Destination | None) -> None:
    """A failure on stderr, and on the next line what it left of the output (FILE untouched, stdout
    incomplete) when there is something to say."""
    note = destination.failure_note() if destination is not None else None
    print(line if note is None else f"{line}\n{note}", file=sys.stderr)
