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
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache

import regex

from .corpus import Corpus
from .errors import CorpusError, TokenizerError
from .vocab import BYTE_TO_CHAR, CHAR_TO_BYTE, ROLES, walk_pipeline

logger = logging.getLogger(__name__)

__all__ = ["train_tokenizer", "check_trained_tokenizer", "word_splitter"]

_BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]
_APOSTROPHES = "'\u2019"  # ʼ (U+02BC) is a letter already
_SUPPORTED_MODELS = ("BPE", "Unigram", "WordPiece")
# Scripts SentencePiece treats as one (Japanese mixes them inside words).
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "KATAKANA-HIRAGANA": "CJK", "IDEOGRAPHIC": "CJK"}


# ----------------------------------------------------------------------------- pipeline
def _family(spec: dict) -> str:
    """"byte_level", "metaspace" or "plain" (WordPiece/BERT and others without a marker)."""
    pre = [c for c in walk_pipeline(spec.get("pre_tokenizer"))]
    norm = [c for c in walk_pipeline(spec.get("normalizer"))]
    dec = [c for c in walk_pipeline(spec.get("decoder"))]
    if any(c.get("type") == "ByteLevel" for c in pre + norm):
        return "byte_level"
    if any(c.get("type") == "Metaspace" for c in pre + dec):
        return "metaspace"
    if any(c.get("type") == "Replace" and "▁" in json.dumps(c, ensure_ascii=False) for c in norm + dec):
        return "metaspace"
    return "plain"


def _marker(family: str) -> str | None:
    """The word-start marker as it appears in the *visible* text of a piece."""
    return {"byte_level": " ", "metaspace": "▁"}.get(family)


def _visible(token: str, family: str) -> str:
    """What a vocabulary entry stands for as text (byte-level entries are unmapped)."""
    if family == "byte_level":
        try:
            data = bytes(CHAR_TO_BYTE[c] for c in token)
        except KeyError:
            return token
        return data.decode("utf-8", errors="replace")
    return token


def _to_model_chars(text: str, family: str) -> str:
    if family == "byte_level":
        return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))
    return text


@lru_cache(maxsize=65536)
def _script(ch: str) -> str:
    """A coarse script name of a letter (first word of its Unicode name)."""
    if ch.isascii():
        return "LATIN"
    if unicodedata.category(ch).startswith("M"):
        return ""  # combining marks inherit the script of their base
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "?"
    first = name.split(" ", 1)[0]
    if first in ("CJK",) or first in _SCRIPT_ALIASES:
        return "CJK"
    if first == "MODIFIER":  # ʼ MODIFIER LETTER APOSTROPHE and friends belong to the word
        return ""
    return first


def _split_scripts(run: str) -> list[str]:
    if run.isascii():
        return [run]
    out, start, current = [], 0, None
    for i, ch in enumerate(run):
        if ch in _APOSTROPHES:
            continue
        s = _script(ch)
        if not s:
            continue
        if current is not None and s != current:
            out.append(run[start:i])
            start = i
        current = s
    out.append(run[start:])
    return out


def word_splitter(marker: str | None, individual_digits: bool):
    """A function splitting a piece of text into trainer "words".

    Words are: a run of letters (with combining marks, and apostrophes between letters) of
    one script, a digit (or a run of digits when ``individual_digits`` is False), a run of
    other symbols/punctuation, or a run of whitespace. A ``marker`` (``▁`` or a space) right
    before a word stays attached to it; markers in a row before a word leave all but the
    last as a pure-whitespace word. The pieces concatenate back to the input.
    """
    digits = r"\p{N}" if individual_digits else r"\p{N}+"
    letters = rf"[\p{{L}}\p{{M}}]+(?:[{_APOSTROPHES}][\p{{L}}\p{{M}}]+)*"
    if marker is None:
        pattern = regex.compile(rf"{letters}|{digits}|[^\p{{L}}\p{{M}}\p{{N}}\s]+|\s+")
    else:
        m = regex.escape(marker)
        other = rf"[^\p{{L}}\p{{M}}\p{{N}}\s{m}]+"
        pattern = regex.compile(
            rf"{m}?(?:{letters}|{digits}|{other})|(?:{m}(?={m}))+|{m}|(?:(?!{m})\s)+"
        )

    def split(piece: str) -> list[str]:
        out: list[str] = []
        for w in pattern.findall(piece):
            body = w[1:] if marker is not None and w.startswith(marker) else w
            if body and (body[0].isalpha() or unicodedata.category(body[0]).startswith("M")):
                parts = _split_scripts(body)
                if len(parts) > 1:
                    out.append(w[: len(w) - len(body)] + parts[0])
                    out.extend(parts[1:])
                    continue
            out.append(w)
        return out

    return split


# ----------------------------------------------------------------------------- specials
def _source_backend(source_tokenizer):
    if isinstance(source_tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        try:
            source_tokenizer = AutoTokenizer.from_pretrained(source_tokenizer)
        except Exception as e:  # noqa: BLE001 - re-raised with a clear message
            raise TokenizerError(f"Cannot load the source tokenizer {str(source_tokenizer)!r}: {e}") from e
    backend = getattr(source_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"{type(source_tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer. Load it "
            "with AutoTokenizer.from_pretrained(..., use_fast=True) or convert it first."
        )
    return source_tokenizer, backend


def _processor_tokens(proc) -> list[str]:
    """Special tokens a post-processor inserts (they must be kept)."""
    out: list[str] = []
    for c in walk_pipeline(proc):
        t = c.get("type")
        if t == "TemplateProcessing":
            for entry in (c.get("special_tokens") or {}).values():
                out.extend(entry.get("tokens") or [])
        elif t in ("RobertaProcessing", "BertProcessing"):
            out.extend([c["sep"][0], c["cls"][0]])
    return out


def _remap_processor(proc, ids: dict[str, int]) -> None:
    for c in walk_pipeline(proc):
        t = c.get("type")
        if t == "TemplateProcessing":
            for entry in (c.get("special_tokens") or {}).values():
                entry["ids"] = [ids[tok] for tok in entry.get("tokens") or []]
        elif t in ("RobertaProcessing", "BertProcessing"):
            c["sep"] = [c["sep"][0], ids[c["sep"][0]]]
            c["cls"] = [c["cls"][0], ids[c["cls"][0]]]


def _kept_specials(source, spec: dict, keep_special) -> list[dict]:
    """added_tokens entries (dicts with the source id in "id") of the tokens to keep."""
    added = {a["content"]: dict(a) for a in spec.get("added_tokens") or []}
    vocab = source.backend_tokenizer.get_vocab(with_added_tokens=True)

    def entry(content: str) -> dict:
        if content in added:
            return added[content]
        return {"id": vocab.get(content), "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    wanted: list[str] = []
    for role in ROLES:
        tok = getattr(source, f"{role}_token", None)
        if tok:
            wanted.append(str(tok))
    model = spec["model"]
    if model.get("unk_token") and model["unk_token"] in vocab:  # BPE / WordPiece
        wanted.append(model["unk_token"])
    if model.get("type") == "Unigram" and model.get("unk_id") is not None:
        wanted.append(model["vocab"][model["unk_id"]][0])
    wanted.extend(_processor_tokens(spec.get("post_processor")))
    if isinstance(keep_special, str):
        if keep_special == "all":
            wanted.extend(added)
        elif keep_special != "used":
            raise TokenizerError(
                f"keep_special={keep_special!r} is not understood. Use 'used' (the special tokens with a "
                "role: bos, eos, pad, unk, mask, cls, sep), 'all', or a list of extra tokens to keep."
            )
    else:
        extra = [str(t) for t in keep_special]
        wanted.extend(extra)
    seen, out = set(), []
    for content in wanted:
        if content in seen:
            continue
        seen.add(content)
        out.append(entry(content))
    return out


# ----------------------------------------------------------------------------- training
def _count_words(corpus: Corpus, backend, family: str, specials: list[str], individual_digits: bool,
                 show_progress: bool) -> Counter:
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    split = word_splitter(_marker(family), individual_digits)
    special_re = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))) if specials else None
    counts: Counter = Counter()
    texts: Iterable[str] = corpus
    if show_progress:
        from tqdm.auto import tqdm

        texts = tqdm(corpus, desc="Pre-tokenizing corpus", unit=" texts")
    for text in texts:
        chunks = special_re.split(text) if special_re is not None else [text]
        for chunk in chunks:
            if not chunk:
                continue
            if normalizer is not None:
                chunk = normalizer.normalize_str(chunk)
            pieces = [p for p, _ in pre_tokenizer.pre_tokenize_str(chunk)] if pre_tokenizer is not None else [chunk]
            for piece in pieces:
                if family == "byte_level":
                    visible = _visible(piece, family)
                    counts.update(_to_model_chars(w, family) for w in split(visible))
                else:
                    counts.update(split(piece))
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


def _has_multi_digit_tokens(vocab: dict[str, int], family: str, prefix: str | None) -> bool:
    marker = _marker(family)
    for tok in vocab:
        v = _visible(tok, family)
        if marker and v.startswith(marker):
            v = v[len(marker):]
        if prefix and v.startswith(prefix):
            v = v[len(prefix):]
        if len(v) > 1 and v.isdigit():
            return True
    return False


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


def _learn(model_spec: dict, counts: Counter, budget: int, min_frequency: int, show_progress: bool,
           byte_level: bool) -> dict:
    """Run the tokenizers trainer of the source's model type on the counted words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    model_type = model_spec["type"]
    if model_type == "BPE":
        kwargs = {}
        if model_spec.get("continuing_subword_prefix"):
            kwargs["continuing_subword_prefix"] = model_spec["continuing_subword_prefix"]
        if model_spec.get("end_of_word_suffix"):
            kwargs["end_of_word_suffix"] = model_spec["end_of_word_suffix"]
        model = models.BPE(**kwargs)
        trainer = trainers.BpeTrainer(
            vocab_size=budget, min_frequency=min_frequency, show_progress=show_progress, special_tokens=[],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [], **kwargs,
        )
    elif model_type == "WordPiece":
        prefix = model_spec.get("continuing_subword_prefix") or "##"
        model = models.WordPiece(unk_token=model_spec.get("unk_token") or "[UNK]", continuing_subword_prefix=prefix)
        trainer = trainers.WordPieceTrainer(
            vocab_size=budget, min_frequency=min_frequency, show_progress=show_progress, special_tokens=[],
            continuing_subword_prefix=prefix,
        )
    else:  # Unigram: min_frequency does not apply (the EM prunes by likelihood)
        model = models.Unigram()
        trainer = trainers.UnigramTrainer(vocab_size=budget, show_progress=show_progress, special_tokens=[])
    tok = Tokenizer(model)
    tok.normalizer = None
    tok.pre_tokenizer = None  # every sequence fed below is already one word
    tok.train_from_iterator(_word_batches(counts), trainer=trainer, length=None)
    return json.loads(tok.to_str())["model"]


def train_tokenizer(
    source_tokenizer,
    corpus,
    vocab_size: int = 32000,
    *,
    keep_special="used",
    min_frequency: int = 2,
    show_progress: bool = True,
):
    """Train a new tokenizer on ``corpus`` with the source tokenizer's own pipeline.

    Args:
        source_tokenizer: a fast ``transformers`` tokenizer (or a path/model id to load one).
            Its normalizer, pre-tokenizer, post-processor, decoder, model type (BPE, Unigram
            or WordPiece) and model options are reused.
        corpus: anything :class:`hf_vocabswap.corpus.Corpus` accepts (path, folder, list of
            strings, ``datasets`` dataset).
        vocab_size: size of the new vocabulary, special tokens and byte pieces included.
            Reached exactly unless the corpus is too small for that many tokens (then a
            warning is logged).
        keep_special: ``"used"`` keeps only the special tokens with a role the model uses
            (bos, eos, pad, unk, mask, cls, sep) and those the post-processor inserts;
            ``"all"`` keeps every added token of the source; a list keeps the role tokens plus
            the listed ones (a listed token the source lacks is added as a new special token).
        min_frequency: minimum count of a pair to be merged (BPE, WordPiece; Unigram ignores it).
        show_progress: show progress bars (corpus pass and the tokenizers trainer).

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (see the module docstring for where
        special tokens end up). Save it with ``save_pretrained``.

    Raises:
        CorpusError: the corpus is missing or empty.
        TokenizerError: the source is not a fast tokenizer or has an unsupported model type,
            or ``vocab_size`` is too small for the special tokens, byte pieces and alphabet.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    source, backend = _source_backend(source_tokenizer)
    corpus = Corpus.coerce(corpus)
    spec = json.loads(backend.to_str())
    model_spec = spec["model"]
    model_type = model_spec.get("type")
    if model_type not in _SUPPORTED_MODELS:
        raise TokenizerError(
            f"Cannot train a tokenizer like the source: its model type is {model_type}; "
            f"supported are {', '.join(_SUPPORTED_MODELS)}."
        )
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise TokenizerError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    family = _family(spec)
    byte_level = family == "byte_level"
    byte_fallback = bool(model_spec.get("byte_fallback"))
    prefix = model_spec.get("continuing_subword_prefix") if model_type == "WordPiece" else None

    specials = _kept_specials(source, spec, keep_special)
    special_contents = {s["content"] for s in specials}
    byte_pieces = [p for p in _BYTE_PIECES if p not in special_contents] if byte_fallback else []

    source_vocab = backend.get_vocab(with_added_tokens=False)
    individual_digits = not _has_multi_digit_tokens(source_vocab, family, prefix)
    all_added = [a["content"] for a in spec.get("added_tokens") or []]
    counts = _count_words(corpus, backend, family, all_added, individual_digits, show_progress)
    if not counts:
        raise CorpusError(f"Corpus {corpus.description!r} holds no text once special tokens are removed.")

    alphabet = _alphabet_size(counts, model_type, prefix, byte_level)
    reserved = len(specials) + len(byte_pieces)
    if vocab_size < reserved + alphabet:
        parts = [f"{len(specials)} special tokens"]
        if byte_pieces:
            parts.append(f"{len(byte_pieces)} byte-fallback pieces")
        parts.append(f"{alphabet} {'byte-level' if byte_level else 'alphabet'} symbols")
        hint = " or keep fewer special tokens (keep_special='used')" if len(specials) > 20 else ""
        raise TokenizerError(
            f"vocab_size={vocab_size} is too small: the {' + '.join(parts)} alone need "
            f"{reserved + alphabet} ids. Use a larger vocab_size{hint}."
        )

    learned = _learn(model_spec, counts, vocab_size - reserved, min_frequency, show_progress, byte_level)
    taken = special_contents | set(byte_pieces)
    if model_type == "Unigram":
        learned_items = [(p, s) for p, s in learned["vocab"] if p not in taken]
        learned_tokens = [p for p, _ in learned_items]
        scores = dict(learned_items)
    else:
        learned_tokens = [t for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]) if t not in taken]
        scores = {}
    total = reserved + len(learned_tokens)
    if total < vocab_size:
        logger.warning(
            "The corpus only supports %d tokens (asked for vocab_size=%d): train on more text or lower "
            "min_frequency to reach the requested size.", total, vocab_size,
        )

    # --- assign ids: specials keep their source ids where they fit, then bytes, learned, leftovers
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
    fill = iter(byte_pieces + learned_tokens)
    for i in free[: len(free) - len(late)]:
        slots[i] = next(fill)
    new_ids = {tok: i for i, tok in enumerate(slots)}

    # --- the new model: the source's model options with the new vocabulary
    new_model = dict(model_spec)
    vocab_set = set(new_ids)
    if model_type == "Unigram":
        new_model["vocab"] = [[tok, scores.get(tok, 0.0)] for tok in slots]
        unk_id = model_spec.get("unk_id")
        unk = model_spec["vocab"][unk_id][0] if unk_id is not None else getattr(source, "unk_token", None)
        new_model["unk_id"] = new_ids.get(str(unk)) if unk else None
    else:
        new_model["vocab"] = new_ids
        if model_type == "BPE":
            merges = [list(m) if not isinstance(m, str) else m.split(" ", 1) for m in learned.get("merges", [])]
            cut = len(model_spec.get("continuing_subword_prefix") or "")  # as tokenizers builds merged tokens
            new_model["merges"] = [m for m in merges if m[0] in vocab_set and m[1] in vocab_set and m[0] + m[1][cut:] in vocab_set]
        if model_spec.get("unk_token") is not None and model_spec["unk_token"] not in new_ids:
            new_model["unk_token"] = None  # only when the source's unk is not a token of its vocabulary

    new_spec = dict(spec)
    new_spec["model"] = new_model
    added_entries = []
    for s in specials:
        e = dict(s)
        e["id"] = new_ids[s["content"]]
        added_entries.append(e)
    new_spec["added_tokens"] = sorted(added_entries, key=lambda e: e["id"])
    post = json.loads(json.dumps(spec.get("post_processor")))
    _remap_processor(post, new_ids)
    new_spec["post_processor"] = post
    padding = spec.get("padding")
    if padding and padding.get("pad_token") in new_ids:
        padding = dict(padding, pad_id=new_ids[padding["pad_token"]])
        new_spec["padding"] = padding
    tok = Tokenizer.from_str(json.dumps(new_spec, ensure_ascii=False))

    kwargs = {}
    for role in ROLES:
        value = getattr(source, f"{role}_token", None)
        if value is not None:
            kwargs[f"{role}_token"] = str(value)
    extra = [s["content"] for s in specials if s.get("special", True) and s["content"] not in kwargs.values()]
    source_extra = {str(t) for t in (getattr(source, "extra_special_tokens", None) or [])}
    if keep_special == "all":
        extra = [t for t in extra if t in source_extra]
    if extra:
        kwargs["extra_special_tokens"] = extra
    for attr in ("padding_side", "truncation_side", "clean_up_tokenization_spaces", "model_input_names"):
        value = getattr(source, attr, None)
        if value is not None:
            kwargs[attr] = value
    target = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=source.model_max_length, **kwargs)
    return target


# ----------------------------------------------------------------------------- checking
def _pipeline_rendering(text: str, normalizer, pre_tokenizer, decoder) -> str:
    """``text`` normalized, pre-tokenized and decoded without the model: the best any
    vocabulary of this pipeline can give back."""
    normalized = normalizer.normalize_str(text) if normalizer is not None else text
    pieces = [p for p, _ in pre_tokenizer.pre_tokenize_str(normalized)] if pre_tokenizer is not None else [normalized]
    return decoder.decode(pieces) if decoder is not None else "".join(pieces)


def check_trained_tokenizer(tokenizer, heldout_texts: Iterable[str]) -> dict:
    """Measure the traps on a trained tokenizer.

    Returns a dict with:
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
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer.")
    spec = json.loads(backend.to_str())
    family = _family(spec)
    marker = _marker(family)
    added = {a["content"] for a in spec.get("added_tokens") or []}
    crossing = []
    for tok in backend.get_vocab(with_added_tokens=False):
        if tok in added:
            continue
        v = _visible(tok, family)
        if not v.strip().strip("▁"):
            continue  # pure whitespace
        inner = v[1:]
        if any(c.isspace() or c == "▁" or (marker and c == marker) for c in inner):
            crossing.append(tok)

    normalizer, pre_tokenizer, decoder = backend.normalizer, backend.pre_tokenizer, backend.decoder
    unk_id = tokenizer.unk_token_id
    byte_pieces = set(_BYTE_PIECES)
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
