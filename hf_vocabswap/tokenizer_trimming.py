"""Vocabulary reduction: a smaller tokenizer that keeps only the tokens a corpus uses.

:func:`trim_tokenizer` removes from a tokenizer every token that a corpus never produces
(and, optionally, every token written in Unicode scripts you do not want), and returns a
consistent smaller tokenizer: text whose tokens were all kept is tokenized exactly as before
(same tokens, in the same order; only the ids are renumbered). The ``trim`` method
(:mod:`hf_vocabswap.methods.trim`) then copies the kept rows of the model exactly.

What is always kept, whatever the corpus:

- special tokens (all of them by default; ``keep_special="used"`` keeps only those with a role,
  those the post-processor inserts, the unknown token and those the corpus produced);
- byte-fallback pieces ``<0x00>`` ... ``<0xFF>`` (SentencePiece-style BPE/Unigram), so any text
  stays encodable;
- the 256 single-byte tokens of byte-level BPE (GPT-2 style alphabet), for the same reason;
- for BPE, every token a kept token is merged from, recursively (all merges producing it), so
  that kept tokens can still be built; then exactly the merges whose parts and result are kept.

Why tokenization is unchanged for kept text. BPE applies, among the merges possible in a word,
the one of lowest rank. Every merge applied while encoding kept text produces a token that ends
up inside a kept token, so it is kept with its parts; removed merges were never applied, and
the kept merges keep their relative order, so each step picks the same merge. Unigram picks the
segmentation of highest score: removing pieces outside the original best segmentation cannot
change it. WordPiece takes the longest vocabulary match: longer matches did not exist before.
Unknown characters may be encoded differently (byte fallback instead of a removed character
token), which is why the guarantee is for text whose tokens were all kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import regex

from .corpus import Corpus, batches
from .errors import CorpusError, TokenizerError
from .tokenizer_json import (
    BYTE_TO_CHAR,
    build_tokenizer,
    merge_pairs,
    merge_result,
    merges_among,
    remap_special_ids,
    required_special_tokens,
    tokenizer_family,
    tokenizer_kwargs,
    tokenizer_spec,
)
from .vocab import TokenizerProfile

logger = logging.getLogger(__name__)

KEEP_SPECIAL = ("all", "used")


def check_scripts(scripts) -> list[str]:
    """Validate Unicode script names (``Han``, ``Arabic``, ``Cyrillic`` ...); a comma-separated
    string is accepted.

    Args:
        scripts: script names, a comma-separated string of them, or None (no script).

    Returns:
        The names as a list (empty for None).

    Raises:
        TokenizerError: when a name is not a Unicode script known to the ``regex`` module.
    """
    if scripts is None:
        return []
    if isinstance(scripts, str):
        scripts = [s for s in (p.strip() for p in scripts.split(",")) if s]
    out = []
    for name in scripts:
        try:
            regex.compile(rf"\p{{Script={name}}}")
        except regex.error:
            raise TokenizerError(
                f"drop_scripts: {name!r} is not a Unicode script name. Use names such as Han, Arabic, Cyrillic, "
                "Latin, Greek, Hangul, Devanagari (Unicode Script property values)."
            ) from None
        out.append(str(name))
    return out


def token_counts(tokenizer, corpus, *, batch_size: int = 1024) -> np.ndarray:
    """How often each token id occurs when every corpus sample is encoded (no special tokens added).

    Args:
        tokenizer: a fast tokenizer.
        corpus: anything :class:`hf_vocabswap.corpus.Corpus` accepts.
        batch_size: samples encoded per ``encode_batch`` call.

    Returns:
        int64 array of length ``len(tokenizer)``.

    Raises:
        CorpusError: when the corpus is missing or unreadable.
    """
    corpus = Corpus.coerce(corpus)
    backend = tokenizer.backend_tokenizer
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for batch in batches(corpus, batch_size):
        for enc in backend.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int64)
            if len(ids):
                counts[: len(tokenizer)] += np.bincount(ids, minlength=len(tokenizer))[: len(tokenizer)]
    return counts


def _bpe_closure(keep: np.ndarray, vocab: dict[str, int], merges: list[tuple[str, str]], prefix_len: int) -> int:
    """Add to ``keep`` every token a kept token is merged from (all producing merges, recursively)."""
    producers: dict[int, list[tuple[int, int]]] = {}
    for a, b in merges:
        res = vocab.get(merge_result(a, b, prefix_len))
        ia, ib = vocab.get(a), vocab.get(b)
        if res is not None and ia is not None and ib is not None:
            producers.setdefault(res, []).append((ia, ib))
    stack = [int(i) for i in np.flatnonzero(keep) if int(i) in producers]
    added = 0
    while stack:
        tid = stack.pop()
        for ia, ib in producers.get(tid, ()):
            for part in (ia, ib):
                if not keep[part]:
                    keep[part] = True
                    added += 1
                    stack.append(part)
    return added


@dataclass
class _Source:
    """The tokenizer being trimmed, read once."""

    tokenizer: object
    profile: TokenizerProfile
    spec: dict
    id_to_token: list[str | None]
    token_to_id: dict[str, int]

    @property
    def model(self) -> dict:
        return self.spec["model"]

    @property
    def model_type(self) -> str:
        return self.model["type"]

    @property
    def prefix_len(self) -> int:
        """Length of the BPE continuation prefix (0 for other models or none)."""
        return len(self.model.get("continuing_subword_prefix") or "") if self.model_type == "BPE" else 0


def _read_source(tokenizer) -> _Source:
    profile = TokenizerProfile.from_tokenizer(tokenizer)  # also rejects slow tokenizers
    spec = tokenizer_spec(tokenizer)
    model_type = spec["model"]["type"]
    if model_type not in ("BPE", "Unigram", "WordPiece", "WordLevel"):
        raise TokenizerError(f"trim_tokenizer does not support {model_type} tokenizers.")
    id_to_token = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    token_to_id = {tok: i for i, tok in enumerate(id_to_token) if tok is not None}
    return _Source(tokenizer, profile, spec, id_to_token, token_to_id)


def _used_tokens(src: _Source, corpus, min_frequency: int, keep_texts) -> tuple[np.ndarray, np.ndarray | None]:
    """(keep mask from the corpus and ``keep_texts``, token counts or None without a corpus)."""
    n = len(src.id_to_token)
    if corpus is not None:
        counts = token_counts(src.tokenizer, corpus)
        if counts.sum() == 0:
            raise CorpusError("The corpus produced no token: nothing would be kept.")
        keep = counts >= min_frequency
    else:
        counts = None
        keep = np.ones(n, dtype=bool)
    backend = src.tokenizer.backend_tokenizer
    for text in keep_texts or ():
        for tid in backend.encode(text, add_special_tokens=False).ids:
            keep[tid] = True
    return keep, counts


def _protect(src: _Source, keep: np.ndarray, counts, min_frequency: int, keep_special: str) -> np.ndarray:
    """The tokens kept whatever the corpus says (see the module docstring); with
    ``keep_special="used"`` also drops from ``keep`` the special tokens without a role the
    corpus did not produce."""
    protected = np.zeros(len(src.id_to_token), dtype=bool)
    added = {a["content"]: a for a in src.spec.get("added_tokens") or []}
    special_contents = [c for c, a in added.items() if a.get("special")]
    wanted = required_special_tokens(src.tokenizer, src.spec)
    if keep_special == "all":
        wanted += special_contents
    for content in wanted:
        if content in src.token_to_id:
            protected[src.token_to_id[content]] = True
    if keep_special == "used":  # special tokens without a role go unless the corpus produced them
        for content in special_contents:
            tid = src.token_to_id.get(content)
            if tid is not None and not protected[tid] and (counts is None or counts[tid] < min_frequency):
                keep[tid] = False
    protected[list(src.profile.byte_fallback_ids)] = True
    if tokenizer_family(src.spec) == "byte_level":
        for ch in BYTE_TO_CHAR.values():
            if ch in src.token_to_id:
                protected[src.token_to_id[ch]] = True
    return protected


def _drop_scripts(src: _Source, keep: np.ndarray, protected: np.ndarray, scripts: list[str]) -> int:
    """Remove from ``keep`` the unprotected tokens with a character of ``scripts``; returns how many."""
    pattern = regex.compile("|".join(rf"\p{{Script={s}}}" for s in scripts))
    dropped = 0
    for tid, form in enumerate(src.profile.forms):
        if form is None or protected[tid] or tid in src.profile.byte_fallback_ids:
            continue
        if pattern.search(form.text.decode("utf-8", errors="ignore")):
            dropped += int(keep[tid])
            keep[tid] = False
    return dropped


def _trimmed_model(src: _Source, keep: np.ndarray, new_id: np.ndarray) -> dict:
    """The model spec with the kept tokens renumbered (and, for BPE, the merges among them)."""
    model = src.model
    new_model = dict(model)
    kept_ids = np.flatnonzero(keep)
    if src.model_type == "Unigram":
        pieces = model["vocab"]
        model_ids = [i for i in kept_ids if i < len(pieces)]
        if any(new_id[i] != j for j, i in enumerate(model_ids)):
            raise TokenizerError("trim_tokenizer cannot renumber this Unigram tokenizer: added tokens sit among its pieces.")
        new_model["vocab"] = [pieces[i] for i in model_ids]
        if model.get("unk_id") is not None:
            new_model["unk_id"] = int(new_id[model["unk_id"]])
    else:
        new_model["vocab"] = {tok: int(new_id[i]) for tok, i in model["vocab"].items() if keep[i]}
        if src.model_type == "BPE":
            new_model["merges"] = merges_among(merge_pairs(model), new_model["vocab"], src.prefix_len)
    return new_model


def _rebuild(src: _Source, new_model: dict, new_token_ids: dict[str, int]):
    """The trimmed ``PreTrainedTokenizerFast``: the source's pipeline, roles and settings."""
    tokenizer, spec = src.tokenizer, src.spec
    new_spec = dict(spec)
    new_spec["model"] = new_model
    new_spec["added_tokens"] = [
        dict(a, id=new_token_ids[a["content"]]) for a in spec.get("added_tokens") or [] if a["content"] in new_token_ids
    ]
    remap_special_ids(new_spec, spec, new_token_ids)
    return build_tokenizer(new_spec, tokenizer, **tokenizer_kwargs(tokenizer, new_token_ids))


def trim_tokenizer(
    tokenizer,
    corpus=None,
    *,
    min_frequency: int = 1,
    drop_scripts: Iterable[str] | str | None = None,
    keep_special: str = "all",
    keep_texts: Iterable[str] = ("\n",),
):
    """A smaller copy of ``tokenizer`` without the tokens ``corpus`` never uses.

    Args:
        tokenizer: a fast (tokenizers-backed) tokenizer: BPE, Unigram, WordPiece or WordLevel.
        corpus: text whose tokens to keep (path, folder, list of strings or ``datasets``
            dataset; samples are encoded one by one). ``None`` keeps every token, so that only
            ``drop_scripts`` removes tokens.
        min_frequency: a token is kept when the corpus produces it at least this often.
        drop_scripts: Unicode scripts to remove entirely (e.g. ``["Han", "Arabic"]``): tokens
            containing a character of one of them are removed even if the corpus uses them.
        keep_special: ``"all"`` keeps every special token; ``"used"`` only those with a role
            (bos, eos, pad, unk, mask, cls, sep), those the post-processor inserts and those the
            corpus produced.
        keep_texts: texts whose tokens are always kept. The default keeps the newline, which
            separates the samples of a line-based corpus.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with the kept tokens renumbered in their
        original order, the source's pipeline, special-token roles, ``model_max_length``,
        padding side and chat template.

    Raises:
        TokenizerError: when the tokenizer is not tokenizers-backed, its model type is not
            supported, ``keep_special`` or ``min_frequency`` is invalid, or a script name is
            unknown (all checked before the corpus is read).
        CorpusError: when the corpus is empty or unreadable, or produces no token.

    Example:
        >>> from hf_vocabswap import transplant_tokenizer
        >>> from hf_vocabswap.tokenizer_trimming import trim_tokenizer
        >>> small = trim_tokenizer(tokenizer, "uk_train.txt", drop_scripts=["Han"])
        >>> result = transplant_tokenizer(model, small, method="trim", source_tokenizer=tokenizer)
        >>> result.report.method_stats["parameters_saved"]
    """
    if keep_special not in KEEP_SPECIAL:
        raise TokenizerError(f"keep_special must be one of {KEEP_SPECIAL}, not {keep_special!r}.")
    if min_frequency < 1:
        raise TokenizerError(f"min_frequency must be >= 1, not {min_frequency}.")
    scripts = check_scripts(drop_scripts)
    src = _read_source(tokenizer)
    n = len(src.id_to_token)

    keep, counts = _used_tokens(src, corpus, min_frequency, keep_texts)
    protected = _protect(src, keep, counts, min_frequency, keep_special)
    dropped_by_script = _drop_scripts(src, keep, protected, scripts) if scripts else 0
    keep |= protected
    merges_before = 0
    if src.model_type == "BPE":  # kept tokens must stay buildable; merges only among kept tokens
        pairs = merge_pairs(src.model)
        closure = _bpe_closure(keep, src.model["vocab"], pairs, src.prefix_len)
        if closure:
            logger.info("trim: %d tokens kept because kept tokens are merged from them", closure)
        merges_before = len(pairs)

    new_id = np.full(n, -1, dtype=np.int64)
    kept_ids = np.flatnonzero(keep)
    new_id[kept_ids] = np.arange(len(kept_ids))
    new_token_ids = {src.id_to_token[i]: int(new_id[i]) for i in kept_ids}
    new_model = _trimmed_model(src, keep, new_id)
    trimmed = _rebuild(src, new_model, new_token_ids)
    if len(trimmed) != len(kept_ids):
        raise TokenizerError(f"trim_tokenizer built {len(trimmed)} tokens instead of {len(kept_ids)}; please report this.")
    logger.info(
        "trim: kept %d of %d tokens (%d removed%s)%s",
        len(kept_ids), n, n - len(kept_ids),
        f", {dropped_by_script} by script" if scripts else "",
        f"; merges {merges_before} -> {len(new_model['merges'])}" if src.model_type == "BPE" else "",
    )
    return trimmed


def kept_source_ids(trimmed_tokenizer, source_tokenizer) -> np.ndarray:
    """For every token of ``trimmed_tokenizer``, the id of the same token string in ``source_tokenizer``.

    Returns:
        int64 array of length ``len(trimmed_tokenizer)``, -1 where the source has no such
        token (e.g. tokens added after trimming).
    """
    source_vocab = source_tokenizer.get_vocab()
    tokens = trimmed_tokenizer.convert_ids_to_tokens(list(range(len(trimmed_tokenizer))))
    return np.array([source_vocab.get(t, -1) if t is not None else -1 for t in tokens], dtype=np.int64)
