"""Initialization methods. Each module or package in this folder registers its methods
with :func:`register_method` when imported; :func:`load_all` imports them all, so adding a
method means adding one module and nothing else."""

from __future__ import annotations

from ..plan import COMBINED, COPIED, KIND_NAMES, MEAN, RANDOM, MixingPlan, PlanBuilder
from .base import Method, MethodConfig, MethodContext, available_methods, get_method, load_all, register_method

__all__ = [
    "COMBINED", "COPIED", "KIND_NAMES", "MEAN", "RANDOM", "Method", "MethodConfig", "MethodContext",
    "MixingPlan", "PlanBuilder", "available_methods", "get_method", "load_all", "register_method",
]
