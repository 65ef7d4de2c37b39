"""FVT (Gee et al., 2022): copy overlapping rows; a new token is the mean of the source rows
of its own text as the source tokenizer splits it. Word-start information is kept: a
continuation piece is split as a continuation, a word-initial piece with its marker.

Option ``output_rule="first"`` applies EEVE's rule for causal LMs (Kim et al., 2024): the
output row of a new token is the output row of its FIRST subword, the input row the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..plan import MixingPlan
from .base import Method, MethodConfig, MethodContext, register_method
from .mixing import OUTPUT_RULES, subword_mean_plan
from .options import check_choice


@dataclass
class FVTConfig(MethodConfig):
    """Options of FVT (each field's ``help`` is its documentation and CLI help)."""

    output_rule: str = field(
        default="mean",
        metadata={"help": "output rows of new tokens: 'mean' of subword rows (FVT) or 'first' subword (EEVE, causal LMs)"},
    )

    def __post_init__(self):
        check_choice("fvt", self, "output_rule", OUTPUT_RULES)


@register_method
class FVT(Method):
    """FVT (Gee et al., 2022) as the registered method ``fvt``."""
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
