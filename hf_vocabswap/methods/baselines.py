"""Baselines every paper reports: random, mean, and overlap copy + random."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..plan import MEAN, MixingPlan, PlanBuilder
from .base import Method, MethodConfig, MethodContext, register_method


@dataclass
class NoOptions(MethodConfig):
    """The config of methods without options."""
    pass


@register_method
class RandomInit(Method):
    """Baseline ``random``: every row drawn from N(mean, std) of the source rows."""
    name = "random"
    config_class = NoOptions
    needs_overlap = False
    summary = "Every row drawn from N(mean, std) of the source rows, per dimension (seeded)."

    def plan(self, ctx: MethodContext) -> MixingPlan:
        return PlanBuilder(ctx.num_target, ctx.num_source).build()


@register_method
class MeanInit(Method):
    """Baseline ``mean``: every row the mean source row."""
    name = "mean"
    config_class = NoOptions
    needs_overlap = False
    summary = "Every row set to the mean of the source rows."

    def plan(self, ctx: MethodContext) -> MixingPlan:
        builder = PlanBuilder(ctx.num_target, ctx.num_source)
        builder.fallback(np.arange(ctx.num_target), MEAN)
        return builder.build()


@register_method
class OverlapInit(Method):
    """Baseline ``overlap``: shared tokens copied, the rest random."""
    name = "overlap"
    config_class = NoOptions
    summary = "Rows of overlapping tokens copied; the others drawn from N(mean, std) (seeded)."

    def plan(self, ctx: MethodContext) -> MixingPlan:
        return ctx.base_builder().build()
