"""Vocabulary reduction (MAFT-style trimming): keep the source tokenizer, minus the tokens a
target corpus never uses, and copy the kept rows exactly.

Two ways to run it:

- let the method trim: pass the source's own tokenizer (or ``None``) as the target, and a
  corpus (and/or ``drop_scripts``)::

      transplant_tokenizer(model, None, method="trim", corpus="uk_train.txt", drop_scripts=["Han"])
      hf-vocabswap transplant MODEL MODEL --method trim --corpus uk_train.txt --out small

- trim first with :func:`hf_vocabswap.tokenizer_trimming.trim_tokenizer`, inspect the tokenizer, then pass it
  as the target (no corpus needed)::

      small = trim_tokenizer(tokenizer, "uk_train.txt")
      transplant_tokenizer(model, small, method="trim", source_tokenizer=tokenizer)

The target is trimmed by the method when it contains every source token (it is the source
tokenizer, or the source plus added tokens: extend mode); any other target is taken as already
trimmed. Rows are copied by raw token string (not by canonical form, which would let a regular
piece stand for the byte-fallback piece of the same byte), so every kept row is bit-identical to
the source's. Target tokens the source does not have (tokens added on top) are initialized like
FVT: the mean of the source rows of their text.

The report's method stats give the rows removed and the parameters saved (input matrix, the
untied output matrix and the output bias).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import CorpusError, MethodOptionError, TokenizerError
from ..tokenizer_trimming import KEEP_SPECIAL, check_scripts, kept_source_ids, trim_tokenizer
from ..plan import MixingPlan, PlanBuilder
from ..surgery import find_embeddings
from .base import Method, MethodConfig, MethodContext, register_method
from .mixing import combine_subword_means

logger = logging.getLogger(__name__)


@dataclass
class TrimConfig(MethodConfig):
    """Options of vocabulary trimming (each field's ``help`` is its documentation and CLI help)."""
    min_frequency: int = field(
        default=1, metadata={"help": "keep a token when the corpus produces it at least this often"}
    )
    drop_scripts: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Unicode scripts to remove entirely, e.g. 'Han,Arabic' (tokens containing one of their "
            "characters go even if the corpus uses them)"
        },
    )
    keep_special: str = field(
        default="all",
        metadata={"help": "'all' special tokens, or 'used': those with a role, the post-processor's and the corpus's"},
    )

    def __post_init__(self):
        try:
            self.drop_scripts = check_scripts(self.drop_scripts) or None
        except TokenizerError as e:
            raise MethodOptionError(str(e)) from None
        if self.keep_special not in KEEP_SPECIAL:
            raise MethodOptionError(f"trim option keep_special must be one of {KEEP_SPECIAL}, not {self.keep_special!r}.")
        if self.min_frequency < 1:
            raise MethodOptionError(f"trim option min_frequency must be >= 1, not {self.min_frequency}.")


def _contains_source(target, source) -> bool:
    """Whether ``target`` has every source token at the same id (source itself or an extension)."""
    if len(target) < len(source):
        return False
    ids = list(range(len(source)))
    return target.convert_ids_to_tokens(ids) == source.convert_ids_to_tokens(ids)


def parameter_savings(model, rows_after: int) -> dict:
    """Parameters removed by cutting the vocabulary rows of ``model`` down to ``rows_after``."""
    handles = find_embeddings(model)
    rows_before = handles.input_weight.shape[0]
    per_row = handles.input_weight.shape[1]
    if handles.output_weight is not None:
        per_row += handles.output_weight.shape[1]
    per_row += sum(1 for b in handles.biases.values() if isinstance(b, torch.nn.Parameter))
    before = sum(p.numel() for p in model.parameters())
    saved = (rows_before - rows_after) * per_row
    return {
        "rows_before": int(rows_before),
        "rows_after": int(rows_after),
        "parameters_before": int(before),
        "parameters_after": int(before - saved),
        "parameters_saved": int(saved),
        "saved_fraction": round(saved / max(before, 1), 6),
    }


@register_method
class Trim(Method):
    """Vocabulary trimming as the registered method ``trim`` (module docstring)."""
    name = "trim"
    config_class = TrimConfig
    summary = (
        "Vocabulary trimming: the source tokenizer minus the tokens a corpus never uses (and unwanted scripts); "
        "kept rows copied exactly, parameters saved reported."
    )
    citation = """@inproceedings{ushio-etal-2023-efficient,
  title = {An Efficient Multilingual Language Model Compression through Vocabulary Trimming},
  author = {Ushio, Asahi and Zhou, Yi and Camacho-Collados, Jose},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year = {2023}
}"""

    config: TrimConfig

    def prepare_target_tokenizer(self, target_tokenizer, source_tokenizer, corpus):
        """Trim the target when it holds every source token; take any other target as trimmed.

        Raises:
            CorpusError: trimming is needed but there is neither a corpus nor ``drop_scripts``.
        """
        target = source_tokenizer if target_tokenizer is None else target_tokenizer
        if not _contains_source(target, source_tokenizer):
            return target
        cfg = self.config
        if corpus is None and not cfg.drop_scripts:
            raise CorpusError(
                "Method 'trim' removes the tokens a corpus never uses: pass corpus=... (and/or drop_scripts=...), "
                "or a tokenizer already trimmed with hf_vocabswap.tokenizer_trimming.trim_tokenizer as the target."
            )
        return trim_tokenizer(
            target, corpus, min_frequency=cfg.min_frequency, drop_scripts=cfg.drop_scripts, keep_special=cfg.keep_special
        )

    def plan(self, ctx: MethodContext) -> MixingPlan:
        src_ids = kept_source_ids(ctx.target_tokenizer, ctx.source_tokenizer)
        src_ids[src_ids >= ctx.num_source] = -1
        builder = PlanBuilder(ctx.num_target, ctx.num_source)
        copied = np.flatnonzero(src_ids >= 0)
        builder.copy(copied, src_ids[copied])
        others = np.flatnonzero(src_ids < 0)
        t2s = ctx.alignment.target_to_source
        by_alignment = [t for t in others.tolist() if 0 <= t2s[t] < ctx.num_source]  # e.g. specials by role
        builder.copy(by_alignment, t2s[by_alignment])
        new = [t for t in others.tolist() if not 0 <= t2s[t] < ctx.num_source]
        combine_subword_means(builder, ctx, new)
        stats = {
            "kept_source_tokens": int(len(copied)),
            "removed_source_rows": int(ctx.num_source - len(set(src_ids[copied].tolist()))),
            "tokens_not_in_source": int(len(others)),
            **parameter_savings(ctx.model, ctx.num_target),
        }
        logger.info(
            "trim: %d of %d source rows kept, %d parameters saved (%.1f%%)",
            len(copied), ctx.num_source, stats["parameters_saved"], 100 * stats["saved_fraction"],
        )
        return builder.build(stats)
