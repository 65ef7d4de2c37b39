"""``auto``: the registry entry that stands for the method the committed benchmarks recommend.

``get_method("auto").resolve(model_kind=..., has_corpus=...)`` returns the method to run and
why; ``transplant_tokenizer`` records both. The rule, from benchmarks/results:

- causal and masked LMs with a target-language corpus: ``hybrid`` (calibrated). On causal
  Gemma-3-270m to 32k Ukrainian (H200) it led zero-shot (2.545 bits per character; FVT 2.865,
  FOCUS 2.751) and after 400 LAPT steps (1.909; FVT 1.917, FOCUS 2.113); on the masked
  splade-tiny to 8k Ukrainian CPU benchmark it led too (quality_cpu.md);
- seq2seq models (no benchmark covers them) and transplants without a corpus: ``fvt``, which
  needs none (``calibrate=True`` works for seq2seq too).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, MethodConfig, MethodContext, get_method, register_method


@dataclass
class AutoConfig(MethodConfig):
    """``auto`` has no options of its own; the options of the method it picks are passed on."""


@register_method
class Auto(Method):
    """The ``auto`` entry: :meth:`resolve` picks the method; it never plans itself."""
    name = "auto"
    config_class = AutoConfig
    summary = "The benchmarks' choice: the calibrated hybrid for causal and masked LMs given a corpus, FVT otherwise."

    @classmethod
    def resolve(cls, *, model_kind: str, has_corpus: bool) -> tuple[type[Method], str | None]:
        """``(hybrid, reason)`` for causal and masked LMs with a corpus, else ``(fvt, reason)``."""
        if not has_corpus:
            return get_method("fvt"), "no corpus given: FVT needs none"
        if model_kind in ("causal", "masked"):
            return get_method("hybrid"), (
                f"{model_kind} LM with a corpus: the calibrated hybrid led zero-shot and after LAPT in benchmarks/results"
            )
        return get_method("fvt"), f"{model_kind} model: no benchmark covers it; FVT (calibrate=True also works for it)"

    @classmethod
    def candidates(cls) -> tuple[str, ...]:
        return ("hybrid", "fvt")

    def plan(self, ctx: MethodContext):
        raise TypeError("'auto' stands for another method: resolve it with Auto.resolve(...) and plan with that one")
