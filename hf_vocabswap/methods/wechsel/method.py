"""WECHSEL (Minixhofer et al., NAACL 2022): new tokens mixed from semantically close source tokens.

1. Word vectors of the model's language (source) and of the new language (target), e.g.
   fastText models, are aligned: an orthogonal Procrustes map, fitted on the vectors of
   bilingual-dictionary pairs (each pair in its case variants {as is, lower, title} that both
   models know), rotates the source space onto the target space.
2. Every token of both tokenizers gets a vector in that space: fastText's vector of its text
   (character n-grams), or the frequency-weighted mean of the vectors of words whose
   tokenization contains it.
3. A target token becomes ``sum_j softmax(sim_j / 0.1) * E[source_j]`` over its 10 most
   cosine-similar source tokens.

Two modes:

- ``faithful=True`` reproduces ``wechsel`` 0.0.4's ``WECHSEL.apply``: token text is
  ``decode(id).strip()``, every source token is a candidate, dictionary case variants are
  counted as often as they occur, no token is copied except special tokens whose string is in
  both vocabularies, and tokens without a vector get a random draw. (The draw itself comes
  from hf_vocabswap's seeded generator, not from the reference's ``RandomState(1234)``.) On
  the CPU the similarities are computed with the reference's own float64 arithmetic, so even
  exact ties at the 10th neighbour break as in the reference; on a GPU they go to the lowest
  source id.
- the default mode copies tokens both vocabularies share (same bytes and word-start flag, by
  the vocabulary alignment; special tokens by role), embeds a token by its canonical text
  (``##ing`` -> ``ing``, ``Ġthe`` -> ``the``), takes only regular source tokens with a vector
  as candidates, counts each dictionary pair once, and gives tokens without a vector the mean
  of their source subwords (FVT) before resorting to a random draw.

In extend mode (the target is the source plus added tokens) every existing row is kept as it
is and only the added tokens are built, in both modes.

Resources are local paths or loaded objects. Downloading fastText vectors or a WECHSEL
dictionary by name happens only with ``download=True``; a missing resource raises
:class:`~hf_vocabswap.errors.ResourceError` naming the option to set.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from ...errors import MethodOptionError, MismatchError, ResourceError
from ...resources import WordVectors, default_resource_dir, download, load_word_vectors, read_bilingual_dictionary
from ...vocab import MATCH_EXACT, decode_each
from ...plan import RANDOM, MixingPlan, PlanBuilder
from ..base import Method, MethodContext, register_method
from ..mixing import combine_subword_means, plain_encoder, topk_softmax_mixing, word_containment_vectors
from .config import WECHSELConfig
from .maths import orthogonal_procrustes, reference_topk_softmax_mixing

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{minixhofer-etal-2022-wechsel,
  title = {{WECHSEL}: Effective initialization of subword embeddings for cross-lingual transfer of monolingual language models},
  author = {Minixhofer, Benjamin and Paischer, Fabian and Rekabsaz, Navid},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for Computational Linguistics: Human Language Technologies},
  month = jul,
  year = {2022},
  address = {Seattle, United States},
  publisher = {Association for Computational Linguistics},
  url = {https://aclanthology.org/2022.naacl-main.293},
  doi = {10.18653/v1/2022.naacl-main.293},
  pages = {3992--4006}
}"""

FASTTEXT_URL = "https://dl.fbaipublicfiles.com/fasttext/vectors-crawl/cc.{lang}.300.bin.gz"
DICTIONARY_URL = "https://raw.githubusercontent.com/CPJKU/wechsel/main/dicts/data/{name}.txt"
_LANG_CODE = re.compile(r"^[a-z]{2,3}$")
_DICT_NAME = re.compile(r"^[a-z][a-z_ ]*$")


# -- resources ----------------------------------------------------------------------------------
def resolve_word_vectors(value, option: str, *, allow_download: bool, cache_dir=None) -> WordVectors:
    """Word vectors from a path, an object or (with ``allow_download``) a fastText language code.

    Raises:
        ResourceError: nothing given, the file is missing, or a language code was given
            without ``download=True`` or could not be downloaded.
    """
    if value is None:
        raise ResourceError(
            f"WECHSEL needs word vectors for both languages: pass {option}=<path of a fastText .bin model, or a "
            f"loaded model> (or a language code such as 'en' together with download=True)."
        )
    if isinstance(value, str) and not Path(value).expanduser().exists() and _LANG_CODE.match(value):
        if not allow_download:
            raise ResourceError(
                f"{option}={value!r} is not a file. To download fastText's cc.{value}.300.bin (several GB) pass "
                f"download=True; otherwise pass the path of a local fastText .bin model."
            )
        folder = Path(cache_dir).expanduser() if cache_dir else default_resource_dir()
        value = str(download(FASTTEXT_URL.format(lang=value), folder / "fasttext" / f"cc.{value}.300.bin", option=option, gunzip=True))
    return load_word_vectors(value, option=option)


def resolve_dictionary(value, *, reverse: bool, allow_download: bool, cache_dir=None) -> list[tuple[str, str]]:
    """Dictionary pairs from a path, a list or (with ``allow_download``) a WECHSEL dictionary name.

    Raises:
        ResourceError: nothing given, the file is missing, or a name was given without
            ``download=True`` or could not be downloaded.
    """
    if value is None:
        raise ResourceError(
            "WECHSEL aligns the two word-vector spaces with a bilingual dictionary: pass dictionary=<a FreeDict file "
            "such as /usr/share/dictd/freedict-eng-deu.index (apt-get install dict-freedict-eng-deu), a two-column "
            "TSV or a list of pairs>, or align='none' for vectors that are already aligned."
        )
    if isinstance(value, str) and not Path(value).expanduser().exists() and _DICT_NAME.match(value):
        if not allow_download:
            raise ResourceError(
                f"dictionary={value!r} is not a file. To download WECHSEL's dictionary {value!r} pass download=True; "
                "otherwise pass the path of a local dictionary (e.g. /usr/share/dictd/freedict-eng-deu.index)."
            )
        folder = Path(cache_dir).expanduser() if cache_dir else default_resource_dir()
        value = str(download(DICTIONARY_URL.format(name=value), folder / "wechsel" / f"{value}.txt", option="dictionary"))
    return read_bilingual_dictionary(value, reverse=reverse, option="dictionary")


def alignment_pairs(pairs, source: WordVectors, target: WordVectors, *, dedupe: bool) -> tuple[list[str], list[str]]:
    """Row indices of the (source word, target word) case variants both models know.

    Each pair contributes every combination of {word, lower, title} on both sides whose
    words are in the models' vocabularies. With ``dedupe`` each word pair counts once;
    without it a pair counts as often as it occurs (the reference).

    Returns:
        ``(source_words, target_words)``: the two words of each correspondence.
    """
    src_ids, tgt_ids = source.index, target.index
    out_s, out_t = [], []
    seen = set()
    for s, t in pairs:
        for sw in (s, s.lower(), s.title()):
            if sw not in src_ids:
                continue
            for tw in (t, t.lower(), t.title()):
                if tw not in tgt_ids:
                    continue
                if dedupe:
                    if (sw, tw) in seen:
                        continue
                    seen.add((sw, tw))
                out_s.append(sw)
                out_t.append(tw)
    return out_s, out_t


def _vectors_of(words: list[str], wv: WordVectors) -> np.ndarray:
    """float32 (n, d) vectors of ``words``, each distinct word looked up once."""
    unique = list(dict.fromkeys(words))
    table = wv.vectors(unique)
    row = {w: i for i, w in enumerate(unique)}
    return table[[row[w] for w in words]]


def procrustes_map(pairs, source: WordVectors, target: WordVectors, *, faithful: bool) -> tuple[np.ndarray, int]:
    """The orthogonal map of source vectors onto target vectors, and the number of pairs used.

    Raises:
        ResourceError: no dictionary pair is a word of both models.
    """
    sw, tw = alignment_pairs(pairs, source, target, dedupe=not faithful)
    if not sw:
        raise ResourceError(
            f"None of the {len(pairs)} dictionary pairs is a word of both vector models ({source.description}, "
            f"{target.description}), so the spaces cannot be aligned. Check the dictionary's direction "
            "(reverse_dictionary=True for a target-first dictionary) and that the vectors are of these languages."
        )
    a = _vectors_of(sw, source)
    b = _vectors_of(tw, target)
    if faithful:
        # The reference fits in float32 with SciPy. Cross-covariances of small fastText models
        # are ill-conditioned (singular values spanning 1e8), so another LAPACK build can return
        # a different, equally optimal map: use SciPy's when it is installed.
        try:
            from scipy.linalg import orthogonal_procrustes as scipy_procrustes  # optional: SciPy
        except ImportError:
            logger.warning("SciPy is not installed: faithful WECHSEL fits Procrustes with NumPy, which may differ from the reference")
        else:
            return scipy_procrustes(a, b)[0], len(sw)
        return orthogonal_procrustes(a, b), len(sw)
    return orthogonal_procrustes(a.astype(np.float64), b.astype(np.float64)), len(sw)


def token_vectors_from_words(tokenizer, wv: WordVectors, limit: int | None) -> np.ndarray:
    """(len(tokenizer), d) float64: frequency-weighted mean of the vectors of words containing each token.

    Words are tokenized as they are and with a leading space (the reference's two variants).
    """
    encode = plain_encoder(tokenizer)
    n = len(wv.words) if limit is None else min(limit, len(wv.words))
    weights = wv.counts[:n] if wv.counts is not None else None
    vectors, _ = word_containment_vectors(
        encode, len(tokenizer), wv.words[:n], wv.word_matrix(n), [lambda w: w, lambda w: " " + w], weights
    )
    return vectors


# -- the method ---------------------------------------------------------------------------------
@register_method
class WECHSEL(Method):
    """WECHSEL (Minixhofer et al., 2022) as the registered method ``wechsel``."""
    name = "wechsel"
    config_class = WECHSELConfig
    summary = (
        "WECHSEL: new tokens = softmax mixtures of their 10 most similar source tokens, compared in aligned "
        "fastText spaces of the two languages (bilingual-dictionary Procrustes)."
    )
    citation = CITATION

    config: WECHSELConfig

    def resources(self) -> tuple[WordVectors, WordVectors, np.ndarray | None, dict]:
        """Both word-vector models and the alignment map (None for align='none').

        Raises:
            ResourceError: a resource is missing (the message names the option).
            MismatchError: the two models' dimensions differ.
            MethodOptionError: subword_vectors='fasttext' with vectors that have no subword information.
        """
        cfg = self.config
        src = resolve_word_vectors(cfg.source_fasttext, "source_fasttext", allow_download=cfg.download, cache_dir=cfg.cache_dir)
        tgt = resolve_word_vectors(cfg.target_fasttext, "target_fasttext", allow_download=cfg.download, cache_dir=cfg.cache_dir)
        if src.dim != tgt.dim:
            raise MismatchError(
                f"The word vectors have different dimensions ({src.description}: {src.dim}, {tgt.description}: "
                f"{tgt.dim}). Reduce the larger one first, e.g. fasttext.util.reduce_model(model, {min(src.dim, tgt.dim)})."
            )
        if cfg.subword_vectors == "fasttext" and not (src.has_subwords and tgt.has_subwords):
            raise MethodOptionError(
                "subword_vectors='fasttext' embeds token strings from fastText's character n-grams, but "
                f"{src.description if not src.has_subwords else tgt.description} has none. Use subword_vectors='words'."
            )
        info = {"source_vectors": src.description, "target_vectors": tgt.description, "dim": src.dim}
        align = None
        if cfg.align == "dictionary":
            pairs = resolve_dictionary(cfg.dictionary, reverse=cfg.reverse_dictionary, allow_download=cfg.download, cache_dir=cfg.cache_dir)
            align, used = procrustes_map(pairs, src, tgt, faithful=cfg.faithful)
            info.update(dictionary_pairs=len(pairs), procrustes_pairs=used)
        return src, tgt, align, info

    def plan(self, ctx: MethodContext) -> MixingPlan:
        device = self._device(ctx)
        src, tgt, align, info = self.resources()
        if self.config.faithful:
            return self._plan_faithful(ctx, src, tgt, align, info, device)
        return self._plan_default(ctx, src, tgt, align, info, device)

    # -- shared steps -------------------------------------------------------------------------
    def _token_vectors(self, tokenizer, wv: WordVectors, texts: list[str] | None) -> np.ndarray:
        if self.config.subword_vectors == "words":
            return token_vectors_from_words(tokenizer, wv, self.config.max_words)
        return wv.vectors(texts).astype(np.float64)

    def _mix(self, queries, keys, device, dtype):
        cfg = self.config
        return topk_softmax_mixing(
            queries,
            keys,
            k=cfg.neighbors,
            temperature=cfg.temperature,
            device=device,
            dtype=dtype,
            chunk_size=cfg.chunk_size,
            progress=cfg.progress,
            desc="hf_vocabswap: WECHSEL nearest source tokens",
        )

    @staticmethod
    def _combine(builder: PlanBuilder, targets: np.ndarray, source_ids: np.ndarray, mixing) -> float:
        indptr, cols, weights, sims = mixing
        for row, t in enumerate(targets.tolist()):
            a, b = indptr[row], indptr[row + 1]
            builder.combine(t, source_ids[cols[a:b]], weights[a:b])
        return float(sims[indptr[:-1]].mean()) if len(targets) else 0.0

    # -- faithful -----------------------------------------------------------------------------
    def _plan_faithful(self, ctx: MethodContext, src: WordVectors, tgt: WordVectors, align, info, device) -> MixingPlan:
        n_t, n_s = ctx.num_target, ctx.num_source
        s_tok, t_tok = ctx.source_tokenizer, ctx.target_tokenizer
        n_src_tok = min(len(s_tok), n_s)
        words_mode = self.config.subword_vectors == "words"
        s_texts = None if words_mode else [s.strip() for s in decode_each(s_tok, list(range(len(s_tok))))]
        t_texts = None if words_mode else [s.strip() for s in decode_each(t_tok, list(range(n_t)))]
        s_vec = self._token_vectors(s_tok, src, s_texts)[:n_src_tok]
        t_vec = self._token_vectors(t_tok, tgt, t_texts)
        if align is not None:
            s_vec = s_vec @ align
        # The reference looks a neighbour's row up by its token string.
        s_vocab = s_tok.get_vocab()
        roundtrip = np.array([s_vocab.get(t, i) for i, t in enumerate(s_tok.convert_ids_to_tokens(list(range(n_src_tok))))], dtype=np.int64)
        roundtrip[roundtrip >= n_s] = np.flatnonzero(roundtrip >= n_s)

        builder = PlanBuilder(n_t, n_s)
        keep = np.zeros(n_t, dtype=bool)
        if ctx.alignment.mode == "extend":
            identity = ctx.alignment.target_to_source[: min(n_s, n_t)]
            keep[: len(identity)] = identity >= 0
            builder.copy(np.flatnonzero(keep), identity[keep[: len(identity)]])
        has_vector = ~np.all(t_vec == 0, axis=1)
        queries = np.flatnonzero(~keep & has_vector)
        builder.fallback(np.flatnonzero(~keep & ~has_vector), RANDOM)
        if str(device) == "cpu":
            mixing = reference_topk_softmax_mixing(
                t_vec, queries, s_vec, k=self.config.neighbors, temperature=self.config.temperature, progress=self.config.progress
            )
        else:  # same maths on the GPU; exact ties at the k-th neighbour may break differently
            mixing = self._mix(t_vec[queries], s_vec, device, torch.float64)
        mean_sim = self._combine(builder, queries, roundtrip, mixing)

        t_vocab = t_tok.get_vocab()
        specials = []
        for value in (getattr(s_tok, "special_tokens_map", None) or {}).values():
            for token in [value] if isinstance(value, str) else list(value):
                if isinstance(token, str) and token in t_vocab and token in s_vocab and t_vocab[token] < n_t and s_vocab[token] < n_s:
                    specials.append((t_vocab[token], s_vocab[token]))
        for t, s in specials:
            builder.copy([t], [s])
        plan = builder.build()
        counts = plan.counts()
        plan.stats = {
            "mode": "faithful",
            **info,
            "subword_vectors": self.config.subword_vectors,
            "copied": counts["copied"],
            "combined": counts["combined"],
            "random": counts["random"],
            "special_tokens_copied": len(specials),
            "source_tokens_without_vector": int(np.all(s_vec == 0, axis=1).sum()),
            "mean_top_similarity": round(mean_sim, 6),
        }
        logger.info("WECHSEL (faithful): %s", {k: plan.stats[k] for k in ("copied", "combined", "random")})
        return plan

    # -- default ------------------------------------------------------------------------------
    def _plan_default(self, ctx: MethodContext, src: WordVectors, tgt: WordVectors, align, info, device) -> MixingPlan:
        cfg = self.config
        n_t, n_s = ctx.num_target, ctx.num_source
        alignment = ctx.alignment
        t2s = alignment.target_to_source.copy()
        t2s[t2s >= n_s] = -1
        if not cfg.copy_overlap:
            t2s[alignment.match == MATCH_EXACT] = -1
        copied = t2s >= 0

        s_prof, t_prof = alignment.source, alignment.target
        s_ok = np.zeros(n_s, dtype=bool)
        s_texts = [""] * n_s
        for i, form in enumerate(s_prof.forms[:n_s]):
            if form is None or i in s_prof.byte_fallback_ids:
                continue
            try:
                s_texts[i] = form.text.decode("utf-8").strip()
            except UnicodeDecodeError:
                continue
            s_ok[i] = bool(s_texts[i])
        t_texts = [""] * n_t
        t_special = np.zeros(n_t, dtype=bool)
        t_special[[i for i in t_prof.special_ids if i < n_t]] = True
        for i, form in enumerate(t_prof.forms[:n_t]):
            if form is None or t_special[i]:
                continue
            try:
                t_texts[i] = form.text.decode("utf-8").strip()
            except UnicodeDecodeError:
                continue

        words_mode = cfg.subword_vectors == "words"
        s_vec = self._token_vectors(ctx.source_tokenizer, src, None if words_mode else s_texts)[:n_s]
        t_vec = self._token_vectors(ctx.target_tokenizer, tgt, None if words_mode else t_texts)[:n_t]
        if len(s_vec) < n_s:
            s_vec = np.vstack([s_vec, np.zeros((n_s - len(s_vec), s_vec.shape[1]))])
        if align is not None:
            s_vec = s_vec @ align
        s_ok &= ~np.all(s_vec == 0, axis=1)
        s_ok[[i for i in s_prof.special_ids if i < n_s]] = False
        candidates = np.flatnonzero(s_ok)
        if len(candidates) == 0:
            raise ResourceError(
                f"No source token has a vector in {src.description}: the source word vectors do not fit the model's "
                "language or tokenizer."
            )
        t_has = ~np.all(t_vec == 0, axis=1) & ~t_special
        queries = np.flatnonzero(~copied & t_has)
        leftover = np.flatnonzero(~copied & ~t_has)

        builder = PlanBuilder(n_t, n_s)
        builder.copy(np.flatnonzero(copied), t2s[copied])
        # float64: token vectors are often nearly collinear (cosines of 0.9999 between means of
        # many word vectors), where float32 cannot order the neighbours.
        mixing = self._mix(t_vec[queries], s_vec[candidates], device, torch.float64)
        mean_sim = self._combine(builder, queries, candidates, mixing)
        fvt_ids = []
        if cfg.fallback == "fvt" and len(leftover):
            pieces = combine_subword_means(builder, ctx, leftover.tolist())
            fvt_ids = [t for t, ids in pieces.items() if ids]
        plan = builder.build()
        counts = plan.counts()
        plan.stats = {
            "mode": "default",
            **info,
            "subword_vectors": cfg.subword_vectors,
            "copied": counts["copied"],
            "combined": counts["combined"],
            "random": counts["random"],
            "wechsel_mixed": int(len(queries)),
            "fvt_fallback": len(fvt_ids),
            "source_candidates": int(len(candidates)),
            "mean_top_similarity": round(mean_sim, 6),
        }
        logger.info(
            "WECHSEL: %s", {k: plan.stats[k] for k in ("copied", "wechsel_mixed", "fvt_fallback", "random")}
        )
        return plan
