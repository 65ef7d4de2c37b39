"""Train a target-language tokenizer that keeps the source tokenizer's pipeline.

``transformers``' ``train_new_from_iterator`` keeps the source pipeline but falls into three
traps measured with Gemma-3 (see ``/work/shared/ECOSYSTEM.md``):

1. SentencePiece-style pipelines whose pre-tokenizer never splits (Gemma: normalizer
   ``Replace(" ", "▁")`` and no pre-tokenizer; ``Metaspace(split=False)``) make the trainer
   see whole paragraphs as one "word", so learned pieces cross word boundaries.
2. Every added/control token of the source is carried over (Gemma: 6,242 ``<unusedN>``),
   eating the new vocabulary.
3. Byte-fallback models lose their 256 ``<0xNN>`` pieces, so unseen characters become
   ``<unk>``.

:func:`train_tokenizer` avoids them. The corpus is run through the source's normalizer and
pre-tokenizer (so the trainer sees the strings the model will see), every piece is split
further at whitespace (a word-start marker ``▁`` / ``Ġ`` stays attached to the word that
follows it, as in SentencePiece), at changes of script, and at digits; the resulting words
are fed to the ``tokenizers`` trainer of the source's model type (``BpeTrainer``,
``UnigramTrainer``, ``WordPieceTrainer``) with no normalizer or pre-tokenizer of its own.
The learned vocabulary is then put back into the source's ``tokenizer.json`` (normalizer,
pre-tokenizer, post-processor, decoder and model options unchanged), with only the special
tokens the model uses, byte-fallback pieces where the source has byte fallback, and the
source's ``model_max_length``.

Special-token ids
-----------------
Kept special tokens keep their source id whenever it is below the new vocabulary size, and
the remaining ids are filled, lowest first, with the 256 byte-fallback pieces (if any) and
then the learned tokens in the trainer's order. So XLM-R keeps ``<s>=0 <pad>=1 </s>=2
<unk>=3`` (the pad id matters: RoBERTa/XLM-R position ids derive from it) and BERT keeps
``[PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103``, with learned tokens at ids 1..99
instead of ``[unusedN]`` placeholders (nothing is wasted). Special tokens whose source id
does not fit (XLM-R's ``<mask>`` is the last id of 250,002) take the last ids of the new
vocabulary, in source order, so "mask is last" stays true.

Determinism
-----------
The same source, corpus and options give a byte-identical ``tokenizer.json`` in every
process. The ``tokenizers`` trainers keep the corpus words in a hash map seeded afresh in
each process, and two things depend on its order: the ids BPE/WordPiece trainers give to
symbols with a continuation prefix (``##a``), which break ties between pairs of equal count,
and the Unigram trainer's floating-point EM sums and the order in which it appends
characters. The first is removed by registering those symbols up front in sorted order; the
second by re-estimating the Unigram scores once from exact Viterbi counts (one hard-EM step,
``log(count / total)``), ordered by score then string. The Unigram *piece set* is the
trainer's: it was identical in every run measured, but a near tie at the trainer's pruning
could in principle still depend on the hash order.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from .corpus import Corpus
from .errors import CorpusError, TokenizerError
from .loading import load_tokenizer
from .progress import are_progress_bars_disabled
from .tokenizer_expansion import check_add_tokens, check_expandable, expand_tokenizer
from .tokenizer_json import (
    BYTE_PIECES,
    build_tokenizer,
    fast_backend,
    merge_pairs,
    merges_among,
    remap_special_ids,
    required_special_tokens,
    role_kwargs,
    source_attributes,
    tokenizer_family,
    tokenizer_spec,
    visible_text,
    word_marker,
)
from .tokenizer_trimming import trim_tokenizer
from .tokenizer_words import count_words, has_multi_digit_tokens

logger = logging.getLogger(__name__)

__all__ = ["train_tokenizer", "check_trained_tokenizer"]

_SUPPORTED_MODELS = ("BPE", "Unigram", "WordPiece")


# ----------------------------------------------------------------------------- specials
def _source_backend(source_tokenizer):
    """(fast tokenizer, its ``tokenizers.Tokenizer``), loading a path or model id first."""
    if isinstance(source_tokenizer, (str, os.PathLike)):
        source_tokenizer = load_tokenizer(source_tokenizer)
    return source_tokenizer, fast_backend(source_tokenizer)


def _kept_specials(source, spec: dict, keep_special) -> list[dict]:
    """added_tokens entries (dicts with the source id in "id") of the tokens to keep."""
    added = {a["content"]: dict(a) for a in spec.get("added_tokens") or []}
    vocab = source.backend_tokenizer.get_vocab(with_added_tokens=True)

    def entry(content: str) -> dict:
        if content in added:
            return added[content]
        return {"id": vocab.get(content), "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    wanted = required_special_tokens(source, spec)
    if isinstance(keep_special, str):
        if keep_special == "all":
            wanted.extend(added)
        elif keep_special != "used":
            raise TokenizerError(
                f"keep_special={keep_special!r} is not understood. Use 'used' (the special tokens with a "
                "role: bos, eos, pad, unk, mask, cls, sep), 'all', or a list of extra tokens to keep."
            )
    else:
        wanted.extend(str(t) for t in keep_special)
    seen, out = set(), []
    for content in wanted:
        if content in seen:
            continue
        seen.add(content)
        out.append(entry(content))
    return out


# ----------------------------------------------------------------------------- training
def _corpus_words(corpus: Corpus, backend, spec: dict, progress: bool) -> Counter:
    """The corpus as trainer words (see :mod:`hf_vocabswap.tokenizer_words`).

    Raises:
        CorpusError: when no text is left once the source's added tokens are cut out.
    """
    family = tokenizer_family(spec)
    model_spec = spec["model"]
    prefix = model_spec.get("continuing_subword_prefix") if model_spec["type"] == "WordPiece" else None
    individual_digits = not has_multi_digit_tokens(backend.get_vocab(with_added_tokens=False), family, prefix)
    all_added = [a["content"] for a in spec.get("added_tokens") or []]
    counts = count_words(corpus, backend, family, all_added, individual_digits, progress=progress)
    if not counts:
        raise CorpusError(f"Corpus {corpus.description!r} holds no text once special tokens are removed.")
    return counts


def _word_batches(counts: Counter, batch: int = 4096) -> Iterator[list[str]]:
    buf: list[str] = []
    for word, n in counts.items():
        buf.extend([word] * n)
        if len(buf) >= batch:
            yield buf
            buf = []
    if buf:
        yield buf


def _alphabet_size(counts: Counter, model_type: str, prefix: str | None, byte_level: bool) -> int:
    if byte_level:
        return 256
    chars: set[str] = set()
    for word in counts:
        if model_type == "WordPiece":
            chars.add(word[0])
            chars.update((prefix or "##") + c for c in word[1:])
        else:
            chars.update(word)
    return len(chars)


def _check_budget(vocab_size: int, specials: list[dict], byte_pieces: list[str], alphabet: int, byte_level: bool) -> None:
    """Raises TokenizerError when ``vocab_size`` leaves no room for the alphabet."""
    reserved = len(specials) + len(byte_pieces)
    if vocab_size >= reserved + alphabet:
        return
    parts = [f"{len(specials)} special tokens"]
    if byte_pieces:
        parts.append(f"{len(byte_pieces)} byte-fallback pieces")
    parts.append(f"{alphabet} {'byte-level' if byte_level else 'alphabet'} symbols")
    hint = " or keep fewer special tokens (keep_special='used')" if len(specials) > 20 else ""
    raise TokenizerError(
        f"vocab_size={vocab_size} is too small: the {' + '.join(parts)} alone need "
        f"{reserved + alphabet} ids. Use a larger vocab_size{hint}."
    )


def _decorated_symbols(counts: Counter, prefix: str | None, suffix: str | None) -> list[str]:
    """The symbols a BPE/WordPiece trainer builds from single characters with a continuation
    prefix or end-of-word suffix, sorted.

    The trainer gives such symbols ids in the order it meets them while iterating over its
    word hash map, whose order differs from process to process, and ties between pairs of
    equal count are broken by those ids: registering the symbols up front (as the trainer's
    special tokens, which take the first ids in the given order) makes training deterministic.
    """
    out: set[str] = set()
    for word in counts:
        last = len(word) - 1
        for i, ch in enumerate(word):
            s = (prefix or "") + ch if i > 0 else ch
            if i == last and suffix:
                s += suffix
            if s != ch:
                out.add(s)
    return sorted(out)


def _rescore_unigram(learned: dict, counts: Counter) -> dict:
    """The learned Unigram pieces with scores re-estimated from their Viterbi counts on the words.

    The Unigram trainer sums its EM statistics over a hash map of words, in an order that
    differs from process to process, so its scores differ in the last bits from run to run,
    and the characters it adds at the end get their small scores in hash order. One hard-EM
    step makes the result deterministic: each word is segmented (with the trainer's scores)
    and every piece gets ``log(count / total)`` of its exact integer count (pieces the
    segmentation never uses get ``log(0.5 / total)``); pieces are ordered by score, then by string.
    """
    vocab = [(p, float(s)) for p, s in learned["vocab"]]
    model = models.Unigram(vocab, learned.get("unk_id"), False)
    used = [0] * len(vocab)
    for word, n in counts.items():
        for token in model.tokenize(word):
            used[token.id] += n
    total = sum(used)
    scores = [math.log(c / total) if c else math.log(0.5 / total) for c in used]
    order = sorted(range(len(vocab)), key=lambda i: (-scores[i], vocab[i][0]))
    return dict(learned, vocab=[[vocab[i][0], scores[i]] for i in order])


def _learn(model_spec: dict, counts: Counter, budget: int, min_frequency: int, progress: bool,
           byte_level: bool) -> dict:
    """Run the tokenizers trainer of the source's model type on the counted words, deterministically
    (see :func:`_decorated_symbols` and :func:`_rescore_unigram`)."""
    model_type = model_spec["type"]
    show_progress = progress and not are_progress_bars_disabled("tokenizer")  # the tokenizers trainers' own switch
    if model_type == "BPE":
        kwargs = {}
        if model_spec.get("continuing_subword_prefix"):
            kwargs["continuing_subword_prefix"] = model_spec["continuing_subword_prefix"]
        if model_spec.get("end_of_word_suffix"):
            kwargs["end_of_word_suffix"] = model_spec["end_of_word_suffix"]
        model = models.BPE(**kwargs)
        trainer = trainers.BpeTrainer(
            vocab_size=budget, min_frequency=min_frequency, show_progress=show_progress,
            special_tokens=_decorated_symbols(counts, kwargs.get("continuing_subword_prefix"), kwargs.get("end_of_word_suffix")),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [], **kwargs,
        )
    elif model_type == "WordPiece":
        prefix = model_spec.get("continuing_subword_prefix") or "##"
        model = models.WordPiece(unk_token=model_spec.get("unk_token") or "[UNK]", continuing_subword_prefix=prefix)
        trainer = trainers.WordPieceTrainer(
            vocab_size=budget, min_frequency=min_frequency, show_progress=show_progress,
            special_tokens=_decorated_symbols(counts, prefix, None), continuing_subword_prefix=prefix,
        )
    else:  # Unigram: min_frequency does not apply (the EM prunes by likelihood)
        model = models.Unigram()
        trainer = trainers.UnigramTrainer(vocab_size=budget, show_progress=show_progress, special_tokens=[])
    tok = Tokenizer(model)
    tok.normalizer = None
    tok.pre_tokenizer = None  # every sequence fed below is already one word
    tok.train_from_iterator(_word_batches(counts), trainer=trainer, length=None)
    learned = tokenizer_spec(tok)["model"]
    return _rescore_unigram(learned, counts) if model_type == "Unigram" else learned


def _learned_tokens(learned: dict, taken: set[str]) -> tuple[list[str], dict[str, float]]:
    """The learned tokens in the trainer's order without ``taken`` ones, and Unigram scores."""
    if learned["type"] == "Unigram":
        items = [(p, s) for p, s in learned["vocab"] if p not in taken]
        return [p for p, _ in items], dict(items)
    return [t for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]) if t not in taken], {}


def _assign_ids(specials: list[dict], fill: list[str], total: int) -> list[str]:
    """Token of each id: specials at their source id where it fits and is free, the others at
    the last ids in source order, ``fill`` (byte pieces then learned tokens) lowest first."""
    slots: list[str | None] = [None] * total
    late: list[dict] = []
    for s in sorted(specials, key=lambda s: (s["id"] is None, s["id"] if s["id"] is not None else 0)):
        sid = s["id"]
        if sid is not None and sid < total and slots[sid] is None:
            slots[sid] = s["content"]
        else:
            late.append(s)
    free = [i for i, t in enumerate(slots) if t is None]
    tail = free[len(free) - len(late):] if late else []
    for s, i in zip(late, tail):
        slots[i] = s["content"]
    tokens = iter(fill)
    for i in free[: len(free) - len(late)]:
        slots[i] = next(tokens)
    return slots


def _new_model(model_spec: dict, source, slots: list[str], scores: dict[str, float], learned: dict) -> dict:
    """The source's model options with the new vocabulary (and merges)."""
    new_ids = {tok: i for i, tok in enumerate(slots)}
    new_model = dict(model_spec)
    model_type = model_spec["type"]
    if model_type == "Unigram":
        new_model["vocab"] = [[tok, scores.get(tok, 0.0)] for tok in slots]
        unk_id = model_spec.get("unk_id")
        unk = model_spec["vocab"][unk_id][0] if unk_id is not None else getattr(source, "unk_token", None)
        new_model["unk_id"] = new_ids.get(str(unk)) if unk else None
        return new_model
    new_model["vocab"] = new_ids
    if model_type == "BPE":
        cut = len(model_spec.get("continuing_subword_prefix") or "")
        new_model["merges"] = merges_among(merge_pairs(learned), new_ids, cut)
    if model_spec.get("unk_token") is not None and model_spec["unk_token"] not in new_ids:
        new_model["unk_token"] = None  # only when the source's unk is not a token of its vocabulary
    return new_model


def _wrap(source, spec: dict, new_model: dict, specials: list[dict], keep_special):
    """The new spec (the source's pipeline, the new model, kept specials) as a fast tokenizer."""
    vocab = new_model["vocab"]
    new_ids = {tok: i for i, (tok, _) in enumerate(vocab)} if new_model["type"] == "Unigram" else vocab
    new_spec = dict(spec)
    new_spec["model"] = new_model
    new_spec["added_tokens"] = sorted((dict(s, id=new_ids[s["content"]]) for s in specials), key=lambda e: e["id"])
    remap_special_ids(new_spec, spec, new_ids)
    kwargs = role_kwargs(source)
    extra = [s["content"] for s in specials if s.get("special", True) and s["content"] not in kwargs.values()]
    source_extra = {str(t) for t in (getattr(source, "extra_special_tokens", None) or [])}
    if keep_special == "all":
        extra = [t for t in extra if t in source_extra]
    if extra:
        kwargs["extra_special_tokens"] = extra
    kwargs.update(source_attributes(source, ("padding_side", "truncation_side", "clean_up_tokenization_spaces",
                                              "model_input_names")))
    return build_tokenizer(new_spec, source, **kwargs)


def _expand(source, corpus: Corpus, add_tokens, trim: bool, keep_special, min_frequency: int, progress: bool):
    """``train_tokenizer`` with ``add_tokens``/``trim``: trim the source first if asked, then add tokens."""
    add_tokens = check_add_tokens(add_tokens, trim)
    if add_tokens:
        check_expandable(source)
    if not trim and keep_special is not None:
        raise TokenizerError(
            "keep_special applies to training a new vocabulary or to trim=True: expansion alone keeps every "
            "source token. Drop keep_special, or pass trim=True."
        )
    if trim:
        source = trim_tokenizer(source, corpus, keep_special="all" if keep_special is None else keep_special)
    if add_tokens == 0:
        return source
    return expand_tokenizer(source, corpus, add_tokens, min_frequency=min_frequency, progress=progress)


def train_tokenizer(
    source_tokenizer,
    corpus,
    vocab_size: int | None = None,
    *,
    add_tokens: int | None = None,
    trim: bool = False,
    keep_special=None,
    min_frequency: int = 2,
    progress: bool = True,
    show_progress: bool | None = None,
):
    """Train a new tokenizer on ``corpus`` with the source tokenizer's own pipeline, or expand the source.

    With ``vocab_size`` (the default) a new vocabulary replaces the source's. With
    ``add_tokens`` (and/or ``trim``) the source is kept and grown instead
    (:mod:`hf_vocabswap.tokenizer_expansion`): every source token keeps its string and id and
    ``add_tokens`` new tokens learned on the corpus follow; ``trim=True`` first removes the
    tokens the corpus never uses (:func:`hf_vocabswap.tokenizer_trimming.trim_tokenizer`, merge
    closure included), so ``add_tokens=0, trim=True`` is exactly ``trim_tokenizer(source, corpus)``.

    Args:
        source_tokenizer: a fast ``transformers`` tokenizer (or a path, ``.gguf`` file or model
            id to load one). Its normalizer, pre-tokenizer, post-processor, decoder, model type
            (BPE, Unigram or WordPiece) and model options are reused.
        corpus: anything :class:`hf_vocabswap.corpus.Corpus` accepts (path, folder, list of
            strings, ``datasets`` dataset).
        vocab_size: size of the new vocabulary, special tokens and byte pieces included
            (default 32000; not together with ``add_tokens`` or ``trim``). Reached exactly
            unless the corpus is too small for that many tokens (then a warning is logged).
        add_tokens: keep the source and add this many tokens learned on the corpus (fewer,
            with a warning naming how many, when the corpus supports fewer); 0 only with ``trim``.
        trim: keep only the source tokens the corpus uses before adding tokens.
        keep_special: training a new vocabulary: ``"used"`` (the default) keeps only the
            special tokens with a role the model uses (bos, eos, pad, unk, mask, cls, sep) and
            those the post-processor inserts; ``"all"`` keeps every added token of the source;
            a list keeps the role tokens plus the listed ones (a listed token the source lacks
            is added as a new special token). With ``trim``: ``"all"`` (the default) or
            ``"used"``, as for ``trim_tokenizer``. Not allowed for expansion without ``trim``.
        min_frequency: minimum count of a pair to be merged (BPE, WordPiece and, when
            expanding, Unigram; training a Unigram vocabulary ignores it).
        progress: show progress bars (corpus pass and the tokenizers trainer; group
            ``hf_vocabswap.tokenizer`` of :mod:`hf_vocabswap.progress`).
        show_progress: the former name of ``progress`` (deprecated; a FutureWarning says so).

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (see the module docstring for where
        special tokens end up, and for determinism: the same inputs give the same
        ``tokenizer.json`` in every process). Save it with ``save_pretrained``.

    Raises:
        CorpusError: when the corpus is missing or empty.
        TokenizerError: when the source cannot be loaded, is not a fast tokenizer or has an
            unsupported model type; when ``vocab_size`` is not a positive integer or too
            small for the special tokens, byte pieces and alphabet; when ``add_tokens`` is not
            a positive integer (0 without ``trim``), or is given together with ``vocab_size``.
    """
    if show_progress is not None:
        warnings.warn("train_tokenizer(show_progress=...) is now progress=...", FutureWarning, stacklevel=2)
        progress = show_progress
    source, backend = _source_backend(source_tokenizer)
    corpus = Corpus.coerce(corpus)
    if add_tokens is not None or trim:
        if vocab_size is not None:
            raise TokenizerError(
                f"Pass either vocab_size={vocab_size} (train a new vocabulary of that size) or "
                f"add_tokens={add_tokens} (keep the source's and add that many{', after trimming' if trim else ''}), not both."
            )
        return _expand(source, corpus, add_tokens, trim, keep_special, min_frequency, progress)
    vocab_size = 32000 if vocab_size is None else vocab_size
    keep_special = "used" if keep_special is None else keep_special
    spec = tokenizer_spec(backend)
    model_spec = spec["model"]
    model_type = model_spec.get("type")
    if model_type not in _SUPPORTED_MODELS:
        raise TokenizerError(
            f"Cannot train a tokenizer like the source: its model type is {model_type}; "
            f"supported are {', '.join(_SUPPORTED_MODELS)}."
        )
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise TokenizerError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    byte_level = tokenizer_family(spec) == "byte_level"
    prefix = model_spec.get("continuing_subword_prefix") if model_type == "WordPiece" else None
    specials = _kept_specials(source, spec, keep_special)
    special_contents = {s["content"] for s in specials}
    byte_pieces = [p for p in BYTE_PIECES if p not in special_contents] if model_spec.get("byte_fallback") else []

    counts = _corpus_words(corpus, backend, spec, progress)
    _check_budget(vocab_size, specials, byte_pieces, _alphabet_size(counts, model_type, prefix, byte_level), byte_level)
    reserved = len(specials) + len(byte_pieces)
    learned = _learn(model_spec, counts, vocab_size - reserved, min_frequency, progress, byte_level)
    learned_tokens, scores = _learned_tokens(learned, special_contents | set(byte_pieces))
    total = reserved + len(learned_tokens)
    if total < vocab_size:
        logger.warning(
            "The corpus only supports %d tokens (asked for vocab_size=%d): train on more text or lower "
            "min_frequency to reach the requested size.", total, vocab_size,
        )
    slots = _assign_ids(specials, byte_pieces + learned_tokens, total)
    new_model = _new_model(model_spec, source, slots, scores, learned)
    return _wrap(source, spec, new_model, specials, keep_special)


# ----------------------------------------------------------------------------- checking
def _pipeline_rendering(text: str, normalizer, pre_tokenizer, decoder) -> str:
    """``text`` normalized, pre-tokenized and decoded without the model: the best any
    vocabulary of this pipeline can give back."""
    normalized = normalizer.normalize_str(text) if normalizer is not None else text
    pieces = [p for p, _ in pre_tokenizer.pre_tokenize_str(normalized)] if pre_tokenizer is not None else [normalized]
    return decoder.decode(pieces) if decoder is not None else "".join(pieces)


def check_trained_tokenizer(tokenizer, heldout_texts: Iterable[str]) -> dict:
    """Measure the traps on a trained tokenizer.

    Args:
        tokenizer: the trained fast tokenizer.
        heldout_texts: texts it was not trained on (empty texts are skipped).

    Returns:
        A dict with:

        ``pieces_crossing_word_boundary``: learned vocabulary entries with a word boundary
            (a space or word-start marker) anywhere but at their start, pure-whitespace
            entries excepted; ``crossing_examples`` shows up to 10.
        ``roundtrip_exact``: ``decode(encode(x))`` equals, for every held-out text ``x``,
            what the pipeline itself makes of ``x`` without the model: ``x`` normalized,
            pre-tokenized and passed through the decoder. That is ``x`` itself for byte-level
            and SentencePiece pipelines, and ``x`` modulo the source's own normalization
            otherwise (uncased BERT: lowercased, accents stripped, spaces around punctuation
            as its WordPiece decoder writes them). Any character lost to ``<unk>`` or to a
            missing piece makes it False. ``roundtrip_failures`` counts the texts that
            differ, ``roundtrip_example`` shows the first.
        ``unk_rate``, ``unk_count``, ``num_tokens``: unknown tokens among held-out tokens.
        ``byte_fallback_rate``: share of held-out tokens that are ``<0xNN>`` pieces.
        ``chars_per_token``: held-out characters per token.
        ``vocab_size``: ``len(tokenizer)``.

    Raises:
        TokenizerError: when ``tokenizer`` is not tokenizers-backed.
    """
    backend = fast_backend(tokenizer)
    spec = tokenizer_spec(backend)
    family = tokenizer_family(spec)
    marker = word_marker(family)
    added = {a["content"] for a in spec.get("added_tokens") or []}
    crossing = []
    for tok in backend.get_vocab(with_added_tokens=False):
        if tok in added:
            continue
        v = visible_text(tok, family)
        if not v.strip().strip("▁"):
            continue  # pure whitespace
        inner = v[1:]
        if any(c.isspace() or c == "▁" or (marker and c == marker) for c in inner):
            crossing.append(tok)

    normalizer, pre_tokenizer, decoder = backend.normalizer, backend.pre_tokenizer, backend.decoder
    unk_id = tokenizer.unk_token_id
    byte_pieces = set(BYTE_PIECES)
    byte_ids = {i for t, i in backend.get_vocab().items() if t in byte_pieces}
    n_tokens = n_unk = n_bytes = n_chars = failures = 0
    example = None
    for text in heldout_texts:
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        n_tokens += len(ids)
        n_chars += len(text)
        if unk_id is not None:
            n_unk += sum(1 for i in ids if i == unk_id)
        n_bytes += sum(1 for i in ids if i in byte_ids)
        decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        expected = _pipeline_rendering(text, normalizer, pre_tokenizer, decoder)
        if decoded != expected:
            failures += 1
            if example is None:
                example = {"expected": expected[:200], "decoded": decoded[:200]}
    return {
        "pieces_crossing_word_boundary": len(crossing),
        "crossing_examples": crossing[:10],
        "roundtrip_exact": failures == 0,
        "roundtrip_failures": failures,
        "roundtrip_example": example,
        "unk_rate": n_unk / n_tokens if n_tokens else 0.0,
        "unk_count": n_unk,
        "num_tokens": n_tokens,
        "byte_fallback_rate": n_bytes / n_tokens if n_tokens else 0.0,
        "chars_per_token": n_chars / n_tokens if n_tokens else 0.0,
        "vocab_size": len(tokenizer),
    }
