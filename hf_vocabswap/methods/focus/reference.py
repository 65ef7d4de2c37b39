"""The FOCUS reference's token forms and overlap rule (``deepfocus`` 1.0.1), for faithful mode.

Reimplemented from reading the reference, to reproduce its decisions - including its
quirks - without its per-token Python objects and O(V) list lookups:

- Scheme by vote: more than 100 vocabulary entries starting with ``▁`` means
  SentencePiece, else more than 100 starting with ``##`` means WordPiece, else the
  byte-level ("decode") rule.
- Canonical form from ``tokenizer.decode(id)``: SentencePiece and byte-level give
  ``"▁" + decoded.lstrip()`` when the raw token starts with ``▁`` (resp. ``Ġ``) and
  ``decoded.lstrip()`` otherwise, byte-fallback entries ``<0xNN>`` stay verbatim;
  WordPiece strips a leading ``##`` of the decoded text or prepends ``▁``.
  Fuzzy form: the canonical form without ``▁``, lowercased.
- When several source tokens share a canonical form, the highest id wins (so every
  whitespace-only token maps to the highest-id whitespace token, the ``""`` collision).
  Fuzzy collisions: the highest id among tokens whose canonical form equals the fuzzy form,
  else the lowest id.
- A target token overlaps when (in this order) ``match_symbols`` and it is a number /
  punctuation / whitespace / special token with an exact or fuzzy partner, or
  ``exact_match`` and its canonical form is a source canonical form, or ``fuzzy_match`` and
  its fuzzy form is a source fuzzy form.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from ...vocab import decode_each

SPIECE = "▁"
BYTE_LEVEL_SPACE = "Ġ"
_BYTE_FALLBACK_PREFIX = re.compile(r"<0x[0-9,A-F]{2}>")
_PUNCTUATION = frozenset(string.punctuation)

# How a target token matched in the reference rule (stats only).
REF_NONE, REF_SYMBOL, REF_EXACT, REF_FUZZY = 0, 1, 2, 3


@dataclass
class ReferenceForms:
    """Every vocabulary entry of one tokenizer in the reference's terms.

    Attributes:
        scheme: "sentencepiece", "wordpiece" or "decode".
        ids: int64 array of the entries' ids, ascending.
        tokens: the entries' strings (native forms).
        canonical: canonical forms, aligned with ``ids``.
        fuzzy: fuzzy forms, aligned with ``ids``.
    """

    scheme: str
    ids: np.ndarray
    tokens: list[str]
    canonical: list[str]
    fuzzy: list[str]

    @classmethod
    def from_tokenizer(cls, tokenizer, max_id: int | None = None) -> "ReferenceForms":
        """Forms of every ``get_vocab()`` entry in id order (ids >= ``max_id`` are left out)."""
        vocab = tokenizer.get_vocab()
        starts_spiece = sum(1 for k in vocab if k[:1] == SPIECE)
        starts_hashes = sum(1 for k in vocab if k[:2] == "##")
        scheme = "sentencepiece" if starts_spiece > 100 else "wordpiece" if starts_hashes > 100 else "decode"
        # The reference reads the raw token with convert_ids_to_tokens(id): the vocabulary key.
        keys = list(vocab)
        all_ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(keys))
        order = np.argsort(all_ids, kind="stable")
        if max_id is not None:
            order = order[all_ids[order] < max_id]
        ids = all_ids[order]
        tokens = [keys[j] for j in order.tolist()]
        decoded = decode_each(tokenizer, ids.tolist())
        if scheme == "wordpiece":
            canonical = [text[2:] if text.startswith("##") else SPIECE + text for text in decoded]
        else:
            marker = SPIECE if scheme == "sentencepiece" else BYTE_LEVEL_SPACE
            canonical = [
                (SPIECE + text.lstrip()) if tok.startswith(marker) else text.lstrip() for tok, text in zip(tokens, decoded)
            ]
            if scheme == "sentencepiece":
                for pos, tok in enumerate(tokens):
                    if tok.startswith("<0x") and _BYTE_FALLBACK_PREFIX.match(tok):
                        canonical[pos] = tok
        fuzzy = [c.replace(SPIECE, "").lower() for c in canonical]
        return cls(scheme, ids, tokens, canonical, fuzzy)

    def exact_index(self) -> dict[str, int]:
        """Canonical form -> the id that represents it (the highest id among equals)."""
        return dict(zip(self.canonical, self.ids.tolist()))  # ids ascend: later ids overwrite

    def fuzzy_index(self) -> dict[str, int]:
        """Fuzzy form -> representative id, by the reference's list-building rule."""
        preferred: dict[str, int] = {}  # highest id whose canonical form equals the key
        lowest: dict[str, int] = {}
        for i, form, fuzzy in zip(self.ids.tolist(), self.canonical, self.fuzzy):
            if form == fuzzy:
                if i > preferred.get(fuzzy, -1):
                    preferred[fuzzy] = i
            elif fuzzy not in lowest or i < lowest[fuzzy]:
                lowest[fuzzy] = i
        lowest.update(preferred)
        return lowest


def _is_symbol(form: str, special_tokens: frozenset[str]) -> bool:
    return form in special_tokens or form.isnumeric() or all(c in _PUNCTUATION for c in form) or form.isspace()


def reference_overlap(
    target_tokenizer,
    source_tokenizer,
    *,
    num_source: int,
    exact_match: bool = True,
    fuzzy_match: bool = False,
    match_symbols: bool = False,
) -> tuple[np.ndarray, np.ndarray, ReferenceForms]:
    """The reference's overlap: the source id of every target id, or -1.

    Args:
        target_tokenizer, source_tokenizer: the two tokenizers.
        num_source: rows of the source embedding matrix; source ids beyond it are ignored.
        exact_match, fuzzy_match, match_symbols: the reference's switches.

    Returns:
        ``(target_to_source, how, target_forms)``: int64 and int8 arrays of length
        ``len(target_tokenizer)`` (``how`` holds ``REF_*``), and the target's forms.
    """
    source = ReferenceForms.from_tokenizer(source_tokenizer, max_id=num_source)
    target = ReferenceForms.from_tokenizer(target_tokenizer)
    exact = source.exact_index()
    fuzzy = source.fuzzy_index() if (fuzzy_match or match_symbols) else {}
    specials = frozenset(target_tokenizer.all_special_tokens)
    n_t = len(target_tokenizer)
    t2s = np.full(n_t, -1, dtype=np.int64)
    how = np.zeros(n_t, dtype=np.int8)
    for tid, form, fform in zip(target.ids.tolist(), target.canonical, target.fuzzy):
        if tid >= n_t:
            continue
        hit_exact = exact.get(form)
        if match_symbols and _is_symbol(fform, specials):
            hit = hit_exact if hit_exact is not None else fuzzy.get(fform)
            if hit is not None:
                t2s[tid], how[tid] = hit, REF_SYMBOL
                continue
        if exact_match and hit_exact is not None:
            t2s[tid], how[tid] = hit_exact, REF_EXACT
        elif fuzzy_match:
            hit = fuzzy.get(fform)
            if hit is not None:
                t2s[tid], how[tid] = hit, REF_FUZZY
    return t2s, how, target
