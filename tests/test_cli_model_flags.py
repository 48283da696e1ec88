"""The CLI offers every parameter of every model in the proto, with the proto's example value as default.

The expectations here are read from the descriptor of PathRequest.model, not
from a list: a model or a parameter added to the proto is checked without
touching this file, and a CLI that stopped picking one up fails.
"""

from __future__ import annotations

import re

import pytest

from client import models
from client.cli import main
from client.cli.arguments import build_parser
from client.cli.checks import check_path_arguments
from client.cli.paths import gbm_call, path_request_for
from client.requests import gbm_request
from marketdata.v1 import market_data_pb2 as pb

MODEL_FIELDS = pb.PathRequest.DESCRIPTOR.oneofs_by_name["model"].fields
BASKET_ASSET = ["--asset", "AAA:50:0.05:0.2"]


def _repeated(field) -> bool:
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _scalar(field) -> bool:
    return field.message_type is None and not _repeated(field)


# (model, field) for every single-valued field of every model's message.
PARAMETERS = [
    (model.name, field) for model in MODEL_FIELDS for field in model.message_type.fields if _scalar(field)
]
IDS = [f"{model}.{field.name}" for model, field in PARAMETERS]
# Every parameter name, with the models whose message has it.
OWNERS: dict[str, list[str]] = {}
for _model, _field in PARAMETERS:
    OWNERS.setdefault(_field.name, []).append(_model)
# (flag's field name, a model whose message lacks it)
FOREIGN = [
    (name, model.name)
    for name, owners in OWNERS.items()
    for model in MODEL_FIELDS
    if model.name not in owners
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _example(field) -> float:
    options = field.GetOptions()
    assert options.HasExtension(pb.example), f"{field.full_name} has no (example) option"
    return options.Extensions[pb.example]


def _parse(argv: list[str]):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_path_arguments(parser, args)
    return args


def _sent(argv: list[str]):
    """The request message the command line would send (GbmRequest or PathRequest)."""
    args = _parse(argv)
    classic = gbm_call(args)
    return gbm_request(**classic) if classic is not None else path_request_for(args)


def _model_part(request, model: str):
    """Where the model's parameters sit: the top of a GbmRequest, the oneof of a PathRequest."""
    if isinstance(request, pb.GbmRequest):
        return request
    assert request.WhichOneof("model") == model
    return getattr(request, model)


def test_every_model_of_the_oneof_is_a_choice():
    for model in MODEL_FIELDS:
        extra = BASKET_ASSET if not all(_scalar(f) for f in model.message_type.fields) else []
        assert _parse(["get", "--model", model.name, *extra]).model == model.name


def test_the_models_have_parameters_to_check():
    # Guards the parametrised tests below against passing vacuously.
    assert len({model for model, _ in PARAMETERS}) >= 5
    assert {"start", "mean", "kappa", "v0", "jump_intensity"} <= set(OWNERS)


@pytest.mark.parametrize(("model", "field"), PARAMETERS, ids=IDS)
@pytest.mark.parametrize("command", ["get", "stream"])
def test_the_parser_offers_the_flag(command, model, field):
    args = _parse([command, "--model", model, _flag(field.name), "1.5"])
    assert getattr(args, field.name) == 1.5


@pytest.mark.parametrize(("model", "field"), PARAMETERS, ids=IDS)
@pytest.mark.parametrize("command", ["get", "stream"])
def test_without_flags_the_request_carries_the_example_value(command, model, field):
    request = _sent([command, "--model", model])
    assert getattr(_model_part(request, model), field.name) == _example(field)


@pytest.mark.parametrize(("model", "field"), PARAMETERS, ids=IDS)
def test_a_value_given_on_the_command_line_reaches_the_request(model, field):
    value = _example(field) + 0.125
    request = _sent(["get", "--model", model, _flag(field.name), repr(value)])
    assert getattr(_model_part(request, model), field.name) == value
    others = [f for f in field.containing_type.fields if f.name != field.name]
    assert all(getattr(_model_part(request, model), f.name) == _example(f) for f in others)


@pytest.mark.parametrize(("name", "model"), FOREIGN, ids=[f"{m}--{n}" for n, m in FOREIGN])
def test_a_flag_of_another_model_exits_2(name, model, capsys):
    basket = model == "correlated_gbm"
    argv = ["get", "--model", model, *(BASKET_ASSET if basket else []), _flag(name), "1"]
    with pytest.raises(SystemExit) as exit:
        _parse(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    if basket and name in pb.CorrelatedAsset.DESCRIPTOR.fields_by_name:
        assert f"{_flag(name)}: a basket's instruments carry their own (--asset)" in err
    else:
        assert f"{_flag(name)} applies to --model {' or '.join(OWNERS[name])}, not {model}" in err


def _help(monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping: one line per flag
    with pytest.raises(SystemExit) as exit:
        main(["get", "--help"])
    assert exit.value.code == 0
    return capsys.readouterr().out


def test_help_gives_each_models_comment_and_default(monkeypatch, capsys):
    # One entry per option: its flag, metavar and help, whitespace folded.
    entries = re.split(r"\n(?=  -)", _help(monkeypatch, capsys))
    lines = {entry.split()[0]: " ".join(entry.split()) for entry in entries}
    for model, field in PARAMETERS:
        comment = next(p.comment for p in models.parameters(model) if p.name == field.name)
        assert comment, f"no comment read for {field.full_name}"
        assert f"{comment.rstrip('.')} (default {_example(field):g})" in lines[_flag(field.name)]
        assert model in lines[_flag(field.name)]
    # The comments are the proto's own, each on its field.
    assert "Speed at which the variance reverts, per year (default 2)" in lines["--kappa"]
    assert "ornstein_uhlenbeck: First value (default 70)" in lines["--start"]


def test_without_the_descriptor_set_help_keeps_the_defaults(monkeypatch, capsys):
    monkeypatch.setattr(models, "DESCRIPTOR_SET", "no-such-file.binpb")
    models._comments.cache_clear()
    models.message_parameters.cache_clear()
    try:
        text = _help(monkeypatch, capsys)
        assert "--kappa KAPPA heston, ornstein_uhlenbeck: default 2" in " ".join(text.split())
        assert "Speed at which" not in text
        request = _sent(["get", "--model", "heston"])
        assert request.heston.kappa == 2.0
    finally:
        models._comments.cache_clear()
        models.message_parameters.cache_clear()
