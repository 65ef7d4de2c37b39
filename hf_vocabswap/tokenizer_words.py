"""A corpus as the "words" tokenizer training sees: the source's pipeline, then word splitting.

Each text is cut at the source's added tokens, run through the source's normalizer and
pre-tokenizer (so the pieces are the strings the model will see), and every piece is split
further (:func:`word_splitter`) at whitespace (a word-start marker ``▁`` / ``Ġ`` stays attached
to the word that follows it, as in SentencePiece), at changes of script, and at digits.
Training (:mod:`hf_vocabswap.tokenizer_training`) learns tokens inside these words, and so
does expansion (:mod:`hf_vocabswap.tokenizer_expansion`), so no learned token crosses a word
boundary.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

import regex

from .corpus import Corpus
from .progress import progress_bar
from .tokenizer_json import to_model_chars, visible_text, word_marker

__all__ = ["corpus_pieces", "count_words", "has_multi_digit_tokens", "piece_splitter", "word_splitter"]

_APOSTROPHES = "'\u2019"  # ʼ (U+02BC) is a letter already
# Scripts SentencePiece treats as one (Japanese mixes them inside words).
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "KATAKANA-HIRAGANA": "CJK", "IDEOGRAPHIC": "CJK"}


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


def word_splitter(marker: str | None, individual_digits: bool) -> Callable[[str], list[str]]:
    """A function splitting a piece of text into trainer "words".

    Words are: a run of letters (with combining marks, and apostrophes between letters) of
    one script, a digit (or a run of digits when ``individual_digits`` is False), a run of
    other symbols/punctuation, or a run of whitespace. A ``marker`` (``▁`` or a space) right
    before a word stays attached to it; markers in a row before a word leave all but the
    last as a pure-whitespace word. The pieces concatenate back to the input.

    Args:
        marker: the word-start marker of the pipeline (``"▁"``, ``" "``) or None.
        individual_digits: split digit runs into single digits.

    Returns:
        The splitting function (``str -> list[str]``).
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


def piece_splitter(family: str, individual_digits: bool) -> Callable[[str], list[str]]:
    """:func:`word_splitter` for pieces spelled as the model sees them (``family`` as
    :func:`hf_vocabswap.tokenizer_json.tokenizer_family` names it): byte-level pieces are split
    on their visible text and the words given back in byte-level characters. The words
    concatenate back to the piece."""
    split = word_splitter(word_marker(family), individual_digits)
    if family != "byte_level":
        return split
    return lambda piece: [to_model_chars(w, family) for w in split(visible_text(piece, family))]


def has_multi_digit_tokens(vocab: Iterable[str], family: str, prefix: str | None) -> bool:
    """Whether a vocabulary holds a token of two or more digits (then digit runs are not split)."""
    marker = word_marker(family)
    for tok in vocab:
        v = visible_text(tok, family)
        if marker and v.startswith(marker):
            v = v[len(marker):]
        if prefix and v.startswith(prefix):
            v = v[len(prefix):]
        if len(v) > 1 and v.isdigit():
            return True
    return False


def _splitter(strings) -> regex.Pattern | None:
    """A pattern matching any of ``strings`` (longest first), or None for none."""
    strings = [s for s in strings if s]
    return regex.compile("|".join(regex.escape(s) for s in sorted(strings, key=len, reverse=True))) if strings else None


def corpus_pieces(corpus: Corpus, backend, specials: list[str], *, progress: bool,
                  normalized_specials: Iterable[str] = ()) -> Iterator[str]:
    """Every normalized, pre-tokenized piece of the corpus, in order, spelled as the model sees it.

    Args:
        corpus: the texts.
        backend: the source's ``tokenizers.Tokenizer`` (its normalizer and pre-tokenizer are used).
        specials: strings cut out of each text first (the source's added tokens), as the
            tokenizer itself matches them before normalizing.
        progress: show a progress bar over the texts (group ``hf_vocabswap.tokenizer``).
        normalized_specials: strings cut out of each normalized chunk (the contents, normalized,
            of the added tokens the tokenizer matches after normalizing, such as Gemma's runs
            of ``▁``), so the pieces are exactly what reaches the model.
    """
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    special_re, normalized_re = _splitter(specials), _splitter(normalized_specials)
    for text in progress_bar(corpus, group="tokenizer", desc="Pre-tokenizing corpus", unit=" texts", enabled=progress):
        for chunk in special_re.split(text) if special_re is not None else [text]:
            if not chunk:
                continue
            if normalizer is not None:
                chunk = normalizer.normalize_str(chunk)
            for part in normalized_re.split(chunk) if normalized_re is not None else [chunk]:
                if not part:
                    continue
                if pre_tokenizer is None:
                    yield part
                else:
                    yield from (p for p, _ in pre_tokenizer.pre_tokenize_str(part))


def count_words(corpus: Corpus, backend, family: str, specials: list[str], individual_digits: bool, *,
                progress: bool) -> Counter:
    """How often each word (spelled as the model sees it) occurs in the corpus.

    Args:
        corpus, backend, specials, progress: as for :func:`corpus_pieces`.
        family: the pipeline's family (:func:`hf_vocabswap.tokenizer_json.tokenizer_family`).
        individual_digits: split digit runs into single digits.

    Returns:
        A ``Counter`` of words, in order of first occurrence.
    """
    split = piece_splitter(family, individual_digits)
    counts: Counter = Counter()
    for piece in corpus_pieces(corpus, backend, specials, progress=progress):
        counts.update(split(piece))
    return counts
