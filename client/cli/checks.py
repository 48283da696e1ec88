"""Refuses flag combinations that would otherwise be ignored, and works out what the flags mean."""

from __future__ import annotations

import argparse

import numpy as np

from client.cli.arguments import DEFAULTS, MODEL_FLAGS, flag
from client.cli.output import Columns
from client.requests import CALENDARS, path_message, session_seconds


def check_path_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse flag combinations that would otherwise be ignored; fill in the defaults."""
    basket = args.model == "correlated_gbm"
    if basket:
        given = [flag(n) for n in DEFAULTS if getattr(args, n) is not None]
        if given:
            parser.error(f"{', '.join(given)}: a basket's instruments carry their own (--asset)")
        if not args.asset:
            parser.error("--model correlated_gbm needs at least one --asset SYMBOL:START_PRICE:MU:SIGMA")
        if args.bars or args.spread_bps is not None or args.spread_vol is not None:
            parser.error("bars and quotes are for one instrument, not a correlated_gbm basket")
        n = len(args.asset)
        if args.correlation is not None and len(args.correlation) not in (1, n * n):
            parser.error(
                f"--correlation takes one number or {n * n} (a {n}x{n} matrix), got {len(args.correlation)}"
            )
    elif args.asset or args.correlation is not None:
        parser.error("--asset and --correlation apply to --model correlated_gbm")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name, (models, _, _) in MODEL_FLAGS.items():
        if getattr(args, name) is not None and args.model not in models:
            parser.error(f"{flag(name)} applies to --model {' or '.join(models)}, not {args.model}")
    if args.period is not None and args.delta is not None:
        parser.error("give --delta or --period, not both")
    if args.volume_rate is not None and args.bars is None:
        parser.error("--volume-rate applies to --bars")
    if args.bars and (args.spread_bps is not None or args.spread_vol is not None):
        parser.error("quotes (--spread-bps, --spread-vol) come with prices, not with --bars")
    if args.holiday and args.calendar is None:
        parser.error("--holiday needs --calendar")
    args.columns = columns(args)  # what the output holds; every later step reads it
    if args.format == "npy" and args.columns.any:
        parser.error("--format npy holds prices only: use csv or json for times, quotes or bars")


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


def model_params(args: argparse.Namespace) -> dict[str, object]:
    """The parameters of the model's message, by field name."""
    if args.model == "correlated_gbm":
        params: dict[str, object] = {"assets": args.asset}
        if args.correlation is not None:
            n, given = len(args.asset), args.correlation
            params["correlation"] = (
                given
                if len(given) > 1
                else (np.full((n, n), given[0]) + (1 - given[0]) * np.eye(n)).ravel().tolist()
            )
        return params
    return _singlemodel_params(args)


def _singlemodel_params(args: argparse.Namespace) -> dict[str, float]:
    given = {name: getattr(args, name) for name in MODEL_FLAGS}
    variance = args.sigma**2
    defaults = {name: default for name, (_, default, _) in MODEL_FLAGS.items()}
    defaults.update(v0=variance, theta=variance, mean=args.start_price)
    values = {k: (v if v is not None else defaults[k]) for k, v in given.items()}
    values.update(start_price=args.start_price, start=args.start_price, mu=args.mu, sigma=args.sigma)
    model = path_message(args.model)
    return {f.name: values[f.name] for f in model.DESCRIPTOR.fields}
