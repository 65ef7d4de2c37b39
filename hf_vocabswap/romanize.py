"""Matching through romanization, for target tokens in scripts the source tokenizer covers poorly.

An English source and a Cyrillic target share almost nothing but digits and punctuation, and the
source splits a Cyrillic word into single characters. The romanized form of a new token
(``кіт`` -> ``kit``, by `uroman <https://github.com/isi-nlp/uroman>`_) often meets a source
token of related sound or meaning, a better start than single characters or a random row
(Purkayastha et al. 2023; TransMI; "UNKs Everywhere").

1. Which scripts are poorly covered is measured, not guessed (:func:`script_coverage`): every
   regular target token is encoded by the source tokenizer's model, and its characters count as
   covered when they land in a source piece longer than one character that is neither the
   unknown token nor a byte-fallback piece. A script whose share of covered characters is below
   ``threshold`` (:data:`POOR_COVERAGE`) is poorly covered.
2. Only new tokens (no exact, role or added-token match) in a poorly covered script are
   romanized (:func:`romanize_alignment`), so romanization never overrides an exact match.
   Their romanized forms go to ``alignment.romanized``; methods split that form with the source
   tokenizer instead of the original text (FVT's decomposition, the hybrid's local estimate,
   every FVT fallback). A romanized form that is one whole source token is a *romanized match*
   (``MATCH_ROMANIZED``), which FOCUS and the hybrid also use as an extra anchor.
3. A romanizer that returns nothing usable (empty, only spaces, or the text unchanged) for a token
   leaves that token to the method's usual rule; the report counts them.

Off by default: on the English splade-tiny to 8k Ukrainian (and to 8k Chinese) it made zero-shot
and post-LAPT bits per character worse, beyond the seed spread (benchmarks/results/romanize_cpu.md).

Romanizers are pluggable: any function ``str -> str`` (:class:`Romanizer` wraps it with a
per-token cache); ``True`` means uroman, installed with ``pip install 'hf-vocabswap[romanize]'``.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Callable

import numpy as np

from .errors import MethodOptionError, ResourceError
from .vocab import MATCH_ROMANIZED, CanonicalForm, TokenizerProfile, VocabAlignment

__all__ = [
    "POOR_COVERAGE", "ROMANIZE_DEFAULT", "Romanizer", "char_script", "get_romanizer", "romanize_alignment", "script_coverage",
    "token_script", "uroman_romanizer",
]

# transplant_tokenizer's default, from benchmarks/results/romanize_cpu.md.
ROMANIZE_DEFAULT = False
# A script is poorly covered when less than this share of the target's characters in it land in
# multi-character source pieces.
POOR_COVERAGE = 0.5
# First words of Unicode character names that are not scripts, and names spelled otherwise.
_NOT_SCRIPTS = frozenset({
    "COMBINING", "MODIFIER", "FULLWIDTH", "HALFWIDTH", "SMALL", "CIRCLED", "PARENTHESIZED", "SUPERSCRIPT", "SUBSCRIPT",
    "DOUBLE-STRUCK", "MATHEMATICAL", "BLACK-LETTER", "SCRIPT", "NEGATIVE", "SQUARED",
})
_SCRIPT_NAMES = {"CJK": "Han", "KANGXI": "Han", "IDEOGRAPHIC": "Han"}


def char_script(char: str) -> str | None:
    """The script of one letter or mark (``"Cyrillic"``, ``"Han"``...), from its Unicode name;
    None for digits, punctuation, spaces, symbols and combining marks shared by scripts."""
    if unicodedata.category(char)[0] not in "LM":
        return None
    name = unicodedata.name(char, "")
    word = name.split(" ", 1)[0]
    if not word or word in _NOT_SCRIPTS:
        return None
    return _SCRIPT_NAMES.get(word, word.title())


def token_script(text: str) -> str | None:
    """The script most of the text's letters are in (the first one met on a tie); None without letters."""
    counts = Counter(s for s in map(char_script, text) if s is not None)
    return counts.most_common(1)[0][0] if counts else None


class Romanizer:
    """A romanizer: ``text -> Latin-script text``, called once per distinct text (cached).

    Args:
        function: the romanizing function; it must be deterministic and return a string.
        name: how the report names it.
    """

    def __init__(self, function: Callable[[str], str], name: str):
        self.function = function
        self.name = name
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        hit = self._cache.get(text)
        if hit is None:
            hit = self.function(text)
            if not isinstance(hit, str):
                raise MethodOptionError(
                    f"The romanizer {self.name!r} returned {type(hit).__name__} for {text!r}: a romanizer must return a string."
                )
            self._cache[text] = hit
        return hit


_UROMAN: Romanizer | None = None


def uroman_romanizer() -> Romanizer:
    """uroman (Hermjakob et al., 2018), loaded once per process (its tables take a few seconds).

    Raises:
        ResourceError: the ``uroman`` package is not installed (the message says how to install it).
    """
    global _UROMAN
    if _UROMAN is None:
        try:
            import uroman  # optional: the [romanize] extra
        except ImportError as exc:
            raise ResourceError(
                "Romanization (romanize=True, --romanize) needs the `uroman` package, which is not installed. "
                "Install it with `pip install 'hf-vocabswap[romanize]'` (or `pip install uroman`), or pass "
                "romanize=False."
            ) from exc
        _UROMAN = Romanizer(uroman.Uroman().romanize_string, "uroman")
    return _UROMAN


def get_romanizer(romanize) -> Romanizer | None:
    """The romanizer ``transplant_tokenizer(romanize=...)`` asks for: None for False/None, uroman for
    True or ``"uroman"``, a :class:`Romanizer` as it is, any other callable wrapped in one.

    Raises:
        MethodOptionError: ``romanize`` is none of these.
        ResourceError: uroman is asked for and not installed.
    """
    if romanize is None or romanize is False:
        return None
    if romanize is True or romanize == "uroman":
        return uroman_romanizer()
    if isinstance(romanize, Romanizer):
        return romanize
    if callable(romanize) and not isinstance(romanize, str):
        return Romanizer(romanize, getattr(romanize, "__name__", type(romanize).__name__))
    raise MethodOptionError(
        f"romanize must be True, False, 'uroman' or a function str -> str, not {romanize!r}."
    )


# ------------------------------------------------------------------------------ coverage
def _text(form: CanonicalForm | None) -> str | None:
    """The form's text, or None for special tokens and partial UTF-8 (byte pieces)."""
    if form is None:
        return None
    try:
        return form.text.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _covered_chars(source: TokenizerProfile, form: CanonicalForm, text: str) -> int:
    """Characters of ``text`` the source encodes in known pieces longer than one character."""
    backend = source.tokenizer.backend_tokenizer
    if source.family == "wordpiece":
        # Context does not change whether the source knows the characters: split it as a word.
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        spelled = text
    else:
        spelled = source.spell(form)
    if not spelled:
        return 0
    unk = source.tokenizer.unk_token_id
    covered = 0
    for piece in backend.model.tokenize(spelled):
        if piece.id == unk or piece.id in source.byte_fallback_ids or piece.id >= len(source.forms):
            continue
        piece_form = source.forms[piece.id]
        chars = len(piece_form.text.decode("utf-8", errors="ignore")) if piece_form is not None else 0
        if chars > 1:
            covered += chars
    return min(covered, len(text))


def script_coverage(source: TokenizerProfile, target: TokenizerProfile) -> dict[str, dict]:
    """Per script of the target's regular tokens: their characters, and the share the source covers.

    A character is covered when the source tokenizer's model encodes it inside a piece longer than
    one character that is neither its unknown token nor a byte-fallback piece.

    Returns:
        ``{script: {"chars": n, "covered": share (0..1, 4 decimals), "tokens": n}}``, scripts sorted.
    """
    chars: Counter = Counter()
    covered: Counter = Counter()
    tokens: Counter = Counter()
    for form in target.forms:
        text = _text(form)
        script = token_script(text) if text else None
        if script is None:
            continue
        chars[script] += len(text)
        covered[script] += _covered_chars(source, form, text)
        tokens[script] += 1
    return {s: {"chars": chars[s], "covered": round(covered[s] / chars[s], 4), "tokens": tokens[s]} for s in sorted(chars)}


# ------------------------------------------------------------------------------ romanizing
def romanize_alignment(alignment: VocabAlignment, romanizer: Romanizer, *, threshold: float = POOR_COVERAGE) -> dict:
    """Give every new target token in a poorly covered script its romanized form, in place.

    Fills ``alignment.romanized`` (target id -> romanized canonical form, keeping the word-start
    flag), ``alignment.romanized_source`` (the source id of romanized forms that are one whole
    source token, else -1; those tokens get ``MATCH_ROMANIZED``) and ``alignment.romanization``.
    Tokens already matched (exactly, by role, as added tokens or by identity) are left as they are.

    Args:
        alignment: the :func:`~hf_vocabswap.vocab.align_vocabularies` result.
        romanizer: a :class:`Romanizer` (see :func:`get_romanizer`).
        threshold: scripts whose covered share is below it are romanized.

    Returns:
        ``alignment.romanization``: the romanizer's name, the threshold, each script's coverage,
        the poorly covered scripts, and how many tokens were romanized, matched whole, and left to
        the method's usual rule because the romanizer gave nothing usable (``empty``).
    """
    if not 0.0 <= threshold <= 1.0:
        raise MethodOptionError(f"the romanization threshold must be between 0 and 1, not {threshold}")
    src, tgt = alignment.source, alignment.target
    coverage = script_coverage(src, tgt)
    poor = sorted(s for s, c in coverage.items() if c["covered"] < threshold)
    forms: dict[int, CanonicalForm] = {}
    to_source = np.full(len(tgt.forms), -1, dtype=np.int64)
    empty = unsegmented = 0
    for tid, form in enumerate(tgt.forms):
        text = _text(form)
        if text is None or alignment.target_to_source[tid] >= 0 or tid in tgt.special_ids or token_script(text) not in poor:
            continue
        roman = romanizer(text).strip()
        if not roman or roman == text:
            empty += 1
            continue
        roman_form = CanonicalForm(form.word_start, roman.encode("utf-8"))
        pieces = src.segment(roman_form)
        if not pieces:
            unsegmented += 1
            continue
        forms[tid] = roman_form
        if len(pieces) == 1:
            to_source[tid] = pieces[0]
    alignment.romanized = forms
    alignment.romanized_source = to_source
    alignment.match[to_source >= 0] = MATCH_ROMANIZED
    alignment.romanization = {
        "romanizer": romanizer.name,
        "threshold": threshold,
        "coverage": coverage,
        "poor_scripts": poor,
        "romanized": len(forms),
        "matched": int((to_source >= 0).sum()),
        "empty": empty,
        "unsegmented": unsegmented,
    }
    return alignment.romanization
