"""TokenAdapt-style hybrid: a local estimate from the source tokenizer's decomposition of a new
token (its subwords), blended with a global estimate from its nearest overlapping tokens in an
auxiliary embedding space (FOCUS's sparsemax mixture over fastText similarities).

Measured on Gemma-3-270m to a 32k Ukrainian tokenizer (../shared/ALGORITHMS.md): an equal blend
of FOCUS and FVT rows was the best zero-shot initialization, while FVT led after continued
pretraining. ``global_weight`` sets the blend; tokens with only one estimate take that one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import COMBINED, COPIED, MixingPlan, Method, MethodContext, register_method
from .focus import FOCUS, FOCUSConfig
from .fvt import subword_mean_plan


@dataclass
class HybridConfig(FOCUSConfig):
    global_weight: float = field(
        default=0.5,
        metadata={"help": "weight of the global (FOCUS, auxiliary-space neighbours) estimate; 1 - it goes to the local (FVT subword mean) estimate"},
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.global_weight <= 1.0:
            from ..errors import MethodOptionError

            raise MethodOptionError(f"global_weight must be between 0 and 1, not {self.global_weight}")


def _coo(plan: MixingPlan, rows: np.ndarray):
    """(row, source id, weight) entries of the given rows of a plan."""
    lengths = (plan.indptr[1:] - plan.indptr[:-1])[rows]
    starts = plan.indptr[rows]
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    return np.repeat(rows, lengths), plan.indices[pos], plan.weights[pos]


def blend_plans(local: MixingPlan, global_: MixingPlan, global_weight: float, stats: dict | None = None) -> MixingPlan:
    """Row-wise convex blend of two plans over the same vocabularies.

    COPIED rows come from ``local`` (both methods copy the same overlap). A row COMBINED in both
    becomes ``(1 - w) * local + w * global``; a row COMBINED in only one plan takes it; other rows
    keep ``local``'s fallback. Duplicate source ids in a row are summed.
    """
    n = local.num_target
    if global_.num_target != n or global_.num_source != local.num_source:
        raise ValueError("plans to blend must have the same target and source sizes")
    kinds = local.kinds.copy()
    both = (local.kinds == COMBINED) & (global_.kinds == COMBINED)
    only_global = (global_.kinds == COMBINED) & (local.kinds != COMBINED) & (local.kinds != COPIED)
    from_local = np.flatnonzero((local.kinds == COPIED) | (local.kinds == COMBINED))
    from_global = np.flatnonzero(both | only_global)
    r1, c1, w1 = _coo(local, from_local)
    r2, c2, w2 = _coo(global_, from_global)
    scale1 = np.where(both[r1], 1.0 - global_weight, 1.0)
    scale2 = np.where(both[r2], global_weight, 1.0)
    rows = np.concatenate([r1, r2])
    cols = np.concatenate([c1, c2])
    vals = np.concatenate([w1 * scale1, w2 * scale2])
    keys = rows * np.int64(local.num_source) + cols
    unique, inverse = np.unique(keys, return_inverse=True)
    summed = np.zeros(len(unique))
    np.add.at(summed, inverse, vals)
    u_rows = unique // local.num_source
    keep = summed != 0
    u_rows, u_cols, summed = u_rows[keep], (unique % local.num_source)[keep], summed[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u_rows, minlength=n), out=indptr[1:])
    kinds[only_global] = COMBINED
    return MixingPlan(local.num_source, indptr, u_cols.astype(np.int64), summed, kinds, None, dict(stats or {}))


@register_method
class Hybrid(Method):
    name = "hybrid"
    config_class = HybridConfig
    needs_corpus = True
    summary = (
        "TokenAdapt-style hybrid: new tokens = blend of their source-subword mean (local, FVT) and a "
        "sparsemax mixture of similar overlapping tokens in fastText space (global, FOCUS)."
    )
    citation = """@article{sharthak2025tokenadapt,
  title = {Achieving Tokenizer Flexibility in Language Models through Heuristic Adaptation and Supertoken Learning},
  author = {Sharthak, Shaurya and Pahalwan, Vinayak and Kamath, Adithya and Shukla, Adarsh},
  journal = {arXiv preprint arXiv:2505.09738},
  year = {2025}
}"""

    config: HybridConfig

    def plan(self, ctx: MethodContext) -> MixingPlan:
        local, _ = subword_mean_plan(ctx)
        focus_options = {k: v for k, v in self.config.to_dict().items() if k != "global_weight"}
        focus_options.update({k: getattr(self.config, k) for k in ("fasttext_model",)})
        global_plan = FOCUS(FOCUSConfig(**focus_options)).plan(ctx)
        both = int(((local.kinds == COMBINED) & (global_plan.kinds == COMBINED)).sum())
        stats = {
            "global_weight": self.config.global_weight,
            "blended": both,
            "local_only": int(((local.kinds == COMBINED) & (global_plan.kinds != COMBINED)).sum()),
            "global_only": int(((global_plan.kinds == COMBINED) & (local.kinds != COMBINED) & (local.kinds != COPIED)).sum()),
            "focus": {k: v for k, v in global_plan.stats.items() if isinstance(v, (int, float, str))},
        }
        return blend_plans(local, global_plan, self.config.global_weight, stats)
