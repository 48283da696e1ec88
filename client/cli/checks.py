"""Refuses flag combinations that would otherwise be ignored, and works out what the flags mean."""

from __future__ import annotations

import argparse

import numpy as np

from ..models import parameters
from ..requests import CALENDARS, session_seconds
from .arguments import ASSET, ASSET_METAVAR, BASKET, flag, model_flags
from .output import Columns


def check_path_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse flag combinations that would otherwise be ignored (exit 2).

    Sets ``args.model_params`` (the model's message fields, defaults filled
    in from the proto's examples) and ``args.columns`` (what the output holds).
    """
    flags = model_flags()
    given = [name for name in flags if getattr(args, name) is not None]
    if args.model == BASKET:
        own = [flag(name) for name in given if name in {p.name for p in ASSET}]
        if own:
            parser.error(f"{', '.join(own)}: a basket's instruments carry their own (--asset)")
        if not args.asset:
            parser.error(f"--model {BASKET} needs at least one --asset {ASSET_METAVAR}")
        if args.bars or args.spread_bps is not None or args.spread_vol is not None:
            parser.error(f"bars and quotes are for one instrument, not a {BASKET} basket")
        n = len(args.asset)
        if args.correlation is not None and len(args.correlation) not in (1, n * n):
            parser.error(
                f"--correlation takes one number or {n * n} (a {n}x{n} matrix), got {len(args.correlation)}"
            )
    elif args.asset or args.correlation is not None:
        parser.error(f"--asset and --correlation apply to --model {BASKET}")
    for name in given:
        if args.model not in flags[name]:
            models = " or ".join(flags[name])
            parser.error(f"{flag(name)} applies to --model {models}, not {args.model}")
    if args.period is not None and args.delta is not None:
        parser.error("give --delta or --period, not both")
    if args.volume_rate is not None and args.bars is None:
        parser.error("--volume-rate applies to --bars")
    if args.bars and (args.spread_bps is not None or args.spread_vol is not None):
        parser.error("quotes (--spread-bps, --spread-vol) come with prices, not with --bars")
    if args.holiday and args.calendar is None:
        parser.error("--holiday needs --calendar")
    args.model_params = _basket(args) if args.model == BASKET else _parameters(parser, args)
    args.columns = columns(args)  # what the output holds; every later step reads it
    if args.format == "npy" and args.columns.any:
        parser.error("--format npy holds prices only: use csv or json for times, quotes or bars")


def _parameters(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, object]:
    """Every field of the model's message: its flag's value, else the field's example value."""
    values = {}
    for p in parameters(args.model):
        value = getattr(args, p.name)
        if value is None:
            if p.example is None:
                parser.error(f"--model {args.model} needs {flag(p.name)}")
            value = p.type(p.example)
        values[p.name] = value
    return values


def _basket(args: argparse.Namespace) -> dict[str, object]:
    params: dict[str, object] = {"assets": args.asset}
    if args.correlation is not None:
        n, given = len(args.asset), args.correlation
        params["correlation"] = (
            given
            if len(given) > 1
            else (np.full((n, n), given[0]) + (1 - given[0]) * np.eye(n)).ravel().tolist()
        )
    return params


def columns(args: argparse.Namespace) -> Columns:
    """What the output holds beside the prices."""
    timed = args.start_time is not None or args.calendar is not None or args.bars is not None
    return Columns(
        time=timed and not args.bars,
        quotes=args.spread_bps is not None or args.spread_vol is not None,
        bars=args.bars is not None,
        time_unit=time_unit(args),
        symbols=tuple(a["symbol"] for a in args.asset),
    )


def time_unit(args: argparse.Namespace) -> str:
    """Milliseconds, or as fine as the period and the start time need to tell values apart."""
    step_ns = round(delta(args) * day_seconds(args) * 1e9)
    start = args.start_time
    start_ns = 0 if start is None else start.microsecond * 1000
    for unit, size in (("ms", 10**6), ("us", 10**3)):
        if step_ns % size == 0 and start_ns % size == 0:
            return unit
    return "ns"


def day_seconds(args: argparse.Namespace) -> float:
    """A trading day: one session with a calendar, else 24 hours (as the server counts it)."""
    return 86_400.0 if args.calendar is None else session_seconds(CALENDARS[args.calendar])


def delta(args: argparse.Namespace) -> float:
    """One period in trading days, from --delta or --period."""
    if args.period is None:
        return 1.0 if args.delta is None else args.delta
    return args.period / day_seconds(args)
