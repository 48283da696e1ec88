"""The price models, one class each (one module each), in one catalogue.

A model class is a frozen dataclass of its parameters, named as in its
protobuf message: it checks them when built, knows its volatility scale and
its summary for ListInstruments, and makes its stepper. Everything else
(requests, the market file, the reply) reads models through ``MODELS``.
"""

from __future__ import annotations

from .arithmetic import Arithmetic, ArithmeticStepper
from .base import DEFAULT_TRADING_DAYS_PER_YEAR, Model, nested
from .correlated_gbm import MAX_ASSETS, Asset, CorrelatedGbm, CorrelatedGbmStepper
from .gbm import Gbm, GbmStepper, gbm_path
from .heston import Heston, HestonStepper
from .merton import Merton, MertonStepper
from .ornstein_uhlenbeck import OrnsteinUhlenbeck, OrnsteinUhlenbeckStepper

# Keyed by the fields of PathRequest's model oneof, in its order (errors list them so).
MODELS: dict[str, type[Model]] = {
    m.name: m for m in (Gbm, Arithmetic, Merton, Heston, OrnsteinUhlenbeck, CorrelatedGbm)
}

__all__ = [
    "DEFAULT_TRADING_DAYS_PER_YEAR",
    "MAX_ASSETS",
    "MODELS",
    "Arithmetic",
    "ArithmeticStepper",
    "Asset",
    "CorrelatedGbm",
    "CorrelatedGbmStepper",
    "Gbm",
    "GbmStepper",
    "Heston",
    "HestonStepper",
    "Merton",
    "MertonStepper",
    "Model",
    "OrnsteinUhlenbeck",
    "OrnsteinUhlenbeckStepper",
    "gbm_path",
    "nested",
]
