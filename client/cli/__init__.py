"""marketdata-client: the sample command-line client.

    marketdata-client get --periods 100 --start-price 70 --mu 0.05 --sigma 0.3 --delta 1
    marketdata-client stream --periods 10000000 --seed 7 --format npy --output path.npy
    marketdata-client get --model heston --periods 23400 --period 1s --calendar nyse \
        --start-time 2026-03-02 --bars 5m --format csv --plot candles.png
    marketdata-client subscribe ACME GLOBEX

JSON output keeps the original endpoint's shape, ``{"result": [...]}``, plus
the seed that replays the path. Exit codes: 0 success, 1 RPC error (with a
readable message on stderr), 2 bad command line, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import IO

import grpc

from ..api import MarketDataClient
from ..base import DEFAULT_UNARY_TIMEOUT
from .arguments import build_parser
from .checks import check_path_arguments
from .errors import EXIT_INTERRUPTED, EXIT_RPC_ERROR, describe_error
from .live import run_subscribe
from .paths import run_get, run_stream

__all__ = ["main"]


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

    out: IO[str] | None = None
    try:
        if args.command == "subscribe":
            out = sys.stdout
        elif args.format != "npy":
            out = open(args.output, "w") if args.output else sys.stdout
        with MarketDataClient(args.target) as md:
            if args.command == "get":
                run_get(md, args, out)
            elif args.command == "stream":
                run_stream(md, args, out)
            else:
                run_subscribe(md, args, out)
    except grpc.RpcError as error:
        print(describe_error(error, args.target, args.timeout), file=sys.stderr)
        return EXIT_RPC_ERROR
    except KeyboardInterrupt:
        what = "subscription ended" if args.command == "subscribe" else "the output is incomplete"
        print(f"\ninterrupted: the call was cancelled and {what}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    return 0
