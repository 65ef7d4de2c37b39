"""OFA (Liu et al., NAACL 2024 findings): new tokens from their nearest source tokens in a word-vector space.

1. Subword vectors: every word of a word-vector model (multilingual, or of the new language)
   is tokenized as it is, with a leading space, and capitalized with a leading space; a
   token's vector is the mean of the vectors of the words whose tokenizations contain it.
   Source tokens and target tokens both get vectors this way, from the same words, so they
   live in one space.
2. Overlapping tokens are copied: exact matches (same bytes and word-start flag, special
   tokens by role) first, then tokens whose lowercased text matches a source token.
3. Every other target token with a vector becomes ``sum_j softmax(sim_j / 0.1) * E[source_j]``
   over its 10 most cosine-similar source tokens.
4. Optional factorization (``keep_dim``): the SVD ``E = U S V^T`` gives coordinates
   ``C = U_k`` (V_s x k) and primitives ``P = S_k V_k^T`` (k x d). Tokens are built in
   coordinate space (copies and mixtures of rows of ``C``, random draws from ``C``'s
   statistics) and the model stores ``C' P``: a stock embedding matrix of rank k. With
   ``factorized=True`` the factors themselves are returned as ``plan.factorization`` (and
   written to ``factorized_file``); ``C' @ P`` equals the model's input embeddings.

Tokens that no word covers get the mean of their source subwords (FVT), or a random draw
(``fallback="random"``, the reference's rule). In extend mode every existing row is kept as it
is; factorization, which changes every row, is refused there.

Differences from the reference (cisnlp/ofa): any tokenizer family instead of RoBERTa/XLM-R,
overlap by canonical form (bytes and word-start flag) instead of decoded strings, candidates
restricted to source tokens that have a vector, and no ``lang:word`` parsing of ColexNet keys
(words are used as they are).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ...errors import MethodOptionError, NoOverlapError, ResourceError
from ...resources import load_word_vectors
from ...vocab import CanonicalForm
from ...plan import RANDOM, MixingPlan, PlanBuilder
from ..base import Method, MethodContext, register_method
from ..mixing import combine_subword_means, plain_encoder, topk_softmax_mixing, word_containment_vectors
from .config import OFAConfig

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{liu-etal-2024-ofa,
  title = {{OFA}: A Framework of Initializing Unseen Subword Embeddings for Efficient Large-scale Multilingual Continued Pretraining},
  author = {Liu, Yihong and Lin, Peiqin and Wang, Mingyang and Sch{\\"u}tze, Hinrich},
  booktitle = {Findings of the Association for Computational Linguistics: NAACL 2024},
  month = jun,
  year = {2024},
  address = {Mexico City, Mexico},
  publisher = {Association for Computational Linguistics},
  url = {https://aclanthology.org/2024.findings-naacl.68},
  pages = {1067--1097}
}"""

FACTORIZATION_FORMAT = "hf_vocabswap.ofa.factorization/1"


# -- factorization ------------------------------------------------------------------------------
@dataclass
class Factorization:
    """Factorized input embeddings: ``coordinates @ primitives`` is the (V_t x d) matrix.

    Attributes:
        primitives: (k, d) float32, ``S_k V_k^T`` of the source embeddings' SVD.
        coordinates: (V_t, k) float32, one row per target token.
    """

    primitives: torch.Tensor
    coordinates: torch.Tensor
    metadata: dict = field(default_factory=dict)

    @property
    def keep_dim(self) -> int:
        return int(self.primitives.shape[0])

    def multiply_out(self) -> torch.Tensor:
        """(V_t, d) float32: the embedding matrix the factors stand for."""
        return (self.coordinates.double() @ self.primitives.double()).float()

    def save(self, path) -> Path:
        """Write ``primitives`` and ``coordinates`` as safetensors (atomically)."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"format": FACTORIZATION_FORMAT, **{k: str(v) for k, v in self.metadata.items()}}
        save_file({"primitives": self.primitives.contiguous(), "coordinates": self.coordinates.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "Factorization":
        """Read a file written by :meth:`save`.

        Raises:
            ResourceError: the file is missing or is not an OFA factorization.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise ResourceError(f"OFA factorization file {str(path)!r} does not exist.")
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != FACTORIZATION_FORMAT:
                raise ResourceError(f"{str(path)!r} is not an OFA factorization written by hf_vocabswap.")
            return cls(f.get_tensor("primitives"), f.get_tensor("coordinates"), {k: v for k, v in meta.items() if k != "format"})


def svd_factors(matrix: torch.Tensor, keep_dim: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Coordinates ``U_k`` (V x k) and primitives ``S_k V_k^T`` (k x d) of ``matrix`` (V x d), float64.

    Returns:
        ``(coordinates, primitives, energy)``: ``energy`` is the share of the squared
        Frobenius norm the k primitives keep.
    """
    u, s, vh = torch.linalg.svd(matrix.detach().to("cpu", torch.float64), full_matrices=False)
    energy = float((s[:keep_dim] ** 2).sum() / (s**2).sum()) if s.numel() else 1.0
    return u[:, :keep_dim].contiguous(), (s[:keep_dim, None] * vh[:keep_dim]).contiguous(), energy


def _fingerprint(t: torch.Tensor) -> tuple:
    x = t.detach()
    return (tuple(x.shape), str(x.dtype), float(x.double().sum()), float(x.double().square().sum()), float(x[0].double().sum()))


@dataclass
class FactorizedPlan(MixingPlan):
    """A plan whose input embeddings are built in OFA's coordinate space.

    Rows of the input matrix are ``mix(C) @ P`` with ``C, P`` the rank-``keep_dim`` SVD factors
    of the source matrix: the same mixing weights as the plan, applied to coordinates (random
    rows drawn from the coordinates' statistics, padding rows the mean coordinate). Any other
    tensor (an untied output matrix, an output bias) is mixed as by a plain :class:`MixingPlan`.
    The factors are kept in float32 and multiplied in float64, so ``Factorization.multiply_out``
    gives exactly the rows the model receives.
    """

    keep_dim: int = 0
    _factors: tuple | None = field(default=None, repr=False)  # (key, Factorization, mean coordinate)

    def factors(self, source: torch.Tensor, seed: int) -> tuple[Factorization, torch.Tensor]:
        """(factorization of the target rows, mean coordinate row) for the source matrix ``source``."""
        key = (_fingerprint(source), seed)
        if self._factors is not None and self._factors[0] == key:
            return self._factors[1], self._factors[2]
        coords, prims, energy = svd_factors(source[: self.num_source], self.keep_dim)
        plain = MixingPlan(self.num_source, self.indptr, self.indices, self.weights, self.kinds)
        target_coords = plain.apply(coords, seed=seed)
        fact = Factorization(prims.float(), target_coords.float(), {"keep_dim": self.keep_dim, "energy": round(energy, 6)})
        self._factors = (key, fact, coords.mean(0).float())
        return fact, self._factors[2]

    def apply(self, source, *, seed, fallback="normal", num_rows=None, chunk_rows=16384):
        if source.dim() != 2:
            return super().apply(source, seed=seed, fallback=fallback, num_rows=num_rows, chunk_rows=chunk_rows)
        fact, mean = self.factors(source, seed)
        coords = fact.coordinates
        if num_rows is not None and num_rows > len(coords):
            coords = torch.cat([coords, mean.expand(num_rows - len(coords), -1)])
        rows = (coords.double() @ fact.primitives.double()).float()
        return rows.to(device=source.device, dtype=source.dtype)


# -- the method ---------------------------------------------------------------------------------
def _variants():
    return [lambda w: w, lambda w: " " + w, lambda w: " " + w[:1].upper() + w[1:]]


def ofa_token_vectors(tokenizer, words, word_vectors: np.ndarray, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (num_tokens, d), hits): mean vector of the words whose tokenizations contain each token."""
    encode = plain_encoder(tokenizer)
    return word_containment_vectors(encode, num_tokens, words, word_vectors, _variants())


@register_method
class OFA(Method):
    """OFA (Liu et al., 2024) as the registered method ``ofa``."""
    name = "ofa"
    config_class = OFAConfig
    summary = (
        "OFA: overlap copied (exact, then lowercase); new tokens = softmax mixtures of their 10 most similar source "
        "tokens in a word-vector space; optional low-rank factorized embeddings."
    )
    citation = CITATION

    config: OFAConfig

    def _overlap(self, ctx: MethodContext) -> tuple[np.ndarray, int]:
        """target -> source ids: the alignment's matches, then lowercase matches. Returns (t2s, lowercase count)."""
        align = ctx.alignment
        n_s = ctx.num_source
        t2s = align.target_to_source.copy()
        t2s[t2s >= n_s] = -1
        if not self.config.lowercase_match:
            return t2s, 0
        src = align.source
        lower_index: dict[CanonicalForm, int] = {}
        exact_lower: dict[CanonicalForm, int] = {}
        for sid, form in enumerate(src.forms[:n_s]):
            if form is None or sid in src.byte_fallback_ids:
                continue
            try:
                text = form.text.decode("utf-8")
            except UnicodeDecodeError:
                continue
            key = CanonicalForm(form.word_start, text.lower().encode("utf-8"))
            lower_index.setdefault(key, sid)
            if text == text.lower():
                exact_lower.setdefault(key, sid)
        lower_index.update(exact_lower)  # prefer the source token that is itself lowercase
        count = 0
        for tid, form in enumerate(align.target.forms):
            if form is None or t2s[tid] >= 0:
                continue
            try:
                text = form.text.decode("utf-8")
            except UnicodeDecodeError:
                continue
            sid = lower_index.get(CanonicalForm(form.word_start, text.lower().encode("utf-8")))
            if sid is not None:
                t2s[tid] = sid
                count += 1
        return t2s, count

    def plan(self, ctx: MethodContext) -> MixingPlan:
        cfg = self.config
        d = ctx.input_embeddings.shape[1]
        keep_dim = cfg.keep_dim if cfg.keep_dim is not None and cfg.keep_dim < d else None
        if keep_dim is not None and ctx.alignment.mode == "extend":
            raise MethodOptionError(
                f"OFA keep_dim={keep_dim} replaces every row by its rank-{keep_dim} approximation, but in extend mode "
                "the existing rows must stay as they are. Leave keep_dim unset (factorized=True still returns factors)."
            )
        wv = load_word_vectors(cfg.word_vectors, option="word_vectors", limit=cfg.max_words)
        n_words = len(wv.words) if cfg.max_words is None else min(cfg.max_words, len(wv.words))
        words, matrix = wv.words[:n_words], wv.word_matrix(n_words)
        n_src_tok = min(len(ctx.source_tokenizer), ctx.num_source)
        s_vec, s_hits = ofa_token_vectors(ctx.source_tokenizer, words, matrix, n_src_tok)
        t_vec, t_hits = ofa_token_vectors(ctx.target_tokenizer, words, matrix, ctx.num_target)
        t2s, lowercase = self._overlap(ctx)
        plain, mixed, fvt_ids, mean_sim = self._mix(ctx, t2s, s_vec, s_hits, t_vec, t_hits, wv.description)
        counts = plain.counts()
        stats = {
            "word_vectors": wv.description,
            "words": n_words,
            "copied": counts["copied"],
            "copied_lowercase": lowercase,
            "combined": counts["combined"],
            "random": counts["random"],
            "ofa_mixed": mixed,
            "fvt_fallback": len(fvt_ids),
            "source_coverage": round(float((s_hits > 0).mean()), 6) if n_src_tok else 0.0,
            "target_coverage": round(float((t_hits > 0).mean()), 6) if ctx.num_target else 0.0,
            "mean_top_similarity": round(mean_sim, 6),
            "keep_dim": keep_dim or d,
        }
        plan = self._with_factors(plain, stats, keep_dim, ctx)
        logger.info("OFA: %s", {k: stats[k] for k in ("copied", "copied_lowercase", "ofa_mixed", "fvt_fallback", "random", "keep_dim")})
        return plan

    def _mix(self, ctx: MethodContext, t2s, s_vec, s_hits, t_vec, t_hits, description: str):
        """(plain plan, tokens mixed, FVT-fallback ids, mean top similarity): overlap copied, new
        tokens with a word-vector mixed from their top-k source neighbours, the rest FVT or random."""
        cfg = self.config
        n_t, n_s, n_src_tok = ctx.num_target, ctx.num_source, len(s_hits)
        copied = t2s >= 0
        if not copied.any():
            raise NoOverlapError("OFA found no overlapping token between the source and target vocabularies.")
        s_special = np.zeros(n_src_tok, dtype=bool)
        s_special[[i for i in ctx.alignment.source.special_ids if i < n_src_tok]] = True
        candidates = np.flatnonzero((s_hits > 0) & ~s_special & ~np.all(s_vec == 0, axis=1))
        t_special = np.zeros(n_t, dtype=bool)
        t_special[[i for i in ctx.alignment.target.special_ids if i < n_t]] = True
        t_has = (t_hits > 0) & ~np.all(t_vec == 0, axis=1) & ~t_special
        queries = np.flatnonzero(~copied & t_has)
        leftover = np.flatnonzero(~copied & ~t_has)
        if len(queries) and len(candidates) == 0:
            raise ResourceError(
                f"No source token occurs in the tokenization of any word of {description} (word_vectors), so new "
                "tokens have no neighbour. Use word vectors that cover the model's vocabulary (e.g. multilingual ones)."
            )
        builder = PlanBuilder(n_t, n_s)
        builder.copy(np.flatnonzero(copied), t2s[copied])
        mean_sim = 0.0
        if len(queries):
            indptr, cols, weights, sims = topk_softmax_mixing(
                t_vec[queries], s_vec[candidates], k=cfg.neighbors, temperature=cfg.temperature, device=self._device(ctx),
                dtype=torch.float64,  # mean word vectors are nearly collinear: float32 misorders neighbours
                chunk_size=cfg.chunk_size, progress=cfg.progress, desc="OFA nearest source tokens",
            )
            builder.combine_rows(queries, indptr, candidates[cols], weights)
            mean_sim = float(sims[indptr[:-1]].mean())
        fvt_ids = []
        if cfg.fallback == "fvt" and len(leftover):
            pieces = combine_subword_means(builder, ctx, leftover.tolist())
            fvt_ids = [t for t, ids in pieces.items() if ids]
        return builder.build(), int(len(queries)), fvt_ids, mean_sim

    def _with_factors(self, plain: MixingPlan, stats: dict, keep_dim: int | None, ctx: MethodContext) -> MixingPlan:
        """The plan with OFA's factorization: full rank (factors only when asked) or rank ``keep_dim``."""
        cfg = self.config
        if keep_dim is None:
            plan = plain
            plan.stats = stats
            if cfg.factorized:
                plan.factorization = self._full_rank_factors(plan, ctx)
        else:
            plan = FactorizedPlan(
                plain.num_source, plain.indptr, plain.indices, plain.weights, plain.kinds, None, stats, keep_dim=keep_dim
            )
            if ctx.output_embeddings is not None:  # untied head: mixed in full dimension
                plan.output = MixingPlan(plain.num_source, plain.indptr, plain.indices, plain.weights, plain.kinds)
            fact, _ = plan.factors(ctx.input_embeddings, ctx.seed)
            stats["energy_kept"] = fact.metadata["energy"]
            plan.factorization = fact if cfg.factorized else None
        if cfg.factorized_file and plan.factorization is not None:
            stats["factorized_file"] = str(plan.factorization.save(cfg.factorized_file))
        return plan

    @staticmethod
    def _full_rank_factors(plan: MixingPlan, ctx: MethodContext) -> Factorization:
        """Factors of the (unfactorized) result: ``P = S V^T`` of the source, ``C' = E' P^+``.

        ``E'`` is computed exactly as surgery will compute it (same plan, same seed), so
        ``C' @ P`` reproduces the model's input embeddings up to rounding.
        """
        source = ctx.input_embeddings
        d = source.shape[1]
        _, prims, energy = svd_factors(source[: ctx.num_source], d)
        rows = plan.apply(source.detach().cpu(), seed=ctx.seed).double()
        coords = rows @ torch.linalg.pinv(prims)
        return Factorization(prims.float(), coords.float(), {"keep_dim": d, "energy": round(energy, 6)})
