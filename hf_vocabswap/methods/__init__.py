"""Initialization methods. Each module or package in this folder registers its methods
with :func:`register_method` when imported; :func:`load_all` imports them all, so adding a
method means adding one module and nothing else."""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    COMBINED,
    COPIED,
    KIND_NAMES,
    MEAN,
    RANDOM,
    Method,
    MethodConfig,
    MethodContext,
    MixingPlan,
    PlanBuilder,
    available_methods,
    get_method,
    register_method,
)

_loaded = False


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = [
    "COMBINED", "COPIED", "KIND_NAMES", "MEAN", "RANDOM", "Method", "MethodConfig", "MethodContext",
    "MixingPlan", "PlanBuilder", "available_methods", "get_method", "load_all", "register_method",
]
