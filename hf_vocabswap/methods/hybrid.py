"""TokenAdapt-style hybrid: a local estimate from the source tokenizer's decomposition of a new
token (its subwords, FVT), blended with a global estimate from its nearest overlapping tokens in
an auxiliary embedding space (FOCUS's fastText space), then output calibration.

What the design rests on (Gemma-3-270m to a 32k Ukrainian tokenizer, benchmarks/README.md):

- FOCUS's sparsemax spreads each new token over ~560 anchors, so its rows are nearly the same
  vector (mean pairwise cosine 0.96, effective rank 8 against 270 for FVT). That washes out
  what distinguishes tokens, which continued pretraining then has to relearn: FVT overtakes it.
  The global estimate here is TokenAdapt's: the ``neighbors`` most similar anchors with
  weights ``softmax(cos / temperature)`` (``global_mixing="topk"``); FOCUS's own sparsemax
  mixture remains available (``global_mixing="sparsemax"``).
- Used untied as input rows, FVT's are better than FOCUS's; FOCUS's zero-shot lead came from
  the output side: FVT's new tokens take 76% of the predicted probability mass for a 37%
  share of the text. Calibration (:mod:`hf_vocabswap.calibration`, on by default for this
  method) gives each new token its corpus frequency.

``global_weight`` sets the blend; tokens with only one estimate take that one. Its default
follows the benchmarks (benchmarks/results):

- causal LMs, 0.1: on Gemma-3-270m to 32k Ukrainian the hybrid scored 2.545 bits per character
  zero-shot (FVT 2.865, FOCUS 2.751, the best blend of ../shared/ALGORITHMS.md 2.604) and 1.909
  after 400 LAPT steps (FVT 1.917, FOCUS 2.113), while a 0.5 blend ended LAPT at 1.962;
- masked LMs (and the rest), 0.5: on splade-tiny to 8k Ukrainian, 0.5 ended LAPT at 3.008 (FOCUS
  3.009, FVT 3.071) and 0.1 at 3.055, both calibrated and 3.24 zero-shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MethodOptionError
from ..plan import COMBINED, COPIED, MixingPlan, blend_plans
from .base import Method, MethodContext, register_method
from .focus import FOCUS, FOCUSConfig
from .mixing import subword_mean_plan, topk_softmax_mixing
from .options import check_choice, check_neighbors_and_temperature, neighbors_option, temperature_option

GLOBAL_MIXINGS = ("topk", "sparsemax")
# Default global weights by model kind (see the module docstring for the measurements).
CAUSAL_GLOBAL_WEIGHT = 0.1
OTHER_GLOBAL_WEIGHT = 0.5


@dataclass
class HybridConfig(FOCUSConfig):
    """Options of the hybrid: FOCUS's, plus the blend (each field's ``help`` is its documentation)."""
    global_weight: float | None = field(
        default=None,
        metadata={"help": "weight of the global (auxiliary-space neighbours) estimate; 1 - it goes to the local (FVT subword "
                  "mean) estimate (default: 0.1 for causal LMs, 0.5 for the others, as the benchmarks found best)"},
    )
    global_mixing: str = field(
        default="topk",
        metadata={"help": "global estimate: 'topk' = softmax(cos / temperature) over the most similar anchors (TokenAdapt); 'sparsemax' = FOCUS's mixture"},
    )
    neighbors: int = neighbors_option()
    temperature: float = temperature_option()

    def __post_init__(self):
        super().__post_init__()
        if self.global_weight is not None and not 0.0 <= self.global_weight <= 1.0:
            raise MethodOptionError(f"global_weight must be between 0 and 1, not {self.global_weight}")
        check_choice("hybrid", self, "global_mixing", GLOBAL_MIXINGS)
        check_neighbors_and_temperature("hybrid", self)


class _TopKFOCUS(FOCUS):
    """FOCUS's anchors and auxiliary vectors, mixed by top-k softmax instead of sparsemax."""

    def __init__(self, config: FOCUSConfig, neighbors: int, temperature: float):
        super().__init__(config)
        self.neighbors = neighbors
        self.temperature = temperature

    def _mix(self, queries, keys, device, dtype):
        indptr, cols, weights, _ = topk_softmax_mixing(
            queries, keys, k=self.neighbors, temperature=self.temperature, device=device, dtype=dtype,
            chunk_size=self.config.chunk_size, progress=self.config.progress, desc="hf_vocabswap: hybrid neighbours",
        )
        return indptr, cols, weights


@register_method
class Hybrid(Method):
    """The TokenAdapt-style hybrid (module docstring) as the registered method ``hybrid``."""
    name = "hybrid"
    config_class = HybridConfig
    needs_corpus = True
    corpus_substitutes = ("fasttext_model",)
    calibrates_by_default = True
    summary = (
        "TokenAdapt-style hybrid: new tokens = blend of their source-subword mean (local, FVT) and a "
        "softmax mixture of the most similar overlapping tokens in fastText space (global), then "
        "output calibration to the corpus's token frequencies."
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
        weight = self.config.global_weight
        if weight is None:
            weight = CAUSAL_GLOBAL_WEIGHT if ctx.is_causal else OTHER_GLOBAL_WEIGHT
        own = ("global_weight", "global_mixing", "neighbors", "temperature")
        focus_options = {k: v for k, v in self.config.to_dict().items() if k not in own}
        focus_options.update({k: getattr(self.config, k) for k in ("fasttext_model",)})
        focus_config = FOCUSConfig(**focus_options)
        if self.config.global_mixing == "topk":
            global_plan = _TopKFOCUS(focus_config, self.config.neighbors, self.config.temperature).plan(ctx)
        else:
            global_plan = FOCUS(focus_config).plan(ctx)
        both = int(((local.kinds == COMBINED) & (global_plan.kinds == COMBINED)).sum())
        stats = {
            "global_weight": weight,
            "global_mixing": self.config.global_mixing,
            "blended": both,
            "local_only": int(((local.kinds == COMBINED) & (global_plan.kinds != COMBINED)).sum()),
            "global_only": int(((global_plan.kinds == COMBINED) & (local.kinds != COMBINED) & (local.kinds != COPIED)).sum()),
            "focus": {k: v for k, v in global_plan.stats.items() if isinstance(v, (int, float, str))},
        }
        return blend_plans(local, global_plan, weight, stats)
