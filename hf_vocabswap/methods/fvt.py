"""FVT (Gee et al., 2022): copy overlapping rows; a new token is the mean of the source rows
of its own text as the source tokenizer splits it. Word-start information is kept: a
continuation piece is split as a continuation, a word-initial piece with its marker.

Option ``output_rule="first"`` applies EEVE's rule for causal LMs (Kim et al., 2024): the
output row of a new token is the output row of its FIRST subword, the input row the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Method, MethodConfig, MethodContext, MixingPlan, register_method


@dataclass
class FVTConfig(MethodConfig):
    output_rule: str = field(
        default="mean",
        metadata={"help": "output rows of new tokens: 'mean' of subword rows (FVT) or 'first' subword (EEVE, causal LMs)"},
    )


def decompose(ctx: MethodContext, target_ids) -> dict[int, list[int]]:
    """Source ids of each target token's text, split by the source tokenizer (may be empty)."""
    src = ctx.alignment.source
    tgt = ctx.alignment.target
    out = {}
    for t in target_ids:
        form = tgt.forms[t]
        out[t] = [] if form is None else [s for s in src.segment(form) if s < ctx.num_source]
    return out


def combine_subword_means(builder, ctx: MethodContext, target_ids) -> dict[int, list[int]]:
    """Set each target token that the source tokenizer can split to the mean of its pieces' rows.

    Returns every token's pieces (empty where nothing represents its text; those rows are left
    as the builder had them).
    """
    pieces = decompose(ctx, target_ids)
    for t, ids in pieces.items():
        if ids:
            builder.combine(t, ids, np.full(len(ids), 1.0 / len(ids)))
    return pieces


def subword_mean_plan(ctx: MethodContext, output_rule: str = "mean") -> tuple[MixingPlan, dict[int, list[int]]]:
    builder = ctx.base_builder()
    new_ids = np.flatnonzero(ctx.alignment.target_to_source < 0)
    pieces = combine_subword_means(builder, ctx, new_ids.tolist())
    stats = {"decomposed": int(sum(1 for v in pieces.values() if v)), "undecomposable": int(sum(1 for v in pieces.values() if not v))}
    output = None
    if output_rule == "first":
        out_builder = ctx.base_builder()
        for t, ids in pieces.items():
            if ids:
                out_builder.combine(t, ids[:1], [1.0])
        output = out_builder.build()
    elif output_rule != "mean":
        raise ValueError(f"output_rule must be 'mean' or 'first', not {output_rule!r}")
    return builder.build(stats, output), pieces


@register_method
class FVT(Method):
    name = "fvt"
    config_class = FVTConfig
    summary = "Fast Vocabulary Transfer: overlap copied, new tokens = mean of their source subwords."
    citation = """@inproceedings{gee-etal-2022-fast,
  title = {Fast Vocabulary Transfer for Language Model Compression},
  author = {Gee, Leonidas and Zugarini, Andrea and Rigutini, Leonardo and Torroni, Paolo},
  booktitle = {Proceedings of EMNLP 2022: Industry Track},
  year = {2022}
}"""

    def plan(self, ctx: MethodContext) -> MixingPlan:
        plan, _ = subword_mean_plan(ctx, self.config.output_rule)
        return plan
