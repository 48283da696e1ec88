"""The architecture holds: a pure simulation core under the RPC layer, and one
catalogue of models that the contract, the server and the market file share."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import tomllib
from pathlib import Path

import grpc
import numpy as np
import pytest

import server.sim
from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1.market_data_pb2_grpc import MarketDataServiceStub
from server.sim.checks import ParameterError
from server.sim.models import MODELS, Model
from server.sim.seeding import make_rng
from server.sim.universe import parse_market
from tests.conftest import REPO_ROOT, ServerThread

SIM = Path(server.sim.__file__).parent
SIM_MODULES = sorted(m.name for m in pkgutil.walk_packages([str(SIM)], prefix="server.sim."))
ONEOF = [f.name for f in pb.PathRequest.DESCRIPTOR.oneofs_by_name["model"].fields]


def test_the_simulation_imports_neither_grpc_nor_protobuf(python):
    # Every module of the core is imported with grpc, protobuf and the generated code made
    # unimportable: one import of any of them anywhere in the core fails this test.
    script = (
        "import importlib, sys\n"
        "for blocked in ('grpc', 'google.protobuf', 'marketdata'):\n"
        "    sys.modules[blocked] = None\n"
        f"for name in {SIM_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(len(sys.modules))\n"
    )
    done = subprocess.run([python, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(SIM_MODULES) > 15  # the walk found the core's modules, models included


def test_no_module_of_the_core_imports_from_outside_it():
    outside = ("server", "client", "marketdata", "grpc", "google")
    for path in SIM.rglob("*.py"):
        package = ["server", *path.relative_to(SIM.parent).parent.parts]  # e.g. server, sim, models
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                names = [".".join(package[: len(package) - node.level + 1] + [node.module or ""])]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module]
            else:
                continue
            for name in names:
                inside = name.startswith("server.sim")
                assert inside or not name.startswith(outside), f"{path.name} imports {name}"


def test_every_model_of_the_contract_has_one_class_and_no_other():
    assert list(MODELS) == ONEOF
    for name, model in MODELS.items():
        assert issubclass(model, Model) and model.name == name


@pytest.mark.parametrize("name", ONEOF)
def test_a_model_class_takes_the_fields_of_its_message_in_order(name):
    message = pb.PathRequest.DESCRIPTOR.fields_by_name[name].message_type
    assert MODELS[name].parameter_names() == tuple(f.name for f in message.fields)


@pytest.mark.parametrize("name", [n for n in ONEOF if MODELS[n].single_instrument])
def test_each_model_owns_its_scale_summary_and_stepper(name):
    # Values anyone would accept: 1 for every parameter but a correlation, which must be in [-1, 1].
    values = {p: (0.5 if p == "rho" else 1.0) for p in MODELS[name].parameter_names()}
    model = MODELS[name](**values)
    assert model.step_scale > 0
    assert len(model.summary) == 3
    path = model.stepper(make_rng(1)).next_block(5)
    assert path.shape == (5,) and np.isfinite(path).all()


SINGLE = [n for n in ONEOF if MODELS[n].single_instrument]


def _acceptable(name: str) -> dict[str, float]:
    """A value every parameter of model ``name`` accepts: 1, or 0.5 for a correlation."""
    return {p: (0.5 if p == "rho" else 1.0) for p in MODELS[name].parameter_names()}


def test_the_market_file_and_list_instruments_take_every_model_from_its_class():
    # One instrument per single-instrument model of the contract, its parameters named only
    # by the model's class: nothing else lists them.
    tables = []
    for n, name in enumerate(SINGLE):
        body = "".join(f"{p} = {v}\n" for p, v in _acceptable(name).items())
        tables.append(f'[[instrument]]\nsymbol = "S{n}"\nmodel = "{name}"\n{body}')
    config = parse_market(tomllib.loads("[market]\nseed = 1\n" + "\n".join(tables)))
    for instrument, name in zip(config.instruments, SINGLE, strict=True):
        assert instrument.model == name
        assert instrument.parameters == tuple(_acceptable(name).items())
    srv = ServerThread(market=config)
    try:
        with grpc.insecure_channel(srv.target) as channel:
            listed = MarketDataServiceStub(channel).ListInstruments(pb.ListInstrumentsRequest())
    finally:
        srv.stop()
    assert [i.model for i in listed.instruments] == SINGLE
    for info, name in zip(listed.instruments, SINGLE, strict=True):
        assert (info.start_price, info.mu, info.sigma) == MODELS[name](**_acceptable(name)).summary


@pytest.mark.parametrize("name", SINGLE)
def test_the_market_file_refuses_a_missing_or_foreign_parameter_of_every_model(name):
    values = _acceptable(name)
    required = next(p for p in values if p != "mu")  # mu alone may be left out
    for broken, words in (
        ({k: v for k, v in values.items() if k != required}, f"{required} is required for model {name}"),
        ({**values, "nonsense": 1.0}, f"nonsense is not a parameter of model {name}"),
    ):
        body = "".join(f"{p} = {v}\n" for p, v in broken.items())
        with pytest.raises(ParameterError, match=words):
            parse_market(tomllib.loads(f'[[instrument]]\nsymbol = "X"\nmodel = "{name}"\n{body}'))


def test_both_bars_types_mirror_the_contract():
    # The server's Bars (built from numpy) and the client's (decoded into numpy) cannot share
    # code across the wire; each names its arrays exactly as the proto's Bars fields, in order.
    from client import Bars as ClientBars
    from server.sim.bars import Bars as ServerBars

    fields = [f.name for f in pb.Bars.DESCRIPTOR.fields]
    assert list(ServerBars.__dataclass_fields__) == fields
    assert list(ClientBars.__dataclass_fields__) == fields
