"""CLP-Transfer (Ostendorff & Rehm, 2023): new tokens as similarity-weighted sums of
overlapping tokens, the similarities taken from a *helper* model that already uses the target
tokenizer (typically a small model trained in the target language).

1. Overlapping tokens (target tokens that exist in the source vocabulary) are copied.
2. A missing token ``t`` gets ``sum_a w_a * E[a]`` over every overlapping token ``a``, where
   ``s_a = cos(H[t], H[a])`` is the cosine similarity of the helper's input embeddings and
   ``w_a = s_a / sum_b s_b``. No top-k, no temperature, and negative similarities are kept: this
   is what the reference implementation (``malteos/clp-transfer``, ``clp.py``) does.

Overlap:

- default: the vocabulary alignment (exact bytes plus the word-start flag, special tokens by
  role), so tokenizers of different families and whitespace tokens match correctly;
- ``faithful=True``: the reference's rule, equal raw token strings (``get_vocab()`` keys,
  special tokens included).

Size: the faithful weights are dense, one entry per (missing token, overlapping token): a
32k-token target with 7k overlapping and 25k missing tokens gives 175M entries, 2.8 GB as a
mixing plan (int64 id + float64 weight per entry) and as ``vocabswap_plan.safetensors``.
``top_k=K`` keeps the K most similar overlapping tokens per missing token (weights renormalized
over them), a documented departure from the reference for very large vocabularies. The
similarities are computed in blocks of new tokens (``chunk_size``), on the transplant's device.

A missing token whose similarities sum to zero (e.g. a zero helper row), or whose weights are
not finite, falls back to the seeded N(mean, std) draw; the report counts them. Because negative
similarities are kept, a token whose similarities nearly cancel gets large weights and a row far
from the others (``max_abs_weight`` in the report shows it). Trained embedding spaces are
anisotropic (most cosines positive), so this is rare with real helpers; ``top_k`` avoids it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import MethodOptionError, NoOverlapError
from ..plan import MixingPlan, PlanBuilder
from .base import MethodConfig, MethodContext, register_method
from .options import check_at_least_one, chunk_size_option, progress_option
from ..progress import progress_bar
from .target_model import CSRRows, TargetModelMethod, resolve_device, target_model_option

logger = logging.getLogger(__name__)

# Above this many plan entries, the log suggests top_k (16 bytes each: 4 GiB).
LARGE_PLAN_ENTRIES = 1 << 28

CITATION = """@article{ostendorff-rehm-2023-clp,
  title = {Efficient Language Model Training through Cross-Lingual and Progressive Transfer Learning},
  author = {Ostendorff, Malte and Rehm, Georg},
  journal = {arXiv preprint arXiv:2301.09626},
  year = {2023},
  url = {https://arxiv.org/abs/2301.09626}
}"""


@dataclass
class CLPConfig(MethodConfig):
    """Options of CLP-Transfer (each field's ``help`` is its documentation and CLI help)."""
    helper_model: Any = target_model_option("the cosine similarities of its input embeddings weight the overlapping tokens")
    faithful: bool = field(
        default=False,
        metadata={
            "help": "overlap by equal raw token strings as the reference does; default: the vocabulary alignment "
            "(same bytes and word-start flag, special tokens by role)"
        },
    )
    top_k: int | None = field(
        default=None,
        metadata={
            "help": "keep only the K most similar overlapping tokens per new token (weights renormalized over them); "
            "default: all of them, as the reference (the plan then has new x overlap entries, 16 bytes each)"
        },
    )
    chunk_size: int | None = chunk_size_option()
    progress: bool = progress_option("show a progress bar")

    def __post_init__(self):
        if self.top_k is not None and self.top_k < 1:
            raise MethodOptionError(f"CLP option top_k must be >= 1 or None, not {self.top_k}.")
        check_at_least_one("CLP", self, "chunk_size")


def raw_string_overlap(target_tokenizer, source_tokenizer, num_source: int) -> np.ndarray:
    """The reference's overlap: target id -> source id of the same raw token string, or -1."""
    n_t = len(target_tokenizer)
    t2s = np.full(n_t, -1, dtype=np.int64)
    source_vocab = source_tokenizer.get_vocab()
    for token, tid in target_tokenizer.get_vocab().items():
        sid = source_vocab.get(token)
        if sid is not None and sid < num_source and tid < n_t:
            t2s[tid] = sid
    return t2s


def clp_weights(
    helper: torch.Tensor,
    new_ids: np.ndarray,
    anchor_ids: np.ndarray,
    *,
    top_k: int | None = None,
    chunk_size: int | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CLP mixing weights of new tokens over anchor (overlapping) tokens, in CSR form.

    Args:
        helper: (V_t, d_h) helper input embeddings, row = target id.
        new_ids: (M,) target ids to build.
        anchor_ids: (N,) target ids of the overlapping tokens.
        top_k: keep the K largest similarities per row (None: all N).
        chunk_size: rows per block.
        device: where the similarities are computed (float64).

    Returns:
        ``(rows, indptr, columns, weights)``: ``rows`` (M',) are the positions in ``new_ids`` that
        got weights (the others have a zero or non-finite similarity sum); row ``i`` of the CSR
        block holds ``columns`` (positions in ``anchor_ids``) and ``weights`` (float64, summing
        to 1; exact zeros dropped).
    """
    m, n = len(new_ids), len(anchor_ids)
    k = n if top_k is None else min(top_k, n)
    if chunk_size is None:
        chunk_size = max(1, (1 << 24) // max(n, 1))
    h = torch.as_tensor(helper).to(device=device, dtype=torch.float64)
    anchors = torch.nn.functional.normalize(h[torch.as_tensor(anchor_ids, device=device)], dim=1)
    new_ids_t = torch.as_tensor(new_ids, device=device)
    csr = CSRRows()
    starts = range(0, m, chunk_size)
    for start in progress_bar(starts, group="method", total=len(starts), desc="CLP similarities", enabled=progress):
        block = torch.nn.functional.normalize(h[new_ids_t[start : start + chunk_size]], dim=1)
        sims = block @ anchors.T  # (B, N) cosine similarities
        if k < n:
            sims, cols = torch.topk(sims, k, dim=1)
        else:
            cols = torch.arange(n, device=device).expand(sims.shape[0], n)
        total = sims.sum(dim=1, keepdim=True)
        weights = sims / total
        ok = (total[:, 0] != 0) & torch.isfinite(weights).all(dim=1)
        csr.add(start, (weights != 0) & ok[:, None], cols, weights)
    return csr.result()


@register_method
class CLP(TargetModelMethod):
    """CLP-Transfer (Ostendorff & Rehm, 2023) as the registered method ``clp``."""
    name = "clp"
    model_option = "helper_model"
    config_class = CLPConfig
    summary = (
        "CLP-Transfer: overlapping tokens copied; a new token = sum of overlapping tokens weighted by cosine "
        "similarity (normalized to sum 1) in a helper model that already uses the target tokenizer."
    )
    citation = CITATION

    config: CLPConfig

    def plan(self, ctx: MethodContext) -> MixingPlan:
        cfg = self.config
        device = resolve_device(ctx.device)
        helper = self.load_target_model(ctx)
        if cfg.faithful:
            t2s = raw_string_overlap(ctx.target_tokenizer, ctx.source_tokenizer, ctx.num_source)
            builder = PlanBuilder(ctx.num_target, ctx.num_source)
            matched = np.flatnonzero(t2s >= 0)
            builder.copy(matched, t2s[matched])
        else:
            t2s = ctx.alignment.target_to_source.copy()
            t2s[t2s >= ctx.num_source] = -1
            builder = ctx.base_builder()
        anchors = np.flatnonzero(t2s >= 0)
        new = np.flatnonzero(t2s < 0)
        if len(anchors) == 0:
            raise NoOverlapError(
                "CLP builds new tokens from overlapping ones, and the source and target vocabularies share none"
                + (" as raw strings (faithful=True); try faithful=False." if cfg.faithful else ".")
            )
        entries = len(new) * (len(anchors) if cfg.top_k is None else min(cfg.top_k, len(anchors)))
        if entries > LARGE_PLAN_ENTRIES:
            logger.warning(
                "CLP: the dense weights have %d entries (%.1f GiB as a mixing plan); pass top_k=... to keep only "
                "the most similar overlapping tokens per new token",
                entries,
                entries * 16 / 2**30,
            )
        rows, indptr, cols, weights = clp_weights(
            helper.input, new, anchors, top_k=cfg.top_k, chunk_size=cfg.chunk_size, device=device, progress=cfg.progress
        )
        plan = builder.build().with_rows(new[rows], indptr, t2s[anchors][cols], weights)
        plan.stats.update(
            {
                "helper_model": helper.description,
                "overlap_by": "raw string" if cfg.faithful else "alignment",
                "anchors": int(len(anchors)),
                "combined": int(len(rows)),
                "zero_similarity_sum": int(len(new) - len(rows)),
                "negative_weights": int((weights < 0).sum()),
                "max_abs_weight": round(float(np.abs(weights).max()), 6) if len(weights) else 0.0,
                "plan_entries": int(len(plan.indices)),
            }
        )
        logger.info(
            "CLP: %d copied, %d combined from %d overlapping tokens, %d fallback",
            len(anchors), len(rows), len(anchors), len(new) - len(rows),
        )
        return plan
