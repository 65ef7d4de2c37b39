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

import json
import logging
from collections.abc import Iterable

import numpy as np

from .corpus import Corpus, batches
from .errors import CorpusError, TokenizerError
from .vocab import BYTE_TO_CHAR, ROLES, TokenizerProfile, walk_pipeline

logger = logging.getLogger(__name__)

KEEP_SPECIAL = ("all", "used")


def check_scripts(scripts) -> list[str]:
    """Validate Unicode script names (``Han``, ``Arabic``, ``Cyrillic`` ...); a comma-separated
    string is accepted.

    Raises:
        TokenizerError: a name is not a Unicode script known to the ``regex`` module.
    """
    import regex

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

    Returns:
        int64 array of length ``len(tokenizer)``.
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


def _processor_tokens(proc) -> list[str]:
    out: list[str] = []
    for c in walk_pipeline(proc):
        if c.get("type") == "TemplateProcessing":
            for entry in (c.get("special_tokens") or {}).values():
                out.extend(entry.get("tokens") or [])
        elif c.get("type") in ("RobertaProcessing", "BertProcessing"):
            out.extend([c["sep"][0], c["cls"][0]])
    return out


def _remap_processor(proc, ids: dict[str, int]) -> None:
    for c in walk_pipeline(proc):
        if c.get("type") == "TemplateProcessing":
            for entry in (c.get("special_tokens") or {}).values():
                entry["ids"] = [ids[tok] for tok in entry.get("tokens") or []]
        elif c.get("type") in ("RobertaProcessing", "BertProcessing"):
            c["sep"] = [c["sep"][0], ids[c["sep"][0]]]
            c["cls"] = [c["cls"][0], ids[c["cls"][0]]]


def _merge_pairs(model: dict) -> list[tuple[str, str]]:
    return [tuple(m) if not isinstance(m, str) else tuple(m.split(" ", 1)) for m in model.get("merges") or []]


def _merge_result(a: str, b: str, prefix_len: int) -> str:
    # As tokenizers builds merged tokens: the continuation prefix of the right part is dropped.
    return a + b[prefix_len:]


def _bpe_closure(keep: np.ndarray, vocab: dict[str, int], merges: list[tuple[str, str]], prefix_len: int) -> int:
    """Add to ``keep`` every token a kept token is merged from (all producing merges, recursively)."""
    producers: dict[int, list[tuple[int, int]]] = {}
    for a, b in merges:
        res = vocab.get(_merge_result(a, b, prefix_len))
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


def _is_byte_level(spec: dict) -> bool:
    parts = [c for key in ("pre_tokenizer", "decoder") for c in walk_pipeline(spec.get(key))]
    return any(c.get("type") == "ByteLevel" for c in parts)


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
        TokenizerError: the tokenizer is not tokenizers-backed, its model type is not
            supported, or a script name is unknown.
        CorpusError: the corpus is empty or unreadable.

    Example:
        >>> from hf_vocabswap import transplant_tokenizer
        >>> from hf_vocabswap.trim import trim_tokenizer
        >>> small = trim_tokenizer(tokenizer, "uk_train.txt", drop_scripts=["Han"])
        >>> result = transplant_tokenizer(model, small, method="trim", source_tokenizer=tokenizer)
        >>> result.report.method_stats["parameters_saved"]
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if keep_special not in KEEP_SPECIAL:
        raise TokenizerError(f"keep_special must be one of {KEEP_SPECIAL}, not {keep_special!r}.")
    if min_frequency < 1:
        raise TokenizerError(f"min_frequency must be >= 1, not {min_frequency}.")
    scripts = check_scripts(drop_scripts)
    profile = TokenizerProfile.from_tokenizer(tokenizer)  # also rejects slow tokenizers
    backend = tokenizer.backend_tokenizer
    spec = json.loads(backend.to_str())
    model = spec["model"]
    model_type = model["type"]
    if model_type not in ("BPE", "Unigram", "WordPiece", "WordLevel"):
        raise TokenizerError(f"trim_tokenizer does not support {model_type} tokenizers.")
    n = len(tokenizer)
    id_to_token = tokenizer.convert_ids_to_tokens(list(range(n)))
    token_to_id = {tok: i for i, tok in enumerate(id_to_token) if tok is not None}

    # 1. what the corpus uses
    if corpus is not None:
        counts = token_counts(tokenizer, corpus)
        if counts.sum() == 0:
            raise CorpusError("The corpus produced no token: nothing would be kept.")
        keep = counts >= min_frequency
    else:
        counts = None
        keep = np.ones(n, dtype=bool)
    for text in keep_texts or ():
        for tid in backend.encode(text, add_special_tokens=False).ids:
            keep[tid] = True

    # 2. what must stay whatever the corpus says
    protected = np.zeros(n, dtype=bool)
    added = {a["content"]: a for a in spec.get("added_tokens") or []}
    special_contents = [c for c, a in added.items() if a.get("special")]
    wanted = [str(getattr(tokenizer, f"{role}_token")) for role in ROLES if getattr(tokenizer, f"{role}_token", None)]
    wanted += _processor_tokens(spec.get("post_processor"))
    if model.get("unk_token"):
        wanted.append(model["unk_token"])
    if model_type == "Unigram" and model.get("unk_id") is not None:
        wanted.append(model["vocab"][model["unk_id"]][0])
    if keep_special == "all":
        wanted += special_contents
    for content in wanted:
        if content in token_to_id:
            protected[token_to_id[content]] = True
    if keep_special == "used":  # special tokens without a role go unless the corpus produced them
        for content in special_contents:
            tid = token_to_id.get(content)
            if tid is not None and not protected[tid] and (counts is None or counts[tid] < min_frequency):
                keep[tid] = False
    protected[list(profile.byte_fallback_ids)] = True
    if _is_byte_level(spec):
        for ch in BYTE_TO_CHAR.values():
            if ch in token_to_id:
                protected[token_to_id[ch]] = True

    # 3. unwanted scripts
    dropped_by_script = 0
    if scripts:
        import regex

        pattern = regex.compile("|".join(rf"\p{{Script={s}}}" for s in scripts))
        for tid, form in enumerate(profile.forms):
            if form is None or protected[tid] or tid in profile.byte_fallback_ids:
                continue
            if pattern.search(form.text.decode("utf-8", errors="ignore")):
                dropped_by_script += int(keep[tid])
                keep[tid] = False
    keep |= protected

    # 4. BPE: kept tokens must stay buildable; merges only among kept tokens
    merges_before = merges_after = 0
    prefix_len = len(model.get("continuing_subword_prefix") or "") if model_type == "BPE" else 0
    if model_type == "BPE":
        pairs = _merge_pairs(model)
        closure = _bpe_closure(keep, model["vocab"], pairs, prefix_len)
        if closure:
            logger.info("trim: %d tokens kept because kept tokens are merged from them", closure)
        merges_before = len(pairs)

    new_id = np.full(n, -1, dtype=np.int64)
    kept_ids = np.flatnonzero(keep)
    new_id[kept_ids] = np.arange(len(kept_ids))
    new_token_ids = {id_to_token[i]: int(new_id[i]) for i in kept_ids}

    new_model = dict(model)
    if model_type == "Unigram":
        pieces = model["vocab"]
        model_ids = [i for i in kept_ids if i < len(pieces)]
        if any(new_id[i] != j for j, i in enumerate(model_ids)):
            raise TokenizerError("trim_tokenizer cannot renumber this Unigram tokenizer: added tokens sit among its pieces.")
        new_model["vocab"] = [pieces[i] for i in model_ids]
        if model.get("unk_id") is not None:
            new_model["unk_id"] = int(new_id[model["unk_id"]])
    else:
        new_model["vocab"] = {tok: int(new_id[i]) for tok, i in model["vocab"].items() if keep[i]}
        if model_type == "BPE":
            kept_vocab = new_model["vocab"]
            new_merges = [
                [a, b] for a, b in _merge_pairs(model)
                if a in kept_vocab and b in kept_vocab and _merge_result(a, b, prefix_len) in kept_vocab
            ]
            new_model["merges"] = new_merges
            merges_after = len(new_merges)
    new_spec = dict(spec)
    new_spec["model"] = new_model
    new_spec["added_tokens"] = [dict(a, id=new_token_ids[a["content"]]) for a in spec.get("added_tokens") or [] if a["content"] in new_token_ids]
    post = json.loads(json.dumps(spec.get("post_processor")))
    _remap_processor(post, new_token_ids)
    new_spec["post_processor"] = post
    padding = spec.get("padding")
    if padding and padding.get("pad_token") in new_token_ids:
        new_spec["padding"] = dict(padding, pad_id=new_token_ids[padding["pad_token"]])
    backend_new = Tokenizer.from_str(json.dumps(new_spec, ensure_ascii=False))

    kwargs = {}
    for role in ROLES:
        value = getattr(tokenizer, f"{role}_token", None)
        if value is not None and str(value) in new_token_ids:
            kwargs[f"{role}_token"] = str(value)
    extra = [str(t) for t in (getattr(tokenizer, "extra_special_tokens", None) or []) if str(t) in new_token_ids]
    if extra:
        kwargs["extra_special_tokens"] = extra
    for attr in ("padding_side", "truncation_side", "clean_up_tokenization_spaces", "model_input_names", "chat_template"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            kwargs[attr] = value
    for attr in ("add_bos_token", "add_eos_token"):
        if attr in getattr(tokenizer, "init_kwargs", {}):
            kwargs[attr] = tokenizer.init_kwargs[attr]
    trimmed = PreTrainedTokenizerFast(tokenizer_object=backend_new, model_max_length=tokenizer.model_max_length, **kwargs)
    # transformers may rebuild the post-processor from add_bos/add_eos: the remapped one is authoritative.
    trimmed.backend_tokenizer.post_processor = backend_new.post_processor
    if len(trimmed) != len(kept_ids):
        raise TokenizerError(f"trim_tokenizer built {len(trimmed)} tokens instead of {len(kept_ids)}; please report this.")
    logger.info(
        "trim: kept %d of %d tokens (%d removed%s)%s",
        len(kept_ids), n, n - len(kept_ids),
        f", {dropped_by_script} by script" if scripts else "",
        f"; merges {merges_before} -> {merges_after}" if model_type == "BPE" else "",
    )
    return trimmed


def kept_source_ids(trimmed_tokenizer, source_tokenizer) -> np.ndarray:
    """For every token of ``trimmed_tokenizer``, the id of the same token string in
    ``source_tokenizer`` (-1 where the source has no such token, e.g. tokens added after trimming)."""
    source_vocab = source_tokenizer.get_vocab()
    tokens = trimmed_tokenizer.convert_ids_to_tokens(list(range(len(trimmed_tokenizer))))
    return np.array([source_vocab.get(t, -1) if t is not None else -1 for t in tokens], dtype=np.int64)
