"""FOCUS (Dobler & de Melo, EMNLP 2023): new tokens as sparsemax mixtures of overlapping tokens.

1. Auxiliary vectors for target tokens: fastText trained on the target corpus tokenized by
   the target tokenizer (or vectors of each token's text from a pretrained word model).
2. Overlapping tokens are copied. Those with an auxiliary vector are the *anchors*.
3. A new token with an auxiliary vector becomes ``sum_a w_a * E[anchor a]`` where ``w`` is
   the sparsemax of its cosine similarities to every anchor's auxiliary vector.

Two modes:

- ``faithful=True`` reproduces ``deepfocus`` 1.0.1's decisions: its own canonical forms and
  collision rule for the overlap (see :mod:`.reference`), fastText minCount 10, anchors =
  overlapping tokens in fastText's word list with a non-zero vector, and a random draw for
  every new token without such a vector.
- the default mode takes the overlap from the vocabulary alignment (exact bytes plus the
  word-start flag, special tokens by role, so whitespace tokens only match themselves), and
  gives tokens without their own fastText vector (seen fewer than ``min_count`` times) one
  from fastText's character n-grams (``rare_tokens="subword"``), or the mean of their source
  subwords (FVT), before resorting to a random draw.

Why not minCount 1 instead: on small corpora fastText vectors of rarely seen tokens are
nearly parallel to everything (mean cosine ~0.96 on 2.4M characters of Ukrainian), so
sparsemax spreads each new token over thousands of anchors - measured 3,700 on average,
95M plan entries for a 32k vocabulary - where minCount 10 with n-gram vectors stays near 450.

Both modes compute the similarities in chunks with one matrix product per chunk and a
vectorized top-k sparsemax, on ``device``.
"""

from __future__ import annotations

import logging
import re
import string

import numpy as np
import torch

from ...auxiliary.fasttext import FASTTEXT_SEPARATORS, FastTextAuxiliary, FastTextParams, token_fasttext_file
from ...errors import CorpusError, NoOverlapError
from ...vocab import MATCH_EXACT, MATCH_ROMANIZED, CanonicalForm, decode_each
from ...plan import RANDOM, MixingPlan, PlanBuilder
from ..base import Method, MethodContext, register_method
from .config import FOCUSConfig
from .maths import sparsemax_mixing
from .reference import reference_overlap

logger = logging.getLogger(__name__)
_PUNCT = frozenset(string.punctuation)

CITATION = """@inproceedings{dobler-de-melo-2023-focus,
  title = {{FOCUS}: Effective Embedding Initialization for Monolingual Specialization of Multilingual Models},
  author = {Dobler, Konstantin and de Melo, Gerard},
  editor = {Bouamor, Houda and Pino, Juan and Bali, Kalika},
  booktitle = {Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing},
  month = dec,
  year = {2023},
  address = {Singapore},
  publisher = {Association for Computational Linguistics},
  url = {https://aclanthology.org/2023.emnlp-main.829},
  doi = {10.18653/v1/2023.emnlp-main.829},
  pages = {13440--13454}
}"""


_SEPARATOR = re.compile("[" + re.escape("".join(sorted(FASTTEXT_SEPARATORS))) + "]")


def _fasttext_usable(s: str) -> bool:
    """Whether fastText could have seen ``s`` as one word (non-empty, no separator)."""
    return bool(s) and _SEPARATOR.search(s) is None


@register_method
class FOCUS(Method):
    """FOCUS as a registered method: ``get_method("focus")(FOCUSConfig(...)).plan(ctx)``.

    Options are the fields of :class:`FOCUSConfig`. ``plan.stats`` reports the anchors and
    how every token was made (copied, own fastText vector, n-gram vector, FVT, random).

    Example:
        >>> from hf_vocabswap import transplant_tokenizer
        >>> result = transplant_tokenizer("FacebookAI/xlm-roberta-base", "my-org/uk-32k",
        ...                               method="focus", corpus="uk_train.txt")
        >>> result.plan.stats["random"]          # tokens left to a random draw
        >>> transplant_tokenizer(..., method="focus", corpus="uk_train.txt", faithful=True)  # deepfocus 1.0.1
    """

    name = "focus"
    config_class = FOCUSConfig
    needs_corpus = True
    corpus_substitutes = ("fasttext_model",)
    summary = (
        "FOCUS: overlapping tokens copied; new tokens = sparsemax mixtures of overlapping tokens, "
        "weighted by similarity in fastText embeddings trained on target-language text."
    )
    citation = CITATION

    config: FOCUSConfig

    # -- auxiliary embeddings ---------------------------------------------------------------
    def auxiliary(self, ctx: MethodContext) -> tuple[FastTextAuxiliary, dict]:
        """The fastText space of the target tokens, given or trained (cached) on the corpus.

        Raises:
            CorpusError: no model is given and the corpus is missing, empty or too small.
            MismatchError: a given model's dimension is not ``dim``, or (token level) it
                was trained with another tokenizer.
            ResourceError: a given model file is missing or not a fastText model.
        """
        cfg = self.config
        info: dict = {"auxiliary": cfg.auxiliary}
        if cfg.fasttext_model is not None:
            aux = FastTextAuxiliary(cfg.fasttext_model, cache_dir=cfg.cache_dir)
            aux.check_dimension(cfg.dim)
            if cfg.auxiliary == "token":
                info["fasttext_token_share"] = round(aux.check_token_level(ctx.target_tokenizer), 4)
            info["fasttext_model"] = aux.description
        else:
            if ctx.corpus is None:
                raise CorpusError(
                    "FOCUS trains fastText on target-language text: pass corpus=... (a text file, a list of "
                    "strings or a datasets dataset), or a trained model as fasttext_model=..."
                )
            params = FastTextParams(
                dim=cfg.dim or 100,
                epoch=cfg.epochs,
                min_count=cfg.min_count,
                neg=cfg.neg,
                lr=cfg.lr,
                ws=cfg.window,
                minn=cfg.minn,
                maxn=cfg.maxn,
                bucket=cfg.bucket,
            )
            path = token_fasttext_file(
                ctx.corpus, ctx.target_tokenizer, params, cache_dir=cfg.cache_dir, threads=cfg.threads, progress=cfg.progress
            )
            aux = FastTextAuxiliary(path, cache_dir=cfg.cache_dir)
            info["fasttext_model"] = str(path)
            info["fasttext_min_count"] = params.min_count
        info["fasttext_dim"] = aux.dim
        info["fasttext_words"] = aux.num_words
        return aux, info

    # -- the plan ---------------------------------------------------------------------------
    def plan(self, ctx: MethodContext) -> MixingPlan:
        """Copy the overlap, mix new tokens from anchors, leave the rest to a random draw.

        Raises:
            NoOverlapError: no token overlaps, or no overlapping token has an auxiliary vector.
            CorpusError, MismatchError, ResourceError: see :meth:`auxiliary`.
            MethodOptionError: ``device`` names a GPU that is not there.
        """
        device = self._device(ctx)
        if self.config.faithful:
            t2s, forms = self._faithful_overlap(ctx)
        else:
            t2s, forms = self._default_overlap(ctx), None
        special = self._special_mask(ctx)
        if not ((t2s >= 0) & ~special).any():
            raise NoOverlapError(
                "FOCUS found no token shared by the source and target vocabularies (apart from special tokens), "
                "so there is no anchor to build new tokens from. Check that the target tokenizer is the one you "
                "meant; try fuzzy_match=True, or method='fvt' or 'random'."
            )
        # The fastText model (800 MB at the default 2M buckets) is loaded inside the planning
        # functions and dropped once the vectors are read, before the mixing allocates.
        if self.config.faithful:
            return self._plan_faithful(ctx, t2s, forms, device)
        return self._plan_default(ctx, t2s, special, device)

    def _special_mask(self, ctx: MethodContext) -> np.ndarray:
        special = np.zeros(ctx.num_target, dtype=bool)
        special[[i for i in ctx.alignment.target.special_ids if i < ctx.num_target]] = True
        return special

    def _mix(self, queries: np.ndarray, keys: np.ndarray, device, dtype):
        return sparsemax_mixing(
            queries, keys, device=device, dtype=dtype, chunk_size=self.config.chunk_size, progress=self.config.progress
        )

    @staticmethod
    def _no_anchor_error(overlap: int) -> NoOverlapError:
        return NoOverlapError(
            f"None of the {overlap} overlapping tokens has a fastText vector, so FOCUS has no anchor to mix new "
            "tokens from. Give more target-language text, a lower min_count, or another fastText model."
        )

    def _faithful_overlap(self, ctx: MethodContext):
        cfg = self.config
        n_t, n_s = ctx.num_target, ctx.num_source
        t2s, _, forms = reference_overlap(
            ctx.target_tokenizer,
            ctx.source_tokenizer,
            num_source=n_s,
            exact_match=cfg.exact_match,
            fuzzy_match=cfg.fuzzy_match,
            match_symbols=cfg.match_symbols,
        )
        if ctx.alignment.mode == "extend":
            # An extension keeps every existing row; the reference's collision rule would
            # overwrite some of them (e.g. whitespace tokens), which an extension must never do.
            identity = ctx.alignment.target_to_source[: min(n_s, n_t)]
            keep = identity >= 0
            t2s[: len(identity)][keep] = identity[keep]
        return t2s, forms

    def _plan_faithful(self, ctx: MethodContext, t2s, forms, device) -> MixingPlan:
        cfg = self.config
        n_t, n_s = ctx.num_target, ctx.num_source
        aux, info = self.auxiliary(ctx)
        listed = forms.ids < n_t
        ids = forms.ids[listed]
        if cfg.auxiliary == "token":
            strings = [t for t, keep in zip(forms.tokens, listed.tolist()) if keep]
            has = aux.in_vocab(strings)
        else:
            strings = [s.strip() for s in decode_each(ctx.target_tokenizer, ids.tolist())]
            has = np.ones(len(ids), dtype=bool)
        vectors = np.zeros((n_t, aux.dim), dtype=np.float32)
        with_vector = ids[has]
        vectors[with_vector] = aux.vectors([s for s, h in zip(strings, has.tolist()) if h])
        has_aux = np.zeros(n_t, dtype=bool)
        has_aux[with_vector] = aux.usable(vectors[with_vector])
        del aux
        copied = t2s >= 0
        anchors = np.flatnonzero(copied & has_aux)
        focus = np.flatnonzero(~copied & has_aux)
        if len(anchors) == 0 and len(focus):
            raise self._no_anchor_error(int(copied.sum()))
        builder = PlanBuilder(n_t, n_s)
        builder.copy(np.flatnonzero(copied), t2s[copied])
        plan = builder.build()
        if len(focus):
            # float64 similarities, as the reference computes them.
            indptr, cols, weights = self._mix(vectors[focus], vectors[anchors], device, torch.float64)
            plan = plan.with_rows(focus, indptr, t2s[anchors][cols], weights)
        counts = plan.counts()
        plan.stats = {
            "mode": "faithful",
            **info,
            "overlap": int(copied.sum()),
            "anchors": int(len(anchors)),
            "overlap_without_auxiliary": int(copied.sum() - len(anchors)),
            "copied": counts["copied"],
            "combined": counts["combined"],
            "random": counts["random"],
            "rare_tokens": "random",
            "mean_anchors_per_token": round(float(len(plan.indices) - counts["copied"]) / max(1, len(focus)), 3),
        }
        logger.info("FOCUS (faithful): %s", {k: plan.stats[k] for k in ("anchors", "copied", "combined", "random")})
        return plan

    def _default_overlap(self, ctx: MethodContext) -> np.ndarray:
        """target -> source ids from the alignment, adjusted by the match switches."""
        cfg = self.config
        align = ctx.alignment
        t2s = align.target_to_source.copy()
        t2s[t2s >= ctx.num_source] = -1
        if not cfg.exact_match:
            t2s[align.match == MATCH_EXACT] = -1
        if align.romanized_source is not None:
            # Romanized matches (hf_vocabswap.romanize) are extra anchors; exact matches stay first.
            extra = (t2s < 0) & (align.romanized_source >= 0) & (align.romanized_source < ctx.num_source)
            t2s[extra] = align.romanized_source[extra]
        if not (cfg.fuzzy_match or cfg.match_symbols):
            return t2s
        by_text: dict[bytes, int] = {}
        by_lower: dict[bytes, int] = {}
        src = align.source
        for sid, form in enumerate(src.forms[: ctx.num_source]):
            if form is None or sid in src.byte_fallback_ids:
                continue
            by_text.setdefault(form.text, sid)
            by_lower.setdefault(form.text.lower() if form.text.isascii() else form.text.decode("utf-8", "replace").lower().encode(), sid)
        for tid, form in enumerate(align.target.forms):
            if form is None or t2s[tid] >= 0:
                continue
            text = form.text.decode("utf-8", errors="replace")
            symbol = text.isnumeric() or all(c in _PUNCT for c in text) or text.isspace()
            if cfg.match_symbols and symbol and form.text in by_text:
                t2s[tid] = by_text[form.text]
            elif cfg.fuzzy_match:
                hit = by_lower.get(text.lower().encode())
                if hit is not None:
                    t2s[tid] = hit
        return t2s

    def _aux_strings(self, ctx: MethodContext, regular: np.ndarray) -> list[str]:
        """The string whose auxiliary vector stands for each target token ("" when none)."""
        tgt = ctx.alignment.target
        if self.config.auxiliary == "token":
            tokens = ctx.target_tokenizer.convert_ids_to_tokens(list(range(ctx.num_target)))
            return [t if (r and t is not None) else "" for t, r in zip(tokens, regular.tolist())]
        out = []
        for tid, form in enumerate(tgt.forms):
            if not regular[tid]:
                out.append("")
            elif form is None:
                out.append(tgt.added.get(tid, "").strip())
            else:
                out.append(form.text.decode("utf-8", errors="replace").strip())
        return out

    def _fvt_rows(self, ctx: MethodContext, target_ids: np.ndarray) -> dict[int, list[int]]:
        """Source subword ids of each target token's text (FVT decomposition)."""
        src = ctx.alignment.source
        tgt = ctx.alignment.target
        out: dict[int, list[int]] = {}
        for t in target_ids.tolist():
            form = ctx.alignment.decomposition_form(t)
            if form is None:
                content = tgt.added.get(t, "")
                if not content:
                    out[t] = []
                    continue
                word_start = content[:1] in (" ", "▁", "Ġ")
                form = CanonicalForm(word_start, (content[1:] if word_start else content).encode("utf-8"))
            out[t] = [s for s in src.segment(form) if s < ctx.num_source]
        return out

    def _plan_default(self, ctx: MethodContext, t2s, special, device) -> MixingPlan:
        cfg = self.config
        n_t, n_s = ctx.num_target, ctx.num_source
        aux, info = self.auxiliary(ctx)
        regular = ~special
        copied = t2s >= 0

        strings = self._aux_strings(ctx, regular)
        usable = np.fromiter((_fasttext_usable(s) for s in strings), dtype=bool, count=n_t)
        if cfg.auxiliary == "token":
            own = aux.in_vocab(strings) & usable
        else:
            own = usable.copy()
        new = regular & ~copied
        subword_ok = cfg.rare_tokens == "subword" and aux.has_subwords
        wanted = (own & regular) | (new & usable & subword_ok)
        vectors = np.zeros((n_t, aux.dim), dtype=np.float32)
        wanted_ids = np.flatnonzero(wanted)
        vectors[wanted_ids] = aux.vectors([strings[i] for i in wanted_ids.tolist()])
        nonzero = aux.usable(vectors)
        del aux
        own &= nonzero

        anchors = np.flatnonzero(copied & regular & own)
        focus_own = new & own
        focus_subword = new & ~own & wanted & nonzero
        focus = np.flatnonzero(focus_own | focus_subword)
        if len(anchors) == 0:
            raise self._no_anchor_error(int((copied & regular).sum()))

        builder = PlanBuilder(n_t, n_s)
        builder.copy(np.flatnonzero(copied), t2s[copied])
        plan = builder.build()
        rows_t, rows_ptr, rows_src, rows_w = [], [np.zeros(1, dtype=np.int64)], [], []
        if len(focus):
            indptr, cols, weights = self._mix(vectors[focus], vectors[anchors], device, torch.float32)
            rows_t.append(focus)
            rows_ptr.append(indptr[1:])
            rows_src.append(t2s[anchors][cols])
            rows_w.append(weights)
        leftover = new & ~(focus_own | focus_subword)
        fvt_ids = np.zeros(0, dtype=np.int64)
        if cfg.rare_tokens in ("subword", "fvt") and leftover.any():
            pieces = self._fvt_rows(ctx, np.flatnonzero(leftover))
            fvt_ids = np.array([t for t, p in pieces.items() if p], dtype=np.int64)
            if len(fvt_ids):
                lengths = np.array([len(pieces[t]) for t in fvt_ids.tolist()], dtype=np.int64)
                offset = rows_ptr[-1][-1]
                rows_t.append(fvt_ids)
                rows_ptr.append(offset + np.cumsum(lengths))
                rows_src.append(np.concatenate([pieces[t] for t in fvt_ids.tolist()]).astype(np.int64))
                rows_w.append(np.repeat(1.0 / lengths, lengths))
        if rows_t:
            plan = plan.with_rows(
                np.concatenate(rows_t), np.concatenate(rows_ptr), np.concatenate(rows_src), np.concatenate(rows_w)
            )
        counts = plan.counts()
        random_regular = int(((plan.kinds == RANDOM) & regular).sum())
        plan.stats = {
            "mode": "default",
            **info,
            "overlap": int(copied.sum()),
            "anchors": int(len(anchors)),
            "romanized_anchors": int((ctx.alignment.match[anchors] == MATCH_ROMANIZED).sum()),
            "overlap_without_auxiliary": int((copied & regular).sum() - len(anchors)),
            "copied": counts["copied"],
            "combined": counts["combined"],
            "random": counts["random"],
            "rare_tokens": cfg.rare_tokens,
            "focus_own_vector": int(focus_own.sum()),
            "focus_subword_vector": int(focus_subword.sum()),
            "fvt_fallback": int(len(fvt_ids)),
            "random_regular": random_regular,
            "random_regular_share": round(random_regular / max(1, int(regular.sum())), 6),
            "mean_anchors_per_token": round(float(np.diff(plan.indptr)[focus].mean()) if len(focus) else 0.0, 3),
            "special_unmatched": int((special & ~copied).sum()),
        }
        logger.info(
            "FOCUS: %s",
            {k: plan.stats[k] for k in ("anchors", "copied", "focus_own_vector", "focus_subword_vector", "fvt_fallback", "random")},
        )
        return plan

